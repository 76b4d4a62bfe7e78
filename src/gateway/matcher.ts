/**
 * Finds every covered form of a set of secrets in a buffer (docs/gateway.md, "Redaction"):
 * - whole-string forms (raw, hex, base64; encoded.ts) by sampling: every `stride` bytes the next 4
 *   bytes (line breaks skipped, case and base64 alphabet folded) are looked up among the 4-grams
 *   of all forms (grams.ts). A form of F characters contains a whole sample when F ≥ stride + 3, so
 *   one pass reads ~4/stride of the bytes whatever the number of secrets; a hit is checked exactly
 *   (walkForm). Forms shorter than MIN_SAMPLED are searched with Buffer#indexOf, exactly.
 * - escape mixtures (escapes.ts): such a match is a literal prefix of the secret, then an escape
 *   unit, whose first byte is `%`, `+`, `\` or `&` (an introducer), then anything. From each
 *   introducer the secret is matched back over its literal prefix and forward through the mixture.
 *   Where introducers are rare, Buffer#indexOf finds them at memory speed; where they are frequent
 *   (random bytes, URL-encoded forms, HTML) only those inside runs of the escape alphabet long
 *   enough to hold a secret are looked at, and the sampler finds those runs.
 */
import * as encoded from "./encoded.ts";
import { BASE64, CANON_B64, CANON_HEX, CANON_RAW, HEX, MIN_CORE, RAW, base64Core, isBreak, type Form } from "./encoded.ts";
import * as escapes from "./escapes.ts";
import { INTRODUCERS, MAX_UNIT, PERCENT, escapeAlphabet } from "./escapes.ts";
import * as grams from "./grams.ts";
import { GramIndex } from "./grams.ts";

// What the hot loops use, as constants of this module: under tsx (tests, benchmarks) every read of
// an imported binding is a getter call, which costs up to half the scan's time.
const { FOLD, GRAM, keyAt } = grams;
const { unitAt, unitLeadByte, matchEscaped } = escapes;
const { walkForm, withBreaks, hexText, base64Replacement } = encoded;

export interface Match {
  start: number;
  end: number;
  text: Buffer;
}

export interface SecretPair {
  secret: Buffer;
  placeholder: Buffer;
}

/** Forms shorter than this are searched with indexOf (exactly: no line breaks, no mixed case). */
const MIN_SAMPLED = 16;
/** How much of a buffer decides between finding introducers with indexOf and looking in runs. */
const PROBE = 8192;
const NONE: readonly number[] = [];
/** Bytes of hex and base64 forms: both alphabets, `=`, CR and LF. */
const WHOLE_FORM_BYTES = new Uint8Array(256).map((_, c) => (/[A-Za-z0-9+/=_\r\n-]/.test(String.fromCharCode(c)) ? 1 : 0));

/** Longest span a match of an n-byte secret can have in a response, in any covered form. */
export function maxSpan(n: number): number {
  const base64 = 4 * Math.ceil((n + 2) / 3) + 2; // whole groups and padding
  return Math.max(MAX_UNIT * n, 3 * 2 * n, 3 * base64); // ×3: a line break of ≤ 2 bytes after each character
}

export class Matcher {
  /** The longest span any match can have (see maxSpan). */
  readonly maxSpan: number;
  /** The fewest bytes any match can have. */
  readonly minSpan: number;
  private readonly pairs: SecretPair[];
  private readonly percent: Buffer[];
  private readonly forms: Form[] = [];
  private readonly literal: Form[] = [];
  private readonly stride: number;
  private readonly grams: GramIndex | null;
  /** For each byte value: which secrets have it, and where (to match back from an escape). */
  private readonly occursSecret: (readonly number[])[] = new Array<readonly number[]>(256).fill(NONE);
  private readonly occursAt: (readonly number[])[] = new Array<readonly number[]>(256).fill(NONE);
  private readonly introducers: number[];
  private readonly starts = new Uint8Array(256);
  /** The escape alphabet (escapeAlphabet): 1, and 2 for the introducers in it. */
  private readonly alphabet: Uint8Array;
  /** Whether every escape mixture covers a whole sample, so looking only in runs around samples is enough. */
  private readonly runsBound: boolean;
  /** Every byte some match can hold: the escape alphabet, base64, hex, `=`, CR and LF. */
  private readonly formBytes: Uint8Array;
  /** Whether a secret starts with CR or LF (then a match can). */
  private readonly breakStarts: boolean;
  private readonly shortestSecret: number;

  constructor(pairs: SecretPair[]) {
    this.pairs = pairs;
    this.percent = pairs.map((p) => Buffer.from(encodeURIComponent(p.placeholder.toString())));
    this.pairs.forEach(({ secret }, i) => {
      this.addForm({ kind: RAW, secret: i, chars: secret, canon: CANON_RAW, align: 0 });
      if (secret.length >= 4) this.addForm({ kind: HEX, secret: i, chars: Buffer.from(secret.toString("hex")), canon: CANON_HEX, align: 0 });
      for (const align of [0, 1, 2]) {
        const core = base64Core(secret, align);
        if (core.length >= MIN_CORE) this.addForm({ kind: BASE64, secret: i, chars: core, canon: CANON_B64, align });
      }
      for (let at = 0; at < secret.length; at++) {
        const b = secret[at]!;
        if (this.occursSecret[b] === NONE) [this.occursSecret[b], this.occursAt[b]] = [[], []];
        (this.occursSecret[b] as number[]).push(i);
        (this.occursAt[b] as number[]).push(at);
      }
    });
    const sampled = this.forms.filter((f) => !this.literal.includes(f));
    let shortest = Infinity;
    let grams = 0;
    for (const f of sampled) [shortest, grams] = [Math.min(shortest, f.chars.length), grams + f.chars.length - GRAM + 1];
    this.stride = Math.max(1, Math.min(64, shortest - GRAM + 1));
    this.grams = sampled.length > 0 ? new GramIndex(grams) : null;
    this.forms.forEach((f, i) => void (this.literal.includes(f) || this.grams!.add(i, f.chars)));
    this.introducers = INTRODUCERS.filter((c) => c !== 0x2b || this.occursSecret[0x20] !== NONE);
    for (const c of this.introducers) this.starts[c] = 1;
    this.alphabet = escapeAlphabet(this.pairs.map((p) => p.secret));
    for (const c of this.introducers) this.alphabet[c] = 2;
    this.breakStarts = this.pairs.some((p) => isBreak(p.secret[0]));
    this.formBytes = new Uint8Array(256);
    for (let c = 0; c < 256; c++) this.formBytes[c] = this.alphabet[c]! | WHOLE_FORM_BYTES[c]!;
    this.shortestSecret = Math.min(...this.pairs.map((p) => p.secret.length));
    this.runsBound = this.grams !== null && this.shortestSecret >= this.stride + GRAM - 1;
    this.maxSpan = Math.max(0, ...pairs.map((p) => maxSpan(p.secret.length)));
    this.minSpan = Math.min(this.shortestSecret, ...this.forms.map((f) => f.chars.length));
  }

  /**
   * Where data that may go on must be held back from, looking no further back than `from`: after
   * the last byte no match can hold, at the first byte that is not a line break (no match starts
   * with one, unless a secret does). A match that starts before that point cannot reach past that
   * byte, so it is whole in `buf`. Streamed text (server-sent events) is so released as it comes.
   */
  holdFrom(buf: Buffer, from: number): number {
    let hold = buf.length;
    for (let q = buf.length - 1; q >= from; q--) {
      const c = buf[q]!;
      if (this.formBytes[c] === 0) break;
      if ((c !== 10 && c !== 13) || this.breakStarts) hold = q;
    }
    return hold;
  }

  private addForm(form: Form): void {
    this.forms.push(form);
    if (form.chars.length >= MIN_SAMPLED && !form.chars.includes(10) && !form.chars.includes(13)) return;
    this.literal.push(form);
    if (form.kind === HEX) this.literal.push({ ...form, chars: Buffer.from(form.chars.toString().toUpperCase()) });
    if (form.kind === BASE64) this.literal.push({ ...form, chars: Buffer.from(form.chars.toString().replace(/\+/g, "-").replace(/\//g, "_")) });
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
    if (this.grams) this.sample(buf, out, final, inRuns);
    if (hits) for (const p of hits) this.escaped(buf, p, final, out);
    else if (!inRuns) for (let q = 0; q < buf.length; q++) if (this.starts[buf[q]!] === 1) this.escaped(buf, q, final, out);
    return out;
  }

  /** Where the introducers are, or null when they are frequent (judged on the first PROBE bytes). */
  private introducersIn(buf: Buffer): number[] | null {
    const hits: number[] = [];
    const next: number[] = [];
    for (const c of this.introducers) {
      let p = buf.indexOf(c);
      for (; p >= 0 && p < PROBE; p = buf.indexOf(c, p + 1)) hits.push(p);
      next.push(p);
    }
    // Beyond one in 128 bytes, indexOf at ~35 ns a call costs more than looking in runs.
    if (hits.length > Math.min(PROBE, buf.length) / 128) return null;
    for (let p of next) for (; p >= 0; p = buf.indexOf(buf[p]!, p + 1)) hits.push(p);
    return hits;
  }

  /** Sample every `stride` bytes; with `inRuns`, also match escape mixtures in runs around samples. */
  private sample(buf: Buffer, out: Match[], final: boolean, inRuns: boolean): void {
    const n = buf.length;
    const { stride, alphabet: a } = this;
    const grams = this.grams!;
    const introducers: number[] = [];
    let runEnd = 0;
    for (let p = 0; p + GRAM <= n; p += stride) {
      const w = buf[p]!;
      const x = buf[p + 1]!;
      const y = buf[p + 2]!;
      const z = buf[p + 3]!;
      if (inRuns && p >= runEnd && a[w] !== 0 && a[x] !== 0 && a[y] !== 0 && a[z] !== 0) runEnd = this.run(buf, p, introducers, final, out);
      const f0 = FOLD[w]!;
      const f1 = FOLD[x]!;
      const f2 = FOLD[y]!;
      const f3 = FOLD[z]!;
      if (f0 === 0 || f1 === 0 || f2 === 0 || f3 === 0) this.sampleAcrossBreaks(buf, p, out, final);
      else if (grams.mayHave(f0 | (f1 << 8) | (f2 << 16) | (f3 << 24))) this.check(buf, p, f0 | (f1 << 8) | (f2 << 16) | (f3 << 24), out, final);
    }
  }

  /** A sample with a line break in its four bytes: the four bytes from `p` that are not breaks. */
  private sampleAcrossBreaks(buf: Buffer, p: number, out: Match[], final: boolean): void {
    let key = 0;
    let got = 0;
    let q = -1;
    for (let j = p; j < buf.length && got < GRAM; j++) {
      const f = FOLD[buf[j]!]!;
      if (f === 0) continue;
      if (q < 0) q = j;
      key |= f << (8 * got++);
    }
    if (got === GRAM && this.grams!.mayHave(key)) this.check(buf, q, key, out, final);
  }

  /** Every form that has 4-gram `key` at `buf[q]` and is written around it. */
  private check(buf: Buffer, q: number, key: number, out: Match[], final: boolean): void {
    const g = this.grams!;
    // The 4 bytes before and after rule out most places at once (unless a line break is there).
    const before = keyAt(buf, q - GRAM);
    const after = keyAt(buf, q + GRAM);
    for (let e = g.first(key); e >= 0; e = g.next[e]!) {
      const seen = g.before[e] === 1 ? before : after;
      if (seen !== 0 && seen !== g.near[e]) continue;
      const form = this.forms[g.form[e]!]!;
      const span = walkForm(buf, q, g.offset[e]!, form, buf.length);
      if (span) this.found(buf, form, span[0], span[1], final, out);
    }
  }

  /** Escape mixtures in the run of the escape alphabet around `p`; returns where the run ends. */
  private run(buf: Buffer, p: number, introducers: number[], final: boolean, out: Match[]): number {
    const a = this.alphabet;
    const n = buf.length;
    let count = 0; // introducers[0, count) are this run's
    let from = p;
    for (; from > 0; from--) {
      const k = a[buf[from - 1]!]!;
      if (k === 0) break;
      if (k === 2) introducers[count++] = from - 1;
    }
    let to = p;
    for (; to < n; to++) {
      const k = a[buf[to]!]!;
      if (k === 0) break;
      if (k === 2) introducers[count++] = to;
    }
    if (to - from >= this.shortestSecret) for (let i = 0; i < count; i++) this.escaped(buf, introducers[i]!, final, out);
    return to;
  }

  /** `bytes` with every secret replaced by its placeholder (for what base64Replacement decodes). */
  private readonly swapRaw = (bytes: Buffer): Buffer => {
    for (const { secret, placeholder } of [...this.pairs].sort((a, b) => b.secret.length - a.secret.length)) {
      const parts: Buffer[] = [];
      let from = 0;
      for (let at = bytes.indexOf(secret); at >= 0; at = bytes.indexOf(secret, from)) {
        parts.push(bytes.subarray(from, at), placeholder);
        from = at + secret.length;
      }
      if (parts.length > 0) bytes = Buffer.concat([...parts, bytes.subarray(from)]);
    }
    return bytes;
  };

  /** Record a whole-string match with the placeholder in the same form. */
  private found(buf: Buffer, form: Form, start: number, end: number, final: boolean, out: Match[]): void {
    const { placeholder, secret } = this.pairs[form.secret]!;
    switch (form.kind) {
      case RAW:
        return void out.push({ start, end, text: withBreaks(buf, start, end, placeholder) });
      case HEX:
        return void out.push({ start, end, text: withBreaks(buf, start, end, hexText(buf, start, end, placeholder)) });
      case BASE64: {
        const m = base64Replacement(buf, start, end, form.align, secret.length, placeholder, maxSpan(secret.length), this.swapRaw, buf.length, final);
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
