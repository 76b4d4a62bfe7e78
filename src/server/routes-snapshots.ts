/**
 * Snapshot, fork, services, pool and garbage-collection routes (docs/snapshots.md, docs/pools.md).
 */
import { z } from "zod";
import type { ControlPlane } from "../control/index.ts";
import { readableEnvironments } from "./auth.ts";
import { caller, publicSession, sessionScope, starterOf, type Route, type Scope } from "./routes.ts";
import * as S from "./schemas.ts";

const IdParams = z.object({ id: z.string().min(1) });
const NameParams = z.object({ name: z.string().min(1) });

/**
 * A snapshot's environment, and its source session when the store still has it: an agent acts
 * with the intersection of its role and that session's human, as in the session itself.
 */
const snapshotScope = async ({ cp, params }: { cp: ControlPlane; params: Record<string, string> }): Promise<Scope> => {
  const snap = await cp.snapshots.get(params.id ?? "");
  return { environment: snap.environment, session: await cp.store.getSession(snap.sourceSession) };
};

export const snapshotRoutes: Route[] = [
  {
    method: "POST",
    path: "/v1/snapshots",
    operationId: "createSnapshot",
    access: { kind: "environment", permission: "write" },
    scope: ({ cp, body }) => sessionScope({ cp, params: { id: (body as z.infer<typeof S.CreateSnapshotBody>).session } }),
    summary:
      "Snapshot a running session: its writable layer is captured copy-on-write while its processes are frozen for that instant (frozenMs), then they go on. Sessions start from it with POST /v1/sessions {from}.",
    body: S.CreateSnapshotBody,
    response: { status: 201, schema: S.Snapshot },
    handler: async (ctx) => {
      const b = ctx.body as z.infer<typeof S.CreateSnapshotBody>;
      const snap = await ctx.cp.snapshots.create(b.session, { name: b.name ?? null, createdBy: caller(ctx) });
      ctx.reply.code(201);
      return snap;
    },
  },
  {
    method: "GET",
    path: "/v1/snapshots",
    operationId: "listSnapshots",
    access: { kind: "authenticated" },
    filtered: true,
    summary: "Snapshots, newest first (only those of environments the caller may read).",
    query: S.SnapshotListQuery,
    response: { status: 200, schema: z.array(S.Snapshot) },
    handler: async (ctx) => {
      const readable = await readableEnvironments(ctx.cp, caller(ctx));
      const out = [];
      for (const s of await ctx.cp.snapshots.list(ctx.query.environment ? { environment: ctx.query.environment } : {})) {
        if (await readable(s.environment)) out.push(s);
      }
      return out;
    },
  },
  {
    method: "GET",
    path: "/v1/snapshots/:id",
    operationId: "getSnapshot",
    access: { kind: "environment", permission: "read" },
    scope: snapshotScope,
    summary: "One snapshot (by id or name), with what uses it.",
    params: IdParams,
    response: { status: 200, schema: S.SnapshotDetail },
    handler: async ({ cp, params }) => {
      const snap = await cp.snapshots.get(params.id ?? "");
      return { ...snap, users: await cp.snapshots.users(snap.id) };
    },
  },
  {
    method: "DELETE",
    path: "/v1/snapshots/:id",
    operationId: "deleteSnapshot",
    access: { kind: "environment", permission: "write" },
    scope: snapshotScope,
    summary: "Remove a snapshot (by id or name) and free its layer. Refused (409, naming them) while running sessions started from it, or pool members, use it.",
    params: IdParams,
    response: { status: 204, schema: "none" },
    handler: async (ctx) => {
      await ctx.cp.snapshots.remove(ctx.params.id ?? "", caller(ctx));
      ctx.reply.code(204);
      return undefined;
    },
  },
  {
    method: "POST",
    path: "/v1/sessions/:id/fork",
    operationId: "forkSession",
    access: { kind: "environment", permission: "write" },
    scope: sessionScope,
    summary:
      "Snapshot a running session and start `count` independent sessions from it at once. Answers 201 with the sessions started and, per failed start, its error; the snapshot is removed by garbage collection once none of them runs.",
    params: IdParams,
    body: S.ForkBody,
    response: { status: 201, schema: S.ForkResponse },
    handler: async (ctx) => {
      const b = ctx.body as z.infer<typeof S.ForkBody>;
      const session = ctx.scope?.session;
      const r = await ctx.cp.snapshots.fork(ctx.params.id ?? "", b.count, caller(ctx), starterOf(ctx, session?.startedBy));
      ctx.reply.code(201);
      return { snapshot: r.snapshot, sessions: r.sessions.map(publicSession), failures: r.failures };
    },
  },
  {
    method: "GET",
    path: "/v1/sessions/:id/services",
    operationId: "listServices",
    access: { kind: "environment", permission: "read" },
    scope: sessionScope,
    summary: "The state of a running session's services (services: in its environment file): starting, ready, restarting, failed or stopped, with restarts and the end of their logs.",
    params: IdParams,
    response: { status: 200, schema: z.array(S.ServiceStatus) },
    handler: async ({ cp, params }) => cp.sessions.services(params.id ?? ""),
  },
  {
    method: "GET",
    path: "/v1/pools",
    operationId: "listPools",
    access: { kind: "authenticated" },
    filtered: true,
    summary: "Warm pools: per environment, its size (min, max), ready and starting members, and their memory.",
    response: { status: 200, schema: z.array(S.PoolInfo) },
    handler: async (ctx) => {
      const readable = await readableEnvironments(ctx.cp, caller(ctx));
      const out = [];
      for (const p of await ctx.cp.pools.list()) if (await readable(p.environment)) out.push(p);
      return out;
    },
  },
  {
    method: "PUT",
    path: "/v1/pools/:name",
    operationId: "setPool",
    access: { kind: "admin" },
    summary: "Set an environment's pool size, overriding its file's pool: (max defaults to min; min 0 empties it). Members start and stop in the background.",
    params: NameParams,
    body: S.PoolBody,
    response: { status: 200, schema: S.PoolInfo },
    handler: async (ctx) => {
      const b = ctx.body as z.infer<typeof S.PoolBody>;
      return ctx.cp.pools.set(ctx.params.name ?? "", { min: b.min, ...(b.max !== undefined ? { max: b.max } : {}) }, caller(ctx).name);
    },
  },
  {
    method: "DELETE",
    path: "/v1/pools/:name",
    operationId: "resetPool",
    access: { kind: "admin" },
    summary: "Forget the pool size set for an environment: its file's pool: applies again (none: no pool).",
    params: NameParams,
    response: { status: 200, schema: S.PoolInfo },
    handler: async (ctx) => ctx.cp.pools.reset(ctx.params.name ?? "", caller(ctx).name),
  },
  {
    method: "POST",
    path: "/v1/gc",
    operationId: "collectGarbage",
    access: { kind: "admin" },
    summary: "Remove the layers nothing keeps (docs/snapshots.md, Garbage collection) now, and say what went. It also runs on its own.",
    response: { status: 200, schema: S.GcResponse },
    handler: async ({ cp }) => cp.gc.collect(),
  },
];
