/**
 * Garbage collection of layers (docs/snapshots.md, "Garbage collection"). What is kept:
 * - the layers of every template in use: the current version's of each environment, and those of
 *   every live session, pool member and snapshot (a session or snapshot of an older version keeps
 *   that version's layers);
 * - the layers the newest version of each environment built or reused so far (its install chain),
 *   so that fixing a failed step and applying again does not rebuild the steps before it;
 * - base and scaffold layers (not template layers: never collected).
 * What goes: every other template layer (the store row and the files), snapshots made by `session
 * fork` once no live session was started from them, snapshots a preview's session left when it
 * stopped (control/previews.ts) once no live preview or session uses them (`Store.snapshotUsers`
 * names them), and snapshot layers with no snapshot record (a crash between the capture and the
 * record).
 *
 * Runs at start, after a snapshot is removed, after sessions end, after a build, and on `paddock
 * gc`; one run at a time, never while a build runs (builds hold `layersInUse` shared, a run holds
 * it exclusively), so a layer a build just reused is never removed under it.
 */
import type { LayerStore, Provider, Store, Template } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import type { AuditLog } from "../guard/index.ts";
import { layerKey } from "./builder.ts";
import { servicesOf, servicesStepCommand } from "./services.ts";
import type { Egress } from "./egress.ts";

/** Template layer ids: sha256 hex (builder.ts `layerKey`). Snapshot layers are named by their snapshot id. */
const TEMPLATE_LAYER = /^[0-9a-f]{64}$/;
const SNAPSHOT_LAYER = /^snap-[0-9a-f]{16}$/;

/** A readers–writer lock: builds share it, a collection takes it alone. */
export class LayerLock {
  private shared = 0;
  private exclusive: Promise<void> | null = null;
  private readonly waiters: (() => void)[] = [];

  async withShared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    this.shared++;
    try {
      return await fn();
    } finally {
      this.shared--;
      if (this.shared === 0) for (const w of this.waiters.splice(0)) w();
    }
  }

  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    let release!: () => void;
    this.exclusive = new Promise<void>((r) => (release = r));
    try {
      while (this.shared > 0) await new Promise<void>((r) => this.waiters.push(r));
      return await fn();
    } finally {
      this.exclusive = null;
      release();
    }
  }
}

export interface CollectResult {
  /** Template layers removed (ids). */
  layers: string[];
  /** Snapshots removed (made by fork, no longer used). */
  snapshots: string[];
  /** Snapshot layers removed that had no snapshot record. */
  orphans: string[];
}

export class Collector {
  /** Snapshots being made or being started from by a fork: not collectable yet. */
  readonly pinned = new Set<string>();
  readonly lock = new LayerLock();
  /** Runs one after another: a call during a run gets a run of its own after it. */
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly deps: {
      store: Store;
      layers: LayerStore;
      providers: Map<string, Provider>;
      egress: Egress | null;
      audit: AuditLog;
      log: (line: string) => void;
    },
  ) {}

  /** Collect soon, in the background (coalesced: many calls, one run). */
  schedule(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.collect().catch((err: unknown) => this.deps.log(`garbage collection failed: ${err instanceof Error ? err.message : String(err)}`));
    }, 50);
    this.timer.unref();
  }

  /** Collect now (after a run in progress, if any). */
  collect(): Promise<CollectResult> {
    const run = this.chain.catch(() => undefined).then(() => this.lock.withExclusive(() => this.once()));
    this.chain = run;
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.chain.catch(() => undefined);
  }

  private async once(): Promise<CollectResult> {
    const { store, layers } = this.deps;
    const result: CollectResult = { layers: [], snapshots: [], orphans: [] };
    // Fork snapshots nobody uses any more.
    for (const snap of await store.listSnapshots()) {
      if (!snap.autoRemove || this.pinned.has(snap.id)) continue;
      try {
        if (!(await store.deleteSnapshot(snap.id))) continue;
      } catch {
        continue; // in use
      }
      await this.deps.egress?.dropSnapshot(snap.id).catch(() => undefined);
      await this.removeSnapshotLayer(snap.provider, snap.layerId);
      result.snapshots.push(snap.id);
    }
    const committed = (await layers.list()).committed;
    // Snapshot layers without a record: a crash between the capture and the record.
    const snapshots = await store.listSnapshots();
    const snapshotLayers = new Set(snapshots.map((s) => s.layerId));
    for (const id of committed) {
      if (!SNAPSHOT_LAYER.test(id) || snapshotLayers.has(id) || this.pinned.has(id)) continue;
      await this.removeSnapshotLayer("local", id);
      result.orphans.push(id);
    }
    // Template layers nothing keeps.
    const keep = await this.keptLayers(snapshots.map((s) => s.templateId));
    const known = new Set((await store.listLayers()).map((l) => l.id));
    for (const id of new Set([...committed.filter((c) => TEMPLATE_LAYER.test(c)), ...known])) {
      if (keep.has(id) || !TEMPLATE_LAYER.test(id)) continue;
      await layers.remove(id);
      await store.deleteLayer(id);
      result.layers.push(id);
    }
    const removed = result.layers.length + result.snapshots.length + result.orphans.length;
    if (removed > 0) {
      this.deps.log(`garbage collection: removed ${result.layers.length} layer(s), ${result.snapshots.length} fork snapshot(s), ${result.orphans.length} orphaned snapshot layer(s)`);
      await this.deps.audit.append({ actor: "system", actorKind: "system", action: "gc", target: "layers", decision: "info", detail: { ...result } });
    }
    return result;
  }

  private async removeSnapshotLayer(provider: string, layerId: string): Promise<void> {
    const p = this.deps.providers.get(provider);
    if (p) await p.removeSnapshot(layerId);
    else await this.deps.layers.remove(layerId);
  }

  /** Every template layer something keeps (see the file comment). */
  private async keptLayers(snapshotTemplates: string[]): Promise<Set<string>> {
    const { store } = this.deps;
    const templates = new Set<string>(snapshotTemplates);
    for (const s of await store.listSessions({ states: ["starting", "running"] })) templates.add(s.templateId);
    for (const m of await store.listPoolMembers()) templates.add(m.templateId);
    const keep = new Set<string>();
    for (const env of await store.listEnvironments()) {
      for (const v of await store.listEnvironmentVersions(env.name)) {
        if (v.version === env.currentVersion && v.templateId) templates.add(v.templateId);
        // Builds in progress hold the lock; the newest version's chain is kept for its next attempt.
        if (v.version === env.latestVersion) for (const id of chainOf(v.spec as EnvironmentSpec)) keep.add(id);
      }
    }
    for (const id of templates) {
      const t: Template | null = await store.getTemplate(id);
      for (const l of t?.layers ?? []) keep.add(l);
    }
    return keep;
  }
}

/** The layer ids an environment file's install steps build (or reuse), bottom first. */
function chainOf(spec: EnvironmentSpec): string[] {
  const out: string[] = [];
  let parent: string | null = null;
  for (const step of spec.install ?? []) {
    parent = layerKey(spec.base, parent, step.run);
    out.push(parent);
  }
  // The services step (builder.ts) comes after the install steps.
  if (servicesOf(spec).length > 0) out.push(layerKey(spec.base, parent, servicesStepCommand(spec)));
  return out;
}
