/**
 * Dialling upstream. Addresses are vetted at connect time on the address actually dialled: the
 * host is resolved once, private/loopback/link-local/metadata addresses are dropped (unless an
 * allow rule names that exact IP literal), and the request is given a `lookup` that returns only
 * the vetted address, so there is no window for DNS rebinding between the check and the connect.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import tls, { rootCertificates } from "node:tls";
import { readFileSync } from "node:fs";
import { blockedReason, canonicalHost, canonicalIp } from "./addresses.ts";
import { ipLiteralAllowed } from "./policy.ts";
import type { NetworkPolicy } from "./types.ts";

export interface UpstreamOptions {
  /** Extra CAs to trust for upstream TLS (tests' own CA); Node's roots and the OS bundle are always trusted. */
  extraCaPem?: string[];
  /** DNS override (tests); default: dns.lookup with all addresses. */
  resolve?: (host: string) => Promise<string[]>;
  /**
   * Installation-level exceptions to the private-address refusal: upstreams the operator runs on
   * a private or loopback address (an internal registry mirror; the test suite's local stand-ins
   * for Stripe and GitHub). Configured on the server, never by an environment file.
   */
  trustedAddresses?: string[];
  /** TEST ONLY: the port actually dialled for a logical host:port (tests' upstreams listen on
   * random ports). Policy and records always use the logical port. Never set in production. */
  portOverride?: (host: string, port: number) => number;
}

export type Vetted = { ok: true; address: string; family: 4 | 6 } | { ok: false; reason: string };

async function defaultResolve(host: string): Promise<string[]> {
  const all = await dnsLookup(host, { all: true, verbatim: true });
  return all.map((a) => a.address);
}

/** Resolve `host` and pick an address that may be dialled for `port` under `policy`. */
export async function vetAddress(
  policy: NetworkPolicy,
  host: string,
  port: number,
  resolve = defaultResolve,
  trusted: readonly string[] = [],
): Promise<Vetted> {
  const c = canonicalHost(host);
  if (!c) return { ok: false, reason: "not a valid host" };
  let candidates: string[];
  if (c.ip) candidates = [c.ip.address];
  else {
    try {
      candidates = await resolve(c.host);
    } catch {
      return { ok: false, reason: `${c.host} does not resolve` };
    }
  }
  const refused: string[] = [];
  const usable: { address: string; family: 4 | 6 }[] = [];
  for (const raw of candidates) {
    const ip = canonicalIp(raw);
    if (!ip) continue;
    const why = blockedReason(ip.address);
    if (why !== null && !ipLiteralAllowed(policy, ip.address, port) && !trusted.includes(ip.address)) {
      refused.push(`${ip.address} (${why})`);
      continue;
    }
    usable.push({ address: ip.address, family: ip.kind === "ipv4" ? 4 : 6 });
  }
  // Prefer IPv4: sandboxes have no IPv6 route and many hosts lack one too.
  const pick = usable.find((u) => u.family === 4) ?? usable[0];
  if (pick) return { ok: true, ...pick };
  if (refused.length > 0) return { ok: false, reason: `${c.host} resolves only to refused addresses: ${refused.join(", ")}; add an allow rule naming the address to reach it` };
  return { ok: false, reason: `${c.host} has no usable address` };
}

/** A lookup that can only ever return the vetted address. */
function pinnedLookup(address: string, family: 4 | 6): LookupFunction {
  return ((_host: string, options: { all?: boolean }, cb: (...args: unknown[]) => void) => {
    if (options?.all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  }) as unknown as LookupFunction;
}

/**
 * Keep-alive connections upstream, one pool per session (a connection that carried one session's
 * credentials never carries another's). Pooled sockets were dialled to an address vetted for the
 * same host; every request is still vetted before it is sent.
 */
export class UpstreamAgents {
  private readonly pools = new Map<string, { http: http.Agent; https: https.Agent }>();

  get(sessionId: string, tls: boolean): http.Agent {
    let p = this.pools.get(sessionId);
    if (!p) {
      const opts = { keepAlive: true, maxSockets: 32, maxFreeSockets: 8, timeout: 60_000, scheduling: "lifo" as const };
      p = { http: new http.Agent(opts), https: new https.Agent(opts) };
      this.pools.set(sessionId, p);
    }
    return tls ? p.https : p.http;
  }

  drop(sessionId: string): void {
    const p = this.pools.get(sessionId);
    if (!p) return;
    this.pools.delete(sessionId);
    p.http.destroy();
    p.https.destroy();
  }

  close(): void {
    for (const id of [...this.pools.keys()]) this.drop(id);
  }
}

export interface DialOptions {
  /** The pool to use (per session). */
  agent: http.Agent;
  tls: boolean;
  host: string;
  port: number;
  vetted: { address: string; family: 4 | 6 };
  method: string;
  path: string;
  headers: [string, string][];
  options: UpstreamOptions;
}

/** Start the upstream request (not yet ended). Certificates are verified; a failure errors the request. */
export function dial(d: DialOptions): http.ClientRequest {
  const port = d.options.portOverride ? d.options.portOverride(d.host, d.port) : d.port;
  const isIp = canonicalHost(d.host)?.ip !== undefined;
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of d.headers) {
    const key = name.toLowerCase();
    const prev = headers[key];
    headers[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  const common = {
    host: d.host,
    port,
    method: d.method,
    path: d.path,
    headers,
    setHost: false,
    agent: d.agent,
    lookup: pinnedLookup(d.vetted.address, d.vetted.family),
    timeout: 120_000,
  };
  // Small writes (headers, then an empty end) must not wait for delayed ACKs (Nagle).
  if (!d.tls) return withNoDelay(http.request(common));
  return withNoDelay(https.request({
    ...common,
    ...(isIp ? {} : { servername: d.host }),
    // One prebuilt context: passing `ca` would make the agent re-key every request on the whole
    // CA list (and rebuild a context per connection).
    secureContext: trustContext(d.options.extraCaPem ?? []),
    rejectUnauthorized: true,
  } as https.RequestOptions));
}

const contexts = new WeakMap<string[], tls.SecureContext>();
const noExtraCa: string[] = [];
/** The trust store for upstream TLS: the system's roots plus the configured extra CAs. */
/**
 * The operating system's CA bundle, trusted beside Node's own roots: an organisation's TLS-inspecting
 * proxy or internal CA is installed there (update-ca-certificates), and curl, git and npm on the same
 * machine trust it too. Read once; absent on systems without one.
 */
const SYSTEM_BUNDLES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];
let systemCa: string[] | null = null;
function systemBundle(): string[] {
  if (systemCa === null) {
    systemCa = [];
    for (const f of SYSTEM_BUNDLES) {
      try {
        systemCa = [readFileSync(f, "utf8")];
        break;
      } catch {
        /* next */
      }
    }
  }
  return systemCa;
}

function trustContext(extra: string[]): tls.SecureContext {
  const key = extra.length ? extra : noExtraCa;
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = tls.createSecureContext({ ca: [...rootCertificates, ...systemBundle(), ...extra], minVersion: "TLSv1.2" });
    contexts.set(key, ctx);
  }
  return ctx;
}

function withNoDelay(req: http.ClientRequest): http.ClientRequest {
  req.setNoDelay(true);
  return req;
}
