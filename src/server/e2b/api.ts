/**
 * The E2B control API (docs/e2b.md): create, connect (resumes a paused sandbox), kill, get info,
 * list (metadata and state filters, paging), set timeout, pause and resume, in both the
 * `/sandboxes` and `/v2/sandboxes` forms the SDK releases use.
 *
 * Every route authenticates the API key as a Paddock token (`X-API-Key`, or `Authorization:
 * Bearer`), then checks and audits the same requirement as its native twin (src/server/routes.ts):
 * create and resume as startSession (write), kill, pause and set timeout as stopSession (write),
 * info and list as reads. Errors answer in E2B's shape, `{code, message}` with the HTTP status as
 * code; routes of E2B's API that Paddock does not offer answer 501 saying so.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { IncomingHttpHeaders } from "node:http";
import type { z } from "zod";
import type { E2bSandbox, Principal, Snapshot } from "../../core/index.ts";
import { PaddockError, asPaddockError } from "../../core/index.ts";
import type { Requirement } from "../../guard/index.ts";
import { auditFailure, authenticate, authorize } from "../auth.ts";
import { ConnectBody, NewSandboxBody, PauseBody, SnapshotBody, TimeoutBody, detailAnswer, egressRequestOf, invalidBody, refusalOf, sandboxAnswer, statusOf, type E2bError } from "./api-shapes.ts";
import { listSandboxes } from "./api-list.ts";
import type { E2bContext } from "./context.ts";
import { DEFAULT_TIMEOUT_MS, E2bSandboxTable, authorizeSandbox, newSandboxId, sandboxNotFound } from "./sandboxes.ts";

const READ: Requirement = { kind: "environment", permission: "read" };
const WRITE: Requirement = { kind: "environment", permission: "write" };
/** Control requests are small JSON documents. */
const BODY_LIMIT = 1024 * 1024;
/** An agent's token names the human it acts for, as the native API's `onBehalfOf`. */
const ON_BEHALF_OF = "x-paddock-on-behalf-of";

/** E2B's API paths Paddock does not offer, each answered 501 with what to do instead. */
const UNSUPPORTED: [string, string][] = [
  ["/sandboxes/metrics", "sandbox metrics"],
  ["/sandboxes/:id/metrics", "sandbox metrics"],
  ["/sandboxes/:id/logs", "sandbox logs (use the Paddock API's audit and exec output)"],
  ["/v2/sandboxes/:id/logs", "sandbox logs (use the Paddock API's audit and exec output)"],
  ["/sandboxes/:id/fork", "fork through the E2B API (use `paddock session fork`)"],
  ["/sandboxes/:id/network", "network updates (the environment's guardrails.network decides)"],
  ["/sandboxes/:id/refreshes", "refreshes (use setTimeout)"],
  ["/snapshots", "listing snapshots through the E2B API (use `paddock snapshot list`)"],
  ["/templates", "templates through the E2B API (a template is a Paddock environment: `paddock env apply`)"],
  ["/templates/*", "templates through the E2B API (a template is a Paddock environment: `paddock env apply`)"],
  ["/v2/templates/*", "template builds through the E2B API (`paddock env apply`)"],
  ["/v3/templates", "template builds through the E2B API (`paddock env apply`)"],
  ["/volumes", "volumes"],
  ["/volumes/*", "volumes"],
  ["/volumecontent/*", "volumes"],
  ["/secrets", "E2B secrets (Paddock's secrets are injected by its gateway: `paddock secret set`)"],
  ["/secrets/*", "E2B secrets (Paddock's secrets are injected by its gateway: `paddock secret set`)"],
  ["/teams", "teams"],
  ["/teams/*", "teams"],
  ["/api-keys", "API keys (a Paddock token is the key: `paddock user token NAME`)"],
  ["/access-tokens", "access tokens (a Paddock token is the key)"],
];

export function registerControlApi(scope: FastifyInstance, ctx: E2bContext): void {
  // The control API drives the table itself (create, pause, kill); envd services see only envdCaller.
  const table = ctx.sandboxes;
  if (!(table instanceof E2bSandboxTable)) throw new PaddockError("internal", "the E2B control API needs the sandbox table of sandboxes.ts");
  const api = new ControlApi(ctx, table);
  scope.setErrorHandler((err: FastifyError, req, reply) => api.answerError(err, req, reply));
  const params = (req: FastifyRequest) => req.params as Record<string, string>;
  const opts = { bodyLimit: BODY_LIMIT };

  for (const path of ["/sandboxes", "/v2/sandboxes"]) {
    scope.post(path, opts, async (req, reply) => reply.code(201).send(await api.create(req)));
  }
  scope.get("/sandboxes", async (req) => listSandboxes(ctx, table, await api.caller(req, "e2b.listSandboxes"), req, "v1"));
  scope.get("/v2/sandboxes", async (req, reply) => listSandboxes(ctx, table, await api.caller(req, "e2b.listSandboxes"), req, "v2", reply));
  scope.get("/sandboxes/:id", async (req) => api.info(req, params(req).id ?? ""));
  scope.delete("/sandboxes/:id", async (req, reply) => {
    await api.kill(req, params(req).id ?? "");
    return reply.code(204).send();
  });
  scope.post("/sandboxes/:id/timeout", opts, async (req, reply) => {
    await api.setTimeout(req, params(req).id ?? "");
    return reply.code(204).send();
  });
  scope.post("/sandboxes/:id/pause", opts, async (req, reply) => {
    await api.pause(req, params(req).id ?? "");
    return reply.code(204).send();
  });
  for (const path of ["/sandboxes/:id/connect", "/v2/sandboxes/:id/connect"]) {
    scope.post(path, opts, async (req, reply) => {
      const { answer, resumed } = await api.connect(req, params(req).id ?? "", "connect");
      return reply.code(resumed ? 201 : 200).send(answer);
    });
  }
  scope.post("/sandboxes/:id/resume", opts, async (req, reply) => reply.code(201).send((await api.connect(req, params(req).id ?? "", "resume")).answer));
  // Snapshots (E2B's createSnapshot / deleteSnapshot): Paddock snapshots; create names one as its template.
  scope.post("/sandboxes/:id/snapshots", opts, async (req, reply) => reply.code(201).send(await api.snapshot(req, params(req).id ?? "")));
  scope.delete("/templates/:id", async (req, reply) => {
    await api.deleteSnapshot(req, params(req).id ?? "");
    return reply.code(204).send();
  });
  for (const [path, what] of UNSUPPORTED) {
    scope.all(path, async (_req, reply) => reply.code(501).send({ code: 501, message: `Paddock's E2B front end does not support ${what}` } satisfies E2bError));
  }
}

class ControlApi {
  constructor(
    private readonly ctx: E2bContext,
    private readonly table: E2bSandboxTable,
  ) {}

  /** Authenticate the API key (audited as anonymous when it fails). */
  async caller(req: FastifyRequest, operation: string): Promise<Principal> {
    try {
      return await authenticate(this.ctx.cp, apiKeyHeaders(req.headers), operation);
    } catch (err) {
      // The native API's message names its own header; an E2B client sends the key as X-API-Key.
      if (err instanceof PaddockError && err.code === "unauthorized") {
        throw new PaddockError("unauthorized", "a valid API key is required: send X-API-Key with a Paddock token (E2B_API_KEY; docs/e2b.md)");
      }
      throw err;
    }
  }

  async create(req: FastifyRequest) {
    const { cp } = this.ctx;
    const operation = "e2b.createSandbox";
    const who = await this.caller(req, operation);
    const id = newSandboxId();
    const body = await this.parse(who, operation, id, NewSandboxBody, req.body, "create body");
    const onBehalfOf = typeof req.headers[ON_BEHALF_OF] === "string" ? (req.headers[ON_BEHALF_OF] as string) : undefined;
    // A template id is an environment, or else a snapshot (its id or name, as createSnapshot answered).
    const snapshot = await this.snapshotNamed(body.templateID);
    const environment = snapshot?.environment ?? body.templateID;
    const scope = { environment, session: null, ...(onBehalfOf ? { onBehalfOf } : {}) };
    if (who.kind === "agent" && !onBehalfOf) {
      // As the native startSession: an agent starts a session on behalf of a person.
      const err = new PaddockError("forbidden", "an agent creates a sandbox on behalf of a person: send the header X-Paddock-On-Behalf-Of with their name (apiHeaders in the SDK's options)");
      await auditFailure(cp, who, operation, id, err);
      throw err;
    }
    // What E2B's network controls were asked for is part of the record (docs/e2b.md, "Egress").
    const egress = egressRequestOf(body);
    await authorize(cp, who, WRITE, operation, scope, id, { templateID: body.templateID, ...(egress ? { egress } : {}) });
    const refusal = refusalOf(body);
    if (refusal) {
      const err = new PaddockError("invalid_argument", refusal);
      await auditFailure(cp, who, operation, id, err);
      throw err;
    }
    const row = await this.table.create({
      id, environment, templateId: body.templateID, metadata: body.metadata ?? {}, envVars: body.envVars ?? {}, ...(snapshot ? { from: snapshot.id } : {}),
      timeoutMs: (body.timeout ?? DEFAULT_TIMEOUT_MS / 1000) * 1000, ...(egress?.restricted ? { allowOut: egress.allowOut } : {}),
      startedBy: who.kind === "agent" ? (onBehalfOf ?? "") : who.name, agent: who.kind === "agent" ? who.name : null,
    });
    return sandboxAnswer(row, await this.table.issueToken(row.id, who));
  }

  async info(req: FastifyRequest, id: string) {
    const { row } = await this.sandbox(req, id, "e2b.getSandbox", () => READ);
    return detailAnswer(row, await this.compute(row));
  }

  async kill(req: FastifyRequest, id: string): Promise<void> {
    const { row, who } = await this.sandbox(req, id, "e2b.killSandbox", () => WRITE);
    if (!(await this.table.kill(row, who))) throw sandboxNotFound(id);
  }

  async setTimeout(req: FastifyRequest, id: string): Promise<void> {
    const operation = "e2b.setSandboxTimeout";
    const { row, who } = await this.sandbox(req, id, operation, () => WRITE);
    const body = await this.parse(who, operation, id, TimeoutBody, req.body, "timeout body");
    await this.table.setTimeout(row, body.timeout * 1000);
  }

  async pause(req: FastifyRequest, id: string): Promise<void> {
    const operation = "e2b.pauseSandbox";
    const { row, who } = await this.sandbox(req, id, operation, () => WRITE);
    // `memory` (keepMemory) is accepted but cannot be honoured: SDK 2.39 sends true on every
    // pause. A pause keeps the files only (docs/e2b.md).
    await this.parse(who, operation, id, PauseBody, req.body ?? null, "pause body");
    await this.table.pause(row, who);
  }

  /**
   * E2B's createSnapshot: a Paddock snapshot of the sandbox's session (its files, captured while
   * its processes are frozen for an instant; they go on), named as asked. New sandboxes start from
   * it by naming its id or name as their template. Needs write, as the native createSnapshot.
   */
  async snapshot(req: FastifyRequest, id: string) {
    const operation = "e2b.createSnapshot";
    const { row, who } = await this.sandbox(req, id, operation, () => WRITE);
    const body = await this.parse(who, operation, id, SnapshotBody, req.body ?? {}, "snapshot body");
    if (row.state === "paused") throw new PaddockError("conflict", `sandbox ${id} is paused: resume it with Sandbox.connect() to snapshot it`);
    const snap = await this.ctx.cp.snapshots.create(row.sessionId, { name: body.name ?? null, createdBy: who });
    return { snapshotID: snap.id, names: snap.name ? [snap.name] : [] };
  }

  /** E2B's deleteSnapshot (`DELETE /templates/{id}`): removes a Paddock snapshot; environments are not deleted here. */
  async deleteSnapshot(req: FastifyRequest, ref: string): Promise<void> {
    const operation = "e2b.deleteSnapshot";
    const who = await this.caller(req, operation);
    const snap = await this.snapshotNamed(ref);
    if (!snap) {
      const err = (await this.ctx.cp.store.getEnvironment(ref))
        ? new PaddockError("invalid_argument", "deleting templates through the E2B API is not supported: a template is a Paddock environment (`paddock env rm`)")
        : new PaddockError("not_found", `template or snapshot ${JSON.stringify(ref.slice(0, 64))} not found`);
      await auditFailure(this.ctx.cp, who, operation, ref.slice(0, 64), err);
      throw err;
    }
    await authorize(this.ctx.cp, who, WRITE, operation, { environment: snap.environment, session: await this.ctx.cp.store.getSession(snap.sourceSession) }, snap.id);
    await this.ctx.cp.snapshots.remove(snap.id, who);
  }

  /** The snapshot a template id names (its id or name) when no environment has that name. */
  private async snapshotNamed(ref: string): Promise<Snapshot | null> {
    if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(ref) || (await this.ctx.cp.store.getEnvironment(ref))) return null;
    return this.ctx.cp.snapshots.get(ref).catch((err: unknown) => {
      if (err instanceof PaddockError && err.code === "not_found") return null;
      throw err;
    });
  }

  /** Connect (and the older resume): a paused sandbox starts again (write); a running one needs read. */
  async connect(req: FastifyRequest, id: string, kind: "connect" | "resume") {
    const operation = kind === "connect" ? "e2b.connectSandbox" : "e2b.resumeSandbox";
    const { row, who } = await this.sandbox(req, id, operation, (r) => (r.state === "paused" ? WRITE : READ));
    const body = await this.parse(who, operation, id, ConnectBody, req.body ?? {}, `${kind} body`);
    if (kind === "resume" && row.state === "running") throw new PaddockError("conflict", `sandbox ${id} is already running`);
    if (row.state === "running" && body.timeout !== undefined && Date.now() + body.timeout * 1000 > Date.parse(row.endAt)) {
      // Moving a running sandbox's end later keeps it alive: set timeout's power (write), which
      // a reader's connect must not have.
      await authorize(this.ctx.cp, who, WRITE, operation, { environment: row.environment, session: await this.table.sessionOf(row) }, id, { extendsTimeout: true });
    }
    const { sandbox, resumed } = await this.table.connect(row, body.timeout === undefined ? undefined : body.timeout * 1000);
    return { answer: sandboxAnswer(sandbox, await this.table.issueToken(sandbox.id, who)), resumed };
  }

  /** Authenticate, find the sandbox (404, audited, when it does not exist for E2B), authorise on its environment. */
  private async sandbox(req: FastifyRequest, id: string, operation: string, need: (row: E2bSandbox) => Requirement): Promise<{ row: E2bSandbox; who: Principal }> {
    const { cp } = this.ctx;
    const who = await this.caller(req, operation);
    const row = /^[a-z0-9]{1,64}$/.test(id) ? await this.table.live(id) : null;
    if (!row) {
      const err = sandboxNotFound(id);
      await auditFailure(cp, who, operation, id.slice(0, 64), err);
      throw err;
    }
    const session = await this.table.sessionOf(row);
    await authorizeSandbox(cp, who, need(row), operation, { environment: row.environment, session }, id, id, { sessionId: row.sessionId });
    return { row, who };
  }

  private async parse<T extends z.ZodType>(who: Principal, operation: string, target: string, schema: T, body: unknown, where: string): Promise<z.infer<T>> {
    const parsed = schema.safeParse(body);
    if (parsed.success) return parsed.data;
    const err = invalidBody(where, parsed.error);
    await auditFailure(this.ctx.cp, who, operation, target, err);
    throw err;
  }

  private async compute(row: E2bSandbox) {
    const session = await this.table.sessionOf(row).catch(() => null);
    if (!session) return null;
    return (await this.ctx.cp.access.versionSpec(session.environment, session.version))?.spec.compute ?? null;
  }

  /** Every error in E2B's shape; internal ones are logged with an id and not described. */
  answerError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
    let body: E2bError;
    if (err instanceof PaddockError) {
      const described = this.ctx.errors.describe(err, `e2b ${req.method} ${req.routeOptions.url ?? ""}`);
      body = { code: statusOf(described.code), message: described.message };
    } else if (typeof err.statusCode === "number" && err.statusCode >= 400 && err.statusCode < 500) {
      // Fastify's own refusals: malformed JSON, an unsupported content type, a body too large.
      body = { code: err.statusCode, message: err.message };
    } else {
      const described = this.ctx.errors.describe(asPaddockError(err), `e2b ${req.method} ${req.routeOptions.url ?? ""}`);
      body = { code: statusOf(described.code), message: described.message };
    }
    void reply.code(body.code).send(body);
  }
}

/**
 * A Paddock token in the shape E2B's API keys have, `e2b_` and hex: SDK releases such as 2.39
 * refuse any other key before sending it (unless E2B_VALIDATE_API_KEY=false). It is the same
 * secret, only spelled in hex.
 */
export function e2bApiKeyOf(paddockToken: string): string {
  return `e2b_${Buffer.from(paddockToken, "utf8").toString("hex")}`;
}

/** The Paddock token an API key carries: itself, or the token spelled by an `e2b_<hex>` key. */
function paddockTokenOf(key: string): string {
  const m = /^e2b_((?:[0-9a-f]{2}){1,256})$/.exec(key);
  return m?.[1] ? Buffer.from(m[1], "hex").toString("utf8") : key;
}

/** The API key as the bearer token `authenticate` reads; the UI cookie is never accepted here. */
function apiKeyHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const key = headers["x-api-key"];
  if (typeof key === "string" && key !== "") return { authorization: `Bearer ${paddockTokenOf(key)}` };
  const bearer = typeof headers.authorization === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization)?.[1] : undefined;
  return bearer ? { authorization: `Bearer ${paddockTokenOf(bearer)}` } : {};
}
