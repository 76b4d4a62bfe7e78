import { mkdir, readFile, readdir, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ActiveLayer, LayerStore } from "../core/index.ts";
import { CommandRunner, PaddockError, SingleFlight, conflict, notFound, runCommand } from "../core/index.ts";
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
 * Snapshots (`snapshot`) are read-only subvolume snapshots of an active layer, committed layers in
 * every other way; a session started from one (`prepareFrom`) gets a writable snapshot of it. Both
 * are O(1) in what the layer holds; the only data-dependent cost is btrfs writing out the source's
 * dirty pages first, which `flush` does ahead, outside the provider's freeze.
 *
 * Session starts do no btrfs work on the request path when they can avoid it: a few empty active
 * subvolumes (with `fs/`, `work/` and the qgroup limit last asked for) are kept ready in `spare/`,
 * so `prepare` is a rename. They are made in the background, between bursts of starts, and
 * deleted at `close`. Each `btrfs` invocation costs 2–4 ms here, nearly all of it spawning a
 * process: the subvolume-create and qgroup-limit ioctls themselves take 0.15 and 0.01 ms (timed
 * with a small C program). A snapshot ioctl takes ~3 ms, but that is the transaction commit it
 * waits for, so a native helper would save only the spawn; bench/snapshot.ts prints the CLI
 * costs beside spawning `true`. After open, every `btrfs` goes through a `CommandRunner` (one
 * long-lived helper shell, commands in flight concurrently), so that spawn is the helper's: the
 * control plane's event loop, busy with other starts, pays a pipe write instead of a fork of itself.
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
  /** Empty active subvolumes kept ready for `prepare` (default 4; 0: none, each is made on demand). */
  spares?: number;
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
  for (const d of ["committed", "active", "spare", "tmp"]) await mkdir(join(opts.root, d), { recursive: true, mode: 0o700 });
  const store = new BtrfsLayerStore(opts.root, opts.spares ?? DEFAULT_SPARES);
  await store.adopt().catch(async (err: unknown) => {
    await store.close();
    throw err;
  });
  return store;
}

const DEFAULT_SPARES = 4;
/** A burst of session starts goes first: spares are made once no `prepare` came for this long. */
const REFILL_DELAY_MS = 25;
/**
 * Below this much dirty page cache on the whole machine, `flush` does nothing: a snapshot writes
 * out at most this much while the sandbox is frozen (~15 ms at the ~300 MB/s this machine writes
 * into the image), about what a pre-flush would cost.
 */
const FLUSH_THRESHOLD_BYTES = 4 * 2 ** 20;

/** `btrfs qgroup limit` takes a byte count or `none`; spares are named by it. */
type LimitKey = string;
const limitKey = (maxBytes: number | undefined): LimitKey => (maxBytes === undefined ? "none" : String(Math.ceil(maxBytes)));
const SPARE_NAME = /^(none|\d+)-(\d+)$/;

class BtrfsLayerStore implements LayerStore {
  readonly kind = "btrfs" as const;
  readonly committedDir: string;
  private readonly activeDir: string;
  /** Ready empty active subvolumes, named `<limit>-<n>` (see `prepare`). Not layers: `list` never shows them. */
  private readonly spareDir: string;
  /** Subvolumes being made or about to go (half-made spares and copies, pre-flush snapshots): whatever is here at open is a crash's leftover. */
  private readonly tmpDir: string;
  private readonly spares = new Map<LimitKey, string[]>();
  /** The limit spares are made with: the one the last `prepare` asked for. */
  private wantLimit: LimitKey = "none";
  private seq = 0;
  private refilling: Promise<void> | null = null;
  private refillTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Snapshot ids being made right now (see `snapshot`). */
  private readonly snapshotting = new Set<string>();
  /** Referenced bytes of committed layers (immutable, so cached): the base of a copy's limit. */
  private readonly referenced = new Map<string, Promise<number>>();
  /**
   * Runs every `btrfs` after open: a `spawn()` from the control plane blocks its event loop while
   * Node forks (several ms in a server of ~200 MiB), delaying whatever else is starting meanwhile.
   */
  private readonly btrfs = new CommandRunner();
  private readonly removals = new SingleFlight<boolean>();

  constructor(
    private readonly root: string,
    private readonly spareTarget: number,
  ) {
    this.committedDir = join(root, "committed");
    this.activeDir = join(root, "active");
    this.spareDir = join(root, "spare");
    this.tmpDir = join(root, "tmp");
  }

  /** At open: drop a crash's half-made subvolumes, keep complete spares, start filling the pool. */
  async adopt(): Promise<void> {
    for (const name of await readdir(this.tmpDir)) await this.deleteSubvolume(join(this.tmpDir, name));
    for (const name of await readdir(this.spareDir)) {
      const m = SPARE_NAME.exec(name);
      // A spare is renamed into spare/ only once complete (fs/, work/, limit), so its name is true.
      if (m && this.spareCount() < this.spareTarget) {
        this.pool(m[1]!).push(join(this.spareDir, name));
        this.seq = Math.max(this.seq, Number(m[2]) + 1);
      } else await this.deleteSubvolume(join(this.spareDir, name));
    }
    this.refill(0);
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
    const limit = limitKey(opts.maxBytes);
    this.wantLimit = limit;
    const active = { key, upperDir: join(subvolume, "fs"), workDir: join(subvolume, "work") };
    try {
      const spare = this.takeSpare(limit);
      if (spare) {
        let moved = false;
        try {
          moved = await renameUnlessTaken(spare.path, subvolume);
        } catch {
          // The spare is unusable (gone, or not what its name says): make the layer the slow way.
        }
        if (moved) {
          if (spare.limit !== limit) await this.limitOrRemove(subvolume, limit);
          return active;
        }
        if (existsSync(spare.path)) this.pool(spare.limit).push(spare.path);
        if (existsSync(subvolume)) throw conflict(`active layer ${key} already exists`);
      }
      await this.btrfs.run(["btrfs", "subvolume", "create", subvolume]);
      await mkdir(active.upperDir, { mode: 0o755 });
      await mkdir(active.workDir, { mode: 0o700 });
      if (limit !== "none") await this.limitOrRemove(subvolume, limit);
      return active;
    } finally {
      this.refill(REFILL_DELAY_MS);
    }
  }

  async prepareFrom(id: string, key: string, opts: { maxBytes?: number } = {}): Promise<ActiveLayer> {
    checkLayerName(id);
    checkLayerName(key);
    const source = join(this.committedDir, id);
    const subvolume = join(this.activeDir, key);
    if (!existsSync(source)) throw notFound("layer", id);
    if (existsSync(subvolume)) throw conflict(`active layer ${key} already exists`);
    // Made under tmp/ and renamed into place complete, so active/ never holds a half-made copy.
    const tmp = join(this.tmpDir, `copy-${this.seq++}`);
    const [, base] = await Promise.all([
      this.btrfs.run(["btrfs", "subvolume", "snapshot", source, tmp]),
      opts.maxBytes === undefined ? Promise.resolve(0) : this.referencedBytes(id),
    ]);
    try {
      // A snapshot's work/ is the source overlay's scratch space at capture time; a new overlay needs an empty one.
      await rm(join(tmp, "work"), { recursive: true, force: true });
      await mkdir(join(tmp, "work"), { mode: 0o700 });
      /*
       * The limit is on *referenced* bytes, set to what the copy references now plus maxBytes. The
       * copy shares every extent with the snapshot: a referenced limit of maxBytes alone would leave
       * a session from a snapshot bigger than that no room at all. An *exclusive* limit (`-e`) would
       * count only the copy's own extents, but that figure moves under the session's feet: when
       * the snapshot and its other copies are removed, the extents they shared become exclusive to
       * this copy, which could then be over its limit without writing a byte. Referenced bytes of a
       * copy change only by what the copy itself writes or deletes.
       */
      if (opts.maxBytes !== undefined) await this.btrfs.run(["btrfs", "qgroup", "limit", String(base + Math.ceil(opts.maxBytes)), tmp]);
      if (!(await renameUnlessTaken(tmp, subvolume))) throw conflict(`active layer ${key} already exists`);
    } catch (err) {
      await this.deleteSubvolume(tmp);
      throw err;
    }
    return { key, upperDir: join(subvolume, "fs"), workDir: join(subvolume, "work") };
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
    await this.btrfs.run(["btrfs", "property", "set", "-ts", to, "ro", "true"]);
  }

  async snapshot(key: string, id: string): Promise<void> {
    checkLayerName(key);
    checkLayerName(id);
    const from = join(this.activeDir, key);
    const to = join(this.committedDir, id);
    if (!existsSync(from)) throw new PaddockError("not_found", `active layer ${key} not found`);
    // `btrfs subvolume snapshot` onto a path that exists would nest the snapshot inside it, and a
    // read-only subvolume cannot be made elsewhere and moved in (EROFS: its `..` would change). So
    // the name is claimed in this process first; the kernel makes the snapshot appear atomically.
    if (existsSync(to) || this.snapshotting.has(id)) throw conflict(`layer ${id} already exists`);
    this.snapshotting.add(id);
    try {
      // The capture includes work/ (the overlay's scratch space, empty between operations);
      // nothing reads it, and prepareFrom replaces it.
      await this.btrfs.run(["btrfs", "subvolume", "snapshot", "-r", from, to]);
    } finally {
      this.snapshotting.delete(id);
    }
  }

  async flush(key: string): Promise<void> {
    checkLayerName(key);
    const from = join(this.activeDir, key);
    if (!existsSync(from)) throw new PaddockError("not_found", `active layer ${key} not found`);
    if ((await dirtyBytes()) < FLUSH_THRESHOLD_BYTES) return;
    // Creating a snapshot writes out the source subvolume's dirty data and waits for it, and only
    // that subvolume's (syncfs would wait for every session's). The snapshot itself is thrown away.
    const tmp = join(this.tmpDir, `flush-${this.seq++}`);
    await this.btrfs.run(["btrfs", "subvolume", "snapshot", "-r", from, tmp]);
    await this.deleteSubvolume(tmp);
  }

  async fork(key: string, newKey: string): Promise<ActiveLayer> {
    checkLayerName(key);
    checkLayerName(newKey);
    const from = join(this.activeDir, key);
    const to = join(this.activeDir, newKey);
    if (!existsSync(from)) throw new PaddockError("not_found", `active layer ${key} not found`);
    if (existsSync(to)) throw conflict(`active layer ${newKey} already exists`);
    await this.btrfs.run(["btrfs", "subvolume", "snapshot", from, to]);
    // The snapshot copied the source's overlay scratch space; a fresh overlay needs an empty one.
    await rm(join(to, "work"), { recursive: true, force: true });
    await mkdir(join(to, "work"), { mode: 0o700 });
    return { key: newKey, upperDir: join(to, "fs"), workDir: join(to, "work") };
  }

  async remove(keyOrId: string): Promise<boolean> {
    checkLayerName(keyOrId);
    // Two removals of one layer at once (a snapshot's removal and a garbage collection that found
    // its record gone) join: the second `btrfs subvolume delete` would fail on a half-deleted path.
    return this.removals.run(keyOrId, async () => {
      let removed = false;
      for (const dir of [this.activeDir, this.committedDir]) {
        const p = join(dir, keyOrId);
        if (!existsSync(p)) continue;
        // A read-only subvolume can still be deleted by root; no need to flip the flag first.
        const r = await this.btrfs.run(["btrfs", "subvolume", "delete", p], { allowFailure: true });
        // Gone anyway (another process of this installation removed it meanwhile) is removed.
        if (r.code !== 0 && existsSync(p)) throw new PaddockError("internal", `btrfs subvolume delete ${p} failed: ${r.stderr.trim()}`);
        removed = true;
      }
      this.referenced.delete(keyOrId);
      return removed;
    });
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

  /** Stops making spares and deletes them (and, with `unmount`, unmounts the image). */
  async close(o: { unmount?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (this.refillTimer) clearTimeout(this.refillTimer);
    this.refillTimer = null;
    await this.refilling;
    for (const list of this.spares.values()) for (const path of list.splice(0)) await this.deleteSubvolume(path);
    await this.btrfs.close();
    if (o.unmount && (await isMountPoint(this.root))) {
      await runCommand(["umount", this.root]);
      // The loop device was set up with autoclear by mount(8), so it detaches with the last user.
      await stat(this.root);
    }
  }

  private pool(limit: LimitKey): string[] {
    let list = this.spares.get(limit);
    if (!list) this.spares.set(limit, (list = []));
    return list;
  }

  private spareCount(): number {
    let n = 0;
    for (const list of this.spares.values()) n += list.length;
    return n;
  }

  /** A spare with this limit if there is one, else any spare (its limit is then changed: one spawn, not three). */
  private takeSpare(limit: LimitKey): { path: string; limit: LimitKey } | null {
    const exact = this.spares.get(limit)?.pop();
    if (exact) return { path: exact, limit };
    for (const [other, list] of this.spares) {
      const path = list.pop();
      if (path) return { path, limit: other };
    }
    return null;
  }

  private async limitOrRemove(subvolume: string, limit: LimitKey): Promise<void> {
    try {
      await this.btrfs.run(["btrfs", "qgroup", "limit", limit, subvolume]);
    } catch (err) {
      // An active layer without its limit must not be handed out.
      await this.deleteSubvolume(subvolume);
      throw err;
    }
  }

  /**
   * Top the pool up to `spareTarget`, one spare at a time, in the background after `delayMs` of
   * quiet (each new `prepare` pushes it back). A failure stops this round; the next `prepare`
   * starts another, and makes its own layer meanwhile.
   */
  private refill(delayMs: number): void {
    if (this.closed || this.spareTarget === 0) return;
    if (this.refillTimer) clearTimeout(this.refillTimer);
    this.refillTimer = setTimeout(() => {
      this.refillTimer = null;
      if (this.refilling || this.closed) return;
      this.refilling = (async () => {
        while (!this.closed && this.spareCount() < this.spareTarget) await this.makeSpare(this.wantLimit);
      })()
        .catch(() => undefined)
        .finally(() => {
          this.refilling = null;
        });
    }, delayMs);
    // Spares are an optimisation: a pending refill must not keep the process alive.
    this.refillTimer.unref();
  }

  private async makeSpare(limit: LimitKey): Promise<void> {
    const n = this.seq++;
    const tmp = join(this.tmpDir, `spare-${n}`);
    await this.btrfs.run(["btrfs", "subvolume", "create", tmp]);
    try {
      await mkdir(join(tmp, "fs"), { mode: 0o755 });
      await mkdir(join(tmp, "work"), { mode: 0o700 });
      if (limit !== "none") await this.btrfs.run(["btrfs", "qgroup", "limit", limit, tmp]);
      const ready = join(this.spareDir, `${limit}-${n}`);
      await rename(tmp, ready);
      this.pool(limit).push(ready);
    } catch (err) {
      await this.deleteSubvolume(tmp);
      throw err;
    }
  }

  /** Delete a subvolume, or a plain directory left where one was being made. Never throws. */
  private async deleteSubvolume(path: string): Promise<void> {
    if (!existsSync(path)) return;
    const r = await this.btrfs.run(["btrfs", "subvolume", "delete", path], { allowFailure: true }).catch(() => ({ code: 1 }));
    if (r.code !== 0) await rm(path, { recursive: true, force: true }).catch(() => undefined);
  }

  /** What a committed layer references, in bytes (its qgroup's `rfer`); one query however many copies ask at once. */
  private referencedBytes(id: string): Promise<number> {
    let bytes = this.referenced.get(id);
    if (!bytes) {
      bytes = this.btrfs.run(["btrfs", "qgroup", "show", "-rf", "--raw", join(this.committedDir, id)]).then(({ stdout }) => {
        const m = /^0\/\d+\s+(\d+)/m.exec(stdout);
        if (!m) throw new PaddockError("internal", `no qgroup for layer ${id} in: ${stdout.trim()}`);
        return Number(m[1]);
      });
      this.referenced.set(id, bytes);
      // A failed query is asked again next time.
      bytes.catch(() => this.referenced.get(id) === bytes && this.referenced.delete(id));
    }
    return bytes;
  }
}


/** Page cache not yet on disk, machine-wide (`Dirty` + `Writeback` of /proc/meminfo). */
async function dirtyBytes(): Promise<number> {
  const text = await readFile("/proc/meminfo", "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return (kb("Dirty") + kb("Writeback")) * 1024;
}
