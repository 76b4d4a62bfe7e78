/**
 * Finds every covered form of a set of secrets in a buffer (docs/gateway.md, "Redaction"):
 * - whole-string forms (raw, hex, base64; encoded.ts) by sampling: every `stride` bytes the next 4
 *   characters (line breaks skipped, case and base64 alphabet folded) are looked up in a bitmap of
 *   the 4-grams of all forms. A form of F characters contains a sample whenever F ≥ stride + 3,
 *   so one pass in JavaScript reads ~1/stride of the bytes whatever the number of secrets; a hit
 *   is checked exactly (walkForm). Forms too short for that are searched with Buffer#indexOf.
 * - escape mixtures (escapes.ts): such a match starts with a literal prefix of the secret and
 *   then an escape unit, whose first byte is `%`, `+`, `\` or `&`: those bytes are found with
 *   Buffer#indexOf (native, fast when rare), and from each the secret is matched backwards over
 *   its literal prefix and forwards through any mixture.
 */
import { BASE64, CANON_B64, CANON_HEX, CANON_RAW, HEX, MIN_CORE, RAW, base64Core, base64Replacement, hexText, isBreak, walkForm, withBreaks, type Form } from "./encoded.ts";
import { INTRODUCERS, MAX_UNIT, PERCENT, escapeAlphabet, matchEscaped, unitAt, unitLeadByte } from "./escapes.ts";

export interface Match {
  start: number;
  end: number;
  text: Buffer;
}

export interface SecretPair {
  secret: Buffer;
  placeholder: Buffer;
}

/** Forms shorter than this are searched with indexOf (exactly, no line breaks) instead of sampled. */
const MIN_SAMPLED = 16;
const GRAM = 4;
const BITMAP_BITS = 18;
/** How much of a buffer decides between finding escapes with indexOf and looking in runs. */
const PROBE = 8192;

/** How the sampler reads a byte: case and base64 alphabet folded, line breaks 0 (skipped), NUL 1. */
const FOLD = new Uint8Array(256).map((_, c) => (c === 10 || c === 13 ? 0 : c === 0 ? 1 : c >= 0x41 && c <= 0x5a ? c | 0x20 : c === 0x2d ? 0x2b : c === 0x5f ? 0x2f : c));

function gramKey(a: number, b: number, c: number, d: number): number {
  return a | (b << 8) | (c << 16) | (d << 24);
}

/** Whether a key holds a line break (folded to 0), so its bytes are not the form's next four. */
function hasZeroByte(key: number): boolean {
  return (key & 0xff) === 0 || (key & 0xff00) === 0 || (key & 0xff0000) === 0 || (key & 0xff000000) === 0;
}

function bitOf(key: number): number {
  return Math.imul(key, 0x9e3779b1) >>> (32 - BITMAP_BITS);
}

/** Longest span a match of an n-byte secret can have in a response, in any covered form. */
export function maxSpan(n: number): number {
  const base64 = 4 * Math.ceil((n + 2) / 3) + 2;
  return Math.max(MAX_UNIT * n, 3 * 2 * n, 3 * base64);
}

export class Matcher {
  /** The longest span any match can have (see maxSpan). */
  readonly maxSpan: number;
  private readonly pairs: SecretPair[];
  private readonly percent: Buffer[];
  private readonly sampled: Form[] = [];
  private readonly literal: Form[] = [];
  private readonly stride: number;
  private readonly bitmap = new Int32Array(1 << (BITMAP_BITS - 5));
  /** Each 4-gram's places in the forms, with the folded 4 characters before (or, at the start, after) it. */
  private readonly grams = new Map<number, { form: Form; offset: number; near: number; before: boolean }[]>();
  /** For each byte value: which secrets have it (occursSecret), where (occursAt); to match back from an escape. */
  private readonly occursSecret: number[][] = Array.from({ length: 256 }, () => []);
  private readonly occursAt: number[][] = Array.from({ length: 256 }, () => []);
  private readonly introducers: number[];
  private readonly starts = new Uint8Array(256);
  /** Bytes an escape mixture of a secret can consist of (escapeAlphabet). */
  private readonly alphabet: Uint8Array;
  /** Whether every escape mixture must cover a whole sample (then only runs of `alphabet` around samples are looked at). */
  private readonly runsBound: boolean;
  private readonly shortestSecret: number;

  /** `caseless`: for header names, which Node lower-cases: secrets are lower-cased and base64 is
   * matched as lower-cased text (it cannot be decoded any more). */
  constructor(pairs: SecretPair[], caseless = false) {
    this.pairs = caseless ? pairs.map((p) => ({ secret: Buffer.from(p.secret.toString("latin1").toLowerCase(), "latin1"), placeholder: p.placeholder })) : pairs;
    this.percent = pairs.map((p) => Buffer.from(encodeURIComponent(p.placeholder.toString())));
    this.pairs.forEach(({ secret }, i) => {
      this.addForm({ kind: RAW, secret: i, chars: secret, canon: CANON_RAW, align: 0 });
      const original = pairs[i]!.secret;
      if (secret.length >= 4) this.addForm({ kind: HEX, secret: i, chars: Buffer.from(original.toString("hex")), canon: CANON_HEX, align: 0 });
      for (const align of [0, 1, 2]) {
        const core = base64Core(original, align);
        if (core.length < MIN_CORE) continue;
        if (!caseless) this.addForm({ kind: BASE64, secret: i, chars: core, canon: CANON_B64, align });
        else for (const t of [core.toString(), core.toString().replace(/\+/g, "-").replace(/\//g, "_")]) this.addForm({ kind: RAW, secret: i, chars: Buffer.from(t.toLowerCase()), canon: CANON_RAW, align: 0 });
      }
      secret.forEach((b, at) => void (this.occursSecret[b]!.push(i), this.occursAt[b]!.push(at)));
    });
    const shortest = Math.min(...this.sampled.map((f) => f.chars.length));
    this.stride = Math.max(1, Math.min(64, shortest - GRAM + 1));
    for (const form of this.sampled) {
      for (let o = 0; o + GRAM <= form.chars.length; o++) {
        const c = form.chars;
        const key = gramKey(FOLD[c[o]!]!, FOLD[c[o + 1]!]!, FOLD[c[o + 2]!]!, FOLD[c[o + 3]!]!);
        const bit = bitOf(key);
        this.bitmap[bit >>> 5]! |= 1 << (bit & 31);
        let list = this.grams.get(key);
        if (!list) this.grams.set(key, (list = []));
        const before = o >= GRAM;
        const n = before ? o - GRAM : o + GRAM; // forms are ≥ 2 grams long (MIN_SAMPLED)
        list.push({ form, offset: o, near: gramKey(FOLD[c[n]!]!, FOLD[c[n + 1]!]!, FOLD[c[n + 2]!]!, FOLD[c[n + 3]!]!), before });
      }
    }
    this.introducers = INTRODUCERS.filter((c) => c !== 0x2b || this.occursSecret[0x20]!.length > 0);
    for (const c of this.introducers) this.starts[c] = 1;
    this.alphabet = escapeAlphabet(new Set(this.pairs.flatMap((p) => [...p.secret])));
    this.shortestSecret = Math.min(...this.pairs.map((p) => p.secret.length));
    // A mixture is at least as long as its secret; a sample (4 bytes every `stride`) lies wholly in it
    // when it is stride + 3 bytes long.
    this.runsBound = this.sampled.length > 0 && this.shortestSecret >= this.stride + GRAM - 1;
    this.maxSpan = Math.max(0, ...pairs.map((p) => maxSpan(p.secret.length)));
  }

  private addForm(form: Form): void {
    const hasBreak = form.chars.some((c) => isBreak(c));
    if (form.chars.length >= MIN_SAMPLED && !hasBreak) return void this.sampled.push(form);
    if (form.kind === HEX) {
      // Searched exactly: in lower and in upper case.
      this.literal.push(form, { ...form, chars: Buffer.from(form.chars.toString().toUpperCase()) });
    } else if (form.kind === BASE64) {
      this.literal.push(form, { ...form, chars: Buffer.from(form.chars.toString().replace(/\+/g, "-").replace(/\//g, "_")) });
    } else this.literal.push(form);
  }

  /**
   * Every match in `buf` that lies wholly inside it (unsorted; they may overlap). `final`: no more
   * data follows, so an escape or a base64 group cut off by the end is complete as it is.
   */
  find(buf: Buffer, final: boolean): Match[] {
    const out: Match[] = [];
    for (const form of this.literal) {
      for (let at = buf.indexOf(form.chars); at >= 0; at = buf.indexOf(form.chars, at + 1)) this.found(buf, form, at, at + form.chars.length, final, out);
    }
    const hits = this.introducersIn(buf);
    const inRuns = hits === null && this.runsBound;
    if (this.sampled.length > 0 || inRuns) this.sample(buf, out, final, inRuns);
    if (hits) for (const p of hits) this.escaped(buf, p, final, out);
    else if (!inRuns) for (let q = 0; q < buf.length; q++) if (this.starts[buf[q] as number] === 1) this.escaped(buf, q, final, out);
    return out;
  }

  /**
   * Where the bytes that can start an escape are, or null when they are frequent (judged on the
   * first PROBE bytes). Buffer#indexOf finds rare bytes at memory speed but costs ~35 ns a call;
   * where they are frequent (random bytes, URL-encoded forms, HTML), escape mixtures are looked
   * for only in runs of the escape alphabet long enough to hold a secret (`inRuns` in sample).
   */
  private introducersIn(buf: Buffer): number[] | null {
    const hits: number[] = [];
    const next: number[] = [];
    for (const c of this.introducers) {
      let p = buf.indexOf(c);
      for (; p >= 0 && p < PROBE; p = buf.indexOf(c, p + 1)) hits.push(p);
      next.push(p);
    }
    if (hits.length > Math.min(PROBE, buf.length) / 128) return null;
    for (let p of next) for (; p >= 0; p = buf.indexOf(buf[p]!, p + 1)) hits.push(p);
    return hits;
  }

  /**
   * Sample every `stride` bytes (see the file comment). With `inRuns`, also match escape mixtures
   * in the runs of the escape alphabet around samples: a mixture is at least as long as its secret,
   * so it covers a whole sample (runsBound).
   */
  private sample(buf: Buffer, out: Match[], final: boolean, inRuns: boolean): void {
    const n = buf.length;
    const { stride, bitmap, alphabet: a } = this;
    const introducers: number[] = [];
    let runEnd = 0;
    for (let p = 0; p + GRAM <= n; p += stride) {
      const w = buf[p] as number;
      const x = buf[p + 1] as number;
      const y = buf[p + 2] as number;
      const z = buf[p + 3] as number;
      if (inRuns && p >= runEnd && a[w] === 1 && a[x] === 1 && a[y] === 1 && a[z] === 1) runEnd = this.run(buf, p, introducers, final, out);
      const f0 = FOLD[w] as number;
      const f1 = FOLD[x] as number;
      const f2 = FOLD[y] as number;
      const f3 = FOLD[z] as number;
      if (f0 === 0 || f1 === 0 || f2 === 0 || f3 === 0) {
        this.sampleAcrossBreaks(buf, p, out, final);
        continue;
      }
      const key = gramKey(f0, f1, f2, f3);
      const bit = bitOf(key);
      if ((bitmap[bit >>> 5]! & (1 << (bit & 31))) !== 0) this.check(buf, p, key, out, final);
    }
  }

  /** Escape mixtures in the run of the escape alphabet around `p`; returns where the run ends. */
  private run(buf: Buffer, p: number, introducers: number[], final: boolean, out: Match[]): number {
    const { alphabet: a, starts } = this;
    let count = 0; // introducers[0, count) are this run's
    let from = p;
    while (from > 0 && a[buf[from - 1]!] === 1) if (starts[buf[--from]!] === 1) introducers[count++] = from;
    let to = p;
    for (; to < buf.length && a[buf[to]!] === 1; to++) if (starts[buf[to]!] === 1) introducers[count++] = to;
    if (to - from >= this.shortestSecret) for (let i = 0; i < count; i++) this.escaped(buf, introducers[i]!, final, out);
    return to;
  }

  /** A sample with a line break in its four bytes: the four bytes from `p` that are not breaks. */
  private sampleAcrossBreaks(buf: Buffer, p: number, out: Match[], final: boolean): void {
    let key = 0;
    let got = 0;
    let q = -1;
    for (let j = p; j < buf.length && got < GRAM; j++) {
      const f = FOLD[buf[j] as number] as number;
      if (f === 0) continue;
      if (q < 0) q = j;
      key |= f << (8 * got++);
    }
    const bit = bitOf(key);
    if (got === GRAM && (this.bitmap[bit >>> 5]! & (1 << (bit & 31))) !== 0) this.check(buf, q, key, out, final);
  }

  /** Whether any form whose 4-gram `key` is at `q` is written there. */
  private check(buf: Buffer, q: number, key: number, out: Match[], final: boolean): void {
    const entries = this.grams.get(key);
    if (!entries) return;
    // The 4 bytes before and after the gram rule out most places at once (unless a break is there).
    const before = q >= GRAM ? gramKey(FOLD[buf[q - 4]!]!, FOLD[buf[q - 3]!]!, FOLD[buf[q - 2]!]!, FOLD[buf[q - 1]!]!) : -1;
    const after = q + 2 * GRAM <= buf.length ? gramKey(FOLD[buf[q + 4]!]!, FOLD[buf[q + 5]!]!, FOLD[buf[q + 6]!]!, FOLD[buf[q + 7]!]!) : -1;
    for (const { form, offset, near, before: isBefore } of entries) {
      const seen = isBefore ? before : after;
      if (seen !== -1 && seen !== near && !hasZeroByte(seen)) continue;
      const span = walkForm(buf, q, offset, form, buf.length);
      if (span) this.found(buf, form, span[0], span[1], final, out);
    }
  }

  /** Record a whole-string match with the placeholder in the same form. */
  private found(buf: Buffer, form: Form, start: number, end: number, final: boolean, out: Match[]): void {
    const placeholder = this.pairs[form.secret]!.placeholder;
    switch (form.kind) {
      case RAW:
        return void out.push({ start, end, text: withBreaks(buf, start, end, placeholder) });
      case HEX:
        return void out.push({ start, end, text: withBreaks(buf, start, end, hexText(buf, start, end, placeholder)) });
      case BASE64: {
        const m = base64Replacement(buf, start, end, form.align, this.pairs[form.secret]!.secret.length, placeholder, buf.length, final);
        if (m) out.push(m);
        return;
      }
    }
  }

  /** From the escape unit at `p`, every secret it can stand in, matched over its literal prefix. */
  private escaped(buf: Buffer, p: number, final: boolean, out: Match[]): void {
    const u = unitAt(buf, p, buf.length, final);
    if (u === 0) return;
    const lead = unitLeadByte(u);
    const secrets = this.occursSecret[lead]!;
    const ats = this.occursAt[lead]!;
    for (let t = 0; t < secrets.length; t++) {
      const at = ats[t]!;
      const start = p - at;
      const s = this.pairs[secrets[t]!]!.secret;
      if (start < 0 || (at > 0 && buf[start] !== s[0])) continue;
      let k = 1;
      while (k < at && buf[start + k] === s[k]) k++;
      if (k < at) continue;
      const m = matchEscaped(buf, start, buf.length, final, s);
      if (m) out.push({ start, end: m.end, text: m.families & PERCENT ? this.percent[secrets[t]!]! : this.pairs[secrets[t]!]!.placeholder });
    }
  }
}
