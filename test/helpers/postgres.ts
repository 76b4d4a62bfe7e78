/**
 * A real PostgreSQL (Debian's postgresql 15) for one test file: initdb into a fresh directory owned
 * by the `postgres` system user (the server refuses to run as root), listening on 127.0.0.1 on a
 * free port with its unix socket inside that directory, scram-sha-256 for TCP, a password-protected
 * role and a database owned by it. With `tls: true` the server has ssl=on with a certificate for
 * localhost and 127.0.0.1 from a CA made for it (`caPem`), and accepts only `hostssl`.
 *
 * @example
 * const pg = await startPostgres();
 * after(() => pg.stop());
 * const client = new pg.Client({ connectionString: pg.url });
 *
 * API (kept stable: the gateway's tests and bench/db use it): startPostgres(opts?) →
 * { host, port, user, password, database, url, caPem?, dir, psql(sql), stop() }.
 * `url` is the role's URL (with `?sslmode=verify-full&sslrootcert=…` when tls). `psql(sql)` runs
 * SQL as the superuser over the unix socket and resolves its unaligned, tuples-only output.
 * `stop()` kills the server (pg_ctl stop -m immediate) and removes the directory; call it in after().
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { until } from "./wait.ts";

const run = promisify(execFile);
const BIN = "/usr/lib/postgresql/15/bin";

export interface TestPostgres {
  host: string;
  port: number;
  /** The password-protected role (not a superuser). */
  user: string;
  password: string;
  database: string;
  /** postgres://user:password@127.0.0.1:port/database (with sslmode=verify-full and sslrootcert when tls). */
  url: string;
  /** The CA that signed the server's certificate (tls only). */
  caPem?: string;
  /** Path of caPem on disk (tls only). */
  caPath?: string;
  /** The server's directory (data, socket, log). */
  dir: string;
  /** Run SQL as the superuser; resolves stdout (unaligned, tuples only). */
  psql(sql: string): Promise<string>;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** ssl=on with a test CA; only hostssl connections accepted. */
  tls?: boolean;
  /** Extra postgresql.conf lines. */
  conf?: string[];
}

/** A TCP port free on 127.0.0.1 now (for a server about to bind it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const asPostgres = (cmd: string, args: string[], opts: { timeout?: number } = {}) =>
  run("runuser", ["-u", "postgres", "--", cmd, ...args], { timeout: opts.timeout ?? 60_000, maxBuffer: 64 * 1024 * 1024 });

async function makeCertificates(dir: string): Promise<{ caPem: string; caPath: string }> {
  const ssl = (args: string[]) => run("openssl", args, { cwd: dir });
  await ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=paddock test postgres CA", "-keyout", "ca.key", "-out", "ca.crt"]);
  await ssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]);
  await writeFile(join(dir, "san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  await ssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt"]);
  return { caPem: await readFile(join(dir, "ca.crt"), "utf8"), caPath: join(dir, "ca.crt") };
}

/** Whether a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Servers whose test process died before its after() hook ran (killed by a timeout or a signal)
 * would otherwise run on: each directory names its owner's pid, and the next start stops the
 * servers of owners that are gone.
 */
async function reapOrphans(): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!name.startsWith("paddock-pg-")) continue;
    const dir = join(tmpdir(), name);
    const owner = Number((await readFile(join(dir, "owner.pid"), "utf8").catch(() => "")).trim());
    if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) continue;
    await asPostgres(`${BIN}/pg_ctl`, ["-D", join(dir, "data"), "stop", "-m", "immediate"]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<TestPostgres> {
  await reapOrphans();
  const dir = await mkdtemp(join(tmpdir(), "paddock-pg-"));
  await writeFile(join(dir, "owner.pid"), `${process.pid}\n`);
  const { uid, gid } = await run("id", ["-u", "postgres"]).then(async (u) => ({ uid: Number(u.stdout.trim()), gid: Number((await run("id", ["-g", "postgres"])).stdout.trim()) }));
  await chown(dir, uid, gid);
  await chmod(dir, 0o755); // the CA file must be readable by tests; the data directory below is 0700
  const data = join(dir, "data");
  const port = await freePort();
  let started = false;
  const stop = async (): Promise<void> => {
    if (started) await asPostgres(`${BIN}/pg_ctl`, ["-D", data, "stop", "-m", "immediate"]).catch(() => undefined);
    started = false;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const superPassword = randomBytes(12).toString("hex");
    await writeFile(join(dir, "pwfile"), `${superPassword}\n`);
    await chown(join(dir, "pwfile"), uid, gid);
    await asPostgres(`${BIN}/initdb`, ["-D", data, "-U", "postgres", "--pwfile", join(dir, "pwfile"), "-A", "scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"]);
    let caPem: string | undefined;
    let caPath: string | undefined;
    const conf = [
      `port = ${port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      "password_encryption = 'scram-sha-256'",
      "fsync = off",
      "max_connections = 200",
      ...(opts.conf ?? []),
    ];
    if (opts.tls) {
      ({ caPem, caPath } = await makeCertificates(dir));
      for (const f of ["server.key", "server.crt", "ca.crt"]) await chown(join(dir, f), uid, gid);
      await chmod(join(dir, "server.key"), 0o600);
      await chmod(join(dir, "ca.crt"), 0o644);
      conf.push("ssl = on", `ssl_cert_file = '${dir}/server.crt'`, `ssl_key_file = '${dir}/server.key'`);
    }
    await writeFile(join(data, "postgresql.auto.conf"), `${conf.join("\n")}\n`);
    const hba = opts.tls
      ? ["local all all trust", "hostssl all all 127.0.0.1/32 scram-sha-256", "hostnossl all all 127.0.0.1/32 reject"]
      : ["local all all trust", "host all all 127.0.0.1/32 scram-sha-256"];
    await writeFile(join(data, "pg_hba.conf"), `${hba.join("\n")}\n`);
    await chown(join(data, "postgresql.auto.conf"), uid, gid);
    await chown(join(data, "pg_hba.conf"), uid, gid);
    await asPostgres(`${BIN}/pg_ctl`, ["-D", data, "-l", join(dir, "server.log"), "-W", "start"]);
    started = true;
    await until(async () => {
      try {
        await run("pg_isready", ["-h", dir, "-p", String(port)], { timeout: 10_000 });
        return true;
      } catch {
        return false;
      }
    }, 60_000, `PostgreSQL on port ${port} to accept connections`);

    const psql = async (sql: string): Promise<string> =>
      (await asPostgres("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-U", "postgres", "-d", "appdb", "-At", "-c", sql])).stdout;
    const user = "app";
    const password = randomBytes(18).toString("base64url");
    await asPostgres("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-U", "postgres", "-d", "postgres", "-c", `CREATE ROLE ${user} LOGIN PASSWORD '${password}'`, "-c", `CREATE DATABASE appdb OWNER ${user}`]);
    const query = opts.tls ? `?sslmode=verify-full&sslrootcert=${encodeURIComponent(caPath!)}` : "?sslmode=disable";
    return {
      host: "127.0.0.1",
      port,
      user,
      password,
      database: "appdb",
      url: `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/appdb${query}`,
      ...(caPem ? { caPem, caPath: caPath! } : {}),
      dir,
      psql,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
