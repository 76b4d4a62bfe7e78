/**
 * `guardrails.network`: which host:port a sandbox may reach. Pure functions; docs/gateway.md has
 * examples. The most specific matching entry wins (exact host:port > exact host > longer `*.suffix`
 * > shorter > `*:port` > `*`); on a tie deny wins; nothing matching means denied.
 */
import { canonicalHost } from "./addresses.ts";
import type { NetworkPolicy } from "./types.ts";

interface Entry {
  list: "allow" | "deny";
  index: number;
  kind: "exact" | "suffix" | "any" | "invalid";
  /** Canonical host (exact) or the suffix after `*.` (suffix). */
  host: string;
  isIp: boolean;
  port?: number;
}

export interface Decision {
  allowed: boolean;
  rule: string;
  reason?: string;
}

const DEFAULT_PORTS = [80, 443];

/** Parse one entry. An entry that does not parse becomes `invalid`: it allows nothing, and as a
 * deny entry it denies everything (fail closed: a typo in a deny list must not open the network). */
function parseEntry(list: "allow" | "deny", index: number, raw: string): Entry {
  const invalid: Entry = { list, index, kind: "invalid", host: "", isIp: false };
  let text = raw.trim().toLowerCase();
  let port: number | undefined;
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(text.startsWith("[") || !text.includes("::") ? text : `[${text}]`);
  if (!m) return invalid;
  text = m[1] ?? "";
  if (m[2] !== undefined) {
    port = Number(m[2]);
    if (port < 1 || port > 65535) return invalid;
  }
  const base = port === undefined ? {} : { port };
  if (text === "*") return { list, index, kind: "any", host: "", isIp: false, ...base };
  if (text.startsWith("*.")) {
    const suffix = canonicalHost(text.slice(2));
    if (!suffix || suffix.ip) return invalid;
    return { list, index, kind: "suffix", host: suffix.host, isIp: false, ...base };
  }
  const host = canonicalHost(text);
  if (!host) return invalid;
  return { list, index, kind: "exact", host: host.host, isIp: host.ip !== undefined, ...base };
}

function entries(policy: NetworkPolicy): Entry[] {
  return [
    ...policy.allow.map((e, i) => parseEntry("allow", i, e)),
    ...policy.deny.map((e, i) => parseEntry("deny", i, e)),
  ];
}

function matches(e: Entry, host: string, isIp: boolean, port: number): boolean {
  const portOk = e.port === undefined ? DEFAULT_PORTS.includes(port) : e.port === port;
  switch (e.kind) {
    case "invalid":
      return e.list === "deny";
    case "any":
      return portOk;
    case "exact":
      return portOk && e.host === host;
    case "suffix":
      return portOk && !isIp && host.endsWith(`.${e.host}`);
  }
}

/** Specificity as a tuple compared left to right. */
function score(e: Entry): [number, number, number] {
  const p = e.port === undefined ? 0 : 1;
  switch (e.kind) {
    case "invalid":
      return [9, 0, 0];
    case "exact":
      return [3, 0, p];
    case "suffix":
      return [2, e.host.length, p];
    case "any":
      return [1, 0, p];
  }
}

function compare(a: [number, number, number], b: [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** `guardrails.network.allow[0] (runtime.yml:27)` */
export function ruleName(policy: NetworkPolicy, list: "allow" | "deny", index: number): string {
  const sources = list === "allow" ? policy.allowSources : policy.denySources;
  const where = sources?.[index];
  return `guardrails.network.${list}[${index}]${where ? ` (${where})` : ""}`;
}

function winner(policy: NetworkPolicy, host: string, port: number): { entry: Entry | null; canonical: string | null } {
  const c = canonicalHost(host);
  if (!c || !Number.isInteger(port) || port < 1 || port > 65535) return { entry: null, canonical: null };
  let best: Entry | null = null;
  for (const e of entries(policy)) {
    if (!matches(e, c.host, c.ip !== undefined, port)) continue;
    const cmp = best ? compare(score(e), score(best)) : 1;
    // On a tie deny wins.
    if (cmp > 0 || (cmp === 0 && e.list === "deny")) best = e;
  }
  return { entry: best, canonical: c.host };
}

/** Whether `host:port` may be reached under `policy`, and the rule that decided. */
export function decideHost(policy: NetworkPolicy, host: string, port: number): Decision {
  const { entry, canonical } = winner(policy, host, port);
  if (canonical === null) return { allowed: false, rule: "gateway.invalid-target", reason: "not a valid host or port" };
  if (!entry) return { allowed: false, rule: "gateway.default-deny", reason: `no rule allows ${canonical}:${port}` };
  const rule = ruleName(policy, entry.list, entry.index);
  if (entry.kind === "invalid") return { allowed: false, rule, reason: "the deny entry does not parse, so everything is denied" };
  return entry.list === "allow" ? { allowed: true, rule } : { allowed: false, rule, reason: `denied by ${rule}` };
}

/** True when an allow entry naming exactly this IP literal is what allows `ip:port`: the only way a
 * private or loopback address may be dialled (DESIGN.md invariant 3). */
export function ipLiteralAllowed(policy: NetworkPolicy, ip: string, port: number): boolean {
  const { entry } = winner(policy, ip, port);
  return entry !== null && entry.list === "allow" && entry.kind === "exact" && entry.isIp;
}

/** Whether a DNS name could be allowed on some port: the ports that matter are 80, 443 and every
 * port an entry names, since no other port changes which entries match. */
export function couldAllowName(policy: NetworkPolicy, name: string): boolean {
  const ports = new Set(DEFAULT_PORTS);
  for (const e of entries(policy)) if (e.port !== undefined) ports.add(e.port);
  for (const port of ports) if (decideHost(policy, name, port).allowed) return true;
  return false;
}

/** DNS subtrees for the session CA's name constraints, or null when the policy allows `*`. An empty
 * list means no name is allowed; ca.ts then permits only the reserved name `invalid`. */
export function permittedDnsNames(policy: NetworkPolicy): string[] | null {
  const names = new Set<string>();
  for (const e of entries(policy)) {
    if (e.list !== "allow") continue;
    if (e.kind === "any") return null;
    if ((e.kind === "exact" && !e.isIp) || e.kind === "suffix") names.add(e.host);
  }
  return [...names];
}
