/**
 * E2B's errors as PaddockErrors, each naming the provider instance and what it was doing. The SDK
 * (e2b 2.51) throws its own classes: from the control API by HTTP status (401 →
 * AuthenticationError, 429 → RateLimitError, 503 → ServiceBusyError, others SandboxError with
 * `statusCode`), from envd by Connect code (`invalid_argument`, `not_found`, `unauthenticated`,
 * `permission_denied` as "permission_denied: …", `unavailable` when the sandbox is gone).
 *
 * A refusal of the API key is `unavailable`, not `unauthorized`: the caller's Paddock token is
 * fine, it is the provider instance that is misconfigured, and routing should skip it.
 */
import {
  AuthenticationError, FileNotFoundError, InvalidArgumentError, NotEnoughSpaceError, NotFoundError, RateLimitError, SandboxError,
  SandboxNotFoundError, TemplateError, TimeoutError,
} from "e2b";
import { PaddockError, type ErrorCode } from "../../core/index.ts";

/** The SDK's error text, cut and with anything shaped like an E2B key or token masked. */
function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\b(e2b_|e2bat_)[A-Za-z0-9_-]+/g, "$1…").slice(0, 500);
}

function codeOf(err: unknown): ErrorCode {
  if (err instanceof AuthenticationError) return "unavailable";
  if (err instanceof FileNotFoundError || err instanceof SandboxNotFoundError || err instanceof NotFoundError) return "not_found";
  if (err instanceof InvalidArgumentError || err instanceof TemplateError) return "invalid_argument";
  if (err instanceof RateLimitError || err instanceof TimeoutError || err instanceof NotEnoughSpaceError) return "unavailable";
  if (err instanceof SandboxError) {
    // envd's HTTP errors (file uploads and downloads) carry the status only in the message: "403: …".
    // The control API's 403 refuses the API key's access (the instance is misconfigured); envd's
    // is a permission of the sandbox's user.
    if (err.statusCode === 403) return "unavailable";
    const status = err.statusCode ?? (Number(/^(\d{3}): /.exec(err.message)?.[1]) || undefined);
    if (status === 403) return "forbidden";
    if (status === 404) return "not_found";
    if (status === 409) return "conflict";
    if (status === 400 || status === 422) return "invalid_argument";
    // envd's Connect errors the SDK has no class for: "<code number>: [permission_denied] …".
    if (/\[permission_denied\]|^permission_denied\b/.test(err.message)) return "forbidden";
    if (/\[(already_exists|failed_precondition|aborted)\]|^(already_exists|failed_precondition)\b/.test(err.message)) return "conflict";
    return "unavailable";
  }
  // fetch failures (connection refused, DNS, TLS) and anything else from the transport.
  return "unavailable";
}

/**
 * `err` from the e2b SDK as a PaddockError: `provider "NAME" (e2b): WHAT: MESSAGE`, with
 * `details.provider` and, when E2B answered with one, `details.status`.
 */
export function fromE2b(provider: string, what: string, err: unknown): PaddockError {
  if (err instanceof PaddockError) return err;
  const code = codeOf(err);
  const status = err instanceof SandboxError ? err.statusCode : err instanceof AuthenticationError ? 401 : undefined;
  const hint = err instanceof AuthenticationError ? `; E2B refused the API key: check the vault secret provider/${provider}/apiKey` : "";
  return new PaddockError(code, `provider ${JSON.stringify(provider)} (e2b): ${what}: ${describe(err)}${hint}`, { provider, ...(status !== undefined ? { status } : {}) }, { cause: err });
}

/** True when the SDK says the file or directory does not exist. */
export const isFileNotFound = (err: unknown): boolean => err instanceof FileNotFoundError || (err instanceof NotFoundError && !(err instanceof SandboxNotFoundError));
