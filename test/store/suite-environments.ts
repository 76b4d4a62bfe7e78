/** Conformance cases for environments, their versions and builds (see suite.ts). */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { Store } from "../../src/core/store.ts";
import { ISO_UTC, rejectsWith, session, versionInput } from "./suite-fixtures.ts";

export function environmentCases(store: () => Store): void {
  void it("addEnvironmentVersion stores the file as given and starts its build", async () => {
    const s = store();
    const input = versionInput("runtime");
    const v = await s.addEnvironmentVersion(input);
    assert.deepEqual(v, { ...input, version: 1, createdAt: v.createdAt, buildStatus: "building", templateId: null, buildError: null });
    assert.match(v.createdAt, ISO_UTC);
    assert.deepEqual(await s.getEnvironmentVersion("runtime", 1), v);
  });

  void it("the first version creates the environment: no current version until a build succeeds", async () => {
    const s = store();
    await s.addEnvironmentVersion(versionInput("runtime"));
    const env = await s.getEnvironment("runtime");
    assert.ok(env);
    assert.deepEqual({ ...env, updatedAt: "" }, { name: "runtime", currentVersion: null, latestVersion: 1, updatedAt: "" });
    assert.match(env.updatedAt, ISO_UTC);
  });

  void it("versions are numbered 1, 2, 3… per environment", async () => {
    const s = store();
    const numbers: string[] = [];
    for (const name of ["a", "b", "a", "a", "b"]) {
      const v = await s.addEnvironmentVersion(versionInput(name));
      numbers.push(`${name}${v.version}`);
    }
    assert.deepEqual(numbers, ["a1", "b1", "a2", "a3", "b2"]);
    assert.equal((await s.getEnvironment("a"))?.latestVersion, 3);
    assert.equal((await s.getEnvironment("b"))?.latestVersion, 2);
  });

  void it("concurrent addEnvironmentVersion calls get distinct consecutive numbers", async () => {
    const s = store();
    const added = await Promise.all([1, 2, 3, 4, 5].map((n) => s.addEnvironmentVersion(versionInput("runtime", n))));
    assert.deepEqual(added.map((v) => v.version).sort((x, y) => x - y), [1, 2, 3, 4, 5]);
    assert.equal((await s.getEnvironment("runtime"))?.latestVersion, 5);
  });

  void it("listEnvironmentVersions is newest first; listEnvironments lists every environment once", async () => {
    const s = store();
    for (const n of [1, 2, 3]) await s.addEnvironmentVersion(versionInput("runtime", n));
    await s.addEnvironmentVersion(versionInput("docs"));
    const versions = await s.listEnvironmentVersions("runtime");
    assert.deepEqual(versions.map((v) => v.version), [3, 2, 1]);
    assert.deepEqual(versions.map((v) => v.source), [3, 2, 1].map((n) => versionInput("runtime", n).source));
    const names = (await s.listEnvironments()).map((e) => e.name).sort();
    assert.deepEqual(names, ["docs", "runtime"]);
  });

  void it("finishBuild with a template marks the version ready and makes it current", async () => {
    const s = store();
    await s.addEnvironmentVersion(versionInput("runtime"));
    await s.finishBuild("runtime", 1, { templateId: "tpl-1" });
    const v = await s.getEnvironmentVersion("runtime", 1);
    assert.deepEqual([v?.buildStatus, v?.templateId, v?.buildError], ["ready", "tpl-1", null]);
    assert.equal((await s.getEnvironment("runtime"))?.currentVersion, 1);
  });

  void it("finishBuild with an error marks the version failed and leaves the current version", async () => {
    const s = store();
    await s.addEnvironmentVersion(versionInput("runtime", 1));
    await s.addEnvironmentVersion(versionInput("runtime", 2));
    await s.addEnvironmentVersion(versionInput("runtime", 3));
    await s.finishBuild("runtime", 1, { error: "step 2: apt-get exited 100" });
    assert.equal((await s.getEnvironment("runtime"))?.currentVersion, null);
    await s.finishBuild("runtime", 2, { templateId: "tpl-2" });
    await s.finishBuild("runtime", 3, { error: "step 4: npm ci exited 1" });
    const v3 = await s.getEnvironmentVersion("runtime", 3);
    assert.deepEqual([v3?.buildStatus, v3?.templateId, v3?.buildError], ["failed", null, "step 4: npm ci exited 1"]);
    assert.equal((await s.getEnvironment("runtime"))?.currentVersion, 2);
  });

  void it("an older build finishing late never moves the current version back", async () => {
    const s = store();
    await s.addEnvironmentVersion(versionInput("runtime", 1));
    await s.addEnvironmentVersion(versionInput("runtime", 2));
    await s.finishBuild("runtime", 2, { templateId: "tpl-2" });
    await s.finishBuild("runtime", 1, { templateId: "tpl-1" });
    assert.equal((await s.getEnvironmentVersion("runtime", 1))?.buildStatus, "ready");
    const env = await s.getEnvironment("runtime");
    assert.deepEqual([env?.currentVersion, env?.latestVersion], [2, 2]);
  });

  void it("finishBuild of an unknown version rejects not_found; of a finished one, conflict", async () => {
    const s = store();
    await rejectsWith(s.finishBuild("nope", 1, { templateId: "t" }), "not_found", /nope/);
    await s.addEnvironmentVersion(versionInput("runtime"));
    await rejectsWith(s.finishBuild("runtime", 2, { templateId: "t" }), "not_found", /runtime/);
    await s.finishBuild("runtime", 1, { error: "boom" });
    await rejectsWith(s.finishBuild("runtime", 1, { templateId: "t" }), "conflict", /runtime/);
    const v = await s.getEnvironmentVersion("runtime", 1);
    assert.deepEqual([v?.buildStatus, v?.buildError], ["failed", "boom"]);
  });

  void it("deleteEnvironment removes it and its versions, keeps sessions and other environments", async () => {
    const s = store();
    await s.addEnvironmentVersion(versionInput("runtime", 1));
    await s.addEnvironmentVersion(versionInput("runtime", 2));
    await s.addEnvironmentVersion(versionInput("docs"));
    await s.createSession(session("s1", { environment: "runtime" }));
    assert.equal(await s.deleteEnvironment("runtime"), true);
    assert.equal(await s.getEnvironment("runtime"), null);
    assert.equal(await s.getEnvironmentVersion("runtime", 1), null);
    assert.deepEqual(await s.listEnvironmentVersions("runtime"), []);
    assert.deepEqual((await s.listEnvironments()).map((e) => e.name), ["docs"]);
    assert.equal((await s.getSession("s1"))?.environment, "runtime");
    assert.equal(await s.deleteEnvironment("runtime"), false);
  });

  void it("an environment applied again after deletion starts again at version 1", async () => {
    const s = store();
    await s.addEnvironmentVersion(versionInput("runtime", 1));
    await s.addEnvironmentVersion(versionInput("runtime", 2));
    await s.deleteEnvironment("runtime");
    const v = await s.addEnvironmentVersion(versionInput("runtime", 3));
    assert.equal(v.version, 1);
    assert.deepEqual((await s.listEnvironmentVersions("runtime")).map((x) => x.sourceDigest), [versionInput("runtime", 3).sourceDigest]);
  });
}
