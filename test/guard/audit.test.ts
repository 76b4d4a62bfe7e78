/**
 * The audit log's tamper evidence: someone with write access to the database file (but not the
 * vault key) changes, removes, inserts or reorders records, or cuts the end off; `verify` must
 * name the damage every time, and report nothing on an untouched log.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, beforeEach, describe, it } from "node:test";
import { mkdtemp, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { AuditLog, canonical } from "../../src/guard/index.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import type { Store } from "../../src/core/index.ts";

const dir = await mkdtemp(join(tmpdir(), "paddock-audit-"));
after(() => rm(dir, { recursive: true, force: true }));
let n = 0;

/** Raw write access to the file, with the append-only triggers out of the way (what an attacker with the file can do). */
function tamper(path: string, sql: string, ...args: unknown[]): void {
  const db = new Database(path);
  try {
    db.exec("DROP TRIGGER IF EXISTS audit_records_no_update; DROP TRIGGER IF EXISTS audit_records_no_delete;");
    db.prepare(sql).run(...args);
  } finally {
    db.close();
  }
}

void describe("audit log", () => {
  let path: string;
  let store: Store;
  let log: AuditLog;
  const key = randomBytes(32);

  beforeEach(async () => {
    path = join(dir, `a${++n}.db`);
    store = await openSqliteStore(path);
    log = new AuditLog(store, key, join(dir, `a${n}.head`));
    for (let i = 1; i <= 5; i++) {
      await log.append({ actor: "alice", actorKind: "human", action: "exec", target: `s-${i}`, sessionId: "s-1", environment: "runtime", decision: i === 3 ? "denied" : "allowed", rule: i === 3 ? "guardrails.commands.deny[0] (runtime.yml:18)" : null, detail: { argv: ["rm", `x${i}`] } });
    }
    await log.flush();
  });

  const verifyAfter = async () => {
    await store.close();
    store = await openSqliteStore(path);
    log = new AuditLog(store, key, join(dir, `a${n}.head`));
    return log.verify();
  };

  void it("an untouched log verifies, records chained one to the next", async () => {
    const r = await log.verify();
    assert.deepEqual(r, { ok: true, records: 5, lastSeq: 5, problems: [] });
    const all = await log.list({});
    for (let i = 1; i < all.length; i++) assert.equal(all[i]?.prevHash, all[i - 1]?.hash);
    await store.close();
  });

  void it("detects a changed decision (a denial rewritten as allowed)", async () => {
    tamper(path, "UPDATE audit_records SET decision = 'allowed' WHERE seq = 3");
    const r = await verifyAfter();
    assert.equal(r.ok, false);
    assert.deepEqual(r.problems.map((p) => p.seq), [3]);
    assert.match(r.problems[0]?.problem ?? "", /content changed/);
    await store.close();
  });

  void it("detects a changed detail even when the attacker recomputes a plain sha256 for it", async () => {
    const forged = createHash("sha256").update("whatever").digest("hex");
    tamper(path, "UPDATE audit_records SET detail = ?, hash = ? WHERE seq = 2", JSON.stringify({ argv: ["ls"] }), forged);
    const r = await verifyAfter();
    assert.equal(r.ok, false);
    assert.ok(r.problems.some((p) => p.seq === 2 && /content changed/.test(p.problem)));
    assert.ok(r.problems.some((p) => p.seq === 3 && /does not link/.test(p.problem)), "the next record no longer links");
    await store.close();
  });

  void it("detects a removed record in the middle", async () => {
    tamper(path, "DELETE FROM audit_records WHERE seq = 2");
    const r = await verifyAfter();
    assert.equal(r.ok, false);
    assert.ok(r.problems.some((p) => p.seq === 3 && /missing/.test(p.problem)));
    await store.close();
  });

  void it("detects records cut off the end (the head file remembers the last one)", async () => {
    tamper(path, "DELETE FROM audit_records WHERE seq >= 4");
    const r = await verifyAfter();
    assert.equal(r.ok, false);
    assert.match(r.problems.at(-1)?.problem ?? "", /removed from the end/);
    await store.close();
  });

  void it("detects an inserted record, even one copied from elsewhere in the chain", async () => {
    tamper(path, "INSERT INTO audit_records SELECT 6, time, actor, actor_kind, on_behalf_of, action, 'forged', environment, session_id, decision, rule, detail, prev_hash, hash FROM audit_records WHERE seq = 5");
    const r = await verifyAfter();
    assert.equal(r.ok, false);
    assert.ok(r.problems.some((p) => p.seq === 6));
    await store.close();
  });

  void it("detects records swapped in place", async () => {
    tamper(path, "UPDATE audit_records SET seq = 100 WHERE seq = 1");
    tamper(path, "UPDATE audit_records SET seq = 1 WHERE seq = 2");
    tamper(path, "UPDATE audit_records SET seq = 2 WHERE seq = 100");
    const r = await verifyAfter();
    assert.equal(r.ok, false);
    assert.ok(r.problems.some((p) => p.seq === 1) && r.problems.some((p) => p.seq === 2));
    await store.close();
  });

  void it("a chain rewritten with another key does not verify", async () => {
    await store.close();
    await unlink(join(dir, `a${n}.head`));
    store = await openSqliteStore(path);
    const other = new AuditLog(store, randomBytes(32), join(dir, `a${n}.head`));
    const r = await other.verify();
    assert.equal(r.ok, false);
    assert.equal(r.problems.length, 5);
    await store.close();
  });

  void it("the database itself refuses UPDATE and DELETE", async () => {
    const db = new Database(path);
    try {
      assert.throws(() => db.prepare("UPDATE audit_records SET actor = 'mallory'").run(), /append-only/);
      assert.throws(() => db.prepare("DELETE FROM audit_records WHERE seq = 1").run(), /append-only/);
    } finally {
      db.close();
    }
    await store.close();
  });
});

void describe("canonical", () => {
  void it("sorts keys at every level and drops undefined, so hashes do not depend on key order", () => {
    assert.equal(canonical({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } }), '{"a":{"d":[1,{"y":2,"z":1}]},"b":1}');
    assert.equal(canonical({ a: 1, b: 2 }), canonical({ b: 2, a: 1 }));
    assert.notEqual(canonical({ a: "1" }), canonical({ a: 1 }));
  });
});

void describe("audit redaction", () => {
  void it("never writes a secret value, typed, base64- or URL-encoded, anywhere in a record", async () => {
    const store = await openSqliteStore(":memory:");
    const secret = "sk_live_audit+redaction/Value123";
    const log = new AuditLog(store, randomBytes(32), join(dir, "redact.head"), async () => [secret]);
    await log.append({
      actor: "alice", actorKind: "human", action: "exec", target: `curl -u ${secret}`, decision: "allowed", rule: `echo ${secret}`,
      detail: { argv: ["sh", "-c", `curl -H 'Authorization: Bearer ${secret}'`], nested: { b64: Buffer.from(secret).toString("base64"), url: `?k=${encodeURIComponent(secret)}` } },
    });
    const [r] = await log.list({});
    const text = JSON.stringify(r);
    assert.ok(!text.includes(secret) && !text.includes(Buffer.from(secret).toString("base64")) && !text.includes(encodeURIComponent(secret)), text);
    assert.match(text, /Bearer \[redacted secret\]/);
    assert.equal((await log.verify()).ok, true, "the chain covers the redacted form");
    await store.close();
  });
});
