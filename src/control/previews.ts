/**
 * Previews (docs/previews.md): one port of one session behind a URL of its own origin,
 * `http://<port>-<id>.<previewDomain>:<port>/`, for a TTL, revocable, guarded by a token (or a UI
 * login with `read`, or nobody when public). This is the control-plane half: records, the token
 * (only its sha256 is stored), signed cookie values and one-time codes, the snapshot a stopping
 * session leaves for its previews, and the wake that starts a session from it on a visit. The
 * HTTP half (host routing, the proxy, the cookie exchange) is src/server/previews.ts.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { connect } from "node:net";
import type { Preview, Principal, Session, Store } from "../core/index.ts";
import { PaddockError, invalid, notFound } from "../core/index.ts";
import type { AuditLog } from "../guard/index.ts";
import type { Access } from "./access.ts";
import { forbidden } from "./access.ts";
import type { Collector } from "./gc.ts";
import type { Sessions } from "./sessions.ts";
import type { Snapshots } from "./snapshots.ts";

export const PREVIEW_ID = /^pv-[0-9a-f]{10}$/;
export const DEFAULT_PREVIEW_DOMAIN = "preview.localhost";
export const DEFAULT_PREVIEW_TTL_MS = 24 * 3600_000;
/** The longest TTL a preview may have. */
export const MAX_PREVIEW_TTL_MS = 30 * 24 * 3600_000;
/** How long a wake waits for the app's port to accept a connection. */
export const WAKE_DEADLINE_MS = 60_000;
/** How often a wake tries the port meanwhile (a readiness check, not a fixed wait). */
const PORT_POLL_MS = 20;
/** How long a one-time code (UI login → preview cookie) is good for. */
const CODE_TTL_MS = 60_000;
const MAX_CODES = 10_000;
/** The longest command a preview may carry. */
const MAX_COMMAND_LENGTH = 4096;

/** Where a preview's requests go: the session's sandbox address and the preview's port, from the gateway address. */
export interface PreviewTarget {
  sessionId: string;
  host: string;
  port: number;
  localAddress: string;
}

export interface CreatePreviewRequest {
  session: string;
  port: number;
  ttlMs?: number;
  public?: boolean;
  command?: string | null;
}

export class Previews {
  /** The base domain preview hosts are under, lower-case. */
  readonly domain: string;
  #port = 7070;
  #publicUrl: string | null;
  readonly #cookieKey: Buffer;
  readonly #waking = new Map<string, Promise<PreviewTarget>>();
  readonly #codes = new Map<string, { preview: string; until: number }>();
  readonly #sweep: NodeJS.Timeout;

  constructor(
    private readonly deps: {
      store: Store;
      sessions: Sessions;
      snapshots: Snapshots;
      gc: Collector;
      audit: AuditLog;
      access: Access;
      /** The host's address on the sandbox networks: the only source a sandbox accepts connections from. */
      gatewayIp: string;
      /** HMAC key for cookie values (the vault's `preview-cookie` key). */
      cookieKey: Buffer;
      log: (line: string) => void;
      domain?: string;
      publicUrl?: string;
    },
  ) {
    this.domain = (deps.domain ?? DEFAULT_PREVIEW_DOMAIN).toLowerCase().replace(/^\.+|\.+$/g, "");
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(this.domain)) throw invalid(`bad preview domain ${JSON.stringify(deps.domain)}: a DNS name such as preview.localhost`);
    this.#publicUrl = deps.publicUrl?.replace(/\/+$/, "") ?? null;
    this.#cookieKey = deps.cookieKey;
    // Expired previews stop keeping their snapshots: collection looks again now and then.
    this.#sweep = setInterval(() => this.deps.gc.schedule(), 60_000);
    this.#sweep.unref();
  }

  /** The server listens on `port`: preview URLs use it, and so does the default public URL. */
  listening(port: number): void {
    this.#port = port;
  }

  /** The UI's origin (where `/ui/preview-auth` is served). */
  get publicUrl(): string {
    return this.#publicUrl ?? `http://127.0.0.1:${this.#port}`;
  }

  /** `<port>-<id>.<domain>:<server port>`: the preview's own origin's host. */
  hostOf(p: Pick<Preview, "id" | "port">): string {
    return `${p.port}-${p.id}.${this.domain}:${this.#port}`;
  }

  /** The preview's URL; with the token, the one to hand out. */
  urlOf(p: Pick<Preview, "id" | "port">, token?: string): string {
    return `http://${this.hostOf(p)}/${token ? `?paddock_preview=${token}` : ""}`;
  }

  /** `{port, id}` of a preview host (`3000-pv-ab12cd34ef.preview.localhost[:7070]`); null for any other host under the domain. */
  parseHost(host: string): { port: number; id: string } | null {
    const name = host.toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
    const m = /^(\d{1,5})-(pv-[0-9a-f]{10})\.(.+)$/.exec(name);
    if (!m || m[3] !== this.domain) return null;
    const port = Number(m[1]);
    return port >= 1 && port <= 65535 ? { port, id: m[2] ?? "" } : null;
  }

  /** Whether a Host header names the preview domain or anything under it (those never reach the API). */
  isPreviewHost(host: string | undefined): boolean {
    if (!host) return false;
    const name = host.toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
    return name === this.domain || name.endsWith(`.${this.domain}`);
  }

  async create(by: Principal, r: CreatePreviewRequest): Promise<{ preview: Preview; token: string; url: string }> {
    if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535) throw invalid(`port must be a whole number from 1 to 65535, got ${r.port}`);
    const ttlMs = r.ttlMs ?? DEFAULT_PREVIEW_TTL_MS;
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1000 || ttlMs > MAX_PREVIEW_TTL_MS) throw invalid(`ttl must be from 1s to 30d`);
    const command = r.command?.trim() ? r.command : null;
    if (command !== null && (command.length > MAX_COMMAND_LENGTH || command.includes("\0"))) throw invalid(`command must be at most ${MAX_COMMAND_LENGTH} characters, without NUL`);
    const session = await this.deps.sessions.get(r.session);
    if (session.state !== "running") throw new PaddockError("conflict", `session ${session.id} is ${session.state}, not running: a preview is made of a running session`);
    const token = randomBytes(32).toString("base64url");
    const now = new Date();
    const preview: Preview = {
      id: `pv-${randomBytes(5).toString("hex")}`,
      sessionId: session.id,
      environment: session.environment,
      port: r.port,
      public: r.public ?? false,
      command,
      createdBy: by.name,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + ttlMs).toISOString(),
      revokedAt: null,
      snapshotId: null,
    };
    await this.deps.store.createPreview(preview, tokenHash(token));
    await this.deps.audit.append({
      actor: by.name, actorKind: by.kind, onBehalfOf: by.kind === "agent" ? session.startedBy : null, action: "preview.create", target: preview.id,
      environment: session.environment, sessionId: session.id, decision: "info",
      detail: { port: preview.port, public: preview.public, expiresAt: preview.expiresAt, command: preview.command },
    });
    return { preview, token, url: this.urlOf(preview, token) };
  }

  async get(id: string): Promise<Preview> {
    const p = PREVIEW_ID.test(id) ? await this.deps.store.getPreview(id) : null;
    if (!p) throw notFound("preview", id);
    return p;
  }

  list(filter: { sessionId?: string; environment?: string; live?: boolean } = {}): Promise<Preview[]> {
    return this.deps.store.listPreviews(filter);
  }

  /** Revoke: the next request through it is refused, on any connection. Revoking twice keeps the first time. */
  async revoke(id: string, by: Principal): Promise<Preview> {
    const p = await this.get(id);
    if (p.revokedAt) return p;
    const revoked = await this.deps.store.updatePreview(id, { revokedAt: new Date().toISOString() });
    await this.deps.audit.append({
      actor: by.name, actorKind: by.kind, action: "preview.revoke", target: id, environment: p.environment, sessionId: p.sessionId, decision: "info", detail: {},
    });
    if (p.snapshotId) this.deps.gc.schedule();
    return revoked;
  }

  /** Why a preview serves nothing any more, or null while it is live. */
  gone(p: Preview, now = Date.now()): "revoked" | "expired" | null {
    if (p.revokedAt) return "revoked";
    if (Date.parse(p.expiresAt) <= now) return "expired";
    return null;
  }

  tokenMatches(p: Preview, token: string, stored: string | null): boolean {
    if (!stored || token.length > 256) return false;
    const a = Buffer.from(tokenHash(token), "hex");
    const b = Buffer.from(stored, "hex");
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** The stored sha256 of a preview's token. */
  tokenHashOf(id: string): Promise<string | null> {
    return this.deps.store.previewTokenHash(id);
  }

  /** A cookie value for a preview: its id and expiry, HMAC-signed. Good until the preview's expiry. */
  cookieValue(p: Preview): string {
    const until = Date.parse(p.expiresAt);
    const body = `${p.id}.${until}`;
    return `${body}.${this.#mac(body)}`;
  }

  /** Whether a cookie value was made for this preview and has not expired (the row is checked apart). */
  cookieValid(p: Preview, value: string): boolean {
    const m = /^(pv-[0-9a-f]{10})\.(\d{1,15})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (!m || m[1] !== p.id || Number(m[2]) <= Date.now()) return false;
    const want = Buffer.from(this.#mac(`${m[1]}.${m[2]}`));
    const got = Buffer.from(m[3] ?? "");
    return want.length === got.length && timingSafeEqual(want, got);
  }

  /** A one-time code a logged-in UI user carries to the preview's origin (60 s, single use). */
  mintCode(previewId: string): string {
    const now = Date.now();
    if (this.#codes.size >= MAX_CODES) for (const [k, v] of this.#codes) if (v.until <= now) this.#codes.delete(k);
    if (this.#codes.size >= MAX_CODES) throw new PaddockError("unavailable", "too many preview logins in flight; try again in a minute");
    const code = randomBytes(32).toString("base64url");
    this.#codes.set(code, { preview: previewId, until: now + CODE_TTL_MS });
    return code;
  }

  /** Take a code for `previewId`: true once, if it was minted for it less than 60 s ago. */
  takeCode(previewId: string, code: string): boolean {
    const c = this.#codes.get(code);
    if (!c) return false;
    this.#codes.delete(code);
    return c.preview === previewId && c.until > Date.now();
  }

  /** Where requests go now, or null when its session is not running (a visit must wake it). */
  async target(p: Preview): Promise<PreviewTarget | null> {
    const s = await this.deps.store.getSession(p.sessionId);
    return s ? targetOf(s, p.port, this.deps.gatewayIp) : null;
  }

  /**
   * Make the preview's session run and its port answer: at most one wake per preview at a time
   * (callers during a wake share it). A stopped session is started again from the snapshot taken
   * when it stopped, for the preview's creator, with the preview's command started in the
   * background; the preview then points at the new session. Resolves once the port accepts a TCP
   * connection from the gateway address (at most 60 s).
   */
  wake(id: string, visitor: string): Promise<PreviewTarget> {
    let w = this.#waking.get(id);
    if (!w) {
      w = this.#wake(id, visitor).finally(() => this.#waking.delete(id));
      this.#waking.set(id, w);
    }
    return w;
  }

  /** Whether a wake of this preview is under way. */
  waking(id: string): boolean {
    return this.#waking.has(id);
  }

  async #wake(id: string, visitor: string): Promise<PreviewTarget> {
    const started = Date.now();
    const deadline = started + WAKE_DEADLINE_MS;
    let p = await this.get(id);
    const running = await this.target(p);
    if (running) {
      await waitForPort(running, deadline);
      return running;
    }
    const fail = async (err: PaddockError): Promise<never> => {
      await this.deps.audit.append({
        actor: visitor, actorKind: "system", action: "preview.wake", target: id, environment: p.environment, sessionId: p.sessionId, decision: "denied",
        rule: err.code, detail: { reason: err.message },
      });
      throw err;
    };
    if (!p.snapshotId) return fail(new PaddockError("unavailable", `the session of preview ${id} has ended and left no snapshot to wake from`));
    const old = await this.deps.store.getSession(p.sessionId);
    const creator = await this.deps.store.getPrincipalByName(p.createdBy);
    if (!creator || creator.disabledAt) return fail(new PaddockError("forbidden", `preview ${id}'s creator ${p.createdBy} is disabled or gone: it cannot wake`));
    const perms = await this.deps.access.permissions(creator, p.environment, old);
    if (!perms.has("write")) return fail(forbidden(creator, "write", p.environment, perms));
    let session: Session;
    try {
      session = await this.deps.sessions.start(null, {
        from: p.snapshotId,
        ...(creator.kind === "agent" ? { startedBy: old?.startedBy ?? "", agent: creator.name } : { startedBy: creator.name }),
      });
    } catch (err) {
      return fail(err instanceof PaddockError ? err : new PaddockError("unavailable", `waking preview ${id} failed: ${String(err)}`));
    }
    p = await this.deps.store.updatePreview(id, { sessionId: session.id });
    if (p.command) {
      // In the background, for as long as it runs; it ends with the session.
      this.deps.sessions.exec(session.id, { argv: ["sh", "-c", p.command], onStdout: () => undefined, onStderr: () => undefined }).catch(() => undefined);
    }
    const target = targetOf(session, p.port, this.deps.gatewayIp);
    if (!target) return fail(new PaddockError("unavailable", `the session woken for preview ${id} has no network address`));
    try {
      await waitForPort(target, deadline);
    } catch (err) {
      return fail(err as PaddockError);
    }
    await this.deps.audit.append({
      actor: visitor, actorKind: "system", action: "preview.wake", target: id, environment: p.environment, sessionId: session.id, decision: "info",
      detail: { from: p.snapshotId, previousSession: old?.id ?? null, startedFor: creator.name, ms: Date.now() - started },
    });
    return target;
  }

  /**
   * Called before a session stops (user stop, timeout, a run's outcome): when live previews serve
   * it, snapshot it first and keep the snapshot on them, so a visit can wake it. Such snapshots are
   * collected once no live preview or session uses them.
   */
  async beforeStop(s: Session): Promise<void> {
    if (s.state !== "running") return;
    const live = await this.deps.store.listPreviews({ sessionId: s.id, live: true });
    const first = live[0];
    if (!first) return;
    const creator = (await this.deps.store.getPrincipalByName(first.createdBy)) ?? systemPrincipal(first.createdBy);
    const snap = await this.deps.snapshots.create(s.id, { createdBy: creator, autoRemove: true });
    try {
      for (const p of live) await this.deps.store.updatePreview(p.id, { snapshotId: snap.id });
    } finally {
      // autoRemove snapshots stay pinned until their users are recorded (snapshots.ts).
      this.deps.gc.pinned.delete(snap.id);
      this.deps.gc.schedule();
    }
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#codes.clear();
  }

  #mac(body: string): string {
    return createHmac("sha256", this.#cookieKey).update(body).digest("base64url");
  }
}

export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function targetOf(s: Session, port: number, gatewayIp: string): PreviewTarget | null {
  const ip = s.providerState.sandboxIp;
  if (s.state !== "running" || typeof ip !== "string") return null;
  return { sessionId: s.id, host: ip, port, localAddress: gatewayIp };
}

function systemPrincipal(name: string): Principal {
  return { id: "system", name, kind: "human", team: null, role: "", createdAt: new Date(0).toISOString(), disabledAt: null };
}

/** Try a TCP connection from the gateway address until one is accepted, or `deadline`. */
export async function waitForPort(t: PreviewTarget, deadline: number): Promise<void> {
  for (;;) {
    if (await accepts(t)) return;
    if (Date.now() >= deadline) throw new PaddockError("unavailable", `port ${t.port} of session ${t.sessionId} did not accept a connection within ${WAKE_DEADLINE_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, PORT_POLL_MS));
  }
}

function accepts(t: PreviewTarget): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: t.host, port: t.port, localAddress: t.localAddress });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}
