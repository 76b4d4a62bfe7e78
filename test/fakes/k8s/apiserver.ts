/**
 * The API semantics behind the HTTP routes, shared by the routes and the fake's own controllers
 * (so a controller's writes are validated like a client's): create, get, list (selectors,
 * `limit`/`continue`), update (optimistic concurrency), the status subresource, patch, and delete
 * with finalizers, graceful pod deletion and background garbage collection of dependents
 * (https://kubernetes.io/docs/concepts/architecture/garbage-collection/).
 */
import { randomBytes } from "node:crypto";
import type { KubeObject } from "./api.ts";
import { apiVersionOf, type ResourceDef } from "./resources.ts";
import { ClusterIpAllocator, defaultOnCreate, defaultOnUpdate } from "./defaults.ts";
import { applyPatch } from "./patch.ts";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import type { ObjectStore } from "./store.ts";
import { ApiError, badRequest, conflict, expired, invalid, namespaceNotFound, notFound } from "./status.ts";
import { validateObjectMeta } from "./validate.ts";

export interface ListOptions {
  labelSelector?: string | null;
  fieldSelector?: string | null;
  limit?: number;
  continue?: string | null;
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: "Orphan" | "Background" | "Foreground";
  preconditions?: { uid?: string; resourceVersion?: string };
}

/** Hooks the pod lifecycle plugs in: admission of a new pod, and graceful termination. */
export interface PodHooks {
  /** Reject a pod as admission plugins would (e.g. RuntimeClass); throw an ApiError. */
  admit(pod: KubeObject): void;
  /** A graceful delete was asked for: stop the containers, then remove the pod. */
  terminate(pod: KubeObject): void;
}

const NAME_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789";

export class ApiServer {
  private readonly ips = new ClusterIpAllocator();
  podHooks: PodHooks | null = null;

  constructor(
    readonly store: ObjectStore,
    readonly defs: ResourceDef[],
  ) {}

  def(group: string, resource: string): ResourceDef | undefined {
    return this.defs.find((d) => d.group === group && d.resource === resource);
  }

  defOfKind(kind: string): ResourceDef | undefined {
    return this.defs.find((d) => d.kind === kind);
  }

  private namespaceDef(): ResourceDef {
    return this.def("", "namespaces")!;
  }

  private checkNamespace(def: ResourceDef, namespace: string | undefined, creating: boolean): void {
    if (!def.namespaced) return;
    if (!namespace) throw badRequest("the server could not find the requested resource");
    const ns = this.store.get(this.namespaceDef(), undefined, namespace);
    if (!ns) throw namespaceNotFound(namespace);
    if (creating && ns.metadata.deletionTimestamp)
      throw new ApiError(403, "Forbidden", `${def.resource} "" is forbidden: unable to create new content in namespace ${namespace} because it is being terminated`, { kind: def.resource });
  }

  /** Body checks every write makes: a JSON object of this kind, in this namespace. */
  private normalize(def: ResourceDef, namespace: string | undefined, body: unknown): KubeObject {
    if (body === null || typeof body !== "object" || Array.isArray(body)) throw badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: the body must be a JSON object`);
    const o = structuredClone(body) as KubeObject;
    const apiVersion = apiVersionOf(def);
    if (o.apiVersion !== undefined && o.apiVersion !== apiVersion) throw badRequest(`the API version in the data (${String(o.apiVersion)}) does not match the expected API version (${apiVersion})`);
    if (o.kind !== undefined && o.kind !== def.kind) throw badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: kind mismatch: got ${String(o.kind)}`);
    o.apiVersion = apiVersion;
    o.kind = def.kind;
    if (o.metadata === undefined || o.metadata === null) o.metadata = { name: "" };
    if (typeof o.metadata !== "object") throw badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: metadata must be an object`);
    o.metadata.name ??= "";
    if (def.namespaced) {
      if (o.metadata.namespace !== undefined && o.metadata.namespace !== "" && o.metadata.namespace !== namespace)
        throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      o.metadata.namespace = namespace;
    } else delete o.metadata.namespace;
    return o;
  }

  private validate(def: ResourceDef, o: KubeObject, old: KubeObject | null): void {
    const all = [...validateObjectMeta(o, def.nameRule), ...def.validate(o, old)];
    // The schema and the semantic checks can both see a field; report it once.
    const causes = all.filter((c, i) => all.findIndex((x) => x.field === c.field && x.reason === c.reason) === i);
    if (causes.length > 0) throw invalid(def, o.metadata.name, causes);
  }

  create(def: ResourceDef, namespace: string | undefined, body: unknown): KubeObject {
    const o = this.normalize(def, namespace, body);
    if (!o.metadata.name && o.metadata.generateName) {
      const suffix = Array.from(randomBytes(5), (b) => NAME_SUFFIX_CHARS[b % NAME_SUFFIX_CHARS.length]).join("");
      o.metadata.name = `${o.metadata.generateName}${suffix}`;
    }
    if (o.metadata.resourceVersion) throw badRequest("resourceVersion should not be set on objects to be created");
    for (const k of ["uid", "creationTimestamp", "deletionTimestamp", "generation"]) delete o.metadata[k];
    this.checkNamespace(def, namespace, true);
    if (def.status) delete o.status;
    defaultOnCreate(o, this.ips);
    this.validate(def, o, null);
    if (def.kind === "Pod") this.podHooks?.admit(o);
    return this.store.create(def, o);
  }

  get(def: ResourceDef, namespace: string | undefined, name: string): KubeObject {
    this.checkNamespace(def, namespace, false);
    const o = this.store.get(def, namespace, name);
    if (!o) throw notFound(def, name);
    return o;
  }

  list(def: ResourceDef, namespace: string | null, opts: ListOptions = {}): { items: KubeObject[]; resourceVersion: string; continue?: string; remainingItemCount?: number } {
    const byLabel = parseLabelSelector(opts.labelSelector ?? null);
    const byField = parseFieldSelector(opts.fieldSelector ?? null, def.kind);
    let listRv = this.store.resourceVersion;
    let items = this.store.list(def, namespace).filter((o) => byLabel(o) && byField(o));
    if (opts.continue) {
      const token = decodeContinue(opts.continue);
      if (Number(token.rv) < this.store.oldestWatchable()) {
        throw expired(
          "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        );
      }
      listRv = token.rv;
      items = items.filter((o) => `${o.metadata.namespace ?? ""}/${o.metadata.name}` > token.after);
    }
    if (opts.limit && opts.limit > 0 && items.length > opts.limit) {
      const page = items.slice(0, opts.limit);
      const last = page[page.length - 1]!;
      const next = encodeContinue({ rv: listRv, after: `${last.metadata.namespace ?? ""}/${last.metadata.name}` });
      return { items: page, resourceVersion: listRv, continue: next, remainingItemCount: items.length - page.length };
    }
    return { items, resourceVersion: listRv };
  }

  /** PUT: the whole object (status kept where the kind has a status subresource), or only its status. */
  update(def: ResourceDef, namespace: string | undefined, name: string, body: unknown, subresource: "status" | null = null): KubeObject {
    const o = this.normalize(def, namespace, body);
    if (o.metadata.name !== name) throw badRequest(`the name of the object (${o.metadata.name}) does not match the name on the URL (${name})`);
    this.checkNamespace(def, namespace, false);
    const current = this.store.get(def, namespace, name);
    if (!current) throw notFound(def, name);
    if (!def.unconditionalUpdate && !o.metadata.resourceVersion) {
      throw invalid(def, name, [{ reason: "FieldValueInvalid", message: "Invalid value: 0x0: must be specified for an update", field: "metadata.resourceVersion" }]);
    }
    let next: KubeObject;
    if (subresource === "status") {
      next = { ...current, status: o.status, metadata: { ...current.metadata, resourceVersion: o.metadata.resourceVersion } };
    } else {
      next = o;
      if (def.status) next.status = current.status;
    }
    defaultOnUpdate(next, current);
    this.validate(def, next, current);
    const stored = this.store.update(def, next);
    this.finishDeletionIfReady(def, stored);
    return stored;
  }

  patch(def: ResourceDef, namespace: string | undefined, name: string, contentType: string, body: string, subresource: "status" | null = null): KubeObject {
    const current = this.get(def, namespace, name);
    const patched = applyPatch(current, contentType, body) as KubeObject;
    if (patched === null || typeof patched !== "object") throw badRequest("the patch did not produce an object");
    // A patch applies to the version it was read at unless it names one itself (a precondition).
    const asked = (patched.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
    if (asked === current.metadata.resourceVersion || asked === undefined) patched.metadata = { ...patched.metadata, resourceVersion: current.metadata.resourceVersion };
    if (def.status && subresource === null) patched.status = current.status;
    return this.update(def, namespace, name, patched, subresource);
  }

  delete(def: ResourceDef, namespace: string | undefined, name: string, opts: DeleteOptions = {}): KubeObject {
    const current = this.get(def, namespace, name);
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== current.metadata.uid)
      throw new ApiError(409, "Conflict", `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${current.metadata.uid}`, { name, kind: def.resource });
    if (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion) throw conflict(def, name);
    if (opts.propagationPolicy === "Orphan") this.orphanDependents(current);
    if (def.kind === "Pod" && this.podHooks && current.spec && (current.spec as { nodeName?: string }).nodeName && opts.gracePeriodSeconds !== 0) {
      if (current.metadata.deletionTimestamp) return current;
      const grace = opts.gracePeriodSeconds ?? ((current.spec as { terminationGracePeriodSeconds?: number }).terminationGracePeriodSeconds ?? 30);
      const marked = this.store.update(def, { ...current, metadata: { ...current.metadata, deletionTimestamp: new Date(Date.now() + grace * 1000).toISOString().replace(/\.\d+Z$/, "Z"), deletionGracePeriodSeconds: grace } });
      this.podHooks.terminate(marked);
      return marked;
    }
    if (def.kind === "Namespace") return this.deleteNamespace(def, current);
    if ((current.metadata.finalizers as string[] | undefined)?.length) {
      if (current.metadata.deletionTimestamp) return current;
      return this.store.update(def, { ...current, metadata: { ...current.metadata, deletionTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z") } });
    }
    if (def.kind === "Pod" && opts.gracePeriodSeconds === 0) this.podHooks?.terminate(current);
    return this.removeAndCollect(def, current);
  }

  /** Remove an object now and delete its dependents in the background (the garbage collector). */
  removeAndCollect(def: ResourceDef, current: KubeObject): KubeObject {
    const removed = this.store.remove(def, current.metadata.namespace, current.metadata.name);
    const uid = current.metadata.uid!;
    queueMicrotask(() => {
      for (const { object } of this.store.dependentsOf(uid)) {
        const depDef = this.defs.find((d) => apiVersionOf(d) === object.apiVersion && d.kind === object.kind);
        if (!depDef) continue;
        try {
          this.delete(depDef, object.metadata.namespace, object.metadata.name, { propagationPolicy: "Background" });
        } catch (err) {
          // Already gone, or refused (a namespace being torn down): the collector moves on, as real.
          if (!(err instanceof ApiError)) throw err;
        }
      }
    });
    return removed;
  }

  private finishDeletionIfReady(def: ResourceDef, o: KubeObject): void {
    if (!o.metadata.deletionTimestamp || def.kind === "Pod" || def.kind === "Namespace") return;
    if (((o.metadata.finalizers as string[] | undefined) ?? []).length === 0) this.removeAndCollect(def, o);
  }

  private orphanDependents(owner: KubeObject): void {
    for (const { object } of this.store.dependentsOf(owner.metadata.uid!)) {
      const depDef = this.defs.find((d) => apiVersionOf(d) === object.apiVersion && d.kind === object.kind);
      if (!depDef) continue;
      object.metadata.ownerReferences = object.metadata.ownerReferences?.filter((r) => r.uid !== owner.metadata.uid);
      this.store.update(depDef, object);
    }
  }

  /** A namespace goes Terminating, everything in it is deleted, then it is removed. */
  private deleteNamespace(def: ResourceDef, ns: KubeObject): KubeObject {
    if (ns.metadata.deletionTimestamp) return ns;
    const marked = this.store.update(def, { ...ns, metadata: { ...ns.metadata, deletionTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z") }, status: { phase: "Terminating" } });
    const name = ns.metadata.name;
    const sweep = (): void => {
      let left = 0;
      for (const d of this.defs.filter((x) => x.namespaced)) {
        for (const o of this.store.list(d, name)) {
          left++;
          if (!o.metadata.deletionTimestamp) this.delete(d, name, o.metadata.name);
        }
      }
      if (left === 0) {
        if (this.store.get(def, undefined, name)) this.store.remove(def, undefined, name);
      } else setTimeout(sweep, 20).unref();
    };
    queueMicrotask(sweep);
    return marked;
  }

  /** Record a core/v1 Event about `involved` (as a controller or the kubelet would). */
  recordEvent(involved: KubeObject, type: "Normal" | "Warning", reason: string, message: string, component: string): void {
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const namespace = involved.metadata.namespace ?? "default";
    const eventsDef = this.def("", "events")!;
    if (this.store.get(this.namespaceDef(), undefined, namespace)?.metadata.deletionTimestamp !== undefined) return; // gone or terminating
    this.create(eventsDef, namespace, {
      metadata: { name: `${involved.metadata.name}.${randomBytes(8).toString("hex")}`, namespace },
      involvedObject: { apiVersion: involved.apiVersion, kind: involved.kind, name: involved.metadata.name, namespace: involved.metadata.namespace, uid: involved.metadata.uid },
      type,
      reason,
      message,
      source: { component },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      reportingComponent: component,
    });
  }
}

function encodeContinue(token: { rv: string; after: string }): string {
  return Buffer.from(JSON.stringify({ v: "meta.k8s.io/v1", rv: Number(token.rv), start: token.after })).toString("base64url");
}

function decodeContinue(raw: string): { rv: string; after: string } {
  try {
    const t = JSON.parse(Buffer.from(raw, "base64url").toString("utf8")) as { v?: string; rv?: number; start?: string };
    if (t.v !== "meta.k8s.io/v1" || typeof t.rv !== "number" || typeof t.start !== "string") throw new Error("bad token");
    return { rv: String(t.rv), after: t.start };
  } catch {
    throw badRequest(`continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)`);
  }
}
