/**
 * Reads the YAML text into plain data plus a map from dotted paths to source positions. YAML
 * problems (syntax, duplicate keys, unquoted `*`, a top level that is not a mapping) are found
 * here; the values themselves are judged by the zod schema afterwards.
 */
import { LineCounter, Scalar, isAlias, isMap, isScalar, isSeq } from "yaml";
import type { Node, YAMLError } from "yaml";
import { replaceAliases, resolveAliases } from "./aliases.ts";
import type { AliasTargets, KeyNamer, Segment } from "./aliases.ts";
import { parseBounded } from "./bounded-yaml.ts";
import type { ConfigIssue } from "./issues.ts";
import type { Position } from "./schema.ts";
import { quote } from "./words.ts";

export type { Segment } from "./aliases.ts";

/** Positions of everything written in the file, by dotted path. */
export interface SourceMap {
  /** Mapping entries: the key; list items: the item. This is the public `locations`. */
  keys: Map<string, Position>;
  /** The value's own position where it has one (an empty value falls back to its key). */
  values: Map<string, Position>;
  /** The top-level mapping. */
  root: Position;
}

export type ReadResult =
  | { ok: true; data: unknown; map: SourceMap; issues: ConfigIssue[] }
  | { ok: false; issues: ConfigIssue[] };

/** `guardrails.commands.deny[0]`; keys that are not plain words are quoted: `rbac["a.b"]`. */
export function pathString(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (typeof seg === "string" && /^[A-Za-z0-9_-]+$/.test(seg)) out += out === "" ? seg : `.${seg}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

// Hints for the YAML mistakes people make most; the library's own words are kept in front.
const SYNTAX_HINTS: Record<string, string> = {
  BAD_ALIAS: 'a value starting with "*" must be quoted, e.g. "*" or "*.example.com"',
  BLOCK_AS_IMPLICIT_KEY: "check the indentation here and on the next line: nested keys go on their own lines, indented",
  MULTILINE_IMPLICIT_KEY: "check the indentation here and on the next line",
  BAD_INDENT: "check the indentation: items of one mapping or list start in the same column",
  TAB_AS_INDENT: "indent with spaces, not tabs",
  MULTIPLE_DOCS: 'an environment file holds one document: remove the second "---"',
};

class Walker {
  readonly keys = new Map<string, Position>();
  readonly values = new Map<string, Position>();
  readonly issues: ConfigIssue[] = [];

  constructor(
    private readonly lines: LineCounter,
    private readonly file: string,
    private readonly targets: AliasTargets = new Map(),
    private readonly keyName: KeyNamer = String,
  ) {}

  at(offset: number): Position {
    const p = this.lines.linePos(offset);
    return { line: p.line, column: p.col };
  }

  /** Where a node starts, or undefined for an empty value that has no text of its own. */
  nodeStart(node: unknown): Position | undefined {
    const range = (node as Node | null)?.range;
    if (range === undefined || range === null) return undefined;
    return range[0] === range[1] && isScalar(node) && node.value === null ? undefined : this.at(range[0]);
  }

  issue(pos: Position, path: Segment[], message: string): void {
    this.issues.push({ file: this.file, line: pos.line, column: pos.column, path: pathString(path), message });
  }

  /**
   * An unquoted "*.example.com" is read as an alias named ".example.com". Report it, and put the
   * text back as a plain string so the rest of the file can still be checked.
   */
  unaliased(node: unknown, path: Segment[], fallback: Position): unknown {
    if (!isAlias(node) || this.targets.get(node) !== undefined) return node;
    const text = `*${node.source}`;
    const quoted = quote(text);
    this.issue(this.nodeStart(node) ?? fallback, path, `${quoted.slice(1, -1)} is read as a YAML alias, which is not defined: quote it, e.g. ${quoted}`);
    return new Scalar(text);
  }

  walk(node: unknown, path: Segment[], fallback: Position): void {
    // What an alias points at was walked where it was written; its copies have no text of their own.
    if (isMap(node)) return this.walkMap(node.items, path, fallback);
    if (isSeq(node)) {
      node.items.forEach((raw, i) => {
        const pos = this.nodeStart(raw) ?? fallback;
        const item = this.unaliased(raw, [...path, i], pos);
        node.items[i] = item;
        this.record([...path, i], pos, pos);
        this.walk(item, [...path, i], pos);
      });
    }
  }

  walkMap(items: { key: unknown; value: unknown }[], path: Segment[], fallback: Position): void {
    const seen = new Map<string, Position>();
    for (const pair of items) {
      const name = this.keyName(pair.key);
      const keyPos = this.nodeStart(pair.key) ?? fallback;
      const first = seen.get(name);
      // The last copy is the one the data holds, so its positions are the ones recorded.
      if (first === undefined) seen.set(name, keyPos);
      else this.issue(keyPos, [...path, name], `duplicate key (first written at line ${first.line}): keep one of them`);
      // JavaScript objects treat this key specially (zod drops it from records without a word),
      // so it is refused everywhere rather than silently lost.
      if (name === "__proto__") this.issue(keyPos, [...path, name], '"__proto__" cannot be used as a key');
      pair.key = this.unaliased(pair.key, [...path, name], keyPos);
      const valuePos = this.nodeStart(pair.value) ?? keyPos;
      pair.value = this.unaliased(pair.value, [...path, name], valuePos);
      this.record([...path, name], keyPos, valuePos);
      this.walk(pair.value, [...path, name], keyPos);
    }
  }

  record(path: Segment[], key: Position, value: Position): void {
    const p = pathString(path);
    this.keys.set(p, key);
    this.values.set(p, value);
  }

  syntaxIssue(e: YAMLError): ConfigIssue {
    const pos = this.at(e.pos[0]);
    const hint = SYNTAX_HINTS[e.code];
    // The library's own advice for this one names one of its functions, which helps nobody here.
    // Its messages may quote the file (a token, an alias name): cut, like every quoted value.
    const first = e.message.split("\n")[0] ?? "";
    const said = e.code === "MULTIPLE_DOCS" ? "the file holds more than one YAML document" : first.length > 120 ? `${first.slice(0, 120)}…` : first;
    const message = `YAML syntax: ${said}${hint === undefined ? "" : `; ${hint}`}`;
    return { file: this.file, line: pos.line, column: pos.column, path: "", message };
  }
}

/** Distinct positions only: the YAML parser often reports one mistake twice at the same spot. */
function uniqueByPosition(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const k = `${i.line}:${i.column}`;
    return seen.has(k) ? false : (seen.add(k), true);
  });
}

/**
 * Parses YAML text. Syntax errors stop here (the library's recovery guesses, and validating a
 * guess would add confusing follow-on errors); everything else is collected and returned. The
 * bounds of limits.ts apply: too many tokens, too deep a nesting or too many alias expansions is
 * one located issue, found before the costly work.
 */
export function readYaml(source: string, file: string): ReadResult {
  const lines = new LineCounter();
  const at = (offset: number): Position => {
    const p = lines.linePos(offset);
    return { line: Math.max(1, p.line), column: Math.max(1, p.col) };
  };
  // uniqueKeys: false so that duplicates are reported by the walker, with their path.
  // logLevel "error": the library would otherwise print warnings to stderr; the issues say it all.
  const parsed = parseBounded(source, lines, { uniqueKeys: false, prettyErrors: false, logLevel: "error" });
  if (!parsed.ok) return { ok: false, issues: [{ file, ...at(parsed.offset), path: "", message: parsed.message }] };
  const doc = parsed.doc;
  if (doc.errors.length > 0) {
    const walker = new Walker(lines, file);
    return { ok: false, issues: uniqueByPosition(doc.errors.map((e) => walker.syntaxIssue(e))) };
  }
  const top = doc.contents;
  if (top === null || (isScalar(top) && top.value === null)) {
    const message = 'the file is empty: an environment needs at least a name, e.g. "name: my-environment"';
    return { ok: false, issues: [{ file, line: 1, column: 1, path: "", message }] };
  }
  const aliases = resolveAliases(top, source);
  const walker = new Walker(lines, file, aliases.targets, aliases.keyName);
  const root = walker.nodeStart(top) ?? { line: 1, column: 1 };
  if (!isMap(top)) {
    const kind = isSeq(top) ? "a list" : isAlias(top) ? "an alias" : "a single value";
    const message = `the top level must be a mapping of keys such as "name:", "compute:", "install:", but this file is ${kind}`;
    return { ok: false, issues: [{ file, line: root.line, column: root.column, path: "", message }] };
  }
  walker.walk(top, [], root);
  if (aliases.problem !== undefined) {
    const { node, path, message } = aliases.problem;
    walker.issue(walker.nodeStart(node) ?? root, path, message);
    return { ok: false, issues: walker.issues };
  }
  replaceAliases(top, aliases.targets, aliases.keyName);
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (e) {
    // Not expected once aliases are replaced; still a located issue rather than an exception.
    walker.issue(root, [], `cannot read the file: ${(e as Error).message}`);
    return { ok: false, issues: walker.issues };
  }
  return { ok: true, data, map: { keys: walker.keys, values: walker.values, root }, issues: walker.issues };
}
