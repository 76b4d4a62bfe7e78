/**
 * Secrets in response header names (issue 9). Node lower-cases header names, so a secret's case
 * is lost there and a name is compared without case: it holds a secret when, lower-cased, it
 * contains a lower-cased form of one (raw, hex, base64 in either alphabet), as it is or with its
 * escapes decoded. A name is a token (RFC 9110), so the only escapes it can carry are `%XX`, `+`
 * and HTML references without their `;` (`&#47`, `&#x2f`, `&amp`), which browsers still read.
 */
import { MIN_CORE, base64Core } from "./encoded.ts";

const ESCAPE = /%([0-9a-f]{2})|&#x([0-9a-f]{1,10});?|&#([0-9]{1,10});?|&(amp|lt|gt|quot);?|\+/g;
const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"' };

/** `name` (lower-cased) with one layer of escapes decoded, as latin1 (bytes), lower-cased again. */
function decoded(name: string): string {
  return name
    .replace(ESCAPE, (m, pct?: string, hex?: string, dec?: string, named?: string) => {
      if (pct) return String.fromCharCode(parseInt(pct, 16));
      if (hex || dec) {
        const cp = parseInt((hex ?? dec) as string, hex ? 16 : 10);
        return cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff) ? Buffer.from(String.fromCodePoint(cp)).toString("latin1") : m;
      }
      return named ? (NAMED[named] ?? m) : " ";
    })
    .toLowerCase();
}

/** The lower-cased forms of `secret` a header name is searched for. */
export function caselessForms(secret: Buffer): string[] {
  const forms = [secret.toString("latin1").toLowerCase(), secret.toString("hex")];
  for (const align of [0, 1, 2]) {
    const core = base64Core(secret, align).toString();
    if (core.length >= MIN_CORE) forms.push(core.toLowerCase(), core.replace(/\+/g, "-").replace(/\//g, "_").toLowerCase());
  }
  return forms;
}

/** Whether header `name` holds any of `forms` (from caselessForms). */
export function nameHolds(name: string, forms: string[]): boolean {
  const lower = name.toLowerCase();
  const plain = decoded(lower);
  return forms.some((f) => lower.includes(f) || plain.includes(f));
}
