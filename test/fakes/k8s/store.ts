/**
 * The fake's etcd: objects by resource/namespace/name, one global resourceVersion counter, and a
 * bounded history of changes that watches are served from. A watch asking for a version older
 * than the history holds gets `410 Gone` ("Expired"), as the apiserver's watch cache answers once
 * etcd has compacted (https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses).
 */
import { randomUUID } from "node:crypto";
import type { KubeObject } from "./api.ts";
import type { ResourceDef } from "./resources.ts";
import type { Predicate } from "./selectors.ts";
import { alreadyExists, conflict, expired, notFound } from "./status.ts";
import { canonicalJson } from "./json.ts";

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED";

interface Change {
  rv: number;
  def: ResourceDef;
  type: WatchEventType;
  object: KubeObject;
  /** The object before a MODIFIED change (for selector transitions). */
  old: KubeObject | null;
}

export interface WatchFilter {
  def: ResourceDef;
  namespace: string | null;
  match: Predicate;
}

interface Watcher extends WatchFilter {
  send(type: WatchEventType, object: KubeObject): void;
}

/** Called after every change (controllers react to these). */
export type ChangeListener = (type: WatchEventType, def: ResourceDef, object: KubeObject, old: KubeObject | null) => void;

const clone = <T>(v: T): T => structuredClone(v);

function keyOf(def: ResourceDef, namespace: string | undefined, name: string): string {
  return `${def.group}/${def.resource}/${namespace ?? ""}/${name}`;
}

export class ObjectStore {
  private rv = 1000;
  /** Watches may start from any version ≥ floor: every change after it is still in `history`. */
  private floor = 1000;
  private readonly objects = new Map<string, KubeObject>();
  private readonly history: Change[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly listeners: ChangeListener[] = [];

  constructor(private readonly historyLimit: number) {}

  get resourceVersion(): string {
    return String(this.rv);
  }

  /** The oldest version a watch or a list continuation may still start from. */
  oldestWatchable(): number {
    return this.floor;
  }

  onChange(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  get(def: ResourceDef, namespace: string | undefined, name: string): KubeObject | undefined {
    const obj = this.objects.get(keyOf(def, namespace, name));
    return obj ? clone(obj) : undefined;
  }

  /** Objects of a resource (in one namespace or all), ordered by namespace then name, as etcd keys are. */
  list(def: ResourceDef, namespace: string | null): KubeObject[] {
    const prefix = `${def.group}/${def.resource}/`;
    const out: KubeObject[] = [];
    for (const [key, obj] of this.objects) {
      if (!key.startsWith(prefix)) continue;
      if (namespace !== null && obj.metadata.namespace !== namespace) continue;
      out.push(clone(obj));
    }
    return out.sort((a, b) => orderKey(a).localeCompare(orderKey(b)));
  }

  /** Store a new object: uid, creationTimestamp, generation 1 and the next resourceVersion. */
  create(def: ResourceDef, obj: KubeObject): KubeObject {
    const key = keyOf(def, obj.metadata.namespace, obj.metadata.name);
    if (this.objects.has(key)) throw alreadyExists(def, obj.metadata.name);
    const stored = clone(obj);
    stored.metadata.uid = randomUUID();
    stored.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    stored.metadata.generation = 1;
    stored.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, stored);
    this.record({ rv: this.rv, def, type: "ADDED", object: clone(stored), old: null });
    return clone(stored);
  }

  /**
   * Replace an object. With `metadata.resourceVersion` set it must be the stored one (optimistic
   * concurrency: 409 Conflict otherwise); empty means an unconditional update, as the apiserver
   * allows. `generation` goes up when anything but metadata and status changed.
   */
  update(def: ResourceDef, obj: KubeObject): KubeObject {
    const key = keyOf(def, obj.metadata.namespace, obj.metadata.name);
    const current = this.objects.get(key);
    if (!current) throw notFound(def, obj.metadata.name);
    const asked = obj.metadata.resourceVersion;
    if (asked !== undefined && asked !== "" && asked !== current.metadata.resourceVersion) throw conflict(def, obj.metadata.name);
    const stored = clone(obj);
    stored.metadata.uid = current.metadata.uid;
    stored.metadata.creationTimestamp = current.metadata.creationTimestamp;
    if (current.metadata.deletionTimestamp) stored.metadata.deletionTimestamp = current.metadata.deletionTimestamp;
    stored.metadata.generation = (current.metadata.generation ?? 1) + (specChanged(current, stored) ? 1 : 0);
    if (canonicalJson({ ...stored, metadata: { ...stored.metadata, resourceVersion: "" } }) === canonicalJson({ ...current, metadata: { ...current.metadata, resourceVersion: "" } })) {
      return clone(current); // a no-op write does not bump the version, as real
    }
    stored.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, stored);
    this.record({ rv: this.rv, def, type: "MODIFIED", object: clone(stored), old: clone(current) });
    return clone(stored);
  }

  /** Remove an object for good (the DELETED event carries its last state with a new version). */
  remove(def: ResourceDef, namespace: string | undefined, name: string): KubeObject {
    const key = keyOf(def, namespace, name);
    const current = this.objects.get(key);
    if (!current) throw notFound(def, name);
    this.objects.delete(key);
    const last = clone(current);
    last.metadata.resourceVersion = String(++this.rv);
    this.record({ rv: this.rv, def, type: "DELETED", object: clone(last), old: null });
    return last;
  }

  /** Every stored object (any resource) whose ownerReferences name `uid`. */
  dependentsOf(uid: string): { key: string; object: KubeObject }[] {
    const out: { key: string; object: KubeObject }[] = [];
    for (const [key, obj] of this.objects) if (obj.metadata.ownerReferences?.some((r) => r.uid === uid)) out.push({ key, object: clone(obj) });
    return out;
  }

  /**
   * Start a watch. `fromRv` null: the current state first, as ADDED events ("get state and start
   * at most recent"); a number: every change after it, or 410 Expired when the history no longer
   * reaches back that far.
   */
  watch(filter: WatchFilter, fromRv: number | null, send: Watcher["send"]): { close(): void } {
    const watcher: Watcher = { ...filter, send };
    if (fromRv === null) {
      for (const obj of this.list(filter.def, filter.namespace)) if (filter.match(obj)) send("ADDED", obj);
    } else {
      if (fromRv < this.floor) throw expired(`too old resource version: ${fromRv} (${this.floor + 1})`);
      for (const change of this.history) if (change.rv > fromRv) deliver(watcher, change);
    }
    this.watchers.add(watcher);
    return { close: () => this.watchers.delete(watcher) };
  }

  closeWatches(): void {
    this.watchers.clear();
  }

  private record(change: Change): void {
    this.history.push(change);
    while (this.history.length > this.historyLimit) this.floor = this.history.shift()!.rv;
    for (const w of this.watchers) deliver(w, change);
    for (const l of this.listeners) l(change.type, change.def, clone(change.object), change.old ? clone(change.old) : null);
  }
}

/** Send a change to a watch as the watch cache does: an object leaving the selector is DELETED for it, one entering is ADDED. */
function deliver(w: Watcher, change: Change): void {
  if (change.def !== w.def) return;
  if (w.namespace !== null && change.object.metadata.namespace !== w.namespace) return;
  const now = w.match(change.object);
  if (change.type === "MODIFIED" && change.old) {
    const before = w.match(change.old);
    if (now && before) w.send("MODIFIED", clone(change.object));
    else if (now) w.send("ADDED", clone(change.object));
    else if (before) w.send("DELETED", clone(change.object));
    return;
  }
  if (now) w.send(change.type, clone(change.object));
}

function orderKey(o: KubeObject): string {
  return `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}

function specChanged(a: KubeObject, b: KubeObject): boolean {
  const strip = (o: KubeObject) => canonicalJson({ ...o, metadata: undefined, status: undefined });
  return strip(a) !== strip(b);
}
