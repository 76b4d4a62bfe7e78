/**
 * The gateway's TCP listeners: the explicit proxy (absolute-form HTTP and CONNECT), transparent
 * HTTP (sandbox TCP 80 DNATed here) and transparent TLS (TCP 443). TLS is terminated with a leaf
 * from the session's CA for the SNI the client sends, and the decrypted stream is handed to Node's
 * own HTTP parser (an internal http.Server), so inner requests are parsed, judged and re-framed one
 * by one; raw bytes are never relayed.
 */
import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { canonicalHost, sourceAddress } from "./addresses.ts";
import { parseAuthority } from "./framing.ts";
import { handleRequest, type Conn, type Deps } from "./forward.ts";
import { decideHost } from "./policy.ts";
import { draft, finish } from "./records.ts";
import type { Session } from "./sessions.ts";

export interface Listeners {
  proxy: http.Server;
  http: http.Server;
  https: net.Server;
}

function sessionOf(deps: Deps, socket: net.Socket | Duplex): Session | null {
  return deps.sessions.bySourceAddress(sourceAddress((socket as net.Socket).remoteAddress));
}

function track(session: Session | null, socket: net.Socket): void {
  if (!session) return;
  session.sockets.add(socket);
  socket.once("close", () => session.sockets.delete(socket));
}

export function createListeners(deps: Deps): Listeners {
  const conns = new WeakMap<net.Socket, Conn>();
  const serverOptions: http.ServerOptions = { requireHostHeader: false, insecureHTTPParser: false, headersTimeout: 30_000, requestTimeout: 300_000 };

  // Parse errors (Content-Length with Transfer-Encoding, duplicate Content-Length, bad syntax…):
  // answer 400, close, and record the refusal. Nothing has been dialled.
  const onClientError = (err: NodeJS.ErrnoException, socket: Duplex): void => {
    const conn = conns.get(socket as net.Socket);
    const session = conn?.session ?? sessionOf(deps, socket);
    const code = err.code ?? "error";
    if (code !== "ECONNRESET") {
      const d = draft(session?.spec.id ?? "unknown", "?", conn?.host ?? "", conn?.port ?? 0, "");
      deps.record(finish(d, { status: 400, decision: "denied", rule: "gateway.framing", reason: `the request could not be parsed strictly (${code})` }));
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    }
    socket.destroy();
  };

  const inner = http.createServer(serverOptions, (req, res) => {
    const conn = conns.get(req.socket) ?? { mode: "https", session: null };
    void handleRequest(deps, conn, req, res);
  });
  inner.on("clientError", onClientError);

  /** Terminate TLS for a session; `fixedHost` is the CONNECT target the SNI must equal. */
  function terminate(raw: net.Socket, session: Session, mode: "connect" | "https", port: number, fixedHost?: string): void {
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
      const c = canonicalHost(name);
      sni = c?.host ?? name.toLowerCase();
      if (!c || c.ip) refused = { rule: "gateway.sni", reason: "the TLS server name is not a valid host name" };
      else if (fixedHost !== undefined && c.host !== fixedHost) refused = { rule: "gateway.sni", reason: "the TLS server name does not match the CONNECT target" };
      else if (fixedHost === undefined) {
        const decision = decideHost(session.spec.policy, c.host, port);
        if (!decision.allowed) refused = { rule: decision.rule, reason: decision.reason ?? "denied" };
      }
      if (refused || !c) return cb(new Error("refused"));
      session.ca.contextFor(c.host).then(
        (ctx) => cb(null, ctx),
        () => cb(new Error("no certificate")),
      );
    }
    track(session, tlsSocket);
    let secured = false;
    tlsSocket.once("secure", () => {
      secured = true;
      if (sni === null) return tlsSocket.destroy(); // unreachable: without SNI there is no certificate
      conns.set(tlsSocket, { mode, session, host: sni, port });
      // Sockets handed to a server by hand skip its noDelay setting; small responses must not wait.
      raw.setNoDelay(true);
      inner.emit("connection", tlsSocket);
    });
    tlsSocket.on("error", () => {
      if (!secured) {
        // Without SNI the handshake fails by construction: no default certificate exists.
        secured = true; // record once
        const why = refused ?? (sni === null ? { rule: "gateway.sni", reason: "TLS without a server name (SNI) is refused" } : { rule: "gateway.tls", reason: "the TLS handshake with the sandbox failed" });
        deps.record(finish(draft(session.spec.id, "TLS", sni ?? fixedHost ?? "", port, ""), { status: 0, decision: "denied", ...why }));
      }
      tlsSocket.destroy();
      raw.destroy();
    });
  }

  const proxy = http.createServer(serverOptions, (req, res) => {
    void handleRequest(deps, { mode: "proxy", session: sessionOf(deps, req.socket) }, req, res);
  });
  proxy.on("clientError", onClientError);
  proxy.on("connection", (s: net.Socket) => track(sessionOf(deps, s), s));
  proxy.on("connect", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const session = sessionOf(deps, socket);
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
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) socket.unshift(head);
      terminate(socket, session, "connect", a.port, a.host);
    } catch {
      // Fail closed: an exception in policy code is a refusal, never a tunnel.
      deny(502, "gateway.internal-error", "the gateway could not decide this request safely");
    }
  });

  const plain = http.createServer(serverOptions, (req, res) => {
    void handleRequest(deps, { mode: "http", session: sessionOf(deps, req.socket) }, req, res);
  });
  plain.on("clientError", onClientError);
  plain.on("connection", (s: net.Socket) => track(sessionOf(deps, s), s));

  const https = net.createServer((socket) => {
    const session = sessionOf(deps, socket);
    socket.on("error", () => socket.destroy());
    if (!session) {
      deps.record(finish(draft("unknown", "TLS", "", 443, ""), { status: 0, decision: "denied", rule: "gateway.unknown-source", reason: "this address is not a registered sandbox" }));
      socket.destroy();
      return;
    }
    track(session, socket);
    terminate(socket, session, "https", 443);
  });

  return { proxy, http: plain, https };
}
