import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import type { PaddockClient } from "../../src/client/index.ts";
import { repoRoot, testServer } from "../helpers/server.ts";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { until } from "../helpers/wait.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { NODE_CLIENT, PG_PACKAGES, PY_CLIENT } from "./database-clients.ts";

/**
 * The Postgres credential gateway end to end (issue 16): a real PostgreSQL 15 (Debian's) with a
 * password-protected role, an environment whose DATABASE_URL is that server's real URL (set in the
 * vault), real sandboxes, and real clients inside them: psql, node-postgres and psycopg2. The
 * sandbox only ever holds a placeholder URL naming the gateway; the gateway proves the placeholder
 * with SCRAM and connects upstream with the real password.
 */
const exec = promisify(execFile);

const ENV = `name: db
secrets:
  - DATABASE_URL
  - name: REPORTS_DB
    kind: postgres
rbac:
  engineering: [read, write]
  agent: [read]
`;

/** The read-only escapes tried end to end (the engine's tests try the whole list at the protocol level). */
const ESCAPES = [
  "insert into items (id, name) values (900, 'escape')",
  "SET default_transaction_read_only = off",
  "BEGIN READ WRITE",
  "select set_config('default_transaction_read_only', 'off', false)",
  "RESET ALL",
  "SET ROLE postgres",
  "DO $$ BEGIN INSERT INTO items VALUES (901, 'do block'); END $$",
];

void describe("database gateway: real PostgreSQL, real clients in real sandboxes", () => {
  let pg: TestPostgres;
  let server: RunningServer;
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  let a: string; // admin's session: may write
  let b: string; // a second session of the same environment
  let ro: string; // an agent's session: role `agent` has read only, so the intersection lacks write
  const serverLog: string[] = [];
  const sh = async (id: string, script: string, timeoutMs = 120_000) => client.sessions.run(id, { argv: ["sh", "-c", script], timeoutMs });
  const urlOf = async (id: string) => (await sh(id, 'printf %s "$DATABASE_URL"')).stdout;

  before(async () => {
    pg = await startPostgres();
    const t = await testServer({ log: (line) => serverLog.push(line) });
    ({ server, client, cleanup } = t);
    await pg.psql("create table items (id int primary key, name text); insert into items values (1, 'one'), (2, 'two');" + `grant all on items to ${pg.user};`);
    await client.secrets.set("DATABASE_URL", pg.url);
    await client.secrets.set("REPORTS_DB", pg.url);
    await client.environments.apply("runtime.yml", ENV);
    a = (await client.sessions.start("db")).id;
    b = (await client.sessions.start("db")).id;
    // What a run does (Runs: the session is the person's, the agent acts in it), minus the agent CLI.
    await server.cp.identities.add({ name: "db-agent", kind: "agent", role: "agent", team: null }, "database e2e");
    ro = (await server.cp.sessions.start("db", { startedBy: "admin", agent: "db-agent" })).id;
    // node-postgres and what it needs, copied into the sandbox's workspace as one tarball.
    const tar = await exec("tar", ["-czf", "-", "-C", join(repoRoot, "node_modules"), ...PG_PACKAGES], { encoding: "buffer", maxBuffer: 64 << 20 });
    for (const id of [a, ro]) {
      await client.files.write(id, "/tmp/pg.tgz", tar.stdout);
      await sh(id, "mkdir -p /workspace/node_modules && tar -xzf /tmp/pg.tgz -C /workspace/node_modules");
    }
    await client.files.write(a, "/workspace/client.mjs", Buffer.from(NODE_CLIENT));
    await client.files.write(a, "/workspace/client.py", Buffer.from(PY_CLIENT));
  });

  after(async () => {
    await cleanup?.();
    await pg?.stop();
  });

  void it("the sandbox sees a usable URL naming the gateway, never the real password", async () => {
    const url = new URL(await urlOf(a));
    assert.equal(url.protocol, "postgres:");
    assert.match(url.username, /^paddock-ph-[0-9a-f]{32}$/);
    assert.match(url.password, /^paddock-ph-[0-9a-f]{32}$/);
    assert.equal(url.hostname, server.cp.network.gatewayIp);
    assert.equal(url.port, "5432");
    assert.equal(url.pathname, `/${pg.database}`);
    const seen = await sh(a, "env; tr '\\0' '\\n' < /proc/self/environ; cat /etc/paddock/ca.pem /etc/resolv.conf; psql \"postgres://$(printf %s \"$DATABASE_URL\" | sed 's|://[^:]*:[^@]*@|://nobody:wrong@|')\" -c 'select 1' 2>&1; true");
    assert.ok(!seen.stdout.includes(pg.password) && !seen.stderr.includes(pg.password), "the real password is visible in the sandbox");
    const grep = await sh(a, `grep -rl -e '${pg.password}' /etc/paddock /workspace /home /tmp /run /var/tmp; echo "done $?"`);
    assert.equal(grep.stdout, "done 1\n", `grep found the password or failed: ${grep.stderr}`);
  });

  void it("psql: query, write, COPY in and out, a large result, TLS verified against the session CA", async () => {
    const r = await sh(
      a,
      [
        'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -Atc "select name from items where id = 1"',
        'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -Atc "insert into items values (3, \'three\')"',
        "printf '10\\tten\\n11\\televen\\n' > /tmp/in.tsv",
        'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "\\copy items (id, name) from /tmp/in.tsv"',
        'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "\\copy (select id, name from items where id >= 10 order by id) to /tmp/out.tsv"',
        "cat /tmp/out.tsv",
        'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -Atc "select g, repeat(\'x\', 500) from generate_series(1, 100000) g" | wc -l',
        'PGSSLMODE=verify-full PGSSLROOTCERT=/etc/paddock/ca.pem psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "\\conninfo"',
      ].join(" && "),
    );
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], "one");
    assert.equal(lines[1], "INSERT 0 1");
    assert.match(r.stdout, /COPY 2\n/);
    assert.match(r.stdout, /10\tten\n11\televen\n/);
    assert.match(r.stdout, /^100000$/m);
    assert.match(r.stdout, /SSL connection \(protocol: TLSv1\.[23]/);
    assert.equal((await pg.psql("select name from items where id = 3")).trim(), "three", "the write reached the real server");
    // A secret of any name declared kind: postgres gets its own URL (its own tokens), which works the same.
    const reports = await sh(a, 'test "$REPORTS_DB" != "$DATABASE_URL" && psql "$REPORTS_DB" -v ON_ERROR_STOP=1 -Atc "select current_user"');
    assert.equal(reports.stdout, `${pg.user}\n`, reports.stderr);
  });

  void it("node-postgres: prepared statements, LISTEN/NOTIFY, cancel, a large result, TLS", async () => {
    const r = await sh(a, "cd /workspace && node client.mjs");
    assert.equal(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Record<string, unknown>;
    assert.equal(out.select, 2);
    assert.deepEqual(out.prepared, ["one", "two"]);
    assert.equal(out.inserted, "from node");
    assert.equal(out.notify, "hello from node");
    assert.equal(out.cancel, "57014", "the query was cancelled (query_canceled), not left to run");
    assert.ok((out.cancelMs as number) < 25_000, `cancel took ${String(out.cancelMs)} ms`);
    assert.equal(out.afterCancel, "still usable");
    assert.equal(out.bigRows, 100000);
    assert.equal(out.bigLast, 100000);
    assert.equal(out.tls, "over tls");
    assert.equal(out.tlsEncrypted, true);
  });

  void it("psycopg2: PREPARE/EXECUTE, COPY in and out, LISTEN/NOTIFY, cancel, a large result", async () => {
    const r = await sh(a, "cd /workspace && /usr/bin/python3 client.py");
    assert.equal(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Record<string, unknown>;
    assert.equal(out.select, 42);
    assert.equal(out.prepared, "two");
    assert.equal(out.copy_out, "200\tcopied one\n201\tcopied two\n");
    assert.equal(out.notify, "hello from python");
    assert.equal(out.cancel, "57014");
    assert.ok((out.cancel_ms as number) < 25_000, `cancel took ${String(out.cancel_ms)} ms`);
    assert.equal(out.big_rows, 100000);
    assert.equal(out.big_last, 100000);
  });

  void it("the real password instead of the placeholder is refused, and says nothing of it", async () => {
    const real = new URL(pg.url);
    const gw = new URL(await urlOf(b));
    // The attacker knows the real credentials: they still only work where the gateway puts them.
    const attempts = [`postgres://${real.username}:${real.password}@${gw.host}${gw.pathname}`, `postgres://${gw.username}:${real.password}@${gw.host}${gw.pathname}`];
    for (const url of attempts) {
      const r = await sh(b, `psql '${url}' -Atc 'select 1' 2>&1; echo "exit $?"`);
      assert.match(r.stdout, /exit 2\n$/, r.stdout);
      assert.match(r.stdout, /authentication failed/);
      // The client's own command line held it; what the gateway answered must not.
      assert.equal(r.stdout.split(real.password).length - 1, 0, `the answer echoes the password: ${r.stdout}`);
    }
    const direct = await sh(b, `psql 'postgres://${real.username}:${real.password}@${real.host}${real.pathname}' -Atc 'select 1' 2>&1; echo "exit $?"`);
    assert.match(direct.stdout, /exit 2\n$/, "the real server is not reachable from the sandbox at all");
  });

  void it("another session's URL is refused from this sandbox, and both sessions keep working", async () => {
    const urlA = await urlOf(a);
    const stolen = await sh(b, `psql '${urlA}' -Atc 'select 1' 2>&1; echo "exit $?"`);
    assert.match(stolen.stdout, /authentication failed[\s\S]*exit 2\n$/, stolen.stdout);
    assert.equal((await sh(a, 'psql "$DATABASE_URL" -Atc "select 1"')).stdout, "1\n");
    assert.equal((await sh(b, 'psql "$DATABASE_URL" -Atc "select 1"')).stdout, "1\n");
  });

  void it("a flood of connections from one sandbox is capped there; the other session keeps working", async () => {
    const flood = await sh(
      b,
      `/usr/bin/python3 -c '
import os, psycopg2
held, refused = [], []
for i in range(80):
    try: held.append(psycopg2.connect(os.environ["DATABASE_URL"]))
    except psycopg2.OperationalError as e: refused.append(str(e))
print(len(held), len(refused), refused[0].strip() if refused else "")
'`,
    );
    // 64 per session (DEFAULT_POSTGRES_LIMITS); the rest are refused at once. (libpq, which opens
    // with an SSLRequest, reports the refusal as "server sent an error response during SSL exchange".)
    assert.match(flood.stdout, /^64 16 \S/m, flood.stdout + flood.stderr);
    assert.equal((await sh(a, 'psql "$DATABASE_URL" -Atc "select 1"')).stdout, "1\n", "session a is not affected");
    assert.equal((await sh(b, 'psql "$DATABASE_URL" -Atc "select 1"')).stdout, "1\n", "b's connections were released with its process");
  });

  void it("an agent whose role lacks write gets a read-only connection; escapes are refused, the gateway stays up", async () => {
    assert.equal((await sh(ro, 'psql "$DATABASE_URL" -Atc "select count(*) > 0 from items"')).stdout, "t\n", "reads work");
    for (const sql of ESCAPES) {
      const quoted = sql.replace(/[$"\\`]/g, (c) => `\\${c}`);
      const r = await sh(ro, `psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -Atc "${quoted}" 2>&1; echo "exit $?"`);
      assert.match(r.stdout, /exit [12]\n$/, `${sql}: ${r.stdout}`);
      assert.match(r.stdout, /read-only|read only|cannot execute/i, `${sql}: ${r.stdout}`);
      // Between escapes, the other session's connections go on.
      assert.equal((await sh(a, 'psql "$DATABASE_URL" -Atc "select 1"')).stdout, "1\n", `after ${sql}`);
    }
    const node = await sh(ro, `cd /workspace && node -e 'import("pg").then(async ({ default: pg }) => { const c = new pg.Client({ connectionString: process.env.DATABASE_URL }); await c.connect(); try { await c.query({ text: "insert into items values ($1, $2)", values: [902, "prepared write"] }); console.log("wrote"); } catch (e) { console.log("refused " + e.code); } await c.end(); })'`);
    assert.match(node.stdout, /^refused 25006$/m, node.stdout + node.stderr);
    assert.equal((await pg.psql("select count(*) from items where id >= 900")).trim(), "0", "nothing the read-only session tried was written");
  });

  void it("restored registrations keep the URL working: a session from a snapshot, and a restarted gateway process", async () => {
    // The snapshot's files may hold the URL (a .env an agent wrote): the fork keeps the same one.
    await sh(a, 'printf "%s" "$DATABASE_URL" > /workspace/.env.db');
    const snap = await client.snapshots.create(a);
    const fork = (await client.sessions.start(null, { from: snap.id })).id;
    const kept = (await client.files.read(fork, "/workspace/.env.db")).toString();
    assert.equal(await urlOf(fork), kept, "the fork's DATABASE_URL is the snapshot's");
    assert.equal((await sh(fork, `psql "$(cat /workspace/.env.db)" -Atc "select name from items where id = 2"`)).stdout, "two\n");
    // The same URL from the session the snapshot was taken of works there too, and only there.
    assert.equal((await sh(a, 'psql "$DATABASE_URL" -Atc "select 1"')).stdout, "1\n");
    assert.match((await sh(b, `psql '${kept}' -Atc 'select 1' 2>&1; echo "exit $?"`)).stdout, /authentication failed[\s\S]*exit 2\n$/);
    await client.sessions.stop(fork);

    const oldPid = server.cp.gateway.pid;
    assert.ok(oldPid);
    process.kill(oldPid, "SIGKILL");
    await until(async () => serverLog.some((l) => /gateway: process restarted, \d+ session\(s\) served again/.test(l)), 30_000, "the control plane to restart the gateway process");
    const again = await until(async () => {
      const r = await sh(a, 'psql "$DATABASE_URL" -Atc "select 41 + 1" 2>&1');
      return r.stdout === "42\n" ? r : null;
    }, 30_000, "session a's URL to work through the restarted gateway");
    assert.equal(again.stdout, "42\n");
    assert.equal((await sh(ro, 'psql "$DATABASE_URL" -Atc "insert into items values (903, \'x\')" 2>&1; echo "exit $?"')).stdout.includes("exit 0"), false, "still read-only after the restart");
  });

  void it("statements are recorded in the session's egress log and the audit, never with the password", async () => {
    const records = await until(async () => {
      const rs = await client.sessions.egress(a, { limit: 1000 });
      return rs.some((r) => r.path.includes("select name from items where id = 1")) ? rs : null;
    }, 30_000, "the psql statement in session a's egress records");
    const stmt = records.find((r) => r.path.includes("select name from items where id = 1"));
    assert.ok(stmt);
    assert.equal(stmt.decision, "allowed");
    assert.ok(["QUERY", "PARSE"].includes(stmt.method), stmt.method);
    assert.ok(records.some((r) => r.method === "COPY" || /copy/i.test(r.path)), "COPY is recorded");
    const denied = await until(async () => {
      const rs = await client.sessions.egress(ro, { limit: 1000 });
      return rs.find((r) => r.decision === "denied" && /default_transaction_read_only/i.test(r.path)) ?? null;
    }, 30_000, "the refused escape in the read-only session's records");
    assert.match(denied.rule, /read-only|read_only|readonly/i);
    const audit = await until(async () => {
      const list = await client.audit.list({ session: a, limit: 1000 });
      return list.some((e) => e.action === "database.statement" && e.target.includes("select name from items where id = 1")) ? list : null;
    }, 30_000, "a database.statement audit entry for session a");
    const roAudit = await client.audit.list({ session: ro, limit: 1000 });
    assert.ok(roAudit.some((e) => e.action === "database.statement" && e.decision === "denied"), "the refused escape is audited as denied");
    const everything = JSON.stringify([records, audit, roAudit, await client.sessions.egress(b, { limit: 1000 }), await client.audit.list({ session: b, limit: 1000 })]) + serverLog.join("\n");
    assert.ok(!everything.includes(pg.password), "the real password appears in a record, an audit entry or the server log");
  });
});
