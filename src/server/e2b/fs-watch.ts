/**
 * WatchDir: a server stream that answers `{start}` once the provider's watch is in place, then one
 * `{filesystem: {name, type}}` per change (name relative to the watched directory, as envd sends
 * it), and `{keepalive}` whenever it has been quiet for the interval the client asked for
 * (`Keepalive-Ping-Interval`, seconds). It ends when the client goes away (the watch is closed at
 * once), or when the directory itself is removed.
 *
 * Bounded: events wait in a queue of at most MAX_QUEUED while the client is slow; past that the
 * stream ends with an error rather than dropping events silently or growing without limit.
 */
import { posix } from "node:path";
import type { IncomingHttpHeaders } from "node:http";
import { invalid, type FileEvent } from "../../core/index.ts";
import { ConnectError, type ConnectCall, type ConnectStream } from "./connect.ts";
import type { E2bContext, EnvdCaller } from "./context.ts";
import { EVENT_TYPES, entryInfoJson } from "./fs-entries.ts";

const MAX_QUEUED = 10_000;
/** Watches one sandbox may hold at once: each is a process and an inotify instance in it. */
export const MAX_WATCHES_PER_SANDBOX = 64;

/** Open watches per session, for MAX_WATCHES_PER_SANDBOX (one per filesystem service instance). */
export type WatchCounts = Map<string, number>;
const DEFAULT_KEEPALIVE_S = 50;

/** The keepalive interval the client asked for, in ms (1 s … 10 min; default 50 s). */
export function keepaliveMs(headers: IncomingHttpHeaders): number {
  const raw = Number(headers["keepalive-ping-interval"]);
  const seconds = Number.isFinite(raw) && raw >= 1 ? Math.min(raw, 600) : DEFAULT_KEEPALIVE_S;
  return seconds * 1000;
}

export interface WatchRequest {
  path: string;
  recursive: boolean;
  /** Attach the entry's EntryInfo to create, write and chmod events (best effort, as envd). */
  includeEntry: boolean;
}

export async function watchDirStream(ctx: E2bContext, caller: EnvdCaller, stream: ConnectStream, call: ConnectCall, req: WatchRequest, counts: WatchCounts): Promise<void> {
  const open = counts.get(caller.sessionId) ?? 0;
  if (open >= MAX_WATCHES_PER_SANDBOX) {
    throw new ConnectError("resource_exhausted", `sandbox ${caller.sandboxId} already has ${MAX_WATCHES_PER_SANDBOX} directory watches open; stop one first`);
  }
  counts.set(caller.sessionId, open + 1);
  try {
    await watchUntilDone(ctx, caller, stream, call, req);
  } finally {
    const left = (counts.get(caller.sessionId) ?? 1) - 1;
    if (left > 0) counts.set(caller.sessionId, left);
    else counts.delete(caller.sessionId);
  }
}

async function watchUntilDone(ctx: E2bContext, caller: EnvdCaller, stream: ConnectStream, call: ConnectCall, req: WatchRequest): Promise<void> {
  const sessions = ctx.cp.sessions;
  const info = await sessions.statFile(caller.sessionId, req.path);
  if ((info.symlink ? info.symlink.type : info.type) !== "dir") throw invalid(`path is not a directory: ${req.path}`);

  const queue: FileEvent[] = [];
  let overflow = false;
  let wake: (() => void) | null = null;
  const poke = (): void => wake?.();
  const watch = await sessions.watchDir(caller.sessionId, req.path, {
    recursive: req.recursive,
    onEvent: (event) => {
      if (queue.length >= MAX_QUEUED) overflow = true;
      else queue.push(event);
      poke();
    },
  });
  let ended = false;
  let endError: unknown = null;
  watch.done.then(
    () => ((ended = true), poke()),
    (err: unknown) => ((ended = true), (endError = err), poke()),
  );
  const onAbort = (): void => {
    watch.close();
    poke();
  };
  call.signal.addEventListener("abort", onAbort, { once: true });
  const interval = keepaliveMs(call.request.headers);
  try {
    await stream.send({ start: {} });
    let lastSent = Date.now();
    for (;;) {
      if (call.signal.aborted) return;
      if (overflow) throw new ConnectError("aborted", `more than ${MAX_QUEUED} filesystem events were waiting for the client; the watch was stopped (start it again)`);
      const event = queue.shift();
      if (event !== undefined) {
        await stream.send({ filesystem: await eventJson(ctx, caller, req, event) });
        lastSent = Date.now();
        continue;
      }
      if (ended) {
        if (endError !== null) throw endError;
        return;
      }
      const wait = Math.max(0, lastSent + interval - Date.now());
      if (wait === 0) {
        // A watch outlives its authentication: at each keepalive, end it once its principal is
        // disabled (its tokens stop working then; an open watch must not go on reporting).
        const principal = await ctx.cp.store.getPrincipal(caller.principal.id);
        if (!principal || principal.disabledAt !== null) throw new ConnectError("unauthenticated", `the watch's principal ${caller.principal.name} was disabled`);
        await stream.send({ keepalive: {} });
        lastSent = Date.now();
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    call.signal.removeEventListener("abort", onAbort);
    watch.close();
  }
}

async function eventJson(ctx: E2bContext, caller: EnvdCaller, req: WatchRequest, event: FileEvent): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { name: event.name, type: EVENT_TYPES[event.type] };
  if (req.includeEntry && (event.type === "create" || event.type === "write" || event.type === "chmod")) {
    // Best effort: the entry may be gone again already.
    const info = await ctx.cp.sessions.statFile(caller.sessionId, posix.join(req.path, event.name)).catch(() => null);
    if (info !== null) out.entry = entryInfoJson(info);
  }
  return out;
}
