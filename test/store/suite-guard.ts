/** Conformance cases for principals, tokens, audit records and approvals (see suite.ts). */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { Approval, AuditInput, Principal, Store } from "../../src/core/index.ts";
import { rejectsWith } from "./suite-fixtures.ts";

const principal = (name: string, over: Partial<Principal> = {}): Principal => ({
  id: `usr_${name}`, name, kind: "human", team: "eng", role: "engineering", createdAt: "2026-11-02T10:00:00.000Z", disabledAt: null, ...over,
});

const entry = (n: number, over: Partial<AuditInput> = {}): AuditInput => ({
  time: `2026-11-02T10:00:${String(n).padStart(2, "0")}.000Z`, actor: "alice", actorKind: "human", onBehalfOf: null, action: "api.getSession",
  target: `s${n}`, environment: "runtime", sessionId: `s${n % 2}`, decision: "allowed", rule: "route needs read", detail: { n, nested: { ok: true } }, ...over,
});

const approval = (id: string, over: Partial<Approval> = {}): Approval => ({
  id, sessionId: "s1", environment: "runtime", argv: ["terraform", "apply"], program: "terraform", rule: "guardrails.commands.ask[0] (runtime.yml:20)",
  deploying: true, requestedBy: "bot", requestedByKind: "agent", onBehalfOf: "alice", state: "pending", decidedBy: null, decidedAt: null, reason: null,
  createdAt: "2026-11-02T10:00:00.000Z", expiresAt: "2026-11-02T10:10:00.000Z", ...over,
});

/** A stand-in chain function: what the store must pass through, not a real MAC. */
const seal = (prev: string, r: AuditInput & { seq: number }) => `${prev.slice(0, 8)}>${r.seq}:${r.target}`;

export function guardRecordCases(store: () => Store): void {
  void it("principals: create, look up by id and name, list by name, update; a taken name is a conflict", async () => {
    const s = store();
    await s.createPrincipal(principal("bob"));
    await s.createPrincipal(principal("alice", { kind: "agent", team: null }));
    assert.deepEqual(await s.getPrincipal("usr_bob"), principal("bob"));
    assert.deepEqual(await s.getPrincipalByName("alice"), principal("alice", { kind: "agent", team: null }));
    assert.deepEqual((await s.listPrincipals()).map((p) => p.name), ["alice", "bob"]);
    await rejectsWith(s.createPrincipal(principal("bob", { id: "usr_other" })), "conflict", /bob/);
    const updated = await s.updatePrincipal("usr_bob", { role: "support", disabledAt: "2026-11-03T00:00:00.000Z" });
    assert.equal(updated.role, "support");
    assert.equal((await s.getPrincipal("usr_bob"))?.disabledAt, "2026-11-03T00:00:00.000Z");
    await rejectsWith(s.updatePrincipal("usr_nope", { role: "x" }), "not_found");
    assert.equal(await s.getPrincipalByName("nope"), null);
  });

  void it("tokens: stored by id with a digest only; revoke once; touch records use", async () => {
    const s = store();
    await s.createPrincipal(principal("bob"));
    const t = { id: "abc", principalId: "usr_bob", digest: "d".repeat(64), label: "ci", createdAt: "2026-11-02T10:00:00.000Z", lastUsedAt: null, revokedAt: null };
    await s.addToken(t);
    assert.deepEqual(await s.getToken("abc"), t);
    await s.touchToken("abc", "2026-11-02T11:00:00.000Z");
    assert.equal((await s.getToken("abc"))?.lastUsedAt, "2026-11-02T11:00:00.000Z");
    assert.equal(await s.revokeToken("abc", "2026-11-02T12:00:00.000Z"), true);
    assert.equal(await s.revokeToken("abc", "2026-11-02T13:00:00.000Z"), false, "already revoked");
    assert.equal((await s.getToken("abc"))?.revokedAt, "2026-11-02T12:00:00.000Z");
    assert.deepEqual((await s.listTokens("usr_bob")).map((x) => x.id), ["abc"]);
    assert.equal(await s.getToken("nope"), null);
  });

  void it("audit: records are numbered from 1 and chained through seal, across appends", async () => {
    const s = store();
    assert.equal(await s.lastAudit(), null);
    const first = await s.appendAudit([entry(1), entry(2)], seal);
    assert.deepEqual(first.map((r) => [r.seq, r.prevHash, r.hash]), [[1, "", ">1:s1"], [2, ">1:s1", ">1:s1>2:s2"]]);
    const [third] = await s.appendAudit([entry(3)], seal);
    assert.equal(third?.seq, 3);
    assert.equal(third?.prevHash, ">1:s1>2:s2");
    assert.deepEqual(await s.lastAudit(), third);
    assert.deepEqual(await s.appendAudit([], seal), []);
    const all = await s.listAudit({});
    assert.deepEqual(all.map((r) => r.seq), [1, 2, 3]);
    assert.deepEqual(all[0]?.detail, { n: 1, nested: { ok: true } });
  });

  void it("audit: filters by session, actor (or on behalf of), environment, since, and pages with afterSeq/limit", async () => {
    const s = store();
    await s.appendAudit([entry(1), entry(2, { actor: "bot", actorKind: "agent", onBehalfOf: "alice" }), entry(3, { actor: "carol", environment: "other" })], seal);
    assert.deepEqual((await s.listAudit({ sessionId: "s1" })).map((r) => r.seq), [1, 3]);
    assert.deepEqual((await s.listAudit({ actor: "alice" })).map((r) => r.seq), [1, 2], "alice's own and her agent's");
    assert.deepEqual((await s.listAudit({ environment: "other" })).map((r) => r.seq), [3]);
    assert.deepEqual((await s.listAudit({ since: "2026-11-02T10:00:02Z" })).map((r) => r.seq), [2, 3]);
    assert.deepEqual((await s.listAudit({ afterSeq: 1, limit: 1 })).map((r) => r.seq), [2]);
    await rejectsWith(s.listAudit({ since: "yesterday" }), "invalid_argument", /ISO-8601/);
  });

  void it("audit: a failing seal appends nothing (all or none)", async () => {
    const s = store();
    await assert.rejects(s.appendAudit([entry(1), entry(2)], (_p, r) => {
      if (r.seq === 2) throw new Error("boom");
      return "h";
    }));
    assert.deepEqual(await s.listAudit({}), []);
  });

  void it("approvals: create, get, list newest first by state and session; decide once", async () => {
    const s = store();
    await s.createApproval(approval("a1"));
    await s.createApproval(approval("a2", { sessionId: "s2", createdAt: "2026-11-02T10:05:00.000Z" }));
    assert.deepEqual(await s.getApproval("a1"), approval("a1"));
    assert.deepEqual((await s.listApprovals()).map((a) => a.id), ["a2", "a1"]);
    assert.deepEqual((await s.listApprovals({ sessionId: "s1" })).map((a) => a.id), ["a1"]);
    const decided = await s.decideApproval("a1", { state: "approved", decidedBy: "carol", decidedAt: "2026-11-02T10:01:00.000Z", reason: "ok" });
    assert.equal(decided.state, "approved");
    assert.deepEqual((await s.listApprovals({ state: "pending" })).map((a) => a.id), ["a2"]);
    await rejectsWith(s.decideApproval("a1", { state: "denied", decidedBy: "dave", decidedAt: "2026-11-02T10:02:00.000Z", reason: null }), "conflict", /already approved by carol/);
    await rejectsWith(s.decideApproval("nope", { state: "denied", decidedBy: "dave", decidedAt: "2026-11-02T10:02:00.000Z", reason: null }), "not_found");
    assert.equal(await s.getApproval("nope"), null);
  });
}
