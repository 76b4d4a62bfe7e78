import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { openBtrfsLayerStore, openDirectoryLayerStore, isMountPoint } from "../../src/layers/index.ts";
import { runCommand } from "../../src/core/index.ts";
import { runLayerStoreSuite } from "./suite.ts";
import { tempDir } from "../helpers/tmp.ts";

runLayerStoreSuite("directory", async () => {
  const dir = await tempDir();
  return { store: await openDirectoryLayerStore(join(dir.path, "layers")), cleanup: dir.remove };
});

const openBtrfs = async () => {
  const dir = await tempDir();
  const store = await openBtrfsLayerStore({ root: join(dir.path, "layers"), image: join(dir.path, "layers.img"), imageBytes: 2 ** 30 });
  return {
    store,
    root: join(dir.path, "layers"),
    cleanup: async () => {
      await store.close({ unmount: true });
      await dir.remove();
    },
  };
};

runLayerStoreSuite("btrfs", openBtrfs);

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

  void it("close({unmount}) leaves no mount behind", async () => {
    const { store, root, cleanup } = await openBtrfs();
    assert.equal(await isMountPoint(root), true);
    await store.close({ unmount: true });
    assert.equal(await isMountPoint(root), false);
    await cleanup();
  });
});
