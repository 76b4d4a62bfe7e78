import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, open, readdir, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { openBtrfsLayerStore, openDirectoryLayerStore, isMountPoint } from "../../src/layers/index.ts";
import { runCommand } from "../../src/core/index.ts";
import { runLayerStoreSuite } from "./suite.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";

runLayerStoreSuite("directory", async () => {
  const dir = await tempDir();
  return { store: await openDirectoryLayerStore(join(dir.path, "layers")), cleanup: dir.remove };
});

const openBtrfs = async (o: { spares?: number; imageBytes?: number } = {}) => {
  const dir = await tempDir();
  const store = await openBtrfsLayerStore({ root: join(dir.path, "layers"), image: join(dir.path, "layers.img"), imageBytes: o.imageBytes ?? 2 ** 30, ...o });
  return {
    store,
    root: join(dir.path, "layers"),
    cleanup: async () => {
      await store.close({ unmount: true });
      await dir.remove();
    },
  };
};

runLayerStoreSuite("btrfs", () => openBtrfs());

/** Every subvolume of the filesystem mounted at `root`, by path below it, with its id. */
async function subvolumes(root: string): Promise<Map<string, string>> {
  const { stdout } = await runCommand(["btrfs", "subvolume", "list", root]);
  const out = new Map<string, string>();
  for (const m of stdout.matchAll(/^ID (\d+) .* path (.+)$/gm)) out.set(m[2]!, m[1]!);
  return out;
}

/** The referenced-bytes limit of a subvolume's qgroup (`none` when it has none). */
async function referencedLimit(path: string): Promise<string> {
  const { stdout } = await runCommand(["btrfs", "qgroup", "show", "-rf", "--raw", path]);
  const m = /^0\/\d+\s+\d+\s+\d+\s+(\S+)/m.exec(stdout);
  assert.ok(m, stdout);
  return m[1]!;
}

const fill = async (path: string, mib: number) => runCommand(["dd", "if=/dev/zero", `of=${path}`, "bs=1M", `count=${mib}`, "conv=fsync"], { allowFailure: true });

void describe("btrfs layer store", () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  void it("forks by snapshot: the fork is a child subvolume of the original, not a copy", async () => {
    const { store, cleanup } = await openBtrfs();
    cleanups.push(cleanup);
    const a = await store.prepare("k1");
    await writeFile(join(a.upperDir, "f"), Buffer.alloc(1 << 20, 7));
    const b = await store.fork("k1", "k2");
    const show = async (p: string) => (await runCommand(["btrfs", "subvolume", "show", p])).stdout;
    const uuid = /^\s*UUID:\s*(\S+)/m.exec(await show(dirname(a.upperDir)))?.[1];
    const parent = /Parent UUID:\s*(\S+)/.exec(await show(dirname(b.upperDir)))?.[1];
    assert.ok(uuid);
    assert.equal(parent, uuid);
  });

  void it("a per-layer size limit stops writes past it (EDQUOT), not the host's disk", async () => {
    const { store, cleanup } = await openBtrfs();
    cleanups.push(cleanup);
    const a = await store.prepare("k1", { maxBytes: 8 * 2 ** 20 });
    const r = await runCommand(["dd", "if=/dev/zero", `of=${join(a.upperDir, "fill")}`, "bs=1M", "count=64", "conv=fsync"], { allowFailure: true });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /quota exceeded|No space left/i);
  });

  void it("spares: prepare renames a ready subvolume (relimited, or made with the limit last asked for); the pool refills; close deletes them", async () => {
    const { store, root, cleanup } = await openBtrfs({ spares: 2 });
    cleanups.push(cleanup);
    const spareNames = async () => (await readdir(join(root, "spare"))).sort();
    await until(async () => (await spareNames()).length === 2, 10_000, "2 spares made at open");
    assert.deepEqual((await spareNames()).map((n) => n.replace(/-\d+$/, "")), ["none", "none"]);
    const before = await subvolumes(root);
    const spareIds = new Set((await spareNames()).map((n) => before.get(`spare/${n}`)));
    const limit = 8 * 2 ** 20;
    const a = await store.prepare("k1", { maxBytes: limit });
    assert.ok(spareIds.has((await subvolumes(root)).get("active/k1")), "active/k1 is a former spare");
    assert.equal(await referencedLimit(dirname(a.upperDir)), String(limit), "its limit was set on the way");
    assert.ok(existsSync(a.upperDir) && existsSync(a.workDir));
    assert.deepEqual(await readdir(a.upperDir), []);
    assert.match((await fill(join(a.upperDir, "fill"), 64)).stderr, /quota exceeded|No space left/i);
    // The pool is topped up with the limit the last prepare asked for.
    await until(async () => (await spareNames()).includes(`${limit}-2`), 10_000, "a spare with the new limit");
    const made = (await subvolumes(root)).get(`spare/${limit}-2`);
    const b = await store.prepare("k2", { maxBytes: limit });
    assert.equal((await subvolumes(root)).get("active/k2"), made, "the exact-limit spare is taken first");
    assert.equal(await referencedLimit(dirname(b.upperDir)), String(limit));
    assert.deepEqual((await store.list()).active, ["k1", "k2"], "spares are not active layers");
    await until(async () => (await spareNames()).length === 2, 10_000, "the pool refilled");
    await store.close();
    assert.deepEqual(await spareNames(), []);
    assert.deepEqual([...(await subvolumes(root)).keys()].sort(), ["active/k1", "active/k2"]);
  });

  void it("at open, half-made subvolumes in tmp/ are deleted and complete spares are used", async () => {
    const first = await openBtrfs({ spares: 0 });
    cleanups.push(first.cleanup);
    const { root } = first;
    await runCommand(["btrfs", "subvolume", "create", join(root, "tmp", "spare-9")]);
    await runCommand(["btrfs", "subvolume", "create", join(root, "spare", "none-7")]);
    for (const d of ["fs", "work"]) await mkdir(join(root, "spare", "none-7", d));
    const adopted = (await subvolumes(root)).get("spare/none-7");
    const again = await openBtrfsLayerStore({ root, image: join(dirname(root), "layers.img"), imageBytes: 2 ** 30, spares: 1 });
    assert.deepEqual(await readdir(join(root, "tmp")), []);
    await again.prepare("k1");
    assert.equal((await subvolumes(root)).get("active/k1"), adopted);
    await again.remove("k1");
    await again.close();
    assert.deepEqual([...(await subvolumes(root)).keys()], []);
  });

  void it("a copy of a snapshot can write maxBytes beyond what it starts with, also once the snapshot is gone", async () => {
    const { store, cleanup } = await openBtrfs({ spares: 0 });
    cleanups.push(cleanup);
    const a = await store.prepare("k1", { maxBytes: 128 * 2 ** 20 });
    assert.equal((await fill(join(a.upperDir, "big"), 64)).code, 0);
    await store.snapshot("k1", "snap");
    // 64 MiB shared with the snapshot, a 16 MiB allowance: a plain 16 MiB limit on referenced
    // bytes would already be exceeded.
    const c = await store.prepareFrom("snap", "c1", { maxBytes: 16 * 2 ** 20 });
    assert.equal((await fill(join(c.upperDir, "a"), 8)).code, 0);
    await store.remove("snap");
    await store.remove("k1");
    assert.equal((await fill(join(c.upperDir, "b"), 4)).code, 0, "the shared extents becoming the copy's own changes nothing");
    assert.match((await fill(join(c.upperDir, "c"), 64)).stderr, /quota exceeded|No space left/i);
    assert.equal((await stat(join(c.upperDir, "big"))).size, 64 * 2 ** 20);
  });

  void it("a snapshot of a layer with 1 GiB just written (not synced) holds all of it, shares its extents, and removal leaves no subvolume", async () => {
    const { store, root, cleanup } = await openBtrfs({ spares: 0, imageBytes: 4 * 2 ** 30 });
    cleanups.push(cleanup);
    const a = await store.prepare("k1");
    // 1024 blocks of 1 MiB, each starting with its own number: a missing or stale block shows.
    const block = Buffer.alloc(2 ** 20, 0x5a);
    const fh = await open(join(a.upperDir, "big"), "w");
    for (let i = 0; i < 1024; i++) {
      block.writeUInt32LE(i, 0);
      await fh.write(block, 0, block.length, i * block.length);
    }
    await fh.close();
    await store.flush("k1");
    await store.snapshot("k1", "snap");
    const c = await store.prepareFrom("snap", "c1");
    for (const file of [join(store.layerPath("snap"), "big"), join(c.upperDir, "big")]) {
      assert.equal((await stat(file)).size, 2 ** 30);
      const r = await open(file, "r");
      const got = Buffer.alloc(4);
      for (const i of [0, 1, 511, 512, 777, 1022, 1023]) {
        await r.read(got, 0, 4, i * 2 ** 20);
        assert.equal(got.readUInt32LE(0), i, `${file} block ${i}`);
      }
      await r.close();
    }
    const show = async (p: string) => (await runCommand(["btrfs", "subvolume", "show", p])).stdout;
    const uuid = /^\s*UUID:\s*(\S+)/m.exec(await show(dirname(a.upperDir)))?.[1];
    assert.equal(/Parent UUID:\s*(\S+)/.exec(await show(dirname(store.layerPath("snap"))))?.[1], uuid, "a snapshot, not a copy");
    assert.match(await show(dirname(store.layerPath("snap"))), /Flags:\s*readonly/);
    for (const name of ["snap", "c1", "k1"]) assert.equal(await store.remove(name), true);
    await store.close();
    assert.deepEqual([...(await subvolumes(root)).keys()], []);
  });

  void it("close({unmount}) leaves no mount behind", async () => {
    const { store, root, cleanup } = await openBtrfs();
    assert.equal(await isMountPoint(root), true);
    await store.close({ unmount: true });
    assert.equal(await isMountPoint(root), false);
    await cleanup();
  });
});
