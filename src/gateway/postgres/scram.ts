/**
 * The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as Postgres speaks it: what the gateway
 * uses to check that a client knows the session's placeholder password. The real password is never
 * an input here, so a client that sends it fails exactly like any other wrong password.
 *
 * pg-gateway 0.2 (the version installed) offers only cleartext and md5 to clients, and node-postgres
 * has only the client side, so the server side is written here on node's crypto (PBKDF2, HMAC,
 * SHA-256, timingSafeEqual). Verifiers are derived once per placeholder and cached; an unknown user
 * gets a verifier from a per-gateway random key, so the exchange looks the same and costs the same
 * whether or not the user exists, and fails at the proof like a wrong password.
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";

const pbkdf2Async = promisify(pbkdf2);
/** Postgres' own default (scram_iterations). */
export const SCRAM_ITERATIONS = 4096;
/** Verifiers kept; the least recently used is dropped (each is ~100 bytes). */
const VERIFIER_CACHE_SIZE = 4096;
/** A client nonce longer than this is refused (Postgres' nonces are 24 bytes of base64). */
const MAX_NONCE_CHARS = 256;

interface Verifier {
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export interface ScramExchange {
  /** The server-first-message to send in AuthenticationSASLContinue. */
  serverFirst: string;
  /** Check the client-final-message: the server-final-message (AuthenticationSASLFinal) when the proof holds, else null. */
  finish(clientFinal: string): string | null;
}

export interface ScramServer {
  /**
   * Begin an exchange from the client's SASLInitialResponse. `password` null (no such user)
   * runs the same exchange against a verifier nobody knows. Throws on a malformed message.
   */
  begin(clientFirst: string, password: string | null, user: string): Promise<ScramExchange>;
}

const hmac = (key: Buffer, data: string): Buffer => createHmac("sha256", key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash("sha256").update(data).digest();

/** printable = %x21-2B / %x2D-7E (RFC 5802): a nonce may hold nothing else. */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;

export function createScramServer(): ScramServer {
  const instanceKey = randomBytes(32);
  const cache = new Map<string, Verifier>();

  async function verifierFor(password: string | null, user: string): Promise<Verifier> {
    // Unknown users: a stable salt per name (as a real user's is) and keys nobody can derive.
    if (password === null) {
      const salt = hmac(instanceKey, `salt\0${user}`).subarray(0, 16);
      return { salt, storedKey: hmac(instanceKey, `stored\0${user}`), serverKey: hmac(instanceKey, `server\0${user}`) };
    }
    const cached = cache.get(password);
    if (cached) {
      cache.delete(password);
      cache.set(password, cached);
      return cached;
    }
    const salt = randomBytes(16);
    const salted = await pbkdf2Async(password.normalize("NFKC"), salt, SCRAM_ITERATIONS, 32, "sha256");
    const verifier = { salt, storedKey: sha256(hmac(salted, "Client Key")), serverKey: hmac(salted, "Server Key") };
    cache.set(password, verifier);
    if (cache.size > VERIFIER_CACHE_SIZE) cache.delete(cache.keys().next().value!);
    return verifier;
  }

  return {
    async begin(clientFirst, password, user) {
      // gs2-header: "n,," (no channel binding) or "y,," (client could bind, server offered no
      // -PLUS mechanism). "p=…" asks for binding we never offered: refused.
      const m = /^([ny]),(?:a=[^,]*)?,(.*)$/s.exec(clientFirst);
      if (!m) throw new Error("SCRAM: client-first-message must start with n,, or y,, (channel binding is not offered)");
      const gs2Header = clientFirst.slice(0, clientFirst.length - m[2]!.length);
      const bare = m[2]!;
      const nonce = /(?:^|,)r=([^,]*)/.exec(bare)?.[1];
      if (!nonce || nonce.length > MAX_NONCE_CHARS || !PRINTABLE.test(nonce)) throw new Error("SCRAM: client nonce missing or malformed");
      const v = await verifierFor(password, user);
      const combinedNonce = nonce + randomBytes(18).toString("base64");
      const serverFirst = `r=${combinedNonce},s=${v.salt.toString("base64")},i=${SCRAM_ITERATIONS}`;
      return {
        serverFirst,
        finish(clientFinal) {
          const proofMatch = /^(.*),p=([A-Za-z0-9+/=]+)$/s.exec(clientFinal);
          if (!proofMatch) return null;
          const withoutProof = proofMatch[1]!;
          const attrs = new Map(withoutProof.split(",").map((kv) => [kv.slice(0, 1), kv.slice(2)] as const));
          if (attrs.get("c") !== Buffer.from(gs2Header).toString("base64")) return null;
          if (attrs.get("r") !== combinedNonce) return null;
          const proof = Buffer.from(proofMatch[2]!, "base64");
          if (proof.length !== 32) return null;
          const authMessage = `${bare},${serverFirst},${withoutProof}`;
          const clientSignature = hmac(v.storedKey, authMessage);
          const clientKey = Buffer.alloc(32);
          for (let i = 0; i < 32; i++) clientKey[i] = proof[i]! ^ clientSignature[i]!;
          const ok = timingSafeEqual(sha256(clientKey), v.storedKey);
          // Unknown users never pass, whatever the proof (their keys are random, but say so plainly).
          if (!ok || password === null) return null;
          return `v=${hmac(v.serverKey, authMessage).toString("base64")}`;
        },
      };
    },
  };
}
