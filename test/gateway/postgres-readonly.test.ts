/**
 * A session whose role lacks `write` gets a connection that cannot write: the upstream starts
 * with default_transaction_read_only=on, every escape from it is refused by the gateway before it
 * reaches the server (simple Query, inside multi-statement strings, and extended-protocol Parse),
 * and the refusal is an ErrorResponse with SQLSTATE 25006 the client can act on. What a parser
 * cannot see (an operator whose function turns the setting off) closes the connection.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import PG from "pg";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { startHarness, type Harness } from "./postgres-harness.ts";

const run = promisify(execFile);

/** Each undoes read-only or writes; each must be refused with 25006 and never reach the server. */
const ESCAPES = [
  "SET default_transaction_read_only = off",
  "SET SESSION default_transaction_read_only TO off",
  "RESET default_transaction_read_only",
  "SET transaction_read_only = off",
  "SET LOCAL transaction_read_only = off",
  "SET ROLE postgres",
  "RESET ROLE",
  "SET SESSION AUTHORIZATION postgres",
  "RESET SESSION AUTHORIZATION",
  "RESET ALL",
  "DISCARD ALL",
  "BEGIN READ WRITE",
  "START TRANSACTION READ WRITE",
  "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
  "SET TRANSACTION READ WRITE",
  "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
  "SELECT set_config('default_transaction_read_only', 'off', false)",
  "SELECT pg_catalog.set_config('transaction_read_only', 'off', true)",
  "SELECT set_config('role', 'postgres', false)",
  "SELECT set_config(n, 'off', false) FROM (VALUES ('default_transaction_read_only')) v(n)",
  "DO $$ BEGIN PERFORM set_config('default_transaction_read_only', 'off', false); END $$",
  "CALL flip()",
  "SELECT flip_fn()",
  "SELECT public.lower('x')",
  "INSERT INTO items VALUES (9, 'nine')",
  "UPDATE items SET name = 'x'",
  "DELETE FROM items",
  "WITH w AS (INSERT INTO items VALUES (10, 'ten') RETURNING id) SELECT * FROM w",
  "EXPLAIN ANALYZE DELETE FROM items",
  "SELECT * INTO stolen FROM items",
  "PREPARE p AS DELETE FROM items",
  "CREATE TABLE created (a int)",
  "COPY items FROM STDIN",
  "LOCK TABLE items",
  "NOTIFY chan",
  "SELECT nextval('s')",
  "SELECT 1 === 1",
  "SELECT 1 OPERATOR(public.+) 1",
];

void describe("postgres gateway: read-only sessions", () => {
  let pg: TestPostgres;
  let h: Harness;
  let c: PG.Client;

  before(async () => {
    pg = await startPostgres();
    await pg.psql(`CREATE TABLE items (id int, name text); INSERT INTO items VALUES (1, 'one'); GRANT ALL ON items TO app;
      CREATE FUNCTION flip_fn() RETURNS text LANGUAGE sql AS $$ SELECT set_config('default_transaction_read_only', 'off', false) $$;
      CREATE PROCEDURE flip() LANGUAGE sql AS $$ SELECT set_config('default_transaction_read_only', 'off', false) $$;
      CREATE FUNCTION flip_op(int, int) RETURNS boolean LANGUAGE sql AS $$ SELECT set_config('default_transaction_read_only', 'off', false) = 'off' $$;
      CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = flip_op);
      CREATE FUNCTION flip_text_op(text, int) RETURNS boolean LANGUAGE sql AS $$ SELECT set_config('default_transaction_read_only', 'off', false) = 'off' $$;
      CREATE OPERATOR = (LEFTARG = text, RIGHTARG = int, FUNCTION = flip_text_op);
      CREATE SEQUENCE s; GRANT ALL ON SEQUENCE s TO app;`);
    h = await startHarness(pg, { write: false });
    c = new PG.Client({ connectionString: h.url(h.sessions.s1) });
    await c.connect();
  });
  after(async () => {
    await c?.end().catch(() => undefined);
    await h?.close();
    await pg?.stop();
  });

  const stillReadOnly = async (): Promise<void> => {
    assert.deepEqual((await c.query("SHOW default_transaction_read_only")).rows, [{ default_transaction_read_only: "on" }]);
    assert.equal((await pg.psql("SELECT count(*) FROM items")).trim(), "1", "nothing was written");
  };

  for (const sql of ESCAPES) {
    void it(`refuses: ${sql}`, async () => {
      await assert.rejects(c.query(sql), (e: Error & { code?: string; hint?: string }) => {
        assert.equal(e.code, "25006", e.message);
        assert.match(e.message, /role cannot write/);
        assert.match(e.hint ?? "", /read-only statements/);
        return true;
      });
      // Via the extended protocol (a named prepared statement: Parse is judged).
      await assert.rejects(c.query({ name: `esc-${ESCAPES.indexOf(sql)}`, text: sql }), (e: Error & { code?: string }) => e.code === "25006");
      // Inside a multi-statement string, after a harmless statement.
      await assert.rejects(c.query(`SELECT 1; ${sql}`), (e: Error & { code?: string }) => e.code === "25006");
      await stillReadOnly();
      const rec = h.records.filter((r) => r.path === sql && r.decision === "denied");
      assert.ok(rec.length >= 2 && rec.every((r) => r.status === 25006 && r.rule === "database.read-only"), "recorded as refused");
    });
  }

  void it("runs what is read-only: SELECT, SHOW, EXPLAIN, read-only transactions, harmless SET, prepared statements", async () => {
    assert.equal((await c.query("SELECT count(*)::int AS n, lower('A') AS l FROM items")).rows[0].n, 1);
    assert.equal((await c.query("SHOW transaction_read_only")).rows[0].transaction_read_only, "on");
    await c.query("EXPLAIN SELECT * FROM items");
    await c.query("BEGIN; SELECT 1; COMMIT");
    await c.query("BEGIN READ ONLY");
    await c.query("COMMIT");
    await c.query("SET statement_timeout = '5s'");
    await c.query("SET application_name = 'agent'");
    await c.query("SELECT set_config('application_name', 'agent2', false)");
    assert.equal((await c.query({ name: "ro-get", text: "SELECT name FROM items WHERE id = $1", values: [1] })).rows[0].name, "one");
    const out = await run("psql", [h.url(h.sessions.s1), "-X", "-q", "-c", "\\copy items to stdout"]);
    assert.equal(out.stdout, "1\tone\n");
  });

  void it("a statement the parser cannot read is refused (fail closed), not sent", async () => {
    await assert.rejects(c.query("SELEKT 1"), (e: Error & { code?: string }) => e.code === "42601" && /paddock/.test(e.message));
    await stillReadOnly();
  });

  void it("an overload of a standard operator whose function turns read-only off (invisible to a parser) gets the connection closed", async () => {
    const victim = new PG.Client({ connectionString: h.url(h.sessions.s1) });
    await victim.connect();
    const closed = new Promise<void>((r) => victim.on("error", () => r()));
    await assert.rejects(victim.query("SELECT 'x'::text = 1; COMMIT; SELECT 2"), /read-only|terminated|closed/i);
    await closed.catch(() => undefined);
    await assert.rejects(victim.query("INSERT INTO items VALUES (7, 'seven')"));
    await victim.end().catch(() => undefined);
    assert.ok(h.records.some((r) => r.reason?.includes("default_transaction_read_only was turned off")));
    assert.equal((await pg.psql("SELECT count(*) FROM items")).trim(), "1");
  });
});
