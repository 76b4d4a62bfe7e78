/**
 * Whole-string forms of a secret for response redaction: the raw bytes, their hex (either case,
 * even mixed), and base64 (standard or url alphabet, padded or not, at each of the three byte
 * alignments a secret can have inside a larger blob such as `user:SECRET`). In all three a line
 * break (CR, LF or CRLF: at most two bytes) may fall between any two characters, as MIME (76
 * columns), PEM (64) and `xxd -p` (60) write them.
 *
 * A form is a sequence of canonical characters; `canon` maps a response byte to the character it
 * counts as (hex: upper case to lower; base64: `-` `_` to `+` `/`), so one comparison covers every
 * spelling. What replaces a match is the placeholder in the same form: hex in the case the match
 * used, base64 in the same alphabet and alignment, with the same line breaks.
 */

export const RAW = 0;
export const HEX = 1;
export const BASE64 = 2;

/** Fewest base64 characters worth matching inside a larger blob (fewer would hit noise). */
export const MIN_CORE = 8;

export interface Form {
  kind: typeof RAW | typeof HEX | typeof BASE64;
  /** Index of the secret (in the matcher's list) this is a form of. */
  secret: number;
  chars: Uint8Array;
  canon: Uint8Array;
  /** Base64 only: bytes between the start of the secret's first 3-byte group and the secret. */
  align: number;
}

function table(map: (c: number) => number): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = map(c);
  return t;
}

export const CANON_RAW = table((c) => c);
export const CANON_HEX = table((c) => (c >= 0x41 && c <= 0x46 ? c | 0x20 : c));
export const CANON_B64 = table((c) => (c === 0x2d ? 0x2b : c === 0x5f ? 0x2f : c));
const IS_B64 = table((c) => (/[A-Za-z0-9+/_-]/.test(String.fromCharCode(c)) ? 1 : 0));

export function isBreak(c: number | undefined): boolean {
  return c === 10 || c === 13;
}

/** Base64 characters (standard alphabet) that depend only on `value` when it starts `align` bytes into a group. */
export function base64Core(value: Buffer, align: number): Buffer {
  const b64 = Buffer.concat([Buffer.alloc(align), value]).toString("base64");
  return Buffer.from(b64.slice(Math.ceil((8 * align) / 6), Math.floor((8 * (align + value.length)) / 6)));
}

/** Position of the next character after `j` (skipping one line break), or -1 at the data's end. */
function forward(buf: Uint8Array, j: number, end: number): number {
  j++;
  if (j < end && isBreak(buf[j])) j++;
  if (j < end && isBreak(buf[j])) j++;
  return j < end ? j : -1;
}

function backward(buf: Uint8Array, j: number): number {
  j--;
  if (j >= 0 && isBreak(buf[j])) j--;
  if (j >= 0 && isBreak(buf[j])) j--;
  return j;
}

/**
 * Whether `form` is written around `buf[q]`, which is its character number `o`; returns where the
 * match starts and ends, or null.
 */
export function walkForm(buf: Uint8Array, q: number, o: number, form: Form, end: number): [number, number] | null {
  const { chars, canon } = form;
  let j = q;
  for (let t = o - 1; t >= 0; t--) {
    j = backward(buf, j);
    if (j < 0 || canon[buf[j] as number] !== chars[t]) return null;
  }
  const start = j;
  if (canon[buf[q] as number] !== chars[o]) return null;
  j = q;
  for (let t = o + 1; t < chars.length; t++) {
    j = forward(buf, j, end);
    if (j < 0 || canon[buf[j] as number] !== chars[t]) return null;
  }
  return [start, j + 1];
}

/** Put the line breaks of `buf[start, end)` into `text` at the same character positions. */
export function withBreaks(buf: Uint8Array, start: number, end: number, text: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  let chars = 0;
  for (let j = start; j < end; j++) {
    if (!isBreak(buf[j])) {
      chars++;
      continue;
    }
    const cut = Math.min(chars, text.length);
    parts.push(text.subarray(at, cut), Buffer.from([buf[j] as number]));
    at = cut;
  }
  if (parts.length === 0) return text;
  parts.push(text.subarray(at));
  return Buffer.concat(parts);
}

/** The placeholder's hex, in upper case when the match's letters all were. */
export function hexText(buf: Uint8Array, start: number, end: number, placeholder: Buffer): Buffer {
  let upper = false;
  for (let j = start; j < end; j++) {
    const c = buf[j] as number;
    if (c >= 0x61 && c <= 0x66) return Buffer.from(placeholder.toString("hex"));
    if (c >= 0x41 && c <= 0x46) upper = true;
  }
  const hex = placeholder.toString("hex");
  return Buffer.from(upper ? hex.toUpperCase() : hex);
}

/** The url alphabet when the blob around `[start, end)` (up to 128 characters each way) uses it. */
function urlAlphabet(buf: Uint8Array, start: number, end: number): boolean {
  const from = Math.max(0, start - 128);
  const to = Math.min(buf.length, end + 128);
  for (let j = start; j < to && (IS_B64[buf[j] as number] || isBreak(buf[j])); j++) {
    if (buf[j] === 0x2d || buf[j] === 0x5f) return true;
    if (buf[j] === 0x2b || buf[j] === 0x2f) return false;
  }
  for (let j = start - 1; j >= from && (IS_B64[buf[j] as number] || isBreak(buf[j])); j--) {
    if (buf[j] === 0x2d || buf[j] === 0x5f) return true;
    if (buf[j] === 0x2b || buf[j] === 0x2f) return false;
  }
  return false;
}

function encode(bytes: Buffer, url: boolean, pad: boolean): Buffer {
  const text = bytes.toString(url ? "base64url" : "base64").replace(/=+$/, "");
  return Buffer.from(pad ? text.padEnd(Math.ceil(text.length / 4) * 4, "=") : text);
}

/** Where the characters from `stop` on end (before `maxEnd`): returns the new stop, or -1 when the
 * data ends first and may go on. `ended`: a non-base64 character or the data's end was reached. */
function scanBlob(buf: Uint8Array, stop: number, maxChars: number, maxEnd: number, end: number, final: boolean): { stop: number; padded: boolean; ended: boolean } | null {
  let padded = false;
  for (let t = 0; t < maxChars; t++) {
    const j = forward(buf, stop - 1, end);
    if (j < 0 && !final) return null;
    if (j < 0) return { stop, padded, ended: true };
    if (j >= maxEnd) break;
    if (buf[j] === 0x3d) padded = true;
    else if (padded || !IS_B64[buf[j] as number]) return { stop, padded, ended: true };
    stop = j + 1;
  }
  return { stop, padded, ended: false };
}

/**
 * Replace a base64 match `[cs, ce)` of a `length`-byte secret at `align` by the placeholder. The
 * whole 4-character groups that hold any bit of the secret are decoded, the secret's bytes swapped
 * for the placeholder's and the groups encoded again, so no bit of the secret is left. When the
 * blob ends within `maxSpan` of the match's start, the rest of it is encoded again too (after
 * `swapRest` replaced any secret in it), so what follows the placeholder stays aligned and the
 * padding is right; in a longer blob the rest is left as it is (and, when the lengths differ by
 * other than a multiple of 3, no longer decodes as it did). Returns null when the data ends
 * first and may go on (`final` false).
 */
export function base64Replacement(buf: Uint8Array, cs: number, ce: number, align: number, length: number, placeholder: Buffer, maxSpan: number, swapRest: (bytes: Buffer) => Buffer, end: number, final: boolean): { start: number; end: number; text: Buffer } | null {
  let start = cs;
  for (let t = Math.ceil((8 * align) / 6); t > 0; t--) {
    const j = backward(buf, start);
    if (j < 0 || !IS_B64[buf[j] as number]) {
      // The group's first characters are not there: not a real blob, swap the secret's own characters.
      const core = base64Core(placeholder, align).toString();
      return { start: cs, end: ce, text: withBreaks(buf, cs, ce, Buffer.from(urlAlphabet(buf, cs, ce) ? core.replace(/\+/g, "-").replace(/\//g, "_") : core)) };
    }
    start = j;
  }
  const group = scanBlob(buf, ce, 4 * Math.ceil((align + length) / 3) - Math.floor((8 * (align + length)) / 6), end, end, final);
  if (!group) return null;
  const blob = group.ended ? group : scanBlob(buf, group.stop, Infinity, start + maxSpan, end, final);
  if (!blob) return null;
  const stop = blob.ended ? blob.stop : group.stop;
  let chars = "";
  for (let j = start; j < stop; j++) if (!isBreak(buf[j])) chars += String.fromCharCode(buf[j] as number);
  const bytes = Buffer.from(chars, "base64");
  const swapped = Buffer.concat([bytes.subarray(0, align), placeholder, swapRest(bytes.subarray(Math.min(bytes.length, align + length)))]);
  const url = urlAlphabet(buf, start, stop);
  // Standard base64 is padded where it ends; base64url mostly is not (JWTs); keep what the blob had.
  const padded = blob.padded || group.padded || (blob.ended && !url);
  return { start, end: stop, text: withBreaks(buf, start, stop, encode(swapped, url, padded)) };
}
