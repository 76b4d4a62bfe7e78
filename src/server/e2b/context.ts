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
  /**
   * Authenticate a `/files` call made with a signed URL instead of `X-Access-Token` (the SDK's
   * `uploadUrl`/`downloadUrl`, files.ts). `verify(accessToken)` says whether the URL's signature
   * was made with that envd access token (it needs the token itself: E2B signs
   * `sha256(path:operation:user:token[:expiration])`). The sandbox is the one the request names
   * (`E2b-Sandbox-Id` or Host), else, since a signed URL built on `E2B_SANDBOX_URL` names none,
   * the running sandbox whose token verifies. Then authorised and audited as the principal that
   * token was issued to, like `envdCaller`. Rejects `unauthorized` when no token verifies.
   * Optional: a table that cannot recover its tokens leaves it out, and signed URLs are refused.
   */
  envdSignedCaller?(headers: IncomingHttpHeaders, verify: (accessToken: string) => boolean, operation: string, requirement: Requirement): Promise<EnvdCaller>;
}

export interface E2bContext {
  cp: ControlPlane;
  errors: ErrorReporter;
  log: (line: string) => void;
  sandboxes: E2bSandboxes;
}
