/**
 * A streaming `multipart/form-data` reader for `/files` uploads: each part's body is handed on as
 * it arrives, so a large upload is never held whole (memory stays at about one chunk plus the
 * boundary). Only what uploads need: the `name` and `filename` of each part's
 * Content-Disposition. Bounded: part headers at most 16 KiB, at most 1,000 parts.
 */
import { invalid } from "../../core/index.ts";

const MAX_HEADER_BYTES = 16 * 1024;
const MAX_PARTS = 1000;

export interface PartHeaders {
  /** The form field name (`file` for uploads). */
  name: string;
  /** The file name as sent (E2B's SDK sends the destination path here), or null. */
  filename: string | null;
}

/** The boundary of a `multipart/form-data` Content-Type, or an `invalid_argument` error. */
export function multipartBoundary(contentType: string): string {
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) throw invalid("multipart/form-data upload without a boundary parameter in its Content-Type");
  return boundary;
}

/** Percent-escapes browsers and undici use in a quoted filename (", CR, LF). */
function unescapeFilename(raw: string): string {
  return raw.replace(/%22/g, '"').replace(/%0D/gi, "\r").replace(/%0A/gi, "\n").replace(/\\"/g, '"');
}

function parseHeaders(block: string): PartHeaders {
  let disposition = "";
  for (const line of block.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === "content-disposition") disposition = line.slice(colon + 1);
  }
  if (!/^\s*form-data\s*(;|$)/i.test(disposition)) throw invalid("multipart part without a Content-Disposition: form-data header");
  const name = /;\s*name="([^"]*)"/i.exec(disposition)?.[1] ?? /;\s*name=([^;\s]+)/i.exec(disposition)?.[1] ?? "";
  const quoted = /;\s*filename="((?:[^"\\]|\\.)*)"/i.exec(disposition)?.[1];
  const bare = /;\s*filename=([^;\s"]+)/i.exec(disposition)?.[1];
  const filename = quoted !== undefined ? unescapeFilename(quoted) : bare !== undefined ? bare : null;
  return { name, filename };
}

/**
 * Parts of a multipart body, in order. Each part's `body` must be read to its end (or the
 * iteration abandoned) before the next part is asked for.
 */
export async function* multipartParts(source: AsyncIterable<Buffer | string>, boundary: string): AsyncGenerator<{ headers: PartHeaders; body: AsyncGenerator<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  // A CRLF in front makes the first delimiter look like every other one.
  let buf: Buffer = Buffer.from("\r\n");
  let ended = false;
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const next = await it.next();
    if (next.done) {
      ended = true;
      return false;
    }
    const chunk = typeof next.value === "string" ? Buffer.from(next.value) : next.value;
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    return true;
  };
  // Skip the preamble up to the first delimiter.
  for (;;) {
    const at = buf.indexOf(delimiter);
    if (at >= 0) {
      buf = buf.subarray(at + delimiter.length);
      break;
    }
    buf = buf.subarray(Math.max(0, buf.length - delimiter.length));
    if (!(await more())) throw invalid("multipart body has no part (its boundary never appears)");
  }
  for (let parts = 0; ; parts++) {
    while (buf.length < 2) if (!(await more())) throw invalid("multipart body ends inside a delimiter");
    if (buf[0] === 0x2d && buf[1] === 0x2d) return; // "--": the closing delimiter
    const headerEnd = async (): Promise<number> => {
      for (;;) {
        const at = buf.indexOf("\r\n\r\n");
        if (at >= 0) return at;
        if (buf.length > MAX_HEADER_BYTES) throw invalid(`multipart part headers exceed ${MAX_HEADER_BYTES} bytes`);
        if (!(await more())) throw invalid("multipart body ends inside a part's headers");
      }
    };
    if (parts >= MAX_PARTS) throw invalid(`multipart body has more than ${MAX_PARTS} parts`);
    const end = await headerEnd();
    // Checked here too: headers that arrived in one chunk were found without the search's bound.
    if (end > MAX_HEADER_BYTES) throw invalid(`multipart part headers exceed ${MAX_HEADER_BYTES} bytes`);
    // The delimiter line's own CRLF comes first (the transport padding before it is ignored).
    const headers = parseHeaders(buf.subarray(buf.indexOf("\r\n") + 2, end).toString("utf8"));
    buf = buf.subarray(end + 4);
    let done = false;
    const body = async function* (): AsyncGenerator<Buffer> {
      for (;;) {
        const at = buf.indexOf(delimiter);
        if (at >= 0) {
          if (at > 0) yield buf.subarray(0, at);
          buf = buf.subarray(at + delimiter.length);
          done = true;
          return;
        }
        // Keep what could be the start of a delimiter split across chunks.
        const safe = buf.length - (delimiter.length - 1);
        if (safe > 0) {
          const out = buf.subarray(0, safe);
          buf = buf.subarray(safe);
          yield out;
        }
        if (!(await more())) throw invalid("multipart body ends inside a part (no closing delimiter)");
      }
    };
    const gen = body();
    yield { headers, body: gen };
    // The consumer may have stopped early: skip the rest of the part.
    if (!done) for await (const chunk of gen) void chunk;
  }
}
