/**
 * The explicit proxy as remote sandboxes see it: the same CONNECT and absolute-form handling as
 * the local proxy (listeners.ts), except that the session is named by `Proxy-Authorization`
 * (remote-auth.ts) rather than by source address. Connections arrive already decrypted from
 * remote-listener.ts (TLS to the proxy itself). A connection belongs to the session it first
 * authenticated as, and from then on counts against that session's limits exactly like a local
 * sandbox's; a later request on it with another or no credential gets 407 and the connection is
 * closed. Every refusal is the same 407, whatever was wrong.
 */
import http from "node:http";
import type net from "node:net";
import type { Duplex } from "node:stream";
import { parseAuthority } from "./framing.ts";
import { handleRequest, type Deps } from "./forward.ts";
import { Bursts } from "./limits.ts";
import { draft, finish } from "./records.ts";
import type { AuthResult, RemoteAuth } from "./remote-auth.ts";
import type { Session } from "./sessions.ts";

/** What the remote proxy needs beyond Deps: who a credential belongs to. */
export interface RemoteHooks {
  auth: RemoteAuth;
  /** The client's address (the TCP peer under the TLS connection). */
  sourceOf(socket: Duplex): string;
}

/** The listeners' machinery the remote proxy shares (listeners.ts), so that its path after authentication is theirs. */
export interface RemoteProxyKit {
  deps: Deps;
  hooks: RemoteHooks;
  serverOptions: http.ServerOptions;
  onClientError(err: NodeJS.ErrnoException, socket: Duplex): void;
  /** CONNECT from an authenticated session: judged and terminated as on the local proxy. */
  onConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer, session: Session): void;
  /** Track and time a new connection that belongs to no session yet (its headers deadline starts). */
  adopt(socket: net.Socket): void;
  /** The session a connection is bound to; null: none yet; undefined: not a connection of ours. */
  boundTo(socket: net.Socket): Session | null | undefined;
  /** Count the connection against the session's cap and bind it; false (and closed) at the cap. */
  bind(socket: net.Socket, session: Session): boolean;
  /** A request's headers are complete: its deadline runs until `res` closes. */
  requestStarted(socket: net.Socket, res: http.ServerResponse): void;
}

const AUTH_407 = 'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="paddock"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

export function createRemoteProxy(kit: RemoteProxyKit): http.Server {
  const { deps } = kit;
  // Refusals anyone can repeat at will: recorded once per burst, like connection-cap refusals.
  const refusals = new Bursts();
  const server = http.createServer(kit.serverOptions, (req, res) => {
    const session = authenticate(req, req.socket, res);
    if (!session) return;
    kit.requestStarted(req.socket, res);
    void handleRequest(deps, { mode: "proxy", session }, req, res);
  });
  server.on("clientError", kit.onClientError);
  server.on("connection", kit.adopt);
  server.on("connect", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    const session = authenticate(req, socket);
    if (session) kit.onConnect(req, socket, head, session);
  });

  /** The request's session, the connection bound to it; or null after answering 407 and closing. */
  function authenticate(req: http.IncomingMessage, socket: net.Socket, res?: http.ServerResponse): Session | null {
    let result: AuthResult;
    try {
      result = kit.hooks.auth.authenticate(req.headers["proxy-authorization"], kit.hooks.sourceOf(socket));
    } catch {
      result = { ok: false, throttled: false }; // fail closed: an exception here is a refusal, never a session
    }
    const bound = kit.boundTo(socket);
    // A session registered again (a restore) is a new object with the same id: still the same session.
    if (bound === undefined || !result.ok || (bound !== null && bound.spec.id !== result.session.spec.id)) {
      refuse(req, socket, res, !result.ok && result.throttled);
      return null;
    }
    if (bound === null) {
      if (!kit.bind(socket, result.session)) return null;
      kit.hooks.auth.settle(socket);
    }
    return result.session;
  }

  function refuse(req: http.IncomingMessage, socket: net.Socket, res: http.ServerResponse | undefined, throttled: boolean): void {
    const a = req.method === "CONNECT" ? parseAuthority(req.url ?? "", 443) : null;
    const reason = throttled ? "too many failed proxy authentications from this address; try again later" : "missing or wrong proxy credentials";
    refusals.note(finish(draft("unknown", req.method ?? "?", a?.host ?? "", a?.port ?? 0, ""), { status: 407, decision: "denied", rule: "gateway.remote-auth", reason }), deps.record);
    // The same answer for every failure: it says nothing of which part was wrong. Through the
    // response when there is one, so that it comes after the answers to pipelined requests.
    if (res) {
      res.shouldKeepAlive = false;
      res.writeHead(407, { "proxy-authenticate": 'Basic realm="paddock"', connection: "close", "content-length": 0 }).end();
    } else if (socket.writable) {
      socket.end(AUTH_407);
      socket.destroySoon?.();
    }
  }

  return server;
}
