/**
 * Where filesystem layers live on a machine. Modelled on containerd's snapshotter: a *committed*
 * layer is immutable and named by its id; an *active* layer is a writable directory (the upper of
 * a sandbox's overlay) named by a key. Lifecycle: `prepare(key)` → the sandbox writes → either
 * `commit(key, id)` (it becomes a committed layer) or `remove(key)`. `fork(key, newKey)` makes a
 * copy-on-write copy of an active layer for snapshots and forks.
 *
 * Preconditions: `prepare` of a key that exists rejects `conflict`; `commit` onto an id that
 * exists discards the active layer and resolves (ids are content keys, the first one stays);
 * `remove` of an unknown key or id resolves false.
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
  remove(keyOrId: string): Promise<boolean>;
  /** Bytes used by a committed layer or an active one. */
  usage(keyOrId: string): Promise<number>;
  list(): Promise<{ committed: string[]; active: string[] }>;
  close(): Promise<void>;
}
