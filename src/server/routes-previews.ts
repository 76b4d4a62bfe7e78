/**
 * Preview routes (docs/previews.md): make a URL that serves one port of a session, list, show and
 * revoke them. The URL itself is served by the preview gateway (previews.ts), never by these routes.
 */
import { z } from "zod";
import type { ControlPlane } from "../control/index.ts";
import { parseDuration } from "../config/index.ts";
import { invalid, type Preview } from "../core/index.ts";
import { readableEnvironments } from "./auth.ts";
import { caller, sessionScope, type Route, type Scope } from "./routes.ts";

const IdParams = z.object({ id: z.string().min(1) });

export const PreviewSchema = z.object({
  id: z.string().describe("pv- and 10 hex digits."),
  sessionId: z.string().describe("The session it serves now (a wake points it at the session started from its snapshot)."),
  environment: z.string(),
  port: z.number(),
  public: z.boolean().describe("Served without a token or login."),
  command: z.string().nullable().describe("Started in the background in a woken session."),
  createdBy: z.string(),
  createdAt: z.string(),
  expiresAt: z.string(),
  revokedAt: z.string().nullable(),
  snapshotId: z.string().nullable().describe("Taken when its session stopped: what a visit wakes the session from."),
  url: z.string().describe("The preview's address without its token."),
});

const CreatePreviewBody = z.object({
  session: z.string().min(1).describe("The running session whose port to serve."),
  port: z.number().int().min(1).max(65535).describe("The port the app listens on inside the session (on 0.0.0.0)."),
  ttl: z.string().max(32).optional().describe("How long the URL works, e.g. 24h (default), 30m, 7d; at most 30d."),
  public: z.boolean().optional().describe("Anyone with the URL may visit it, without its token (default false)."),
  command: z.string().max(4096).optional().describe("What starts the app: run in the background when a visit wakes the stopped session, e.g. `npm start`."),
});

const CreatePreviewResponse = z.object({
  preview: PreviewSchema,
  token: z.string().describe("The visitor token: shown once, never stored (only its sha256)."),
  url: z.string().describe("The URL to hand out: the preview's origin with ?paddock_preview=<token>."),
});

const PreviewListQuery = z.object({ session: z.string().optional(), environment: z.string().optional(), all: z.enum(["true", "false"]).optional() });

/** A preview's environment, and its session while the store has it (an agent acts for that session's human). */
const previewScope = async ({ cp, params }: { cp: ControlPlane; params: Record<string, string> }): Promise<Scope> => {
  const p = await cp.previews.get(params.id ?? "");
  return { environment: p.environment, session: await cp.store.getSession(p.sessionId) };
};

const served = (cp: ControlPlane, p: Preview): z.infer<typeof PreviewSchema> => ({ ...p, url: cp.previews.urlOf(p) });

export const previewRoutes: Route[] = [
  {
    method: "POST",
    path: "/v1/previews",
    operationId: "createPreview",
    access: { kind: "environment", permission: "write" },
    scope: ({ cp, body }) => sessionScope({ cp, params: { id: (body as z.infer<typeof CreatePreviewBody>).session } }),
    summary:
      "Serve a port of a running session at its own origin, http://<port>-<id>.<previewDomain>:<port>/, for a TTL. The answer holds the URL with its token (shown once); a visit exchanges the token for a cookie. When the session stops it is snapshotted first, and a visit wakes it.",
    body: CreatePreviewBody,
    response: { status: 201, schema: CreatePreviewResponse },
    handler: async (ctx) => {
      const b = ctx.body as z.infer<typeof CreatePreviewBody>;
      let ttlMs: number | undefined;
      if (b.ttl !== undefined) {
        try {
          ttlMs = parseDuration(b.ttl);
        } catch (err) {
          throw invalid(`ttl: ${(err as Error).message}`);
        }
      }
      const r = await ctx.cp.previews.create(caller(ctx), {
        session: b.session, port: b.port, ...(ttlMs !== undefined ? { ttlMs } : {}), ...(b.public !== undefined ? { public: b.public } : {}), command: b.command ?? null,
      });
      ctx.reply.code(201);
      return { preview: served(ctx.cp, r.preview), token: r.token, url: r.url };
    },
  },
  {
    method: "GET",
    path: "/v1/previews",
    operationId: "listPreviews",
    access: { kind: "authenticated" },
    filtered: true,
    summary: "Previews, newest first: live ones (all=true includes revoked and expired), of environments the caller may read.",
    query: PreviewListQuery,
    response: { status: 200, schema: z.array(PreviewSchema) },
    handler: async (ctx) => {
      const q = ctx.query as z.infer<typeof PreviewListQuery>;
      const readable = await readableEnvironments(ctx.cp, caller(ctx));
      const out = [];
      const list = await ctx.cp.previews.list({ ...(q.session ? { sessionId: q.session } : {}), ...(q.environment ? { environment: q.environment } : {}), live: q.all !== "true" });
      for (const p of list) if (await readable(p.environment, await ctx.cp.store.getSession(p.sessionId))) out.push(served(ctx.cp, p));
      return out;
    },
  },
  {
    method: "GET",
    path: "/v1/previews/:id",
    operationId: "getPreview",
    access: { kind: "environment", permission: "read" },
    scope: previewScope,
    summary: "One preview (its URL without the token, which is never stored).",
    params: IdParams,
    response: { status: 200, schema: PreviewSchema },
    handler: async ({ cp, params }) => served(cp, await cp.previews.get(params.id ?? "")),
  },
  {
    method: "DELETE",
    path: "/v1/previews/:id",
    operationId: "revokePreview",
    access: { kind: "environment", permission: "write" },
    scope: previewScope,
    summary: "Revoke a preview: the next request through it is refused, also on connections already open. The answer is the revoked preview.",
    params: IdParams,
    response: { status: 200, schema: PreviewSchema },
    handler: async (ctx) => served(ctx.cp, await ctx.cp.previews.revoke(ctx.params.id ?? "", caller(ctx))),
  },
];
