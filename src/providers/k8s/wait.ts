/**
 * Waiting for an object to reach a state with a watch, as the API concepts describe
 * (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):
 * list to get a resourceVersion, watch from it, and on `410 Gone` (the version is too old for
 * the server's history) list again. Bounded by a deadline; the error then names the object's last
 * condition and event, so "why is my pod not ready" is answered in the message.
 */
import { Watch } from "@kubernetes/client-node";
import { PaddockError } from "../../core/index.ts";
import type { KubeClients } from "./kube.ts";
import { kubeError } from "./kube.ts";

/** What the wait sees of an object: raw JSON (watch) or client-node's models; the same field names either way. */
export interface Observed {
  metadata?: { name?: string; resourceVersion?: string; deletionTimestamp?: unknown; uid?: string };
  status?: {
    phase?: string;
    podIP?: string;
    reason?: string;
    message?: string;
    conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
    containerStatuses?: { name?: string; state?: { waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; exitCode?: number; message?: string } } }[];
    initContainerStatuses?: { name?: string; state?: { waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; exitCode?: number; message?: string } } }[];
  };
}

export interface WaitTarget<T> {
  /** What is awaited, for messages: `pod paddock-x to be Ready`. */
  what: string;
  /** The collection's watch path, e.g. /api/v1/namespaces/ns/pods. */
  path: string;
  name: string;
  /** List the one object (fieldSelector metadata.name) and the collection's resourceVersion. */
  list: () => Promise<{ item: Observed | undefined; resourceVersion: string }>;
  /** The awaited value when the object is there; throw to fail at once (e.g. the pod Failed). */
  check: (obj: Observed | undefined) => T | undefined;
  /** Why it is not there yet (last condition, last event), asked once the deadline passes. */
  explain: (last: Observed | undefined) => Promise<string>;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called at each 410 relist (tests count them). */
  onRelist?: () => void;
}

type Round<T> = { done: T } | { relist: true } | { rewatch: string };

export async function watchUntil<T>(c: KubeClients, t: WaitTarget<T>): Promise<T> {
  const deadline = Date.now() + t.timeoutMs;
  let last: Observed | undefined;
  let rv: string | null = null;
  // Rounds in a row that saw nothing of the object: a server that ends every watch at once (410
  // each time, or a stream it closes) is asked again after a pause, doubling to 1 s, never in a hot loop.
  let idle = 0;
  while (Date.now() < deadline) {
    if (t.signal?.aborted) throw new PaddockError("unavailable", `stopped waiting for ${t.what}: aborted`);
    if (rv === null) {
      const listed = await t.list().catch((e: unknown) => {
        throw kubeError(`waiting for ${t.what}`, e);
      });
      last = listed.item;
      const now = t.check(last);
      if (now !== undefined) return now;
      rv = listed.resourceVersion;
    }
    let saw = false;
    const round: Round<T> = await watchRound(c, t, rv, deadline, (o) => {
      last = o;
      saw = true;
    });
    if ("done" in round) return round.done;
    if ("relist" in round) {
      t.onRelist?.();
      rv = null;
    } else rv = round.rewatch;
    idle = saw ? 0 : idle + 1;
    if (idle > 0) await pause(Math.min(1000, 25 * 2 ** (idle - 1)), deadline, t.signal);
  }
  const why = await t.explain(last).catch(() => "");
  throw new PaddockError("unavailable", `timed out after ${t.timeoutMs} ms waiting for ${t.what}${why ? `: ${why}` : ""}`, { timeoutMs: t.timeoutMs });
}

/** Wait `ms`, but not past `deadline`, and no longer once `signal` aborts (the loop then says so). */
function pause(ms: number, deadline: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, Math.min(ms, deadline - Date.now())));
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** One watch connection from `rv`: ends with the value, a relist (410), or the version to watch on from. */
function watchRound<T>(c: KubeClients, t: WaitTarget<T>, rv: string, deadline: number, seen: (o: Observed | undefined) => void): Promise<Round<T>> {
  return new Promise<Round<T>>((resolve, reject) => {
    let current = rv;
    let settled = false;
    let controller: AbortController | undefined;
    const finish = (r: Round<T> | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      t.signal?.removeEventListener("abort", onAbort);
      controller?.abort();
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const timer = setTimeout(() => finish({ rewatch: current }), Math.max(0, deadline - Date.now()));
    const onAbort = () => finish(new PaddockError("unavailable", `stopped waiting for ${t.what}: aborted`));
    t.signal?.addEventListener("abort", onAbort, { once: true });
    const timeoutSeconds = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
    new Watch(c.config)
      .watch(t.path, { fieldSelector: `metadata.name=${t.name}`, resourceVersion: current, allowWatchBookmarks: true, timeoutSeconds }, (type: string, obj: unknown) => {
        const o = obj as Observed & { code?: number; kind?: string };
        if (type === "ERROR") {
          // The server's way of saying "too old" inside a watch stream (Status 410 Expired/Gone).
          if (o.code === 410) return finish({ relist: true });
          return finish(new PaddockError("unavailable", `watching ${t.what}: the API server sent an error event (${(o as { message?: string }).message ?? o.code ?? "?"})`));
        }
        if (o.metadata?.resourceVersion) current = o.metadata.resourceVersion;
        if (type === "BOOKMARK") return;
        if (o.metadata?.name !== t.name) return;
        const obs = type === "DELETED" ? undefined : o;
        seen(obs);
        try {
          const v = t.check(obs);
          if (v !== undefined) finish({ done: v });
        } catch (e) {
          finish(e instanceof Error ? e : new Error(String(e)));
        }
      }, (err: unknown) => {
        if (settled) return;
        const code = (err as { statusCode?: number } | null)?.statusCode;
        if (code === 410) return finish({ relist: true });
        if (code && code >= 400) return finish(kubeError(`watching ${t.what}`, new Error(`HTTP ${code}`)));
        // A closed or idle-timed-out stream: watch on from the last version seen.
        finish({ rewatch: current });
      })
      .then((ctl) => {
        controller = ctl;
        if (settled) ctl.abort();
      }, (e: unknown) => finish(kubeError(`watching ${t.what}`, e)));
  });
}

/** The pod's state in one line: phase, the not-True conditions, waiting/terminated containers. */
export function describePod(p: Observed | undefined): string {
  if (!p) return "the pod does not exist";
  const parts: string[] = [`phase ${p.status?.phase ?? "unknown"}`];
  if (!p.status?.conditions?.some((c) => c.type === "Ready")) parts.push("no Ready condition yet");
  for (const c of p.status?.conditions ?? []) {
    if (c.status !== "True") parts.push(`condition ${c.type}=${c.status}${c.reason ? ` (${c.reason}${c.message ? `: ${c.message}` : ""})` : ""}`);
  }
  for (const s of [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]) {
    const w = s.state?.waiting;
    const x = s.state?.terminated;
    if (w) parts.push(`container ${s.name} waiting: ${w.reason ?? ""}${w.message ? ` ${w.message}` : ""}`);
    if (x) parts.push(`container ${s.name} terminated: ${x.reason ?? ""} exit ${x.exitCode ?? "?"}${x.message ? ` ${x.message}` : ""}`);
  }
  if (p.status?.reason) parts.push(`${p.status.reason}${p.status.message ? `: ${p.status.message}` : ""}`);
  return parts.join("; ");
}

/** The object's most recent event, e.g. `Warning FailedCreatePodSandBox: RuntimeClass "gvisor" not found`. */
export async function lastEvent(c: KubeClients, namespace: string, name: string): Promise<string> {
  const list = await c.core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` })
    .catch(() => c.core.listNamespacedEvent({ namespace }));
  const events = list.items
    .filter((e) => e.involvedObject?.name === name)
    .sort((a, b) => eventTime(a) - eventTime(b));
  const e = events.at(-1);
  return e ? `last event: ${e.type ?? ""} ${e.reason ?? ""}: ${e.message ?? ""}`.trim() : "no events";
}

function eventTime(e: { lastTimestamp?: Date; eventTime?: Date; metadata?: { creationTimestamp?: Date } }): number {
  const t = e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp;
  return t ? new Date(t).getTime() : 0;
}
