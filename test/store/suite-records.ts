/** Conformance cases for layers, templates and sessions (see suite.ts). */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { Store } from "../../src/core/store.ts";
import { layer, rejectsWith, session, template } from "./suite-fixtures.ts";

export function recordCases(store: () => Store): void {
  layerCases(store);
  templateCases(store);
  sessionCases(store);
  sessionListCases(store);
}

function layerCases(store: () => Store): void {
  void it("layers round-trip, list, and delete", async () => {
    const s = store();
    await s.putLayer(layer("l-base"));
    await s.putLayer(layer("l-apt", { parentId: "l-base", command: "apt-get install -y git", createdAt: "2026-11-02T10:00:01.000Z" }));
    assert.deepEqual(await s.getLayer("l-base"), layer("l-base"));
    assert.equal((await s.getLayer("l-apt"))?.parentId, "l-base");
    assert.deepEqual((await s.listLayers()).map((l) => l.id).sort(), ["l-apt", "l-base"]);
    assert.equal(await s.deleteLayer("l-base"), true);
    assert.equal(await s.getLayer("l-base"), null);
    assert.equal(await s.deleteLayer("l-base"), false);
    assert.deepEqual((await s.listLayers()).map((l) => l.id), ["l-apt"]);
  });

  void it("putLayer of an existing id is a no-op: the first one stays", async () => {
    const s = store();
    await s.putLayer(layer("l1"));
    await s.putLayer(layer("l1", { command: "something else", sizeBytes: 1, createdAt: "2027-01-01T00:00:00.000Z" }));
    assert.deepEqual(await s.getLayer("l1"), layer("l1"));
    assert.equal((await s.listLayers()).length, 1);
  });
}

function templateCases(store: () => Store): void {
  void it("templates round-trip with their layer order, including an empty stack", async () => {
    const s = store();
    await s.putTemplate(template("t1", { layers: ["z", "a", "m"] }));
    await s.putTemplate(template("t0", { layers: [], version: 2 }));
    assert.deepEqual(await s.getTemplate("t1"), template("t1", { layers: ["z", "a", "m"] }));
    assert.deepEqual(await s.getTemplate("t0"), template("t0", { layers: [], version: 2 }));
    assert.deepEqual((await s.listTemplates()).map((t) => t.id).sort(), ["t0", "t1"]);
  });

  void it("putTemplate of an existing id: identical is a no-op, different rejects conflict", async () => {
    const s = store();
    await s.putTemplate(template("t1"));
    await s.putTemplate(template("t1"));
    await rejectsWith(s.putTemplate(template("t1", { layers: ["other"] })), "conflict", /t1/);
    assert.deepEqual(await s.getTemplate("t1"), template("t1"));
    assert.equal((await s.listTemplates()).length, 1);
  });
}

function sessionCases(store: () => Store): void {
  void it("sessions round-trip every field, including nulls and nested providerState", async () => {
    const s = store();
    const ended = session("s2", {
      state: "stopped",
      expiresAt: "2026-11-02T11:00:00.000Z",
      endedAt: "2026-11-02T10:30:00.000Z",
      endReason: "stopped by user",
      providerState: {},
    });
    await s.createSession(session("s1"));
    await s.createSession(ended);
    assert.deepEqual(await s.getSession("s1"), session("s1"));
    assert.deepEqual(await s.getSession("s2"), ended);
  });

  void it("createSession with an id that exists rejects conflict naming it, and keeps the first", async () => {
    const s = store();
    await s.createSession(session("s-dup"));
    await rejectsWith(s.createSession(session("s-dup", { state: "failed" })), "conflict", /s-dup/);
    assert.equal((await s.getSession("s-dup"))?.state, "running");
    assert.equal((await s.listSessions()).length, 1);
  });

  void it("updateSession changes only the given fields and resolves the stored session", async () => {
    const s = store();
    await s.createSession(session("s1"));
    const patch = { state: "stopped", endedAt: "2026-11-02T10:05:00.000Z", endReason: "stopped by user" } as const;
    const updated = await s.updateSession("s1", patch);
    assert.deepEqual(updated, { ...session("s1"), ...patch });
    assert.deepEqual(await s.getSession("s1"), updated);
    const again = await s.updateSession("s1", { providerState: { pid: 7 }, endReason: undefined });
    assert.deepEqual(again, { ...session("s1"), ...patch, providerState: { pid: 7 } });
    assert.deepEqual(await s.updateSession("s1", {}), again);
  });

  void it("updateSession can set nullable fields back to null", async () => {
    const s = store();
    await s.createSession(session("s1", { expiresAt: "2026-11-02T11:00:00.000Z" }));
    assert.equal((await s.updateSession("s1", { expiresAt: null })).expiresAt, null);
    assert.equal((await s.getSession("s1"))?.expiresAt, null);
  });

  void it("updateSession of an unknown id rejects not_found and creates nothing", async () => {
    const s = store();
    await rejectsWith(s.updateSession("ghost", { state: "lost" }), "not_found", /ghost/);
    assert.equal(await s.getSession("ghost"), null);
  });

  void it("deleteSession removes it once", async () => {
    const s = store();
    await s.createSession(session("s1"));
    await s.createSession(session("s2"));
    assert.equal(await s.deleteSession("s1"), true);
    assert.equal(await s.getSession("s1"), null);
    assert.equal(await s.deleteSession("s1"), false);
    assert.deepEqual((await s.listSessions()).map((x) => x.id), ["s2"]);
  });
}

/** Four sessions over two environments; "b" and "c" were created in the same millisecond. */
async function seedSessions(s: Store): Promise<void> {
  await s.createSession(session("c", { createdAt: "2026-11-02T10:00:02.000Z", environment: "docs", state: "stopped" }));
  await s.createSession(session("a", { createdAt: "2026-11-02T10:00:01.000Z", state: "starting" }));
  await s.createSession(session("d", { createdAt: "2026-11-02T10:00:03.000Z", state: "running" }));
  await s.createSession(session("b", { createdAt: "2026-11-02T10:00:02.000Z", state: "running" }));
}

function sessionListCases(store: () => Store): void {
  void it("listSessions is newest first, ties by id", async () => {
    const s = store();
    await seedSessions(s);
    assert.deepEqual((await s.listSessions()).map((x) => x.id), ["d", "b", "c", "a"]);
    assert.deepEqual((await s.listSessions({})).map((x) => x.id), ["d", "b", "c", "a"]);
  });

  void it("listSessions orders by time, not by text, when timestamps differ in precision", async () => {
    const s = store();
    await s.createSession(session("whole", { createdAt: "2026-11-02T10:00:00Z" }));
    await s.createSession(session("later", { createdAt: "2026-11-02T10:00:00.500Z" }));
    assert.deepEqual((await s.listSessions()).map((x) => x.id), ["later", "whole"]);
  });

  void it("listSessions filters by states, by environment, and by both", async () => {
    const s = store();
    await seedSessions(s);
    const ids = async (filter: Parameters<Store["listSessions"]>[0]) => (await s.listSessions(filter)).map((x) => x.id);
    assert.deepEqual(await ids({ states: ["running"] }), ["d", "b"]);
    assert.deepEqual(await ids({ states: ["starting", "stopped"] }), ["c", "a"]);
    assert.deepEqual(await ids({ environment: "runtime" }), ["d", "b", "a"]);
    assert.deepEqual(await ids({ environment: "docs", states: ["stopped", "running"] }), ["c"]);
    assert.deepEqual(await ids({ environment: "docs", states: ["running"] }), []);
    assert.deepEqual(await ids({ states: ["lost", "failed"] }), []);
    assert.deepEqual(await ids({ environment: "nope" }), []);
  });

  void it("listSessions with states: [] matches no session (an absent states means any)", async () => {
    const s = store();
    await seedSessions(s);
    assert.deepEqual(await s.listSessions({ states: [] }), []);
    assert.equal((await s.listSessions({ states: undefined })).length, 4);
  });

  void it("listSessions sees state changes made by updateSession", async () => {
    const s = store();
    await seedSessions(s);
    await s.updateSession("d", { state: "lost", endReason: "lost: sandbox gone after restart" });
    assert.deepEqual((await s.listSessions({ states: ["running"] })).map((x) => x.id), ["b"]);
    assert.deepEqual((await s.listSessions({ states: ["lost"] })).map((x) => x.id), ["d"]);
  });
}
