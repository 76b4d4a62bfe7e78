/**
 * Response redaction (DESIGN.md invariant 1): every secret value of the session that an upstream
 * echoes is replaced by its placeholder before a byte reaches the sandbox, in raw, URL-encoded and
 * base64 forms (at each of the three byte alignments, so a secret inside a larger base64 blob such
 * as `user:SECRET` is caught too), across chunk boundaries.
 */
import { Transform, type TransformCallback } from "node:stream";

export interface Replacement {
  from: Buffer;
  to: Buffer;
}

/** Shortest secret form worth matching inside a base64 blob (shorter cores would hit noise). */
const MIN_CORE = 8;

/** Base64 characters that depend only on `value`'s bytes when it starts `offset` bytes into a blob. */
function base64Core(value: Buffer, offset: number): string {
  const b64 = Buffer.concat([Buffer.alloc(offset), value]).toString("base64");
  const start = Math.ceil((8 * offset) / 6);
  const end = Math.floor((8 * (offset + value.length)) / 6);
  return b64.slice(start, end);
}

/** Every form of `secret` to replace, each mapped to the same form of `placeholder`; longest first. */
export function replacementsFor(pairs: { secret: string; placeholder: string }[]): Replacement[] {
  const out = new Map<string, string>();
  for (const { secret, placeholder } of pairs) {
    if (secret === "" || secret === placeholder) continue;
    const s = Buffer.from(secret);
    const p = Buffer.from(placeholder);
    out.set(secret, placeholder);
    out.set(encodeURIComponent(secret), encodeURIComponent(placeholder));
    out.set(s.toString("base64"), p.toString("base64"));
    out.set(s.toString("base64url"), p.toString("base64url"));
    for (const offset of [0, 1, 2]) {
      const core = base64Core(s, offset);
      if (core.length >= MIN_CORE) out.set(core, base64Core(p, offset));
    }
  }
  return [...out.entries()]
    .filter(([from]) => from !== "")
    .sort((a, b) => b[0].length - a[0].length)
    .map(([from, to]) => ({ from: Buffer.from(from), to: Buffer.from(to) }));
}

/**
 * The first occurrence at or after `start` (and before `limit`) of any form: the earliest wins,
 * and at one position the longest (`reps` is sorted longest first). Buffer#indexOf is native, so
 * scanning a body costs little more than reading it; `next` caches each form's next position.
 */
function nextHit(buf: Buffer, start: number, limit: number, reps: Replacement[], next: number[]): { at: number; rep: Replacement } | null {
  let best: { at: number; rep: Replacement } | null = null;
  reps.forEach((r, k) => {
    let at = next[k] ?? -1;
    if (at !== -2 && at < start) {
      at = buf.indexOf(r.from, start);
      next[k] = at === -1 ? -2 : at; // -2: no further occurrence in this buffer
    }
    if (at < 0 || at >= limit) return;
    if (!best || at < best.at) best = { at, rep: r };
  });
  return best;
}

/** Redact the matches that start before `limit`; returns the output and where scanning stopped. */
function redactUpTo(buf: Buffer, limit: number, reps: Replacement[]): { parts: Buffer[]; end: number } {
  const parts: Buffer[] = [];
  const next: number[] = reps.map(() => -1);
  let from = 0;
  for (let hit = nextHit(buf, 0, limit, reps, next); hit; hit = nextHit(buf, from, limit, reps, next)) {
    parts.push(buf.subarray(from, hit.at), hit.rep.to);
    from = hit.at + hit.rep.from.length;
  }
  return { parts, end: from };
}

/** Replace every occurrence of every form in `buf`; left to right, longest form first at each position. */
export function replaceAll(buf: Buffer, reps: Replacement[]): Buffer {
  if (reps.length === 0) return buf;
  const { parts, end } = redactUpTo(buf, buf.length, reps);
  if (parts.length === 0) return buf;
  parts.push(buf.subarray(end));
  return Buffer.concat(parts);
}

export function redactText(text: string, reps: Replacement[]): string {
  return replaceAll(Buffer.from(text, "latin1"), reps).toString("latin1");
}

/**
 * A stream that redacts across chunk boundaries: it holds back the last (longest form − 1) bytes
 * of each chunk, which is the most a form split over two chunks can have in the first one.
 */
export class RedactStream extends Transform {
  private carry: Buffer = Buffer.alloc(0);
  private readonly keep: number;

  constructor(private readonly reps: Replacement[]) {
    super();
    this.keep = Math.max(0, ...reps.map((r) => r.from.length - 1));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const buf = Buffer.concat([this.carry, chunk]);
    // Only bytes that are certainly not the start of a split form may go out; find a cut point
    // that is not inside a replaced region by redacting the emit part and the tail separately.
    const cut = Math.max(0, buf.length - this.keep);
    const [head, tail] = this.split(buf, cut);
    this.carry = tail;
    if (head.length > 0) this.push(head);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    const out = replaceAll(this.carry, this.reps);
    if (out.length > 0) this.push(out);
    cb();
  }

  /** Redact `buf`, then return what is safe to emit and the raw bytes to carry. A match that starts
   * before `cut` is complete within `buf` (no form is longer than keep + 1), so it is replaced here. */
  private split(buf: Buffer, cut: number): [Buffer, Buffer] {
    const { parts, end } = redactUpTo(buf, cut, this.reps);
    // Emit up to the cut (or past it, when a replaced match ran over it); carry the rest raw.
    const emitTo = Math.max(end, cut);
    parts.push(buf.subarray(end, emitTo));
    return [parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts), Buffer.from(buf.subarray(emitTo))];
  }
}
