/**
 * The layers box: where template layers and sessions' writable layers live on this machine.
 * `openLayerStore` picks btrfs (copy-on-write, size-limited) when btrfs-progs are installed and
 * the directory fallback otherwise, or what `kind` asks for.
 */
import { join } from "node:path";
import { mkdir, stat } from "node:fs/promises";
import type { LayerStore } from "../core/index.ts";
import { runCommand } from "../core/index.ts";
import { openBtrfsLayerStore } from "./btrfs.ts";
import { openDirectoryLayerStore } from "./directory.ts";

export { openBtrfsLayerStore } from "./btrfs.ts";
export { openDirectoryLayerStore } from "./directory.ts";
export { isMountPoint, unescapeMountPath } from "./common.ts";

export type LayerStoreKind = "btrfs" | "directory";

export interface OpenLayerStoreOptions {
  /** Data directory; layers go under `${home}/layers`. */
  home: string;
  kind?: LayerStoreKind;
  /** Size of the btrfs image when it is first created (default 64 GiB, sparse). */
  imageBytes?: number;
}

export type ClosableLayerStore = LayerStore & { close(o?: { unmount?: boolean }): Promise<void> };

export async function openLayerStore(opts: OpenLayerStoreOptions): Promise<ClosableLayerStore> {
  const kind = opts.kind ?? ((await hasBtrfsTools()) ? "btrfs" : "directory");
  const root = join(opts.home, "layers");
  switch (kind) {
    case "btrfs":
      return openBtrfsLayerStore({ root, image: join(opts.home, "layers.img"), imageBytes: opts.imageBytes ?? 64 * 2 ** 30 });
    case "directory":
      return openDirectoryLayerStore(root, await onRootFilesystem(opts.home) ? { image: join(opts.home, "layers-ext4.img"), imageBytes: opts.imageBytes ?? 64 * 2 ** 30 } : {});
  }
}

/**
 * overlayfs refuses a lower layer that lies inside another lower on the same filesystem, and
 * `base: host` uses the host's `/` as the bottom lower: layers kept on the root filesystem cannot
 * work. There the directory store lives in a loop-mounted ext4 image instead.
 */
async function onRootFilesystem(dir: string): Promise<boolean> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return (await stat(dir)).dev === (await stat("/")).dev;
}

async function hasBtrfsTools(): Promise<boolean> {
  const r = await runCommand(["sh", "-c", "command -v mkfs.btrfs && command -v btrfs"], { allowFailure: true });
  return r.code === 0;
}
