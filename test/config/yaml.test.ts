// YAML-level problems, several problems at once, and input that must never make the parser throw.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatIssue, parseEnvironment } from "../../src/config/index.ts";
import type { ConfigIssue } from "../../src/config/index.ts";
import { lines, problems } from "./fixtures.ts";

void describe("YAML-level problems", () => {
  void it("duplicate keys in a mapping", () => {
    assert.deepEqual(problems(lines("name: x", "compute:", "  cpu: 2", "  cpu: 3", "name: y")), [
      "runtime.yml:4:3 compute.cpu: duplicate key (first written at line 3): keep one of them",
      "runtime.yml:5:1 name: duplicate key (first written at line 1): keep one of them",
    ]);
  });

  void it("syntax errors carry the parser's position", () => {
    assert.deepEqual(problems(lines("name: x", "install: [a, b", "compute: {}")), [
      "runtime.yml:3:1: YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]; check the indentation: items of one mapping or list start in the same column",
    ]);
    assert.deepEqual(problems(lines("name: x", "\tcompute: {}")), [
      "runtime.yml:2:1: YAML syntax: Tabs are not allowed as indentation; indent with spaces, not tabs",
    ]);
  });

  void it("an unquoted * explains the quoting, and the rest of the file is still checked", () => {
    assert.deepEqual(problems(lines("name: x", "guardrails:", "  network:", "    deny:", "      - *")), [
      'runtime.yml:5:9: YAML syntax: Alias cannot be an empty string; a value starting with "*" must be quoted, e.g. "*" or "*.example.com"',
    ]);
    assert.deepEqual(problems(lines("name: x", "guardrails:", "  network:", "    allow:", "      - *.example.com", "      - https://a.com")), [
      'runtime.yml:5:9 guardrails.network.allow[0]: *.example.com is read as a YAML alias, which is not defined: quote it, e.g. "*.example.com"',
      'runtime.yml:6:9 guardrails.network.allow[1]: "https://a.com" is a URL: write the host only, e.g. "a.com"',
    ]);
  });

  void it("an empty file, and one with only comments", () => {
    const message = 'runtime.yml:1:1: the file is empty: an environment needs at least a name, e.g. "name: my-environment"';
    assert.deepEqual(problems(""), [message]);
    assert.deepEqual(problems("# nothing yet\n\n"), [message]);
  });

  void it("a top level that is not a mapping", () => {
    assert.deepEqual(problems(lines("- name: x")), [
      'runtime.yml:1:1: the top level must be a mapping of keys such as "name:", "compute:", "install:", but this file is a list',
    ]);
    assert.deepEqual(problems(lines("# c", "just words")), [
      'runtime.yml:2:1: the top level must be a mapping of keys such as "name:", "compute:", "install:", but this file is a single value',
    ]);
  });

  void it("more than one document", () => {
    assert.deepEqual(problems(lines("name: x", "---", "name: y")), [
      'runtime.yml:2:1: YAML syntax: the file holds more than one YAML document; an environment file holds one document: remove the second "---"',
    ]);
  });

  void it("__proto__ is refused as a key everywhere, never silently dropped", () => {
    assert.deepEqual(problems(lines("name: x", "rbac:", "  __proto__: [read]", "  ops: [read]", "__proto__: {}")), [
      'runtime.yml:3:3 rbac.__proto__: "__proto__" cannot be used as a key',
      'runtime.yml:5:1 __proto__: "__proto__" cannot be used as a key',
    ]);
  });

  void it("an alias bomb is refused, not expanded", () => {
    const bomb = lines(
      "a: &a [x, x, x, x, x, x, x, x, x, x]",
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
      "name: x",
    );
    // Located at the alias that crosses the limit; the other keys are not checked once it is hit.
    assert.deepEqual(problems(bomb), [
      'runtime.yml:4:20 d[3]: too many alias expansions (limit 5000): the aliases up to "*c" repeat more than 5000 values; write the values out instead',
    ]);
  });
});

void describe("several problems at once", () => {
  void it("reports every problem in file order, each located", () => {
    const src = lines(
      "name: Payments",            // 1
      "providers: e2b",            // 2
      "compute:",                  // 3
      "  cpu: lots",               // 4
      "  memory: 8 gigs",          // 5
      "  timout: 30m",             // 6
      "install:",                  // 7
      "  - npm ci",                // 8
      "  - ''",                    // 9
      "secrets:",                  // 10
      "  - STRIPE_API_KEY",        // 11
      "  - STRIPE_API_KEY",        // 12
      "guardrails:",               // 13
      "  comands:",                // 14
      "    deny: [rm]",            // 15
      "  network:",                // 16
      "    allow: ['*.com']",      // 17
      "rbac:",                     // 18
      "  support: [reed]",         // 19
    );
    const issues = parseEnvironment(src, "paddock.yml").issues;
    assert.deepEqual(
      issues.map((i) => [i.line, i.column, i.path]),
      [
        [1, 7, "name"],
        [2, 12, "providers"],
        [4, 8, "compute.cpu"],
        [5, 11, "compute.memory"],
        [6, 3, "compute.timout"],
        [9, 5, "install[1]"],
        [12, 5, "secrets[1]"],
        [14, 3, "guardrails.comands"],
        [17, 13, "guardrails.network.allow[0]"],
        [19, 13, "rbac.support[0]"],
      ],
    );
    assert.equal(formatIssue(issues[4] as ConfigIssue), 'paddock.yml:6:3 compute.timout: unknown key (did you mean "timeout"?)');
    assert.equal(formatIssue(issues[9] as ConfigIssue), 'paddock.yml:19:13 rbac.support[0]: unknown permission "reed" (did you mean "read"?); valid permissions: "read", "write", "deploy"');
  });
});

void describe("one bad entry does not hide another problem", () => {
  void it("duplicates, conflicts and role names are checked beside invalid entries", () => {
    const src = lines(
      "name: x",
      "secrets: [A_KEY, A_KEY, bad]",
      "guardrails:",
      "  commands:",
      "    allow: [rm, '']",
      "    deny: [rm]",
      "rbac:",
      "  Ops: [deploi]",
    );
    assert.deepEqual(problems(src), [
      'runtime.yml:2:18 secrets[1]: secret "A_KEY" is listed twice (first at line 2, column 11); remove one',
      'runtime.yml:2:25 secrets[2]: "bad" is not a secret name: use upper-case letters, digits and "_", not starting with a digit, e.g. "STRIPE_API_KEY" (did you mean "BAD"?)',
      'runtime.yml:5:17 guardrails.commands.allow[1]: empty entry: write a program name such as "npm" or a path such as "/usr/bin/npm"',
      'runtime.yml:6:12 guardrails.commands.deny[0]: "rm" is in both allow and deny; keep it in one',
      'runtime.yml:8:3 rbac.Ops: "Ops" is not a role name: use lowercase letters, digits, "_" and "-", starting with a letter, e.g. "engineering"',
      'runtime.yml:8:9 rbac.Ops[0]: unknown permission "deploi" (did you mean "deploy"?); valid permissions: "read", "write", "deploy"',
    ]);
  });

  void it("in every list, a duplicate is reported beside an entry of the wrong type", () => {
    const src = lines(
      "name: x",
      "providers: [e2b, e2b, 5]",
      "secrets:",
      "  - [A_KEY, A_KEY, 5]",
      "  - { name: B_KEY, hosts: [a.com, a.com, 5], in: [body, body, 5] }",
      "guardrails:",
      "  commands: { allow: [rm, rm, 5] }",
      "  network: { allow: [a.com, 5], deny: [a.com, a.com, 5] }",
      "rbac:",
      "  ops: [read, read, 5]",
    );
    const duplicatesAndConflicts = problems(src).filter((p) => /listed twice|in both/.test(p));
    assert.deepEqual(duplicatesAndConflicts, [
      'runtime.yml:2:18 providers[1]: provider "e2b" is listed twice (first at line 2, column 13); remove one',
      'runtime.yml:5:35 secrets[1].hosts[1]: host "a.com" is listed twice (first at line 5, column 28); remove one',
      'runtime.yml:5:57 secrets[1].in[1]: location "body" is listed twice (first at line 5, column 51); remove one',
      'runtime.yml:7:27 guardrails.commands.allow[1]: program "rm" is listed twice (first at line 7, column 23); remove one',
      'runtime.yml:8:40 guardrails.network.deny[0]: "a.com" is in both allow and deny; keep it in one',
      // deny[1] is also in allow, but one message per spot is enough: the duplicate is the fix.
      'runtime.yml:8:47 guardrails.network.deny[1]: host "a.com" is listed twice (first at line 8, column 40); remove one',
      'runtime.yml:10:15 rbac.ops[1]: permission "read" is listed twice (first at line 10, column 9); remove one',
    ]);
  });

  void it("a duplicate secret beside a secret of the wrong type", () => {
    assert.deepEqual(problems(lines("name: x", "secrets: [A_KEY, A_KEY, 5]")), [
      'runtime.yml:2:18 secrets[1]: secret "A_KEY" is listed twice (first at line 2, column 11); remove one',
      'runtime.yml:2:25 secrets[2]: expected a secret name, or a mapping { name: …, hosts: […], in: […] }, got the number 5',
    ]);
  });

  void it("a YAML duplicate key and a schema problem are reported together", () => {
    assert.deepEqual(problems(lines("name: x", "name: y", "compute: { cpu: lots }")), [
      "runtime.yml:2:1 name: duplicate key (first written at line 1): keep one of them",
      'runtime.yml:3:17 compute.cpu: expected a number of CPU cores, e.g. 2 or 0.5, got a string "lots"',
    ]);
  });
});

void describe("parseEnvironment never throws", () => {
  const inputs: [string, string][] = [
    ["binary", "\u0000\u0001\u0002\uFFFF"],
    ["deep nesting", `${"[".repeat(500)}${"]".repeat(500)}`],
    ["unterminated quote", 'name: "x\n'],
    ["key that is a list", "[a]: b\nname: x\n"],
    ["anchors and merge-like keys", "base: &b {cpu: 2}\ncompute:\n  <<: *b\nname: x\n"],
    ["tags", "name: !!binary aGVsbG8=\n"],
    ["huge number", "name: x\ncompute:\n  cpu: 1e400\n"],
    ["byte order mark", "\uFEFFname: x\n"],
  ];
  for (const [what, src] of inputs) {
    void it(what, () => {
      const result = parseEnvironment(src, "x.yml");
      for (const i of result.issues) {
        assert.equal(typeof i.message, "string");
        assert.ok(i.line >= 1 && i.column >= 1, formatIssue(i));
      }
    });
  }

  void it("a file with a byte order mark still loads", () => {
    assert.equal(parseEnvironment("\uFEFFname: x\n", "x.yml").spec?.name, "x");
  });
});
