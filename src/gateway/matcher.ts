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
import { BASE64, CANON_B64, CANON_HEX, CANON_RAW, HEX, MIN_CORE, RAW, base64Core, base64Replacement, hexText, isBreak, walkForm, withBreaks, type Form } from "./encoded.ts";
import { INTRODUCERS, MAX_UNIT, PERCENT, escapeAlphabet, matchEscaped, unitAt, unitLeadByte } from "./escapes.ts";
import { FOLD, GRAM, GramIndex, gramKey, keyAt } from "./grams.ts";

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
  private readonly alphabet: Uint8Array;
  /** Whether every escape mixture covers a whole sample, so looking only in runs around samples is enough. */
  private readonly runsBound: boolean;
  private readonly shortestSecret: number;

  /** `caseless`: for header names, which Node lower-cases: secrets are compared lower-cased, and
   * base64 as lower-cased text (it cannot be decoded any more). */
  constructor(pairs: SecretPair[], caseless = false) {
    this.pairs = caseless ? pairs.map((p) => ({ secret: Buffer.from(p.secret.toString("latin1").toLowerCase(), "latin1"), placeholder: p.placeholder })) : pairs;
    this.percent = pairs.map((p) => Buffer.from(encodeURIComponent(p.placeholder.toString())));
    this.pairs.forEach(({ secret }, i) => {
      const original = pairs[i]!.secret;
      this.addForm({ kind: RAW, secret: i, chars: secret, canon: CANON_RAW, align: 0 });
      if (secret.length >= 4) this.addForm({ kind: HEX, secret: i, chars: Buffer.from(original.toString("hex")), canon: CANON_HEX, align: 0 });
      for (const align of [0, 1, 2]) {
        const core = base64Core(original, align);
        if (core.length < MIN_CORE) continue;
        if (!caseless) this.addForm({ kind: BASE64, secret: i, chars: core, canon: CANON_B64, align });
        else for (const t of [core.toString(), core.toString().replace(/\+/g, "-").replace(/\//g, "_")]) this.addForm({ kind: RAW, secret: i, chars: Buffer.from(t.toLowerCase()), canon: CANON_RAW, align: 0 });
      }
      for (let at = 0; at < secret.length; at++) {
        const b = secret[at]!;
        if (this.occursSecret[b] === NONE) [this.occursSecret[b], this.occursAt[b]] = [[], []];
        (this.occursSecret[b] as number[]).push(i);
        (this.occursAt[b] as number[]).push(at);
      }
    });
    const sampled = this.forms.filter((f) => !this.literal.includes(f));
    this.stride = Math.max(1, Math.min(64, Math.min(...sampled.map((f) => f.chars.length)) - GRAM + 1));
    this.grams = sampled.length > 0 ? new GramIndex(sampled.reduce((n, f) => n + f.chars.length - GRAM + 1, 0)) : null;
    for (const f of sampled) this.grams!.add(this.forms.indexOf(f), f.chars);
    this.introducers = INTRODUCERS.filter((c) => c !== 0x2b || this.occursSecret[0x20] !== NONE);
    for (const c of this.introducers) this.starts[c] = 1;
    this.alphabet = escapeAlphabet(this.pairs.map((p) => p.secret));
    this.shortestSecret = Math.min(...this.pairs.map((p) => p.secret.length));
    this.runsBound = this.grams !== null && this.shortestSecret >= this.stride + GRAM - 1;
    this.maxSpan = Math.max(0, ...pairs.map((p) => maxSpan(p.secret.length)));
    this.minSpan = Math.min(this.shortestSecret, ...this.forms.map((f) => f.chars.length));
  }

  private addForm(form: Form): void {
    this.forms.push(form);
    if (form.chars.length >= MIN_SAMPLED && !form.chars.some((c) => isBreak(c))) return;
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
      if (inRuns && p >= runEnd && a[w] === 1 && a[x] === 1 && a[y] === 1 && a[z] === 1) runEnd = this.run(buf, p, introducers, final, out);
      const key = gramKey(FOLD[w]!, FOLD[x]!, FOLD[y]!, FOLD[z]!);
      if (FOLD[w] === 0 || FOLD[x] === 0 || FOLD[y] === 0 || FOLD[z] === 0) this.sampleAcrossBreaks(buf, p, out, final);
      else if (grams.mayHave(key)) this.check(buf, p, key, out, final);
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
    const { alphabet: a, starts } = this;
    let count = 0; // introducers[0, count) are this run's
    let from = p;
    while (from > 0 && a[buf[from - 1]!] === 1) if (starts[buf[--from]!] === 1) introducers[count++] = from;
    let to = p;
    for (; to < buf.length && a[buf[to]!] === 1; to++) if (starts[buf[to]!] === 1) introducers[count++] = to;
    if (to - from >= this.shortestSecret) for (let i = 0; i < count; i++) this.escaped(buf, introducers[i]!, final, out);
    return to;
  }

  /** Record a whole-string match with the placeholder in the same form. */
  private found(buf: Buffer, form: Form, start: number, end: number, final: boolean, out: Match[]): void {
    const { placeholder, secret } = this.pairs[form.secret]!;
    switch (form.kind) {
      case RAW:
        return void out.push({ start, end, text: withBreaks(buf, start, end, placeholder) });
      case HEX:
        return void out.push({ start, end, text: withBreaks(buf, start, end, hexText(buf, start, end, placeholder)) });
      case BASE64: {
        const m = base64Replacement(buf, start, end, form.align, secret.length, placeholder, maxSpan(secret.length), buf.length, final);
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
