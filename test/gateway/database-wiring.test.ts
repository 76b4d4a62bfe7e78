// The database gateway wired into the gateway (issue 16): placeholder URLs, who a connection is
// (by source address and user token), read-only unless the registration says write, TLS with the
// session CA, and unregister closing connections. A real PostgreSQL; the gateway on 127.0.0.1.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import net from "node:net";
import pg from "pg";
import { createGateway, type EgressRecord, type Gateway, type GatewaySessionSpec } from "../../src/gateway/index.ts";
import { makeDatabasePlaceholder } from "../../src/gateway/placeholders.ts";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { until } from "../helpers/wait.ts";

/** A socket that connects from a chosen loopback address: how the gateway tells sessions apart. */
class SocketFrom extends net.Socket {
  constructor(private readonly from: string) {
    super();
  }
  override connect(...args: unknown[]): this {
    const [port, host] = args as [number, string];
    return super.connect({ port, host, localAddress: this.from });
  }
}

const spec = (id: string, sourceIp: string, extra: Partial<GatewaySessionSpec> = {}): GatewaySessionSpec => ({
  id, sourceIp, policy: { allow: [], deny: ["*"] }, secrets: [{ name: "DATABASE_URL", hosts: [], in: ["header"], kind: "database" }], scope: { environment: "db" }, ...extra,
});

void describe("database placeholders", () => {
  void it("name the gateway, keep the database and harmless parameters, drop the upstream's own", () => {
    const ph = makeDatabasePlaceholder("postgres://app:REAL@db.internal:6543/appdb?sslmode=verify-full&sslrootcert=/srv/ca.pem&application_name=etl&options=-c%20role%3Dadmin&sslkey=/k&api_token=REAL2", "10.200.0.1");
    const u = new URL(ph.text);
    assert.match(u.username, /^paddock-ph-[0-9a-f]{32}$/);
    assert.match(u.password, /^paddock-ph-[0-9a-f]{32}$/);
    assert.deepEqual(ph.tokens, [{ token: u.username, role: "user" }, { token: u.password, role: "password" }]);
    assert.equal(u.host, "10.200.0.1:5432");
    assert.equal(u.pathname, "/appdb");
    assert.deepEqual([...u.searchParams], [["application_name", "etl"], ["sslmode", "verify-full"], ["sslrootcert", "/etc/paddock/ca.pem"]]);
    assert.ok(!ph.text.includes("REAL") && !ph.text.includes("db.internal") && !ph.text.includes("role"), "only client-side parameters are kept, unknown ones too are left out");
  });

  void it("without a value (or a URL) there is no database name to give", () => {
    for (const v of [null, "not a url"]) assert.match(makeDatabasePlaceholder(v, "10.200.0.1").text, /^postgres:\/\/paddock-ph-[0-9a-f]{32}:paddock-ph-[0-9a-f]{32}@10\.200\.0\.1:5432$/);
    assert.doesNotMatch(makeDatabasePlaceholder("postgres://a:b@h/x?sslmode=prefer", "10.200.0.1").text, /sslmode/, "prefer: the client's default decides");
  });
});

void describe("database listener wired to the session table", () => {
  let db: TestPostgres;
  let gw: Gateway;
  const records: EgressRecord[] = [];
  const logs: string[] = [];
  let rw: { url: URL; caCertPem: string };
  let ro: { url: URL; caCertPem: string };

  const client = (who: { url: URL }, extra: pg.ClientConfig = {}, localAddress = "127.0.0.1") =>
    new pg.Client({ host: "127.0.0.1", port: gw.endpoints.postgresPort, user: who.url.username, password: who.url.password, database: db.database, stream: () => new SocketFrom(localAddress), ...extra });

  before(async () => {
    db = await startPostgres();
    await db.psql(`create table t (id int); grant all on t to ${db.user};`);
    gw = await createGateway({ address: "127.0.0.1", secrets: { resolve: async () => db.url, touch: () => undefined }, onRecord: (r) => records.push(r), log: (l) => logs.push(l) });
    const a = await gw.register(spec("rw", "127.0.0.1", { databaseWrite: true }));
    const b = await gw.register(spec("ro", "127.0.0.2"));
    rw = { url: new URL(a.placeholders["DATABASE_URL"]!), caCertPem: a.caCertPem };
    ro = { url: new URL(b.placeholders["DATABASE_URL"]!), caCertPem: b.caCertPem };
  });
  after(async () => {
    await gw?.close();
    await db?.stop();
  });

  void it("a session registered with databaseWrite writes; one without is read-only (fail closed)", async () => {
    const w = client(rw);
    await w.connect();
    assert.equal((await w.query("insert into t values (1)")).rowCount, 1);
    await w.end();
    const r = client(ro, {}, "127.0.0.2");
    await r.connect();
    assert.equal((await r.query("select count(*)::int as n from t")).rows[0].n, 1);
    await assert.rejects(r.query("insert into t values (2)"), (e: { code?: string }) => e.code === "25006");
    await r.end();
    assert.ok(records.some((x) => x.sessionId === "ro" && x.decision === "denied" && x.protocol === "postgres"), "records are marked for the audit");
  });

  void it("a user token from another session's address identifies nobody: refused like a wrong password", async () => {
    const stolen = client(rw, {}, "127.0.0.2");
    await assert.rejects(stolen.connect(), (e: { code?: string }) => e.code === "28P01");
    const ok = client(ro, {}, "127.0.0.2");
    await ok.connect();
    await ok.end();
  });

  void it("offers TLS with a leaf for the gateway's address from the session's own CA", async () => {
    const c = client(rw, { ssl: { ca: rw.caCertPem, rejectUnauthorized: true } });
    await c.connect();
    assert.equal((await c.query("select 1 as one")).rows[0].one, 1);
    await c.end();
    const wrongCa = client(rw, { ssl: { ca: ro.caCertPem, rejectUnauthorized: true } });
    await assert.rejects(wrongCa.connect(), /self[- ]signed|unable to verify|certificate/i, "another session's CA does not vouch for this leaf");
  });

  void it("unregistering a session closes its open connections", async () => {
    const c = client(rw);
    await c.connect();
    const ended = new Promise<void>((resolve) => c.once("error", () => resolve()).once("end", () => resolve()));
    await gw.unregister("rw");
    await ended;
    await until(async () => logs.some((l) => l.includes("unregistered session rw")), 30_000, "the unregister log line");
    assert.ok(!JSON.stringify(records).includes(db.password) && !logs.join("\n").includes(db.password), "the real password is in a record or log line");
  });
});
