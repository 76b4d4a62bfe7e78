/**
 * Relaying an upstream response back into the sandbox. Headers and body are redacted (every secret
 * value of the session becomes its placeholder, DESIGN.md invariant 1). Codings are undone first,
 * since a secret inside gzip cannot be found:
 * - transfer codings (`Transfer-Encoding: gzip, chunked`) always: they belong to one hop, the
 *   gateway drops the header, so it must remove them; Node's parser only removes `chunked`;
 * - content codings when the session has secrets.
 * A coding the gateway cannot decode (zstd, compress, anything unknown) is refused with 502 before
 * a byte is sent (fail closed: it could hide a secret).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Transform, pipeline, type TransformCallback } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { responseHeaders } from "./framing.ts";
import { RedactStream, Redactor, type Replacement } from "./redact.ts";

export class UnsupportedEncoding extends Error {
  constructor(header: string, encoding: string) {
    super(`the upstream answered with ${header} ${JSON.stringify(encoding.slice(0, 40))}, which the gateway cannot inspect`);
  }
}

/** More codings than this on one message is no real server's doing: refused. */
const MAX_CODINGS = 4;

function decoderFor(coding: string): Transform | null | "unknown" {
  switch (coding) {
    case "identity":
      return null;
    case "gzip":
    case "x-gzip":
      return createGunzip();
    case "deflate":
      return createInflate();
    case "br":
      return createBrotliDecompress();
    default:
      return "unknown";
  }
}

/** Decoders that undo a coding list such as `gzip, br` (applied in that order, so undone last first). */
function decodersFor(header: string, list: string): Transform[] {
  const codings = list.split(",").map((c) => c.trim().toLowerCase()).filter((c) => c !== "");
  if (codings.length > MAX_CODINGS) throw new UnsupportedEncoding(header, list);
  const out: Transform[] = [];
  for (const coding of codings.reverse()) {
    const d = decoderFor(coding);
    if (d === "unknown") throw new UnsupportedEncoding(header, list);
    if (d) out.push(d);
  }
  return out;
}

/** The transfer codings other than the final `chunked`, which Node's parser has already removed. */
function transferCodings(up: IncomingMessage): string {
  const list = String(up.headers["transfer-encoding"] ?? "").trim();
  return list.replace(/(^|,)\s*chunked\s*$/i, "");
}

class Counter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

/**
 * Write `up` to `res`, redacted. Throws UnsupportedEncoding before writing anything when the body
 * cannot be inspected. `done` is called once, with the body bytes delivered and any stream error.
 */
export function relayResponse(up: IncomingMessage, res: ServerResponse, reps: Redactor | Replacement[], method: string, done: (bytesIn: number, err?: Error) => void): void {
  const status = up.statusCode ?? 502;
  const hasBody = method !== "HEAD" && status !== 204 && status !== 304 && status >= 200;
  const redactor = reps instanceof Redactor ? reps : new Redactor(reps);
  const decoders: Transform[] = [];
  let contentDecoded = false;
  try {
    if (hasBody) decoders.push(...decodersFor("transfer-encoding", transferCodings(up)));
    if (hasBody && !redactor.empty) {
      const content = decodersFor("content-encoding", String(up.headers["content-encoding"] ?? ""));
      contentDecoded = content.length > 0;
      decoders.push(...content);
    }
  } catch (err) {
    up.resume();
    throw err;
  }
  // The body length changes with redaction, so it is always re-framed (chunked).
  const drop = hasBody ? ["content-length", ...(contentDecoded ? ["content-encoding"] : [])] : [];
  const headers: Record<string, string[]> = {};
  for (const [name, value] of responseHeaders(up.rawHeaders, drop)) {
    // A header whose name holds a secret is dropped whole: Node lower-cases names, so a secret
    // there cannot be swapped for its placeholder faithfully, and no real header is named so.
    if (redactor.nameLeaks(name)) continue;
    (headers[name.toLowerCase()] ??= []).push(redactor.text(value));
  }
  res.writeHead(status, redactor.text(up.statusMessage ?? "").replace(/[^\t\x20-\x7e]/g, ""), headers);
  const counter = new Counter();
  const stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[] = [up, ...decoders, new RedactStream(redactor), counter, res];
  pipeline(stages, (err) => done(counter.bytes, err ?? undefined));
}
