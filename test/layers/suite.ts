import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, writeFile, mkdir } from "node:fs/promises";
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

    void it("names that could escape the store are refused", async () => {
      for (const bad of ["../x", "a/b", "", ".hidden", "x".repeat(200)]) {
        await assert.rejects(store.prepare(bad), (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument", bad);
      }
    });
  });
}
