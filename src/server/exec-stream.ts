import type { IncomingMessage, Server as HttpServer } from "node:http";
import type { Duplex } from "node:stream";
import { PassThrough } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { constants as osConstants } from "node:os";
import type { ControlPlane } from "../control/index.ts";
import { asPaddockError, httpStatusOf, type Principal } from "../core/index.ts";
import { ExecBody } from "./schemas.ts";
import { auditFailure, authenticate, authorize } from "./auth.ts";

/**
 * Interactive exec over a WebSocket: live stdout/stderr, stdin passthrough, signals. One socket is
 * one command; the protocol is described on the `execStream` route of the OpenAPI document.
 */
export const STDOUT = 1;
export const STDERR = 2;
const PATH_RE = /^\/v1\/sessions\/([^/]+)\/exec\/stream$/;

export function attachExecStream(server: HttpServer, cp: ControlPlane): () => Promise<void> {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const m = PATH_RE.exec(new URL(req.url ?? "/", "http://x").pathname);
    if (!m?.[1]) {
      socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    const id = decodeURIComponent(m[1]);
    // The same checks as every other route, before the upgrade: a refused caller never gets a socket.
    admit(cp, req, id).then(
      (principal) => wss.handleUpgrade(req, socket, head, (ws) => serve(ws, cp, id, principal)),
      (err: unknown) => {
        const e = asPaddockError(err);
        const body = JSON.stringify({ error: { code: e.code, message: e.message } });
        socket.end(`HTTP/1.1 ${httpStatusOf(e.code)} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      },
    );
  });
  return () =>
    new Promise((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    });
}

async function admit(cp: ControlPlane, req: IncomingMessage, id: string): Promise<Principal> {
  const principal = await authenticate(cp, req.headers, "execStream");
  const session = await cp.sessions.get(id).catch(async (err: unknown) => {
    await auditFailure(cp, principal, "execStream", id, err);
    throw err;
  });
  await authorize(cp, principal, { kind: "environment", permission: "write" }, "execStream", { environment: session.environment, session }, id);
  return principal;
}

function serve(ws: WebSocket, cp: ControlPlane, id: string, principal: Principal): void {
  const stdin = new PassThrough();
  const abort = new AbortController();
  let started = false;
  const fail = (err: unknown) => {
    const e = asPaddockError(err);
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "error", code: e.code, message: e.message }), () => ws.close(1000));
  };
  ws.on("close", () => {
    abort.abort();
    stdin.end();
  });
  ws.on("message", (data: RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (!started) {
      started = true;
      let request;
      try {
        request = ExecBody.omit({ stdin: true }).parse(JSON.parse(buf.toString("utf8")));
      } catch (err) {
        fail(new Error(`bad exec request: ${err instanceof Error ? err.message : String(err)}`));
        return;
      }
      cp.commands
        .run(id, principal, {
          argv: request.argv,
          ...(request.cwd ? { cwd: request.cwd } : {}),
          ...(request.env ? { env: request.env } : {}),
          ...(request.timeoutMs ? { timeoutMs: request.timeoutMs } : {}),
          stdin,
          signal: abort.signal,
          onStdout: (c) => ws.send(Buffer.concat([Buffer.of(STDOUT), c])),
          onStderr: (c) => ws.send(Buffer.concat([Buffer.of(STDERR), c])),
        })
        .then((r) => ws.send(JSON.stringify({ type: "exit", ...r }), () => ws.close(1000)))
        .catch(fail);
      return;
    }
    if (isBinary) {
      stdin.write(buf);
      return;
    }
    let msg: { type?: string; signal?: string };
    try {
      msg = JSON.parse(buf.toString("utf8")) as typeof msg;
    } catch {
      return;
    }
    if (msg.type === "stdin-eof") stdin.end();
    else if (msg.type === "signal" && msg.signal && msg.signal in osConstants.signals) abort.abort(msg.signal);
  });
}
