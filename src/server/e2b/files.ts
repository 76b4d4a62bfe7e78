/**
 * envd's HTTP file routes: `GET /files` (download), `POST /files` (upload: multipart/form-data,
 * one or several files, or a raw `application/octet-stream` body, gzip allowed), and
 * `GET /health`. As envd answers them: errors are `{code, message}` with the HTTP status the SDK
 * maps (400, 401, 404, 507…), an upload answers `[{name, type, path}]`.
 *
 * Authentication: `X-Access-Token` (E2bSandboxes.envdCaller), or a signed URL without it
 * (fs-signature.ts, E2bSandboxes.envdSignedCaller); neither: 401. Bodies stream both ways through
 * the provider (bounded memory); files are written atomically as the sandbox user, missing parent
 * directories created as envd does, never through a symlink at the final component.
 */
import { posix } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { PaddockError, asPaddockError, invalid, quoted } from "../../core/index.ts";
import type { Requirement } from "../../guard/index.ts";
import type { E2bContext, EnvdCaller } from "./context.ts";
import { multipartBoundary, multipartParts } from "./fs-multipart.ts";
import { envdUser, resolveEnvdPath } from "./fs-paths.ts";
import { signatureRefusal, signatureVerifier, signedQuery, type SignedOperation } from "./fs-signature.ts";

const READ: Requirement = { kind: "environment", permission: "read" };
const WRITE: Requirement = { kind: "environment", permission: "write" };
/** Files up to this size are answered whole, so the answer carries an exact Content-Length. */
const WHOLE_READ_BYTES = 1 << 20;

type Query = Record<string, string | undefined>;

/** HTTP status envd answers with, for a Paddock error (and the errno behind it, when known). */
function statusOf(err: PaddockError): number {
  const errno = err.details?.errno;
  if (errno === "ENOSPC" || errno === "EDQUOT") return 507;
  switch (err.code) {
    case "invalid_argument":
      return 400;
    case "unauthorized":
      return 401;
    case "forbidden":
      return 403;
    case "not_found":
      return 404;
    case "conflict":
      return 409;
    case "unavailable":
      return 503;
    case "internal":
      return 500;
  }
}

async function sendError(ctx: E2bContext, reply: FastifyReply, err: unknown, operation: string): Promise<FastifyReply> {
  const described = ctx.errors.describe(asPaddockError(err), operation);
  const status = statusOf(new PaddockError(described.code, described.message, asPaddockError(err).details));
  closeIfUnread(reply);
  return reply.code(status).type("application/json; charset=utf-8").header("x-content-type-options", "nosniff").send(JSON.stringify({ code: status, message: described.message }));
}

/**
 * An upload answered before its body was read to the end (refused, failed, or a multipart
 * epilogue left unread): Node does not discard the rest of a body that was once read from, so
 * the connection would hang for the client's next request on it. It is closed after the answer
 * (and the body let flow meanwhile, where nothing else reads it).
 */
function closeIfUnread(reply: FastifyReply): void {
  if (reply.request.raw.complete) return;
  reply.header("connection", "close");
  reply.request.raw.resume();
}

function queryOf(request: FastifyRequest): Query {
  const q = request.query as Record<string, unknown>;
  const out: Query = {};
  for (const key of ["path", "username", "signature", "signature_expiration"]) {
    const v = q[key];
    if (Array.isArray(v)) throw invalid(`query parameter ${key} given more than once`);
    if (typeof v === "string") out[key] = v;
  }
  return out;
}

/** The caller of a /files request: its access token, else its signed URL, else 401. */
async function fileCaller(ctx: E2bContext, request: FastifyRequest, query: Query, operation: SignedOperation, audit: string): Promise<EnvdCaller> {
  const requirement = operation === "read" ? READ : WRITE;
  if (typeof request.headers["x-access-token"] === "string") return ctx.sandboxes.envdCaller(request.headers, audit, requirement);
  const signed = signedQuery(query);
  if (signed === null) throw new PaddockError("unauthorized", "unauthorized access: send X-Access-Token, or use a signed URL (signature and signature_expiration query parameters)");
  if (ctx.sandboxes.envdSignedCaller === undefined) throw new PaddockError("unauthorized", "signed file URLs are not available on this server; send X-Access-Token");
  try {
    return await ctx.sandboxes.envdSignedCaller(request.headers, signatureVerifier(signed, operation), audit, requirement);
  } catch (err) {
    throw asPaddockError(err).code === "unauthorized" ? signatureRefusal(signed) : err;
  }
}

export function registerFileRoutes(scope: FastifyInstance, ctx: E2bContext): void {
  // Upload bodies are streamed, never buffered by the framework.
  scope.addContentTypeParser("multipart/form-data", (_req, payload, done) => done(null, payload));
  scope.addContentTypeParser("application/octet-stream", (_req, payload, done) => done(null, payload));
  scope.addContentTypeParser("*", (_req, payload, done) => done(null, payload));

  scope.get("/health", async (_request, reply) => reply.code(204).send());
  // envd's other routes, which neither SDK calls: said plainly rather than a bare 404.
  const notOffered = (route: string, why: string) => async (_request: FastifyRequest, reply: FastifyReply) =>
    reply.code(501).type("application/json; charset=utf-8").send(JSON.stringify({ code: 501, message: `${route} is not offered by Paddock's envd: ${why}` }));
  scope.post("/init", notOffered("POST /init", "Paddock sets a sandbox up itself when it starts it"));
  scope.get("/envs", notOffered("GET /envs", "a sandbox's environment is its Paddock environment's (read it with a command)"));
  scope.get("/metrics", notOffered("GET /metrics", "Paddock does not report sandbox metrics through envd"));

  scope.get("/files", async (request, reply) => {
    try {
      const query = queryOf(request);
      const caller = await fileCaller(ctx, request, query, "read", "e2b.files.download");
      envdUser(query.username);
      const path = resolveEnvdPath(query.path ?? "");
      const info = await ctx.cp.sessions.statFile(caller.sessionId, path);
      const type = info.symlink ? info.symlink.type : info.type;
      if (type === "dir") throw invalid(`path ${quoted(path)} is a directory`);
      if (type !== "file") throw invalid(`path ${quoted(path)} is not a regular file`);
      reply.header("content-disposition", `inline; filename="${posix.basename(path).replace(/[^\x20-\x7e]|["\\]/g, "_")}"`);
      reply.type("application/octet-stream");
      // A symlink is read where it points (as envd does); the agent refuses to read through a
      // final link, so read the resolved path, which stays inside the sandbox.
      const target = info.symlink?.target ?? path;
      // Always read as a stream: the size stat gave is the link's own for a symlink, and the
      // sandbox can grow a file after the stat; neither may make the server hold it whole.
      return await reply.send(await wholeIfSmall(await ctx.cp.sessions.readFileStream(caller.sessionId, target), WHOLE_READ_BYTES));
    } catch (err) {
      return sendError(ctx, reply, err, "e2b.files.download");
    }
  });

  scope.post("/files", async (request, reply) => {
    try {
      const query = queryOf(request);
      const caller = await fileCaller(ctx, request, query, "write", "e2b.files.upload");
      envdUser(query.username);
      if (Object.keys(request.headers).some((h) => h.toLowerCase().startsWith("x-metadata-"))) {
        throw invalid("file metadata (X-Metadata-* headers) is not supported on Paddock; write the file without metadata");
      }
      const body = request.body as Readable;
      const type = String(request.headers["content-type"] ?? "");
      const written = /^multipart\/form-data/i.test(type)
        ? await uploadMultipart(ctx, caller, body, multipartBoundary(type), query.path)
        : [await uploadRaw(ctx, caller, body, query.path, String(request.headers["content-encoding"] ?? ""))];
      closeIfUnread(reply);
      return await reply.code(200).type("application/json").send(JSON.stringify(written));
    } catch (err) {
      return sendError(ctx, reply, err, "e2b.files.upload");
    }
  });
}

/**
 * The bytes of `source` whole when there are at most `limit` of them (so the answer carries an
 * exact Content-Length), else a stream of them; never more than about `limit` held either way.
 */
async function wholeIfSmall(source: Readable, limit: number): Promise<Buffer | Readable> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let held = 0;
  while (held <= limit) {
    const next = await it.next();
    if (next.done) return Buffer.concat(head);
    head.push(next.value);
    held += next.value.length;
  }
  const rest = async function* (): AsyncGenerator<Buffer> {
    yield* head.splice(0);
    for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
  };
  const out = Readable.from(rest(), { objectMode: false });
  out.once("close", () => source.destroy()); // the client went away: stop reading the sandbox's file
  return out;
}

/**
 * The decompressed body of a gzip upload, started only once the write reads it: a corrupt body
 * then fails the write (400), never an 'error' event nobody listens to (which would take the
 * whole server down). What it inflates to is bounded as any upload is, by the sandbox's disk
 * (ENOSPC: 507).
 */
function gunzipped(body: Readable): { data: Readable; corrupt: () => boolean } {
  let corrupt = false;
  const inflate = async function* (): AsyncGenerator<Buffer> {
    const gunzip = createGunzip();
    body.on("error", (err) => gunzip.destroy(err));
    try {
      for await (const chunk of body.pipe(gunzip)) yield chunk as Buffer;
    } catch (err) {
      corrupt = String((err as NodeJS.ErrnoException).code).startsWith("Z_");
      throw err;
    }
  };
  const data = Readable.from(inflate(), { objectMode: false });
  data.on("error", () => undefined); // the write reports it; once the write has failed, nobody needs it
  return { data, corrupt: () => corrupt };
}

interface Written {
  name: string;
  type: "file";
  path: string;
}

/** Create `path`'s parent directories (envd does), then write it from `data`. */
async function writeOne(ctx: E2bContext, caller: EnvdCaller, path: string, data: Readable): Promise<Written> {
  await ctx.cp.sessions.makeDir(caller.sessionId, posix.dirname(path));
  await ctx.cp.sessions.writeFileStream(caller.sessionId, path, data);
  return { name: posix.basename(path), type: "file", path };
}

async function uploadRaw(ctx: E2bContext, caller: EnvdCaller, body: Readable, queryPath: string | undefined, encoding: string): Promise<Written> {
  if (queryPath === undefined || queryPath === "") throw invalid("path query parameter is required for a raw (application/octet-stream) upload");
  const path = resolveEnvdPath(queryPath);
  const enc = encoding.trim().toLowerCase();
  if (enc !== "" && enc !== "identity" && enc !== "gzip") throw invalid(`Content-Encoding ${quoted(encoding, 40)} is not supported; send gzip or nothing`);
  if (enc !== "gzip") return writeOne(ctx, caller, path, body);
  const { data, corrupt } = gunzipped(body);
  try {
    return await writeOne(ctx, caller, path, data);
  } catch (err) {
    if (corrupt()) throw invalid("the body is not valid gzip data (Content-Encoding: gzip); send the bytes gzip-compressed, or without Content-Encoding");
    throw err;
  } finally {
    data.destroy();
  }
}

async function uploadMultipart(ctx: E2bContext, caller: EnvdCaller, body: Readable, boundary: string, queryPath: string | undefined): Promise<Written[]> {
  const written: Written[] = [];
  for await (const part of multipartParts(body, boundary)) {
    if (part.headers.name !== "file") continue; // envd ignores other fields
    const named = queryPath !== undefined && queryPath !== "" ? queryPath : part.headers.filename;
    if (named === null || named === "") throw invalid("a multipart file part needs a filename (its path in the sandbox) when the path query parameter is absent");
    const path = resolveEnvdPath(named);
    if (written.some((w) => w.path === path)) {
      throw invalid(`you cannot upload multiple files to the same path ${quoted(path)} in one request; uploaded so far: ${written.map((w) => w.path).join(", ")}`);
    }
    written.push(await writeOne(ctx, caller, path, Readable.from(part.body, { objectMode: false })));
  }
  if (written.length === 0) throw invalid("the multipart upload has no part named \"file\"");
  return written;
}
