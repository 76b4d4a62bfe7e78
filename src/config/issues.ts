/**
 * Located problems in an environment file, and the one error type that carries them.
 *
 * `src/config` is the lowest box and imports nothing from the rest of `src/`, so it defines its
 * own error instead of core's `PaddockError`. It carries the same `code` field so the edges
 * (HTTP, CLI) can translate it with the same table.
 */

/** One problem, located in the file. */
export interface ConfigIssue {
  /** The file name as shown to people, e.g. `runtime.yml`. */
  file: string;
  /** 1-based line; 0 when the problem is the file as a whole (it cannot be read). */
  line: number;
  /** 1-based column; 0 together with line 0. */
  column: number;
  /** Dotted path of the offending key or value, e.g. `guardrails.commands.deny[0]`; "" for the file. */
  path: string;
  /** What is wrong and how to fix it. */
  message: string;
}

/**
 * Formats an issue the way compilers do, so editors and terminals can jump to it.
 *
 * @example formatIssue(i) // `runtime.yml:14:7 guardrails.comands: unknown key (did you mean "commands"?)`
 */
export function formatIssue(i: ConfigIssue): string {
  const where = i.line > 0 ? `${i.file}:${i.line}:${i.column}` : i.file;
  return i.path === "" ? `${where}: ${i.message}` : `${where} ${i.path}: ${i.message}`;
}

/** Orders issues as they appear in the file; the sort is stable, so equal positions keep their order. */
export function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return [...issues].sort((a, b) => a.line - b.line || a.column - b.column);
}

/** Thrown by `loadEnvironmentFile` for every kind of bad input; `issues` holds all of them at once. */
export class ConfigError extends Error {
  /** Same vocabulary as core's `PaddockError`: a bad file is always the caller's argument. */
  readonly code = "invalid_argument" as const;
  readonly issues: ConfigIssue[];

  constructor(issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join("\n"));
    this.name = "ConfigError";
    this.issues = issues;
  }
}
