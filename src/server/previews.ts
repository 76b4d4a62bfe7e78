/**
 * The preview gateway (docs/previews.md): requests whose Host is under the preview domain never
 * reach the API or the UI. `<port>-<id>.<domain>` is proxied to that port of that preview's
 * session (from the gateway address, the only source its sandbox accepts), once the visitor is
 * admitted: a `paddock_preview` cookie signed for this preview, or a public preview. A URL token
 * is exchanged for the cookie by a redirect that drops it from the address bar; a logged-in UI user
 * goes through `/ui/preview-auth` on the UI's origin for a one-time code instead. Every request
 * checks the preview's row again, so a revocation or expiry refuses the very next request, on any
 * connection. HTTP keep-alive, streamed bodies, server-sent events and WebSockets pass through.
 *
 * Nothing here may throw into node's HTTP server: every failure is answered (a small HTML page)
 * or, once an answer has started, the connection is cut.
 */
import { Agent, request as httpRequest, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { ControlPlane, PreviewTarget } from "../control/index.ts";
import { PaddockError, type Preview, type Principal } from "../core/index.ts";
import { drainBody, type ErrorReporter } from "./errors.ts";

export const TOKEN_PARAM = "paddock_preview";
export const COOKIE_PREFIX = "paddock_preview_";
/** The path on a preview's origin that turns a one-time code into the preview cookie. */
export const AUTH_PATH = "/__paddock/auth";
/** The path on the UI's origin that mints that code for a logged-in user with `read`. */
export const PREVIEW_AUTH_PATH = "/ui/preview-auth";
/** Cookies of Paddock's own never reach an app (the UI's, in case a browser ever sent one). */
const OWN_COOKIE = /^(paddock_preview|paddock_session)/;
/** Hop-by-hop headers (RFC 9110 7.6.1) and what a proxy must not pass on. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"]);

export interface PreviewGatewayOptions {
  /**
   * The principal a UI session cookie names (src/server/ui.ts `principalFromUiCookie`), or null.
   * Without it, visitors are admitted by token or a public preview only.
   */
  uiPrincipal?: (headers: IncomingHttpHeaders) => Promise<Principal | null>;
}

/**
 * Put the preview gateway in front of the API on `server`: its `request` and `upgrade` listeners
 * (fastify's, the exec stream's) keep everything that is not for a preview host. Call after they
 * are attached. Returns a function that cuts every preview connection (for shutdown).
 */
export function attachPreviewGateway(server: HttpServer, cp: ControlPlane, errors: ErrorReporter, opts: PreviewGatewayOptions = {}): () => Promise<void> {
  const gw = new PreviewGateway(cp, errors, opts);
  const apiRequest = server.listeners("request") as ((req: IncomingMessage, res: ServerResponse) => void)[];
  const apiUpgrade = server.listeners("upgrade") as ((req: IncomingMessage, socket: Duplex, head: Buffer) => void)[];
  server.removeAllListeners("request");
  server.removeAllListeners("upgrade");
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (cp.previews.isPreviewHost(req.headers.host)) return void gw.request(req, res);
    if (pathOf(req.url) === PREVIEW_AUTH_PATH) return void gw.previewAuth(req, res);
    for (const l of apiRequest) l.call(server, req, res);
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (cp.previews.isPreviewHost(req.headers.host)) return void gw.upgrade(req, socket, head);
    for (const l of apiUpgrade) l.call(server, req, socket, head);
  });
  return () => gw.close();
}

class PreviewGateway {
  /** One keep-alive agent per preview and session: connections are reused, never across sandboxes. */
  readonly #agents = new Map<string, Agent>();
  /** The fast path's connections to the apps, by the same key. */
  readonly #pools = new Map<string, UpstreamPool>();
  /** Connections in flight (proxied responses, piped WebSockets): cut on close. */
  readonly #open = new Set<Duplex>();

  constructor(
    private readonly cp: ControlPlane,
    private readonly errors: ErrorReporter,
    private readonly opts: PreviewGatewayOptions,
  ) {}

  async request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.#request(req, res);
    } catch (err) {
      const e = this.errors.describe(err, "preview");
      if (!res.headersSent) page(res, 500, "Preview error", `${e.message}${e.errorId ? ` (error id ${e.errorId})` : ""}`);
      else res.destroy();
    }
  }

  async #request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const found = await this.#preview(req);
    if ("status" in found) {
      await drainBody(req);
      return page(res, found.status, found.title, found.message);
    }
    const { preview: p, url } = found;
    const browser = wantsHtml(req);
    // The token in the URL: exchanged for the cookie, then gone from the address bar.
    if (url.searchParams.has(TOKEN_PARAM)) {
      await drainBody(req);
      const token = url.searchParams.get(TOKEN_PARAM) ?? "";
      url.searchParams.delete(TOKEN_PARAM);
      if (!this.cp.previews.tokenMatches(p, token, await this.cp.previews.tokenHashOf(p.id))) {
        await this.#refused(p, "token", "the token in the URL is not this preview's");
        return page(res, 403, "Not allowed", "This preview link's token is not valid. Ask for a new link.");
      }
      await this.cp.audit.append({ actor: "anonymous", actorKind: "system", action: "preview.access", target: p.id, environment: p.environment, sessionId: p.sessionId, decision: "allowed", rule: "token", detail: {} });
      return this.#admit(res, p, url.pathname + url.search);
    }
    if (url.pathname === AUTH_PATH) {
      await drainBody(req);
      const code = url.searchParams.get("code") ?? "";
      if (!this.cp.previews.takeCode(p.id, code)) {
        await this.#refused(p, "code", "a missing, used, expired or foreign one-time code");
        return page(res, 403, "Not allowed", "This sign-in link has expired or was already used. Open the preview again.");
      }
      return this.#admit(res, p, safeNext(url.searchParams.get("next")));
    }
    if (!p.public && !this.#hasCookie(req, p)) {
      await drainBody(req);
      if (browser && req.method === "GET" && this.opts.uiPrincipal) {
        const to = `${this.cp.previews.publicUrl}${PREVIEW_AUTH_PATH}?${new URLSearchParams({ preview: p.id, next: url.pathname + url.search })}`;
        res.writeHead(302, { location: to, "referrer-policy": "no-referrer", "cache-control": "no-store", "content-length": 0 }).end();
        return;
      }
      await this.#refused(p, "authentication", "no token, cookie or login");
      return page(res, 401, "Sign in needed", "This preview needs its link (with its token), or a Paddock login with read access to its environment.");
    }
    const target = await this.#target(p, req, res, browser);
    if (!target) return;
    this.#forward(req, res, p, target, url.pathname + url.search);
  }

  /** The preview a request's Host names, live, or what to answer instead. */
  async #preview(req: IncomingMessage): Promise<{ preview: Preview; url: URL } | { status: number; title: string; message: string }> {
    const h = this.cp.previews.parseHost(req.headers.host ?? "");
    if (!h) return { status: 404, title: "No such preview", message: "This host is not a preview. Preview hosts serve no API and no UI." };
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://preview.invalid");
      if (!(req.url ?? "").startsWith("/")) return { status: 400, title: "Bad request", message: "Send the path only (origin-form)." };
    } catch {
      return { status: 400, title: "Bad request", message: "The request target is not a path." };
    }
    const p = await this.cp.store.getPreview(h.id);
    if (!p || p.port !== h.port) {
      this.#dropAgents(h.id);
      return { status: 404, title: "No such preview", message: "There is no preview at this address." };
    }
    const gone = this.cp.previews.gone(p);
    if (gone) {
      this.#dropAgents(p.id);
      await this.#refused(p, gone, `the preview was ${gone}`);
      return { status: 410, title: `Preview ${gone}`, message: gone === "revoked" ? "This preview was revoked." : "This preview has expired." };
    }
    return { preview: p, url };
  }

  /** Set the preview's cookie (host-only, on this preview's origin) and send the visitor on, without the token. */
  #admit(res: ServerResponse, p: Preview, next: string): void {
    const maxAge = Math.max(0, Math.floor((Date.parse(p.expiresAt) - Date.now()) / 1000));
    res.writeHead(302, {
      location: next,
      "set-cookie": `${COOKIE_PREFIX}${p.id}=${this.cp.previews.cookieValue(p)}; Max-Age=${maxAge}; Path=/; HttpOnly; SameSite=Lax`,
      "referrer-policy": "no-referrer",
      "cache-control": "no-store",
      "content-length": 0,
    });
    res.end();
  }

  #hasCookie(req: IncomingMessage, p: Preview): boolean {
    const v = cookiesOf(req.headers.cookie).get(`${COOKIE_PREFIX}${p.id}`);
    return v !== undefined && this.cp.previews.cookieValid(p, v);
  }

  /**
   * Where to send the request: the running session's address, or after a wake. A browser is not
   * held while its session wakes: it gets a "starting" page that reloads itself.
   */
  async #target(p: Preview, req: IncomingMessage, res: ServerResponse, browser: boolean): Promise<PreviewTarget | null> {
    const running = this.cp.previews.waking(p.id) ? null : await this.cp.previews.target(p);
    if (running) return running;
    if (!p.snapshotId && !this.cp.previews.waking(p.id)) {
      await drainBody(req);
      page(res, 502, "Session ended", "The session behind this preview has ended and cannot be woken (it left no snapshot).");
      return null;
    }
    const wake = this.cp.previews.wake(p.id, "anonymous");
    if (browser) {
      wake.catch(() => undefined);
      await drainBody(req);
      startingPage(res);
      return null;
    }
    try {
      return await wake;
    } catch (err) {
      await drainBody(req);
      const message = err instanceof PaddockError ? err.message : "waking the session failed";
      page(res, 503, "Could not wake the session", message);
      return null;
    }
  }

  #forward(req: IncomingMessage, res: ServerResponse, p: Preview, t: PreviewTarget, path: string): void {
    // A pipelined request whose turn has not come has no socket yet: it takes the buffered path.
    if (bodiless(req) && res.socket) return this.#relay(req, res, p, t, path);
    const up = httpRequest({
      host: t.host,
      port: t.port,
      localAddress: t.localAddress,
      agent: this.#agent(p.id, t),
      method: req.method ?? "GET",
      path,
      headers: requestHeaders(req, false),
      setHost: false,
    });
    const socket = res.socket;
    if (socket) this.#track(socket);
    up.on("response", (ur: IncomingMessage) => {
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage ?? "", responseHeaders(ur.rawHeaders));
      // Server-sent events and other streams: the head goes out now, each chunk as it comes.
      res.flushHeaders();
      ur.pipe(res);
      ur.on("error", () => res.destroy());
    });
    up.on("error", (err: NodeJS.ErrnoException) => {
      if (!res.headersSent) page(res, 502, "The app is not answering", `Nothing accepted the connection on port ${t.port} of the session (${err.code ?? "error"}). Is the app running and listening on 0.0.0.0?`);
      else res.destroy();
    });
    // The visitor went away before the answer finished: the upstream request goes too.
    res.on("close", () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  /**
   * The fast path for a request without a body (GET, HEAD, …) from an HTTP/1.1 visitor: our own
   * HTTP/1.1 exchange on a pooled connection to the app. Its answer's head is parsed here and sent
   * through `res`; the body's bytes (Content-Length counted, chunked passed on as it came, its
   * chunks tracked only to find its end) go from the upstream socket's read buffer straight to the
   * visitor's socket, with no decoding, re-encoding or copy in between. The upstream reads again
   * only once the visitor's socket took the bytes (backpressure; the read buffer is reused).
   */
  #relay(req: IncomingMessage, res: ServerResponse, p: Preview, t: PreviewTarget, path: string): void {
    const pool = this.#pool(p.id, t);
    const client = res.socket;
    if (!client) return void res.destroy();
    this.#track(client);
    req.resume();
    const head = requestHead(req, path);
    let current: Upstream | null = null;
    const attempt = (retry: boolean): void => {
      const up = pool.take();
      current = up;
      // Reading the answer's head (copied: the read buffer is reused).
      let pending: Buffer | null = null;
      let body: ((chunk: Buffer) => boolean) | null = null;
      let done = false;
      let paused = false;
      let releaseWhenFlushed = false;
      let reusable = false;
      const finish = (keep: boolean): void => {
        done = true;
        current = null;
        reusable = keep;
        up.idle();
        if (!res.writableEnded) res.end();
        // The read buffer goes back to the pool only once the visitor's socket holds no part of it.
        if (!keep || client.writableLength === 0) release();
        else releaseWhenFlushed = true;
      };
      const release = (): void => {
        releaseWhenFlushed = false;
        if (reusable && !client.destroyed) pool.release(up);
        else up.destroy();
      };
      const flushed = (): void => {
        if (client.writableLength !== 0) return;
        if (releaseWhenFlushed) return release();
        if (paused && !done) {
          paused = false;
          up.socket.resume();
        }
      };
      /** Bytes of the body to the visitor; false: stop reading until they are flushed. */
      const pass = (chunk: Buffer): boolean => {
        if (!chunk.length) return true;
        client.write(chunk, flushed);
        if (client.writableLength === 0) return true;
        paused = true;
        return false;
      };
      const fail = (err: NodeJS.ErrnoException | null): void => {
        if (done) return;
        done = true;
        current = null;
        up.destroy();
        if (retry && up.reused && pending === null && body === null && !res.headersSent) return attempt(false);
        if (!res.headersSent) page(res, 502, "The app is not answering", `Nothing accepted the connection on port ${t.port} of the session (${err?.code ?? "closed"}). Is the app running and listening on 0.0.0.0?`);
        else res.destroy();
      };
      const onHead = (chunk: Buffer): boolean => {
        const all: Buffer = pending ? Buffer.concat([pending, chunk]) : chunk;
        const end = all.indexOf("\r\n\r\n");
        if (end < 0) {
          if (all.length > 65536) return fail(null), false;
          pending = pending ? all : Buffer.from(chunk);
          return true;
        }
        pending = null;
        const h = parseHead(all.subarray(0, end).toString("latin1"));
        const rest = all.subarray(end + 4);
        if (!h || h.status === 101) return fail(null), false;
        if (h.status < 200) return rest.length ? onHead(rest) : true; // 1xx: not passed on
        const headers = responseHeaders(h.raw);
        const keep = h.version === "1.1" && !/(^|,)\s*close\s*(,|$)/i.test(h.connection);
        if (req.method === "HEAD" || h.status === 204 || h.status === 304) {
          res.writeHead(h.status, h.message, headers);
          finish(keep && rest.length === 0);
          return false;
        }
        if (h.te !== null || h.length === null) {
          if (h.te !== null && /(^|,)\s*chunked\s*$/i.test(h.te)) {
            // Chunked: passed on unchanged, its end found by following the chunk sizes.
            headers.push("Transfer-Encoding", "chunked");
            res.writeHead(h.status, h.message, headers);
            res.flushHeaders();
            res.chunkedEncoding = false; // the app's chunks, terminator included, are the body
            const chunks = new ChunkedEnd();
            body = (c: Buffer): boolean => {
              const at = chunks.scan(c);
              if (at === -2) return fail(null), false;
              if (at === -1) return pass(c);
              pass(c.subarray(0, at));
              finish(keep && at === c.length);
              return false;
            };
          } else {
            // Delimited by the app closing: re-chunked by node for the visitor (rare; copied).
            res.writeHead(h.status, h.message, headers);
            res.flushHeaders();
            res.on("drain", () => {
              if (!done) up.socket.resume();
            });
            body = (c: Buffer): boolean => res.write(Buffer.from(c));
            up.ended = () => finish(false);
          }
        } else {
          let left = h.length;
          res.writeHead(h.status, h.message, headers);
          if (rest.length >= left) {
            // The whole (small) body came with the head: one write with the head, copied.
            res.end(Buffer.from(rest.subarray(0, left)));
            finish(keep && rest.length === left);
            return false;
          }
          res.flushHeaders();
          body = (c: Buffer): boolean => {
            if (c.length < left) {
              left -= c.length;
              return pass(c);
            }
            pass(c.subarray(0, left));
            finish(keep && c.length === left);
            return false;
          };
        }
        return rest.length ? body(rest) : true;
      };
      up.sink = (chunk: Buffer): boolean => {
        try {
          return body ? body(chunk) : onHead(chunk);
        } catch (err) {
          fail(err as NodeJS.ErrnoException); // e.g. a header node will not send on
          return false;
        }
      };
      up.failed = fail;
      up.ended = () => fail(null);
      up.send(head);
    };
    // The visitor went away before the answer finished: the upstream connection goes too.
    res.on("close", () => {
      if (!res.writableFinished) current?.destroy();
    });
    attempt(true);
  }

  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on("error", () => socket.destroy());
    try {
      const found = await this.#preview(req);
      if ("status" in found) return refuse(socket, found.status, found.message);
      const { preview: p, url } = found;
      let admitted = p.public || this.#hasCookie(req, p);
      // A WebSocket client cannot follow the cookie redirect: its token counts here, and is dropped.
      if (url.searchParams.has(TOKEN_PARAM)) {
        admitted ||= this.cp.previews.tokenMatches(p, url.searchParams.get(TOKEN_PARAM) ?? "", await this.cp.previews.tokenHashOf(p.id));
        url.searchParams.delete(TOKEN_PARAM);
      }
      if (!admitted) {
        await this.#refused(p, "authentication", "WebSocket without token, cookie or login");
        return refuse(socket, 401, "This preview needs its token or cookie.");
      }
      let t = this.cp.previews.waking(p.id) ? null : await this.cp.previews.target(p);
      if (!t) {
        if (!p.snapshotId && !this.cp.previews.waking(p.id)) return refuse(socket, 502, "The session behind this preview has ended.");
        t = await this.cp.previews.wake(p.id, "anonymous");
      }
      this.#pipeUpgrade(req, socket, head, t, url.pathname + url.search);
    } catch (err) {
      refuse(socket, 503, this.errors.describe(err, "preview").message);
    }
  }

  #pipeUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, t: PreviewTarget, path: string): void {
    const up: Socket = connect({ host: t.host, port: t.port, localAddress: t.localAddress });
    this.#track(socket);
    this.#track(up);
    up.setNoDelay(true);
    const end = () => {
      up.destroy();
      socket.destroy();
    };
    up.on("error", () => {
      if (socket.writable && up.bytesRead === 0) refuse(socket, 502, `Nothing accepted the connection on port ${t.port} of the session.`);
      else end();
    });
    up.on("connect", () => {
      const headers = requestHeaders(req, true);
      let text = `${req.method ?? "GET"} ${path} HTTP/1.1\r\n`;
      for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
      up.write(text + "\r\n");
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on("close", () => socket.destroy());
    socket.on("close", () => up.destroy());
  }

  /**
   * GET /ui/preview-auth?preview=ID&next=PATH on the UI's origin: a logged-in user with `read` on
   * the preview's environment gets a one-time code, carried to the preview's origin in a redirect.
   */
  async previewAuth(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await drainBody(req);
      if (req.method !== "GET") return page(res, 405, "Method not allowed", "Use GET.");
      const url = new URL(req.url ?? "/", "http://ui.invalid");
      const principal = this.opts.uiPrincipal ? await this.opts.uiPrincipal(req.headers) : null;
      if (!principal) {
        // The UI cookie is SameSite=Strict: a browser does not send it on a navigation that came
        // through a redirect from the (cross-site) preview host. One reload from this origin's own
        // page is a same-site navigation, which carries it; only then is the visitor refused.
        if (!url.searchParams.has("same-site")) {
          url.searchParams.set("same-site", "1");
          return page(res, 200, "Signing in…", "Checking your Paddock login…", {}, `<meta http-equiv="refresh" content="0;url=${escapeHtml(url.pathname + url.search)}">`);
        }
        return page(res, 401, "Sign in needed", `Sign in to Paddock at ${this.cp.previews.publicUrl}/ui/ first, then open the preview again.`);
      }
      const id = url.searchParams.get("preview") ?? "";
      const p = await this.cp.previews.get(id).catch(() => null);
      if (!p) return page(res, 404, "No such preview", "There is no such preview.");
      const gone = this.cp.previews.gone(p);
      if (gone) return page(res, 410, `Preview ${gone}`, `This preview was ${gone}.`);
      const session = await this.cp.store.getSession(p.sessionId);
      const perms = await this.cp.access.permissions(principal, p.environment, session);
      const allowed = perms.has("read");
      await this.cp.audit.append({
        actor: principal.name, actorKind: principal.kind, onBehalfOf: principal.kind === "agent" ? (session?.startedBy ?? null) : null, action: "preview.access", target: p.id,
        environment: p.environment, sessionId: p.sessionId, decision: allowed ? "allowed" : "denied", rule: "preview needs read", detail: { via: "ui" },
      });
      if (!allowed) return page(res, 403, "Not allowed", `Viewing this preview needs read on environment ${p.environment}.`);
      const code = this.cp.previews.mintCode(p.id);
      const to = `http://${this.cp.previews.hostOf(p)}${AUTH_PATH}?${new URLSearchParams({ code, next: safeNext(url.searchParams.get("next")) })}`;
      res.writeHead(302, { location: to, "referrer-policy": "no-referrer", "cache-control": "no-store", "content-length": 0 }).end();
    } catch (err) {
      const e = this.errors.describe(err, "previewAuth");
      if (!res.headersSent) page(res, 500, "Error", e.message);
      else res.destroy();
    }
  }

  async #refused(p: Preview, rule: string, reason: string): Promise<void> {
    await this.cp.audit.append({ actor: "anonymous", actorKind: "system", action: "preview.access", target: p.id, environment: p.environment, sessionId: p.sessionId, decision: "denied", rule, detail: { reason } });
  }

  #agent(id: string, t: PreviewTarget): Agent {
    this.#dropOthers(id, t);
    const key = `${id}|${t.sessionId}`;
    let a = this.#agents.get(key);
    if (!a) {
      a = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 32, timeout: 60_000 });
      this.#agents.set(key, a);
    }
    return a;
  }

  #pool(id: string, t: PreviewTarget): UpstreamPool {
    this.#dropOthers(id, t);
    const key = `${id}|${t.sessionId}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new UpstreamPool(t);
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** The woken session replaces the old one: the old one's connections go. */
  #dropOthers(id: string, t: PreviewTarget): void {
    const key = `${id}|${t.sessionId}`;
    if (this.#agents.has(key) || this.#pools.has(key)) return;
    this.#dropAgents(id);
  }

  #dropAgents(id: string): void {
    for (const [key, a] of this.#agents) {
      if (key.startsWith(`${id}|`)) {
        a.destroy();
        this.#agents.delete(key);
      }
    }
    for (const [key, pool] of this.#pools) {
      if (key.startsWith(`${id}|`)) {
        pool.destroy();
        this.#pools.delete(key);
      }
    }
  }

  #track(s: Duplex): void {
    if (this.#open.has(s)) return; // a keep-alive connection's next request
    this.#open.add(s);
    s.once("close", () => this.#open.delete(s));
  }

  async close(): Promise<void> {
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
    for (const pool of this.#pools.values()) pool.destroy();
    this.#pools.clear();
    for (const s of this.#open) s.destroy();
    this.#open.clear();
  }
}

/** A header name (RFC 9110 5.6.2 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Read size of a connection to an app: one buffer per connection, reused for every read. */
const READ_BUFFER = 1024 * 1024;
/** Idle connections kept per preview's session, and how long. */
const MAX_IDLE = 32;
const IDLE_MS = 60_000;

/** One keep-alive connection to an app, reading into its own buffer (net's `onread`). */
class Upstream {
  readonly socket: Socket;
  /** Whether it served an answer before (it may have been closed by the app meanwhile). */
  reused = false;
  /** Where read bytes go; false pauses reading (resumed by `socket.resume()`). */
  sink: ((chunk: Buffer) => boolean) | null = null;
  failed: ((err: NodeJS.ErrnoException | null) => void) | null = null;
  ended: (() => void) | null = null;

  constructor(t: PreviewTarget, onGone: (u: Upstream) => void) {
    this.socket = connect({
      host: t.host,
      port: t.port,
      localAddress: t.localAddress,
      onread: { buffer: Buffer.allocUnsafe(READ_BUFFER), callback: (n: number, buf: Uint8Array) => this.#read(buf, n) },
    });
    this.socket.setNoDelay(true);
    this.socket.on("error", (err: NodeJS.ErrnoException) => {
      const f = this.failed;
      this.idle();
      this.socket.destroy();
      f?.(err);
    });
    this.socket.on("end", () => {
      const e = this.ended;
      this.idle();
      this.socket.destroy();
      e?.();
    });
    this.socket.on("close", () => {
      const f = this.failed;
      this.idle();
      onGone(this);
      f?.(null);
    });
    this.socket.on("timeout", () => this.socket.destroy());
  }

  #read(buf: Uint8Array, n: number): boolean {
    const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
    if (this.sink) return this.sink(chunk);
    this.socket.destroy(); // bytes from an idle connection: nothing asked for them
    return false;
  }

  send(head: string): void {
    this.socket.setTimeout(0);
    this.socket.write(head, "latin1");
    this.socket.resume();
  }

  idle(): void {
    this.sink = null;
    this.failed = null;
    this.ended = null;
  }

  usable(): boolean {
    return !this.socket.destroyed && this.socket.readable && this.socket.writable;
  }

  destroy(): void {
    this.idle();
    this.socket.destroy();
  }
}

class UpstreamPool {
  readonly #idle: Upstream[] = [];
  readonly #all = new Set<Upstream>();
  #closed = false;

  constructor(private readonly t: PreviewTarget) {}

  take(): Upstream {
    for (let u = this.#idle.pop(); u; u = this.#idle.pop()) {
      if (u.usable()) {
        u.reused = true;
        return u;
      }
      u.destroy();
    }
    const u = new Upstream(this.t, (gone) => {
      this.#all.delete(gone);
      const i = this.#idle.indexOf(gone);
      if (i >= 0) this.#idle.splice(i, 1);
    });
    this.#all.add(u);
    if (this.#closed) u.destroy();
    return u;
  }

  release(u: Upstream): void {
    if (this.#closed || this.#idle.length >= MAX_IDLE || !u.usable()) return u.destroy();
    u.idle();
    u.socket.setTimeout(IDLE_MS);
    u.socket.resume(); // an idle connection still reads: the app closing it is noticed
    this.#idle.push(u);
  }

  destroy(): void {
    this.#closed = true;
    for (const u of this.#all) u.destroy();
    this.#all.clear();
    this.#idle.length = 0;
  }
}

/** Follows a chunked body's framing to find where it ends. */
class ChunkedEnd {
  #state: "size" | "ext" | "sizeLf" | "data" | "dataCr" | "dataLf" | "trailer" | "trailerLine" | "trailerLf" | "lastLf" = "size";
  #size = 0;
  #digits = 0;
  #left = 0;

  /** The index just after the body's last byte in `b`, -1 if the body goes on, -2 if it is malformed. */
  scan(b: Buffer): number {
    let i = 0;
    while (i < b.length) {
      if (this.#state === "data") {
        const n = Math.min(this.#left, b.length - i);
        this.#left -= n;
        i += n;
        if (this.#left === 0) this.#state = "dataCr";
        continue;
      }
      const c = b[i++] ?? 0;
      switch (this.#state) {
        case "size": {
          const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (v >= 0) {
            if (++this.#digits > 12) return -2;
            this.#size = this.#size * 16 + v;
          } else if (this.#digits === 0) return -2;
          else if (c === 13) this.#state = "sizeLf";
          else if (c === 59 || c === 32 || c === 9) this.#state = "ext";
          else return -2;
          break;
        }
        case "ext":
          if (c === 13) this.#state = "sizeLf";
          break;
        case "sizeLf":
          if (c !== 10) return -2;
          if (this.#size === 0) this.#state = "trailer";
          else {
            this.#left = this.#size;
            this.#state = "data";
          }
          this.#size = 0;
          this.#digits = 0;
          break;
        case "dataCr":
          if (c !== 13) return -2;
          this.#state = "dataLf";
          break;
        case "dataLf":
          if (c !== 10) return -2;
          this.#state = "size";
          break;
        case "trailer":
          this.#state = c === 13 ? "lastLf" : "trailerLine";
          break;
        case "trailerLine":
          if (c === 13) this.#state = "trailerLf";
          break;
        case "trailerLf":
          if (c !== 10) return -2;
          this.#state = "trailer";
          break;
        case "lastLf":
          return c === 10 ? i : -2;
      }
    }
    return -1;
  }
}

interface ResponseHead {
  version: string;
  status: number;
  message: string;
  raw: string[];
  connection: string;
  te: string | null;
  length: number | null;
}

/** An app's response head (status line and header lines, latin1), or null if it is not one. */
function parseHead(text: string): ResponseHead | null {
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
  if (!m) return null;
  const head: ResponseHead = { version: `1.${m[1]}`, status: Number(m[2]), message: m[3] ?? "", raw: [], connection: "", te: null, length: null };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? "";
    const colon = line.indexOf(":");
    if (colon <= 0) return null;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return null; // also no whitespace before the colon (RFC 9112 5.1)
    const value = line.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (lower === "connection") head.connection += `${head.connection ? "," : ""}${value}`;
    else if (lower === "transfer-encoding") head.te = head.te === null ? value : `${head.te}, ${value}`;
    else if (lower === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (head.length !== null && head.length !== Number(value))) return null;
      head.length = Number(value);
    }
    head.raw.push(name, value);
  }
  return head;
}

/** A visitor's request that the fast path carries: HTTP/1.1, no body. */
function bodiless(req: IncomingMessage): boolean {
  if (req.httpVersion !== "1.1" || req.method === "CONNECT" || req.headers["transfer-encoding"] !== undefined || req.headers.expect !== undefined) return false;
  const length = req.headers["content-length"];
  return length === undefined || length === "0";
}

/** The request line and headers the app gets (as `requestHeaders` makes them). */
function requestHead(req: IncomingMessage, path: string): string {
  const headers = requestHeaders(req, false);
  let text = `${req.method ?? "GET"} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return text + "\r\n";
}

function pathOf(url: string | undefined): string {
  return (url ?? "/").split("?")[0] ?? "/";
}

function wantsHtml(req: IncomingMessage): boolean {
  return String(req.headers.accept ?? "").includes("text/html");
}

/** A path on the same origin to go on to: anything else (another origin, `//host`) becomes `/`. */
function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\") || /[\r\n]/.test(next)) return "/";
  return next;
}

function cookiesOf(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}

/**
 * The visitor's headers as the app gets them (flat name/value list): hop-by-hop ones dropped (kept
 * for an upgrade, which needs Connection and Upgrade), Paddock's cookies removed, and
 * X-Forwarded-For/-Host/-Proto set by us (never the visitor's own).
 */
function requestHeaders(req: IncomingMessage, upgrade: boolean): string[] {
  const out: string[] = [];
  const raw = req.rawHeaders;
  const listed = new Set(String(req.headers.connection ?? "").toLowerCase().split(",").map((s) => s.trim()));
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? "";
    const value = raw[i + 1] ?? "";
    const lower = name.toLowerCase();
    if (lower.startsWith("x-forwarded-") || lower === "forwarded") continue;
    if (!upgrade && (HOP_BY_HOP.has(lower) || listed.has(lower))) continue;
    if (upgrade && (lower === "proxy-connection" || lower === "proxy-authorization" || lower === "keep-alive")) continue;
    if (lower === "cookie") {
      const kept = value.split(";").map((c) => c.trim()).filter((c) => c && !OWN_COOKIE.test(c));
      if (kept.length) out.push(name, kept.join("; "));
      continue;
    }
    out.push(name, value);
  }
  out.push("X-Forwarded-For", req.socket.remoteAddress ?? "", "X-Forwarded-Host", req.headers.host ?? "", "X-Forwarded-Proto", "http");
  return out;
}

/** The app's response headers without hop-by-hop ones, and without cookies in Paddock's names. */
function responseHeaders(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? "";
    const value = raw[i + 1] ?? "";
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    if (lower === "set-cookie" && OWN_COOKIE.test(value.trim())) continue;
    // The app's own caching is replaced below.
    if (lower === "cache-control" || lower === "expires" || lower === "pragma") continue;
    out.push(name, value);
  }
  // A browser may keep the app's pages, but must ask the gateway again before every use (a 304
  // costs little): otherwise a revoked or expired preview would go on showing what it cached.
  out.push("Cache-Control", "private, no-cache");
  return out;
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The gateway's own answers: a small HTML page, never cached, never leaking a Referer. */
function page(res: ServerResponse, status: number, title: string, message: string, extra: Record<string, string> = {}, headHtml = ""): void {
  const body = `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>${headHtml}</head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>\n`;
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-paddock-preview": "gateway",
    ...extra,
  });
  res.end(body);
}

/** What a browser sees while the session wakes: 503, try again in a second. */
function startingPage(res: ServerResponse): void {
  page(res, 503, "Starting…", "The session behind this preview is starting; this page reloads by itself.", { "retry-after": "1" }, '<meta http-equiv="refresh" content="1">');
}

/** Answer an upgrade we will not complete, and close. */
function refuse(socket: Duplex, status: number, message: string): void {
  if (!socket.writable) return void socket.destroy();
  const body = `${message}\n`;
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
