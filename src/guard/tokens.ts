/**
 * API tokens: `pdk_<id>_<secret>`. The id finds the row; only sha256(secret) is stored. The secret
 * is 32 random bytes, so a fast digest is enough: there is nothing to brute-force that a slow hash
 * would protect (slow hashes are for low-entropy passwords).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const TOKEN_RE = /^pdk_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$/;

export interface MintedToken {
  /** The whole token: shown once, never stored. */
  token: string;
  id: string;
  digest: string;
}

export function mintToken(): MintedToken {
  const id = randomBytes(10).toString("hex").slice(0, 16);
  const secret = randomBytes(32).toString("base64url");
  return { token: `pdk_${id}_${secret}`, id, digest: digestOf(secret) };
}

/** The id and secret of a well-formed token, or null. */
export function parseToken(token: string): { id: string; secret: string } | null {
  const m = TOKEN_RE.exec(token);
  return m?.[1] && m[2] ? { id: m[1], secret: m[2] } : null;
}

/** Constant-time: a timing difference must not tell how much of a guessed secret was right. */
export function secretMatches(secret: string, digest: string): boolean {
  const a = Buffer.from(digestOf(secret), "hex");
  const b = Buffer.from(digest, "hex");
  return a.length === b.length && timingSafeEqual(a, b);
}

function digestOf(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}
