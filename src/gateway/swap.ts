/**
 * Placeholder → secret substitution for one outgoing request (DESIGN.md invariant 2). A token is
 * swapped only when (a) it belongs to the calling session (tokens are per session, so another
 * session's token is simply unknown here), (b) the host actually dialled is one the binding names,
 * and (c) the token sits in a location the binding allows. Anything else goes out unchanged.
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
  body: Buffer;
}

export interface SwapResult extends OutgoingRequest {
  swapped: string[];
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
}

function replaceTokens(text: string, pairs: Pair[], encode: (s: string) => string, used: Set<string>): string {
  let out = text;
  for (const p of pairs) {
    if (!out.includes(p.token)) continue;
    out = out.split(p.token).join(encode(p.real));
    used.add(p.name);
  }
  return out;
}

function swapHeader(name: string, value: string, pairs: Pair[], used: Set<string>): string {
  const basic = /^(basic\s+)([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  if (name.toLowerCase() === "authorization" && basic) {
    const decoded = Buffer.from(basic[2] ?? "", "base64").toString("utf8");
    const swapped = replaceTokens(decoded, pairs, (s) => s, used);
    if (swapped !== decoded) return `${basic[1] ?? "Basic "}${Buffer.from(swapped, "utf8").toString("base64")}`;
  }
  return replaceTokens(value, pairs, (s) => s, used);
}

/** The request with this session's placeholders swapped where allowed, and the names swapped. */
export function swapRequest(req: OutgoingRequest, host: string, material: SecretMaterial[]): SwapResult {
  const byLocation = { header: [] as Pair[], query: [] as Pair[], body: [] as Pair[] };
  for (const m of material) {
    if (m.binding.kind !== "http" || m.value === null || !hostBound(m.binding.hosts, host)) continue;
    for (const t of m.placeholder.tokens) {
      const real = realPart(m.value, t.role);
      if (real === null) continue;
      for (const where of m.binding.in) byLocation[where].push({ name: m.binding.name, token: t.token, real });
    }
  }
  const used = new Set<string>();
  const headers = req.headers.map(([n, v]): [string, string] => [n, swapHeader(n, v, byLocation.header, used)]);
  let path = req.path;
  const q = path.indexOf("?");
  if (q >= 0 && byLocation.query.length > 0) path = path.slice(0, q + 1) + replaceTokens(path.slice(q + 1), byLocation.query, encodeURIComponent, used);
  let body = req.body;
  if (byLocation.body.length > 0 && body.length > 0) {
    let text = body.toString("latin1");
    const pairs = byLocation.body.map((p) => ({ ...p, real: Buffer.from(p.real, "utf8").toString("latin1") }));
    text = replaceTokens(text, pairs, (s) => s, used);
    body = Buffer.from(text, "latin1");
  }
  return { headers, path, body, swapped: [...used].sort() };
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
