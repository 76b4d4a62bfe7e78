/** Conformance cases for snapshots, pool members and pool settings (see suite.ts). */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { PoolMember, Snapshot } from "../../src/core/domain.ts";
import type { Store } from "../../src/core/store.ts";
import { rejectsWith, session } from "./suite-fixtures.ts";

export function snapshot(id: string, over: Partial<Snapshot> = {}): Snapshot {
  return {
    id,
    name: null,
    environment: "runtime",
    version: 1,
    templateId: "tpl-1",
    provider: "local",
    sourceSession: "s-source",
    layerId: `layer-${id}`,
    createdAt: "2026-11-02T10:00:00.000Z",
    createdBy: "alice",
    frozenMs: 1.25,
    autoRemove: false,
    ...over,
  };
}

export function member(id: string, over: Partial<PoolMember> = {}): PoolMember {
  return {
    id,
    environment: "runtime",
    version: 1,
    templateId: "tpl-1",
    provider: "local",
    snapshot: null,
    state: "ready",
    createdAt: "2026-11-02T10:00:00.000Z",
    providerState: { pid: 7, nested: { ip: "10.0.0.2" } },
    ...over,
  };
}

export function snapshotCases(store: () => Store): void {
  void it("snapshots round-trip, list newest first, by environment, and by name", async () => {
    const s = store();
    await s.createSnapshot(snapshot("snap-a", { name: "before-migration" }));
    await s.createSnapshot(snapshot("snap-b", { createdAt: "2026-11-02T10:00:01.000Z", environment: "other", autoRemove: true }));
    assert.deepEqual(await s.getSnapshot("snap-a"), snapshot("snap-a", { name: "before-migration" }));
    assert.deepEqual(await s.getSnapshotByName("before-migration"), snapshot("snap-a", { name: "before-migration" }));
    assert.equal(await s.getSnapshotByName("nope"), null);
    assert.equal(await s.getSnapshot("nope"), null);
    assert.deepEqual((await s.listSnapshots()).map((x) => x.id), ["snap-b", "snap-a"]);
    assert.deepEqual((await s.listSnapshots({ environment: "other" })).map((x) => [x.id, x.autoRemove]), [["snap-b", true]]);
    assert.deepEqual(await s.listSnapshots({ environment: "none" }), []);
  });

  void it("a taken snapshot id or name is a conflict; names never look like ids", async () => {
    const s = store();
    await s.createSnapshot(snapshot("snap-a", { name: "n1" }));
    await rejectsWith(s.createSnapshot(snapshot("snap-a")), "conflict", /already exists/);
    await rejectsWith(s.createSnapshot(snapshot("snap-b", { name: "n1" })), "conflict", /named "n1"/);
    await rejectsWith(s.createSnapshot(snapshot("snap-c", { name: "snap-x" })), "invalid_argument");
    // Unnamed snapshots do not collide with one another.
    await s.createSnapshot(snapshot("snap-d"));
    await s.createSnapshot(snapshot("snap-e"));
    assert.equal((await s.listSnapshots()).length, 3);
  });

  void it("a snapshot live sessions or pool members use cannot be deleted; the conflict names them", async () => {
    const s = store();
    await s.createSnapshot(snapshot("snap-a"));
    await s.createSession(session("s1", { snapshot: "snap-a" }));
    await s.createSession(session("s2", { snapshot: "snap-a", state: "stopped" }));
    await s.addPoolMember(member("m1", { snapshot: "snap-a" }));
    assert.deepEqual(await s.snapshotUsers("snap-a"), ["session s1", "pool member m1"]);
    await assert.rejects(s.deleteSnapshot("snap-a"), (err: Error & { code?: string; details?: { users?: string[] } }) => {
      assert.equal(err.code, "conflict");
      assert.match(err.message, /in use by session s1, pool member m1/);
      assert.deepEqual(err.details?.users, ["session s1", "pool member m1"]);
      return true;
    });
    await s.updateSession("s1", { state: "stopped" });
    await s.deletePoolMember("m1");
    assert.deepEqual(await s.snapshotUsers("snap-a"), []);
    assert.equal(await s.deleteSnapshot("snap-a"), true);
    assert.equal(await s.deleteSnapshot("snap-a"), false);
    assert.equal((await s.getSession("s2"))?.snapshot, "snap-a", "history keeps which snapshot a session came from");
  });

  void it("a session is started only from a snapshot that exists", async () => {
    const s = store();
    await rejectsWith(s.createSession(session("s1", { snapshot: "snap-gone" })), "not_found", /snap-gone/);
    assert.equal(await s.getSession("s1"), null);
    await s.createSnapshot(snapshot("snap-a"));
    await s.createSession(session("s1", { snapshot: "snap-a" }));
    assert.equal((await s.getSession("s1"))?.snapshot, "snap-a");
    await rejectsWith(s.createSession(session("s1", { snapshot: "snap-a" })), "conflict");
  });

  void it("pool members round-trip, update, list oldest first, delete", async () => {
    const s = store();
    await s.addPoolMember(member("m2", { createdAt: "2026-11-02T10:00:02.000Z", state: "starting" }));
    await s.addPoolMember(member("m1"));
    await s.addPoolMember(member("m3", { environment: "other" }));
    assert.deepEqual(await s.getPoolMember("m1"), member("m1"));
    assert.deepEqual((await s.listPoolMembers()).map((m) => m.id), ["m1", "m3", "m2"]);
    assert.deepEqual((await s.listPoolMembers({ environment: "runtime" })).map((m) => m.id), ["m1", "m2"]);
    const updated = await s.updatePoolMember("m2", { state: "ready", providerState: { pid: 9 } });
    assert.deepEqual(updated, member("m2", { createdAt: "2026-11-02T10:00:02.000Z", providerState: { pid: 9 } }));
    updated.providerState.pid = 1;
    assert.deepEqual((await s.getPoolMember("m2"))?.providerState, { pid: 9 });
    await rejectsWith(s.updatePoolMember("nope", { state: "ready" }), "not_found");
    await rejectsWith(s.addPoolMember(member("m1")), "conflict");
    await s.createSession(session("s-taken"));
    await rejectsWith(s.addPoolMember(member("s-taken")), "conflict", /a session has that id/);
    assert.equal(await s.deletePoolMember("m1"), true);
    assert.equal(await s.deletePoolMember("m1"), false);
    assert.equal(await s.getPoolMember("m1"), null);
  });

  void it("a claim takes the oldest ready member of the version and makes it a session in one step", async () => {
    const s = store();
    await s.addPoolMember(member("m-old", { createdAt: "2026-11-02T10:00:00.000Z" }));
    await s.addPoolMember(member("m-new", { createdAt: "2026-11-02T10:00:05.000Z" }));
    await s.addPoolMember(member("m-starting", { createdAt: "2026-11-01T10:00:00.000Z", state: "starting" }));
    await s.addPoolMember(member("m-v2", { createdAt: "2026-11-01T10:00:00.000Z", version: 2 }));
    const claimed = await s.claimPoolMember({ environment: "runtime", version: 1 }, (m) =>
      session(m.id, { state: "starting", providerState: m.providerState, templateId: m.templateId, startedBy: "bob" }),
    );
    assert.equal(claimed?.id, "m-old");
    assert.deepEqual(await s.getSession("m-old"), session("m-old", { state: "starting", providerState: member("m-old").providerState, startedBy: "bob" }));
    assert.equal(await s.getPoolMember("m-old"), null);
    const second = await s.claimPoolMember({ environment: "runtime", version: 1 }, (m) => session(m.id));
    assert.equal(second?.id, "m-new");
    assert.equal(await s.claimPoolMember({ environment: "runtime", version: 1 }, (m) => session(m.id)), null, "starting members are not claimed");
    assert.equal(await s.claimPoolMember({ environment: "other", version: 1 }, (m) => session(m.id)), null);
    assert.deepEqual((await s.listPoolMembers()).map((m) => m.id).sort(), ["m-starting", "m-v2"]);
  });

  void it("concurrent claims never share a member, and a failing claim leaves the member in the pool", async () => {
    const s = store();
    for (let i = 0; i < 5; i++) await s.addPoolMember(member(`m${i}`, { createdAt: `2026-11-02T10:00:0${i}.000Z` }));
    const claims = await Promise.all(Array.from({ length: 8 }, () => s.claimPoolMember({ environment: "runtime", version: 1 }, (m) => session(m.id))));
    const ids = claims.filter((c) => c !== null).map((c) => c.id);
    assert.equal(ids.length, 5);
    assert.equal(new Set(ids).size, 5);
    await s.addPoolMember(member("m-x"));
    await assert.rejects(s.claimPoolMember({ environment: "runtime", version: 1 }, (m) => session(`${m.id}-renamed`)));
    assert.equal((await s.getPoolMember("m-x"))?.id, "m-x", "the transaction rolled back");
  });

  void it("pool settings round-trip, replace, list by environment, refuse min > max", async () => {
    const s = store();
    const at = "2026-11-02T10:00:00.000Z";
    await s.putPoolSetting({ environment: "web", min: 2, max: 4, updatedAt: at, updatedBy: "admin" });
    await s.putPoolSetting({ environment: "api", min: 0, max: 0, updatedAt: at, updatedBy: "admin" });
    await s.putPoolSetting({ environment: "web", min: 3, max: 3, updatedAt: at, updatedBy: "root" });
    assert.deepEqual(await s.getPoolSetting("web"), { environment: "web", min: 3, max: 3, updatedAt: at, updatedBy: "root" });
    assert.deepEqual((await s.listPoolSettings()).map((p) => p.environment), ["api", "web"]);
    await rejectsWith(s.putPoolSetting({ environment: "web", min: 3, max: 2, updatedAt: at, updatedBy: "admin" }), "invalid_argument", /min ≤ max/);
    await rejectsWith(s.putPoolSetting({ environment: "web", min: -1, max: 2, updatedAt: at, updatedBy: "admin" }), "invalid_argument");
    assert.equal(await s.deletePoolSetting("web"), true);
    assert.equal(await s.deletePoolSetting("web"), false);
    assert.equal(await s.getPoolSetting("web"), null);
  });
}
