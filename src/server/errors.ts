/**
 * Errors at the API's edge: every error a caller sees, whether from a route, the framework, node's
 * HTTP parser or the exec WebSocket, has the shape `{"error":{"code","message"}}` and is short.
 *
 * - Messages written for the user (every code but `internal`) are passed on, cut to a bounded
 *   length, with the data directory's path replaced: a caller never learns where the host keeps
 *   its data.
 * - An `internal` error (and anything thrown that is not a PaddockError) says what failed and
 *   gives an error id; the message, its stack and its causes go to the server log under that id,
 *   with every secret value and API token redacted.
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { z } from "zod";
import { asPaddockError, excerpt, invalid, type ErrorCode } from "../core/index.ts";
import { secretScrubber } from "../guard/index.ts";

export interface PublicError {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
  /** For `internal` errors: where to look in the server log. */
  errorId?: string;
}

/** Longest message a caller gets (an invalid file's issue list fits; a 3 MiB echo does not). */
const MAX_MESSAGE = 4096;
/** Longest string, and most entries per list, in an error's details. */
const MAX_DETAIL_STRING = 1000;
const MAX_DETAIL_ITEMS = 200;
const TOKEN_RE = /pdk_[a-z0-9]{16}_[A-Za-z0-9_-]{43}/g;
/** The installation's run directory (`/run/paddock/<scope>`), as the local provider names it. */
const RUN_DIR_RE = /\/run\/paddock(\/[0-9a-f]{12})?/g;

export class ErrorReporter {
  constructor(
    private readonly deps: {
      /** The data directory ($PADDOCK_HOME), never shown to a caller. */
      home: string;
      log: (line: string) => void;
      /** Every secret value, redacted from what is logged. */
      secretValues: () => Promise<string[]>;
    },
  ) {}

  /**
   * What the caller may see of `err`, raised while serving `operation` (an operationId, or what
   * the server was doing). Logs the details of internal errors.
   */
  describe(err: unknown, operation: string): PublicError {
    const e = asPaddockError(err);
    if (e.code === "internal") {
      const errorId = `e-${randomBytes(6).toString("hex")}`;
      this.#logInternal(errorId, operation, err);
      return { code: "internal", message: `internal error in ${operation} (error id ${errorId}); the server log has the details`, errorId };
    }
    return { code: e.code, message: excerpt(this.#hidePaths(e.message), MAX_MESSAGE), ...(e.details ? { details: this.#capDetails(e.details) } : {}) };
  }

  /** Log a crash (uncaught exception, unhandled rejection) with its cause; resolves once written. */
  async logCrash(kind: string, err: unknown): Promise<void> {
    this.deps.log(`fatal: ${kind}: ${await this.#redacted(describeThrown(err))}`);
  }

  #logInternal(errorId: string, operation: string, err: unknown): void {
    void this.#redacted(describeThrown(err))
      .then((text) => this.deps.log(`error ${errorId} in ${operation}: ${text}`))
      .catch(() => undefined); // a log that cannot be written must not become an unhandled rejection
  }

  /** Secret values and tokens out; if the secrets cannot be read, nothing but the first line is logged. */
  async #redacted(text: string): Promise<string> {
    const tokensOut = text.replace(TOKEN_RE, "pdk_[redacted token]");
    try {
      return secretScrubber(await this.deps.secretValues())(tokensOut);
    } catch {
      return `${excerpt(tokensOut.split("\n")[0] ?? "", 500)} (details withheld: the secrets to redact could not be read)`;
    }
  }

  #hidePaths(text: string): string {
    const home = this.deps.home.replace(/\/+$/, "");
    const out = home.length > 1 ? text.split(home).join("$PADDOCK_HOME") : text;
    return out.replace(RUN_DIR_RE, "$PADDOCK_RUN");
  }

  #capDetails(details: Record<string, unknown>): Record<string, unknown> {
    const cap = (v: unknown, depth: number): unknown => {
      if (typeof v === "string") return excerpt(this.#hidePaths(v), MAX_DETAIL_STRING);
      if (depth > 6) return null;
      if (Array.isArray(v)) return v.slice(0, MAX_DETAIL_ITEMS).map((x) => cap(x, depth + 1));
      if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).slice(0, MAX_DETAIL_ITEMS).map(([k, x]) => [excerpt(k, 100), cap(x, depth + 1)]));
      return v;
    };
    return cap(details, 0) as Record<string, unknown>;
  }
}

/** An error's message, stack and chain of causes, for the log. */
export function describeThrown(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    parts.push(e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join("\ncaused by: ");
}

/** A raw HTTP/1.1 error response in our shape, for sockets no framework answers on. */
export function rawErrorResponse(status: number, reason: string, body: PublicError): string {
  const json = JSON.stringify({ error: body });
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`;
}

/**
 * Node's HTTP parser refused the request before any route saw it (headers or URL too large,
 * garbage, a client too slow): answer in our shape, then close.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, reason, message] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "Request Header Fields Too Large", "the request line and headers are over the server's limit (16 KiB)"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "Request Timeout", "the request did not arrive in time"]
        : [400, "Bad Request", "malformed HTTP request"];
  closeWith(socket, rawErrorResponse(status, reason, { code: "invalid_argument", message }));
}

/** How long a refused connection may go on sending before it is cut off. */
const LINGER_MS = 2000;

/**
 * Send a last answer on a raw socket and close it. The client may still be sending (a body after
 * refused headers): what it sends is read and dropped for a moment, because closing with unread
 * data resets the connection and the client would lose the answer; then the socket is destroyed
 * whatever the client does.
 */
export function closeWith(socket: Duplex, response: string): void {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.removeAllListeners("data");
  socket.on("data", () => undefined);
  socket.once("end", () => socket.destroy());
  socket.end(response);
  socket.resume();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** How much of an unread request body is read and dropped before an early answer. */
const DRAIN_BYTES = 64 << 20;

/**
 * Before answering a request whose body was never read (refused before its body: no token, no
 * route, a bad URL): read and drop what is left of it, up to a limit and for at most a moment.
 * Answering first and closing with the body unread resets the connection, and the client would
 * lose the answer.
 */
export function drainBody(req: IncomingMessage): Promise<void> {
  if (req.complete || req.readableEnded || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = (): void => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", done);
      req.off("close", done);
      req.off("error", done);
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > DRAIN_BYTES) done();
    };
    const timer = setTimeout(done, LINGER_MS);
    req.on("data", onData);
    req.once("end", done);
    req.once("close", done);
    req.once("error", done);
    req.resume();
  });
}

/** Most validation problems one error lists (a body with a million bad keys gets this many). */
const MAX_PROBLEMS = 20;

/** `value` checked against `schema`, or an `invalid_argument` listing what is wrong (`where`: "body"). */
export function parseInput(schema: z.ZodType | undefined, value: unknown, where: string): unknown {
  if (!schema) return value;
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  // Keys and messages can quote the input (an unknown key, a bad value): each is cut short.
  const problems = r.error.issues
    .slice(0, MAX_PROBLEMS)
    .map((i) => `${i.path.length ? excerpt(i.path.map(String).join("."), 100) : where}: ${excerpt(i.message, 200)}`);
  if (r.error.issues.length > MAX_PROBLEMS) problems.push(`… and ${r.error.issues.length - MAX_PROBLEMS} more`);
  throw invalid(`bad ${where}: ${problems.join("; ")}`, { problems });
}
