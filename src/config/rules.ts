/**
 * Shape checks for the strings inside guardrails and secret bindings. Each returns either the
 * normalised value or a message saying how to fix the entry. They judge the *shape* of a rule
 * only; what a rule allows is decided by the guard and the gateway.
 */
import { isIPv4, isIPv6 } from "node:net";
import { quote } from "./words.ts";

export type Checked = { ok: true; value: string } | { ok: false; message: string };

const fail = (message: string): Checked => ({ ok: false, message });

const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A program rule: a program name (`rm`) or an absolute path (`/usr/bin/rm`). Rules name programs,
 * not command lines, because enforcement happens at exec time on the program actually started.
 */
export function checkCommandRule(raw: string): Checked {
  if (raw.trim() === "") return fail('empty entry: write a program name such as "npm" or a path such as "/usr/bin/npm"');
  if (/\s/.test(raw)) {
    const program = raw.trim().split(/\s+/)[0] ?? "";
    return fail(`${quote(raw)} contains whitespace: rules name a program, not a command line (write ${quote(program)})`);
  }
  // eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
  if (/[\u0000-\u001f\u007f]/.test(raw)) return fail(`${quote(raw)} contains a control character`);
  if (raw.includes("/") && !raw.startsWith("/")) {
    return fail(`${quote(raw)} is a relative path: write a program name ("rm") or an absolute path ("/usr/bin/rm")`);
  }
  if (raw.endsWith("/")) return fail(`${quote(raw)} ends with "/": a rule names a program, not a directory`);
  return { ok: true, value: raw };
}

/** Splits `host`, `host:port` and `[v6]:port`, lower-cased, with a trailing root dot dropped. */
function splitHostPort(raw: string): { host: string; port: string | undefined } | string {
  const lower = raw.toLowerCase();
  const v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(lower);
  if (v6 !== null) {
    if (!isIPv6(v6[1] ?? "")) return `${quote(raw)} is not a valid bracketed IPv6 address`;
    return { host: `[${v6[1] ?? ""}]`, port: v6[2] };
  }
  const colons = lower.split(":").length - 1;
  if (colons > 1) {
    return isIPv6(lower)
      ? `write IPv6 addresses in brackets, e.g. ${quote(`[${lower}]`)} or ${quote(`[${lower}]:443`)}`
      : `${quote(raw)} has more than one ":": write host or host:port`;
  }
  const [host = "", port] = lower.split(":");
  // "api.stripe.com." and "api.stripe.com" are the same name; rules are kept in one form.
  return { host: host.endsWith(".") && host.length > 1 ? host.slice(0, -1) : host, port };
}

function checkPort(port: string | undefined, raw: string): string | undefined {
  if (port === undefined) return undefined;
  const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
  if (!(n >= 1 && n <= 65535)) return `${quote(raw)} has a bad port ${quote(port)}: use 1 to 65535`;
  return undefined;
}

/** Checks a host name or dotted IPv4 address (no wildcard). */
function checkHostName(host: string, raw: string): string | undefined {
  if (host.length > 253) return `${quote(raw)} is longer than a host name can be (253 characters)`;
  const labels = host.split(".");
  const bad = labels.find((l) => !LABEL_RE.test(l));
  if (bad !== undefined) {
    return `${quote(raw)} is not a host name: use letters, digits, "-" and "." (e.g. "api.stripe.com"), "*.example.com", "*", or host:port`;
  }
  // Numeric forms such as 127.1, 0177.0.0.1 or 2130706433 mean different addresses to different
  // resolvers; a rule must say exactly which address it names.
  const numeric = /^\d+$/.test(labels[labels.length - 1] ?? "") || /^0x[0-9a-f]+$/.test(host);
  if (numeric && !isIPv4(host)) {
    return `${quote(raw)} is neither a host name nor a dotted IPv4 address: write addresses in full, e.g. "127.0.0.1"`;
  }
  return undefined;
}

/**
 * A network rule: `api.stripe.com`, `*.example.com`, `*`, an IPv4 address, `[::1]`, each with an
 * optional `:port`. Returned lower-cased without a trailing dot.
 */
export function checkNetworkRule(raw: string, opts: { allowAny: boolean } = { allowAny: true }): Checked {
  if (raw.trim() === "") return fail('empty entry: write a host such as "api.stripe.com", "*.example.com" or "*"');
  if (/\s/.test(raw)) return fail(`${quote(raw)} contains whitespace: write one host per entry`);
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/([^/]*)/i.exec(raw);
  if (scheme !== null) return fail(`${quote(raw)} is a URL: write the host only, e.g. ${quote(scheme[1] ?? "")}`);
  if (raw.includes("/")) return fail(`${quote(raw)} has a path: rules match hosts (and ports), not paths`);
  const split = splitHostPort(raw);
  if (typeof split === "string") return fail(split);
  const portProblem = checkPort(split.port, raw);
  if (portProblem !== undefined) return fail(portProblem);
  const { host } = split;
  const value = split.port === undefined ? host : `${host}:${split.port}`;
  if (host.startsWith("[")) return { ok: true, value };
  if (host === "*") {
    // Fails closed: a secret bound to every host could be replayed to an attacker's server.
    if (!opts.allowAny) return fail('"*" would send the secret to any host: name the hosts it belongs to, e.g. "api.stripe.com"');
    return { ok: true, value };
  }
  if (host.startsWith("*.")) {
    const rest = host.slice(2);
    const problem = checkHostName(rest, raw);
    if (problem !== undefined) return fail(problem);
    // "*.com" is almost certainly a mistake, and as a rule it is far broader than it looks.
    if (!rest.includes(".")) return fail(`${quote(raw)} covers a whole top-level domain: name the domain, e.g. ${quote(`*.example.${rest}`)}, or use "*" for every host`);
    return { ok: true, value };
  }
  if (host.includes("*")) return fail(`${quote(raw)}: a wildcard may only be "*" or a leading "*." as in "*.example.com"`);
  const problem = checkHostName(host, raw);
  return problem === undefined ? { ok: true, value } : fail(problem);
}
