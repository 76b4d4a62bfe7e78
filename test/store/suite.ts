/**
 * The Store conformance suite (STYLE.md point 3): every implementation runs it, each case against
 * a fresh store from `factory`, so no case depends on another's data or order. It checks every
 * method and every rule in the doc comment of src/core/store.ts; implementation-specific tests
 * (durability, migrations) live next to the implementation's own test file. `void` before
 * describe/it marks node:test's returned promises as deliberately unawaited (the runner awaits them).
 *
 * @example
 * runStoreSuite("sqlite :memory:", () => openSqliteStore(":memory:"));
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { Store } from "../../src/core/store.ts";
import { environmentCases } from "./suite-environments.ts";
import { layer, session, template, versionInput } from "./suite-fixtures.ts";
import { recordCases } from "./suite-records.ts";
import { vaultRecordCases } from "./suite-vault.ts";
import { guardRecordCases } from "./suite-guard.ts";
import { snapshotCases } from "./suite-snapshots.ts";

export function runStoreSuite(name: string, factory: () => Promise<Store>): void {
  void describe(`Store conformance: ${name}`, () => {
    let current: Store | undefined;
    const store = (): Store => {
      assert.ok(current, "the store is opened in beforeEach");
      return current;
    };
    beforeEach(async () => {
      current = await factory();
    });
    afterEach(async () => {
      await current?.close();
      current = undefined;
    });

    void describe("unknown keys and empty stores", () => emptyCases(store));
    void describe("copies, not aliases", () => copyCases(store));
    void describe("environments and builds", () => environmentCases(store));
    void describe("layers, templates and sessions", () => recordCases(store));
    void describe("secrets, egress records and sealed blobs", () => vaultRecordCases(store));
    void describe("principals, tokens, audit records and approvals", () => guardRecordCases(store));
    void describe("snapshots, pool members and pool settings", () => snapshotCases(store));
  });
}

function emptyCases(store: () => Store): void {
  void it("getters for unknown keys resolve null", async () => {
    const s = store();
    assert.equal(await s.getEnvironment("nope"), null);
    assert.equal(await s.getEnvironmentVersion("nope", 1), null);
    assert.equal(await s.getLayer("nope"), null);
    assert.equal(await s.getTemplate("nope"), null);
    assert.equal(await s.getSession("nope"), null);
  });

  void it("list methods resolve [] when there is nothing", async () => {
    const s = store();
    assert.deepEqual(await s.listEnvironments(), []);
    assert.deepEqual(await s.listEnvironmentVersions("nope"), []);
    assert.deepEqual(await s.listLayers(), []);
    assert.deepEqual(await s.listTemplates(), []);
    assert.deepEqual(await s.listSessions(), []);
    assert.deepEqual(await s.listSessions({ states: ["running"], environment: "nope" }), []);
  });

  void it("deletes of unknown keys resolve false", async () => {
    const s = store();
    assert.equal(await s.deleteEnvironment("nope"), false);
    assert.equal(await s.deleteLayer("nope"), false);
    assert.equal(await s.deleteSession("nope"), false);
  });

  void it("an existing version of another environment is still unknown", async () => {
    const s = store();
    await s.addEnvironmentVersion(versionInput("runtime"));
    assert.equal(await s.getEnvironmentVersion("runtime", 2), null);
    assert.equal(await s.getEnvironmentVersion("other", 1), null);
  });
}

function copyCases(store: () => Store): void {
  void it("mutating a returned object changes nothing stored", async () => {
    const s = store();
    await s.createSession(session("s1"));
    const got = await s.getSession("s1");
    assert.ok(got);
    got.state = "failed";
    (got.providerState["nested"] as { ok: boolean }).ok = false;
    (got.providerState["mounts"] as string[]).push("/evil");
    const listed = await s.listSessions();
    listed[0]!.providerState["pid"] = 1;
    const updated = await s.updateSession("s1", { endReason: "x" });
    updated.providerState["netns"] = "changed";
    assert.deepEqual(await s.getSession("s1"), { ...session("s1"), endReason: "x" });
  });

  void it("mutating an object after writing it changes nothing stored", async () => {
    const s = store();
    const input = session("s1");
    await s.createSession(input);
    input.state = "lost";
    (input.providerState["mounts"] as string[]).length = 0;
    const t = template("t1");
    await s.putTemplate(t);
    t.layers.reverse();
    const l = layer("l1");
    await s.putLayer(l);
    l.sizeBytes = 0;
    assert.deepEqual(await s.getSession("s1"), session("s1"));
    assert.deepEqual(await s.getTemplate("t1"), template("t1"));
    assert.deepEqual(await s.getLayer("l1"), layer("l1"));
  });

  void it("versions, environments, layers and templates come back as fresh copies", async () => {
    const s = store();
    const added = await s.addEnvironmentVersion(versionInput("runtime"));
    (added.spec as { steps: unknown[] }).steps.push("added");
    const got = await s.getEnvironmentVersion("runtime", 1);
    assert.ok(got);
    assert.deepEqual(got.spec, versionInput("runtime").spec);
    (got.spec as { limits: { cpu: number } }).limits.cpu = 64;
    const listed = await s.listEnvironmentVersions("runtime");
    assert.deepEqual(listed[0]?.spec, versionInput("runtime").spec);
    const env = await s.getEnvironment("runtime");
    assert.ok(env);
    env.currentVersion = 99;
    assert.equal((await s.getEnvironment("runtime"))?.currentVersion, null);
    await s.putTemplate(template("t1"));
    (await s.getTemplate("t1"))?.layers.push("l-extra");
    (await s.listTemplates())[0]?.layers.pop();
    assert.deepEqual((await s.getTemplate("t1"))?.layers, template("t1").layers);
    await s.putLayer(layer("l1"));
    const l = await s.getLayer("l1");
    assert.ok(l);
    l.parentId = "x";
    assert.equal((await s.listLayers())[0]?.parentId, null);
  });
}
