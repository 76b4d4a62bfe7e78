/**
 * The E2B sandbox table (docs/e2b.md): E2B sandbox id → the Paddock session behind it now, its
 * state (running, or paused on a snapshot), and the envd access tokens create/connect hand out.
 *
 * - The id is E2B-shaped (20 lower-case letters and digits) and stays the same across pause and
 *   resume; each resume is a new session from the pause's snapshot.
 * - A running sandbox whose session ended some other way (its timeout, `paddock session stop`, a
 *   lost sandbox) is gone: the first look at it deletes its row, so E2B sees 404.
 * - Access tokens are bound to the sandbox and to the principal that got them: an envd call with
 *   one acts as that principal, through the same RBAC and audit. Each is an HMAC, under a key the
 *   vault derives, of the sandbox, the principal and a random nonce; the store keeps its sha256 and
 *   the nonce, never the token. The server can derive a token again, which checking a signed file
 *   URL needs (E2B signs them with the token); someone with the database alone cannot.
 */
import { createHash, createHmac, randomBytes, randomInt } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { ControlPlane } from "../../control/index.ts";
import type { E2bSandbox, Principal, Session } from "../../core/index.ts";
import { PaddockError } from "../../core/index.ts";
import type { Requirement } from "../../guard/index.ts";
import { auditFailure, authorize } from "../auth.ts";
import type { E2bSandboxes, EnvdCaller } from "./context.ts";

/**
 * The envd version advertised to the SDK: the lowest whose features the process and filesystem
 * services all implement (stdin close: 0.5.2; octet-stream uploads: 0.5.7). The SDK refuses, on
 * its side, features of later versions (file metadata 0.6.2, watch entries 0.6.3).
 */
export const ENVD_VERSION = "0.5.7";
/** E2B's own conventions inside the sandbox: the session user and its home. */
export const E2B_USER = { name: "user", home: "/home/user" } as const;
/** E2B's "all traffic" (`ALL_TRAFFIC` in the SDK): the one `network.denyOut` entry accepted. */
export const ALL_TRAFFIC = "0.0.0.0/0";
/** A sandbox's lifetime when create names none (the SDKs' documented default). */
export const DEFAULT_TIMEOUT_MS = 300_000;

const ACCESS_TOKEN_PREFIX = "e2bat_";
/** The most tokens a signed URL that names no sandbox is checked against. */
const MAX_SIGNED_CANDIDATES = 10_000;
/** Tokens tried between two turns of the event loop in that search. */
const SIGNED_BATCH = 256;
const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** A fresh E2B-shaped sandbox id: 20 lower-case letters and digits. */
export function newSandboxId(): string {
  let id = "";
  for (let i = 0; i < 20; i++) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  return id;
}

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/** The sandbox an envd call names: the `E2b-Sandbox-Id` header, else the `<port>-<id>.<domain>` Host. */
export function sandboxIdOf(headers: IncomingHttpHeaders): string | null {
  const header = headers["e2b-sandbox-id"];
  if (typeof header === "string" && header !== "") return header;
  const host = typeof headers.host === "string" ? headers.host : "";
  const m = /^\d+-([a-z0-9-]+)\./i.exec(host);
  return m?.[1] ?? null;
}

export const sandboxNotFound = (id: string): PaddockError => new PaddockError("not_found", `sandbox ${JSON.stringify(id.slice(0, 64))} not found (never created here, killed, or its timeout passed)`);

/**
 * `authorize` on a sandbox, except that a caller who may not even read its environment is told
 * that the sandbox does not exist (404, word for word as for an unknown id) rather than that it
 * is forbidden (403): a 403 would confirm to anyone holding a token that the id is a live
 * sandbox. The refusal is audited as `authorize` audits it (denied, with the real reason).
 */
export async function authorizeSandbox(cp: ControlPlane, who: Principal, requirement: Requirement, operation: string, scope: { environment: string; session: Session }, id: string, target: string, detail: Record<string, unknown> = {}): Promise<void> {
  try {
    await authorize(cp, who, requirement, operation, scope, target, detail);
  } catch (err) {
    if (err instanceof PaddockError && err.code === "forbidden" && !(await cp.access.permissions(who, scope.environment, scope.session)).has("read")) throw sandboxNotFound(id);
    throw err;
  }
}

/** What create needs once the request is checked and authorised. */
export interface CreateRequest {
  id: string;
  environment: string;
  templateId: string;
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  timeoutMs: number;
  startedBy: string;
  agent: string | null;
  /**
   * Set when create denied all traffic but these (E2B's `allow_internet_access: false` or
   * `network.denyOut` of all traffic): the session's environment version must allow nothing else.
   */
  allowOut?: string[];
  /** Start from this snapshot (of `environment`) instead of the environment's current template. */
  from?: string;
}

export class E2bSandboxTable implements E2bSandboxes {
  /** One lifecycle change at a time per sandbox (pause, resume, kill). */
  private readonly chains = new Map<string, Promise<unknown>>();

  private readonly tokenKey: Buffer;

  constructor(private readonly cp: ControlPlane) {
    this.tokenKey = cp.vault.deriveKey("e2b-envd-access-token");
  }

  // --- envd authentication (context.ts contract) ---

  async envdCaller(headers: IncomingHttpHeaders, operation: string, requirement: Requirement, target?: string): Promise<EnvdCaller> {
    const id = sandboxIdOf(headers);
    if (id === null) throw new PaddockError("invalid_argument", "no sandbox named: send the E2b-Sandbox-Id header");
    const header = headers["x-access-token"];
    const token = typeof header === "string" ? header : undefined;
    const principal = await this.envdPrincipal(token, id, operation);
    const row = await this.live(id);
    // A Paddock session id works too (with a Paddock API token): the same session, through the same checks.
    const session = row ? await this.cp.sessions.get(row.sessionId) : await this.cp.store.getSession(id);
    if (!session) {
      await this.cp.audit.append({ actor: principal.name, actorKind: principal.kind, action: `api.${operation}`, target: id.slice(0, 64), decision: "denied", rule: "not_found" });
      throw sandboxNotFound(id);
    }
    // Authorised before its state is told: "paused" or "stopped" would confirm to a caller who may
    // not read the environment that the sandbox exists.
    await authorizeSandbox(this.cp, principal, requirement, operation, { environment: session.environment, session }, id, target ?? id, row ? { sandbox: row.id } : {});
    const notRunning =
      row?.state === "paused" ? `sandbox ${id} is paused: resume it with Sandbox.connect() first` : session.state !== "running" ? `sandbox ${id} is ${session.state}, not running` : null;
    if (notRunning) {
      const err = new PaddockError("conflict", notRunning);
      await auditFailure(this.cp, principal, operation, id, err);
      throw err;
    }
    return { sandboxId: row?.id ?? id, sessionId: session.id, principal, environment: session.environment };
  }

  /**
   * The principal behind `X-Access-Token`: an envd access token of this sandbox (acting as whoever
   * got it), or a Paddock API token. Anything else is `unauthorized`, audited as anonymous.
   */
  private async envdPrincipal(token: string | undefined, sandboxId: string, operation: string): Promise<Principal> {
    try {
      if (token?.startsWith(ACCESS_TOKEN_PREFIX)) {
        const bound = await this.cp.store.e2bAccessToken(sha256(token));
        const principal = bound && bound.sandboxId === sandboxId ? await this.cp.store.getPrincipal(bound.principal) : null;
        if (!principal || principal.disabledAt !== null) throw new PaddockError("unauthorized", "invalid access token: send the envdAccessToken that create or connect returned for this sandbox as X-Access-Token");
        return principal;
      }
      return await this.cp.identities.authenticate(token);
    } catch (err) {
      await this.cp.audit.append({ actor: "anonymous", actorKind: "system", action: `api.${operation}`, target: sandboxId.slice(0, 64), decision: "denied", rule: "authentication" });
      throw err instanceof PaddockError && err.code === "unauthorized"
        ? new PaddockError("unauthorized", "invalid access token: send the envdAccessToken that create or connect returned for this sandbox as X-Access-Token")
        : err;
    }
  }

  /** A new envd access token for `principal` on the sandbox (its sha256 and nonce are kept). */
  async issueToken(sandboxId: string, principal: Principal): Promise<string> {
    const nonce = randomBytes(16).toString("base64url");
    const token = this.derive(sandboxId, principal.id, nonce);
    await this.cp.store.addE2bAccessToken({ tokenHash: sha256(token), sandboxId, principal: principal.id, nonce, createdAt: new Date().toISOString() });
    return token;
  }

  private derive(sandboxId: string, principalId: string, nonce: string): string {
    return `${ACCESS_TOKEN_PREFIX}${createHmac("sha256", this.tokenKey).update(`${sandboxId}\0${principalId}\0${nonce}`).digest("base64url")}`;
  }

  /**
   * A `/files` call with a signed URL (context.ts contract): the token whose signature `verify`
   * accepts, among the named sandbox's (or, when the URL names none, every sandbox's), then the
   * same checks as `envdCaller` with it.
   */
  async envdSignedCaller(headers: IncomingHttpHeaders, verify: (accessToken: string) => boolean, operation: string, requirement: Requirement): Promise<EnvdCaller> {
    const named = sandboxIdOf(headers);
    const find = async (): Promise<{ sandboxId: string; token: string } | null> => {
      const candidates = await this.cp.store.listE2bAccessTokens({ ...(named !== null ? { sandboxId: named } : {}), limit: MAX_SIGNED_CANDIDATES });
      for (const [i, t] of candidates.entries()) {
        // A turn of the event loop now and then: deriving and trying every token in one go, a
        // forged URL would hold the server for the whole search (~50 ms at 10,000 tokens).
        if (i % SIGNED_BATCH === SIGNED_BATCH - 1) await new Promise((resolve) => setImmediate(resolve));
        const token = this.derive(t.sandboxId, t.principal, t.nonce);
        if (verify(token)) return { sandboxId: t.sandboxId, token };
      }
      return null;
    };
    // A URL that names no sandbox is checked against every sandbox's tokens: such searches run one
    // at a time, so anonymous requests cannot spend more than that on them, whatever their number.
    const found = named !== null ? await find() : await this.serial("\0signed-url-search", find);
    if (found !== null) return this.envdCaller({ "e2b-sandbox-id": found.sandboxId, "x-access-token": found.token }, operation, requirement);
    await this.cp.audit.append({ actor: "anonymous", actorKind: "system", action: `api.${operation}`, target: (named ?? "-").slice(0, 64), decision: "denied", rule: "authentication", detail: { reason: "signed URL" } });
    throw new PaddockError("unauthorized", "invalid signature: sign the URL with the envdAccessToken of the sandbox (the SDK's uploadUrl/downloadUrl do)");
  }

  // --- the table ---

  /** The sandbox if it exists for E2B: paused, or running on a live session (else its row goes now). */
  async live(id: string): Promise<E2bSandbox | null> {
    const row = await this.cp.store.getE2bSandbox(id);
    if (!row || row.state === "paused") return row;
    const session = await this.cp.store.getSession(row.sessionId);
    if (session && (session.state === "running" || session.state === "starting")) return row;
    await this.cp.store.deleteE2bSandbox(id);
    return null;
  }

  /** Every sandbox that exists for E2B, oldest first. */
  async list(): Promise<E2bSandbox[]> {
    const out: E2bSandbox[] = [];
    for (const row of await this.cp.store.listE2bSandboxes()) {
      const kept = row.state === "paused" ? row : await this.live(row.id);
      if (kept) out.push(kept);
    }
    return out;
  }

  /** The session behind a sandbox (the last one, when paused). */
  async sessionOf(row: E2bSandbox): Promise<Session> {
    return this.cp.sessions.get(row.sessionId);
  }

  /** The longest lifetime a session of this environment version may have from now: its `compute.timeout`. */
  async maxTimeoutMs(environment: string, version: number): Promise<number> {
    const v = await this.cp.access.versionSpec(environment, version);
    if (!v) throw new PaddockError("not_found", `environment ${environment} v${version} is gone`);
    return v.spec.compute.timeoutMs;
  }

  /** Start the session and record the sandbox. Its end is `timeoutMs` from now, at most `compute.timeout`. */
  async create(req: CreateRequest): Promise<E2bSandbox> {
    const session = await this.cp.sessions.start(req.from ? null : req.environment, {
      startedBy: req.startedBy, agent: req.agent, user: { ...E2B_USER }, ...(Object.keys(req.envVars).length ? { env: req.envVars } : {}), ...(req.from ? { from: req.from } : {}),
    });
    try {
      if (req.allowOut) await this.checkEgress(session, req.allowOut);
      const { session: running, endAt } = await this.deadline(session, req.timeoutMs);
      const now = new Date().toISOString();
      const row: E2bSandbox = {
        id: req.id, sessionId: running.id, environment: req.environment, templateId: req.templateId, metadata: req.metadata, envVars: req.envVars,
        state: "running", snapshotId: null, startedBy: req.startedBy, agent: req.agent, createdAt: now, startedAt: running.createdAt, endAt, timeoutMs: req.timeoutMs,
      };
      await this.cp.store.createE2bSandbox(row);
      return row;
    } catch (err) {
      await this.cp.sessions.stop(session.id, "E2B sandbox creation failed").catch(() => undefined);
      throw err;
    }
  }

  /**
   * A create that denied all traffic but `allowOut`: Paddock cannot narrow a sandbox's egress
   * below its environment's `guardrails.network` (the gateway holds it to that policy), so it is
   * refused unless every host that policy allows is among `allowOut`. Checked against the version
   * the session runs, so a policy applied meanwhile cannot slip past it.
   */
  private async checkEgress(session: Session, allowOut: string[]): Promise<void> {
    const v = await this.cp.access.versionSpec(session.environment, session.version);
    if (!v) throw new PaddockError("not_found", `environment ${session.environment} v${session.version} is gone`);
    const allowed = new Set(allowOut.map((h) => h.toLowerCase().replace(/\.$/, "")));
    // E2B's allowOut names hosts, not ports: an environment's `host:port` entry is judged by its host.
    const wider = allowed.has(ALL_TRAFFIC) ? [] : v.spec.guardrails.network.allow.filter((h) => !allowed.has(h.replace(/:\d+$/, "")));
    if (wider.length === 0) return;
    throw new PaddockError(
      "invalid_argument",
      `network: environment ${session.environment}'s guardrails.network (${v.fileName}) allows ${wider.slice(0, 10).join(", ")}, which this create denies (allow_internet_access: false or denyOut of all traffic); ` +
        "a Paddock sandbox's egress is its environment's policy and cannot be narrowed per sandbox: add them to network.allowOut, or use an environment that does not allow them",
    );
  }

  /** Set the session's end to `timeoutMs` from now, within the environment's `compute.timeout`. */
  private async deadline(session: Session, timeoutMs: number): Promise<{ session: Session; endAt: string }> {
    const max = await this.maxTimeoutMs(session.environment, session.version);
    const at = new Date(Date.now() + Math.min(timeoutMs, max));
    const updated = await this.cp.sessions.setDeadline(session.id, at);
    return { session: updated, endAt: at.toISOString() };
  }

  /** E2B's setTimeout: the sandbox ends `timeoutMs` from now (capped by `compute.timeout`). */
  async setTimeout(row: E2bSandbox, timeoutMs: number): Promise<E2bSandbox> {
    return this.serial(row.id, async () => {
      const current = await this.live(row.id);
      if (!current) throw sandboxNotFound(row.id);
      if (current.state === "paused") throw new PaddockError("conflict", `sandbox ${row.id} is paused: resume it with Sandbox.connect() to set its timeout`);
      const { endAt } = await this.deadline(await this.sessionOf(current), timeoutMs);
      return this.cp.store.updateE2bSandbox(row.id, { endAt, timeoutMs });
    });
  }

  /**
   * Connect: a running sandbox's end moves later when `timeoutMs` asks for more (never earlier); a
   * paused one is resumed: a new session from its snapshot, with the same files, user and envVars.
   */
  async connect(row: E2bSandbox, timeoutMs: number | undefined): Promise<{ sandbox: E2bSandbox; resumed: boolean }> {
    return this.serial(row.id, async () => {
      const current = await this.live(row.id);
      if (!current) throw sandboxNotFound(row.id);
      if (current.state === "running") {
        if (timeoutMs === undefined || Date.now() + timeoutMs <= Date.parse(current.endAt)) return { sandbox: current, resumed: false };
        const { endAt } = await this.deadline(await this.sessionOf(current), timeoutMs);
        return { sandbox: await this.cp.store.updateE2bSandbox(row.id, { endAt }), resumed: false };
      }
      if (!current.snapshotId) throw new PaddockError("internal", `paused sandbox ${row.id} has no snapshot`);
      const snap = await this.cp.store.getSnapshot(current.snapshotId);
      if (!snap) throw new PaddockError("not_found", `paused sandbox ${row.id} cannot resume: its snapshot ${current.snapshotId} was removed`);
      const session = await this.cp.sessions.start(null, {
        startedBy: current.startedBy, agent: current.agent, from: snap.id, user: { ...E2B_USER }, ...(Object.keys(current.envVars).length ? { env: current.envVars } : {}),
      });
      try {
        const lifetime = timeoutMs ?? current.timeoutMs;
        const { session: running, endAt } = await this.deadline(session, lifetime);
        // The snapshot was made to be removed once nothing uses it (autoRemove): the resumed
        // session uses it while it runs, and garbage collection takes it after.
        const sandbox = await this.cp.store.updateE2bSandbox(row.id, { state: "running", sessionId: running.id, snapshotId: null, startedAt: running.createdAt, endAt, timeoutMs: lifetime });
        return { sandbox, resumed: true };
      } catch (err) {
        await this.cp.sessions.stop(session.id, "E2B resume failed").catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * Pause: snapshot the session's files, stop it. Processes and memory are not kept (docs/e2b.md).
   * Rejects `conflict` when already paused (the SDK answers false).
   */
  async pause(row: E2bSandbox, by: Principal): Promise<E2bSandbox> {
    return this.serial(row.id, async () => {
      const current = await this.live(row.id);
      if (!current) throw sandboxNotFound(row.id);
      if (current.state === "paused") throw new PaddockError("conflict", `sandbox ${row.id} is already paused`);
      // autoRemove: once no paused row or resumed session uses it, garbage collection takes it.
      // It stays pinned (safe from collection) until the row names it.
      const snap = await this.cp.snapshots.create(current.sessionId, { createdBy: by, autoRemove: true });
      try {
        // Recorded as paused before the stop: the row then keeps the snapshot (a user of it), and a
        // crash between the two leaves a paused sandbox, not a lost one.
        const paused = await this.cp.store.updateE2bSandbox(row.id, { state: "paused", snapshotId: snap.id, endAt: new Date().toISOString() });
        await this.cp.sessions.stop(current.sessionId, "paused through the E2B API");
        return paused;
      } finally {
        this.cp.gc.pinned.delete(snap.id);
      }
    });
  }

  /** Kill: stop its session (running) or drop its snapshot (paused), and forget it. False when unknown. */
  async kill(row: E2bSandbox, by: Principal): Promise<boolean> {
    return this.serial(row.id, async () => {
      const current = await this.live(row.id);
      if (!current) return false;
      await this.cp.store.deleteE2bSandbox(row.id);
      if (current.state === "running") {
        await this.cp.sessions.stop(current.sessionId, "killed through the E2B API");
      } else if (current.snapshotId) {
        // Nothing uses the paused sandbox's snapshot any more: it goes now (or, should something
        // have started from it meanwhile, with garbage collection once that ends: autoRemove).
        await this.cp.snapshots.remove(current.snapshotId, by).catch(() => this.cp.gc.schedule());
      }
      return true;
    });
  }

  private async serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(id) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(fn);
    this.chains.set(id, next);
    try {
      return await next;
    } finally {
      if (this.chains.get(id) === next) this.chains.delete(id);
    }
  }
}

export function createE2bSandboxes(cp: ControlPlane): E2bSandboxTable {
  return new E2bSandboxTable(cp);
}
