/**
 * The Connect protocol (https://connectrpc.com/docs/protocol) as E2B's envd speaks it to the SDK:
 * JSON codec over HTTP/1.1. Unary calls are `POST /<package.Service>/<Method>` with a JSON body
 * and a JSON answer; server-streaming calls send one enveloped message and get enveloped messages
 * back, ended by an end-of-stream envelope that carries the error, if any. An envelope is a flags
 * byte (0x02: end of stream), a 4-byte big-endian length and that many bytes of JSON.
 *
 * The envd services are small and their messages are plain JSON (proto3 JSON mapping), so this
 * file is the whole transport: no generated code.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { asPaddockError, type ErrorCode } from "../../core/index.ts";
import type { ErrorReporter } from "../errors.ts";

export type ConnectCode =
  | "canceled" | "unknown" | "invalid_argument" | "deadline_exceeded" | "not_found" | "already_exists"
  | "permission_denied" | "resource_exhausted" | "failed_precondition" | "aborted" | "out_of_range"
  | "unimplemented" | "internal" | "unavailable" | "data_loss" | "unauthenticated";

/** HTTP status of a unary error, from the Connect protocol's table. */
const HTTP_STATUS: Record<ConnectCode, number> = {
  canceled: 499, unknown: 500, invalid_argument: 400, deadline_exceeded: 504, not_found: 404, already_exists: 409,
  permission_denied: 403, resource_exhausted: 429, failed_precondition: 400, aborted: 409, out_of_range: 400,
  unimplemented: 501, internal: 500, unavailable: 503, data_loss: 500, unauthenticated: 401,
};

const FROM_PADDOCK: Record<ErrorCode, ConnectCode> = {
  not_found: "not_found", invalid_argument: "invalid_argument", unauthorized: "unauthenticated", forbidden: "permission_denied",
  conflict: "failed_precondition", unavailable: "unavailable", internal: "internal",
};

/** An error with a Connect code, for cases a PaddockError code does not name (e.g. `already_exists`). */
export class ConnectError extends Error {
  constructor(readonly code: ConnectCode, message: string) {
    super(message);
    this.name = "ConnectError";
  }
}

export interface ConnectErrorBody {
  code: ConnectCode;
  message: string;
}

/** The Connect error for anything thrown; internal errors are logged with an id and not described. */
export function connectErrorOf(err: unknown, errors: ErrorReporter, operation: string): ConnectErrorBody {
  if (err instanceof ConnectError) return { code: err.code, message: err.message };
  const described = errors.describe(asPaddockError(err), operation);
  return { code: FROM_PADDOCK[described.code], message: described.message };
}

/** Largest request envelope or unary body accepted (envd requests are small: paths, argv, stdin chunks). */
export const MAX_CONNECT_REQUEST_BYTES = 16 * 1024 * 1024;
const STREAM_TYPE = "application/connect+json";

/** The one message of a streaming request's body, or an `invalid_argument` ConnectError saying what is wrong with the framing. */
export function parseEnvelopedRequest(body: Buffer): unknown {
  if (body.length < 5) throw new ConnectError("invalid_argument", `malformed Connect envelope: ${body.length} bytes, need at least 5`);
  const flags = body.readUInt8(0);
  if (flags & 0x01) throw new ConnectError("unimplemented", "compressed Connect messages are not supported; send them uncompressed");
  const length = body.readUInt32BE(1);
  if (length !== body.length - 5) throw new ConnectError("invalid_argument", `malformed Connect envelope: length field says ${length} bytes, body has ${body.length - 5}`);
  return parseJson(body.subarray(5));
}

function parseJson(bytes: Buffer): unknown {
  if (bytes.length === 0) return {};
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new ConnectError("invalid_argument", "the request message is not valid JSON (Connect JSON codec)");
  }
}

function envelope(flags: number, json: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(json));
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Context of one call, for handlers. */
export interface ConnectCall {
  request: FastifyRequest;
  /** Aborted when the client goes away (or the stream ends). */
  signal: AbortSignal;
}

/** The response side of a server stream. */
export interface ConnectStream {
  /** Send one message; resolves once the socket can take more (backpressure). Rejects `canceled` once the client is gone. */
  send(message: unknown): Promise<void>;
  readonly signal: AbortSignal;
}

/** Register the JSON and streaming content types on a scope (call once per plugin scope). */
export function addConnectParsers(scope: FastifyInstance): void {
  scope.addContentTypeParser("application/json", { parseAs: "buffer", bodyLimit: MAX_CONNECT_REQUEST_BYTES }, (_req, body, done) => done(null, body));
  scope.addContentTypeParser(STREAM_TYPE, { parseAs: "buffer", bodyLimit: MAX_CONNECT_REQUEST_BYTES }, (_req, body, done) => done(null, body));
}

function abortOnClose(request: FastifyRequest, reply: FastifyReply): AbortController {
  const ac = new AbortController();
  const abort = (): void => ac.abort(new ConnectError("canceled", "the client went away"));
  reply.raw.on("close", abort);
  request.raw.on("aborted", abort);
  return ac;
}

/** A unary Connect method at `/<service>/<method>`. */
export function unaryRoute(
  scope: FastifyInstance,
  errors: ErrorReporter,
  path: string,
  handler: (message: unknown, call: ConnectCall) => Promise<unknown>,
): void {
  scope.post(path, async (request, reply) => {
    const ac = abortOnClose(request, reply);
    try {
      const type = String(request.headers["content-type"] ?? "");
      if (!type.startsWith("application/json")) throw new ConnectError("invalid_argument", `unary calls take Content-Type application/json (Connect JSON codec), not ${JSON.stringify(type)}`);
      const message = parseJson(Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0));
      const answer = await handler(message, { request, signal: ac.signal });
      return await reply.code(200).type("application/json").send(JSON.stringify(answer ?? {}));
    } catch (err) {
      const body = connectErrorOf(err, errors, path);
      return reply.code(HTTP_STATUS[body.code]).type("application/json").send(JSON.stringify(body));
    }
  });
}

/** A server-streaming Connect method: the handler sends messages until it resolves (or throws: the error ends the stream). */
export function serverStreamRoute(
  scope: FastifyInstance,
  errors: ErrorReporter,
  path: string,
  handler: (message: unknown, stream: ConnectStream, call: ConnectCall) => Promise<void>,
): void {
  scope.post(path, async (request, reply) => {
    const type = String(request.headers["content-type"] ?? "");
    let message: unknown;
    try {
      if (!type.startsWith(STREAM_TYPE)) throw new ConnectError("invalid_argument", `streaming calls take Content-Type ${STREAM_TYPE}, not ${JSON.stringify(type)}`);
      message = parseEnvelopedRequest(Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0));
    } catch (err) {
      // Before the stream starts, a Connect server may answer like a unary error.
      const body = connectErrorOf(err, errors, path);
      return reply.code(HTTP_STATUS[body.code]).type("application/json").send(JSON.stringify(body));
    }
    const ac = abortOnClose(request, reply);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": STREAM_TYPE, "cache-control": "no-store" });
    res.flushHeaders();
    const stream: ConnectStream = {
      signal: ac.signal,
      send(msg) {
        if (ac.signal.aborted || res.destroyed) return Promise.reject(new ConnectError("canceled", "the client went away"));
        if (res.write(envelope(0, msg))) return Promise.resolve();
        return new Promise((resolve, reject) => {
          const onDrain = (): void => { res.off("close", onClose); resolve(); };
          const onClose = (): void => { res.off("drain", onDrain); reject(new ConnectError("canceled", "the client went away")); };
          res.once("drain", onDrain);
          res.once("close", onClose);
        });
      },
    };
    let end: Record<string, unknown> = {};
    try {
      await handler(message, stream, { request, signal: ac.signal });
    } catch (err) {
      if (!ac.signal.aborted) end = { error: connectErrorOf(err, errors, path) };
    }
    if (!res.destroyed) res.end(envelope(0x02, end));
    ac.abort();
  });
}
