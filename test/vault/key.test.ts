/** The vault key: created 0600 at first start, refused when exposed or malformed, or taken from PADDOCK_VAULT_KEY. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, readdir, stat, symlink, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { openVault } from "../../src/gateway/vault.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import { rejectsWith } from "../store/suite-fixtures.ts";
import { tempDir } from "../helpers/tmp.ts";
import { fixture, type Fixture } from "./helpers.ts";

const SCOPE = { environment: "runtime" };

void describe("vault key", () => {
  let f: Fixture | undefined;
  afterEach(async () => {
    await f?.cleanup();
    f = undefined;
  });

  void it("creates ${home}/vault.key at first start: 32 bytes, mode 0600, no temp file left", async () => {
    f = await fixture();
    const st = await stat(join(f.home, "vault.key"));
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(st.size, 32);
    assert.deepEqual(await readdir(f.home), ["vault.key"]);
    assert.equal(f.vault.keySource, "file");
    assert.match(f.vault.keyId, /^[0-9a-f]{16}$/);
  });

  void it("a restart reads the same key and decrypts what was set before", async () => {
    f = await fixture();
    await f.vault.set("TOKEN", "v1", SCOPE);
    const again = await f.reopen();
    assert.equal(again.keyId, f.vault.keyId);
    assert.equal(await again.resolve("TOKEN", SCOPE), "v1");
  });

  void it("two vaults starting at once on a new home agree on one key", async () => {
    const dir = await tempDir();
    const store = await openSqliteStore(":memory:");
    try {
      const home = join(dir.path, "home");
      const [a, b] = await Promise.all([openVault({ home, store, env: {} }), openVault({ home, store, env: {} })]);
      assert.equal(a.keyId, b.keyId);
    } finally {
      await store.close();
      await dir.remove();
    }
  });

  void it("refuses a key file group or others can read (0644), saying how to fix it", async () => {
    f = await fixture();
    const path = join(f.home, "vault.key");
    await chmod(path, 0o644);
    await rejectsWith(f.reopen(), "unavailable", /mode 0644.*chmod 600/);
    await chmod(path, 0o640);
    await rejectsWith(f.reopen(), "unavailable", /mode 0640/);
  });

  void it("refuses a key file that is not exactly 32 bytes", async () => {
    f = await fixture();
    const path = join(f.home, "vault.key");
    await writeFile(path, randomBytes(31), { mode: 0o600 });
    await rejectsWith(f.reopen(), "unavailable", /exactly 32 bytes, found 31/);
    await writeFile(path, randomBytes(33));
    await rejectsWith(f.reopen(), "unavailable", /found 33/);
  });

  void it("refuses a symbolic link in place of the key file", async () => {
    f = await fixture();
    const real = join(f.home, "elsewhere.key");
    await writeFile(real, randomBytes(32), { mode: 0o600 });
    const home2 = join(f.home, "h2");
    await mkdir(home2, { mode: 0o700 });
    await symlink(real, join(home2, "vault.key"));
    await rejectsWith(openVault({ home: home2, store: f.store, env: {} }), "unavailable", /symbolic link/);
  });

  void it("refuses to create a new key when the store holds secrets sealed by a lost one", async () => {
    f = await fixture();
    await f.vault.set("TOKEN", "v1");
    await rejectsWith(openVault({ home: join(f.home, "other"), store: f.store, env: {} }), "unavailable", /missing but the store holds 1 secret.*restore vault\.key/);
  });

  void it("PADDOCK_VAULT_KEY (base64 of 32 bytes) is used instead of a key file", async () => {
    const key = randomBytes(32).toString("base64");
    f = await fixture({ PADDOCK_VAULT_KEY: key });
    assert.equal(f.vault.keySource, "env");
    await assert.rejects(stat(join(f.home, "vault.key")), /ENOENT/);
    await f.vault.set("TOKEN", "from-env", SCOPE);
    assert.equal(await (await f.reopen({ PADDOCK_VAULT_KEY: key })).resolve("TOKEN", SCOPE), "from-env");
  });

  void it("a value sealed under another key is refused by key id, not garbled", async () => {
    f = await fixture({ PADDOCK_VAULT_KEY: randomBytes(32).toString("base64") });
    await f.vault.set("TOKEN", "v1", SCOPE);
    const other = await f.reopen({ PADDOCK_VAULT_KEY: randomBytes(32).toString("base64") });
    await rejectsWith(other.resolve("TOKEN", SCOPE), "unavailable", new RegExp(`sealed with vault key ${f.vault.keyId}.*original key`));
  });

  void it("refuses a malformed PADDOCK_VAULT_KEY without echoing it", async () => {
    const dir = await tempDir();
    const store = await openSqliteStore(":memory:");
    try {
      for (const bad of [randomBytes(16).toString("base64"), randomBytes(32).toString("hex"), "not*base64*at*all!!!!!!!!!!!!!!!!!!!!!!!!"]) {
        await assert.rejects(openVault({ home: dir.path, store, env: { PADDOCK_VAULT_KEY: bad } }), (err: Error) => {
          assert.match(err.message, /PADDOCK_VAULT_KEY must be the base64 of exactly 32/);
          assert.ok(!err.message.includes(bad));
          return true;
        });
      }
    } finally {
      await store.close();
      await dir.remove();
    }
  });
});
