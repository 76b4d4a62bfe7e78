/**
 * Starting from a snapshot with services (issue #10): API call → session running with its
 * services ready, for a Redis session and for a PostgreSQL session seeded with about 100 MB
 * (pgbench scale 7), each snapshotted while running. Beside them, in the same run: the same
 * environment's cold start (template, services start from the seeded data after a clean
 * shutdown) and the bare service started on the host (`redis-server`, `postgres` on a copy of the
 * data), so the sandbox's share is visible. Prints one JSON document.
 * Usage: node --import tsx bench/services.ts [--runs N]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createConnection } from "node:net";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../src/server/index.ts";
import { PaddockClient } from "../src/client/index.ts";
import { machine, summarize, time } from "./stats.ts";
import { releaseHome } from "../test/helpers/server.ts";
import { runCommand } from "../src/core/index.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 20;
const PG = "/usr/lib/postgresql/15/bin";

const REDIS = `name: bench-redis
compute: { memory: 512MiB, timeout: 30m }
services:
  redis:
    command: exec redis-server --port 6379 --save "" --appendonly yes --dir /var/lib/redis-data
    ready: { port: 6379 }
    dataDirs: [/var/lib/redis-data]
seed:
  - seq 1 100000 | awk '{ print "SET key:" $1 " value-" $1 }' | redis-cli -p 6379 --pipe >/dev/null
`;

const POSTGRES = `name: bench-pg
compute: { memory: 1GiB, timeout: 30m }
services:
  postgres:
    command: |
      [ -f /var/lib/pgdata/PG_VERSION ] || ${PG}/initdb -D /var/lib/pgdata -A trust -U paddock >/dev/null
      exec ${PG}/postgres -D /var/lib/pgdata -k /tmp -c listen_addresses=127.0.0.1 -p 5432
    ready: { port: 5432, timeout: 5m }
    dataDirs: [/var/lib/pgdata]
seed:
  - ${PG}/pgbench -h 127.0.0.1 -U paddock -i -q -s 7 postgres
`;

/** Resolve once something accepts TCP connections on 127.0.0.1:port (retry on refusal). */
async function portReady(port: number, deadlineMs = 60_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: "127.0.0.1", port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`port ${port} never answered`);
    await new Promise((r) => setImmediate(r));
  }
}

async function hostService(argv: string[], port: number, uid?: number): Promise<number> {
  let proc: ChildProcess | undefined;
  const ms = await time(async () => {
    proc = spawn(argv[0]!, argv.slice(1), { stdio: "ignore", ...(uid !== undefined ? { uid, gid: uid } : {}) });
    await portReady(port);
  });
  await new Promise<void>((resolve) => {
    proc!.on("exit", () => resolve());
    proc!.kill("SIGKILL");
  });
  return ms;
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "paddock-bench-"));
  const server = await startServer({ home, port: 0 });
  const client = new PaddockClient({ url: server.url, token: (await readFile(join(home, "admin.token"), "utf8")).trim() });
  const scratch = await mkdtemp(join(tmpdir(), "paddock-bench-host-"));
  // The host postgres runs as the layer's owner, who must reach its data directory inside.
  await chmod(scratch, 0o755);
  try {
    const results = [];
    const baselines = [];
    for (const [file, name, label] of [
      [REDIS, "bench-redis", "Redis (100 000 keys)"],
      [POSTGRES, "bench-pg", "PostgreSQL (pgbench scale 7, about 100 MB)"],
    ] as const) {
      process.stderr.write(`building ${name}…\n`);
      await client.environments.apply("bench.yml", file);
      const source = await client.sessions.start(name);
      const snap = await client.snapshots.create(source.id, { name: `${name}-snap` });
      const fromSnapshot: number[] = [];
      const cold: number[] = [];
      for (let i = 0; i < runs; i++) {
        let id = "";
        fromSnapshot.push(await time(async () => (id = (await client.sessions.start(null, { from: snap.id })).id)));
        await client.sessions.remove(id);
        cold.push(await time(async () => (id = (await client.sessions.start(name)).id)));
        await client.sessions.remove(id);
      }
      results.push(summarize(`start from a snapshot, ${label} ready`, fromSnapshot), summarize(`cold start, ${label} ready`, cold));
      await client.sessions.remove(source.id);
      await client.snapshots.remove(snap.id);
    }
    // Host baselines: the same servers started bare, on the host, until their port answers.
    const redisHost: number[] = [];
    for (let i = 0; i < runs; i++) redisHost.push(await hostService(["redis-server", "--port", "16379", "--save", "", "--dir", scratch], 16379));
    baselines.push(summarize("host: redis-server until its port answers (empty)", redisHost));
    const env = await client.environments.get("bench-pg");
    const layer = env.template?.layers.at(-1);
    if (layer) {
      const data = join(scratch, "pgdata");
      // cp -a keeps the owner: the layer's files belong to the session user as mapped on the host.
      await runCommand(["cp", "-a", join(server.cp.layers.layerPath(layer), "var/lib/pgdata"), data]);
      const pgHost: number[] = [];
      for (let i = 0; i < runs; i++) pgHost.push(await hostService([`${PG}/postgres`, "-D", data, "-k", data, "-c", "listen_addresses=127.0.0.1", "-p", "15432"], 15432, 101000));
      baselines.push(summarize("host: postgres on a copy of the seeded data until its port answers", pgHost));
    }
    const report = {
      benchmark: "services",
      machine: machine(),
      layerStore: server.cp.layers.kind,
      runs,
      baseline: baselines,
      results,
      targets: { redisFromSnapshotP50Ms: 150, postgresFromSnapshotP50Ms: 1000 },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    for (const s of await client.sessions.list()) await client.sessions.remove(s.id).catch(() => undefined);
    await server.close({ unmountLayers: true, removeHostNetwork: true });
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
