/**
 * One error type for the whole product (STYLE.md, point 6). Boxes throw a `PaddockError` with one of
 * a few codes; only the edges (HTTP server, CLI) translate a code into a status or an exit code.
 * Messages say what is wrong and how to fix it, and never contain a secret value.
 */
export type ErrorCode =
  | "not_found"
  | "invalid_argument"
  | "unauthorized"
  | "forbidden"
  | "conflict"
  | "unavailable"
  | "internal";

/** A problem located in a file, e.g. `runtime.yml:14:7 guardrails.comands: unknown key`. */
export interface LocatedIssue {
  file: string;
  line: number;
  column: number;
  /** Dotted path of the offending key or value, e.g. `guardrails.commands.allow[2]`. */
  path: string;
  message: string;
}

export class PaddockError extends Error {
  readonly code: ErrorCode;
  /** Extra machine-readable detail (e.g. every located issue of an invalid file). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PaddockError";
    this.code = code;
    this.details = details;
  }
}

/**
 * At most `max` characters of caller input for a message: longer text is cut and says how long it
 * was, so a 3 MiB input never becomes a 3 MiB error.
 * @example excerpt("x".repeat(5000), 10) // "xxxxxxxxxx… (5000 characters)"
 */
export function excerpt(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/** Caller input quoted for a message: JSON-quoted (control characters escaped) and cut to `max`. */
export const quoted = (text: string, max = 200): string =>
  text.length <= max ? JSON.stringify(text) : `${JSON.stringify(text.slice(0, max))}… (${text.length} characters)`;

export const notFound = (what: string, id: string): PaddockError =>
  new PaddockError("not_found", `${what} ${quoted(id)} not found`);

export const invalid = (message: string, details?: Record<string, unknown>): PaddockError =>
  new PaddockError("invalid_argument", message, details);

export const conflict = (message: string): PaddockError => new PaddockError("conflict", message);

export const unavailable = (message: string, cause?: unknown): PaddockError =>
  new PaddockError("unavailable", message, undefined, { cause });

export const internal = (message: string, cause?: unknown): PaddockError =>
  new PaddockError("internal", message, undefined, { cause });

/** Turn anything thrown into a PaddockError without losing the original as `cause`. */
export function asPaddockError(err: unknown): PaddockError {
  if (err instanceof PaddockError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return internal(message, err);
}

/** HTTP status for each code: the one place this mapping lives. */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case "not_found":
      return 404;
    case "invalid_argument":
      return 400;
    case "unauthorized":
      return 401;
    case "forbidden":
      return 403;
    case "conflict":
      return 409;
    case "unavailable":
      return 503;
    case "internal":
      return 500;
  }
}

/** Reverse of httpStatusOf, used by the HTTP client to rebuild errors. */
export function codeOfHttpStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return "invalid_argument";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 409:
      return "conflict";
    case 503:
      return "unavailable";
    default:
      return "internal";
  }
}
