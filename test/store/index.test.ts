/** openStore: which strings name a store, and how the others are refused. */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { PaddockError } from "../../src/core/errors.ts";
import { openSqliteStore, openStore } from "../../src/store/index.ts";
import { rejectsWith, session } from "./suite-fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "paddock store-"));

after(() => rmSync(dir, { recursive: true, force: true }));

void describe("openStore", () => {
  void it("opens sqlite:///abs/path.db at that path, decoding %-escapes", async () => {
    const path = join(dir, "url store.db");
    const store = await openStore(`sqlite://${encodeURI(path)}`);
    await store.createSession(session("s1"));
    await store.close();
    assert.ok(existsSync(path));
    const again = await openSqliteStore(path);
    assert.equal((await again.getSession("s1"))?.id, "s1");
    await again.close();
  });

  void it("opens a plain path and :memory:", async () => {
    const path = join(dir, "plain.db");
    await (await openStore(path)).close();
    assert.ok(existsSync(path));
    const memory = await openStore(":memory:");
    assert.deepEqual(await memory.listSessions(), []);
    await memory.close();
  });

  void it("refuses PostgreSQL URLs for now, saying what to use instead", async () => {
    for (const url of ["postgres://paddock@db/paddock", "postgresql://db/paddock", "POSTGRES://db/x"]) {
      await assert.rejects(openStore(url), (err: unknown) => {
        assert.ok(err instanceof PaddockError);
        assert.equal(err.code, "invalid_argument");
        assert.equal(err.message, "PostgreSQL stores are not supported yet; use a sqlite path");
        return true;
      });
    }
  });

  void it("refuses other schemes, sqlite URLs with a host or no path, and an empty string", async () => {
    await rejectsWith(openStore("mysql://db/x"), "invalid_argument", /scheme "mysql"/);
    await rejectsWith(openStore("sqlite://relative/x.db"), "invalid_argument", /three slashes/);
    await rejectsWith(openStore("sqlite:///"), "invalid_argument", /three slashes/);
    await rejectsWith(openStore("sqlite:relative.db"), "invalid_argument", /three slashes/);
    await rejectsWith(openStore(`sqlite://${join(dir, "q.db")}?mode=ro`), "invalid_argument", /query/);
    await rejectsWith(openStore("  "), "invalid_argument", /empty/);
  });
});
