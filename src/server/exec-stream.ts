import { STATUS_CODES, type IncomingMessage, type Server as HttpServer } from "node:http";
import type { Duplex } from "node:stream";
import { PassThrough } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import type { ControlPlane } from "../control/index.ts";
import { ExecSignals, OutputGate, PaddockError, excerpt, httpStatusOf, invalid, type ExecOptions, type ExecResult, type Principal } from "../core/index.ts";
import { ExecBody } from "./schemas.ts";
import { auditFailure, authenticate, authorize } from "./auth.ts";
import { closeWith, parseInput, rawErrorResponse, type PublicError, type ErrorReporter } from "./errors.ts";

/**
 * Interactive exec over a WebSocket: live stdout/stderr, stdin passthrough, signals. One socket is
 * one command; the protocol is described on the `execStream` route of the OpenAPI document.
 *
 * Everything here faces the network before and after authentication, so no listener may throw:
 * malformed upgrades are answered in the API's error shape, protocol violations close the socket
 * with their WebSocket close code, and client mistakes after the start are `invalid_argument`
 * messages that leave the command running.
 */
export const STDOUT = 1;
export const STDERR = 2;
/** Largest message either way; a bigger one closes the socket with code 1009 (message too big). */
export const MAX_MESSAGE_BYTES = 1 << 20;
/** Stdin held for a command that is not reading it before the server stops reading the socket. */
const STDIN_BUFFER = 1 << 20;
const PATH_RE = /^\/v1\/sessions\/([^/]+)\/exec\/stream$/;
const ExecRequest = ExecBody.omit({ stdin: true });

export function attachExecStream(server: HttpServer, cp: ControlPlane, errors: ErrorReporter): () => Promise<void> {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  // A handshake ws cannot complete (not GET, bad Sec-WebSocket-Key or version): our shape too.
  wss.on("wsClientError", (err: Error, socket: Duplex) => refuse(socket, 400, { code: "invalid_argument", message: `bad WebSocket handshake: ${err.message}` }));
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node's own error listener is gone from an upgraded socket: a client resetting the
    // connection while we check its token must not become an uncaught 'error'.
    socket.on("error", () => socket.destroy());
    let id: string;
    try {
      id = sessionIdOf(req.url ?? "/");
    } catch (err) {
      const body = errors.describe(err, "execStream");
      refuse(socket, httpStatusOf(body.code), body);
      return;
    }
    // The same checks as every other route, before the upgrade: a refused caller never gets a socket.
    admit(cp, req, id).then(
      (principal) => {
        try {
          wss.handleUpgrade(req, socket, head, (ws) => serve(ws, cp, id, principal, errors));
        } catch {
          socket.destroy(); // nothing sensible left to answer on this socket
        }
      },
      (err: unknown) => {
        const body = errors.describe(err, "execStream");
        refuse(socket, httpStatusOf(body.code), body);
      },
    );
  });
  return () =>
    new Promise((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    });
}

/** The session id of an exec stream path (percent-decoded), or not_found / invalid_argument. */
function sessionIdOf(url: string): string {
  const path = url.split("?")[0] ?? "";
  const m = PATH_RE.exec(path);
  if (!m?.[1]) throw new PaddockError("not_found", `no WebSocket route at ${JSON.stringify(excerpt(path, 200))}: the exec stream is /v1/sessions/{id}/exec/stream`);
  try {
    return decodeURIComponent(m[1]);
  } catch {
    throw invalid("the session id in the path has invalid percent-encoding (e.g. %E0%A4%A): encode each byte as %XX");
  }
}

/** Answer an upgrade we will not complete, in the API's error shape, and close. */
function refuse(socket: Duplex, status: number, body: PublicError): void {
  closeWith(socket, rawErrorResponse(status, STATUS_CODES[status] ?? "Error", body));
}

async function admit(cp: ControlPlane, req: IncomingMessage, id: string): Promise<Principal> {
  const principal = await authenticate(cp, req.headers, "execStream", { method: "GET", websocket: true });
  const session = await cp.sessions.get(id).catch(async (err: unknown) => {
    await auditFailure(cp, principal, "execStream", id, err);
    throw err;
  });
  await authorize(cp, principal, { kind: "environment", permission: "write" }, "execStream", { environment: session.environment, session }, id);
  return principal;
}

function serve(ws: WebSocket, cp: ControlPlane, id: string, principal: Principal, errors: ErrorReporter): void {
  const stream = new StreamedCommand(
    ws,
    (request, signal, signals, send) => cp.commands.run(id, principal, { ...request, signal, signals, onStdout: (c) => send(STDOUT, c), onStderr: (c) => send(STDERR, c) }),
    (err) => errors.describe(err, "execStream"),
  );
  // Protocol errors (a message over 1 MiB, invalid UTF-8 in a text message, a bad frame): ws has
  // already closed the socket with the matching close code (1009, 1007, 1002); "close" follows.
  ws.on("error", () => undefined);
  ws.on("close", () => stream.closed());
  ws.on("message", (data: RawData, isBinary: boolean) => stream.message(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer), isBinary));
}

/** Output bytes queued towards a client before the command is made to wait, and when it goes on. */
const OUTPUT_HIGH_WATER = 4 << 20;
const OUTPUT_LOW_WATER = 1 << 20;

/** Runs the command through the command gate (guardrails, audit) with the stream's stdin and signals. */
type Run = (
  request: Pick<ExecOptions, "argv" | "cwd" | "env" | "timeoutMs" | "stdin" | "output">,
  signal: AbortSignal,
  signals: ExecSignals,
  send: (channel: number, chunk: Buffer) => void,
) => Promise<ExecResult>;

/** One command on one socket: the request, then stdin and control messages, then its result. */
class StreamedCommand {
  #phase: "request" | "running" | "done" = "request";
  readonly #stdin = new PassThrough({ highWaterMark: STDIN_BUFFER });
  readonly #abort = new AbortController();
  readonly #signals = new ExecSignals();
  #stdinClosedWarned = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly run: Run,
    private readonly describe: (err: unknown) => PublicError,
  ) {
    this.#stdin.on("error", () => undefined); // nothing writes after its end (see onStdin); never uncaught
  }

  /** Every message, whatever it holds: a client's mistake never escapes as an exception. */
  message(buf: Buffer, isBinary: boolean): void {
    try {
      if (this.#phase === "request") this.#start(buf, isBinary);
      else if (this.#phase === "done") return; // the result is on its way; nothing can change it now
      else if (isBinary) this.#onStdin(buf);
      else this.#onControl(buf);
    } catch (err) {
      this.#fail(err);
    }
  }

  /** The socket is gone: kill the command. */
  closed(): void {
    this.#abort.abort(new PaddockError("unavailable", "the exec stream closed before the command ended"));
    this.#endStdin();
  }

  #start(buf: Buffer, isBinary: boolean): void {
    if (isBinary) throw invalid('the first message must be the exec request as JSON text, e.g. {"argv":["npm","test"]}');
    let json: unknown;
    try {
      json = JSON.parse(buf.toString("utf8"));
    } catch {
      throw invalid(`bad exec request: not JSON: ${JSON.stringify(excerpt(buf.toString("utf8"), 100))}`);
    }
    const r = parseInput(ExecRequest, json, "exec request") as ReturnType<typeof ExecRequest.parse>;
    this.#phase = "running";
    // Output flow control: a client that does not read makes the command wait, never this
    // process buffer its output (a `yes` to a stalled socket would otherwise fill its memory).
    const output = new OutputGate();
    const request = { argv: r.argv, ...(r.cwd ? { cwd: r.cwd } : {}), ...(r.env ? { env: r.env } : {}), ...(r.timeoutMs ? { timeoutMs: r.timeoutMs } : {}), stdin: this.#stdin, output };
    const relay = (channel: number, chunk: Buffer): void => {
      this.#send(Buffer.concat([Buffer.of(channel), chunk]), () => {
        if (output.paused && this.ws.bufferedAmount < OUTPUT_LOW_WATER) output.resume();
      });
      if (this.ws.bufferedAmount > OUTPUT_HIGH_WATER) output.pause();
    };
    this.run(request, this.#abort.signal, this.#signals, relay).then(
      (result) => this.#finish({ type: "exit", ...result }),
      (err: unknown) => this.#fail(err),
    );
  }

  #onStdin(buf: Buffer): void {
    if (this.#stdin.writableEnded) {
      if (!this.#stdinClosedWarned) this.#reject("stdin is already closed (stdin-eof was sent): later stdin messages are dropped");
      this.#stdinClosedWarned = true;
      return;
    }
    // Flow control: while the command does not read, stop reading the socket.
    if (!this.#stdin.write(buf) && !this.ws.isPaused) {
      this.ws.pause();
      this.#stdin.once("drain", () => this.ws.resume());
    }
  }

  #onControl(buf: Buffer): void {
    let msg: unknown = null;
    try {
      msg = JSON.parse(buf.toString("utf8"));
    } catch {
      /* answered below as an unknown message */
    }
    const m = (msg && typeof msg === "object" ? msg : {}) as { type?: unknown; signal?: unknown };
    if (m.type === "stdin-eof") this.#endStdin();
    else if (m.type !== "signal") {
      this.#reject(`unknown message ${JSON.stringify(excerpt(buf.toString("utf8"), 100))}: send {"type":"stdin-eof"} or {"type":"signal","signal":"SIGINT"}, stdin as binary messages`);
    } else if (typeof m.signal !== "string") this.#reject('a signal message names its signal: {"type":"signal","signal":"SIGINT"}');
    else {
      try {
        this.#signals.send(m.signal);
      } catch (err) {
        this.#reject(err instanceof Error ? err.message : String(err));
      }
    }
  }

  #endStdin(): void {
    if (!this.#stdin.writableEnded) this.#stdin.end();
  }

  /** Send unless the socket is going away (then there is nobody to tell). */
  #send(data: string | Buffer, then?: () => void): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(data, () => then?.());
  }

  /** The last message, then a normal close. */
  #finish(msg: Record<string, unknown>): void {
    this.#phase = "done";
    if (this.ws.isPaused) this.ws.resume(); // so the close handshake can be read
    this.#send(JSON.stringify(msg), () => this.ws.close(1000));
  }

  #fail(err: unknown): void {
    this.#finish({ type: "error", ...this.describe(err), fatal: true });
  }

  /** A client mistake about one message: the command keeps running. */
  #reject(message: string): void {
    this.#send(JSON.stringify({ type: "error", code: "invalid_argument", message, fatal: false }));
  }
}
