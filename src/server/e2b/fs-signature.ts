/**
 * E2B's signed file URLs (the SDK's `uploadUrl`/`downloadUrl`): the signature is
 * `v1_` + base64(sha256(`path:operation:username:accessToken`[`:expiration`])) without padding,
 * where `path` and `username` are the query's own values (empty when absent) and `expiration` is
 * Unix seconds. A signed URL works without `X-Access-Token`; it is bound to its path, operation and
 * user, and with an expiration it stops working after it.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { PaddockError } from "../../core/index.ts";

export type SignedOperation = "read" | "write";

export interface SignedQuery {
  path: string;
  username: string;
  signature: string;
  /** Unix seconds, or null for a URL without expiration. */
  expiration: number | null;
}

/** The signature E2B's SDK computes for these fields. */
export function envdSignature(q: Omit<SignedQuery, "signature">, operation: SignedOperation, accessToken: string): string {
  const parts = [q.path, operation, q.username, accessToken];
  if (q.expiration !== null) parts.push(String(q.expiration));
  return "v1_" + createHash("sha256").update(parts.join(":")).digest("base64").replace(/=+$/, "");
}

/** The signed-URL fields of a `/files` query, or null when it carries no signature. Malformed ones are refused. */
export function signedQuery(query: Record<string, string | undefined>): SignedQuery | null {
  const signature = query.signature;
  if (signature === undefined) return null;
  if (!/^v1_[A-Za-z0-9+/]{43}$/.test(signature)) throw new PaddockError("unauthorized", "invalid signature: not an E2B v1 file URL signature");
  const raw = query.signature_expiration;
  let expiration: number | null = null;
  if (raw !== undefined) {
    if (!/^\d{1,12}$/.test(raw)) throw new PaddockError("unauthorized", "invalid signature_expiration: expected Unix seconds");
    expiration = Number(raw);
  }
  return { path: query.path ?? "", username: query.username ?? "", signature, expiration };
}

/**
 * A verifier for the sandbox table: true when `q` was signed with `accessToken` for `operation`.
 * Compared in constant time. An expired URL never verifies (checked first, without the token).
 */
export function signatureVerifier(q: SignedQuery, operation: SignedOperation, nowSeconds = Math.floor(Date.now() / 1000)): (accessToken: string) => boolean {
  const expired = q.expiration !== null && q.expiration < nowSeconds;
  const given = Buffer.from(q.signature);
  return (accessToken) => {
    if (expired) return false;
    const expected = Buffer.from(envdSignature(q, operation, accessToken));
    return expected.length === given.length && timingSafeEqual(expected, given);
  };
}

/** Why a signed URL was refused, said without telling which part failed to whoever guesses. */
export function signatureRefusal(q: SignedQuery, nowSeconds = Math.floor(Date.now() / 1000)): PaddockError {
  if (q.expiration !== null && q.expiration < nowSeconds) return new PaddockError("unauthorized", "the signed URL has expired (signature_expiration is in the past)");
  return new PaddockError("unauthorized", "invalid signature: this URL was not signed for this path, operation and user by a sandbox's access token");
}
