/** Helpers shared by the config error tests (not a test file itself). */
import assert from "node:assert/strict";
import { formatIssue, parseEnvironment } from "../../src/config/index.ts";
import type { ConfigIssue } from "../../src/config/index.ts";

/** Formatted issues of a file that must not load. */
export function problems(source: string, file = "runtime.yml"): string[] {
  const result = parseEnvironment(source, file);
  assert.equal(result.spec, null, "expected the file to be refused");
  assert.ok(result.issues.length > 0);
  return result.issues.map(formatIssue);
}

/** The one issue of a file with exactly one problem. */
export function single(source: string): ConfigIssue {
  const { issues } = parseEnvironment(source, "runtime.yml");
  assert.equal(issues.length, 1, `expected one issue, got:\n${issues.map(formatIssue).join("\n")}`);
  return issues[0] as ConfigIssue;
}

export const lines = (...l: string[]): string => `${l.join("\n")}\n`;
