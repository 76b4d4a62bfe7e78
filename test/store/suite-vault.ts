/** Conformance cases for the vault's records: secrets, egress records, sealed blobs (see suite.ts). */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { EgressRecordInput, SecretInput, Store, StoredSecretScope } from "../../src/core/store.ts";
import { ISO_UTC, rejectsWith } from "./suite-fixtures.ts";

const GLOBAL: StoredSecretScope = { kind: "global", value: "" };
const ENV: StoredSecretScope = { kind: "environment", value: "runtime" };

function secret(name: string, scope: StoredSecretScope = GLOBAL, fill = 1): SecretInput {
  return { name, scope, ciphertext: Buffer.alloc(20, fill), iv: Buffer.alloc(12, 2), tag: Buffer.alloc(16, 3), keyId: "k1" };
}

function egress(sessionId: string, n: number, over: Partial<EgressRecordInput> = {}): EgressRecordInput {
  return {
    sessionId,
    time: `2026-11-02T10:00:${String(n).padStart(2, "0")}.000Z`,
    method: "GET",
    host: "api.stripe.com",
    port: 443,
    path: `/v1/charges/${n}?limit=`,
    status: 200,
    bytesOut: 10 * n,
    bytesIn: 100 * n,
    durationMs: n,
    swapped: ["STRIPE_API_KEY"],
    decision: "allowed",
    rule: "guardrails.network.allow[0] (runtime.yml:27)",
    ...over,
  };
}

export function vaultRecordCases(store: () => Store): void {
  void it("vault getters and lists of unknown keys resolve null, [] and false", async () => {
    const s = store();
    assert.equal(await s.getSecret("NOPE", GLOBAL), null);
    assert.deepEqual(await s.listSecrets(), []);
    assert.equal(await s.deleteSecret("NOPE", GLOBAL), false);
    assert.equal(await s.touchSecret("NOPE", GLOBAL, "2026-11-02T10:00:00.000Z"), false);
    assert.deepEqual(await s.listEgressRecords({ sessionId: "nope" }), []);
    assert.equal(await s.getSealed("nope"), null);
    assert.equal(await s.deleteSealed("nope"), false);
  });

  void it("secrets round-trip their sealed bytes; one row per name and scope", async () => {
    const s = store();
    const info = await s.putSecret(secret("A", GLOBAL));
    assert.equal(info.name, "A");
    assert.match(info.createdAt, ISO_UTC);
    assert.equal(info.lastUsedAt, null);
    await s.putSecret(secret("A", ENV, 9));
    const got = await s.getSecret("A", ENV);
    assert.ok(got);
    assert.deepEqual(Buffer.from(got.ciphertext), Buffer.alloc(20, 9));
    assert.deepEqual(Buffer.from(got.iv), Buffer.alloc(12, 2));
    assert.deepEqual(Buffer.from(got.tag), Buffer.alloc(16, 3));
    assert.deepEqual(got.scope, ENV);
    assert.equal(got.keyId, "k1");
    assert.equal(await s.getSecret("A", { kind: "team", value: "runtime" }), null);
    const list = await s.listSecrets();
    assert.deepEqual(list.map((r) => [r.name, r.scope.kind]), [["A", "global"], ["A", "environment"]]);
    assert.ok(list.every((r) => !("ciphertext" in r)), "listings carry no ciphertext");
  });

  void it("putSecret of an existing name and scope replaces the value, keeps createdAt and lastUsedAt", async () => {
    const s = store();
    const first = await s.putSecret(secret("A", ENV, 1));
    await s.touchSecret("A", ENV, "2026-11-02T10:00:00.000Z");
    await new Promise((r) => setTimeout(r, 5));
    const second = await s.putSecret({ ...secret("A", ENV, 7), keyId: "k2" });
    assert.equal(second.createdAt, first.createdAt);
    assert.ok(second.updatedAt > first.updatedAt);
    assert.equal(second.lastUsedAt, "2026-11-02T10:00:00.000Z");
    const got = await s.getSecret("A", ENV);
    assert.deepEqual(Buffer.from(got?.ciphertext ?? []), Buffer.alloc(20, 7));
    assert.equal(got?.keyId, "k2");
    assert.equal((await s.listSecrets()).length, 1);
  });

  void it("touchSecret only moves lastUsedAt forward; deleteSecret removes exactly one scope", async () => {
    const s = store();
    await s.putSecret(secret("A", GLOBAL));
    await s.putSecret(secret("A", ENV));
    assert.equal(await s.touchSecret("A", ENV, "2026-11-02T10:00:05.000Z"), true);
    await s.touchSecret("A", ENV, "2026-11-02T10:00:01Z");
    assert.equal((await s.getSecret("A", ENV))?.lastUsedAt, "2026-11-02T10:00:05.000Z");
    assert.equal((await s.getSecret("A", GLOBAL))?.lastUsedAt, null);
    await rejectsWith(s.touchSecret("A", ENV, "yesterday"), "invalid_argument");
    assert.equal(await s.deleteSecret("A", ENV), true);
    assert.equal(await s.deleteSecret("A", ENV), false);
    assert.ok(await s.getSecret("A", GLOBAL));
  });

  void it("secret scopes the schema cannot hold are refused", async () => {
    const s = store();
    await rejectsWith(s.putSecret(secret("A", { kind: "global", value: "x" })), "invalid_argument");
    await rejectsWith(s.putSecret(secret("A", { kind: "environment", value: "" })), "invalid_argument");
    await rejectsWith(s.getSecret("A", { kind: "planet" as "team", value: "x" }), "invalid_argument");
  });

  void it("returned and written secret buffers are copies", async () => {
    const s = store();
    const input = secret("A");
    await s.putSecret(input);
    (input.ciphertext as Buffer).fill(0);
    const got = await s.getSecret("A", GLOBAL);
    (got?.ciphertext as Buffer).fill(0);
    assert.deepEqual(Buffer.from((await s.getSecret("A", GLOBAL))?.ciphertext ?? []), Buffer.alloc(20, 1));
  });

  void it("egress records: batch insert, per session, oldest first, tail and cursor", async () => {
    const s = store();
    await s.addEgressRecords([egress("s1", 1), egress("s2", 2, { decision: "denied", status: 403, reason: "not allowed", swapped: [] }), egress("s1", 3)]);
    await s.addEgressRecords([]);
    await s.addEgressRecords([4, 5, 6].map((n) => egress("s1", n)));
    const all = await s.listEgressRecords({ sessionId: "s1" });
    assert.deepEqual(all.map((r) => r.durationMs), [1, 3, 4, 5, 6]);
    assert.ok(all.every((r, i) => i === 0 || r.id > (all[i - 1]?.id ?? Infinity)), "ids increase");
    const { id: _id, ...first } = all[0]!;
    assert.deepEqual(first, egress("s1", 1));
    const denied = await s.listEgressRecords({ sessionId: "s2" });
    assert.equal(denied[0]?.reason, "not allowed");
    assert.deepEqual(denied[0]?.swapped, []);
    assert.deepEqual((await s.listEgressRecords({ sessionId: "s1", limit: 2 })).map((r) => r.durationMs), [5, 6]);
    const after = all[1]!.id;
    assert.deepEqual((await s.listEgressRecords({ sessionId: "s1", afterId: after })).map((r) => r.durationMs), [4, 5, 6]);
    assert.deepEqual((await s.listEgressRecords({ sessionId: "s1", afterId: after, limit: 1 })).map((r) => r.durationMs), [4]);
    assert.deepEqual(await s.listEgressRecords({ sessionId: "s1", afterId: all[4]!.id }), []);
    await rejectsWith(s.listEgressRecords({ sessionId: "s1", limit: -1 }), "invalid_argument");
  });

  void it("a failing egress batch stores none of it", async () => {
    const s = store();
    const bad = egress("s1", 2, { decision: "maybe" as "allowed" });
    await assert.rejects(s.addEgressRecords([egress("s1", 1), bad]));
    assert.deepEqual(await s.listEgressRecords({ sessionId: "s1" }), []);
  });

  void it("sealed blobs: put, replace, get, delete", async () => {
    const s = store();
    await s.putSealed("gw/s1", { ciphertext: Buffer.from("abc"), iv: Buffer.alloc(12, 1), tag: Buffer.alloc(16, 2), keyId: "k1" });
    await s.putSealed("gw/s1", { ciphertext: Buffer.from("xyz"), iv: Buffer.alloc(12, 1), tag: Buffer.alloc(16, 2), keyId: "k1" });
    const got = await s.getSealed("gw/s1");
    assert.equal(Buffer.from(got?.ciphertext ?? []).toString(), "xyz");
    assert.match(got?.updatedAt ?? "", ISO_UTC);
    assert.equal(got?.keyId, "k1");
    assert.equal(await s.deleteSealed("gw/s1"), true);
    assert.equal(await s.getSealed("gw/s1"), null);
  });
}
