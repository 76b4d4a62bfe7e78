/**
 * The Postgres credential gateway's cost (issue 16): pgbench's select-only script (`-S`) and its
 * default TPC-B-like script, three ways in one run against one real PostgreSQL 15 (Debian's,
 * started here): directly, through the gateway, and through Debian's pgbouncer (session pooling,
 * scram-sha-256 both ways, started and stopped here with its config in a temp dir). Prints one
 * JSON document: tps, per-transaction latency p50/p99 (from pgbench's --log), and each way's TPS
 * as a fraction of direct. Target: gateway ≥ 0.8 of direct for select-only.
 *
 * "gateway" is the real gateway in its own process (`startGatewayProcess`, as the control plane
 * runs it: secrets asked over IPC, records sent back), listening on 127.0.0.1 with a session
 * registered for 127.0.0.1, so pgbench on the host is that session: the figures isolate what the
 * database gateway itself costs (SCRAM against the placeholder, the upstream login, relaying,
 * statement parsing, a record per statement), with pgbench on the same cores in every way. That is
 * the comparison the target is about. A fourth way, "sandbox", is the whole product: a real server,
 * pgbench inside a real session on `$DATABASE_URL` (the veth and DNAT hop, the gateway process, and
 * the control plane storing and auditing every statement's record); `--no-sandbox` leaves it out.
 *
 * Usage: node --import tsx bench/db.ts [--seconds N] [--clients N] [--scale N] [--no-sandbox]
 */
import { spawn } from "node:child_process";
import { chown, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGatewayProcess, type EgressRecord, type GatewayProcess } from "../src/gateway/index.ts";
import { freePort, startPostgres, type TestPostgres } from "../test/helpers/postgres.ts";
import { until } from "../test/helpers/wait.ts";
import { machine } from "./stats.ts";
import { startServer } from "../src/server/index.ts";
import { PaddockClient } from "../src/client/index.ts";
import { releaseHome } from "../test/helpers/server.ts";

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) || fallback : fallback;
};
const SECONDS = arg("seconds", 20);
const CLIENTS = arg("clients", 4);
const SCALE = arg("scale", 4);
const PGBENCH = "/usr/lib/postgresql/15/bin/pgbench";
const PGBOUNCER = "/usr/sbin/pgbouncer";
const WITH_SANDBOX = !process.argv.includes("--no-sandbox");

interface Endpoint {
  way: "direct" | "gateway" | "pgbouncer" | "sandbox";
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

interface Result {
  way: Endpoint["way"];
  script: "select-only" | "tpcb-like";
  tps: number;
  transactions: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  failed: number;
}

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}


const percentile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** One pgbench run; latencies from its per-transaction log (the third field is the latency in µs). */
async function pgbench(e: Endpoint, script: Result["script"], logDir: string): Promise<Result> {
  const prefix = join(logDir, `${e.way}-${script}`);
  const args = ["-n", "-c", String(CLIENTS), "-j", String(Math.min(CLIENTS, 2)), "-T", String(SECONDS), "--log", `--log-prefix=${prefix}`, "-h", e.host, "-p", String(e.port), "-U", e.user];
  if (script === "select-only") args.push("-S");
  args.push(e.database);
  const r = await exec(PGBENCH, args, { PGPASSWORD: e.password, PGSSLMODE: "disable" });
  if (r.code !== 0) throw new Error(`pgbench ${e.way} ${script} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout)?.[1] ?? NaN);
  const failed = Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  const latencies: number[] = [];
  for (const f of await readdir(logDir)) {
    if (!f.startsWith(`${e.way}-${script}.`)) continue;
    for (const line of (await readFile(join(logDir, f), "utf8")).split("\n")) {
      const us = Number(line.split(" ")[2]);
      if (Number.isFinite(us) && line !== "") latencies.push(us / 1000);
    }
  }
  latencies.sort((x, y) => x - y);
  return { way: e.way, script, tps: round(tps, 1), transactions: latencies.length, latencyP50Ms: round(percentile(latencies, 0.5), 3), latencyP99Ms: round(percentile(latencies, 0.99), 3), failed };
}

/** The gateway in its own process, with one session registered for 127.0.0.1 whose DATABASE_URL is the real URL. */
async function startGateway(pg: TestPostgres, records: { n: number }): Promise<{ gw: GatewayProcess; endpoint: Endpoint }> {
  const gw = await startGatewayProcess({
    init: { address: "127.0.0.1", ports: { proxyPort: 0, httpPort: 0, httpsPort: 0, dnsPort: 0, postgresPort: 0 }, upstream: {} },
    secrets: { resolve: async (name) => (name === "DATABASE_URL" ? pg.url : null), touch: () => undefined },
    onRecord: (_r: EgressRecord) => void records.n++,
  });
  const reg = await gw.register({
    id: "bench-db",
    sourceIp: "127.0.0.1",
    policy: { allow: [], deny: ["*"] },
    secrets: [{ name: "DATABASE_URL", hosts: [], in: ["header"], kind: "database" }],
    scope: { environment: "bench" },
    databaseWrite: true,
  });
  const url = new URL(reg.placeholders["DATABASE_URL"] ?? "");
  return { gw, endpoint: { way: "gateway", host: "127.0.0.1", port: gw.endpoints.postgresPort, user: url.username, password: url.password, database: pg.database } };
}

/** Debian's pgbouncer as the postgres user (it refuses root), session pooling, scram-sha-256 to the client and upstream. */
async function startPgbouncer(pg: TestPostgres): Promise<{ endpoint: Endpoint; stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "paddock-pgbouncer-"));
  const port = await freePort();
  const { uid, gid } = { uid: Number((await exec("id", ["-u", "postgres"])).stdout.trim()), gid: Number((await exec("id", ["-g", "postgres"])).stdout.trim()) };
  const ini = `[databases]
${pg.database} = host=${pg.host} port=${pg.port} dbname=${pg.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${dir}/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = ${CLIENTS + 4}
logfile = ${dir}/pgbouncer.log
pidfile = ${dir}/pgbouncer.pid
`;
  await writeFile(join(dir, "pgbouncer.ini"), ini);
  // The plain password in the auth file: pgbouncer then does SCRAM with the client and with the server.
  await writeFile(join(dir, "userlist.txt"), `"${pg.user}" "${pg.password}"\n`, { mode: 0o600 });
  for (const f of ["", "pgbouncer.ini", "userlist.txt"]) await chown(join(dir, f), uid, gid);
  const started = await exec("runuser", ["-u", "postgres", "--", PGBOUNCER, "-d", join(dir, "pgbouncer.ini")]);
  if (started.code !== 0) throw new Error(`pgbouncer did not start: ${started.stderr}`);
  const endpoint: Endpoint = { way: "pgbouncer", host: "127.0.0.1", port, user: pg.user, password: pg.password, database: pg.database };
  await until(async () => (await exec("pg_isready", ["-h", "127.0.0.1", "-p", String(port)])).code === 0, 30_000, `pgbouncer on port ${port}`);
  return {
    endpoint,
    stop: async () => {
      const pid = Number((await readFile(join(dir, "pgbouncer.pid"), "utf8").catch(() => "")).trim());
      if (pid > 0) {
        process.kill(pid, "SIGTERM");
        await until(async () => {
          try {
            process.kill(pid, 0);
            return false;
          } catch {
            return true;
          }
        }, 30_000, "pgbouncer to exit");
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A real server and session whose DATABASE_URL is the real URL; pgbench runs inside the sandbox. */
async function startSandbox(pg: TestPostgres): Promise<{ run: (script: Result["script"]) => Promise<Result>; stop: () => Promise<void> }> {
  const home = await mkdtemp(join(tmpdir(), "paddock-bench-db-home-"));
  const server = await startServer({ home, port: 0 });
  const client = new PaddockClient({ url: server.url, token: (await readFile(join(home, "admin.token"), "utf8")).trim() });
  const stop = async (): Promise<void> => {
    for (const s of await client.sessions.list()) await client.sessions.remove(s.id).catch(() => undefined);
    await server.close({ unmountLayers: true, removeHostNetwork: true });
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
  };
  try {
    await client.secrets.set("DATABASE_URL", pg.url);
    await client.environments.apply("bench.yml", "name: bench-db\nsecrets:\n  - DATABASE_URL\n");
    const id = (await client.sessions.start("bench-db")).id;
    const sh = (script: string) => client.sessions.run(id, { argv: ["sh", "-c", script], timeoutMs: (SECONDS + 60) * 1000 });
    const run = async (script: Result["script"]): Promise<Result> => {
      const r = await sh(
        `rm -f /tmp/pgb.*; ${PGBENCH} -n -c ${CLIENTS} -j ${Math.min(CLIENTS, 2)} -T ${SECONDS} --log --log-prefix=/tmp/pgb ${script === "select-only" ? "-S" : ""} "$DATABASE_URL" && ` +
          // Percentiles inside the sandbox: the log has a line per transaction.
          `cat /tmp/pgb.* | awk '{ print $3 }' | sort -n | awk '{ a[NR] = $1 } END { print "latencies", a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1], NR }'`,
      );
      if (r.exitCode !== 0) throw new Error(`pgbench in the sandbox (${script}) exited ${r.exitCode}: ${r.stderr.slice(-2000)}`);
      const [p50, p99, n] = (/latencies (\d+) (\d+) (\d+)/.exec(r.stdout) ?? []).slice(1).map(Number);
      return {
        way: "sandbox", script, tps: round(Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout)?.[1] ?? NaN), 1), transactions: n ?? 0,
        latencyP50Ms: round((p50 ?? NaN) / 1000, 3), latencyP99Ms: round((p99 ?? NaN) / 1000, 3), failed: Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? 0),
      };
    };
    return { run, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function main(): Promise<void> {
  const pg = await startPostgres({ conf: ["max_connections = 100", "shared_buffers = 128MB"] });
  const logDir = await mkdtemp(join(tmpdir(), "paddock-bench-db-"));
  const records = { n: 0 };
  let gateway: GatewayProcess | null = null;
  let bouncer: { stop: () => Promise<void> } | null = null;
  let sandbox: Awaited<ReturnType<typeof startSandbox>> | null = null;
  try {
    const init = await exec(PGBENCH, ["-i", "-q", "-s", String(SCALE), "-h", pg.host, "-p", String(pg.port), "-U", pg.user, pg.database], { PGPASSWORD: pg.password });
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    const direct: Endpoint = { way: "direct", host: pg.host, port: pg.port, user: pg.user, password: pg.password, database: pg.database };
    const gw = await startGateway(pg, records);
    gateway = gw.gw;
    const pb = await startPgbouncer(pg);
    bouncer = pb;
    const ways = [direct, gw.endpoint, pb.endpoint];
    if (WITH_SANDBOX) sandbox = await startSandbox(pg);
    // A short warm-up of each way (page cache, the gateway's statement cache, pgbouncer's pool).
    for (const e of ways) await exec(PGBENCH, ["-n", "-S", "-c", "2", "-T", "2", "-h", e.host, "-p", String(e.port), "-U", e.user, e.database], { PGPASSWORD: e.password, PGSSLMODE: "disable" });
    const results: Result[] = [];
    for (const script of ["select-only", "tpcb-like"] as const) {
      for (const e of ways) results.push(await pgbench(e, script, logDir));
      if (sandbox) results.push(await sandbox.run(script));
    }
    const ratio = (r: Result) => {
      const base = results.find((x) => x.script === r.script && x.way === "direct");
      return base ? round(r.tps / base.tps, 3) : NaN;
    };
    const report = {
      benchmark: "database-gateway",
      machine: machine(),
      load: (await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" "),
      settings: { seconds: SECONDS, clients: CLIENTS, scale: SCALE, protocol: "simple", tls: false, postgres: "15 (Debian)", pgbouncer: (await exec(PGBOUNCER, ["--version"])).stdout.split("\n")[0] },
      results: results.map((r) => ({ ...r, ratioToDirect: ratio(r) })),
      gatewayRecords: records.n,
      target: { selectOnlyGatewayRatio: 0.8, met: (ratio(results.find((r) => r.way === "gateway" && r.script === "select-only")!) ?? 0) >= 0.8 },
    };
    console.log(JSON.stringify(report, null, 2));
  } finally {
    await sandbox?.stop().catch((err: Error) => console.error(`sandbox server stop: ${err.message}`));
    await bouncer?.stop().catch((err: Error) => console.error(`pgbouncer stop: ${err.message}`));
    await gateway?.close();
    await pg.stop();
    await rm(logDir, { recursive: true, force: true });
  }
}

await main();
