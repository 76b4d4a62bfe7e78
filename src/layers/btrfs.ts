import { mkdir, readdir, rm, stat, truncate, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ActiveLayer, LayerStore } from "../core/index.ts";
import { PaddockError, conflict, runCommand } from "../core/index.ts";
import { directoryUsage, isMountPoint, checkLayerName, renameUnlessTaken } from "./common.ts";

/**
 * Layers as btrfs subvolumes inside a loop-mounted image (this machine's root is ext4, which has no
 * reflinks). Committing is a rename plus a read-only flag, forking a running session's upper is a
 * subvolume snapshot: both O(1) whatever the session wrote. The image is sparse and mounted with
 * `discard=async`, so deleted layers give their space back to the host; its size caps what all
 * layers together can take, and each active layer gets a qgroup limit so one session cannot fill it.
 *
 * An active layer is one subvolume holding the overlay's `fs/` (upper) and `work/` directories:
 * overlayfs renames from work into upper, which fails with EXDEV across subvolumes. A committed
 * layer is that subvolume renamed, its content under `fs/`.
 *
 * The mount outlives the control plane on purpose: running sessions keep their overlays (in their own
 * mount namespaces) across a control-plane restart, and re-attaching the same image through a second
 * loop device would present one btrfs filesystem twice. `close({ unmount: true })` is for tests.
 */
export interface BtrfsLayerStoreOptions {
  /** Directory the image is mounted on. */
  root: string;
  /** Image file (created sparse on first use). */
  image: string;
  /** Size of the image when it is created. */
  imageBytes: number;
}

export async function openBtrfsLayerStore(opts: BtrfsLayerStoreOptions): Promise<LayerStore & { close(o?: { unmount?: boolean }): Promise<void> }> {
  await mkdir(opts.root, { recursive: true, mode: 0o700 });
  if (!(await isMountPoint(opts.root))) {
    if (!existsSync(opts.image)) {
      await writeFile(opts.image, "", { mode: 0o600 });
      await truncate(opts.image, opts.imageBytes);
      await runCommand(["mkfs.btrfs", "-q", opts.image]);
    }
    await runCommand(["mount", "-o", "loop,discard=async,noatime", opts.image, opts.root]);
    await runCommand(["btrfs", "quota", "enable", opts.root]);
  }
  for (const d of ["committed", "active"]) await mkdir(join(opts.root, d), { recursive: true, mode: 0o700 });
  return new BtrfsLayerStore(opts.root);
}

class BtrfsLayerStore implements LayerStore {
  readonly kind = "btrfs" as const;
  readonly committedDir: string;
  private readonly activeDir: string;

  constructor(private readonly root: string) {
    this.committedDir = join(root, "committed");
    this.activeDir = join(root, "active");
  }

  layerPath(id: string): string {
    checkLayerName(id);
    return join(this.committedDir, id, "fs");
  }

  async has(id: string): Promise<boolean> {
    checkLayerName(id);
    return existsSync(join(this.committedDir, id));
  }

  async prepare(key: string, opts: { maxBytes?: number } = {}): Promise<ActiveLayer> {
    checkLayerName(key);
    const subvolume = join(this.activeDir, key);
    if (existsSync(subvolume)) throw conflict(`active layer ${key} already exists`);
    await runCommand(["btrfs", "subvolume", "create", subvolume]);
    const active = { key, upperDir: join(subvolume, "fs"), workDir: join(subvolume, "work") };
    await mkdir(active.upperDir, { mode: 0o755 });
    await mkdir(active.workDir, { mode: 0o700 });
    if (opts.maxBytes !== undefined) await runCommand(["btrfs", "qgroup", "limit", String(opts.maxBytes), subvolume]);
    return active;
  }

  async commit(key: string, id: string): Promise<void> {
    checkLayerName(key);
    checkLayerName(id);
    const from = join(this.activeDir, key);
    if (!existsSync(from)) throw new PaddockError("not_found", `active layer ${key} not found`);
    const to = join(this.committedDir, id);
    if (existsSync(to)) {
      await this.remove(key);
      return;
    }
    await rm(join(from, "work"), { recursive: true, force: true });
    if (!(await renameUnlessTaken(from, to))) {
      // Another commit of the same id won the race: ids are content keys, the first one stays.
      await this.remove(key);
      return;
    }
    await runCommand(["btrfs", "property", "set", "-ts", to, "ro", "true"]);
  }

  async fork(key: string, newKey: string): Promise<ActiveLayer> {
    checkLayerName(key);
    checkLayerName(newKey);
    const from = join(this.activeDir, key);
    const to = join(this.activeDir, newKey);
    if (!existsSync(from)) throw new PaddockError("not_found", `active layer ${key} not found`);
    if (existsSync(to)) throw conflict(`active layer ${newKey} already exists`);
    await runCommand(["btrfs", "subvolume", "snapshot", from, to]);
    // The snapshot copied the source's overlay scratch space; a fresh overlay needs an empty one.
    await rm(join(to, "work"), { recursive: true, force: true });
    await mkdir(join(to, "work"), { mode: 0o700 });
    return { key: newKey, upperDir: join(to, "fs"), workDir: join(to, "work") };
  }

  async remove(keyOrId: string): Promise<boolean> {
    checkLayerName(keyOrId);
    let removed = false;
    for (const dir of [this.activeDir, this.committedDir]) {
      const p = join(dir, keyOrId);
      if (!existsSync(p)) continue;
      // A read-only subvolume can still be deleted by root; no need to flip the flag first.
      await runCommand(["btrfs", "subvolume", "delete", p]);
      removed = true;
    }
    return removed;
  }

  async usage(keyOrId: string): Promise<number> {
    checkLayerName(keyOrId);
    for (const dir of [this.activeDir, this.committedDir]) {
      const p = join(dir, keyOrId);
      if (existsSync(p)) return directoryUsage(p);
    }
    throw new PaddockError("not_found", `layer ${keyOrId} not found`);
  }

  async list(): Promise<{ committed: string[]; active: string[] }> {
    return { committed: (await readdir(this.committedDir)).sort(), active: (await readdir(this.activeDir)).sort() };
  }

  async close(o: { unmount?: boolean } = {}): Promise<void> {
    if (o.unmount && (await isMountPoint(this.root))) {
      await runCommand(["umount", this.root]);
      // The loop device was set up with autoclear by mount(8), so it detaches with the last user.
      await stat(this.root);
    }
  }
}
