/** `paddock snapshot …`, `paddock pool …` and `paddock gc` (docs/snapshots.md, docs/pools.md). */
import type { Command } from "commander";
import type { PaddockClient, PoolInfo } from "../client/index.ts";
import { PaddockError } from "../core/index.ts";
import { bytes, printJson, printTable } from "./output.ts";

export function registerSnapshotCommands(program: Command, client: () => PaddockClient): void {
  const snapshot = program.command("snapshot").description("capture running sessions and start sessions from them");

  snapshot
    .command("create <session>")
    .description("snapshot a running session (frozen only for the instant of the copy-on-write capture); prints the snapshot's id")
    .option("--name <name>", "a unique name to refer to it by (lowercase letters, digits, . _ -)")
    .option("--json", "print the snapshot object")
    .action(async (session: string, o: { name?: string; json?: boolean }) => {
      const s = await client().snapshots.create(session, o.name !== undefined ? { name: o.name } : {});
      if (o.json) printJson(s);
      else process.stdout.write(s.id + "\n");
    });

  snapshot
    .command("list")
    .description("list snapshots, newest first")
    .option("--env <name>", "only snapshots of this environment")
    .option("--json", "print JSON")
    .action(async (o: { env?: string; json?: boolean }) => {
      const list = await client().snapshots.list(o.env ? { environment: o.env } : {});
      if (o.json) return printJson(list);
      printTable(
        ["ID", "NAME", "ENVIRONMENT", "FROM SESSION", "CREATED", "BY"],
        list.map((s) => [s.id, s.name ?? (s.autoRemove ? "(fork)" : "-"), `${s.environment}@v${s.version}`, s.sourceSession, s.createdAt, s.createdBy]),
      );
    });

  snapshot
    .command("show <snapshot>")
    .description("show one snapshot (by id or name) and what uses it")
    .option("--json", "print JSON")
    .action(async (ref: string, o: { json?: boolean }) => {
      const s = await client().snapshots.get(ref);
      if (o.json) return printJson(s);
      for (const [k, v] of Object.entries(s)) {
        const text = Array.isArray(v) ? (v.length ? v.join(", ") : "-") : v === null ? "-" : String(v);
        process.stdout.write(`${(k + ":").padEnd(15)}${text}\n`);
      }
    });

  snapshot
    .command("rm <snapshot>")
    .description("remove a snapshot and free its layer (refused while running sessions started from it use it)")
    .action(async (ref: string) => {
      await client().snapshots.remove(ref);
    });

  const pool = program.command("pool").description("warm pools: sandboxes started ahead, claimed by session starts");

  pool
    .command("list")
    .description("list pools: size, ready and starting members, their memory")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const list = await client().pools.list();
      if (o.json) return printJson(list);
      printTable(["ENVIRONMENT", "VERSION", "MIN", "MAX", "READY", "STARTING", "MEMORY", "SET BY"], list.map(poolRow));
      for (const p of list) if (p.refused) process.stdout.write(`${p.environment}: no members: ${p.refused}\n`);
    });

  pool
    .command("set <environment>")
    .description("keep --min members of the environment's current version ready (admin; overrides the file's pool:)")
    .requiredOption("--min <n>", "members to keep ready (0 empties the pool)")
    .option("--max <n>", "most members at once; the pool grows toward it while sessions claim members (default: --min)")
    .option("--json", "print the pool as JSON")
    .action(async (environment: string, o: { min: string; max?: string; json?: boolean }) => {
      const size = { min: count(o.min, "--min"), ...(o.max !== undefined ? { max: count(o.max, "--max") } : {}) };
      const p = await client().pools.set(environment, size);
      if (o.json) printJson(p);
      else printTable(["ENVIRONMENT", "VERSION", "MIN", "MAX", "READY", "STARTING", "MEMORY", "SET BY"], [poolRow(p)]);
    });

  pool
    .command("reset <environment>")
    .description("forget the size set with pool set: the environment file's pool: applies again (admin)")
    .option("--json", "print the pool as JSON")
    .action(async (environment: string, o: { json?: boolean }) => {
      const p = await client().pools.reset(environment);
      if (o.json) printJson(p);
      else printTable(["ENVIRONMENT", "VERSION", "MIN", "MAX", "READY", "STARTING", "MEMORY", "SET BY"], [poolRow(p)]);
    });

  program
    .command("gc")
    .description("remove the layers nothing keeps (old template versions, fork snapshots no session uses) now (admin; it also runs on its own)")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const r = await client().gc();
      if (o.json) return printJson(r);
      process.stdout.write(`removed ${r.layers.length} layer(s), ${r.snapshots.length} fork snapshot(s), ${r.orphans.length} orphaned snapshot layer(s)\n`);
    });
}

function poolRow(p: PoolInfo): string[] {
  return [
    p.environment,
    p.version === null ? "-" : `v${p.version}`,
    String(p.min),
    String(p.max),
    String(p.ready),
    p.stale ? `${p.starting} (+${p.stale} old)` : String(p.starting),
    p.memoryBytes === null ? "-" : bytes(p.memoryBytes),
    p.source === "set" ? "pool set" : "file",
  ];
}

function count(text: string, flag: string): number {
  if (!/^\d+$/.test(text)) throw new PaddockError("invalid_argument", `bad ${flag} ${JSON.stringify(text)}: a whole number`);
  return Number(text);
}
