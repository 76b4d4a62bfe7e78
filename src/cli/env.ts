import { createReadStream } from "node:fs";
import { basename } from "node:path";
import type { Command } from "commander";
import type { PaddockClient } from "../client/index.ts";
import { PaddockError, invalid } from "../core/index.ts";
import { bytes, formatIssue, printJson, printTable, seconds } from "./output.ts";

/** The server refuses environment files over 1 MiB (config's MAX_FILE_BYTES); reading stops there. */
const MAX_ENV_FILE_BYTES = 1024 * 1024;

const READ_ERRORS: Record<string, string> = { ENOENT: "no such file", EISDIR: "it is a directory", EACCES: "permission denied" };

/** At most `max` bytes of a stream, or null when it holds more: counted as read, so /dev/zero and pipes stop too. */
async function readAtMost(stream: AsyncIterable<Buffer | string>, max: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let total = 0;
  // Leaving the loop early (return) destroys the stream.
  for await (const chunk of stream) {
    const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    total += b.length;
    if (total > max) return null;
    chunks.push(b);
  }
  return Buffer.concat(chunks, total);
}

/** Reads the environment file named on the command line; `-` reads standard input (named "stdin" in messages). */
async function readEnvFile(path: string): Promise<{ fileName: string; source: string }> {
  const stdin = path === "-";
  let bytes: Buffer | null;
  try {
    // `end` is inclusive: one byte past the limit is enough to know the file is too large.
    bytes = await readAtMost(stdin ? process.stdin : createReadStream(path, { end: MAX_ENV_FILE_BYTES }), MAX_ENV_FILE_BYTES);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    throw new PaddockError("invalid_argument", `cannot read ${path}: ${READ_ERRORS[code] ?? (err as Error).message}`);
  }
  if (bytes === null) throw new PaddockError("invalid_argument", `cannot read ${stdin ? "standard input" : path}: it is larger than ${MAX_ENV_FILE_BYTES} bytes (an environment file is a few kilobytes)`);
  return { fileName: stdin ? "stdin" : basename(path), source: bytes.toString("utf8") };
}

export function registerEnvCommands(program: Command, client: () => PaddockClient): void {
  const env = program.command("env").description("validate, apply and inspect environments");

  env
    .command("validate <file>")
    .description("check an environment file (- reads standard input); every problem is printed with file:line:column (exit 2 when invalid)")
    .option("--json", "print the result as JSON")
    .action(async (file: string, o: { json?: boolean }) => {
      const { fileName, source } = await readEnvFile(file);
      const r = await client().environments.validate(fileName, source);
      if (o.json) printJson(r);
      else if (r.valid) process.stdout.write(`${fileName}: valid\n`);
      else for (const i of r.issues) process.stderr.write(formatIssue(i) + "\n");
      if (!r.valid) process.exitCode = 2;
    });

  env
    .command("apply <file>")
    .description("register a new version of the environment and build its template, streaming each step (- reads the file from standard input)")
    .option("--no-cache", "rebuild every install step")
    .option("--json", "print build events as JSON lines")
    .action(async (file: string, o: { cache: boolean; json?: boolean }) => {
      const { fileName, source } = await readEnvFile(file);
      const progress = o.json ? (e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + "\n") : textProgress();
      try {
        await client().environments.apply(fileName, source, { noCache: !o.cache, onEvent: progress });
      } catch (err) {
        if (err instanceof PaddockError && err.details?.type === "failed") {
          if (!o.json) process.stderr.write(`paddock: ${err.message}\n`);
          process.exitCode = 1;
          return;
        }
        throw err;
      }
    });

  env
    .command("list")
    .description("list environments")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const list = await client().environments.list();
      if (o.json) return printJson(list);
      printTable(["NAME", "CURRENT", "LATEST", "UPDATED"], list.map((e) => [e.name, e.currentVersion === null ? "-" : `v${e.currentVersion}`, `v${e.latestVersion}`, e.updatedAt]));
    });

  env
    .command("show <name>")
    .description("show an environment's current version and template")
    .option("--json", "print JSON")
    .action(async (name: string, o: { json?: boolean }) => {
      const r = await client().environments.get(name);
      if (o.json) return printJson(r);
      process.stdout.write(`name:     ${r.environment.name}\n`);
      process.stdout.write(`current:  ${r.current ? `v${r.current.version} (${r.current.fileName}, applied ${r.current.createdAt})` : "none (no successful build yet)"}\n`);
      process.stdout.write(`latest:   v${r.environment.latestVersion}\n`);
      if (r.template) process.stdout.write(`template: ${r.template.id} (base ${r.template.base}, ${r.template.layers.length} layer${r.template.layers.length === 1 ? "" : "s"})\n`);
    });

  env
    .command("history <name>")
    .description("every version of an environment with its build result")
    .option("--json", "print JSON")
    .action(async (name: string, o: { json?: boolean }) => {
      const versions = await client().environments.history(name);
      if (o.json) return printJson(versions);
      printTable(
        ["VERSION", "STATUS", "APPLIED", "FILE", "DIGEST", "ERROR"],
        versions.map((v) => [`v${v.version}`, v.buildStatus, v.createdAt, v.fileName, v.sourceDigest.slice(0, 12), (v.buildError ?? "").split("\n")[0] ?? ""]),
      );
    });

  env
    .command("log <name> [version]")
    .description("the build log of a version (default: the newest): each step, its output and exit code")
    .action(async (name: string, version: string | undefined) => {
      const c = client();
      const v = version !== undefined ? Number(version.replace(/^v/, "")) : ((await c.environments.history(name))[0]?.version ?? NaN);
      if (!Number.isInteger(v) || v < 1) throw invalid(`no version ${JSON.stringify(version ?? "")} of ${name}: name one from \`paddock env history ${name}\``);
      process.stdout.write(await c.environments.buildLog(name, v));
    });
}

/** Human progress: one header per step, its output indented, a summary line with elapsed time. */
function textProgress(): (e: Record<string, unknown>) => void {
  const err = process.stderr;
  let stepStarted = Date.now();
  let heartbeat: NodeJS.Timeout | undefined;
  let lastOutput = Date.now();
  let current = "";
  const stopHeartbeat = () => heartbeat && clearInterval(heartbeat);
  return (e) => {
    switch (e.type) {
      case "version":
        err.write(`${String(e.name)}: version ${String(e.version)}\n`);
        break;
      case "step": {
        current = `[${Number(e.index) + 1}/${String(e.total)}] ${String(e.command)}`;
        if (e.status === "cached") err.write(`${current}  cached\n`);
        else {
          err.write(`${current}\n`);
          stepStarted = lastOutput = Date.now();
          stopHeartbeat();
          heartbeat = setInterval(() => {
            if (Date.now() - lastOutput >= 10_000) err.write(`  … ${current} still running (${seconds(Date.now() - stepStarted)})\n`);
          }, 10_000);
          heartbeat.unref();
        }
        break;
      }
      case "output":
        lastOutput = Date.now();
        err.write(String(e.data).replace(/^(?=.)/gm, "  │ "));
        break;
      case "step-done":
        stopHeartbeat();
        err.write(
          e.exitCode === 0
            ? `  ✓ done in ${seconds(Number(e.durationMs))}${typeof e.sizeBytes === "number" ? `, layer ${String(e.layerId).slice(0, 12)} (${bytes(e.sizeBytes)})` : ""}\n`
            : `  ✗ exit code ${String(e.exitCode)} after ${seconds(Number(e.durationMs))}\n`,
        );
        break;
      case "done":
        stopHeartbeat();
        err.write(`template ${String(e.templateId)} ready in ${seconds(Number(e.durationMs))}\n`);
        break;
      case "failed":
        stopHeartbeat();
        if (Array.isArray(e.lastLines) && e.lastLines.length) err.write(`last lines of output:\n${(e.lastLines as string[]).map((l) => `  ${l}`).join("\n")}\n`);
        break;
    }
  };
}
