/**
 * Placeholders and default bindings. A placeholder is what a sandbox sees instead of a secret:
 * `paddock-ph-<32 hex>` (128 bits from the CSPRNG, so a sandbox cannot guess another session's).
 * A URL-shaped secret (a Sentry DSN, a database URL) gets a placeholder of the same shape with only
 * the userinfo replaced, so SDKs still parse it and connect to the right host.
 */
import { randomBytes } from "node:crypto";
import type { SecretBinding } from "./types.ts";

export const TOKEN_PATTERN = /paddock-ph-[0-9a-f]{32}/g;

/** Which part of the real value a placeholder token stands for. */
export type TokenRole = "whole" | "user" | "password";

export interface PlaceholderToken {
  token: string;
  role: TokenRole;
}

export interface Placeholder {
  /** The string the sandbox sees. */
  text: string;
  tokens: PlaceholderToken[];
}

export function newToken(): string {
  return `paddock-ph-${randomBytes(16).toString("hex")}`;
}

/** `scheme://user[:password]@host...` split at the userinfo, or null when the value has none. */
export function splitUrlSecret(value: string): { prefix: string; user: string; password: string | null; rest: string } | null {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/@\s?#]*)@(.*)$/is.exec(value);
  if (!m) return null;
  const info = m[2] ?? "";
  const colon = info.indexOf(":");
  return {
    prefix: m[1] ?? "",
    user: colon < 0 ? info : info.slice(0, colon),
    password: colon < 0 ? null : info.slice(colon + 1),
    rest: m[3] ?? "",
  };
}

/** A fresh placeholder for a value (or for an unknown value: a plain token). */
export function makePlaceholder(value: string | null): Placeholder {
  const url = value === null ? null : splitUrlSecret(value);
  if (!url) {
    const token = newToken();
    return { text: token, tokens: [{ token, role: "whole" }] };
  }
  const user = newToken();
  const tokens: PlaceholderToken[] = [{ token: user, role: "user" }];
  let info = user;
  if (url.password !== null) {
    const password = newToken();
    tokens.push({ token: password, role: "password" });
    info += `:${password}`;
  }
  return { text: `${url.prefix}${info}@${url.rest}`, tokens };
}

/** Where a sandbox finds its session CA's certificate (written there by the control plane). */
export const SANDBOX_CA_PATH = "/etc/paddock/ca.pem";

/** The port a sandbox dials for a database URL: its netns DNATs it to the gateway's Postgres listener. */
export const DATABASE_PORT = 5432;

/**
 * URL parameters of the real database URL that the sandbox's URL keeps: client-side settings only.
 * Everything else stays on the gateway's side, known or not: hosts, credentials (`password`,
 * `sslpassword`, whatever else an operator put in the query), TLS files, and `options`, which
 * could ask the server for another role.
 */
const CLIENT_PARAMS = new Set(["application_name", "fallback_application_name", "client_encoding", "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"]);
/** sslmode values that make a client insist on TLS: the sandbox's URL keeps them, verified against the session CA. */
const TLS_REQUIRED = new Set(["require", "verify-ca", "verify-full"]);

/**
 * A placeholder for a database URL (a DATABASE_URL-like or `kind: postgres` secret): a real,
 * usable URL whose host is the gateway (`gatewayHost`, the address every sandbox already reaches,
 * so no name needs resolving and the TLS leaf can carry it as an IP SAN), port 5432, user and
 * password fresh tokens, the real database name, and the real URL's client-side parameters. A real
 * URL that insists on TLS keeps its sslmode, with `sslrootcert` naming the session CA's file.
 * With no value yet (or one that is not a URL) the database name is unknown and left out.
 */
export function makeDatabasePlaceholder(value: string | null, gatewayHost: string): Placeholder {
  const user = newToken();
  const password = newToken();
  let path = "";
  const params = new URLSearchParams();
  const parsed = value === null ? null : parseDatabaseUrl(value);
  if (parsed) {
    path = parsed.pathname;
    for (const [k, v] of parsed.searchParams) if (CLIENT_PARAMS.has(k)) params.append(k, v);
    const sslmode = parsed.searchParams.get("sslmode");
    if (sslmode && TLS_REQUIRED.has(sslmode)) {
      params.set("sslmode", sslmode);
      params.set("sslrootcert", SANDBOX_CA_PATH);
    }
  }
  const query = params.size > 0 ? `?${params.toString()}` : "";
  const host = gatewayHost.includes(":") ? `[${gatewayHost}]` : gatewayHost;
  return { text: `postgres://${user}:${password}@${host}:${DATABASE_PORT}${path}${query}`, tokens: [{ token: user, role: "user" }, { token: password, role: "password" }] };
}

function parseDatabaseUrl(value: string): URL | null {
  try {
    const u = new URL(value);
    return u.protocol === "postgres:" || u.protocol === "postgresql:" ? u : null;
  } catch {
    return null;
  }
}

/** Rebuild a placeholder from its text (a restored registration). */
export function parsePlaceholder(text: string): Placeholder {
  const url = splitUrlSecret(text);
  if (!url) return { text, tokens: [{ token: text, role: "whole" }] };
  const tokens: PlaceholderToken[] = [{ token: url.user, role: "user" }];
  if (url.password !== null) tokens.push({ token: url.password, role: "password" });
  return { text, tokens };
}

/** The part of the real value a token stands for, or null when the value has no such part. */
export function realPart(value: string, role: TokenRole): string | null {
  if (role === "whole") return value;
  const url = splitUrlSecret(value);
  if (!url) return null;
  const raw = role === "user" ? url.user : url.password;
  if (raw === null) return null;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function urlHost(value: string | undefined): string | null {
  if (!value) return null;
  try {
    const host = new URL(value).hostname.toLowerCase();
    return host === "" ? null : host;
  } catch {
    return null;
  }
}

/** DATABASE_URL and *_DATABASE_URL are database secrets by name (a file may also say `kind: postgres`). */
export function isDatabaseUrl(name: string): boolean {
  return name === "DATABASE_URL" || name.endsWith("_DATABASE_URL");
}

/** The default binding for a well-known secret name, or null when Paddock knows no host for it. */
export function defaultBinding(name: string, value?: string): SecretBinding | null {
  const http = (hosts: string[]): SecretBinding => ({ name, hosts, in: ["header"], kind: "http" });
  if (name.startsWith("STRIPE_")) return http(["api.stripe.com"]);
  if (name === "GITHUB_TOKEN" || name === "GH_TOKEN") return http(["github.com", "api.github.com"]);
  if (name === "ANTHROPIC_API_KEY") return http(["api.anthropic.com"]);
  if (name === "OPENAI_API_KEY") return http(["api.openai.com"]);
  if (name === "SENTRY_DSN") {
    // The DSN names its own ingest host; taken literally (never widened to a wildcard).
    const host = urlHost(value);
    return host ? http([host]) : null;
  }
  if (isDatabaseUrl(name)) return { name, hosts: [], in: ["header"], kind: "database" };
  return null;
}

/** Whether a secret name has hosts by default (or is DATABASE_URL-like). */
export function isSecretBound(name: string): boolean {
  return name === "SENTRY_DSN" || isDatabaseUrl(name) || defaultBinding(name) !== null;
}
