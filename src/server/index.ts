/**
 * The server box: the HTTP API (/v1) over the control plane. `startServer` opens the control plane
 * (reconciling what a previous incarnation left), serves the route table with request validation
 * and one error format, the OpenAPI document, and the exec WebSocket.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from "fastify";
import type { ControlPlane, ControlPlaneOptions } from "../control/index.ts";
import { openControlPlane } from "../control/index.ts";
import { PaddockError, asPaddockError, excerpt, httpStatusOf, invalid } from "../core/index.ts";
import { routes, type Route } from "./routes.ts";
import { secretRoutes } from "./routes-secrets.ts";
import { guardRoutes } from "./routes-guard.ts";
import { snapshotRoutes } from "./routes-snapshots.ts";
import { runRoutes } from "./routes-runs.ts";
import { hookRoutes } from "./routes-hooks.ts";
import { MAX_WEBHOOK_BODY_BYTES } from "../control/webhooks.ts";
import { auditFailure, authenticate, authorize } from "./auth.ts";
import type { Principal } from "../core/index.ts";
import { openApiDocument } from "./openapi.ts";
import { attachExecStream } from "./exec-stream.ts";
import { startE2bServer, type RunningE2bServer } from "./e2b/index.ts";
import { principalFromUiCookie, registerUi } from "./ui.ts";
import { previewRoutes } from "./routes-previews.ts";
import { providerRoutes } from "./routes-providers.ts";
import { attachPreviewGateway } from "./previews.ts";
import { answerClientError, drainBody, ErrorReporter, parseInput as parse, type PublicError } from "./errors.ts";

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

/** Every route the server serves: the core table, the secrets/egress table, identity/audit/approvals, snapshots/pools. */
/** Webhook receivers: their signatures are over the raw bytes, so they get every body unparsed. */
const webhookRoutes: Route[] = hookRoutes();
export const allRoutes: Route[] = [...routes, ...secretRoutes, ...guardRoutes, ...snapshotRoutes, ...runRoutes, ...previewRoutes, ...providerRoutes(), ...webhookRoutes, openApiRoute];
export { routes } from "./routes.ts";
export { openApiDocument } from "./openapi.ts";
export { describeThrown } from "./errors.ts";

export interface ServerOptions extends ControlPlaneOptions {
  host?: string;
  port?: number;
  /** The built web UI to serve (index.html, app.js, app.css); default dist/web (scripts/build-web.mjs). */
  webRoot?: string;
  /** Port of the E2B-compatible front end (docs/e2b.md) on `host`; 0 picks a free one; absent: not started. */
  e2bPort?: number;
}

export interface RunningServer {
  url: string;
  /** The E2B-compatible front end's base URL (E2B_API_URL and E2B_SANDBOX_URL), when started. */
  e2bUrl?: string;
  cp: ControlPlane;
  /** Log a crash of the process (its cause and stack, secrets redacted); resolves once written. */
  logCrash(kind: string, err: unknown): Promise<void>;
  close(opts?: { unmountLayers?: boolean; removeHostNetwork?: boolean }): Promise<void>;
}

const MAX_FILE_BYTES = 256 * 1024 * 1024;
/** Longest path parameter (ids and names are far shorter); a longer one is answered 414. */
const MAX_PARAM_LENGTH = 256;

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const cp = await openControlPlane(opts);
  const errors = new ErrorReporter({ home: cp.home, log: opts.log ?? (() => undefined), secretValues: () => cp.secretValues() });
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_FILE_BYTES,
    // A client that trickles its request (slow loris) is cut off: headers within 30 s, the whole
    // request (a file upload up to 256 MiB included) within 5 min. Answers may take longer (an exec).
    requestTimeout: 300_000,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Refused by node's HTTP parser (431, 400) or by the router (bad percent-encoding, 414):
    // answered in our shape too, never the framework's.
    clientErrorHandler: answerClientError,
    frameworkErrors: (err, req, res) => {
      const reply = res as unknown as FastifyReply;
      void drainBody(req.raw).then(() => reply.code(err.code === "FST_ERR_MAX_PARAM_LENGTH" ? 414 : 400).send({ error: routerError(err) }));
    },
  });
  app.addContentTypeParser("application/octet-stream", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  app.setErrorHandler(async (err, req, reply) => {
    const operation = (req.routeOptions.config as { operationId?: string } | undefined)?.operationId ?? `${excerpt(req.method, 16)} request`;
    const body = errors.describe(err instanceof PaddockError ? err : fastifyError(err, req.headers["content-type"]), operation);
    await drainBody(req.raw);
    return reply.code(httpStatusOf(body.code)).send({ error: body });
  });
  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split("?")[0] ?? "";
    await drainBody(req.raw);
    return reply.code(404).send({ error: { code: "not_found", message: `no route ${excerpt(req.method, 16)} ${excerpt(path, 200)} (see /v1/openapi.json)` } });
  });
  // GET and HEAD routes never read a body, but a client may send one: answering and closing with
  // its bytes unread makes the kernel reset the connection, which can destroy the answer before
  // the client reads it. So what is left of it is read and dropped first (bounded, like errors).
  app.addHook("onSend", async (req) => {
    if ((req.method === "GET" || req.method === "HEAD") && (req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined)) await drainBody(req.raw);
  });
  for (const r of allRoutes) if (!webhookRoutes.includes(r)) register(app, cp, r);
  await app.register(async (hooks) => {
    hooks.removeAllContentTypeParsers();
    hooks.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: MAX_WEBHOOK_BODY_BYTES }, (_req, body, done) => done(null, body));
    for (const r of webhookRoutes) register(hooks, cp, r);
  });
  // The web UI (src/server/ui.ts): the built app at / and /ui/*, and its login.
  await registerUi(app, cp, opts.webRoot !== undefined ? { webRoot: opts.webRoot } : {});
  const closeStreams = attachExecStream(app.server, cp, errors);
  // Preview hosts (docs/previews.md) never reach the API: attached last, in front of the listeners above.
  const closePreviews = attachPreviewGateway(app.server, cp, errors, { uiPrincipal: (h) => principalFromUiCookie(cp, h) });
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
  cp.previews.listening(port);
  let e2b: RunningE2bServer | null = null;
  if (opts.e2bPort !== undefined) {
    try {
      e2b = await startE2bServer(cp, errors, { host: opts.host ?? "127.0.0.1", port: opts.e2bPort, ...(opts.log ? { log: opts.log } : {}) });
    } catch (err) {
      await closeStreams();
      await closePreviews();
      await app.close();
      await cp.close();
      if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") throw new PaddockError("unavailable", `port ${opts.e2bPort} (the E2B-compatible API) is already in use: pick another with --e2b-port`);
      throw err;
    }
  }
  return {
    url: `http://${opts.host ?? "127.0.0.1"}:${port}`,
    ...(e2b ? { e2bUrl: e2b.url } : {}),
    cp,
    logCrash: (kind, err) => errors.logCrash(kind, err),
    async close(o = {}) {
      await e2b?.close();
      await closeStreams();
      await closePreviews();
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
    config: { operationId: r.operationId },
    // Authentication comes first, before the body is even read: without a token nothing else
    // about the request is looked at (a malformed body gets 401, not 400).
    onRequest: async (req) => {
      if (r.access.kind !== "public") principals.set(req, await authenticate(cp, req.headers, r.operationId, { method: req.method }));
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
  if ((r.operationId === "startSession" || r.operationId === "forkSession" || r.operationId === "setPool" || r.operationId === "createSnapshot") && body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    return Object.fromEntries(["from", "count", "min", "max", "session", "name"].filter((k) => b[k] !== undefined).map((k) => [k, b[k]]));
  }
  return {};
}

/** A framework error as ours: the client's mistakes are `invalid_argument`, the rest `internal`. */
function fastifyError(err: unknown, contentType: string | undefined): PaddockError {
  const e = err as { statusCode?: number; message?: string; code?: string };
  if (e.statusCode === 413) return new PaddockError("invalid_argument", `request body too large (limit ${MAX_FILE_BYTES} bytes)`);
  if (e.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
    return new PaddockError("invalid_argument", `unsupported Content-Type ${JSON.stringify(excerpt(contentType ?? "", 100))}: send application/json (application/octet-stream for file bytes)`);
  }
  if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return new PaddockError("invalid_argument", excerpt(e.message ?? "bad request", 300));
  return asPaddockError(err);
}

/** The router's refusals: bad percent-encoding in the path, an overlong path parameter. */
function routerError(err: { code?: string; message: string }): PublicError {
  if (err.code === "FST_ERR_MAX_PARAM_LENGTH") return { code: "invalid_argument", message: `a path parameter is over ${MAX_PARAM_LENGTH} characters` };
  if (err.code === "FST_ERR_BAD_URL") return { code: "invalid_argument", message: "the URL path has invalid percent-encoding (e.g. %E0%A4%A): encode each byte as %XX" };
  return { code: "invalid_argument", message: "the request cannot be routed" };
}
