/**
 * Turning an environment file into an `EnvironmentSpec`: YAML first (positions, syntax), then the
 * schema (values). Every problem found in either step is returned together.
 */
import { readFile, stat } from "node:fs/promises";
import { basename } from "node:path";
import { ConfigError, sortIssues } from "./issues.ts";
import type { ConfigIssue } from "./issues.ts";
import type { EnvironmentSpec } from "./schema.ts";
import { readYaml } from "./source.ts";
import { validate } from "./validate.ts";

/** Environment files are a few kilobytes; refusing huge ones keeps a bad upload from costing much. */
export const MAX_FILE_BYTES = 1024 * 1024;

export type ParseResult = { spec: EnvironmentSpec; issues: [] } | { spec: null; issues: ConfigIssue[] };

/** One issue per spot: a YAML-level issue (listed first) wins over the schema's view of the same key. */
function onePerPlace(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const k = `${i.path}@${i.line}:${i.column}`;
    return seen.has(k) ? false : (seen.add(k), true);
  });
}

function parseUnsafe(source: string, fileName: string): ParseResult {
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
    return parseUnsafe(source, fileName);
  } catch (e) {
    // A bug here must still come out as a located issue, never as an exception.
    const message = `internal error while checking the file (please report it): ${e instanceof Error ? e.message : String(e)}`;
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
    const info = await stat(path);
    if (info.isDirectory()) throw unreadable(fileName, "it is a directory");
    if (info.size > MAX_FILE_BYTES) throw unreadable(fileName, `it is larger than ${MAX_FILE_BYTES} bytes`);
    source = await readFile(path, "utf8");
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? "";
    throw unreadable(fileName, READ_ERRORS[code] ?? (e instanceof Error ? e.message : String(e)));
  }
  const result = parseEnvironment(source, fileName);
  if (result.spec === null) throw new ConfigError(result.issues);
  return { spec: result.spec, source, fileName };
}
