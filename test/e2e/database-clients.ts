/**
 * The database clients the end-to-end test runs inside a sandbox, as source text it writes there:
 * node-postgres (`pg`, copied into the sandbox's /workspace/node_modules) and Python's psycopg2
 * (Debian's python3-psycopg2, seen through `base: host`). Each prints one JSON line of what it
 * observed, so the test asserts on facts, not on logs. Waits inside them poll a real condition
 * (pg_stat_activity shows the query running), never a fixed time.
 */

/** The npm packages `pg` needs at run time (pg-cloudflare is optional and left out). */
export const PG_PACKAGES = [
  "pg",
  "pg-connection-string",
  "pg-pool",
  "pg-protocol",
  "pg-types",
  "pg-int8",
  "pgpass",
  "split2",
  "postgres-array",
  "postgres-bytea",
  "postgres-date",
  "postgres-interval",
  "xtend",
];

/** node-postgres: query, named prepared statements, LISTEN/NOTIFY, cancel, a large result, TLS. */
export const NODE_CLIENT = String.raw`
import pg from "pg";
const url = process.env.DATABASE_URL;
const out = {};
const connect = async (connectionString) => { const c = new pg.Client({ connectionString }); await c.connect(); return c; };
const c = await connect(url);
out.select = (await c.query("select 1 + 1 as two")).rows[0].two;
out.prepared = [];
for (const id of [1, 2]) out.prepared.push((await c.query({ name: "item_by_id", text: "select name from items where id = $1", values: [id] })).rows[0]?.name);
await c.query({ text: "insert into items (id, name) values ($1, $2)", values: [100, "from node"] });
out.inserted = (await c.query("select name from items where id = 100")).rows[0]?.name;

const listener = await connect(url);
await listener.query("LISTEN paddock_events");
const heard = new Promise((resolve) => listener.on("notification", (n) => resolve(n.payload)));
await c.query("select pg_notify('paddock_events', 'hello from node')");
out.notify = await heard;

const sleep = new pg.Query("select pg_sleep(30)");
const ended = new Promise((resolve) => { sleep.on("error", (e) => resolve(e.code)); sleep.on("end", () => resolve("finished")); });
const t0 = Date.now();
c.query(sleep);
for (let i = 0; i < 3000; i++) {
  const r = await listener.query("select count(*)::int as n from pg_stat_activity where state = 'active' and query = 'select pg_sleep(30)'");
  if (r.rows[0].n > 0) break;
  await new Promise((r) => setTimeout(r, 10));
}
new pg.Client({ connectionString: url }).cancel(c, sleep);
out.cancel = await ended;
out.cancelMs = Date.now() - t0;
out.afterCancel = (await c.query("select 'still usable' as s")).rows[0].s;

const big = await c.query("select g, repeat('x', 500) as pad from generate_series(1, 100000) g");
out.bigRows = big.rowCount;
out.bigLast = big.rows[big.rows.length - 1].g;
await c.end();
await listener.end();

const tls = await connect(url + (url.includes("?") ? "&" : "?") + "sslmode=verify-full");
out.tls = (await tls.query("select 'over tls' as s")).rows[0].s;
out.tlsEncrypted = tls.connection.stream.encrypted === true;
await tls.end();
console.log(JSON.stringify(out));
`;

/** psycopg2 (libpq): query, PREPARE/EXECUTE, COPY in and out, LISTEN/NOTIFY, cancel, a large result. */
export const PY_CLIENT = String.raw`
import io, json, os, select, threading, time
import psycopg2, psycopg2.errors
url = os.environ["DATABASE_URL"]
out = {}
c = psycopg2.connect(url); c.autocommit = True
cur = c.cursor()
cur.execute("select %s::int + 1", (41,)); out["select"] = cur.fetchone()[0]
cur.execute("PREPARE item_by_id(int) AS select name from items where id = $1")
cur.execute("EXECUTE item_by_id(2)"); out["prepared"] = cur.fetchone()[0]
cur.copy_expert("COPY items (id, name) FROM STDIN", io.StringIO("200\tcopied one\n201\tcopied two\n"))
buf = io.StringIO(); cur.copy_expert("COPY (select id, name from items where id >= 200 order by id) TO STDOUT", buf)
out["copy_out"] = buf.getvalue()

listener = psycopg2.connect(url); listener.autocommit = True
listener.cursor().execute("LISTEN paddock_events")
cur.execute("NOTIFY paddock_events, 'hello from python'")
deadline = time.time() + 30
while not listener.notifies and time.time() < deadline:
    select.select([listener], [], [], 1); listener.poll()
out["notify"] = listener.notifies[0].payload if listener.notifies else None

victim = psycopg2.connect(url)
def cancel_when_running():
    mon = listener.cursor()
    for _ in range(3000):
        mon.execute("select count(*) from pg_stat_activity where state = 'active' and query = 'select pg_sleep(30)'")
        if mon.fetchone()[0] > 0: break
        time.sleep(0.01)
    victim.cancel()
t = threading.Thread(target=cancel_when_running); t.start()
t0 = time.time()
try:
    victim.cursor().execute("select pg_sleep(30)"); out["cancel"] = "finished"
except psycopg2.errors.QueryCanceled as e:
    out["cancel"] = e.pgcode
out["cancel_ms"] = int((time.time() - t0) * 1000)
t.join()

cur.execute("select g, repeat('x', 500) from generate_series(1, 100000) g")
rows = cur.fetchall(); out["big_rows"] = len(rows); out["big_last"] = rows[-1][0]
print(json.dumps(out))
`;
