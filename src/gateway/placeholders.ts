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

function isDatabaseUrl(name: string): boolean {
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
