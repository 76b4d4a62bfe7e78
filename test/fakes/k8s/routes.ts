/**
 * The REST paths of the fake (https://kubernetes.io/docs/reference/using-api/api-concepts/):
 * discovery (/api, /apis, /api/v1, /apis/<group>/<version>, /version), collections and objects
 * under them, the `status` subresource, `pods/log`, and watches (`?watch=1`), streamed as
 * newline-delimited JSON events. `pods/exec` is a WebSocket upgrade (exec.ts).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { KubeObject } from "./api.ts";
import type { ApiServer, DeleteOptions } from "./apiserver.ts";
import { apiVersionOf, type ResourceDef } from "./resources.ts";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import { ApiError, badRequest, methodNotAllowed, notFoundPath } from "./status.ts";

export interface RouteTarget {
  def: ResourceDef;
  namespace: string | undefined;
  /** Null for the collection. */
  name: string | null;
  subresource: string | null;
}

/** The API group/version prefix of a path and the rest, or null when it is not under /api or /apis. */
export function splitApiPath(pathname: string): { group: string; version: string; rest: string[] } | null {
  const parts = pathname.split("/").filter((p) => p !== "").map(decodeURIComponent);
  if (parts[0] === "api" && parts[1]) return { group: "", version: parts[1], rest: parts.slice(2) };
  if (parts[0] === "apis" && parts[1] && parts[2]) return { group: parts[1], version: parts[2], rest: parts.slice(3) };
  return null;
}

/** Which resource a path under a group/version names. */
export function resolveTarget(api: ApiServer, group: string, version: string, rest: string[]): RouteTarget {
  const served = (resource: string) => api.defs.find((d) => d.group === group && d.version === version && d.resource === resource);
  if (rest[0] === "namespaces" && rest[1] && rest[2] && served(rest[2])?.namespaced) {
    const def = served(rest[2])!;
    if (rest.length > 5) throw notFoundPath();
    return { def, namespace: rest[1], name: rest[3] ?? null, subresource: rest[4] ?? null };
  }
  const def = rest[0] ? served(rest[0]) : undefined;
  if (!def || rest.length > 3 || (def.namespaced && rest.length > 1)) throw notFoundPath();
  return { def, namespace: undefined, name: rest[1] ?? null, subresource: rest[2] ?? null };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-cache, private" });
  res.end(text);
}

export function discovery(api: ApiServer, pathname: string, serverAddress: string): unknown | null {
  if (pathname === "/version")
    return { major: "1", minor: "31", gitVersion: "v1.31.0-paddock-fake", gitCommit: "0000000000000000000000000000000000000000", gitTreeState: "clean", buildDate: "2026-01-01T00:00:00Z", goVersion: "go1.22.0", compiler: "gc", platform: "linux/amd64" };
  if (pathname === "/api" || pathname === "/api/")
    return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }] };
  if (pathname === "/apis" || pathname === "/apis/") {
    const groups = [...new Set(api.defs.filter((d) => d.group !== "").map((d) => d.group))].map((name) => {
      const versions = [...new Set(api.defs.filter((d) => d.group === name).map((d) => d.version))].map((version) => ({ groupVersion: `${name}/${version}`, version }));
      return { name, versions, preferredVersion: versions[0] };
    });
    return { kind: "APIGroupList", apiVersion: "v1", groups };
  }
  const split = splitApiPath(pathname);
  if (split && split.rest.length === 0) {
    const defs = api.defs.filter((d) => d.group === split.group && d.version === split.version);
    if (defs.length === 0) return null;
    return { kind: "APIResourceList", apiVersion: "v1", groupVersion: apiVersionOf(defs[0]!), resources: defs.flatMap(resourceEntries) };
  }
  if (pathname.startsWith("/apis/") && pathname.split("/").filter(Boolean).length === 2) {
    const name = pathname.split("/").filter(Boolean)[1]!;
    const versions = [...new Set(api.defs.filter((d) => d.group === name).map((d) => d.version))].map((version) => ({ groupVersion: `${name}/${version}`, version }));
    if (versions.length === 0) return null;
    return { kind: "APIGroup", apiVersion: "v1", name, versions, preferredVersion: versions[0] };
  }
  return null;
}

function resourceEntries(d: ResourceDef): Record<string, unknown>[] {
  const verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
  const out: Record<string, unknown>[] = [{ name: d.resource, singularName: d.singular, namespaced: d.namespaced, kind: d.kind, verbs, ...(d.shortNames.length ? { shortNames: d.shortNames } : {}) }];
  if (d.status) out.push({ name: `${d.resource}/status`, singularName: "", namespaced: d.namespaced, kind: d.kind, verbs: ["get", "patch", "update"] });
  for (const sub of d.subresources) {
    out.push(sub === "exec" ? { name: `${d.resource}/exec`, singularName: "", namespaced: true, kind: "PodExecOptions", verbs: ["create", "get"] } : { name: `${d.resource}/${sub}`, singularName: "", namespaced: true, kind: d.kind, verbs: ["get"] });
  }
  return out;
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch (err) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
  }
}

function deleteOptions(query: URLSearchParams, body: string): DeleteOptions {
  const opts: DeleteOptions = body.trim() ? (parseJson(body) as DeleteOptions) : {};
  const grace = query.get("gracePeriodSeconds");
  if (grace !== null) opts.gracePeriodSeconds = Number(grace);
  const policy = query.get("propagationPolicy");
  if (policy) opts.propagationPolicy = policy as DeleteOptions["propagationPolicy"];
  return opts;
}

/** Answer a request for a resource path (not exec, not watch). */
export function serveResource(api: ApiServer, t: RouteTarget, method: string, query: URLSearchParams, body: string, contentType: string): { status: number; body: unknown } {
  const { def, namespace, name, subresource } = t;
  if (name === null) {
    switch (method) {
      case "GET": {
        const listed = api.list(def, def.namespaced ? (namespace ?? null) : null, {
          labelSelector: query.get("labelSelector"),
          fieldSelector: query.get("fieldSelector"),
          limit: query.has("limit") ? Number(query.get("limit")) : undefined,
          continue: query.get("continue"),
        });
        const metadata: Record<string, unknown> = { resourceVersion: listed.resourceVersion };
        if (listed.continue) metadata.continue = listed.continue;
        if (listed.remainingItemCount !== undefined) metadata.remainingItemCount = listed.remainingItemCount;
        return { status: 200, body: { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata, items: listed.items } };
      }
      case "POST":
        if (def.namespaced && namespace === undefined) throw methodNotAllowed();
        return { status: 201, body: api.create(def, namespace, parseJson(body)) };
      case "DELETE": {
        const listed = api.list(def, namespace ?? null, { labelSelector: query.get("labelSelector"), fieldSelector: query.get("fieldSelector") });
        const opts = deleteOptions(query, body);
        const items = listed.items.map((o) => api.delete(def, o.metadata.namespace, o.metadata.name, opts));
        return { status: 200, body: { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata: { resourceVersion: api.store.resourceVersion }, items } };
      }
      default:
        throw methodNotAllowed();
    }
  }
  if (subresource !== null && subresource !== "status") throw notFoundPath();
  if (subresource === "status" && !def.status) throw notFoundPath();
  const sub = subresource === "status" ? "status" : null;
  switch (method) {
    case "GET":
      return { status: 200, body: api.get(def, namespace, name) };
    case "PUT":
      return { status: 200, body: api.update(def, namespace, name, parseJson(body), sub) };
    case "PATCH":
      return { status: 200, body: api.patch(def, namespace, name, contentType, body, sub) };
    case "DELETE": {
      if (sub) throw methodNotAllowed();
      const deleted = api.delete(def, namespace, name, deleteOptions(query, body));
      // Pods, Services, Namespaces and custom resources answer with the object; the rest with a Status.
      const returnsObject = ["Pod", "Service", "Namespace"].includes(def.kind) || !["", "apps", "networking.k8s.io", "node.k8s.io"].includes(def.group);
      if (returnsObject) return { status: 200, body: deleted };
      return { status: 200, body: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details: { name, ...(def.group ? { group: def.group } : {}), kind: def.resource, uid: deleted.metadata.uid } } };
    }
    default:
      throw methodNotAllowed();
  }
}

/**
 * Stream a watch: one JSON line per event. A version older than the history allows is answered
 * as the apiserver does: 200, then a single ERROR event holding a 410 "Expired" Status, then EOF.
 */
export function serveWatch(api: ApiServer, t: RouteTarget, query: URLSearchParams, req: IncomingMessage, res: ServerResponse, onClose: (close: () => void) => void): void {
  const byLabel = parseLabelSelector(query.get("labelSelector"));
  const byField = parseFieldSelector(query.get("fieldSelector"), t.def.kind);
  const rvParam = query.get("resourceVersion");
  const fromRv = rvParam === null || rvParam === "" || rvParam === "0" ? null : Number(rvParam);
  if (fromRv !== null && !Number.isInteger(fromRv)) throw badRequest(`invalid resource version: strconv.ParseUint: parsing "${rvParam}": invalid syntax`);
  const match = (o: KubeObject) => byLabel(o) && byField(o);
  res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked", "cache-control": "no-cache, private" });
  res.flushHeaders(); // a quiet watch still answers at once, as the apiserver does
  const write = (type: string, object: unknown) => {
    if (!res.writableEnded) res.write(JSON.stringify({ type, object }) + "\n");
  };
  let handle: { close(): void };
  try {
    handle = api.store.watch({ def: t.def, namespace: t.def.namespaced ? (t.namespace ?? null) : null, match }, fromRv, write);
  } catch (err) {
    if (err instanceof ApiError && err.code === 410) {
      write("ERROR", err.toStatus());
      res.end();
      return;
    }
    throw err;
  }
  const timeout = Math.min(Number(query.get("timeoutSeconds") ?? 1800) || 1800, 1800);
  const finish = () => {
    handle.close();
    clearTimeout(timer);
    if (!res.writableEnded) res.end();
  };
  const timer = setTimeout(finish, timeout * 1000);
  timer.unref();
  req.on("close", finish);
  onClose(finish);
}
