/**
 * What the E2B-compatible front end's modules share (docs/e2b.md): the control plane, the error
 * reporter, and the sandbox table that turns an E2B sandbox id into a Paddock session. An E2B
 * sandbox IS a Paddock session; this front end only translates.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { ControlPlane } from "../../control/index.ts";
import type { Principal } from "../../core/index.ts";
import type { Requirement } from "../../guard/index.ts";
import type { ErrorReporter } from "../errors.ts";

/** The envd (in-sandbox daemon) call's caller, after authentication, authorisation and audit. */
export interface EnvdCaller {
  /** The E2B sandbox id the SDK uses (stable across pause and resume). */
  sandboxId: string;
  /** The Paddock session that currently backs it. */
  sessionId: string;
  principal: Principal;
  /** The environment (E2B template) the session was started from. */
  environment: string | null;
}

/** The E2B sandbox table (implemented in sandboxes.ts). */
export interface E2bSandboxes {
  /**
   * Authenticate and authorise an envd call. The sandbox comes from the `E2b-Sandbox-Id` header
   * (or a `<port>-<id>.<domain>` Host); the caller from `X-Access-Token` (the per-sandbox envd
   * access token that create/connect returned). `operation` names the call for the audit log
   * (e.g. "e2b.process.start"); `requirement` is checked against the caller's permissions on the
   * sandbox's environment, and the decision audited before the call runs. Rejects with a
   * `PaddockError`: `unauthorized` (no or bad token), `not_found` (unknown sandbox),
   * `forbidden`, `conflict` (the sandbox is paused or not running).
   */
  envdCaller(headers: IncomingHttpHeaders, operation: string, requirement: Requirement, target?: string): Promise<EnvdCaller>;
}

export interface E2bContext {
  cp: ControlPlane;
  errors: ErrorReporter;
  log: (line: string) => void;
  sandboxes: E2bSandboxes;
}
