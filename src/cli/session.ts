import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import type { Command } from "commander";
import type { PaddockClient, PublicSession } from "../client/index.ts";
import { ExecSignals, PaddockError } from "../core/index.ts";
import { bytes, parseDurationFlag, printJson, printTable } from "./output.ts";

export function registerSessionCommands(program: Command, client: () => PaddockClient): void {
  const session = program.command("session").description("start, list and stop sessions");

  session
    .command("start [environment]")
    .description("start a session from the environment's current template (or a ready pool member), or --from a snapshot; prints its id when ready")
    .option("--from <snapshot>", "start from this snapshot (id or name): its environment version and files")
    .option("--json", "print the session object")
    .action(async (environment: string | undefined, o: { from?: string; json?: boolean }) => {
      if (environment === undefined && o.from === undefined) throw new PaddockError("invalid_argument", "name an environment, or a snapshot with --from");
      const s = await client().sessions.start(environment ?? null, o.from !== undefined ? { from: o.from } : {});
      if (o.json) printJson(s);
      else process.stdout.write(s.id + "\n");
    });

  session
    .command("fork <id>")
    .description("snapshot a running session and start --count independent sessions from it; prints their ids (exit 1 when any failed to start, the others keep running)")
    .option("-n, --count <n>", "how many sessions (1 to 100)", "1")
    .option("--json", "print the snapshot, the sessions and the failures as JSON")
    .action(async (id: string, o: { count: string; json?: boolean }) => {
      if (!/^\d+$/.test(o.count)) throw new PaddockError("invalid_argument", `bad --count ${JSON.stringify(o.count)}: a whole number from 1 to 100`);
      const r = await client().sessions.fork(id, { count: Number(o.count) });
      if (o.json) printJson(r);
      else for (const s of r.sessions) process.stdout.write(s.id + "\n");
      for (const f of r.failures) process.stderr.write(`paddock: fork ${f.index + 1} of ${o.count} failed: ${f.message}\n`);
      if (r.failures.length) process.exitCode = 1;
    });

  session
    .command("services <id>")
    .description("show the state of a session's services (ready, starting, failed…), and with --logs the end of their logs")
    .option("--logs [name]", "also print the end of each service's log (or only this service's)")
    .option("--json", "print JSON (logs included)")
    .action(async (id: string, o: { json?: boolean; logs?: string | boolean }) => {
      const list = await client().sessions.services(id);
      if (o.json) return printJson(list);
      if (list.length === 0) return void process.stdout.write("no services\n");
      if (typeof o.logs === "string" && !list.some((x) => x.name === o.logs)) {
        throw new PaddockError("not_found", `session ${id} has no service ${JSON.stringify(o.logs)}; its services are ${list.map((x) => x.name).join(", ")}`);
      }
      printTable(["NAME", "STATE", "RESTARTS", "PID", "SINCE", "MESSAGE"], list.map((x) => [x.name, x.state, String(x.restarts), x.pid === null ? "-" : String(x.pid), x.since, x.message ?? "-"]));
      if (!o.logs) return;
      for (const x of list) {
        if (typeof o.logs === "string" && x.name !== o.logs) continue;
        process.stdout.write(`\n==> ${x.name} <==\n${x.logTail}${x.logTail.endsWith("\n") || x.logTail === "" ? "" : "\n"}`);
      }
    });

  session
    .command("list")
    .description("list running sessions")
    .option("-a, --all", "include ended sessions")
    .option("--env <name>", "only sessions of this environment")
    .option("--json", "print JSON")
    .action(async (o: { all?: boolean; env?: string; json?: boolean }) => {
      const list = await client().sessions.list({ ...(o.all ? { all: true } : {}), ...(o.env ? { environment: o.env } : {}) });
      if (o.json) return printJson(list);
      printTable(["ID", "ENVIRONMENT", "STATE", "PROVIDER", "CREATED", "EXPIRES"], list.map((s) => [s.id, `${s.environment}@v${s.version}`, s.state, s.provider, s.createdAt, s.expiresAt ?? "-"]));
    });

  session
    .command("show <id>")
    .description("show one session")
    .option("--json", "print JSON")
    .action(async (id: string, o: { json?: boolean }) => {
      const s = await client().sessions.get(id);
      if (o.json) return printJson(s);
      printSession(s);
    });

  session
    .command("stop <id>")
    .description("stop a session (every process ends, its writes are discarded)")
    .option("--json", "print the session object")
    .action(async (id: string, o: { json?: boolean }) => {
      const s = await client().sessions.stop(id);
      if (o.json) printJson(s);
      else process.stdout.write(`${s.id} ${s.state}\n`);
    });

  session
    .command("kill <id>")
    .description("end every process of a session except its init, without stopping it (the way out of a full compute.pids)")
    .option("-s, --signal <name>", "signal to send, e.g. SIGTERM or TERM", "SIGKILL")
    .option("--json", "print JSON")
    .action(async (id: string, o: { signal: string; json?: boolean }) => {
      const name = o.signal.toUpperCase().startsWith("SIG") ? o.signal.toUpperCase() : `SIG${o.signal.toUpperCase()}`;
      if (!(name in osConstants.signals)) throw new PaddockError("invalid_argument", `unknown signal ${JSON.stringify(o.signal)}: use a name such as KILL, TERM or INT`);
      const r = await client().sessions.killProcesses(id, { signal: name });
      if (o.json) printJson(r);
      else process.stdout.write(`${id}: ${name} sent to ${r.signalled} process${r.signalled === 1 ? "" : "es"}\n`);
    });

  session
    .command("rm <id>")
    .description("stop a session if needed and delete its record")
    .action(async (id: string) => {
      await client().sessions.remove(id);
    });

  program
    .command("exec <id> <command...>")
    .description("run a command in a session: live output, stdin passed through, exits with the command's status (use -- before the command)")
    .option("--cwd <dir>", "working directory inside the sandbox (default /workspace)")
    .option("-e, --env <K=V>", "environment variable (repeatable)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--timeout <duration>", "kill the command after this long (e.g. 30s, 5m); exit 124")
    .action(async (id: string, command: string[], o: { cwd?: string; env: string[]; timeout?: string }) => {
      const env: Record<string, string> = {};
      for (const kv of o.env) {
        const eq = kv.indexOf("=");
        if (eq <= 0) throw new PaddockError("invalid_argument", `bad --env ${JSON.stringify(kv)}: use K=V`);
        env[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      // Ctrl-C and SIGTERM are forwarded to the command's process group, which decides what they
      // mean (a trap may clean up, or ignore them); its exit status is ours, as with a local shell.
      const signals = new ExecSignals();
      process.on("SIGINT", () => signals.send("SIGINT"));
      process.on("SIGTERM", () => signals.send("SIGTERM"));
      const r = await client().sessions.exec(id, {
        argv: command,
        ...(o.cwd ? { cwd: o.cwd } : {}),
        env,
        ...(o.timeout ? { timeoutMs: parseDurationFlag(o.timeout) } : {}),
        ...(process.stdin.isTTY ? {} : { stdin: process.stdin }),
        onStdout: (b) => process.stdout.write(b),
        onStderr: (b) => process.stderr.write(b),
        signals,
      });
      if (r.timedOut) process.stderr.write(`paddock: command timed out after ${o.timeout}\n`);
      await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
      process.exit(r.exitCode);
    });

  const files = program.command("files").description("copy files into and out of a session");
  files
    .command("put <id> <local> <remote>")
    .description("copy a local file (or - for stdin) to a path in the session")
    .option("--mode <octal>", "permission bits, e.g. 755")
    .action(async (id: string, local: string, remote: string, o: { mode?: string }) => {
      const data = local === "-" ? await readStdin() : await readFile(local);
      if (o.mode && !/^[0-7]{3,4}$/.test(o.mode)) throw new PaddockError("invalid_argument", `bad --mode ${o.mode}: use octal like 644`);
      await client().files.write(id, remote, data, o.mode ? { mode: parseInt(o.mode, 8) } : {});
    });
  files
    .command("get <id> <remote> [local]")
    .description("copy a file out of the session to a local path (default: stdout)")
    .action(async (id: string, remote: string, local?: string) => {
      const data = await client().files.read(id, remote);
      if (!local || local === "-") process.stdout.write(data);
      else await new Promise<void>((resolve, reject) => createWriteStream(local).on("error", reject).end(data, resolve));
    });
  files
    .command("ls <id> [path]")
    .description("list a directory in the session (default /workspace)")
    .option("--json", "print JSON")
    .action(async (id: string, path: string | undefined, o: { json?: boolean }) => {
      const entries = await client().files.list(id, path ?? "/workspace");
      if (o.json) return printJson(entries);
      printTable(["MODE", "SIZE", "MODIFIED", "NAME"], entries.map((e) => [`${e.type[0]}${e.mode.toString(8).padStart(4, "0")}`, bytes(e.size), e.mtime, e.type === "dir" ? `${e.name}/` : e.name]));
    });
}

function printSession(s: PublicSession): void {
  const { route, ...rest } = s;
  for (const [k, v] of Object.entries(rest)) process.stdout.write(`${(k + ":").padEnd(13)}${v === null ? "-" : String(v)}\n`);
  // How its provider was chosen (docs/routing.md).
  if (!route) return;
  const usd = (n: number | null) => (n === null ? "-" : `$${n.toFixed(4)}`);
  process.stdout.write(`${"route:".padEnd(13)}${route.provider} (${route.strategy}): ${route.reason}\n`);
  process.stdout.write(`${"cost:".padEnd(13)}estimate ${usd(route.estimateUsd)}, measured ${usd(route.measuredUsd)}${route.runtimeMs === null ? "" : ` over ${Math.round(route.runtimeMs / 1000)}s`}\n`);
  for (const k of route.skips) process.stdout.write(`${"skipped:".padEnd(13)}${k.provider} at ${k.at}: ${k.reason}\n`);
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
