/**
 * AWS Signature Version 4 as the fake EC2 checks it: the `Authorization` header's shape, the
 * access key, and the signature itself recomputed with the key's secret.
 * Reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

export type SigV4Result =
  | { ok: true; accessKeyId: string }
  | { ok: false; status: number; code: "MissingAuthenticationToken" | "IncompleteSignature" | "AuthFailure" | "SignatureDoesNotMatch"; message: string };

const AUTH = /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]{16,128})\/(\d{8})\/([a-z0-9-]+)\/ec2\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

const sha256 = (data: string | Buffer): string => createHash("sha256").update(data).digest("hex");
const hmac = (key: Buffer | string, data: string): Buffer => createHmac("sha256", key).update(data).digest();

export function checkSigV4(method: string, path: string, headers: IncomingHttpHeaders, body: Buffer, secrets: ReadonlyMap<string, string>): SigV4Result {
  const auth = headers.authorization;
  if (!auth) return { ok: false, status: 401, code: "MissingAuthenticationToken", message: "Request is missing Authentication Token" };
  const m = AUTH.exec(auth);
  if (!m) return { ok: false, status: 400, code: "IncompleteSignature", message: "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' in AWS4-HMAC-SHA256 form" };
  const [, accessKeyId = "", date = "", region = "", signedHeaders = "", signature = ""] = m;
  const secret = secrets.get(accessKeyId);
  if (secret === undefined) return { ok: false, status: 401, code: "AuthFailure", message: "AWS was not able to validate the provided access credentials" };
  const amzDate = String(headers["x-amz-date"] ?? "");
  if (!amzDate.startsWith(date)) return { ok: false, status: 400, code: "IncompleteSignature", message: "X-Amz-Date does not match the credential scope's date" };
  const names = signedHeaders.split(";");
  if (!names.includes("host")) return { ok: false, status: 400, code: "IncompleteSignature", message: "SignedHeaders must include host" };
  const canonicalHeaders = names.map((n) => `${n}:${String(headers[n] ?? "").trim().replace(/\s+/g, " ")}\n`).join("");
  const payloadHash = typeof headers["x-amz-content-sha256"] === "string" ? headers["x-amz-content-sha256"] : sha256(body);
  const canonical = [method, path, "", canonicalHeaders, signedHeaders, payloadHash].join("\n");
  const scope = `${date}/${region}/ec2/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonical)].join("\n");
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), "ec2"), "aws4_request");
  const expected = createHmac("sha256", key).update(toSign).digest();
  if (!timingSafeEqual(expected, Buffer.from(signature, "hex")))
    return { ok: false, status: 403, code: "SignatureDoesNotMatch", message: "The request signature we calculated does not match the signature you provided" };
  return { ok: true, accessKeyId };
}
