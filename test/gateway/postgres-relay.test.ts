/**
 * The Postgres gateway relays real clients (node-postgres and Debian's psql) to a real PostgreSQL
 * with the real password while the clients only know the placeholder: queries, prepared
 * statements, COPY in and out, LISTEN/NOTIFY, cancel, a large streamed result, and one record per
 * statement. Everything the clients received, every record and log line is searched for the real
 * password at the end.
 */
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import PG from "pg";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { until } from "../helpers/wait.ts";
import { startHarness, type Harness } from "./postgres-harness.ts";

const run = promisify(execFile);

void describe("postgres gateway: relay with real clients", () => {
  let pg: TestPostgres;
  let h: Harness;
  /** Every byte the gateway sent to clients through the tap. */
  const received: Buffer[] = [];
  let tapPort = 0;
  let tap: net.Server;

  before(async () => {
    pg = await startPostgres();
    h = await startHarness(pg);
    await pg.psql("CREATE TABLE items (id int primary key, name text); GRANT ALL ON items TO app;");
    // A transparent tap between clients and the gateway: what the gateway sends is kept.
    tap = net.createServer((client) => {
      const up = net.connect({ host: "127.0.0.1", port: h.port });
      up.on("data", (d: Buffer) => received.push(Buffer.from(d)));
      client.pipe(up).pipe(client);
      client.on("error", () => up.destroy());
      up.on("error", () => client.destroy());
    });
    await new Promise<void>((r) => tap.listen(0, "127.0.0.1", r));
    tapPort = (tap.address() as net.AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((r) => tap?.close(() => r()));
    await h?.close();
    await pg?.stop();
  });

  const url = (extra = "sslmode=disable"): string => h.url(h.sessions.s1, extra).replace(`:${h.port}/`, `:${tapPort}/`);
  const connect = async (): Promise<PG.Client> => {
    const c = new PG.Client({ connectionString: url() });
    await c.connect();
    return c;
  };

  void it("node-postgres runs queries and named prepared statements as the real role", async () => {
    const c = await connect();
    try {
      assert.deepEqual((await c.query("SELECT current_user AS u, 1 + 1 AS two")).rows, [{ u: "app", two: 2 }]);
      await c.query("INSERT INTO items VALUES (1, 'one'), (2, 'two')");
      for (const id of [1, 2]) {
        const r = await c.query({ name: "by-id", text: "SELECT name FROM items WHERE id = $1", values: [id] });
        assert.equal(r.rows[0].name, id === 1 ? "one" : "two");
      }
      const multi = await c.query("SELECT 1 AS a; SELECT 2 AS b");
      assert.equal((multi as unknown as PG.QueryResult[]).length, 2);
    } finally {
      await c.end();
    }
    const paths = h.records.map((r) => `${r.method} ${r.path} ${r.reason}`);
    assert.ok(paths.includes("QUERY SELECT current_user AS u, 1 + 1 AS two SELECT 1"), paths.join("\n"));
    assert.equal(paths.filter((p) => p === "EXECUTE SELECT name FROM items WHERE id = $1 SELECT 1").length, 2, "one record per execution of the prepared statement");
    assert.ok(paths.includes("QUERY SELECT 1 AS a SELECT 1") && paths.includes("QUERY SELECT 2 AS b SELECT 1"), "a multi-statement Query gives one record per statement");
    assert.ok(!JSON.stringify(h.records).includes('"one"'), "bound values are not recorded");
    const failed = await connect();
    await assert.rejects(failed.query("SELECT * FROM missing_table"), (e: Error & { code?: string }) => e.code === "42P01");
    await failed.end();
    assert.ok(h.records.some((r) => r.path === "SELECT * FROM missing_table" && r.status === 0 && r.reason === "SQLSTATE 42P01"), "errors are recorded with their SQLSTATE");
  });

  void it("psql connects with the placeholder and runs COPY FROM STDIN and TO STDOUT", async () => {
    const copyIn = spawn("psql", [url(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "\\copy items (id, name) from stdin"], { stdio: ["pipe", "pipe", "pipe"] });
    let err = "";
    copyIn.stderr.on("data", (d: Buffer) => (err += d.toString()));
    copyIn.stdin.end(Array.from({ length: 1000 }, (_, i) => `${i + 100}\tname ${i}`).join("\n") + "\n");
    const code = await new Promise<number | null>((r) => copyIn.on("close", r));
    assert.equal(code, 0, err);
    const out = await run("psql", [url(), "-X", "-q", "-c", "\\copy (SELECT id, name FROM items WHERE id >= 100 ORDER BY id) to stdout"]);
    const lines = out.stdout.trim().split("\n");
    assert.equal(lines.length, 1000);
    assert.equal(lines[0], "100\tname 0");
    assert.ok(h.records.some((r) => r.method === "COPY" && /^COPY\s+items/.test(r.path) && r.bytesOut > 10_000 && r.reason === "COPY 1000"), "COPY FROM is recorded with its bytes");
    assert.ok(h.records.some((r) => r.method === "COPY" && r.reason === "COPY 1000" && r.bytesIn > 10_000), "COPY TO is recorded with its bytes");
  });

  void it("LISTEN/NOTIFY: a notification arrives through the gateway", async () => {
    const listener = await connect();
    const notifier = await connect();
    try {
      const got = new Promise<PG.Notification>((r) => listener.on("notification", r));
      await listener.query("LISTEN paddock_test");
      await notifier.query("NOTIFY paddock_test, 'hello'");
      const n = await got;
      assert.equal(n.channel, "paddock_test");
      assert.equal(n.payload, "hello");
    } finally {
      await listener.end();
      await notifier.end();
    }
  });

  void it("node-postgres cancels pg_sleep(30) through the gateway's keys (57014 in well under 30 s)", async () => {
    const c = await connect();
    try {
      const started = Date.now();
      const sleeping = c.query("SELECT pg_sleep(30)");
      await until(async () => (await pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")).trim() === "1", 30_000, "pg_sleep to run");
      const canceller = new PG.Client({ connectionString: url() });
      (canceller as unknown as { cancel(c: PG.Client, q: unknown): void }).cancel(c, (c as unknown as { activeQuery: unknown }).activeQuery);
      await assert.rejects(sleeping, (e: Error & { code?: string }) => e.code === "57014");
      assert.ok(Date.now() - started < 20_000, `cancelled after ${Date.now() - started} ms`);
      assert.deepEqual((await c.query("SELECT 1 AS ok")).rows, [{ ok: 1 }], "the connection is usable after the cancel");
    } finally {
      await c.end();
    }
  });

  void it("psql's Ctrl-C (SIGINT) cancels a long query", async () => {
    const p = spawn("psql", [url(), "-X", "-c", "SELECT pg_sleep(31)"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    await until(async () => (await pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(31)' AND state = 'active'")).trim() === "1", 30_000, "psql's pg_sleep to run");
    const started = Date.now();
    p.kill("SIGINT");
    const code = await new Promise<number | null>((r) => p.on("close", r));
    assert.equal(code, 1);
    assert.match(err, /canceling statement due to user request/);
    assert.ok(Date.now() - started < 20_000);
  });

  void it("streams a large result (100k rows, ~50 MB)", async () => {
    const c = await connect();
    try {
      const r = await c.query("SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 100000) g");
      assert.equal(r.rows.length, 100_000);
      assert.equal(r.rows[99_999].g, 100_000);
    } finally {
      await c.end();
    }
    const rec = h.records.find((x) => x.path.startsWith("SELECT g, repeat"));
    assert.ok(rec && rec.bytesIn > 50_000_000 && rec.reason === "SELECT 100000", JSON.stringify(rec));
  });

  void it("never shows the real password: not to clients, not in records, not in logs", () => {
    const all = [Buffer.concat(received).toString("latin1"), JSON.stringify(h.records), h.logs.join("\n")].join("\n");
    assert.ok(received.length > 0 && h.records.length > 10);
    assert.ok(!all.includes(pg.password), "the real password appeared");
    assert.ok(!all.includes(encodeURIComponent(pg.password)));
  });
});
