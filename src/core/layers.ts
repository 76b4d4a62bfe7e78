/**
 * Where filesystem layers live on a machine. Modelled on containerd's snapshotter: a *committed*
 * layer is immutable and named by its id; an *active* layer is a writable directory (the upper of
 * a sandbox's overlay) named by a key. Lifecycle: `prepare(key)` (or `prepareFrom(id, key)`) → the
 * sandbox writes → either `commit(key, id)` (it becomes a committed layer) or `remove(key)`.
 * `fork(key, newKey)` makes a copy-on-write copy of an active layer; `snapshot(key, id)` captures
 * one as a committed layer while it stays in use, and `prepareFrom(id, key)` starts a new active
 * layer as a writable copy of a committed one (session snapshots and starts from them).
 *
 * Preconditions: `prepare`/`prepareFrom`/`fork` onto a key that exists rejects `conflict`;
 * `commit` onto an id that exists discards the active layer and resolves (ids are content keys,
 * the first one stays), while `snapshot` onto an id that exists rejects `conflict` (snapshot ids
 * are names the caller chose, not content keys); an unknown source key or id rejects `not_found`;
 * `remove` of an unknown key or id resolves false. Copies are independent: writes to one are
 * never seen in the layer it came from nor in other copies, and removing either leaves the other.
 */
export interface ActiveLayer {
  key: string;
  /** Overlay upperdir. */
  upperDir: string;
  /** Overlay workdir (same filesystem as upperDir). */
  workDir: string;
}

export interface LayerStore {
  /** "btrfs" (copy-on-write subvolumes in a loop-mounted image) or "directory" (plain copies). */
  readonly kind: "btrfs" | "directory";
  /** Directory holding committed layers; `layerPath(id)` is below it. */
  readonly committedDir: string;
  /** Absolute path of a committed layer's root directory (whether or not it exists). */
  layerPath(id: string): string;
  has(id: string): Promise<boolean>;
  prepare(key: string, opts?: { maxBytes?: number }): Promise<ActiveLayer>;
  commit(key: string, id: string): Promise<void>;
  fork(key: string, newKey: string): Promise<ActiveLayer>;
  /**
   * Capture active layer `key` as the read-only committed layer `id` (its upper only; the overlay's
   * scratch space is left out or ignored). The active layer stays in place and in use. The capture
   * is of what the filesystem holds at that instant, including writes not yet on disk; the caller
   * makes it consistent by stopping the writers around the call (the local provider freezes the
   * sandbox). btrfs: a read-only subvolume snapshot, O(1) whatever the layer holds.
   */
  snapshot(key: string, id: string): Promise<void>;
  /**
   * Write out what active layer `key` holds only in memory, so that a `snapshot` right after it
   * has little left to write. Optional for correctness: the provider calls it before it freezes a
   * sandbox, so the freeze lasts as long as the capture and not as long as the disk.
   */
  flush(key: string): Promise<void>;
  /**
   * A new active layer `key` whose upper starts as a writable copy-on-write copy of committed
   * layer `id` (with a fresh, empty work dir). `maxBytes` limits what the layer may take *beyond*
   * what it starts with, so a session started from a big snapshot can still write that much.
   */
  prepareFrom(id: string, key: string, opts?: { maxBytes?: number }): Promise<ActiveLayer>;
  remove(keyOrId: string): Promise<boolean>;
  /** Bytes used by a committed layer or an active one. */
  usage(keyOrId: string): Promise<number>;
  list(): Promise<{ committed: string[]; active: string[] }>;
  close(): Promise<void>;
}
