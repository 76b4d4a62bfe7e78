/** The vault: sealed at rest, bound to name and scope, scope precedence, values never listed or printed. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { format, inspect } from "node:util";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { Store } from "../../src/core/store.ts";
import { openVault, SecretValue, type VaultScope } from "../../src/gateway/vault.ts";
import type { SecretScope } from "../../src/gateway/types.ts";
import { rejectsWith } from "../store/suite-fixtures.ts";
import { distinctiveValue, fixture, type Fixture } from "./helpers.ts";

const RUNTIME: SecretScope = { environment: "runtime" };

/** The bytes of the db file, its WAL and shared-memory file, as one buffer. */
async function databaseBytes(dbPath: string): Promise<Buffer> {
  const parts = await Promise.all(["", "-wal", "-shm"].map((s) => readFile(dbPath + s).catch(() => Buffer.alloc(0))));
  return Buffer.concat(parts);
}

void describe("vault", () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await fixture();
  });
  afterEach(async () => f.cleanup());

  void it("never writes a value or sealed document to the database file or its WAL", async () => {
    const value = distinctiveValue();
    const doc = distinctiveValue("ca_key");
    await f.vault.set("STRIPE_API_KEY", value, { environment: "runtime" });
    await f.vault.set("STRIPE_API_KEY", value + "_global");
    await f.vault.seal("gateway/s1", JSON.stringify({ caKeyPem: doc }));
    assert.equal(await f.vault.resolve("STRIPE_API_KEY", RUNTIME), value);
    const open = await databaseBytes(f.dbPath);
    assert.ok(open.length > 0);
    assert.ok(open.includes("STRIPE_API_KEY"), "the name is stored in the clear (the check below is meaningful)");
    for (const secret of [value, doc]) {
      assert.ok(!open.includes(Buffer.from(secret, "utf8")), "plaintext in the db or WAL");
      assert.ok(!open.includes(Buffer.from(secret, "utf16le")), "UTF-16 plaintext in the db or WAL");
      assert.ok(!open.includes(Buffer.from(Buffer.from(secret).toString("base64"))), "base64 plaintext in the db or WAL");
    }
    await f.store.close();
    const closed = await databaseBytes(f.dbPath);
    assert.ok(!closed.includes(Buffer.from(value)) && !closed.includes(Buffer.from(doc)), "plaintext after checkpoint");
  });

  void it("fails closed when a row is moved to another name or scope (AAD binding)", async () => {
    const value = distinctiveValue();
    await f.vault.set("STRIPE_API_KEY", value, { environment: "runtime" });
    await f.vault.set("OTHER", "x", { team: "support" });
    f.raw((db) => db.prepare("UPDATE secrets SET name = 'GITHUB_TOKEN' WHERE name = 'STRIPE_API_KEY'").run());
    await assert.rejects(f.vault.resolve("GITHUB_TOKEN", RUNTIME), (err: Error) => {
      assert.match(err.message, /secret GITHUB_TOKEN \(environment=runtime\) does not authenticate: .*moved to another name or scope/);
      assert.ok(!err.message.includes(value));
      return true;
    });
    f.raw((db) => db.prepare("UPDATE secrets SET name = 'STRIPE_API_KEY', scope_value = 'prod' WHERE name = 'GITHUB_TOKEN'").run());
    await rejectsWith(f.vault.resolve("STRIPE_API_KEY", { environment: "prod" }), "internal", /does not authenticate/);
    f.raw((db) => db.prepare("UPDATE secrets SET scope_kind = 'agent', scope_value = 'claude' WHERE scope_value = 'prod'").run());
    await rejectsWith(f.vault.resolve("STRIPE_API_KEY", { environment: "prod", agent: "claude" }), "internal", /\(agent=claude\) does not authenticate/);
    f.raw((db) => db.prepare("UPDATE secrets SET scope_kind = 'environment', scope_value = 'prod' WHERE scope_value = 'claude'").run());
    // Copying another row's sealed value over this one is refused the same way.
    f.raw((db) => db.prepare("UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'OTHER'), iv = (SELECT iv FROM secrets WHERE name = 'OTHER'), tag = (SELECT tag FROM secrets WHERE name = 'OTHER') WHERE name = 'STRIPE_API_KEY'").run());
    await rejectsWith(f.vault.resolve("STRIPE_API_KEY", { environment: "prod" }), "internal", /does not authenticate/);
  });

  void it("a tampered sealed document, or one moved to another key, is refused", async () => {
    await f.vault.seal("gateway/s1", "doc-one");
    assert.equal(await f.vault.unseal("gateway/s1"), "doc-one");
    assert.equal(await f.vault.unseal("gateway/none"), null);
    f.raw((db) => db.prepare("UPDATE sealed_blobs SET key = 'gateway/s2'").run());
    await rejectsWith(f.vault.unseal("gateway/s2"), "internal", /sealed document "gateway\/s2" does not authenticate/);
    await f.vault.seal("gateway/s3", "x".repeat(10_000));
    assert.equal((await f.vault.unseal("gateway/s3"))?.length, 10_000);
    f.raw((db) => db.prepare("UPDATE sealed_blobs SET ciphertext = zeroblob(length(ciphertext)) WHERE key = 'gateway/s3'").run());
    await rejectsWith(f.vault.unseal("gateway/s3"), "internal");
    await rejectsWith(f.vault.seal("", "x"), "invalid_argument");
  });

  void it("every value gets a fresh IV: the same value twice seals differently", async () => {
    await f.vault.set("A", "same");
    await f.vault.set("A", "same", { environment: "runtime" });
    const rows = f.raw((db) => db.prepare<[], { iv: Buffer; ciphertext: Buffer }>("SELECT iv, ciphertext FROM secrets").all());
    assert.equal(rows.length, 2);
    assert.equal(rows[0]?.iv.length, 12);
    assert.notDeepEqual(rows[0]?.iv, rows[1]?.iv);
    assert.notDeepEqual(rows[0]?.ciphertext, rows[1]?.ciphertext);
  });

  // Numbered so a failure names its row. set: where values exist; ask: the request scope; want: which wins.
  const precedence: { n: number; set: VaultScope[]; ask: SecretScope; want: string | null }[] = [
    { n: 1, set: [], ask: { environment: "runtime" }, want: null },
    { n: 2, set: [{}], ask: { environment: "runtime" }, want: "global" },
    { n: 3, set: [{}, { environment: "runtime" }], ask: { environment: "runtime" }, want: "environment:runtime" },
    { n: 4, set: [{}, { environment: "other" }], ask: { environment: "runtime" }, want: "global" },
    { n: 5, set: [{}, { environment: "runtime" }, { team: "eng" }], ask: { environment: "runtime", team: "eng" }, want: "team:eng" },
    { n: 6, set: [{ environment: "runtime" }, { team: "eng" }], ask: { environment: "runtime", team: "support" }, want: "environment:runtime" },
    { n: 7, set: [{}, { environment: "runtime" }, { team: "eng" }, { agent: "claude" }], ask: { environment: "runtime", team: "eng", agent: "claude" }, want: "agent:claude" },
    { n: 8, set: [{ team: "eng" }, { agent: "claude" }], ask: { environment: "runtime", agent: "codex" }, want: null },
    { n: 9, set: [{ agent: "claude" }], ask: { environment: "runtime", agent: "claude" }, want: "agent:claude" },
    { n: 10, set: [{}, { team: "eng" }], ask: { environment: "runtime", agent: "claude", team: "eng" }, want: "team:eng" },
    { n: 11, set: [{ environment: "eng" }], ask: { environment: "runtime", team: "eng" }, want: null },
  ];
  for (const row of precedence) {
    void it(`scope precedence ${row.n}: agent > team > environment > global → ${row.want ?? "none"}`, async () => {
      for (const scope of row.set) {
        const [kind, value] = Object.entries(scope)[0] ?? ["global", ""];
        await f.vault.set("TOKEN", kind === "global" ? "global" : `${kind}:${value}`, scope);
      }
      assert.equal(await f.vault.resolve("TOKEN", row.ask), row.want);
    });
  }

  void it("a new value is returned on the next resolve; delete removes one scope only", async () => {
    await f.vault.set("TOKEN", "one", { environment: "runtime" });
    await f.vault.set("TOKEN", "base");
    assert.equal(await f.vault.resolve("TOKEN", RUNTIME), "one");
    await f.vault.set("TOKEN", "two", { environment: "runtime" });
    assert.equal(await f.vault.resolve("TOKEN", RUNTIME), "two");
    assert.equal(await f.vault.delete("TOKEN", { environment: "runtime" }), true);
    assert.equal(await f.vault.delete("TOKEN", { environment: "runtime" }), false);
    assert.equal(await f.vault.resolve("TOKEN", RUNTIME), "base");
    assert.equal(await f.vault.delete("TOKEN"), true);
    assert.equal(await f.vault.resolve("TOKEN", RUNTIME), null);
  });

  void it("list shows names, scopes and times, never values", async () => {
    const value = distinctiveValue();
    await f.vault.set("B_TOKEN", value, { agent: "claude" });
    await f.vault.set("A_TOKEN", value);
    await f.vault.set("B_TOKEN", value);
    const list = await f.vault.list();
    assert.deepEqual(list.map((s) => [s.name, s.scope]), [["A_TOKEN", {}], ["B_TOKEN", {}], ["B_TOKEN", { agent: "claude" }]]);
    assert.ok(list.every((s) => s.lastUsedAt === null && typeof s.updatedAt === "string"));
    assert.ok(!JSON.stringify(list).includes(value) && !inspect(list, { depth: 9 }).includes(value));
  });

  void it("touch records the use of the secret that resolved, in the background", async () => {
    await f.vault.set("TOKEN", "g");
    await f.vault.set("TOKEN", "e", { environment: "runtime" });
    f.vault.touch("TOKEN", RUNTIME);
    f.vault.touch("UNKNOWN", RUNTIME);
    await f.vault.idle();
    const used = (await f.vault.list()).map((s) => [JSON.stringify(s.scope), s.lastUsedAt !== null]);
    assert.deepEqual(used, [["{}", false], ['{"environment":"runtime"}', true]]);
    f.vault.touch("TOKEN", { environment: "other" });
    await f.vault.idle();
    assert.ok((await f.vault.list()).every((s) => s.lastUsedAt !== null));
    assert.deepEqual(f.logs, []);
  });

  void it("a failing touch is swallowed and logged with the name only", async () => {
    const value = distinctiveValue();
    const failing = new Proxy(f.store, {
      get: (t, p) => (p === "touchSecret" ? () => Promise.reject(new Error("disk full")) : (t[p as keyof Store] as unknown as (...a: unknown[]) => unknown).bind(t)),
    });
    const logs: string[] = [];
    const vault = await openVault({ home: f.home, store: failing, env: {}, log: (l) => logs.push(l) });
    await vault.set("TOKEN", value);
    vault.touch("TOKEN", RUNTIME);
    await vault.idle();
    assert.equal(logs.length, 1);
    assert.match(logs[0] ?? "", /could not record the use of secret TOKEN: disk full/);
    assert.ok(!logs[0]?.includes(value));
  });

  void it("the value holder redacts itself everywhere but reveal()", async () => {
    const value = distinctiveValue();
    await f.vault.set("TOKEN", value);
    const held = await f.vault.get("TOKEN", RUNTIME);
    assert.ok(held instanceof SecretValue);
    assert.equal(held.reveal(), value);
    const shown = [
      String(held),
      `${held}`,
      "" + held,
      JSON.stringify({ held }),
      inspect(held),
      inspect({ nested: { held } }, { depth: 9, showHidden: true }),
      format("%s %o %O %j %d", held, held, held, { held }, held),
      Object.keys(held).join(","),
    ];
    for (const s of shown) assert.ok(!s.includes(value), s);
    assert.equal(JSON.stringify(held), '"[redacted]"');
    assert.equal(inspect(held), "[redacted]");
    assert.ok(!inspect(f.vault, { showHidden: true, depth: 9 }).includes("key: <"), inspect(f.vault));
    assert.match(inspect(f.vault), /Vault \{ keyId: [0-9a-f]{16}, keySource: file, key: \[redacted\] \}/);
  });

  void it("validates names, scopes and values; errors never contain the value", async () => {
    const value = distinctiveValue();
    const cases: [Promise<unknown>, RegExp][] = [
      [f.vault.set("lower", value), /secret name "lower" is not valid/],
      [f.vault.set("1ABC", value), /is not valid/],
      [f.vault.set("A-B", value), /is not valid/],
      [f.vault.set("A", ""), /cannot be empty/],
      [f.vault.set("A", `${value}\0`), /NUL/],
      [f.vault.set("A", value.repeat(2000)), /at most 65536 bytes/],
      [f.vault.set("A", value, { environment: "runtime", team: "eng" }), /at most one of environment, team, agent \(got environment and team\)/],
      [f.vault.set("A", value, { agent: "bad agent" }), /agent "bad agent" is not a valid scope/],
      [f.vault.resolve("bad", RUNTIME), /is not valid/],
    ];
    for (const [p, message] of cases) {
      await assert.rejects(p, (err: Error & { code?: string }) => {
        assert.equal(err.code, "invalid_argument");
        assert.match(err.message, message);
        assert.ok(!err.message.includes(value) && !inspect(err).includes(value), err.message);
        return true;
      });
    }
    await f.vault.set("A", "é".repeat(32_768));
    assert.equal((await f.vault.resolve("A", RUNTIME))?.length, 32_768);
    await f.vault.set("A", "x", { environment: "" });
    assert.deepEqual((await f.vault.list()).map((s) => s.scope), [{}]);
  });
});
