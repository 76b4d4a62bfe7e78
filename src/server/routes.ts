import type { FastifyReply, FastifyRequest } from "fastify";
import { constants as osConstants } from "node:os";
import { z } from "zod";
import { invalidFile, type ControlPlane } from "../control/index.ts";
import { invalid, type Principal, type Session } from "../core/index.ts";
import type { Requirement } from "../guard/index.ts";
import * as S from "./schemas.ts";
import { readableEnvironments } from "./auth.ts";

/**
 * The HTTP API as one table: method, path, shapes and handler per route. The server registers
 * it, the OpenAPI document is generated from it, and tests walk it — so the three cannot drift.
 */
export interface RouteContext {
  cp: ControlPlane;
  /** Who is calling; null only on public routes. */
  principal: Principal | null;
  params: Record<string, string>;
  query: Record<string, string>;
  body: unknown;
  req: FastifyRequest;
  reply: FastifyReply;
  /** What the request touches, when the route has a scope. */
  scope: Scope | null;
}

export interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** Fastify path syntax (`:id`); OpenAPI gets `{id}`. */
  path: string;
  operationId: string;
  summary: string;
  params?: z.ZodType;
  query?: z.ZodType;
  /** A zod schema for JSON bodies, or "binary" for raw bytes. */
  body?: z.ZodType | "binary";
  /** Success status and shape: a zod schema, "binary", "ndjson" (streamed events), "none" (204) or "websocket". */
  response: { status: number; schema: z.ZodType | "binary" | "ndjson" | "none" | "websocket"; description?: string };
  /** Who may call it (docs/rbac.md lists every route). Environment permissions need `scope`. */
  access: Requirement;
  /** The environment (and session) a request touches; for `environment` routes, and for auditing. */
  scope?: (ctx: Omit<RouteContext, "principal" | "reply" | "scope">) => Promise<Scope>;
  /**
   * For routes open to any principal that list things across environments: keeps only what the
   * caller may read. Routes without it return what they return.
   */
  filtered?: true;
  /** Returns the JSON body (or Buffer for binary); for streamed responses it writes to `reply` itself. */
  handler: (ctx: RouteContext) => Promise<unknown>;
}

/** What a request touches: checked against the caller's permissions and written to the audit. */
export interface Scope {
  environment: string;
  session: Session | null;
  /** When an agent starts a session: the human it acts for. */
  onBehalfOf?: string;
}

const PUBLIC: Requirement = { kind: "public" };
const ANY: Requirement = { kind: "authenticated" };
const ADMIN: Requirement = { kind: "admin" };
const READ: Requirement = { kind: "environment", permission: "read" };
const WRITE: Requirement = { kind: "environment", permission: "write" };

export const sessionScope = async ({ cp, params }: { cp: ControlPlane; params: Record<string, string> }): Promise<Scope> => {
  const session = await cp.sessions.get(params.id ?? "");
  return { environment: session.environment, session };
};
const environmentScope = async ({ params }: { params: Record<string, string> }): Promise<Scope> => ({ environment: params.name ?? "", session: null });

/** Output kept up to a number of bytes; what comes after is counted and dropped. */
class CappedOutput {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  dropped = 0;

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    const room = Math.max(0, this.cap - this.kept);
    if (room > 0) this.chunks.push(chunk.length <= room ? chunk : chunk.subarray(0, room));
    this.kept += Math.min(room, chunk.length);
    this.dropped += Math.max(0, chunk.length - room);
  }

  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

/** The name the caller acts as: for an agent, who it is; the session's human is kept beside it. */
export function caller(ctx: { principal: Principal | null }): Principal {
  if (!ctx.principal) throw invalid("this route needs an authenticated caller");
  return ctx.principal;
}

export const routes: Route[] = [
  {
    method: "GET",
    path: "/v1/health",
    operationId: "health",
    access: PUBLIC,
    summary: "Liveness: the server answers.",
    response: { status: 200, schema: z.object({ ok: z.boolean(), version: z.string() }) },
    handler: async () => ({ ok: true, version: "0.1.0" }),
  },
  {
    method: "POST",
    path: "/v1/environments/validate",
    operationId: "validateEnvironment",
    access: ANY,
    summary: "Validate an environment file without registering it; every problem is reported at once with its location.",
    body: S.ValidateBody,
    response: { status: 200, schema: z.object({ valid: z.boolean(), issues: z.array(S.Issue), spec: z.unknown() }) },
    handler: async ({ cp, body }) => {
      const b = body as z.infer<typeof S.ValidateBody>;
      const { spec, issues } = await cp.environments.validate(b.source, b.fileName);
      return { valid: spec !== null, issues, spec };
    },
  },
  {
    method: "POST",
    path: "/v1/environments",
    operationId: "applyEnvironment",
    access: ADMIN,
    summary:
      "Register a new version of an environment and build its template. With `Accept: application/x-ndjson` the response streams build events (version, step, output, step-done, done | failed), one JSON object per line.",
    body: S.ApplyBody,
    response: { status: 201, schema: "ndjson", description: "Build events, or with Accept: application/json the final {version, template}." },
    handler: async (ctx) => {
      const { cp, body, req, reply } = ctx;
      const b = body as z.infer<typeof S.ApplyBody>;
      const streaming = String(req.headers.accept ?? "").includes("application/x-ndjson");
      const abort = new AbortController();
      // The response closing before it finished means the client went away: stop the build.
      // (The request's own "close" fires as soon as its body is read, so it cannot tell us that.)
      reply.raw.on("close", () => {
        if (!reply.raw.writableFinished) abort.abort();
      });
      if (!streaming) {
        const done = await cp.environments.apply({ ...b, createdBy: caller(ctx).name, signal: abort.signal }, () => undefined);
        reply.code(201);
        return done;
      }
      // Validate before committing to a 200 stream, so a bad file is a plain 400 with its issues.
      const { spec, issues } = await cp.environments.validate(b.source, b.fileName);
      if (!spec) throw invalidFile(b.fileName, issues);
      reply.hijack();
      reply.raw.writeHead(201, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
      const send = (e: unknown) => reply.raw.write(JSON.stringify(e) + "\n");
      try {
        await cp.environments.apply({ ...b, createdBy: caller(ctx).name, signal: abort.signal }, send);
      } catch {
        /* the `failed` event already carries the reason */
      }
      reply.raw.end();
      return undefined;
    },
  },
  {
    method: "GET",
    path: "/v1/environments",
    operationId: "listEnvironments",
    access: ANY,
    filtered: true,
    summary: "List environments.",
    response: { status: 200, schema: z.array(S.Environment) },
    handler: async (ctx) => {
      const readable = await readableEnvironments(ctx.cp, caller(ctx));
      const out = [];
      for (const e of await ctx.cp.environments.list()) if (await readable(e.name)) out.push(e);
      return out;
    },
  },
  {
    method: "GET",
    path: "/v1/environments/:name",
    operationId: "getEnvironment",
    access: READ,
    scope: environmentScope,
    summary: "An environment with its current version and template.",
    params: S.NameParams,
    response: { status: 200, schema: z.object({ environment: S.Environment, current: S.EnvironmentVersion.nullable(), template: S.Template.nullable() }) },
    handler: async ({ cp, params }) => cp.environments.get(params.name ?? ""),
  },
  {
    method: "GET",
    path: "/v1/environments/:name/versions",
    operationId: "listEnvironmentVersions",
    access: READ,
    scope: environmentScope,
    summary: "Every version of an environment, newest first, with its build status.",
    params: S.NameParams,
    response: { status: 200, schema: z.array(S.EnvironmentVersion) },
    handler: async ({ cp, params }) => cp.environments.history(params.name ?? ""),
  },
  {
    method: "GET",
    path: "/v1/environments/:name/versions/:version/log",
    operationId: "getBuildLog",
    access: READ,
    scope: environmentScope,
    summary: "A version's build log as text: each step, its output and exit code (the middle of a very long log is left out, its head and tail kept).",
    params: z.object({ name: z.string().min(1), version: z.coerce.number().int().min(1) }),
    response: { status: 200, schema: "binary", description: "text/plain" },
    handler: async ({ cp, params, reply }) => {
      const text = await cp.environments.buildLog(params.name ?? "", Number(params.version));
      reply.header("content-type", "text/plain; charset=utf-8");
      return text;
    },
  },
  {
    method: "POST",
    path: "/v1/sessions",
    operationId: "startSession",
    access: WRITE,
    scope: async ({ cp, body }) => {
      const b = body as z.infer<typeof S.StartSessionBody>;
      // From a snapshot: the permission needed is on the snapshot's environment, and a different
      // environment named beside it is refused here, before anything starts.
      let environment = b.environment ?? "";
      if (b.from !== undefined) {
        const snap = await cp.snapshots.get(b.from);
        if (b.environment !== undefined && b.environment !== snap.environment) {
          throw invalid(`snapshot ${snap.id} is of environment ${JSON.stringify(snap.environment)}, not ${JSON.stringify(b.environment)}: a session starts from a snapshot of its own environment only`);
        }
        environment = snap.environment;
      }
      return { environment, session: null, ...(b.onBehalfOf ? { onBehalfOf: b.onBehalfOf } : {}) };
    },
    summary:
      "Start a session: from a ready pool member of the environment's current version when there is one, else a fresh sandbox from its current template; with `from`, from that snapshot (its environment version and files). Resolves when commands can run in it, bound to the caller.",
    body: S.StartSessionBody,
    response: { status: 201, schema: S.Session },
    handler: async (ctx) => {
      const { cp, body, reply } = ctx;
      const b = body as z.infer<typeof S.StartSessionBody>;
      const s = await cp.sessions.start(ctx.scope?.environment ?? b.environment ?? null, { ...starterOf(ctx, b.onBehalfOf), ...(b.from !== undefined ? { from: b.from } : {}), ...(b.latency ? { latency: b.latency } : {}) });
      reply.code(201);
      return publicSession(s);
    },
  },
  {
    method: "GET",
    path: "/v1/sessions",
    operationId: "listSessions",
    access: ANY,
    filtered: true,
    summary: "Live sessions, newest first (all=true includes ended ones).",
    query: S.SessionListQuery,
    response: { status: 200, schema: z.array(S.Session) },
    handler: async (ctx) => {
      const { cp, query } = ctx;
      const readable = await readableEnvironments(cp, caller(ctx));
      const out = [];
      for (const s of await cp.sessions.list({ all: query.all === "true", ...(query.environment ? { environment: query.environment } : {}) })) {
        if (await readable(s.environment, s)) out.push(publicSession(s));
      }
      return out;
    },
  },
  {
    method: "GET",
    path: "/v1/sessions/:id",
    operationId: "getSession",
    access: READ,
    scope: sessionScope,
    summary: "One session.",
    params: S.IdParams,
    response: { status: 200, schema: S.Session },
    handler: async ({ cp, params }) => {
      const s = await cp.sessions.get(params.id ?? "");
      const route = await cp.sessions.route(s.id);
      // The full explanation stays behind `paddock route explain`; the session shows the outcome.
      return { ...publicSession(s), route: route ? { provider: route.provider, strategy: route.strategy, reason: route.reason, estimateUsd: route.estimateUsd, price: route.price, skips: route.skips, runtimeMs: route.runtimeMs, measuredUsd: route.measuredUsd, createdAt: route.createdAt } : null };
    },
  },
  {
    method: "POST",
    path: "/v1/sessions/:id/stop",
    operationId: "stopSession",
    access: WRITE,
    scope: sessionScope,
    summary: "Stop a session: every process ends and its writable layer is freed. Stopping an ended session returns it unchanged.",
    params: S.IdParams,
    response: { status: 200, schema: S.Session },
    handler: async ({ cp, params }) => publicSession(await cp.sessions.stop(params.id ?? "")),
  },
  {
    method: "POST",
    path: "/v1/sessions/:id/kill",
    operationId: "killSessionProcesses",
    access: WRITE,
    scope: sessionScope,
    summary:
      "Signal every process of a running session except its init, without starting a process inside it (default SIGKILL, answered once they are gone). The way out when the session's processes fill compute.pids or it is stuck; the session keeps running.",
    params: S.IdParams,
    body: S.KillBody,
    response: { status: 200, schema: S.KillResponse },
    handler: async ({ cp, params, body }) => {
      const name = (body as z.infer<typeof S.KillBody>).signal ?? "SIGKILL";
      if (!(name in osConstants.signals)) throw invalid(`unknown signal ${JSON.stringify(name.slice(0, 32))}: use a name such as SIGKILL, SIGTERM or SIGINT`);
      return cp.sessions.kill(params.id ?? "", name as NodeJS.Signals);
    },
  },
  {
    method: "DELETE",
    path: "/v1/sessions/:id",
    operationId: "deleteSession",
    access: WRITE,
    scope: sessionScope,
    summary: "Stop a session if needed and forget it.",
    params: S.IdParams,
    response: { status: 204, schema: "none" },
    handler: async ({ cp, params, reply }) => {
      await cp.sessions.remove(params.id ?? "");
      reply.code(204);
      return undefined;
    },
  },
  {
    method: "POST",
    path: "/v1/sessions/:id/exec",
    operationId: "exec",
    access: WRITE,
    scope: sessionScope,
    summary: "Run a command to completion and return its output. For live output and stdin, use the WebSocket at /v1/sessions/{id}/exec/stream.",
    params: S.IdParams,
    body: S.ExecBody,
    response: { status: 200, schema: S.ExecResponse },
    handler: async (ctx) => {
      const { cp, params, body } = ctx;
      const b = body as z.infer<typeof S.ExecBody>;
      // Collected in memory for one JSON answer, so bounded: past the cap the rest is dropped and
      // the answer says so (the WebSocket stream has no such limit: it has flow control).
      const out = new CappedOutput(S.MAX_EXEC_OUTPUT_BYTES);
      const err = new CappedOutput(S.MAX_EXEC_OUTPUT_BYTES);
      const abort = new AbortController();
      ctx.reply.raw.on("close", () => {
        if (!ctx.reply.raw.writableFinished) abort.abort();
      });
      const result = await cp.commands.run(params.id ?? "", caller(ctx), {
        signal: abort.signal,
        argv: b.argv,
        ...(b.cwd ? { cwd: b.cwd } : {}),
        ...(b.env ? { env: b.env } : {}),
        ...(b.timeoutMs ? { timeoutMs: b.timeoutMs } : {}),
        ...(b.stdin ? { stdin: Buffer.from(b.stdin, "base64") } : {}),
        onStdout: (c) => out.push(c),
        onStderr: (c) => err.push(c),
      });
      return { ...result, stdout: out.text(), stderr: err.text(), truncated: out.dropped > 0 || err.dropped > 0 };
    },
  },
  {
    method: "GET",
    path: "/v1/sessions/:id/exec/stream",
    operationId: "execStream",
    access: WRITE,
    scope: sessionScope,
    summary:
      "WebSocket. First message (text): the exec request as JSON ({argv, cwd?, env?, timeoutMs?}); anything else is answered with an invalid_argument error and the socket closes. Then client→server binary messages are stdin; text {\"type\":\"stdin-eof\"} closes stdin; {\"type\":\"signal\",\"signal\":\"SIGINT\"} delivers that signal to the command's process group (a trap may handle it; the command's exit is then reported as usual). A message the server cannot use (unknown type, unknown signal name, stdin after stdin-eof) is answered {\"type\":\"error\",\"code\":\"invalid_argument\",message,\"fatal\":false} and the command runs on. Server→client binary messages start with 1 (stdout) or 2 (stderr) followed by the bytes; the last message is text {\"type\":\"exit\",exitCode,signal,timedOut,durationMs} or {\"type\":\"error\",code,message,\"fatal\":true,errorId?}. Messages are at most 1 MiB: a bigger one closes the socket with code 1009 (other protocol violations: 1002, 1007). Closing the socket kills the command.",
    params: S.IdParams,
    response: { status: 101, schema: "websocket" },
    handler: async () => {
      throw invalid("this route needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)");
    },
  },
  {
    method: "GET",
    path: "/v1/sessions/:id/files",
    operationId: "readFile",
    access: READ,
    scope: sessionScope,
    summary: "Read a file from the sandbox, as the session user sees it.",
    params: S.IdParams,
    query: S.PathQuery,
    response: { status: 200, schema: "binary" },
    handler: async ({ cp, params, query, reply }) => {
      reply.type("application/octet-stream");
      return cp.sessions.readFile(params.id ?? "", query.path ?? "");
    },
  },
  {
    method: "PUT",
    path: "/v1/sessions/:id/files",
    operationId: "writeFile",
    access: WRITE,
    scope: sessionScope,
    summary: "Write a file into the sandbox (atomically, as the session user; never through a symlink).",
    params: S.IdParams,
    query: S.PutFileQuery,
    body: "binary",
    response: { status: 204, schema: "none" },
    handler: async ({ cp, params, query, body, reply }) => {
      await cp.sessions.writeFile(params.id ?? "", query.path ?? "", body as Buffer, query.mode ? parseInt(query.mode, 8) : undefined);
      reply.code(204);
      return undefined;
    },
  },
  {
    method: "GET",
    path: "/v1/sessions/:id/files/list",
    operationId: "listFiles",
    access: READ,
    scope: sessionScope,
    summary: "List a directory in the sandbox.",
    params: S.IdParams,
    query: S.PathQuery,
    response: { status: 200, schema: z.array(S.FileEntry) },
    handler: async ({ cp, params, query }) => cp.sessions.listDir(params.id ?? "", query.path ?? ""),
  },
  {
    method: "GET",
    path: "/v1/doctor",
    operationId: "doctor",
    access: ADMIN,
    summary: "Host readiness (kernel features, packages) and any leaked kernel object or file.",
    response: { status: 200, schema: S.DoctorReport },
    handler: async ({ cp }) => cp.doctor(),
  },
];

/** Who a session started by the caller runs for: an agent's for the human it names (or the session's), a human's for themselves. */
export function starterOf(ctx: { principal: Principal | null }, onBehalfOf: string | undefined): { startedBy: string; agent: string | null } {
  const who = caller(ctx);
  return who.kind === "agent" ? { startedBy: onBehalfOf ?? "", agent: who.name } : { startedBy: who.name, agent: null };
}

/** Sessions as served: the provider's private handle (pids, paths) stays inside the server. */
export function publicSession(s: Session): z.infer<typeof S.Session> {
  const { providerState: _hidden, ...rest } = s;
  return rest;
}
