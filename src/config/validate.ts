/**
 * Runs the zod schema over the YAML data and places every zod issue back in the file: unknown
 * and bad keys at the key, bad values at the value, a missing key at its parent mapping.
 */
import type { z } from "zod";
import type { ConfigIssue } from "./issues.ts";
import { keyHomes, keysAt, unknownKeyMessage } from "./keys.ts";
import { environmentSchema } from "./schema.ts";
import type { Position } from "./schema.ts";
import { pathString } from "./source.ts";
import type { SourceMap } from "./source.ts";
import { describeValue } from "./words.ts";

type Issue = z.core.$ZodIssue;
type Spec = z.output<typeof environmentSchema>;

/** A located issue plus what is needed to drop redundant ones afterwards. */
interface Located {
  issue: ConfigIssue;
  /** Set on a missing-key issue: the key's full path. */
  missing?: string;
  /** Set on an unknown-key issue with a suggestion: the suggested key's full path. */
  suggested?: string;
}

// Last resort for issues whose schema has no message of its own; the schema covers the usual ones.
const fallbackMessage: z.core.$ZodErrorMap = (iss) => {
  if (iss.code === "invalid_type") return `expected ${iss.expected}, got ${describeValue(iss.input)}`;
  return undefined;
};

function valueIn(data: unknown, path: readonly PropertyKey[]): unknown {
  let cur = data;
  for (const seg of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

class Locator {
  private readonly homes = keyHomes(environmentSchema);

  constructor(
    private readonly data: unknown,
    private readonly map: SourceMap,
    private readonly file: string,
  ) {}

  /** The position recorded for `path`, or for its nearest written ancestor (e.g. inside an alias). */
  find(table: Map<string, Position>, path: readonly PropertyKey[]): Position {
    for (let n = path.length; n > 0; n--) {
      const pos = table.get(pathString(path.slice(0, n)));
      if (pos !== undefined) return pos;
    }
    return this.map.root;
  }

  make(pos: Position, path: readonly PropertyKey[], message: string): ConfigIssue {
    return { file: this.file, line: pos.line, column: pos.column, path: pathString(path), message };
  }

  locate(issue: Issue, base: readonly PropertyKey[]): Located[] {
    const path = [...base, ...issue.path];
    switch (issue.code) {
      case "unrecognized_keys":
        return issue.keys.map((key) => {
          const { message, suggestion } = unknownKeyMessage(key, keysAt(environmentSchema, path), this.homes);
          const located: Located = { issue: this.make(this.find(this.map.keys, [...path, key]), [...path, key], message) };
          if (suggestion !== undefined) located.suggested = pathString([...path, suggestion]);
          return located;
        });
      case "invalid_union": {
        // Explain the option the value was evidently meant to be (a mapping for a mapping);
        // only when no option fits the value's shape is the union's own message used.
        const meant = issue.errors.find((branch) => !branch.some((e) => e.code === "invalid_type" && e.path.length === 0));
        if (meant !== undefined) return meant.flatMap((e) => this.locate(e, path));
        return [{ issue: this.make(this.find(this.map.values, path), path, issue.message) }];
      }
      case "invalid_type":
        return [this.typeIssue(issue, path)];
      case "invalid_key":
        return [{ issue: this.make(this.find(this.map.keys, path), path, issue.message) }];
      case "custom":
        return [{ issue: this.customIssue(issue, path) }];
      case "too_big":
      case "too_small":
      case "invalid_format":
      case "not_multiple_of":
      case "invalid_element":
      case "invalid_value":
        return [{ issue: this.make(this.find(this.map.values, path), path, issue.message) }];
    }
  }

  typeIssue(issue: Issue, path: PropertyKey[]): Located {
    const parent = valueIn(this.data, path.slice(0, -1));
    const key = path[path.length - 1];
    const isMissing = key !== undefined && parent !== null && typeof parent === "object" && !Object.hasOwn(parent, key);
    if (!isMissing) return { issue: this.make(this.find(this.map.values, path), path, issue.message) };
    // A missing key has no text of its own: point at the mapping it should be added to.
    const at = path.length > 1 ? this.find(this.map.keys, path.slice(0, -1)) : this.map.root;
    return { issue: this.make(at, path, issue.message), missing: pathString(path) };
  }

  customIssue(issue: Issue & { code: "custom" }, path: PropertyKey[]): ConfigIssue {
    const params = (issue.params ?? {}) as { at?: string; firstAt?: PropertyKey[] };
    const table = params.at === "key" ? this.map.keys : this.map.values;
    let message = issue.message;
    if (params.firstAt !== undefined) {
      const first = this.find(this.map.keys, [...path.slice(0, -1), ...params.firstAt]);
      const here = this.find(table, path);
      const where = first.line === here.line ? `line ${first.line}, column ${first.column}` : `line ${first.line}`;
      message = message.replace(/; remove one$/, ` (first at ${where}); remove one`);
    }
    return this.make(this.find(table, path), path, message);
  }
}

/**
 * Drops what would only repeat another issue: a missing key whose misspelling was already
 * reported ("runn: did you mean run?"), and further complaints about the same spot.
 */
function prune(all: Located[]): ConfigIssue[] {
  const suggested = new Set(all.flatMap((l) => (l.suggested === undefined ? [] : [l.suggested])));
  const seen = new Set<string>();
  const out: ConfigIssue[] = [];
  for (const l of all) {
    if (l.missing !== undefined && suggested.has(l.missing)) continue;
    const k = `${l.issue.path}@${l.issue.line}:${l.issue.column}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(l.issue);
  }
  return out;
}

/** Validates YAML data against the environment schema; issues are located with `map`. */
export function validate(data: unknown, map: SourceMap, file: string): { ok: true; value: Spec } | { ok: false; issues: ConfigIssue[] } {
  const result = environmentSchema.safeParse(data, { reportInput: true, error: fallbackMessage });
  if (result.success) return { ok: true, value: result.data };
  const locator = new Locator(data, map, file);
  return { ok: false, issues: prune(result.error.issues.flatMap((i) => locator.locate(i, []))) };
}
