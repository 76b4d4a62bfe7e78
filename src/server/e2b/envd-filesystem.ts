/**
 * envd's filesystem service (Connect-RPC `filesystem.Filesystem`, JSON codec) as both pinned SDKs
 * call it: Stat, ListDir (with depth), MakeDir, Move, Remove and the WatchDir server stream; plus
 * `/files` and `/health` (files.ts). The polling watcher calls (CreateWatcher, GetWatcherEvents,
 * RemoveWatcher) are used by neither SDK and answer `unimplemented`.
 *
 * Every call is authenticated, authorised (read for Stat/ListDir/WatchDir, write for the rest) and
 * audited through `envdCaller` before it touches the sandbox. The work is done by the provider's
 * own file operations as the sandbox user (Sessions.statFile, …): never by running `mkdir`, `mv`
 * or `rm`, so a guardrail that denies those programs neither breaks E2B's file API nor is
 * bypassed by it. Paths resolve as envd resolves them (fs-paths.ts).
 */
import type { FastifyInstance } from "fastify";
import { asPaddockError, invalid } from "../../core/index.ts";
import type { Requirement } from "../../guard/index.ts";
import { ConnectError, addConnectParsers, unaryRoute, serverStreamRoute, type ConnectCall } from "./connect.ts";
import type { E2bContext, EnvdCaller } from "./context.ts";
import { entryInfoJson } from "./fs-entries.ts";
import { envdUser, resolveEnvdPath } from "./fs-paths.ts";
import { watchDirStream, type WatchCounts } from "./fs-watch.ts";
import { registerFileRoutes } from "./files.ts";

const SERVICE = "/filesystem.Filesystem";
const READ: Requirement = { kind: "environment", permission: "read" };
const WRITE: Requirement = { kind: "environment", permission: "write" };
/** Deepest ListDir served (the agent's bound on a tree walk). */
export const MAX_LIST_DEPTH = 256;

/**
 * ListDir calls one sandbox may have in flight at once. A listing can hold up to 100,000 entries
 * in the server's memory (about 35 MB, measured) before it is answered, so a sandbox's caller
 * firing many at once could exhaust the control plane; past this, calls wait their turn.
 */
export const MAX_LISTINGS_PER_SANDBOX = 4;

type Message = Record<string, unknown>;

/** At most `limit` runs at once per key; the others wait in order (and skip their turn once their client is gone). */
class Turns {
  readonly #running = new Map<string, number>();
  readonly #waiting = new Map<string, (() => void)[]>();

  constructor(private readonly limit: number) {}

  async run<T>(key: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    if ((this.#running.get(key) ?? 0) >= this.limit) {
      await new Promise<void>((resolve) => {
        const queue = this.#waiting.get(key) ?? [];
        queue.push(resolve);
        this.#waiting.set(key, queue);
      });
    } else {
      this.#running.set(key, (this.#running.get(key) ?? 0) + 1);
    }
    try {
      signal.throwIfAborted();
      return await fn();
    } finally {
      // Hand the slot to the next waiter, or give it back.
      const next = this.#waiting.get(key)?.shift();
      if (this.#waiting.get(key)?.length === 0) this.#waiting.delete(key);
      if (next) next();
      else if ((this.#running.get(key) ?? 1) <= 1) this.#running.delete(key);
      else this.#running.set(key, (this.#running.get(key) ?? 1) - 1);
    }
  }
}

function asMessage(message: unknown): Message {
  if (typeof message !== "object" || message === null || Array.isArray(message)) throw invalid("the request message must be a JSON object");
  return message as Message;
}

/** A string field of a request (proto3 JSON: absent means ""). */
export function stringField(m: Message, name: string): string {
  const v = m[name];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw invalid(`field ${name} must be a string`);
  return v;
}

function depthField(m: Message): number {
  const v = m.depth;
  if (v === undefined || v === null || v === 0) return 1; // envd: 0 means the directory's own entries
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw invalid("depth must be a non-negative integer");
  return Math.min(n, MAX_LIST_DEPTH);
}

/** Authenticate, authorise and audit the call, and check the user it names. */
async function callerOf(ctx: E2bContext, call: ConnectCall, operation: string, requirement: Requirement): Promise<EnvdCaller> {
  const caller = await ctx.sandboxes.envdCaller(call.request.headers, `e2b.files.${operation}`, requirement);
  envdUser(undefined, call.request.headers);
  return caller;
}

/** ENOSPC and friends are not a sandbox timeout (what the SDK would call `unavailable`). */
function rethrow(err: unknown): never {
  const e = asPaddockError(err);
  if (e.details?.errno === "ENOSPC" || e.details?.errno === "EDQUOT") throw new ConnectError("resource_exhausted", e.message);
  throw err;
}

export function registerFilesystemService(scope: FastifyInstance, ctx: E2bContext): void {
  addConnectParsers(scope);
  registerFileRoutes(scope, ctx);
  const sessions = ctx.cp.sessions;
  const watches: WatchCounts = new Map();
  const listings = new Turns(MAX_LISTINGS_PER_SANDBOX);

  unaryRoute(scope, ctx.errors, `${SERVICE}/Stat`, async (message, call) => {
    const caller = await callerOf(ctx, call, "stat", READ);
    const path = resolveEnvdPath(stringField(asMessage(message), "path"));
    return { entry: entryInfoJson(await sessions.statFile(caller.sessionId, path).catch(rethrow)) };
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/ListDir`, async (message, call) => {
    const caller = await callerOf(ctx, call, "list", READ);
    const m = asMessage(message);
    const path = resolveEnvdPath(stringField(m, "path"));
    const depth = depthField(m);
    const info = await sessions.statFile(caller.sessionId, path).catch(rethrow);
    const type = info.symlink ? info.symlink.type : info.type;
    if (type !== "dir") throw invalid(`path is not a directory: ${path}`);
    return listings.run(caller.sessionId, call.signal, async () => {
      const entries = await sessions.listTree(caller.sessionId, path, depth).catch(rethrow);
      return { entries: entries.map(entryInfoJson) };
    });
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/MakeDir`, async (message, call) => {
    const caller = await callerOf(ctx, call, "make_dir", WRITE);
    const path = resolveEnvdPath(stringField(asMessage(message), "path"));
    const created = await sessions.makeDir(caller.sessionId, path).catch(rethrow);
    if (!created) throw new ConnectError("already_exists", `directory already exists: ${path}`);
    return { entry: entryInfoJson(await sessions.statFile(caller.sessionId, path).catch(rethrow)) };
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/Move`, async (message, call) => {
    const caller = await callerOf(ctx, call, "move", WRITE);
    const m = asMessage(message);
    const source = resolveEnvdPath(stringField(m, "source"), "source");
    const destination = resolveEnvdPath(stringField(m, "destination"), "destination");
    await sessions.moveFile(caller.sessionId, source, destination).catch(rethrow);
    return { entry: entryInfoJson(await sessions.statFile(caller.sessionId, destination).catch(rethrow)) };
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/Remove`, async (message, call) => {
    const caller = await callerOf(ctx, call, "remove", WRITE);
    const path = resolveEnvdPath(stringField(asMessage(message), "path"));
    await sessions.removeFile(caller.sessionId, path).catch(rethrow); // nothing there is fine (envd: RemoveAll)
    return {};
  });

  serverStreamRoute(scope, ctx.errors, `${SERVICE}/WatchDir`, async (message, stream, call) => {
    const caller = await callerOf(ctx, call, "watch", READ);
    const m = asMessage(message);
    const path = resolveEnvdPath(stringField(m, "path"));
    await watchDirStream(ctx, caller, stream, call, {
      path,
      recursive: m.recursive === true,
      includeEntry: m.includeEntry === true,
    }, watches);
  });

  for (const method of ["CreateWatcher", "GetWatcherEvents", "RemoveWatcher"]) {
    unaryRoute(scope, ctx.errors, `${SERVICE}/${method}`, async () => {
      throw new ConnectError("unimplemented", `filesystem.Filesystem/${method} is not implemented on Paddock; use WatchDir (the SDK's files.watchDir)`);
    });
  }
}
