/**
 * `paddock provider add|list|remove|health` (docs/routing.md). Credentials are read from a file
 * (`--credential apiKey=@key.txt`) or stdin (`--credential apiKey=-`), never from the command
 * line, where they would stay in shell history and show in `ps`; nothing here prints one.
 */
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { parse as parseYamlScalar } from "yaml";
import type { PaddockClient, ProviderInfo } from "../client/index.ts";
import { PaddockError } from "../core/index.ts";
import { printJson, printTable } from "./output.ts";
import { readStdinValue } from "./secret.ts";

const collect = (v: string, all: string[]) => [...all, v];

export function registerProviderCommands(program: Command, client: () => PaddockClient): void {
  const provider = program.command("provider").description("configure provider instances (where sessions run) and see their health");

  provider
    .command("add <name>")
    .description("configure a provider instance: written to $PADDOCK_HOME/providers.yml, credentials sealed in the vault, usable at once")
    .requiredOption("--kind <kind>", "k8s, e2b, daytona or ec2")
    .option("--set <key=value>", "a setting of the kind (repeatable; dotted keys nest: --set pod.runtimeClass=gvisor)", collect, [])
    .option("--route <key=value>", "a routing setting (repeatable): pricePerVcpuHour, pricePerGibHour, latencyClass, region, maxCpu, maxMemory", collect, [])
    .option("--credential <name=@file|name=->", "a credential from a file (@path) or stdin (-); repeatable", collect, [])
    .option("--json", "print JSON")
    .action(async (name: string, o: { kind: string; set: string[]; route: string[]; credential: string[]; json?: boolean }) => {
      const settings = assignments(o.set, "--set");
      const routing = assignments(o.route, "--route");
      const credentials = await readCredentials(o.credential);
      const info = await client().providers.add({ name, kind: o.kind, ...(Object.keys(settings).length ? { settings } : {}), ...(Object.keys(routing).length ? { routing } : {}), ...(Object.keys(credentials).length ? { credentials } : {}) });
      if (o.json) return printJson(info);
      process.stderr.write(`provider ${info.name} (${info.kind}) added: ${info.status}\n`);
    });

  provider
    .command("list")
    .description("list provider instances: kind, status, routing and which credentials are set (never their values)")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const list = await client().providers.list();
      if (o.json) return printJson(list);
      printTable(["NAME", "KIND", "SELF-HOSTED", "STATUS", "ROUTING", "CREDENTIALS"], list.map(row));
    });

  provider
    .command("remove <name>")
    .description("remove a provider instance and its credentials (refused while sessions run on it)")
    .action(async (name: string) => {
      await client().providers.remove(name);
      process.stderr.write(`provider ${name} removed\n`);
    });

  provider
    .command("health")
    .description("check every provider instance now, with its circuit breaker's state")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const list = await client().providers.health();
      if (o.json) return printJson(list);
      printTable(["NAME", "OK", "LATENCY", "BREAKER", "DETAIL"], list.map((h) => [h.name, h.ok ? "yes" : "no", `${Math.round(h.latencyMs)}ms`, h.failures ? `${h.breaker} (${h.failures} failures)` : h.breaker, h.detail]));
    });
}

function row(p: ProviderInfo): string[] {
  const routing = Object.entries(p.routing).map(([k, v]) => `${k}=${String(v)}`).join(" ") || "-";
  const creds = p.credentials.map((c) => `${c.name}${c.set ? "" : c.optional ? " (not set, optional)" : " (missing)"}`).join(",") || "-";
  return [p.name, p.kind, p.selfHosted === null ? "?" : p.selfHosted ? "yes" : "no", p.status, routing, creds];
}

/** `key=value` pairs into a mapping; dotted keys nest, values read as YAML scalars (numbers, booleans). */
export function assignments(pairs: string[], flag: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new PaddockError("invalid_argument", `${flag} ${JSON.stringify(pair)}: write key=value`);
    const path = pair.slice(0, eq).split(".");
    if (path.some((k) => k === "" || k === "__proto__")) throw new PaddockError("invalid_argument", `${flag} ${JSON.stringify(pair)}: not a key`);
    let at = out;
    for (const k of path.slice(0, -1)) at = (at[k] ??= {}) as Record<string, unknown>;
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = parseYamlScalar(raw) as unknown;
    } catch {
      value = raw;
    }
    at[path.at(-1) as string] = value ?? raw;
  }
  return out;
}

/** `name=@file` or `name=-` (stdin, once); a literal value is refused without being repeated. */
export async function readCredentials(specs: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let stdinUsed = false;
  for (const spec of specs) {
    const eq = spec.indexOf("=");
    const name = eq > 0 ? spec.slice(0, eq) : "";
    const source = eq > 0 ? spec.slice(eq + 1) : "";
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name)) throw new PaddockError("invalid_argument", "--credential takes name=@FILE or name=- (stdin), e.g. --credential apiKey=@e2b.key");
    if (source === "-") {
      if (stdinUsed) throw new PaddockError("invalid_argument", "only one --credential can come from stdin; put the others in files (name=@FILE)");
      stdinUsed = true;
      out[name] = await readStdinValue();
    } else if (source.startsWith("@") && source.length > 1) {
      const text = (await readFile(source.slice(1), "utf8").catch((err: NodeJS.ErrnoException) => {
        throw new PaddockError("invalid_argument", `--credential ${name}: cannot read ${source.slice(1)} (${err.code ?? err.message})`);
      })).replace(/\r?\n$/, "");
      if (text === "") throw new PaddockError("invalid_argument", `--credential ${name}: ${source.slice(1)} is empty`);
      out[name] = text;
    } else {
      // The value is already in this process's argv and the shell's history; say so without repeating it.
      throw new PaddockError("invalid_argument", `credential values are never taken from the command line (shell history, \`ps\`): use --credential ${name}=@FILE or --credential ${name}=- and pipe it. If you just typed a real value, consider rotating it.`);
    }
  }
  return out;
}
