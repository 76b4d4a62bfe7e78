/**
 * Turning an environment file into an `EnvironmentSpec`: YAML first (positions, syntax), then the
 * schema (values). Every problem found in either step is returned together.
 */
import { basename } from "node:path";
import { ConfigError, sortIssues } from "./issues.ts";
import type { ConfigIssue } from "./issues.ts";
import { MAX_FILE_BYTES, MAX_ISSUES, MAX_MESSAGE_CHARS, MAX_PATH_CHARS } from "./limits.ts";
import { readAtMost } from "./read.ts";
import type { EnvironmentSpec } from "./schema.ts";
import { readYaml } from "./source.ts";
import { validate } from "./validate.ts";

export { MAX_FILE_BYTES } from "./limits.ts";

export type ParseResult = { spec: EnvironmentSpec; issues: [] } | { spec: null; issues: ConfigIssue[] };

/** One issue per spot: a YAML-level issue (listed first) wins over the schema's view of the same key. */
function onePerPlace(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const k = `${i.path}@${i.line}:${i.column}`;
    return seen.has(k) ? false : (seen.add(k), true);
  });
}

const cut = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

/**
 * Keeps the answer small whatever the file holds: at most MAX_ISSUES issues (the last one says how
 * many more there were), each message and path cut to a bounded length.
 */
function bounded(issues: ConfigIssue[]): ConfigIssue[] {
  const shown = issues.slice(0, MAX_ISSUES).map((i) => ({ ...i, path: cut(i.path, MAX_PATH_CHARS), message: cut(i.message, MAX_MESSAGE_CHARS) }));
  const rest = issues.length - shown.length;
  const last = issues[MAX_ISSUES];
  if (rest > 0 && last !== undefined) {
    shown.push({ file: last.file, line: last.line, column: last.column, path: "", message: `and ${rest} more problems, not listed: fix the ones above first` });
  }
  return shown;
}

function parseUnsafe(source: string, fileName: string): ParseResult {
  // Every UTF-16 unit is at least one UTF-8 byte, so a long string is refused without counting.
  if (source.length > MAX_FILE_BYTES || Buffer.byteLength(source, "utf8") > MAX_FILE_BYTES) {
    return { spec: null, issues: [{ file: fileName, line: 0, column: 0, path: "", message: `the file is larger than ${MAX_FILE_BYTES} bytes: an environment file is a few kilobytes` }] };
  }
  const read = readYaml(source, fileName);
  if (!read.ok) return { spec: null, issues: sortIssues(read.issues) };
  const checked = validate(read.data, read.map, fileName);
  const issues = onePerPlace([...read.issues, ...(checked.ok ? [] : checked.issues)]);
  if (!checked.ok || issues.length > 0) return { spec: null, issues: sortIssues(issues) };
  return { spec: { ...checked.value, locations: Object.fromEntries(read.map.keys) }, issues: [] };
}

/**
 * Parses and validates an environment file's text. Never throws: every problem comes back in
 * `issues`, sorted by position.
 *
 * @param fileName shown in issues, e.g. `runtime.yml`.
 * @example
 * const { spec, issues } = parseEnvironment(text, "runtime.yml");
 * if (spec === null) console.error(issues.map(formatIssue).join("\n"));
 */
export function parseEnvironment(source: string, fileName: string): ParseResult {
  try {
    const result = parseUnsafe(source, fileName);
    return result.spec === null ? { spec: null, issues: bounded(result.issues) } : result;
  } catch (e) {
    // A bug here must still come out as a located issue, never as an exception.
    const message = cut(`internal error while checking the file (please report it): ${e instanceof Error ? e.message : String(e)}`, MAX_MESSAGE_CHARS);
    return { spec: null, issues: [{ file: fileName, line: 0, column: 0, path: "", message }] };
  }
}

function unreadable(fileName: string, why: string): ConfigError {
  return new ConfigError([{ file: fileName, line: 0, column: 0, path: "", message: `cannot read the file: ${why}` }]);
}

const READ_ERRORS: Record<string, string> = {
  ENOENT: "it does not exist",
  EACCES: "permission denied",
  EISDIR: "it is a directory",
};

/**
 * Reads and validates an environment file. Issues name the file by its base name (`runtime.yml`).
 *
 * @returns the spec, the exact text read (to store and digest), and the file name.
 * @throws ConfigError with every issue, for any bad or unreadable file; nothing else.
 */
export async function loadEnvironmentFile(path: string): Promise<{ spec: EnvironmentSpec; source: string; fileName: string }> {
  const fileName = basename(path);
  let source: string;
  try {
    // Bounded by the bytes read, not by stat: /dev/zero, pipes and FIFOs have size 0.
    const bytes = await readAtMost(path, MAX_FILE_BYTES);
    if (bytes === null) throw unreadable(fileName, `it is larger than ${MAX_FILE_BYTES} bytes`);
    source = bytes.toString("utf8");
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? "";
    throw unreadable(fileName, READ_ERRORS[code] ?? (e instanceof Error ? e.message : String(e)));
  }
  const result = parseEnvironment(source, fileName);
  if (result.spec === null) throw new ConfigError(result.issues);
  return { spec: result.spec, source, fileName };
}
