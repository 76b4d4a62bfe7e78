/**
 * The 4-grams of the whole-string forms of a session's secrets, for the sampler in matcher.ts.
 * Built once per response, so it is made of typed arrays (a few microseconds to build): a bitmap
 * that rejects almost every sample with one load, and an open-addressing table from each 4-gram
 * to the places it has in the forms.
 */

export const GRAM = 4;

/** How the sampler reads a byte: case and base64 alphabet folded, line breaks 0 (skipped), NUL 1. */
export const FOLD = new Uint8Array(256).map((_, c) =>
  c === 10 || c === 13 ? 0 : c === 0 ? 1 : c >= 0x41 && c <= 0x5a ? c | 0x20 : c === 0x2d ? 0x2b : c === 0x5f ? 0x2f : c,
);

export function gramKey(a: number, b: number, c: number, d: number): number {
  return a | (b << 8) | (c << 16) | (d << 24);
}

/** The key of the 4 folded bytes at `buf[i]`, or 0 when one of them is a line break (or out of range). */
export function keyAt(buf: Uint8Array, i: number): number {
  if (i < 0 || i + GRAM > buf.length) return 0;
  const a = FOLD[buf[i]!]!;
  const b = FOLD[buf[i + 1]!]!;
  const c = FOLD[buf[i + 2]!]!;
  const d = FOLD[buf[i + 3]!]!;
  return a === 0 || b === 0 || c === 0 || d === 0 ? 0 : gramKey(a, b, c, d);
}

function hash(key: number, bits: number): number {
  return Math.imul(key, 0x9e3779b1) >>> (32 - bits);
}

export class GramIndex {
  /** About 32 bits per gram: one sample in ~32 that is no gram still passes it. */
  private readonly bitmapBits: number;
  private readonly bitmap: Int32Array;
  private readonly bits: number;
  private readonly keys: Int32Array;
  /** Per slot: first entry + 1 (0: empty). */
  private readonly heads: Int32Array;
  /** Per entry: the form's index, the gram's offset in it, the key of the 4 characters before
   * it (or after it, at the form's start; `before` says which), the next entry of the same gram. */
  readonly form: Int32Array;
  readonly offset: Int32Array;
  readonly near: Int32Array;
  readonly before: Uint8Array;
  readonly next: Int32Array;
  private count = 0;

  constructor(capacity: number) {
    this.bitmapBits = Math.max(10, Math.min(20, Math.ceil(Math.log2(capacity * 32))));
    this.bitmap = new Int32Array(1 << (this.bitmapBits - 5));
    this.bits = Math.max(4, Math.ceil(Math.log2(capacity * 2 + 1)));
    this.keys = new Int32Array(1 << this.bits);
    this.heads = new Int32Array(1 << this.bits);
    this.form = new Int32Array(capacity);
    this.offset = new Int32Array(capacity);
    this.near = new Int32Array(capacity);
    this.before = new Uint8Array(capacity);
    this.next = new Int32Array(capacity).fill(-1);
  }

  /** Index every 4-gram of `chars` (at least 2 grams long, no line breaks) as form number `form`. */
  add(form: number, chars: Uint8Array): void {
    const keys = new Int32Array(chars.length - GRAM + 1);
    for (let o = 0, key = 0; o < chars.length; o++) {
      key = (key >>> 8) | (FOLD[chars[o]!]! << 24);
      if (o >= GRAM - 1) keys[o - GRAM + 1] = key;
    }
    const { bitmap, bitmapBits, bits, heads } = this;
    const mask = (1 << bits) - 1;
    for (let o = 0; o < keys.length; o++) {
      const key = keys[o]!;
      const bit = hash(key, bitmapBits);
      bitmap[bit >>> 5]! |= 1 << (bit & 31);
      const e = this.count++;
      this.form[e] = form;
      this.offset[e] = o;
      this.before[e] = o >= GRAM ? 1 : 0;
      this.near[e] = keys[o >= GRAM ? o - GRAM : o + GRAM]!;
      let slot = hash(key, bits);
      while (this.keys[slot] !== 0 && this.keys[slot] !== key) slot = (slot + 1) & mask;
      this.keys[slot] = key;
      this.next[e] = heads[slot]! - 1;
      heads[slot] = e + 1;
    }
  }

  /** Whether `key` may be a gram of a form (false: certainly not). */
  mayHave(key: number): boolean {
    const bit = hash(key, this.bitmapBits);
    return (this.bitmap[bit >>> 5]! & (1 << (bit & 31))) !== 0;
  }

  /** The first entry of gram `key`, or -1; go on with `next[entry]`. */
  first(key: number): number {
    return this.heads[this.slot(key)]! - 1;
  }

  /** The slot holding `key`, or the empty one where it would go (keys are never 0: see keyAt). */
  private slot(key: number): number {
    const mask = (1 << this.bits) - 1;
    let s = hash(key, this.bits);
    while (this.keys[s] !== 0 && this.keys[s] !== key) s = (s + 1) & mask;
    return s;
  }
}
