/**
 * The web UI's server side: the single-page app built into dist/web (scripts/build-web.mjs),
 * served at `/` and `/ui/*`, and its login. `POST /ui/login` exchanges an API token for the
 * `paddock_session` cookie; the API (auth.ts) and the exec WebSocket accept that cookie in place
 * of `Authorization: Bearer`, under the rules in docs/ui.md.
 *
 * The cookie is stateless: `base64url(JSON {p: principal id, t: token id, e: expiry ms})` and an
 * HMAC-SHA256 of it under a key derived from the vault key (purpose `ui-session`), which the
 * database never holds. It is not a bearer of the API token (the token is not in it), and every
 * request checks again that the principal is enabled and the token not revoked, so disabling a
 * principal or revoking the token ends its UI sessions at once.
 *
 * Nothing here is served on preview hosts (`*.<previewDomain>`): those serve what agents built,
 * which must never run in the UI's origin nor see its cookie (it is host-only, so a browser would
 * not send it there anyway; refusing it there too fails closed).
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import { pathToFileURL } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ControlPlane } from "../control/index.ts";
import type { Principal } from "../core/index.ts";
import { PaddockError } from "../core/index.ts";
import { parseToken } from "../guard/index.ts";

export const UI_COOKIE = "paddock_session";
/** How long a UI login lasts; then the user logs in again. */
export const UI_SESSION_MS = 12 * 3600 * 1000;
/** The header a cookie-authenticated request that changes anything must carry (see auth.ts). */
export const CSRF_HEADER = "x-paddock-csrf";
export const DEFAULT_PREVIEW_DOMAIN = "preview.localhost";
/** No inline script or style, no other origin: what the bundle needs and nothing more. */
export const UI_CSP = "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'";
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": UI_CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};
const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
};
/** The bundle's own files: one path segment, no dot first (no .stamp, no traversal). */
const ASSET_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const BAD_TOKEN = "That API token is not valid: it may be mistyped, revoked, or its user disabled. Ask an administrator for a new one (paddock user token NAME).";

/** The preview domain of this installation (`cp.previews.domain`; the default without one). */
export function previewDomainOf(cp: ControlPlane): string {
  const d = (cp as { previews?: { domain?: unknown } }).previews?.domain;
  return typeof d === "string" && d ? d.toLowerCase().replace(/^\.+|\.+$/g, "") : DEFAULT_PREVIEW_DOMAIN;
}

/** The request's host name, lowercased, without port or trailing dot ("" when absent). */
export function hostNameOf(headers: IncomingHttpHeaders): string {
  const host = String(headers.host ?? "").trim().toLowerCase();
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d*$/, "");
  return name.replace(/\.$/, "");
}

/** Is the request for a preview host (the preview domain or any name under it)? */
export function isPreviewHost(headers: IncomingHttpHeaders, domain: string): boolean {
  const host = hostNameOf(headers);
  return host === domain || host.endsWith(`.${domain}`);
}

/**
 * The request's `Origin` against the server's own (the scheme-less `Host` the browser sent):
 * "absent" (no Origin, or `null`… which is treated as foreign), "same" or "foreign".
 */
export function originOf(headers: IncomingHttpHeaders): "absent" | "same" | "foreign" {
  const origin = headers.origin;
  if (origin === undefined) return "absent";
  const host = String(headers.host ?? "").trim().toLowerCase();
  try {
    const u = new URL(String(origin));
    return (u.protocol === "http:" || u.protocol === "https:") && host !== "" && u.host.toLowerCase() === host ? "same" : "foreign";
  } catch {
    return "foreign"; // "null" (sandboxed frames, file:) and garbage
  }
}

/** True when the browser says the request comes from another site (Sec-Fetch-Site). */
export function crossSite(headers: IncomingHttpHeaders): boolean {
  const site = headers["sec-fetch-site"];
  return site === "cross-site" || site === "same-site";
}

/** Every value of the `paddock_session` cookie in the request (normally zero or one). */
function cookieValues(headers: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const part of String(headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === UI_COOKIE) out.push(part.slice(eq + 1).trim());
  }
  return out;
}

/** Does the request carry the UI cookie at all (valid or not)? */
export function hasUiCookie(headers: IncomingHttpHeaders): boolean {
  return cookieValues(headers).length > 0;
}

/** Signing keys by control plane (derived once each: HKDF of the vault key). */
const keys = new WeakMap<ControlPlane, Buffer>();
function keyOf(cp: ControlPlane): Buffer {
  let k = keys.get(cp);
  if (!k) keys.set(cp, (k = cp.vault.deriveKey("ui-session")));
  return k;
}

const mac = (cp: ControlPlane, payload: string): Buffer => createHmac("sha256", keyOf(cp)).update(`paddock-ui-session.v1\0${payload}`).digest();

/** A signed UI session value for a principal's token, valid until `now + UI_SESSION_MS`. */
export function mintUiSession(cp: ControlPlane, principalId: string, tokenId: string, now = Date.now()): { value: string; expiresAt: number } {
  const expiresAt = now + UI_SESSION_MS;
  const payload = Buffer.from(JSON.stringify({ p: principalId, t: tokenId, e: expiresAt })).toString("base64url");
  return { value: `${payload}.${mac(cp, payload).toString("base64url")}`, expiresAt };
}

/** The (principal id, token id) a UI session value names, when its signature holds and it has not expired. */
function verifyValue(cp: ControlPlane, value: string, now: number): { p: string; t: string } | null {
  const dot = value.indexOf(".");
  if (dot <= 0 || value.length > 512) return null;
  const payload = value.slice(0, dot);
  const given = Buffer.from(value.slice(dot + 1), "base64url");
  const want = mac(cp, payload);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return null;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
  } catch {
    return null;
  }
  const { p, t, e } = (body ?? {}) as { p?: unknown; t?: unknown; e?: unknown };
  if (typeof p !== "string" || typeof t !== "string" || typeof e !== "number") return null;
  if (e <= now || e > now + UI_SESSION_MS) return null;
  return { p, t };
}

/**
 * The principal a request's UI cookie stands for, or null: no cookie, more than one (a cookie
 * planted from a sibling host must not be chosen over the real one), a bad signature, expired,
 * its token revoked, its principal disabled or gone, or a preview host. Checks nothing about
 * Origin or CSRF: auth.ts does, for API requests. The token's `lastUsedAt` moves as with a bearer.
 */
export async function principalFromUiCookie(cp: ControlPlane, headers: IncomingHttpHeaders): Promise<Principal | null> {
  if (isPreviewHost(headers, previewDomainOf(cp))) return null;
  const values = cookieValues(headers);
  if (values.length !== 1 || !values[0]) return null;
  const now = Date.now();
  const claim = verifyValue(cp, values[0], now);
  if (!claim) return null;
  const token = await cp.store.getToken(claim.t);
  if (!token || token.revokedAt !== null || token.principalId !== claim.p) return null;
  const principal = await cp.store.getPrincipal(claim.p);
  if (!principal || principal.disabledAt !== null) return null;
  if (token.lastUsedAt === null || now - Date.parse(token.lastUsedAt) > 60_000) await cp.store.touchToken(token.id, new Date(now).toISOString());
  return principal;
}

function cookieHeader(req: FastifyRequest, value: string, maxAgeS: number): string {
  // Host-only (no Domain), not readable by scripts, never sent on cross-site requests. Secure when
  // the request came over TLS (a plain-HTTP localhost server cannot set a Secure cookie).
  return `${UI_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${req.protocol === "https" ? "; Secure" : ""}`;
}

export interface UiOptions {
  /** The built UI (index.html, app.js, app.css); default dist/web of this checkout. */
  webRoot?: string | URL;
}

/** Serve the UI and its login/logout on `app`. */
export async function registerUi(app: FastifyInstance, cp: ControlPlane, opts: UiOptions = {}): Promise<void> {
  const root = opts.webRoot ?? new URL("../../dist/web/", import.meta.url);
  const files = new FileCache(root);
  const domain = previewDomainOf(cp);
  const notHere = async (req: FastifyRequest, reply: FastifyReply) => {
    // Preview hosts: as if the UI did not exist (the preview gateway answers those hosts).
    if (isPreviewHost(req.headers, domain)) {
      reply.callNotFound();
      return true;
    }
    return false;
  };
  const page = async (req: FastifyRequest, reply: FastifyReply) => {
    if (await notHere(req, reply)) return reply;
    return files.send(reply, "index.html", null);
  };
  app.get("/", page);
  app.get("/ui", page);
  app.get("/ui/*", page);
  app.get("/:asset", async (req, reply) => {
    if (await notHere(req, reply)) return reply;
    const name = (req.params as { asset?: string }).asset ?? "";
    const ext = name.slice(name.lastIndexOf("."));
    if (!ASSET_RE.test(name) || name === "index.html" || !(ext in CONTENT_TYPES)) {
      reply.callNotFound();
      return reply;
    }
    return files.send(reply, name, (req.query as { v?: string }).v ?? null);
  });

  await app.register(async (forms) => {
    // A plain HTML form posting the token works too (no JavaScript needed to log in).
    forms.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: 8192 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    });
    forms.post("/ui/login", async (req, reply) => {
      if (await notHere(req, reply)) return reply;
      refuseCrossSite(req);
      const form = !String(req.headers["content-type"] ?? "").includes("json");
      const token = (req.body as { token?: unknown } | null)?.token;
      const principal = await login(cp, req, typeof token === "string" ? token.trim() : "");
      const parts = parseToken(String(token).trim());
      const session = mintUiSession(cp, principal.id, parts?.id ?? "");
      reply.header("set-cookie", cookieHeader(req, session.value, UI_SESSION_MS / 1000)).header("cache-control", "no-store");
      if (form) return reply.code(303).header("location", "/ui/").send();
      return { principal, expiresAt: new Date(session.expiresAt).toISOString() };
    });
    forms.post("/ui/logout", async (req, reply) => {
      if (await notHere(req, reply)) return reply;
      refuseCrossSite(req);
      const who = await principalFromUiCookie(cp, req.headers);
      if (who) await cp.audit.append({ actor: who.name, actorKind: who.kind, action: "ui.logout", target: who.name, decision: "allowed" });
      reply.header("set-cookie", cookieHeader(req, "", 0)).header("cache-control", "no-store");
      return reply.code(204).send();
    });
  });
}

/** Login and logout only from the UI's own pages: a foreign Origin would be login CSRF. */
function refuseCrossSite(req: FastifyRequest): void {
  if (originOf(req.headers) === "foreign" || crossSite(req.headers)) {
    throw new PaddockError("forbidden", "log in from Paddock's own login page (this request came from another site)");
  }
}

/** Check the token, audit the attempt either way; people only (agents have no use for the UI). */
async function login(cp: ControlPlane, req: FastifyRequest, token: string): Promise<Principal> {
  const detail = { userAgent: String(req.headers["user-agent"] ?? "").slice(0, 200) };
  let principal: Principal;
  try {
    principal = await cp.identities.authenticate(token || undefined);
  } catch {
    await cp.audit.append({ actor: "anonymous", actorKind: "system", action: "ui.login", target: "-", decision: "denied", rule: "authentication", detail });
    throw new PaddockError("unauthorized", BAD_TOKEN);
  }
  if (principal.kind === "agent") {
    await cp.audit.append({ actor: principal.name, actorKind: "agent", action: "ui.login", target: principal.name, decision: "denied", rule: "agents do not use the web UI", detail });
    throw new PaddockError("forbidden", `${principal.name} is an agent: the web UI is for people. Log in with your own token.`);
  }
  await cp.audit.append({ actor: principal.name, actorKind: principal.kind, action: "ui.login", target: principal.name, decision: "allowed", detail });
  return principal;
}

/** The built files, read on demand and kept while their mtime and size do not change. */
class FileCache {
  private readonly entries = new Map<string, { mtimeMs: number; size: number; body: Buffer; etag: string; hash: string }>();

  constructor(private readonly root: string | URL) {}

  private async read(name: string) {
    const url = new URL(name, typeof this.root === "string" ? pathToFileURL(this.root.endsWith("/") ? this.root : `${this.root}/`) : this.root);
    let st;
    try {
      st = await stat(url);
    } catch {
      return null;
    }
    const cached = this.entries.get(name);
    if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached;
    const body = await readFile(url);
    const hash = createHash("sha256").update(body).digest("base64url");
    const entry = { mtimeMs: st.mtimeMs, size: st.size, body, hash, etag: `"${hash.slice(0, 27)}"` };
    this.entries.set(name, entry);
    return entry;
  }

  /** Send a file with its type, the UI's security headers and caching: immutable when `version` is its hash. */
  async send(reply: FastifyReply, name: string, version: string | null): Promise<FastifyReply> {
    const f = await this.read(name);
    if (!f) {
      if (name === "index.html") throw new PaddockError("unavailable", "the web UI is not built: run `node scripts/build-web.mjs` (make setup does it)");
      reply.callNotFound();
      return reply;
    }
    const immutable = version !== null && f.hash.startsWith(version) && version.length >= 8;
    reply.headers(SECURITY_HEADERS).header("content-type", CONTENT_TYPES[name.slice(name.lastIndexOf("."))] ?? "application/octet-stream");
    reply.header("cache-control", immutable ? "public, max-age=31536000, immutable" : "no-cache").header("etag", f.etag);
    if (reply.request.headers["if-none-match"] === f.etag) return reply.code(304).send();
    return reply.send(f.body);
  }
}
