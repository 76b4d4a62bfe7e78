/**
 * The wire between a control plane and a remote node (`paddock node`): HTTPS with mutual TLS, JSON
 * bodies, file contents as raw bytes, and exec as a WebSocket. Both sides import this file, so
 * paths and frames are defined once.
 *
 * Exec (`/v1/sandboxes/:id/exec`, WebSocket): the client's first message is a text frame
 * `ExecStart`; then binary frames are stdin bytes and text frames are `ExecControl`. The node
 * sends binary frames whose first byte is the stream (`STDOUT` or `STDERR`), and ends with one
 * text frame `ExecEnd` before closing.
 */
import type { ComputeLimits, ExecResult, ExecGuard, SandboxMode, ServiceSpec } from "../../core/provider.ts";
import { PaddockError, httpStatusOf, type ErrorCode } from "../../core/errors.ts";

export const NODE_API = "/v1";

/** What crosses the wire of a `SandboxSpec` (its callbacks cannot). */
export interface WireSandboxSpec {
  id: string;
  mode: SandboxMode;
  base: "host" | "debian-12";
  compute: ComputeLimits;
  hostname: string;
  env: Record<string, string>;
  guard?: ExecGuard;
  services?: ServiceSpec[];
  sessionUser?: { name: string; home: string };
  /**
   * The session's way out (`SandboxSpec.remoteEgress`, called by the control plane): the proxy
   * variables with the session's proxy credential, the CA files, and the only destinations the
   * node may let the sandbox reach. Never a secret of the user's (the gateway swaps those in).
   * Absent: the sandbox gets no network.
   */
  egress?: WireEgress;
  /** The node builds (or finds) the template's layers from these steps; see src/node/recipe.ts. */
  recipe: { templateId: string; base: "host" | "debian-12"; steps: string[] };
}

export interface WireEgress {
  env: Record<string, string>;
  files: { path: string; content: string }[];
  allow: { host: string; port: number }[];
}

export interface ExecStart {
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** False: empty stdin (nothing will follow). */
  stdin: boolean;
}

export type ExecControl =
  | { type: "stdin-end" }
  | { type: "signal"; name: string }
  | { type: "pause" }
  | { type: "resume" }
  /** The caller's AbortSignal fired: kill the command's process group. */
  | { type: "abort" };

export type ExecEnd = { type: "exit"; result: ExecResult } | { type: "error"; error: WireError };

export const STDOUT = 1;
export const STDERR = 2;

export interface WireError {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

const CODES: readonly ErrorCode[] = ["not_found", "invalid_argument", "unauthorized", "forbidden", "conflict", "unavailable", "internal"];

/** HTTP status for an error code (the node's answers; the client maps back by the body's code): the API's own mapping. */
export const statusOf = httpStatusOf;

/** An error as the node sends it: a PaddockError keeps its code and message; anything else is `internal` without its text (it might name node paths). */
export function toWire(err: unknown): WireError {
  if (err instanceof PaddockError) return { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) };
  return { code: "internal", message: "internal error on the node (see its log)" };
}

/** The node's error again as a PaddockError, saying which node answered. */
export function fromWire(body: unknown, node: string): PaddockError {
  const e = (body as { error?: Partial<WireError> } | null)?.error;
  const code = CODES.includes(e?.code as ErrorCode) ? (e?.code as ErrorCode) : "internal";
  const message = typeof e?.message === "string" ? e.message : "the node answered with an unreadable error";
  return new PaddockError(code, `${message} (node ${node})`, e?.details);
}
