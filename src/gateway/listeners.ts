/**
 * The gateway's TCP listeners: the explicit proxy (absolute-form HTTP and CONNECT), transparent
 * HTTP (sandbox TCP 80 DNATed here) and transparent TLS (TCP 443). TLS is terminated with a leaf
 * from the session's CA for the SNI the client sends, and the decrypted stream is handed to Node's
 * own HTTP parser (an internal http.Server), so inner requests are parsed, judged and re-framed one
 * by one; raw bytes are never relayed. Every client connection is counted against its session's
 * cap and timed by a Deadlines (deadlines.ts) from accept to close.
 */
import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { canonicalHost, sourceAddress } from "./addresses.ts";
import { Deadlines, type Expired } from "./deadlines.ts";
import { parseAuthority } from "./framing.ts";
import { handleRequest, type Conn, type Deps } from "./forward.ts";
import { decideHost } from "./policy.ts";
import { draft, finish } from "./records.ts";
import type { Session } from "./sessions.ts";
import { createRemoteProxy, type RemoteHooks } from "./remote-proxy.ts";

export interface Listeners {
  proxy: http.Server;
  http: http.Server;
  https: net.Server;
  /**
   * The explicit proxy for remote sandboxes (remote-proxy.ts), fed decrypted connections by
   * remote-listener.ts; null unless the gateway has a remote listener.
   */
  remote: http.Server | null;
}

function sessionOf(deps: Deps, socket: net.Socket | Duplex): Session | null {
  return deps.sessions.bySourceAddress(sourceAddress((socket as net.Socket).remoteAddress));
}

function track(session: Session | null, socket: net.Socket): void {
  if (!session) return;
  session.sockets.add(socket);
  socket.once("close", () => session.sockets.delete(socket));
}

const TIMEOUT_408 = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\nX-Paddock-Rule: gateway.limits.headers-timeout\r\n\r\n";

interface Client {
  c: ClientState;
  dl: Deadlines;
}

/** What the deadline handler of one client connection needs to know about it. */
interface ClientState {
  session: Session | null;
  raw: net.Socket;
  /** The TLS socket once TLS is being terminated; the HTTP parser reads from it. */
  tls?: tls.TLSSocket;
  host: string;
  port: number;
  /** The handshake's outcome has been recorded (a timeout or a failure, never both). */
  settled: boolean;
}

export function createListeners(deps: Deps, remoteHooks?: RemoteHooks): Listeners {
  const { limits } = deps;
  const conns = new WeakMap<net.Socket, Conn>();
  /** Keyed by the socket each HTTP parser reads from (raw TCP, or the TLS socket over it). */
  const clients = new WeakMap<Duplex, Client>();
  // Node's own header/request/keep-alive timers are off: they run only for connections a listening
  // server tracks (never for the TLS sockets handed to `inner`). Deadlines time every listener alike.
  const serverOptions: http.ServerOptions = { requireHostHeader: false, insecureHTTPParser: false, headersTimeout: 0, requestTimeout: 0, keepAliveTimeout: 0 };

  /** A refusal the sandbox can repeat at will: recorded once per burst (limits.ts). */
  const burst = (session: Session, method: string, host: string, port: number, rule: string, reason: string): void => {
    session.usage.bursts.note(finish(draft(session.spec.id, method, host, port, ""), { status: 0, decision: "denied", rule, reason }), deps.record);
  };

  const onExpired = (c: ClientState, phase: Expired): void => {
    const parsed: Duplex = c.tls ?? c.raw;
    switch (phase) {
      case "handshake":
        c.settled = true;
        if (c.session) burst(c.session, "TLS", c.host, c.port, "gateway.limits.tls-handshake-timeout", `no TLS handshake within ${limits.tlsHandshakeTimeoutMs} ms; connection closed`);
        break;
      case "headers":
        if (c.session) burst(c.session, "?", c.host, c.port, "gateway.limits.headers-timeout", `no complete request headers within ${limits.headersTimeoutMs} ms; connection closed`);
        if (parsed.writable) {
          // Say why, then close: at once if the client does not finish closing within a second.
          parsed.end(TIMEOUT_408);
          const hard = setTimeout(() => c.raw.destroy(), 1_000);
          hard.unref();
          c.raw.once("close", () => clearTimeout(hard));
          return;
        }
        break;
      case "idle":
        break;
    }
    c.tls?.destroy();
    c.raw.destroy();
  };

  /**
   * Count, track and time a new client connection. Returns its state and deadlines, or null when
   * the session is at its connection cap (the connection is then closed at once).
   */
  function accept(raw: net.Socket, session: Session | null, port: number): Client | null {
    if (session && !admit(session, raw, port)) return null;
    const c: ClientState = { session, raw, host: "", port, settled: false };
    const client = { c, dl: new Deadlines(raw, limits, (phase) => onExpired(c, phase)) };
    clients.set(raw, client);
    return client;
  }

  /** Count a connection against its session's cap and track it; false (and closed) at the cap. */
  function admit(session: Session, raw: net.Socket, port: number): boolean {
    const usage = session.usage;
    if (!usage.openConnection()) {
      burst(session, "TCP", "", port, "gateway.limits.connections", `more than ${limits.maxConnectionsPerSession} connections open at once from this session; new ones are closed until some end`);
      raw.destroy();
      return false;
    }
    raw.once("close", () => usage.closeConnection());
    track(session, raw);
    return true;
  }

  // Parse errors (Content-Length with Transfer-Encoding, duplicate Content-Length, bad syntax…):
  // answer 400, close, and record the refusal. Nothing has been dialled.
  const onClientError = (err: NodeJS.ErrnoException, socket: Duplex): void => {
    const conn = conns.get(socket as net.Socket);
    // A remote connection's session is the one it authenticated as, never its source address's.
    const session = conn?.session ?? (remoteSockets.has(socket) ? (clients.get(socket)?.c.session ?? null) : sessionOf(deps, socket));
    const code = err.code ?? "error";
    if (code !== "ECONNRESET") {
      const d = draft(session?.spec.id ?? "unknown", "?", conn?.host ?? "", conn?.port ?? 0, "");
      deps.record(finish(d, { status: 400, decision: "denied", rule: "gateway.framing", reason: `the request could not be parsed strictly (${code})` }));
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    }
    socket.destroy();
  };

  const inner = http.createServer(serverOptions, (req, res) => {
    clients.get(req.socket)?.dl.request(res);
    const conn = conns.get(req.socket) ?? { mode: "https", session: null };
    void handleRequest(deps, conn, req, res);
  });
  inner.on("clientError", onClientError);

  /** Terminate TLS for a session; `fixedHost` is the CONNECT target the SNI must equal. */
  function terminate(client: Client, session: Session, mode: "connect" | "https", port: number, fixedHost?: string): void {
    const { c, dl } = client;
    const raw = c.raw;
    c.host = fixedHost ?? "";
    c.port = port;
    dl.handshake(limits.tlsHandshakeTimeoutMs);
    let sni: string | null = null;
    let refused: { rule: string; reason: string } | null = null;
    const tlsSocket = new tls.TLSSocket(raw, {
      isServer: true,
      SNICallback: (name, cb) => {
        try {
          judgeSni(name, cb);
        } catch {
          refused = { rule: "gateway.internal-error", reason: "the gateway could not decide this connection safely" };
          cb(new Error("refused"));
        }
      },
    });
    function judgeSni(name: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void {
      const h = canonicalHost(name);
      sni = h?.host ?? name.toLowerCase();
      if (!h || h.ip) refused = { rule: "gateway.sni", reason: "the TLS server name is not a valid host name" };
      else if (fixedHost !== undefined && h.host !== fixedHost) refused = { rule: "gateway.sni", reason: "the TLS server name does not match the CONNECT target" };
      else if (fixedHost === undefined) {
        const decision = decideHost(session.spec.policy, h.host, port);
        if (!decision.allowed) refused = { rule: decision.rule, reason: decision.reason ?? "denied" };
      }
      if (refused || !h) return cb(new Error("refused"));
      c.host = h.host;
      session.ca.contextFor(h.host).then(
        (ctx) => cb(null, ctx),
        () => cb(new Error("no certificate")),
      );
    }
    c.tls = tlsSocket;
    track(session, tlsSocket);
    tlsSocket.once("secure", () => {
      c.settled = true;
      if (sni === null) return tlsSocket.destroy(); // unreachable: without SNI there is no certificate
      conns.set(tlsSocket, { mode, session, host: sni, port });
      clients.set(tlsSocket, client);
      if (mode === "connect") dl.setIdle(limits.tunnelIdleTimeoutMs);
      dl.headers();
      // Sockets handed to a server by hand skip its noDelay setting; small responses must not wait.
      raw.setNoDelay(true);
      inner.emit("connection", tlsSocket);
    });
    tlsSocket.on("error", () => {
      if (!c.settled) {
        // Without SNI the handshake fails by construction: no default certificate exists.
        c.settled = true; // record once
        const why = refused ?? (sni === null ? { rule: "gateway.sni", reason: "TLS without a server name (SNI) is refused" } : { rule: "gateway.tls", reason: "the TLS handshake with the sandbox failed" });
        deps.record(finish(draft(session.spec.id, "TLS", sni ?? fixedHost ?? "", port, ""), { status: 0, decision: "denied", ...why }));
      }
      tlsSocket.destroy();
      raw.destroy();
    });
  }

  /** Plain HTTP listeners: admit the connection and start its headers deadline. */
  const onPlainConnection = (s: net.Socket): void => {
    accept(s, sessionOf(deps, s), 0)?.dl.headers();
  };

  const proxy = http.createServer(serverOptions, (req, res) => {
    clients.get(req.socket)?.dl.request(res);
    void handleRequest(deps, { mode: "proxy", session: sessionOf(deps, req.socket) }, req, res);
  });
  proxy.on("clientError", onClientError);
  proxy.on("connection", onPlainConnection);
  proxy.on("connect", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => onConnect(req, socket, head, sessionOf(deps, socket)));

  /** `CONNECT host:port` from `session` (null: an unknown source): judge the target, then terminate TLS inside the tunnel. */
  function onConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer, session: Session | null): void {
    const a = parseAuthority(req.url ?? "", 443);
    const d = draft(session?.spec.id ?? "unknown", "CONNECT", a?.host ?? "", a?.port ?? 0, "");
    const deny = (status: number, rule: string, reason: string): void => {
      deps.record(finish(d, { status, decision: "denied", rule, reason }));
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Refused"}\r\nConnection: close\r\nContent-Length: 0\r\nX-Paddock-Rule: ${rule}\r\n\r\n`);
      socket.destroySoon?.();
    };
    socket.on("error", () => socket.destroy());
    if (!session) return deny(403, "gateway.unknown-source", "this address is not a registered sandbox");
    if (!a || !/:\d+$/.test(req.url ?? "")) return deny(400, "gateway.target", "CONNECT needs host:port");
    try {
      const decision = decideHost(session.spec.policy, a.host, a.port);
      if (!decision.allowed) return deny(403, decision.rule, decision.reason ?? "denied");
      const client = clients.get(socket);
      if (!client) return deny(502, "gateway.internal-error", "the gateway lost track of this connection");
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) socket.unshift(head);
      terminate(client, session, "connect", a.port, a.host);
    } catch {
      // Fail closed: an exception in policy code is a refusal, never a tunnel.
      deny(502, "gateway.internal-error", "the gateway could not decide this request safely");
    }
  }

  const plain = http.createServer(serverOptions, (req, res) => {
    clients.get(req.socket)?.dl.request(res);
    void handleRequest(deps, { mode: "http", session: sessionOf(deps, req.socket) }, req, res);
  });
  plain.on("clientError", onClientError);
  plain.on("connection", onPlainConnection);

  const https = net.createServer((socket) => {
    const session = sessionOf(deps, socket);
    socket.on("error", () => socket.destroy());
    if (!session) {
      deps.record(finish(draft("unknown", "TLS", "", 443, ""), { status: 0, decision: "denied", rule: "gateway.unknown-source", reason: "this address is not a registered sandbox" }));
      socket.destroy();
      return;
    }
    const client = accept(socket, session, 443);
    if (client) terminate(client, session, "https", 443);
  });

  const remoteSockets = new WeakSet<Duplex>();
  const remote = remoteHooks
    ? createRemoteProxy({
      deps, hooks: remoteHooks, serverOptions, onClientError, onConnect,
      adopt(socket) {
        remoteSockets.add(socket);
        accept(socket, null, 0)?.dl.headers();
      },
      boundTo: (socket) => clients.get(socket)?.c.session,
      bind(socket, session) {
        const client = clients.get(socket);
        if (!client || !admit(session, socket, 0)) return false;
        client.c.session = session;
        return true;
      },
      requestStarted: (socket, res) => clients.get(socket)?.dl.request(res),
    })
    : null;

  return { proxy, http: plain, https, remote };
}
