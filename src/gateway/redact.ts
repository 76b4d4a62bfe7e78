/**
 * Response redaction (DESIGN.md invariant 1): every secret value of the session that an upstream
 * echoes is replaced by its placeholder before a byte reaches the sandbox — raw, in any mixture of
 * percent, JSON and HTML escapes, as hex, or as base64 (docs/gateway.md, "Redaction", lists every
 * covered form and what is out of reach). The body is streamed: RedactStream holds back only the
 * last bytes of what it has seen, as many as a split match could have in them.
 */
import { Transform, type TransformCallback } from "node:stream";
import { Matcher, type Match } from "./matcher.ts";
import { caselessForms, nameHolds } from "./names.ts";

/** A secret value and the placeholder that replaces it (every form is derived from these two). */
export interface Replacement {
  from: Buffer;
  to: Buffer;
}

/** The replacements for a session's secrets: empty secrets and ones equal to their placeholder dropped. */
export function replacementsFor(pairs: { secret: string; placeholder: string }[]): Replacement[] {
  const out = new Map<string, string>();
  for (const { secret, placeholder } of pairs) if (secret !== "" && secret !== placeholder) out.set(secret, placeholder);
  return [...out].map(([from, to]) => ({ from: Buffer.from(from), to: Buffer.from(to) }));
}

/**
 * The matches to replace, left to right: at one position the longest. Matches that overlap (two
 * secrets sharing bytes) are replaced as one region by both placeholders, so no part of either is
 * left. Only regions that start before `limit` are returned.
 */
function plan(found: Match[], limit: number): Match[] {
  found.sort((a, b) => a.start - b.start || b.end - a.end);
  const chosen: Match[] = [];
  for (const m of found) {
    const last = chosen.at(-1);
    if (last && m.start < last.end) {
      if (m.end > last.end) chosen[chosen.length - 1] = { start: last.start, end: m.end, text: Buffer.concat([last.text, m.text]) };
      continue;
    }
    if (m.start >= limit) break;
    chosen.push(m);
  }
  return chosen;
}

/** Bytes `[from, to)` of the data that `pieces` hold one after the other, without copying. */
function slice(pieces: Buffer[], from: number, to: number): Buffer[] {
  const out: Buffer[] = [];
  let base = 0;
  for (const p of pieces) {
    const a = Math.max(from, base);
    const b = Math.min(to, base + p.length);
    if (a < b) out.push(p.subarray(a - base, b - base));
    base += p.length;
  }
  return out;
}

/** One session's redaction, compiled once per response and used for its head and its body. */
export class Redactor {
  /**
   * Bytes a stream must hold back: a match can span maxSpan bytes, and one that overlaps a match
   * starting just before the cut must be whole in the buffer too.
   */
  readonly keep: number;
  private readonly matcher: Matcher | null;
  private nameForms: string[] | null = null;

  constructor(private readonly reps: Replacement[]) {
    this.matcher = reps.length > 0 ? new Matcher(reps.map((r) => ({ secret: r.from, placeholder: r.to }))) : null;
    this.keep = this.matcher ? 2 * this.matcher.maxSpan - 1 : 0;
  }

  get empty(): boolean {
    return this.matcher === null;
  }

  /** Every match in `buf` (see Matcher#find). */
  find(buf: Buffer, final: boolean): Match[] {
    return this.matcher ? this.matcher.find(buf, final) : [];
  }

  /** See Matcher#holdFrom. */
  holdFrom(buf: Buffer, from: number): number {
    return this.matcher ? this.matcher.holdFrom(buf, from) : buf.length;
  }

  /** The regions to replace among `found`: those that start before `limit` (see plan). */
  plan(found: Match[], limit: number): Match[] {
    return plan(found, limit);
  }

  buffer(buf: Buffer): Buffer {
    const chosen = plan(this.find(buf, true), buf.length);
    if (chosen.length === 0) return buf;
    const parts: Buffer[] = [];
    let from = 0;
    for (const m of chosen) {
      parts.push(buf.subarray(from, m.start), m.text);
      from = m.end;
    }
    parts.push(buf.subarray(from));
    return Buffer.concat(parts);
  }

  /** For header values and status lines, which Node hands over as latin1 strings. */
  text(text: string): string {
    return this.buffer(Buffer.from(text, "latin1")).toString("latin1");
  }

  /** Whether a header name holds a form of a secret, compared without case (see names.ts). */
  nameLeaks(name: string): boolean {
    if (!this.matcher || name.length < this.matcher.minSpan) return false;
    this.nameForms ??= this.reps.flatMap((r) => caselessForms(r.from));
    return nameHolds(name, this.nameForms);
  }
}

/** Replace every form of every secret in `buf`. */
export function replaceAll(buf: Buffer, reps: Replacement[]): Buffer {
  return new Redactor(reps).buffer(buf);
}

export function redactText(text: string, reps: Replacement[]): string {
  return new Redactor(reps).text(text);
}

/**
 * A stream that redacts across chunk boundaries. It holds back at most the last `keep` bytes it
 * has seen (the carry), and only from where a match could start and go on past what it has
 * (Redactor#holdFrom): a match that starts before lies wholly in what it has, so it is replaced
 * now; the rest waits for the next chunk (or the end). A chunk is not copied behind the carry: matches
 * that start in the carry are looked for in the carry and the first bytes of the chunk (the seam),
 * the others in the chunk itself.
 */
export class RedactStream extends Transform {
  private carry: Buffer = Buffer.alloc(0);
  private readonly redactor: Redactor;

  constructor(redactor: Redactor | Replacement[]) {
    super();
    this.redactor = redactor instanceof Redactor ? redactor : new Redactor(redactor);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const { keep } = this.redactor;
    if (this.redactor.empty) return cb(null, chunk);
    const c = this.carry.length;
    if (chunk.length <= 2 * keep) {
      // Small chunks: simply join them to the carry.
      const buf = Buffer.concat([this.carry, chunk]);
      const cut = this.redactor.holdFrom(buf, Math.max(0, buf.length - keep));
      if (cut === 0) return void ((this.carry = buf), cb());
      return this.release(this.redactor.plan(this.redactor.find(buf, false), cut), [buf], cut, cb);
    }
    const cut = c + this.redactor.holdFrom(chunk, chunk.length - keep);
    const seam = Buffer.concat([this.carry, chunk.subarray(0, keep)]);
    const found = this.redactor.find(seam, false).filter((m) => m.start < c);
    for (const m of this.redactor.find(chunk, false)) found.push({ start: m.start + c, end: m.end + c, text: m.text });
    this.release(this.redactor.plan(found, cut), [this.carry, chunk], cut, cb);
  }

  /** Push the data `pieces` hold (one after the other) up to `cut`, `chosen` replaced; carry the rest raw. */
  private release(chosen: Match[], pieces: Buffer[], cut: number, cb: TransformCallback): void {
    const out: Buffer[] = [];
    let from = 0;
    for (const m of chosen) {
      out.push(...slice(pieces, from, m.start), m.text);
      from = m.end;
    }
    // Up to the cut, or past it when a replaced match ran over it.
    const emitTo = Math.max(from, cut);
    out.push(...slice(pieces, from, emitTo));
    this.carry = Buffer.concat(slice(pieces, emitTo, Infinity));
    for (const b of out) if (b.length > 0) this.push(b);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    const out = this.redactor.buffer(this.carry);
    if (out.length > 0) this.push(out);
    cb();
  }
}
