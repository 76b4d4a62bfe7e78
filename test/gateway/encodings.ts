/**
 * Reference encoders and decoders for the redaction tests, written apart from src/gateway: the
 * ways a server writes a string back (docs/gateway.md, "Redaction"), one character at a time for
 * the escape family, whole for hex and base64. Decoders are one-layer, as a client would apply.
 */
import fc from "fast-check";

const hexCase = (hex: string, upper: boolean[]): string => [...hex].map((c, i) => (upper[i % upper.length] ? c.toUpperCase() : c)).join("");

/** HTML named references used by the generator (a subset of what the gateway knows). */
export const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", sol: "/", colon: ":", commat: "@", period: ".", equals: "=", plus: "+", percnt: "%", bsol: "\\", lowbar: "_", excl: "!", num: "#" };
const NAMED_BY_CHAR = new Map(Object.entries(NAMED).map(([name, ch]) => [ch, name]));

export type Escape = "literal" | "percent" | "plus" | "json-u" | "json-x" | "backslash" | "html-dec" | "html-hex" | "html-named";

/** The ways one character can be written (the first is always "literal"). */
export function escapesFor(ch: string): Escape[] {
  const cp = ch.codePointAt(0)!;
  const out: Escape[] = ["literal", "percent", "json-u", "html-dec", "html-hex"];
  if (ch === " ") out.push("plus");
  if (cp < 0x80) out.push("json-x");
  if (/^[!-/:-@[-`{-~]$/.test(ch)) out.push("backslash");
  if (NAMED_BY_CHAR.has(ch)) out.push("html-named");
  return out;
}

/** Write one character with `how`; `upper` picks the case of hex digits, `zeros` leading zeros (≤ 3). */
export function escape(ch: string, how: Escape, upper: boolean[], zeros: number): string {
  const cp = ch.codePointAt(0)!;
  switch (how) {
    case "literal":
      return ch;
    case "percent":
      return [...Buffer.from(ch)].map((b) => "%" + hexCase(b.toString(16).padStart(2, "0"), upper)).join("");
    case "plus":
      return "+";
    case "json-u":
      return [...Array.from({ length: ch.length }, (_, i) => ch.charCodeAt(i))].map((u) => "\\u" + hexCase(u.toString(16).padStart(4, "0"), upper)).join("");
    case "json-x":
      return "\\x" + hexCase(cp.toString(16).padStart(2, "0"), upper);
    case "backslash":
      return "\\" + ch;
    case "html-dec":
      return `&#${"0".repeat(zeros)}${cp};`;
    case "html-hex":
      return `&#${upper[0] ? "X" : "x"}${"0".repeat(zeros)}${hexCase(cp.toString(16), upper)};`;
    case "html-named":
      return `&${NAMED_BY_CHAR.get(ch)};`;
  }
}

const UNIT = /%([0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})(?:\\u([dD][c-fC-F][0-9a-fA-F]{2}))?|\\x([0-9a-fA-F]{2})|\\([nrtbf])|\\([!-/:-@[-`{-~])|&#[xX]([0-9a-fA-F]{1,8});?|&#([0-9]{1,8});?|&([A-Za-z]{2,8});/g;
const CONTROL: Record<string, string> = { n: "\n", r: "\r", t: "\t", b: "\b", f: "\f" };

/**
 * One layer of every escape in the family decoded; `plus` also reads `+` as a space. Percent
 * escapes are bytes, the others characters; the result is the bytes as latin1.
 */
export function decodeEscapes(text: Buffer, plus: boolean): Buffer {
  const latin1 = text.toString("latin1");
  const utf8 = (s: string): string => Buffer.from(s).toString("latin1");
  const decoded = latin1.replace(UNIT, (m, pct, u, lo, x, ctl, punct, hh, dd, name) => {
    if (pct) return String.fromCharCode(parseInt(pct, 16));
    if (u) return utf8(lo ? String.fromCharCode(parseInt(u, 16), parseInt(lo, 16)) : String.fromCharCode(parseInt(u, 16)));
    if (x) return String.fromCharCode(parseInt(x, 16));
    if (ctl) return CONTROL[ctl]!;
    if (punct) return punct;
    if (hh || dd) {
      const cp = parseInt(hh ?? dd, hh ? 16 : 10);
      return cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff) ? utf8(String.fromCodePoint(cp)) : m;
    }
    return NAMED[name] ?? m;
  });
  return Buffer.from(plus ? decoded.replace(/\+/g, " ") : decoded, "latin1");
}

/** Characters of secrets: printable ASCII (with every escape-worthy one) and some UTF-8. */
export const secretChar = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)) },
  { weight: 2, arbitrary: fc.constantFrom("/", "+", "=", "&", "<", ">", '"', "'", "%", "\\", " ", ":", "@") },
  { weight: 1, arbitrary: fc.constantFrom("é", "ß", "€", "ü", "😀", "中") },
);

export const secretOf = (min: number, max: number): fc.Arbitrary<string> =>
  fc.array(secretChar, { minLength: min, maxLength: max }).map((a) => a.join("")).filter((s) => Buffer.byteLength(s) >= min);

/** Text around an encoded secret: no byte that could join it into another escape or blob. */
export const around = fc.string({ unit: fc.constantFrom(..."abcXYZ019 ,.:;!?()[]{}<>=\"'\t\n"), maxLength: 40 });

/** Split `data` into chunks at `cuts` (fractions), down to 1-byte chunks. */
export function chunked(data: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((f) => Math.floor(f * data.length)))].filter((x) => x > 0 && x < data.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const x of [...at, data.length]) {
    out.push(data.subarray(from, x));
    from = x;
  }
  return out;
}

/** Hex in random case per character, with line breaks (LF or CRLF) before the marked characters. */
export function hexOf(bytes: Buffer, upper: boolean[], breaks: number[], crlf: boolean): string {
  const hex = hexCase(bytes.toString("hex"), upper);
  return withBreaks(hex, breaks, crlf);
}

export function withBreaks(text: string, breaks: number[], crlf: boolean): string {
  const at = new Set(breaks.map((f) => 1 + Math.floor(f * (text.length - 1))));
  return [...text].map((c, i) => (at.has(i) ? (crlf ? "\r\n" : "\n") + c : c)).join("");
}

/** Base64 of `bytes` in lines of `width` characters (0: one line). */
export function base64Of(bytes: Buffer, url: boolean, pad: boolean, width: number, crlf: boolean): string {
  let text = bytes.toString(url ? "base64url" : "base64").replace(/=+$/, "");
  if (pad) text = text.padEnd(Math.ceil(text.length / 4) * 4, "=");
  if (width <= 0) return text;
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += width) lines.push(text.slice(i, i + width));
  return lines.join(crlf ? "\r\n" : "\n");
}
