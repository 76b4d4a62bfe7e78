import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, writeFile, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { LayerStore } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";

/**
 * Behaviours every LayerStore keeps (containerd's snapshotter testsuite is the model): a fresh
 * store per case, each rule of the interface's doc comment checked.
 */
export function runLayerStoreSuite(name: string, factory: () => Promise<{ store: LayerStore; cleanup: () => Promise<void> }>): void {
  void describe(`LayerStore conformance: ${name}`, () => {
    let store: LayerStore;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      ({ store, cleanup } = await factory());
    });
    afterEach(async () => cleanup());

    void it("prepare gives an empty upper and a work dir", async () => {
      const a = await store.prepare("k1");
      assert.ok(existsSync(a.upperDir) && existsSync(a.workDir));
      assert.notEqual(a.upperDir, a.workDir);
      assert.deepEqual((await store.list()).active, ["k1"]);
    });

    void it("prepare of an existing key rejects conflict", async () => {
      await store.prepare("k1");
      await assert.rejects(store.prepare("k1"), (e: unknown) => e instanceof PaddockError && e.code === "conflict");
    });

    void it("commit turns an active layer into a committed one with its content", async () => {
      const a = await store.prepare("k1");
      await writeFile(join(a.upperDir, "f"), "hello");
      await store.commit("k1", "layer1");
      assert.equal(await store.has("layer1"), true);
      assert.equal(await readFile(join(store.layerPath("layer1"), "f"), "utf8"), "hello");
      assert.deepEqual(await store.list(), { committed: ["layer1"], active: [] });
    });

    void it("commit onto an existing id keeps the first and discards the active layer", async () => {
      const a = await store.prepare("k1");
      await writeFile(join(a.upperDir, "f"), "first");
      await store.commit("k1", "L");
      const b = await store.prepare("k2");
      await writeFile(join(b.upperDir, "f"), "second");
      await store.commit("k2", "L");
      assert.equal(await readFile(join(store.layerPath("L"), "f"), "utf8"), "first");
      assert.deepEqual((await store.list()).active, []);
    });

    void it("commit of an unknown key rejects not_found", async () => {
      await assert.rejects(store.commit("nope", "L"), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
    });

    void it("fork copies an active layer; later writes stay apart", async () => {
      const a = await store.prepare("k1");
      await writeFile(join(a.upperDir, "f"), "v1");
      const b = await store.fork("k1", "k2");
      await writeFile(join(b.upperDir, "f"), "changed in fork");
      await writeFile(join(a.upperDir, "g"), "only in original");
      assert.equal(await readFile(join(a.upperDir, "f"), "utf8"), "v1");
      assert.equal(existsSync(join(b.upperDir, "g")), false);
    });

    void it("remove of an unknown name resolves false; of a known one true and it is gone", async () => {
      assert.equal(await store.remove("nope"), false);
      const a = await store.prepare("k1");
      assert.equal(await store.remove("k1"), true);
      assert.equal(existsSync(a.upperDir), false);
      await store.prepare("k2");
      await store.commit("k2", "L");
      assert.equal(await store.remove("L"), true);
      assert.equal(await store.has("L"), false);
    });

    void it("usage counts what a layer holds", async () => {
      const a = await store.prepare("k1");
      await mkdir(join(a.upperDir, "d"));
      await writeFile(join(a.upperDir, "d", "big"), Buffer.alloc(300_000, 1));
      assert.ok((await store.usage("k1")) >= 300_000);
      await assert.rejects(store.usage("nope"), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
    });

    void it("snapshot captures an active layer as a read-only committed one; the active layer goes on", async () => {
      const a = await store.prepare("k1");
      await mkdir(join(a.upperDir, "d"));
      await writeFile(join(a.upperDir, "d", "f"), "v1");
      await store.flush("k1");
      await store.snapshot("k1", "snap");
      assert.equal(await store.has("snap"), true);
      assert.deepEqual(await store.list(), { committed: ["snap"], active: ["k1"] });
      await writeFile(join(a.upperDir, "d", "f"), "v2");
      await writeFile(join(a.upperDir, "later"), "x");
      assert.equal(await readFile(join(store.layerPath("snap"), "d", "f"), "utf8"), "v1");
      assert.equal(existsSync(join(store.layerPath("snap"), "later")), false);
      assert.equal(await readFile(join(a.upperDir, "d", "f"), "utf8"), "v2");
    });

    void it("snapshot onto an existing id rejects conflict (and leaves both); of an unknown key not_found", async () => {
      const a = await store.prepare("k1");
      await writeFile(join(a.upperDir, "f"), "first");
      await store.snapshot("k1", "snap");
      await writeFile(join(a.upperDir, "f"), "second");
      await assert.rejects(store.snapshot("k1", "snap"), (e: unknown) => e instanceof PaddockError && e.code === "conflict");
      assert.equal(await readFile(join(store.layerPath("snap"), "f"), "utf8"), "first");
      assert.deepEqual(await store.list(), { committed: ["snap"], active: ["k1"] });
      await assert.rejects(store.snapshot("nope", "snap2"), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
      await assert.rejects(store.flush("nope"), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
      assert.equal(await store.has("snap2"), false);
    });

    void it("prepareFrom: copies start with the snapshot's files and stay apart from it and from each other", async () => {
      const a = await store.prepare("k1");
      await mkdir(join(a.upperDir, "d"));
      await writeFile(join(a.upperDir, "d", "f"), "base");
      await writeFile(join(a.upperDir, "g"), "keep");
      await store.snapshot("k1", "snap");
      const c1 = await store.prepareFrom("snap", "c1", { maxBytes: 64 * 2 ** 20 });
      const c2 = await store.prepareFrom("snap", "c2");
      for (const c of [c1, c2]) {
        assert.equal(await readFile(join(c.upperDir, "d", "f"), "utf8"), "base");
        assert.ok(existsSync(c.workDir));
        assert.notEqual(c.upperDir, c.workDir);
      }
      await writeFile(join(c1.upperDir, "d", "f"), "changed in c1");
      await writeFile(join(c1.upperDir, "only-c1"), "x");
      await rm(join(c2.upperDir, "g"));
      await writeFile(join(a.upperDir, "only-source"), "x");
      assert.equal(await readFile(join(store.layerPath("snap"), "d", "f"), "utf8"), "base");
      assert.equal(await readFile(join(c2.upperDir, "d", "f"), "utf8"), "base");
      assert.equal(await readFile(join(a.upperDir, "d", "f"), "utf8"), "base");
      assert.equal(existsSync(join(c2.upperDir, "only-c1")), false);
      assert.equal(existsSync(join(store.layerPath("snap"), "only-c1")), false);
      assert.equal(existsSync(join(a.upperDir, "only-c1")), false);
      assert.equal(await readFile(join(c1.upperDir, "g"), "utf8"), "keep", "a delete in c2 is c2's alone");
      assert.equal(await readFile(join(store.layerPath("snap"), "g"), "utf8"), "keep");
      for (const c of [c1, c2]) assert.equal(existsSync(join(c.upperDir, "only-source")), false);
      assert.deepEqual(await store.list(), { committed: ["snap"], active: ["c1", "c2", "k1"] });
    });

    void it("prepareFrom of an unknown id rejects not_found; onto an existing key conflict", async () => {
      await assert.rejects(store.prepareFrom("nope", "c1"), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
      await store.prepare("k1");
      await store.snapshot("k1", "snap");
      await assert.rejects(store.prepareFrom("snap", "k1"), (e: unknown) => e instanceof PaddockError && e.code === "conflict");
      assert.deepEqual(await store.list(), { committed: ["snap"], active: ["k1"] });
    });

    void it("a copy of a committed (built) layer works like a copy of a snapshot; commit of a copy keeps its writes", async () => {
      const b = await store.prepare("b1");
      await writeFile(join(b.upperDir, "tool"), "v1");
      await store.commit("b1", "built");
      const c = await store.prepareFrom("built", "c1");
      await writeFile(join(c.upperDir, "tool"), "v2");
      await store.commit("c1", "built2");
      assert.equal(await readFile(join(store.layerPath("built"), "tool"), "utf8"), "v1");
      assert.equal(await readFile(join(store.layerPath("built2"), "tool"), "utf8"), "v2");
    });

    void it("removing a snapshot leaves its copies; removing everything leaves nothing", async () => {
      const a = await store.prepare("k1");
      await writeFile(join(a.upperDir, "f"), "data");
      await store.snapshot("k1", "snap");
      const c = await store.prepareFrom("snap", "c1");
      assert.equal(await store.remove("snap"), true);
      assert.equal(await store.has("snap"), false);
      assert.equal(existsSync(store.layerPath("snap")), false);
      assert.equal(await readFile(join(c.upperDir, "f"), "utf8"), "data");
      await writeFile(join(c.upperDir, "f2"), "more");
      assert.equal(await store.remove("c1"), true);
      assert.equal(await store.remove("k1"), true);
      assert.equal(existsSync(c.upperDir) || existsSync(a.upperDir), false);
      assert.deepEqual(await store.list(), { committed: [], active: [] });
      await assert.rejects(store.prepareFrom("snap", "c2"), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
    });

    void it("names that could escape the store are refused", async () => {
      for (const bad of ["../x", "a/b", "", ".hidden", "x".repeat(200)]) {
        await assert.rejects(store.prepare(bad), (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument", bad);
        await assert.rejects(store.snapshot("k1", bad), (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument", bad);
        await assert.rejects(store.prepareFrom(bad, "k1"), (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument", bad);
      }
    });
  });
}
