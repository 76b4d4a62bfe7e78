/**
 * The server box: the HTTP API (/v1) over the control plane. `startServer` opens the control plane
 * (reconciling what a previous incarnation left), serves the route table with request validation
 * and one error format, the OpenAPI document, and the exec WebSocket.
 */
import Fastify, { type FastifyInstance } from "fastify";
import type { z } from "zod";
import type { ControlPlane, ControlPlaneOptions } from "../control/index.ts";
import { openControlPlane } from "../control/index.ts";
import { PaddockError, asPaddockError, httpStatusOf, invalid } from "../core/index.ts";
import { routes, type Route } from "./routes.ts";
import { secretRoutes } from "./routes-secrets.ts";
import { guardRoutes } from "./routes-guard.ts";
import { auditFailure, authenticate, authorize } from "./auth.ts";
import type { Principal } from "../core/index.ts";
import { openApiDocument } from "./openapi.ts";
import { attachExecStream } from "./exec-stream.ts";

/** The OpenAPI document's own route: any principal may read it. */
const openApiRoute: Route = {
  method: "GET",
  path: "/v1/openapi.json",
  operationId: "openApi",
  summary: "This API's OpenAPI 3.1 document.",
  access: { kind: "authenticated" },
  response: { status: 200, schema: "ndjson", description: "The OpenAPI document (JSON)." },
  handler: async () => openApiDocument(allRoutes),
};

/** Every route the server serves: the core table, the secrets/egress table, identity/audit/approvals. */
export const allRoutes: Route[] = [...routes, ...secretRoutes, ...guardRoutes, openApiRoute];
export { routes } from "./routes.ts";
export { openApiDocument } from "./openapi.ts";

export interface ServerOptions extends ControlPlaneOptions {
  host?: string;
  port?: number;
}

export interface RunningServer {
  url: string;
  cp: ControlPlane;
  close(opts?: { unmountLayers?: boolean; removeHostNetwork?: boolean }): Promise<void>;
}

const MAX_FILE_BYTES = 256 * 1024 * 1024;

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const cp = await openControlPlane(opts);
  const app = Fastify({ logger: false, bodyLimit: MAX_FILE_BYTES });
  app.addContentTypeParser("application/octet-stream", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err, _req, reply) => {
    const e = err instanceof PaddockError ? err : fastifyError(err);
    void reply.code(httpStatusOf(e.code)).send({ error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { code: "not_found", message: `no route ${req.method} ${req.url.split("?")[0]} (see /v1/openapi.json)` } });
  });
  for (const r of allRoutes) register(app, cp, r);
  const closeStreams = attachExecStream(app.server, cp);
  try {
    await app.listen({ host: opts.host ?? "127.0.0.1", port: opts.port ?? 7070 });
  } catch (err) {
    await cp.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new PaddockError("unavailable", `port ${opts.port ?? 7070} is already in use: is Paddock already running? (pick another with --port)`);
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : (opts.port ?? 7070);
  return {
    url: `http://${opts.host ?? "127.0.0.1"}:${port}`,
    cp,
    async close(o = {}) {
      await closeStreams();
      await app.close();
      await cp.close(o);
    },
  };
}

function register(app: FastifyInstance, cp: ControlPlane, r: Route): void {
  const principals = new WeakMap<object, Principal>();
  app.route({
    method: r.method,
    url: r.path,
    // Authentication comes first, before the body is even read: without a token nothing else
    // about the request is looked at (a malformed body gets 401, not 400).
    onRequest: async (req) => {
      if (r.access.kind !== "public") principals.set(req, await authenticate(cp, req.headers, r.operationId));
    },
    handler: async (req, reply) => {
      const principal: Principal | null = principals.get(req) ?? null;
      if (r.access.kind !== "public" && !principal) throw new PaddockError("unauthorized", "a valid API token is required");
      const rawParams = (req.params ?? {}) as Record<string, string>;
      const target = rawParams.id ?? rawParams.name ?? "-";
      let ctx;
      try {
        const params = parse(r.params, req.params, "path parameters") as Record<string, string>;
        const query = parse(r.query, req.query, "query") as Record<string, string>;
        let body: unknown = req.body;
        if (r.body === "binary") {
          if (!Buffer.isBuffer(body)) throw invalid("send the file's bytes with Content-Type: application/octet-stream");
        } else if (r.body) body = parse(r.body, req.body ?? {}, "body");
        const scope = r.scope ? await r.scope({ cp, params, query, body, req }) : null;
        ctx = { cp, principal, params, query, body, req, reply, scope };
      } catch (err) {
        if (principal) await auditFailure(cp, principal, r.operationId, target, err);
        throw err;
      }
      if (principal) await authorize(cp, principal, r.access, r.operationId, ctx.scope, ctx.scope?.session?.id ?? ctx.scope?.environment ?? target, auditDetail(r, ctx.body));
      let result: unknown;
      try {
        result = await r.handler(ctx);
      } catch (err) {
        // A refusal decided inside the handler (an agent answering an approval, a self-approval) is a denial too.
        const code = asPaddockError(err).code;
        if (principal && (code === "forbidden" || code === "unauthorized")) await auditFailure(cp, principal, r.operationId, target, err);
        throw err;
      }
      if (reply.sent) return reply;
      if (r.response.schema === "none") return reply.send();
      return result;
    },
  });
}

/** What the audit keeps of a request body: the command of an exec, never file bytes or secret values. */
function auditDetail(r: Route, body: unknown): Record<string, unknown> {
  if (r.operationId === "exec" && body && typeof body === "object") return { argv: (body as { argv?: unknown }).argv };
  if (r.operationId === "applyEnvironment" && body && typeof body === "object") return { fileName: (body as { fileName?: unknown }).fileName };
  return {};
}

function parse(schema: z.ZodType | undefined, value: unknown, where: string): unknown {
  if (!schema) return value;
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${i.path.length ? i.path.join(".") : where}: ${i.message}`);
  throw invalid(`bad ${where}: ${problems.join("; ")}`, { problems });
}

function fastifyError(err: unknown): PaddockError {
  const e = err as { statusCode?: number; message?: string; code?: string };
  if (e.statusCode === 413) return new PaddockError("invalid_argument", `request body too large (limit ${MAX_FILE_BYTES} bytes)`);
  if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return new PaddockError("invalid_argument", e.message ?? "bad request");
  return asPaddockError(err);
}
