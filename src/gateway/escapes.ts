/**
 * The escape family of response redaction: the ways a server writes single characters of a string
 * back inside text. Each character of a secret may appear literally or as any one of these units,
 * mixed freely (`sk_live%5fabc\u0031&#50;`):
 * - percent-encoding of a byte, hex in either case (`%2F`, `%2f`), and `+` for a space (forms);
 * - JSON/JavaScript escapes: `\uXXXX` in either case (surrogate pairs too), `\xXX` (a byte),
 *   `\n \r \t \b \f`, and a backslash before any ASCII punctuation (`\/`, `\"`, `\\`, `\'`);
 * - HTML character references: `&#47;` `&#x2f;` `&#X2F;` (the semicolon optional, as browsers
 *   read them, at most MAX_DIGITS digits including leading zeros) and the named references of
 *   ASCII characters (`&amp;` `&quot;` `&lt;` `&gt;` `&apos;` `&sol;` …).
 * One layer only: `%252F` (an escaped escape) is not decoded. No unit is longer than MAX_UNIT
 * characters, so a secret of n bytes spans at most MAX_UNIT × n characters in a response.
 */

/** Which family a matched unit came from (bit flags, so a match can report all it used). */
export const PERCENT = 1;
export const BACKSLASH = 2;
export const HTML = 4;

/** Most digits a numeric character reference may have, leading zeros included (`&#0000000047;`). */
export const MAX_DIGITS = 10;
/** Longest unit: `&#x` + MAX_DIGITS + `;` (a `\uD83D\uDE00` surrogate pair is 12). */
export const MAX_UNIT = 14;

/** Bytes that can begin a unit other than a literal character. */
export const INTRODUCERS = [0x25, 0x2b, 0x5c, 0x26]; // % + \ &

/** HTML named references that decode to one ASCII character (HTML5 list; ≤ 8 letters). */
const NAMED_LIST: Record<string, number> = {
  Tab: 9, NewLine: 10, excl: 33, quot: 34, QUOT: 34, num: 35, dollar: 36, percnt: 37, amp: 38, AMP: 38, apos: 39,
  lpar: 40, rpar: 41, ast: 42, midast: 42, plus: 43, comma: 44, period: 46, sol: 47, colon: 58, semi: 59,
  lt: 60, LT: 60, equals: 61, gt: 62, GT: 62, quest: 63, commat: 64, lsqb: 91, lbrack: 91, bsol: 92,
  rsqb: 93, rbrack: 93, Hat: 94, lowbar: 95, UnderBar: 95, grave: 96, lcub: 123, lbrace: 123,
  verbar: 124, vert: 124, rcub: 125, rbrace: 125,
};
/** Named references that browsers also decode without the semicolon. */
const LEGACY_LIST = ["quot", "QUOT", "amp", "AMP", "lt", "LT", "gt", "GT"];

/** Named references by first letter, as bytes, so reading one allocates nothing. */
const NAMED: { name: Buffer; value: number; legacy: boolean }[][] = Array.from({ length: 128 }, () => []);
for (const [name, value] of Object.entries(NAMED_LIST)) NAMED[name.charCodeAt(0)]!.push({ name: Buffer.from(name), value, legacy: LEGACY_LIST.includes(name) });
const MAX_NAME = 8;

const CONTROL: Record<number, number> = { 0x6e: 10, 0x72: 13, 0x74: 9, 0x62: 8, 0x66: 12 }; // n r t b f

/** For each byte, the characters other than introducers and hex digits its units can have. */
const UNIT_CHARS: Buffer[] = Array.from({ length: 256 }, (_, b) => {
  const names = Object.entries(NAMED_LIST).filter(([, v]) => v === b).map(([name]) => name);
  const control = Object.entries(CONTROL).filter(([, v]) => v === b).map(([c]) => String.fromCharCode(Number(c)));
  return Buffer.from([...names, ...control, b === 0x20 ? "+" : ""].join(""));
});
const ALWAYS = Buffer.from("%\\&#;uxX0123456789abcdefABCDEF");

/**
 * The bytes of any escape mixture of `secrets`: their own bytes and every character of a unit that
 * stands for one of them. A mixture is a run of these, which bounds where one can be.
 */
export function escapeAlphabet(secrets: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(256);
  for (const c of ALWAYS) out[c] = 1;
  const seen = new Uint8Array(256);
  for (const s of secrets) {
    for (let i = 0; i < s.length; i++) {
      const b = s[i]!;
      if (seen[b] === 1) continue;
      seen[b] = out[b] = 1;
      for (const c of UNIT_CHARS[b]!) out[c] = 1;
    }
  }
  return out;
}

function isLetter(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a));
}

const HEX_VALUE = new Int8Array(256).map((_, c) => (c >= 0x30 && c <= 0x39 ? c - 0x30 : (c | 0x20) >= 0x61 && (c | 0x20) <= 0x66 ? (c | 0x20) - 0x61 + 10 : -1));

function isPunct(c: number): boolean {
  return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

/**
 * A decoded unit, packed in one number so the scan allocates nothing per escape it looks at:
 * bits 0–3 its length in characters, 4–6 its family, 7 set when it stands for a byte (else for a
 * Unicode code point), 8 and up that byte or code point. 0: no unit.
 */
export type Unit = number;

function unit(len: number, family: number, byte: boolean, value: number): Unit {
  return len | (family << 4) | (byte ? 0x80 : 0) | (value << 8);
}
export const unitLength = (u: Unit): number => u & 15;
export const unitFamily = (u: Unit): number => (u >> 4) & 7;
const unitIsByte = (u: Unit): boolean => (u & 0x80) !== 0;
const unitValue = (u: Unit): number => u >>> 8;

/** `count` hex digits at `i` as a number, or -1. */
function hexAt(buf: Uint8Array, i: number, count: number, end: number): number {
  if (i + count > end) return -1;
  let v = 0;
  for (let k = 0; k < count; k++) {
    const h = HEX_VALUE[buf[i + k] as number] as number;
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

function backslashUnit(buf: Uint8Array, i: number, end: number): Unit {
  if (i + 1 >= end) return 0;
  const c = buf[i + 1] as number;
  if (c === 0x75) {
    const u = hexAt(buf, i + 2, 4, end);
    if (u < 0) return 0;
    if (u < 0xd800 || u > 0xdfff) return unit(6, BACKSLASH, false, u);
    if (u > 0xdbff || buf[i + 6] !== 0x5c || buf[i + 7] !== 0x75) return 0; // a lone surrogate is no character
    const lo = hexAt(buf, i + 8, 4, end);
    if (lo < 0xdc00 || lo > 0xdfff) return 0;
    return unit(12, BACKSLASH, false, 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00));
  }
  if (c === 0x78) {
    const b = hexAt(buf, i + 2, 2, end);
    return b < 0 ? 0 : unit(4, BACKSLASH, true, b);
  }
  const control = CONTROL[c];
  if (control !== undefined) return unit(2, BACKSLASH, true, control);
  return isPunct(c) ? unit(2, BACKSLASH, true, c) : 0;
}

function numericReference(buf: Uint8Array, i: number, end: number, final: boolean): Unit {
  const hex = buf[i + 2] === 0x78 || buf[i + 2] === 0x58;
  const first = i + (hex ? 3 : 2);
  let j = first;
  let value = 0;
  for (; j < end && j - first <= MAX_DIGITS; j++) {
    const c = buf[j] as number;
    const d = hex ? (HEX_VALUE[c] as number) : c >= 0x30 && c <= 0x39 ? c - 0x30 : -1;
    if (d < 0) break;
    value = value * (hex ? 16 : 10) + d;
  }
  const digits = j - first;
  // More digits than MAX_DIGITS is out of reach by design (it bounds the stream's look-behind).
  if (digits === 0 || digits > MAX_DIGITS || (j >= end && !final)) return 0;
  if (value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return 0;
  return unit(j - i + (buf[j] === 0x3b ? 1 : 0), HTML, false, value);
}

/** Whether `buf[at, at + name.length)` is `name`. */
function bytesAre(buf: Uint8Array, at: number, name: Buffer): boolean {
  for (let t = 0; t < name.length; t++) if (buf[at + t] !== name[t]) return false;
  return true;
}

function namedReference(buf: Uint8Array, i: number, end: number, final: boolean): Unit {
  let j = i + 1;
  while (j < end && j - i <= MAX_NAME && isLetter(buf[j])) j++;
  if (j >= end && !final) return 0;
  const letters = j - i - 1;
  const candidates = NAMED[buf[i + 1] as number] ?? [];
  for (let t = 0; t < candidates.length; t++) {
    const { name, value, legacy } = candidates[t]!;
    if (!bytesAre(buf, i + 1, name)) continue;
    if (name.length === letters && buf[j] === 0x3b) return unit(letters + 2, HTML, true, value);
    // `&amp` without the semicolon, even when letters follow (`&ampx` reads as `&x` in a browser).
    if (legacy && name.length <= letters) return unit(name.length + 1, HTML, true, value);
  }
  return 0;
}

/**
 * The escape unit at `buf[i]` (before `end`), or 0 when none starts there. Unless `final` (the
 * data ends at `end`), a unit that runs into `end` is 0: it might go on in the next chunk.
 */
export function unitAt(buf: Uint8Array, i: number, end: number, final: boolean): Unit {
  switch (buf[i] as number) {
    case 0x25: {
      if (i + 2 >= end) return 0;
      const hi = HEX_VALUE[buf[i + 1] as number] as number;
      const lo = HEX_VALUE[buf[i + 2] as number] as number;
      return hi < 0 || lo < 0 ? 0 : unit(3, PERCENT, true, hi * 16 + lo);
    }
    case 0x2b:
      return unit(1, PERCENT, true, 0x20);
    case 0x5c:
      return backslashUnit(buf, i, end);
    case 0x26:
      if (buf[i + 1] === 0x23) return numericReference(buf, i, end, final);
      return isLetter(buf[i + 1]) ? namedReference(buf, i, end, final) : 0;
    default:
      return 0;
  }
}

/** The UTF-8 bytes of code point `v` (v ≥ 0x80) into `out`; returns how many. */
function utf8(v: number, out: number[]): number {
  if (v < 0x800) return (out[0] = 0xc0 | (v >> 6), out[1] = 0x80 | (v & 63), 2);
  if (v < 0x10000) return (out[0] = 0xe0 | (v >> 12), out[1] = 0x80 | ((v >> 6) & 63), out[2] = 0x80 | (v & 63), 3);
  return (out[0] = 0xf0 | (v >> 18), out[1] = 0x80 | ((v >> 12) & 63), out[2] = 0x80 | ((v >> 6) & 63), out[3] = 0x80 | (v & 63), 4);
}

/** How many bytes of `s` from `k` the unit stands for (its UTF-8 form for a code point), or 0. */
export function unitMatches(u: Unit, s: Uint8Array, k: number): number {
  const v = unitValue(u);
  if (unitIsByte(u) || v < 0x80) return s[k] === v ? 1 : 0;
  const bytes: number[] = [];
  const n = utf8(v, bytes);
  for (let t = 0; t < n; t++) if (s[k + t] !== bytes[t]) return 0;
  return n;
}

/** The first byte of what a unit stands for. */
export function unitLeadByte(u: Unit): number {
  const v = unitValue(u);
  if (unitIsByte(u) || v < 0x80) return v;
  return v < 0x800 ? 0xc0 | (v >> 6) : v < 0x10000 ? 0xe0 | (v >> 12) : 0xf0 | (v >> 18);
}

/** Bytes that can start a unit. */
const STARTS = new Uint8Array(256).map((_, c) => (INTRODUCERS.includes(c) ? 1 : 0));

/**
 * Whether `s` is written at `buf[start]`, each of its bytes literally or as a unit; returns the end
 * and the families used, or null. Where a secret byte is itself `%`, `+`, `\` or `&`, both readings
 * are tried (depth first, each state once), so an ambiguous secret cannot make this exponential.
 * `final`: the data ends at `end` (see unitAt).
 */
export function matchEscaped(buf: Uint8Array, start: number, end: number, final: boolean, s: Uint8Array): { end: number; families: number } | null {
  const maxEnd = Math.min(end, start + MAX_UNIT * s.length);
  // Made at the first place where both readings fit; a single reading needs neither.
  let pending: number[] | null = null; // (i, k, families) triples
  let seen: Set<number> | null = null;
  let i = start;
  let k = 0;
  let families = 0;
  for (;;) {
    if (k === s.length) return { end: i, families };
    let moved = false;
    if (i < maxEnd) {
      const literal = buf[i] === s[k];
      const u = STARTS[buf[i] as number] === 1 ? unitAt(buf, i, end, final) : 0;
      const n = u !== 0 && i + unitLength(u) <= maxEnd ? unitMatches(u, s, k) : 0;
      if (n > 0) {
        if (literal) {
          (pending ??= []).push(i + 1, k + 1, families);
          seen ??= new Set();
        }
        i += unitLength(u);
        k += n;
        families |= unitFamily(u);
        moved = true;
      } else if (literal) {
        i++;
        k++;
        moved = true;
      }
    }
    if (moved && seen) {
      const key = i * (s.length + 1) + k;
      moved = !seen.has(key);
      seen.add(key);
    }
    while (!moved) {
      // Back to the latest alternative not yet explored.
      if (!pending || !seen || pending.length === 0) return null;
      families = pending.pop() as number;
      k = pending.pop() as number;
      i = pending.pop() as number;
      const key = i * (s.length + 1) + k;
      moved = !seen.has(key);
      seen.add(key);
    }
  }
}
