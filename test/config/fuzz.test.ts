// Hostile input: whatever the text, parseEnvironment returns quickly with a spec or located,
// short issues, and never throws. Random files (mutated examples and generated YAML) check the
// property broadly; the files that once took seconds are kept below as named regression cases.
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { describe, it } from "node:test";
import fc from "fast-check";
import { formatIssue, parseEnvironment } from "../../src/config/index.ts";
import type { ParseResult } from "../../src/config/index.ts";
import { MAX_ISSUES, MAX_MESSAGE_CHARS, MAX_PATH_CHARS } from "../../src/config/limits.ts";

/** Longest one parse of a random file (a few kilobytes) may take; they take a few milliseconds. */
const PARSE_BOUND_MS = 500;
/**
 * Longest one of the pathological files below may take: 50 to 250 ms measured on an idle machine
 * (they took 0.5 to 8.5 s before the limits), with room for a loaded test machine.
 */
const PATHOLOGICAL_BOUND_MS = 1000;
const MiB = 1024 * 1024;

const examplesDir = new URL("../../examples/", import.meta.url);
const examples = await Promise.all(
  (await readdir(examplesDir, { withFileTypes: true }))
    .flatMap((e) => (e.isDirectory() ? [`${e.name}/runtime.yml`] : e.name.endsWith(".yml") ? [e.name] : []))
    .map((f) => readFile(new URL(f, examplesDir), "utf8")),
);
const docsExample = /This `runtime.yml`:\n\n```yaml\n([\s\S]*?)```/.exec(await readFile(new URL("../../docs/config.md", import.meta.url), "utf8"))?.[1] ?? "";
const seeds = [
  ...examples,
  docsExample,
  "name: x\nbase: &b host\ninstall: [make, { run: make test }]\nsecrets: [A_KEY, { name: B_KEY, hosts: &h [api.b.com], in: [header] }]\nguardrails:\n  network: { allow: *h }\n",
  "name: x\nrbac:\n  ? [a]\n  : [read]\n  engineering: [read, write]\n",
];

/** Parses, timing it, and checks everything a caller relies on; returns the result for more checks. */
function check(source: string, boundMs = PARSE_BOUND_MS, fileName = "runtime.yml"): ParseResult {
  const started = performance.now();
  const result = parseEnvironment(source, fileName);
  const ms = performance.now() - started;
  assert.ok(ms < boundMs, `took ${ms.toFixed(0)} ms (bound ${boundMs} ms)`);
  if (result.spec !== null) {
    assert.deepEqual(result.issues, []);
    return result;
  }
  assert.ok(result.issues.length >= 1 && result.issues.length <= MAX_ISSUES + 1, `${result.issues.length} issues`);
  const lineCount = source.split("\n").length;
  for (const i of result.issues) {
    const shown = formatIssue(i);
    assert.equal(i.file, fileName);
    assert.ok(Number.isInteger(i.line) && Number.isInteger(i.column), shown);
    if (i.line === 0) assert.equal(i.column, 0, shown);
    else assert.ok(i.line >= 1 && i.line <= lineCount && i.column >= 1 && i.column <= source.length + 1, `${shown} (file of ${lineCount} lines)`);
    assert.ok(i.message.length > 0 && i.message.length <= MAX_MESSAGE_CHARS, `message of ${i.message.length} characters`);
    assert.ok(i.path.length <= MAX_PATH_CHARS, `path of ${i.path.length} characters`);
    assert.doesNotMatch(i.message, /^internal error/, shown);
  }
  return result;
}

// ---- mutated examples ------------------------------------------------------------------------

const oddText = fc.constantFrom(
  "&a ", "*a", "*", "[", "]", "{", "}", "- ", ": ", ":", "? ", ",", "\t", "\0", '"', "'", "#", "\\", "!!binary ", "!!str ", "!foo ",
  "---\n", "...\n", "<<: *a\n", "\n", "\r\n", "\r", "  ", "\uFEFF", "\u2028", "\uD800", "\u{1F600}", "e\u0301", "|\n", ">-\n",
  "%YAML 1.2\n", "__proto__: 1\n", "name: x\n", "install: ", "rbac: ", "&b [*a, *a, *a]", "~", "null", "0x1F", "1e400", ".inf",
);
const fragment = fc.oneof(
  { weight: 4, arbitrary: oddText },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 12 }) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => "x".repeat(n)) },
);
const mutation = fc.record({ kind: fc.constantFrom("insert", "delete", "replace", "duplicate"), at: fc.nat(), len: fc.nat({ max: 120 }), text: fragment });

function mutate(seed: string, edits: { kind: string; at: number; len: number; text: string }[]): string {
  let s = seed;
  for (const e of edits) {
    const at = e.at % (s.length + 1);
    const end = Math.min(s.length, at + e.len);
    if (e.kind === "insert") s = s.slice(0, at) + e.text + s.slice(at);
    else if (e.kind === "delete") s = s.slice(0, at) + s.slice(end);
    else if (e.kind === "replace") s = s.slice(0, at) + e.text + s.slice(end);
    else s = s.slice(0, end) + s.slice(at, end) + s.slice(end);
  }
  return s;
}

// ---- generated YAML --------------------------------------------------------------------------

type Tree =
  | { k: "scalar"; text: string }
  | { k: "alias"; name: string }
  | { k: "seq" | "map"; flow: boolean; anchor: string | null; items: { key: string; value: Tree }[] };

const KEYS = ["name", "base", "providers", "compute", "cpu", "memory", "timeout", "install", "run", "secrets", "hosts", "in", "guardrails", "commands", "network", "allow", "deny", "ask", "build", "rbac", "engineering", "<<", "__proto__"];
const anchorName = fc.constantFrom("a", "b", "c");
const scalar = fc.oneof(
  fc.constantFrom("x", "host", "debian-12", "2", "0.5", "8GB", "30m", "rm", "api.stripe.com", '"*"', "STRIPE_API_KEY", "read", "true", "~", "''", '""'),
  fc.string({ maxLength: 12 }).map((s) => JSON.stringify(s)),
  fc.string({ unit: "binary", maxLength: 12 }).map((s) => JSON.stringify(s)),
  fc.integer({ min: 1, max: 5000 }).map((n) => `"${"y".repeat(n)}"`),
  fc.constantFrom("a\tb", '"\\0\\t\\x00"', "'it''s'", "é\u0301", "\u{1F600}", "\u00A0x"),
);
const { tree } = fc.letrec<{ tree: Tree; collection: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    scalar.map((text): Tree => ({ k: "scalar", text })),
    anchorName.map((name): Tree => ({ k: "alias", name })),
    tie("collection"),
  ),
  collection: fc.record({
    k: fc.constantFrom("seq" as const, "map" as const),
    flow: fc.boolean(),
    anchor: fc.option(anchorName, { freq: 4, nil: null }),
    items: fc.array(fc.record({ key: fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 8 })), value: tie("tree") }), { maxLength: 5 }),
  }),
}));

const yamlKey = (k: string): string => (/^[A-Za-z_<][A-Za-z0-9_<-]*$/.test(k) ? k : JSON.stringify(k));

/**
 * Writes a tree as YAML. A block collection comes out as its anchor (if any), a line break, and
 * its lines indented by `indent`, so the parent writes it right after "key: " or "- ".
 */
function render(t: Tree, indent: number): string {
  if (t.k === "scalar") return t.text;
  if (t.k === "alias") return `*${t.name}`;
  const item = (i: { key: string; value: Tree }): string => (t.k === "seq" ? "- " : `${yamlKey(i.key)}: `) + render(i.value, indent + 2);
  if (t.flow || t.items.length === 0) {
    const [open, close] = t.k === "seq" ? ["[", "]"] : ["{", "}"];
    // Inside a flow collection every nested one is written in flow style too.
    const inline = (v: Tree): Tree => (v.k === "seq" || v.k === "map" ? { ...v, flow: true } : v);
    const items = t.items.map((i) => (t.k === "seq" ? render(inline(i.value), indent) : `${yamlKey(i.key)}: ${render(inline(i.value), indent)}`));
    return `${t.anchor === null ? "" : `&${t.anchor} `}${open}${items.join(", ")}${close}`;
  }
  const pad = " ".repeat(indent);
  return `${t.anchor === null ? "" : `&${t.anchor}`}\n${t.items.map((i) => pad + item(i)).join("\n")}`;
}

const generated = fc
  .record({ withName: fc.boolean(), entries: fc.array(fc.record({ key: fc.constantFrom(...KEYS), value: tree }), { maxLength: 6 }) })
  .map(({ withName, entries }) => {
    const top: Tree = { k: "map", flow: false, anchor: null, items: [...(withName ? [{ key: "name", value: { k: "scalar", text: "x" } as Tree }] : []), ...entries] };
    return `${render(top, 0).slice(1)}\n`;
  });

/**
 * Nesting in the styles that once recursed once per level: `depth` collections under a top-level
 * key, so depth + 1 levels with the top-level mapping.
 */
const deep = fc.record({ depth: fc.integer({ min: 1, max: 200 }), style: fc.constantFrom("flow-seq", "flow-map", "dash", "block-map") });
function nested({ depth, style }: { depth: number; style: string }): string {
  switch (style) {
    case "flow-seq":
      return `name: x\nrbac: ${"[".repeat(depth)}read${"]".repeat(depth)}\n`;
    case "flow-map":
      return `name: x\nrbac: ${"{a: ".repeat(depth)}b${"}".repeat(depth)}\n`;
    case "dash":
      return `name: x\ninstall:\n  ${"- ".repeat(depth)}x\n`;
    default:
      return `name: x\nrbac:\n${Array.from({ length: depth }, (_, i) => `${" ".repeat(i + 1)}k${i}:`).join("\n")} v\n`;
  }
}

void describe("parseEnvironment under random input", () => {
  void it("mutated examples: a spec or located, short issues, each parse under 500 ms", () => {
    fc.assert(fc.property(fc.constantFrom(...seeds), fc.array(mutation, { minLength: 1, maxLength: 8 }), (seed, edits) => void check(mutate(seed, edits))), { numRuns: 400 });
  });

  void it("generated YAML (nesting, anchors and aliases, long strings, odd unicode, tabs, NULs)", () => {
    fc.assert(fc.property(generated, (src) => void check(src)), { numRuns: 400 });
  });

  void it("nesting up to 201 levels: 64 are fine, 65 or more are one located issue", () => {
    fc.assert(
      fc.property(deep, (d) => {
        const tooDeep = check(nested(d)).issues.filter((i) => /nested more than 64 levels/.test(i.message));
        assert.equal(tooDeep.length, d.depth + 1 > 64 ? 1 : 0);
      }),
      { numRuns: 150, examples: [[{ depth: 63, style: "flow-seq" }], [{ depth: 64, style: "dash" }], [{ depth: 63, style: "block-map" }], [{ depth: 64, style: "flow-map" }]] },
    );
  });

  void it("token soup: YAML indicators, directives, tags and words in random order", () => {
    const token = fc.constantFrom(
      "&a ", "*a", "*", "[", "]", "{", "}", "- ", ": ", "? ", ",", "\t", "\0", '"', "'", "#", "\\", "!!binary ", "!!map ", "!<tag:x> ", "---", "...",
      "<<", "\n", "\r\n", "\r", " ", "    ", "\uFEFF", "\uD800", "|", ">+2", "%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "__proto__", "name", "x", "install", "rbac",
      "read", "memory", "8GB", "~", "1e400", ".nan", "true", "@", "`",
    );
    fc.assert(fc.property(fc.array(token, { maxLength: 600 }), (tokens) => void check(tokens.join(""))), { numRuns: 300 });
  });

  void it("random bytes", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 400 }), (src) => void check(src)), { numRuns: 300 });
  });
});

void describe(`pathological files that once blocked the event loop for seconds: each under ${PATHOLOGICAL_BOUND_MS} ms`, () => {
  /** One issue, matching `message`, found within the bound. */
  const refused = (source: string, message: RegExp): string => {
    const { spec, issues } = check(source, PATHOLOGICAL_BOUND_MS);
    assert.equal(spec, null);
    const shown = issues.map(formatIssue);
    assert.ok(shown.some((s) => message.test(s)), shown.join("\n"));
    return shown.join("\n");
  };

  void it("8,000 aliases of one anchor (was 4.7 s): refused at the alias over the limit", () => {
    const src = `name: x\nbase: &a host\ninstall: [${Array<string>(8000).fill("*a").join(", ")}]\n`;
    assert.equal(
      refused(src, /too many alias expansions/),
      'runtime.yml:3:20011 install[5000]: too many alias expansions (limit 5000): the aliases up to "*a" repeat more than 5000 values; write the values out instead',
    );
  });

  void it("a billion laughs (9 levels of 10 aliases)", () => {
    const lines = ['a0: &a0 ["lol"]'];
    for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${Array<string>(10).fill(`*a${i - 1}`).join(", ")}]`);
    refused(`${lines.join("\n")}\nname: x\n`, /^runtime\.yml:\d+:\d+ a\d\[\d\]: too many alias expansions/);
  });

  void it("a 1 MiB value: a valid install step, or a short message for a bad name", () => {
    const long = "a".repeat(MiB - 64);
    const { spec } = check(`name: x\ninstall:\n  - "${long}"\n`, PATHOLOGICAL_BOUND_MS);
    assert.equal(spec?.install[0]?.run.length, long.length);
    assert.match(refused(`name: ${long}\n`, /is not a valid name/), /^runtime\.yml:1:7 name: "a{40}…" is not a valid name/);
  });

  void it("40,000 items, in block and flow lists, and 40,000 keys", () => {
    refused(`name: x\ninstall:\n${"  - echo hi\n".repeat(40_000)}`, /more than 25000 YAML tokens/);
    refused(`name: x\ninstall: [${Array<string>(40_000).fill("e").join(",")}]\n`, /more than 25000 YAML tokens/);
    refused(`name: x\nrbac:\n${Array.from({ length: 40_000 }, (_, i) => `  r${i}: [read]\n`).join("")}`, /more than 25000 YAML tokens/);
  });

  void it("200,000 levels of [[[…]]], of - - -, and block mappings as deep as 1 MiB allows", () => {
    refused(`${"[".repeat(200_000)}${"]".repeat(200_000)}`, /^runtime\.yml:1:\d+: mappings and lists are nested more than 64 levels deep/);
    refused(`name: x\ninstall: ${"{a: ".repeat(200_000)}b${"}".repeat(200_000)}\n`, /nested more than 64 levels deep/);
    refused(`name: x\ninstall:\n  ${"- ".repeat(200_000)}x\n`, /nested more than 64 levels deep/);
    let block = "name: x\nrbac:\n";
    for (let i = 1; block.length < MiB - 4000; i++) block += `${" ".repeat(i)}k:\n`;
    refused(block, /nested more than 64 levels deep/);
  });

  void it("over 1 MiB: refused unparsed", () => {
    assert.equal(refused(`name: x\n# ${"x".repeat(MiB)}\n`, /larger/), "runtime.yml: the file is larger than 1048576 bytes: an environment file is a few kilobytes");
  });
});
