/**
 * Request framing checks, done before anything is dialled. Node's HTTP parser (llhttp, strict
 * mode) already rejects most smuggling shapes; these checks repeat the important ones on
 * `rawHeaders` so the gateway does not depend on parser leniency settings: one Host, at most one
 * Content-Length, never Content-Length with Transfer-Encoding. Requests are always re-framed
 * upstream by Node's client (body.ts), so the upstream sees exactly one request.
 */
import { canonicalHost } from "./addresses.ts";

/** Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus proxy credentials. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "content-length",
  "host",
]);

export interface FramingProblem {
  status: number;
  reason: string;
}

function count(raw: string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) n++;
  return n;
}

export function headerValues(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) out.push(raw[i + 1] ?? "");
  return out;
}

/** Problems with the request's framing headers, or null. */
export function framingProblem(raw: string[]): FramingProblem | null {
  if (count(raw, "host") !== 1) return { status: 400, reason: "a request must carry exactly one Host header" };
  const cl = headerValues(raw, "content-length");
  if (cl.length > 1 || cl.some((v) => v.includes(","))) return { status: 400, reason: "more than one Content-Length" };
  if (cl.length === 1 && count(raw, "transfer-encoding") > 0) return { status: 400, reason: "Content-Length together with Transfer-Encoding" };
  if (count(raw, "upgrade") > 0) return { status: 501, reason: "protocol upgrades (WebSocket, h2c) are not supported through the gateway" };
  return null;
}

/** `host[:port]` of a Host header or authority, canonicalised; null when it does not parse. */
export function parseAuthority(text: string, defaultPort: number): { host: string; port: number } | null {
  const m = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) return null;
  const host = canonicalHost(m[1] ?? "");
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!host || port < 1 || port > 65535) return null;
  return { host: host.host, port };
}

/** Whether two host names denote the same host (case, trailing dot and IP spelling normalised). */
export function sameHost(a: string, b: string): boolean {
  const ca = canonicalHost(a);
  const cb = canonicalHost(b);
  return ca !== null && cb !== null && ca.host === cb.host;
}

/** The request's end-to-end headers: hop-by-hop ones and those named in Connection dropped. */
export function endToEndHeaders(raw: string[]): [string, string][] {
  const named = new Set(
    headerValues(raw, "connection")
      .flatMap((v) => v.split(","))
      .map((v) => v.trim().toLowerCase()),
  );
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? "";
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    out.push([name, raw[i + 1] ?? ""]);
  }
  return out;
}

/** Response headers to pass back: hop-by-hop dropped. */
export function responseHeaders(raw: string[], drop: string[]): [string, string][] {
  const skip = new Set([...HOP_BY_HOP, ...drop]);
  skip.delete("host");
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? "";
    if (!skip.has(name.toLowerCase())) out.push([name, raw[i + 1] ?? ""]);
  }
  return out;
}
