import { mkdir, readdir, rm, truncate, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ActiveLayer, LayerStore } from "../core/index.ts";
import { PaddockError, conflict, notFound, runCommand } from "../core/index.ts";
import { directoryUsage, checkLayerName, isMountPoint, renameUnlessTaken } from "./common.ts";

/**
 * The fallback layer store: plain directories on whatever filesystem holds the data directory.
 * Commit is a rename (O(1)); fork, snapshot and prepareFrom copy the upper (`cp -a --reflink=auto`,
 * so they are O(1) only where the filesystem has reflinks, and O(bytes) on ext4). On the root filesystem the directories live in a loop-mounted
 * ext4 image (see openLayerStore), which also caps what all layers together can take. There is no
 * per-layer size limit here: `paddock doctor`
 * says so, and the btrfs store is the default wherever btrfs-progs exist.
 */
export async function openDirectoryLayerStore(
  root: string,
  opts: { image?: string; imageBytes?: number } = {},
): Promise<LayerStore & { close(o?: { unmount?: boolean }): Promise<void> }> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  if (opts.image && !(await isMountPoint(root))) {
    if (!existsSync(opts.image)) {
      await writeFile(opts.image, "", { mode: 0o600 });
      await truncate(opts.image, opts.imageBytes ?? 64 * 2 ** 30);
      await runCommand(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", opts.image]);
    }
    await runCommand(["mount", "-o", "loop,discard,noatime", opts.image, root]);
  }
  for (const d of ["committed", "active", "work", "tmp"]) await mkdir(join(root, d), { recursive: true, mode: 0o700 });
  // Copies are made under tmp/ and renamed into place complete: what is left there is a crash's.
  for (const name of await readdir(join(root, "tmp"))) await rm(join(root, "tmp", name), { recursive: true, force: true });
  return new DirectoryLayerStore(root, Boolean(opts.image));
}

class DirectoryLayerStore implements LayerStore {
  readonly kind = "directory" as const;
  readonly committedDir: string;
  private readonly activeDir: string;
  private readonly workRoot: string;
  private readonly tmpDir: string;
  private seq = 0;

  constructor(
    private readonly root: string,
    private readonly mounted: boolean,
  ) {
    this.committedDir = join(root, "committed");
    this.activeDir = join(root, "active");
    this.workRoot = join(root, "work");
    this.tmpDir = join(root, "tmp");
  }

  layerPath(id: string): string {
    checkLayerName(id);
    return join(this.committedDir, id);
  }

  async has(id: string): Promise<boolean> {
    checkLayerName(id);
    return existsSync(join(this.committedDir, id));
  }

  async prepare(key: string): Promise<ActiveLayer> {
    checkLayerName(key);
    const upperDir = join(this.activeDir, key);
    if (existsSync(upperDir)) throw conflict(`active layer ${key} already exists`);
    await mkdir(upperDir, { mode: 0o755 });
    const workDir = join(this.workRoot, key);
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    return { key, upperDir, workDir };
  }

  async commit(key: string, id: string): Promise<void> {
    checkLayerName(key);
    checkLayerName(id);
    const from = join(this.activeDir, key);
    if (!existsSync(from)) throw new PaddockError("not_found", `active layer ${key} not found`);
    const to = join(this.committedDir, id);
    // Another commit of the same id may win between the check and the rename: the first one stays.
    if (existsSync(to) || !(await renameUnlessTaken(from, to))) await rm(from, { recursive: true, force: true });
    await rm(join(this.workRoot, key), { recursive: true, force: true });
  }

  async fork(key: string, newKey: string): Promise<ActiveLayer> {
    checkLayerName(key);
    checkLayerName(newKey);
    const from = join(this.activeDir, key);
    const upperDir = join(this.activeDir, newKey);
    if (!existsSync(from)) throw new PaddockError("not_found", `active layer ${key} not found`);
    if (existsSync(upperDir)) throw conflict(`active layer ${newKey} already exists`);
    await runCommand(["cp", "-a", "--reflink=auto", from, upperDir]);
    const workDir = join(this.workRoot, newKey);
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    return { key: newKey, upperDir, workDir };
  }

  async snapshot(key: string, id: string): Promise<void> {
    checkLayerName(key);
    checkLayerName(id);
    const from = join(this.activeDir, key);
    const to = join(this.committedDir, id);
    if (!existsSync(from)) throw new PaddockError("not_found", `active layer ${key} not found`);
    if (existsSync(to)) throw conflict(`layer ${id} already exists`);
    // The work dir lives apart (work/<key>), so the copy is the upper alone.
    const tmp = await this.copyToTmp(from);
    if (!(await renameUnlessTaken(tmp, to))) {
      await rm(tmp, { recursive: true, force: true });
      throw conflict(`layer ${id} already exists`);
    }
  }

  async flush(key: string): Promise<void> {
    checkLayerName(key);
    // Nothing to do: `cp` reads what the page cache holds, written out or not.
    if (!existsSync(join(this.activeDir, key))) throw new PaddockError("not_found", `active layer ${key} not found`);
  }

  async prepareFrom(id: string, key: string): Promise<ActiveLayer> {
    checkLayerName(id);
    checkLayerName(key);
    const source = join(this.committedDir, id);
    const upperDir = join(this.activeDir, key);
    if (!existsSync(source)) throw notFound("layer", id);
    if (existsSync(upperDir)) throw conflict(`active layer ${key} already exists`);
    const tmp = await this.copyToTmp(source);
    if (!(await renameUnlessTaken(tmp, upperDir))) {
      await rm(tmp, { recursive: true, force: true });
      throw conflict(`active layer ${key} already exists`);
    }
    const workDir = join(this.workRoot, key);
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    return { key, upperDir, workDir };
  }

  /** A copy of `dir` under tmp/ (renamed into place by the caller, so no half copy is ever a layer). */
  private async copyToTmp(dir: string): Promise<string> {
    const tmp = join(this.tmpDir, `copy-${this.seq++}`);
    try {
      await runCommand(["cp", "-a", "--reflink=auto", dir, tmp]);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    return tmp;
  }

  async remove(keyOrId: string): Promise<boolean> {
    checkLayerName(keyOrId);
    let removed = false;
    for (const dir of [this.activeDir, this.committedDir]) {
      const p = join(dir, keyOrId);
      if (!existsSync(p)) continue;
      await rm(p, { recursive: true, force: true });
      removed = true;
    }
    await rm(join(this.workRoot, keyOrId), { recursive: true, force: true });
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
    if (o.unmount && this.mounted && (await isMountPoint(this.root))) await runCommand(["umount", this.root]);
  }
}
