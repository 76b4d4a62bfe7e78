/**
 * Placeholder → secret substitution for one outgoing request (DESIGN.md invariant 2). A token is
 * swapped only when (a) it belongs to the calling session (tokens are per session, so another
 * session's token is simply unknown here), (b) the host actually dialled is one the binding names,
 * (c) the token sits in a location the binding allows, and (d) the request leaves over TLS to a
 * verified upstream, unless the binding says `cleartext: true`. A token that (a)–(c) would swap but
 * (d) forbids is reported as withheld (the caller refuses the request); anything else goes out
 * unchanged.
 */
import { canonicalHost } from "./addresses.ts";
import { realPart } from "./placeholders.ts";
import { replacementsFor, type Replacement } from "./redact.ts";
import type { SecretMaterial } from "./sessions.ts";

export interface OutgoingRequest {
  /** Header name/value pairs in order (already without hop-by-hop headers). */
  headers: [string, string][];
  /** Origin-form path with query. */
  path: string;
  /** The buffered body, or null when it is streamed (never inspected: no binding may swap into it). */
  body: Buffer | null;
}

export interface SwapResult extends OutgoingRequest {
  /** Secret names swapped in (sorted). */
  swapped: string[];
  /** Secret names found where they would be swapped, but not swapped: plain HTTP without `cleartext`. */
  withheld: string[];
}

export interface SwapContext {
  /** Whether the request leaves over TLS to a verified upstream. */
  tls: boolean;
}

/** Whether a binding's hosts (exact or `*.x`) include the host being dialled. */
export function hostBound(hosts: string[], host: string): boolean {
  const h = canonicalHost(host)?.host;
  if (!h) return false;
  return hosts.some((pattern) => {
    const p = pattern.toLowerCase().replace(/\.$/, "");
    if (p === "*" || p === "") return false; // `*` is never a valid binding: fail closed
    return p.startsWith("*.") ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p;
  });
}

interface Pair {
  name: string;
  token: string;
  real: string;
  /** Found tokens are reported, not replaced (plain HTTP without `cleartext`). */
  withhold: boolean;
}

interface Found {
  used: Set<string>;
  withheld: Set<string>;
}

function replaceTokens(text: string, pairs: Pair[], encode: (s: string) => string, found: Found): string {
  let out = text;
  for (const p of pairs) {
    if (!out.includes(p.token)) continue;
    if (p.withhold) {
      found.withheld.add(p.name);
      continue;
    }
    out = out.split(p.token).join(encode(p.real));
    found.used.add(p.name);
  }
  return out;
}

function swapHeader(name: string, value: string, pairs: Pair[], found: Found): string {
  const basic = /^(basic\s+)([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  if (name.toLowerCase() === "authorization" && basic) {
    const decoded = Buffer.from(basic[2] ?? "", "base64").toString("utf8");
    const swapped = replaceTokens(decoded, pairs, (s) => s, found);
    if (swapped !== decoded) return `${basic[1] ?? "Basic "}${Buffer.from(swapped, "utf8").toString("base64")}`;
  }
  return replaceTokens(value, pairs, (s) => s, found);
}

/** Byte-level replacement in a body: no string copies of what may be tens of megabytes. */
function replaceInBody(body: Buffer, pairs: Pair[], found: Found): Buffer {
  let out = body;
  for (const p of pairs) {
    const token = Buffer.from(p.token, "utf8");
    let at = out.indexOf(token);
    if (at < 0) continue;
    if (p.withhold) {
      found.withheld.add(p.name);
      continue;
    }
    const real = Buffer.from(p.real, "utf8");
    const parts: Buffer[] = [];
    let from = 0;
    while (at >= 0) {
      parts.push(out.subarray(from, at), real);
      from = at + token.length;
      at = out.indexOf(token, from);
    }
    parts.push(out.subarray(from));
    out = Buffer.concat(parts);
    found.used.add(p.name);
  }
  return out;
}

/** Whether any binding of the session may swap into the body of a request to `host` (the body must then be buffered). */
export function bodySwappable(material: SecretMaterial[], host: string): boolean {
  return material.some((m) => m.binding.kind === "http" && m.value !== null && m.binding.in.includes("body") && hostBound(m.binding.hosts, host));
}

/** The request with this session's placeholders swapped where allowed, and the names swapped or withheld. */
export function swapRequest(req: OutgoingRequest, host: string, material: SecretMaterial[], ctx: SwapContext): SwapResult {
  const byLocation = { header: [] as Pair[], query: [] as Pair[], body: [] as Pair[] };
  for (const m of material) {
    if (m.binding.kind !== "http" || m.value === null || !hostBound(m.binding.hosts, host)) continue;
    // Secrets go out only over TLS to a verified upstream, unless the binding opts into cleartext.
    const withhold = !ctx.tls && m.binding.cleartext !== true;
    for (const t of m.placeholder.tokens) {
      const real = realPart(m.value, t.role);
      if (real === null) continue;
      for (const where of m.binding.in) byLocation[where].push({ name: m.binding.name, token: t.token, real, withhold });
    }
  }
  const found: Found = { used: new Set(), withheld: new Set() };
  const headers = req.headers.map(([n, v]): [string, string] => [n, swapHeader(n, v, byLocation.header, found)]);
  let path = req.path;
  const q = path.indexOf("?");
  if (q >= 0 && byLocation.query.length > 0) path = path.slice(0, q + 1) + replaceTokens(path.slice(q + 1), byLocation.query, encodeURIComponent, found);
  let body = req.body;
  if (body !== null && byLocation.body.length > 0 && body.length > 0) body = replaceInBody(body, byLocation.body, found);
  return { headers, path, body, swapped: [...found.used].sort(), withheld: [...found.withheld].sort() };
}

/** Every secret value (and URL part) of the session mapped back to its placeholder, for responses. */
export function responseReplacements(material: SecretMaterial[]): Replacement[] {
  const pairs: { secret: string; placeholder: string }[] = [];
  for (const m of material) {
    if (m.value === null) continue;
    pairs.push({ secret: m.value, placeholder: m.placeholder.text });
    const roles = m.placeholder.tokens.map((t) => t.role);
    for (const t of m.placeholder.tokens) {
      // A URL's user name is redacted only when it is the credential (no password: a DSN key);
      // a database user name like `postgres` is not secret and would mangle ordinary text.
      if (t.role === "whole" || (t.role === "user" && roles.includes("password"))) continue;
      const real = realPart(m.value, t.role);
      if (real) pairs.push({ secret: real, placeholder: t.token });
    }
  }
  return replacementsFor(pairs);
}
