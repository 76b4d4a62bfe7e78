/**
 * Relaying an upstream response back into the sandbox. Headers and body are redacted (every secret
 * value of the session becomes its placeholder, DESIGN.md invariant 1). A compressed body is
 * decompressed first, since a secret inside gzip cannot be found; an encoding the gateway cannot
 * decode is refused when the session has secrets (fail closed: it could hide one).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Transform, pipeline, type TransformCallback } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { responseHeaders } from "./framing.ts";
import { RedactStream, redactText, type Replacement } from "./redact.ts";

export class UnsupportedEncoding extends Error {
  constructor(encoding: string) {
    super(`the upstream answered with content-encoding ${JSON.stringify(encoding.slice(0, 40))}, which the gateway cannot inspect`);
  }
}

function decoderFor(encoding: string): Transform | null | "unknown" {
  switch (encoding) {
    case "":
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
export function relayResponse(up: IncomingMessage, res: ServerResponse, reps: Replacement[], method: string, done: (bytesIn: number, err?: Error) => void): void {
  const status = up.statusCode ?? 502;
  const hasBody = method !== "HEAD" && status !== 204 && status !== 304 && status >= 200;
  const encoding = String(up.headers["content-encoding"] ?? "").trim().toLowerCase();
  let decoder: Transform | null = null;
  if (hasBody && reps.length > 0) {
    const d = decoderFor(encoding);
    if (d === "unknown") {
      up.resume();
      throw new UnsupportedEncoding(encoding);
    }
    decoder = d;
  }
  // The body length changes with redaction, so it is always re-framed (chunked).
  const drop = hasBody ? ["content-length", ...(decoder ? ["content-encoding"] : [])] : [];
  const headers: Record<string, string[]> = {};
  for (const [name, value] of responseHeaders(up.rawHeaders, drop)) {
    const key = name.toLowerCase();
    (headers[key] ??= []).push(redactText(value, reps));
  }
  res.writeHead(status, redactText(up.statusMessage ?? "", reps).replace(/[^\t\x20-\x7e]/g, ""), headers);
  const counter = new Counter();
  const stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[] = [up];
  if (decoder) stages.push(decoder);
  stages.push(new RedactStream(reps), counter, res);
  pipeline(stages, (err) => done(counter.bytes, err ?? undefined));
}
