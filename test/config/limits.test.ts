// The bounds of src/config/limits.ts: each is a located issue when crossed, none is near what a
// real file needs, and anchors and aliases keep their YAML meaning under the one-pass resolver.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatIssue, parseEnvironment } from "../../src/config/index.ts";
import { MAX_ALIAS_NODES, MAX_ISSUES, MAX_MESSAGE_CHARS, MAX_PATH_CHARS } from "../../src/config/limits.ts";
import { lines, problems } from "./fixtures.ts";

const spec = (source: string) => {
  const r = parseEnvironment(source, "runtime.yml");
  assert.deepEqual(r.issues.map(formatIssue), []);
  assert.ok(r.spec !== null);
  return r.spec;
};

void describe("anchors and aliases keep their YAML meaning", () => {
  void it("an aliased list is the same as the list written out", () => {
    const s = spec(lines(
      "name: x",
      "secrets:",
      "  - name: A_KEY",
      '    hosts: &h [api.a.com, "*.b.com"]',
      "  - name: B_KEY",
      "    hosts: *h",
      "guardrails:",
      "  network: { allow: *h }",
    ));
    assert.deepEqual(s.secrets.map((x) => x.hosts), [["api.a.com", "*.b.com"], ["api.a.com", "*.b.com"]]);
    assert.deepEqual(s.guardrails.network.allow, ["api.a.com", "*.b.com"]);
    // Positions are where the text is: the alias has its own, what it copies has none.
    assert.deepEqual(s.locations["secrets[1].hosts"], { line: 6, column: 5 });
    assert.equal(s.locations["secrets[1].hosts[0]"], undefined);
  });

  void it("an alias names the last anchor of that name before it", () => {
    assert.deepEqual(spec("name: x\ninstall: [&p a, *p, &p b, *p]\n").install, [{ run: "a" }, { run: "a" }, { run: "b" }, { run: "b" }]);
  });

  void it("an alias before its anchor is not defined", () => {
    assert.deepEqual(problems("name: x\ninstall: [*a]\nbase: &a host\n"), [
      'runtime.yml:2:11 install[0]: *a is read as a YAML alias, which is not defined: quote it, e.g. "*a"',
    ]);
  });

  void it("an alias used as a key is its anchor's value, so a duplicate is found", () => {
    assert.deepEqual(problems("name: x\nrbac: { &r engineering: [read], *r : [write] }\n"), [
      "runtime.yml:2:33 rbac.engineering: duplicate key (first written at line 2): keep one of them",
    ]);
    assert.deepEqual(problems("name: x\nrbac:\n  *zz : [read]\n"), ['runtime.yml:3:3 rbac["*zz"]: *zz is read as a YAML alias, which is not defined: quote it, e.g. "*zz"']);
  });

  void it("a key that is a list is named as written, at the key", () => {
    assert.deepEqual(problems("name: x\nrbac:\n  ? [a, b]\n  : [read]\n"), [
      'runtime.yml:3:5 rbac["[a, b]"]: "[a, b]" is not a role name: use lowercase letters, digits, "_" and "-", starting with a letter, e.g. "engineering"',
    ]);
  });

  void it("an alias inside its own anchor is refused (it would repeat forever)", () => {
    assert.deepEqual(problems("name: x\ninstall: &a [echo, *a]\n"), [
      'runtime.yml:2:20 install[1]: "*a" is inside the value it refers to, so it would repeat forever: refer to a value that ends before the alias',
    ]);
  });
});

void describe("alias expansion limit", () => {
  const uses = (n: number) => `name: x\nbase: &a host\nproviders: [${Array.from({ length: n }, () => "*a").join(", ")}]\n`;

  void it(`${MAX_ALIAS_NODES} repeated values are allowed, one more is located at its alias`, () => {
    assert.ok(!problems(uses(MAX_ALIAS_NODES)).some((p) => /alias/.test(p)));
    assert.deepEqual(problems(uses(MAX_ALIAS_NODES + 1)), [
      `runtime.yml:3:${13 + 4 * MAX_ALIAS_NODES} providers[${MAX_ALIAS_NODES}]: too many alias expansions (limit ${MAX_ALIAS_NODES}): the aliases up to "*a" repeat more than ${MAX_ALIAS_NODES} values; write the values out instead`,
    ]);
  });

  void it("what an alias repeats counts in full, nested aliases included", () => {
    // b repeats 100 values of a (and itself), c repeats b 50 times: 50 × 101 values.
    const src = lines("a: &a [x]", `b: &b [${Array<string>(100).fill("*a").join(", ")}]`, `c: [${Array<string>(50).fill("*b").join(", ")}]`, "name: x");
    assert.match(problems(src)[0] ?? "", /^runtime\.yml:3:\d+ c\[\d+\]: too many alias expansions/);
  });

  void it("nesting made by aliases counts like nesting written out", () => {
    const chain = ["name: x", "l0: &l0 [x]"];
    for (let i = 1; i <= 64; i++) chain.push(`l${i}: &l${i} [*l${i - 1}]`);
    assert.ok(problems(lines(...chain)).some((p) => /^runtime\.yml:65:\d+ l63\[0\]: "\*l62" nests mappings and lists more than 64 levels deep$/.test(p)));
  });
});

void describe("nesting and size limits", () => {
  void it("64 levels load; the 65th is located at the collection that opens it", () => {
    const nest = (levels: number) => `name: x\ninstall: ${"[".repeat(levels - 1)}${"]".repeat(levels - 1)}\n`;
    assert.ok(!problems(nest(64)).some((p) => /levels deep/.test(p)));
    assert.deepEqual(problems(nest(65)), [
      "runtime.yml:2:73 install[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: mappings and lists are nested more than 64 levels deep (an environment file needs about 5)",
    ]);
  });

  void it("more than 25,000 tokens is one issue where the limit is crossed", () => {
    assert.deepEqual(problems(`name: x\n${"# comment\n".repeat(30_000)}`), [
      "runtime.yml:12498:1: the file is too long to check: more than 25000 YAML tokens (an environment file needs a few hundred)",
    ]);
  });

  void it("a text over 1 MiB is refused without parsing (counted in UTF-8 bytes)", () => {
    const text = `name: x\n# ${"é".repeat(600_000)}\n`; // 600,000 characters, 1.2 MB
    assert.deepEqual(problems(text), ["runtime.yml: the file is larger than 1048576 bytes: an environment file is a few kilobytes"]);
  });
});

void describe("messages quote at most a short excerpt of the file", () => {
  const long = "Q".repeat(100_000);
  const files: [string, string][] = [
    ["name", `name: ${long}\n`],
    ["provider", `name: x\nproviders: [${long}]\n`],
    ["secret", `name: x\nsecrets: [q${long}]\n`],
    ["host", `name: x\nguardrails: { network: { allow: ["${long}/x"] } }\n`],
    ["url", `name: x\nguardrails: { network: { allow: ["https://${long}"] } }\n`],
    ["command", `name: x\nguardrails: { commands: { deny: ["${long} -rf"] } }\n`],
    ["size unit", `name: x\ncompute: { memory: "8${long}" }\n`],
    ["duration", `name: x\ncompute: { timeout: "${long}" }\n`],
    ["role", `name: x\nrbac: { "${long}": [read] }\n`],
    ["permission", `name: x\nrbac: { a: ["${long}"] }\n`],
    ["base", `name: x\nbase: "${long}"\n`],
    ["duplicate", `name: x\nproviders: ["${long}", "${long}"]\n`],
    ["conflict", `name: x\nguardrails: { commands: { allow: ["/${long}"], deny: ["/${long}"] } }\n`],
    ["undefined alias", `name: x\ninstall: [*${long}]\n`],
    ["unknown key", `name: x\n"${long}": 1\n`],
    ["unknown explicit key", `name: x\ncompute:\n  ? ${long}\n  : 1\n`],
    ["YAML syntax", `name: x\n"${long}\n`],
  ];
  for (const [what, source] of files) {
    void it(what, () => {
      const { issues } = parseEnvironment(source, "runtime.yml");
      assert.ok(issues.length > 0);
      for (const i of issues) {
        assert.ok(i.message.length <= 300, `${i.message.length} characters: ${i.message.slice(0, 120)}`);
        assert.ok(i.path.length <= MAX_PATH_CHARS, `path of ${i.path.length} characters`);
        assert.ok(!i.message.includes("Q".repeat(41)), i.message.slice(0, 120));
      }
    });
  }

  void it(`at most ${MAX_ISSUES} issues, then a count of the rest; messages cut at ${MAX_MESSAGE_CHARS}`, () => {
    const { issues } = parseEnvironment(`name: x\nproviders: [${Array.from({ length: 500 }, (_, i) => `P${i}`).join(", ")}]\n`, "runtime.yml");
    assert.equal(issues.length, MAX_ISSUES + 1);
    assert.equal(formatIssue(issues[MAX_ISSUES] ?? issues[0]!), "runtime.yml:2:503: and 400 more problems, not listed: fix the ones above first");
  });
});
