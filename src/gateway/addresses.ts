/**
 * Host names and addresses: one canonical form for every way of writing a host, and the list of
 * addresses the gateway refuses to dial (DESIGN.md invariant 3).
 *
 * Why canonicalise: `2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1` and `0` are all spellings of
 * a loopback or unspecified address that C resolvers (and curl) accept. If policy matched the
 * spelling instead of the address, a rule like `deny 127.0.0.1` would be bypassed by `127.1`.
 */
import ipaddr from "ipaddr.js";

/** A host in canonical form: lower-case, no trailing dot, IP literals as their canonical address. */
export interface CanonicalHost {
  host: string;
  /** Set when the host is an IP literal (any spelling). */
  ip?: { kind: "ipv4" | "ipv6"; address: string };
}

/** Canonical host, or null when the text cannot be a host at all (refuse it). */
export function canonicalHost(raw: string): CanonicalHost | null {
  let h = raw.trim().toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  while (h.endsWith(".")) h = h.slice(0, -1);
  if (h === "") return null;
  // Zone ids (fe80::1%eth0) would let a literal pick an interface: never a valid target.
  if (h.includes("%")) return null;
  // Every IP literal form (dotted, hex, octal, IPv6) is made of hex digits, x, dots and colons;
  // anything else is a name, and skipping the parser for it keeps the per-request cost down.
  if (/^[0-9a-fx.:]+$/.test(h) && ipaddr.isValid(h)) {
    const ip = canonicalIp(h);
    return ip ? { host: ip.address, ip } : null;
  }
  // Host names: letters, digits, hyphen, underscore (seen in real DNS), dots between labels.
  if (!/^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/.test(h) || h.length > 253) return null;
  return { host: h };
}

/** Canonical IP text; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes the IPv4 address it maps. */
export function canonicalIp(text: string): { kind: "ipv4" | "ipv6"; address: string } | null {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(text.startsWith("[") ? text.slice(1, -1) : text);
  } catch {
    return null;
  }
  if (addr instanceof ipaddr.IPv6 && addr.isIPv4MappedAddress()) addr = addr.toIPv4Address();
  return addr instanceof ipaddr.IPv4
    ? { kind: "ipv4", address: addr.toString() }
    : { kind: "ipv6", address: addr.toString() };
}

/** Host text as written in a URL or Host header: IPv6 in brackets. */
export function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * Why an address must not be dialled, or null when it is a public unicast address. Fails closed:
 * anything that does not parse, or any IPv6 outside global unicast 2000::/3 (this covers the
 * IPv4-compatible `::a.b.c.d` forms, which ipaddr.js calls "unicast"), is refused.
 */
export function blockedReason(address: string): string | null {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(address);
  } catch {
    return "not an IP address";
  }
  if (addr instanceof ipaddr.IPv6 && addr.isIPv4MappedAddress()) addr = addr.toIPv4Address();
  const range = addr.range();
  if (addr instanceof ipaddr.IPv4) {
    if (addr.toString() === "169.254.169.254") return "cloud metadata address";
    return range === "unicast" ? null : `${rangeWords(range)} address`;
  }
  if (addr.toString() === "fd00:ec2::254") return "cloud metadata address";
  if (range !== "unicast") return `${rangeWords(range)} address`;
  // Global unicast is 2000::/3; everything else (IPv4-compatible, unassigned) is refused.
  const first = addr.parts[0] ?? 0;
  return first >= 0x2000 && first <= 0x3fff ? null : "reserved IPv6 address";
}

function rangeWords(range: string): string {
  switch (range) {
    case "carrierGradeNat":
      return "carrier-grade NAT (100.64/10)";
    case "linkLocal":
      return "link-local";
    case "uniqueLocal":
      return "unique-local";
    default:
      return range;
  }
}

/** Strip the IPv4-mapped prefix Node puts on dual-stack sockets' remote addresses. */
export function sourceAddress(remote: string | undefined): string {
  if (!remote) return "";
  return remote.startsWith("::ffff:") && remote.includes(".") ? remote.slice(7) : remote;
}
