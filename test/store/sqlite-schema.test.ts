/** SQLite schema migrations: recorded once, applied in order, all-or-nothing, never downgraded. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { after, describe, it } from "node:test";
import { openSqliteStore } from "../../src/store/sqlite.ts";
import { applyMigrations, MIGRATIONS, type Migration } from "../../src/store/sqlite-schema.ts";
import { rejectsWith, session } from "./suite-fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "paddock-schema-"));
let files = 0;
const freshPath = (): string => join(dir, `schema-${++files}.db`);

after(() => rmSync(dir, { recursive: true, force: true }));

interface MigrationRow {
  version: number;
  name: string;
  applied_at: string;
}

/** Run `fn` on a raw connection to `path` (what an operator's sqlite3 shell would see). */
function withRaw<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

const recorded = (db: Database.Database): MigrationRow[] =>
  db.prepare<[], MigrationRow>("SELECT version, name, applied_at FROM schema_migrations ORDER BY version").all();

void describe("sqlite schema migrations", () => {
  void it("records every migration once; reopening applies nothing again", async () => {
    const path = freshPath();
    await (await openSqliteStore(path)).close();
    const first = withRaw(path, recorded);
    assert.deepEqual(first.map((r) => r.version), MIGRATIONS.map((m) => m.version));
    for (const row of first) assert.ok(!Number.isNaN(Date.parse(row.applied_at)), row.applied_at);

    await (await openSqliteStore(path)).close();
    assert.deepEqual(withRaw(path, recorded), first);
    assert.deepEqual(withRaw(path, (db) => applyMigrations(db)), []);
  });

  void it("creates the tables the store needs", () => {
    const tables = withRaw(":memory:", (db) => {
      applyMigrations(db);
      return db.prepare<[], string>("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all();
    });
    assert.deepEqual(tables, [
      "api_tokens",
      "approvals",
      "audit_records",
      "build_logs",
      "e2b_access_tokens",
      "e2b_sandboxes",
      "egress_records",
      "environment_versions",
      "environments",
      "layers",
      "pool_members",
      "pool_settings",
      "previews",
      "principals",
      "run_events",
      "runs",
      "schema_migrations",
      "sealed_blobs",
      "secrets",
      "session_routes",
      "sessions",
      "snapshots",
      "sqlite_sequence",
      "templates",
      "webhook_deliveries",
    ]);
  });

  void it("applies only the migrations a database has not recorded, in order", async () => {
    const path = freshPath();
    await (await openSqliteStore(path)).close();
    const later: Migration[] = [
      ...MIGRATIONS,
      { version: 90, name: "add notes", sql: "CREATE TABLE notes (id TEXT PRIMARY KEY) STRICT;" },
      { version: 91, name: "add note text", sql: "ALTER TABLE notes ADD COLUMN body TEXT;" },
    ];
    assert.deepEqual(withRaw(path, (db) => applyMigrations(db, later)), [90, 91]);
    assert.deepEqual(withRaw(path, (db) => applyMigrations(db, later)), []);
    assert.deepEqual(withRaw(path, (db) => recorded(db).map((r) => r.version)), [...MIGRATIONS.map((m) => m.version), 90, 91]);
  });

  void it("a failing migration leaves the schema as it was", async () => {
    const path = freshPath();
    await (await openSqliteStore(path)).close();
    const broken: Migration[] = [...MIGRATIONS, { version: 90, name: "broken", sql: "CREATE TABLE half (x); CREATE TABLE oops (" }];
    assert.throws(() => withRaw(path, (db) => applyMigrations(db, broken)));
    withRaw(path, (db) => {
      assert.deepEqual(recorded(db).map((r) => r.version), MIGRATIONS.map((m) => m.version));
      assert.equal(db.prepare("SELECT name FROM sqlite_schema WHERE name = 'half'").get(), undefined);
    });
  });

  void it("upgrades a version-1 database to the vault and guard tables, keeping its data", async () => {
    const path = freshPath();
    withRaw(path, (db) => applyMigrations(db, MIGRATIONS.slice(0, 1)));
    withRaw(path, (db) =>
      db
        .prepare("INSERT INTO sessions VALUES ('s1', 'runtime', 1, 'tpl-1', 'local', 'running', '2026-11-02T10:00:00.000Z', 0, NULL, NULL, NULL, '{}')")
        .run(),
    );
    const store = await openSqliteStore(path);
    try {
      assert.equal((await store.getSession("s1"))?.id, session("s1").id);
      // Sessions from before identities existed ran for the installation's admin.
      assert.equal((await store.getSession("s1"))?.startedBy, "admin");
      assert.equal((await store.getSession("s1"))?.agent, null);
      assert.equal((await store.getSession("s1"))?.snapshot, null, "sessions from before snapshots started from none");
      await store.putSealed("k", { ciphertext: Buffer.from("x"), iv: Buffer.alloc(12), tag: Buffer.alloc(16), keyId: "k1" });
      assert.ok(await store.getSealed("k"));
    } finally {
      await store.close();
    }
    assert.deepEqual(withRaw(path, (db) => recorded(db).map((r) => r.version)), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  void it("refuses to update or delete audit records (append-only at the database)", () => {
    withRaw(":memory:", (db) => {
      applyMigrations(db);
      db.prepare("INSERT INTO audit_records VALUES (1, 't', 'a', 'human', NULL, 'x', 'y', NULL, NULL, 'allowed', NULL, '{}', '', 'h')").run();
      assert.throws(() => db.prepare("UPDATE audit_records SET decision = 'denied'").run(), /append-only/);
      assert.throws(() => db.prepare("DELETE FROM audit_records").run(), /append-only/);
      assert.equal(db.prepare("SELECT decision FROM audit_records").pluck().get(), "allowed");
    });
  });

  void it("rejects migration lists that are not strictly increasing", () => {
    const bad: Migration[] = [{ version: 2, name: "b", sql: "" }, { version: 1, name: "a", sql: "" }];
    withRaw(":memory:", (db) => assert.throws(() => applyMigrations(db, bad), /increasing/));
  });

  void it("refuses a database migrated by a newer Paddock, untouched", async () => {
    const path = freshPath();
    await (await openSqliteStore(path)).close();
    withRaw(path, (db) => db.prepare("INSERT INTO schema_migrations VALUES (999, 'from the future', '2030-01-01T00:00:00Z')").run());
    await rejectsWith(openSqliteStore(path), "unavailable", /schema version 999.*upgrade Paddock/);
    assert.equal(withRaw(path, recorded).length, MIGRATIONS.length + 1);
  });
});
