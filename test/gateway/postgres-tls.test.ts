/**
 * TLS on both sides of the Postgres gateway: towards the client with the session CA's certificate
 * (psql sslmode=require and verify-full, node-postgres verifying the CA), and towards a PostgreSQL
 * with ssl=on (verify-full against its CA, from the URL's sslrootcert or the gateway's extra CAs;
 * an upstream whose certificate is not trusted is refused).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import PG from "pg";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { tempDir } from "../helpers/tmp.ts";
import { startHarness, type Harness } from "./postgres-harness.ts";

const run = promisify(execFile);

void describe("postgres gateway: TLS", () => {
  let pg: TestPostgres;
  let h: Harness;
  let dir: { path: string; remove: () => Promise<void> };
  let caFile: string;

  before(async () => {
    pg = await startPostgres({ tls: true });
    h = await startHarness(pg);
    dir = await tempDir("paddock-pgtls-");
    caFile = join(dir.path, "session-ca.pem");
    await writeFile(caFile, h.ca.certPem);
  });
  after(async () => {
    await h?.close();
    await pg?.stop();
    await dir?.remove();
  });

  void it("psql with sslmode=require and sslmode=verify-full (session CA) talks TLS to the gateway", async () => {
    for (const mode of ["sslmode=require", `sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}`]) {
      const out = await run("psql", [h.url(h.sessions.s1, mode), "-X", "-At", "-c", "SELECT 41 + 1", "-c", "\\conninfo"]);
      assert.match(out.stdout, /^42$/m);
      assert.match(out.stdout, /SSL connection \(protocol: TLSv1\.[23]/, out.stdout);
    }
  });

  void it("node-postgres verifies the gateway's certificate against the session CA", async () => {
    const c = new PG.Client({ connectionString: h.url(h.sessions.s1, "sslmode=disable").replace("?sslmode=disable", ""), ssl: { ca: h.ca.certPem } });
    await c.connect();
    try {
      const stream = (c as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream;
      assert.equal(stream.encrypted, true);
      assert.equal(stream.authorized, true);
      assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1);
    } finally {
      await c.end();
    }
    // A client trusting another CA refuses the gateway (it is not the database it thinks).
    const wrong = new PG.Client({ connectionString: h.url(h.sessions.s1, "sslmode=disable").replace("?sslmode=disable", ""), ssl: { ca: pg.caPem! } });
    await assert.rejects(wrong.connect(), /certificate/);
  });

  void it("the upstream leg is TLS verified against the URL's sslrootcert (verify-full)", async () => {
    const c = new PG.Client({ connectionString: h.url(h.sessions.s1) });
    await c.connect();
    try {
      const r = await c.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
      assert.equal(r.rows[0].ssl, true);
    } finally {
      await c.end();
    }
  });

  void it("verify-full with the CA from upstreamCaPem works; without any trusted CA the upstream is refused with a clear error", async () => {
    const bare = pg.url.replace(/&sslrootcert=[^&]*/, "");
    const trusted = await startHarness(pg, { upstreamUrl: bare, upstreamCaPem: [pg.caPem!] });
    const untrusted = await startHarness(pg, { upstreamUrl: bare });
    try {
      const ok = new PG.Client({ connectionString: trusted.url(trusted.sessions.s1) });
      await ok.connect();
      assert.equal((await ok.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).rows[0].ssl, true);
      await ok.end();
      const bad = new PG.Client({ connectionString: untrusted.url(untrusted.sessions.s1) });
      await assert.rejects(bad.connect(), (e: Error & { code?: string }) => {
        assert.equal(e.code, "08006");
        assert.match(e.message, /could not log in to the database for DATABASE_URL: TLS with the database at 127\.0\.0\.1:\d+ failed/);
        assert.ok(!e.message.includes(pg.password));
        return true;
      });
      assert.ok(untrusted.records.some((r) => r.method === "CONNECT" && r.decision === "denied" && r.status === 8006));
      assert.ok(!JSON.stringify([untrusted.records, untrusted.logs]).includes(pg.password));
    } finally {
      await trusted.close();
      await untrusted.close();
    }
  });
});
