// Every class of bad input gives located, fix-it messages; all problems come back at once.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatIssue } from "../../src/config/index.ts";
import { lines, problems, single } from "./fixtures.ts";

void describe("unknown keys", () => {
  void it("suggests the nearest key at that level (the DESIGN.md example)", () => {
    // guardrails.comands at line 14, column 7, as in the issue text.
    const src = lines("name: x", ...Array<string>(11).fill("# filler"), "guardrails:", "      comands:", "        deny: [rm]");
    const i = single(src);
    assert.deepEqual(i, { file: "runtime.yml", line: 14, column: 7, path: "guardrails.comands", message: 'unknown key (did you mean "commands"?)' });
    assert.equal(formatIssue(i), 'runtime.yml:14:7 guardrails.comands: unknown key (did you mean "commands"?)');
  });

  void it("catches swapped letters and case slips", () => {
    assert.deepEqual(problems(lines("name: x", "compute:", "  memroy: 1GB", "Name2: y")), [
      'runtime.yml:3:3 compute.memroy: unknown key (did you mean "memory"?)',
      'runtime.yml:4:1 Name2: unknown key (did you mean "name"?)',
    ]);
  });

  void it("lists the valid keys when nothing is close", () => {
    assert.deepEqual(problems(lines("name: x", "guardrails:", "  network:", "    blocklist: [a.com]")), [
      'runtime.yml:4:5 guardrails.network.blocklist: unknown key; valid keys here: "allow", "deny"',
    ]);
  });

  void it("does not suggest a short key that is merely nearby", () => {
    // "to" is 2 edits from "in": too far for a 2-letter word, so the valid keys are listed instead.
    assert.deepEqual(problems(lines("name: x", "secrets:", "  - { name: A, to: [a.com] }")), [
      'runtime.yml:3:16 secrets[0].to: unknown key; valid keys here: "name", "hosts", "in", "cleartext", "kind"',
    ]);
  });

  void it("says where a key belongs when it is valid at another level", () => {
    assert.deepEqual(problems(lines("name: x", "memory: 4GB", "hosts: [a.com]")), [
      'runtime.yml:2:1 memory: unknown key here: "memory" belongs under "compute"',
      'runtime.yml:3:1 hosts: unknown key here: "hosts" belongs in an item of "secrets"',
    ]);
  });

  void it("checks keys inside the extended forms of list items", () => {
    assert.deepEqual(problems(lines("name: x", "install:", "  - runn: make", "secrets:", "  - name: A", "    hostz: [a.com]")), [
      // The misspelt key is reported; the "missing run" it causes would only repeat it.
      'runtime.yml:3:5 install[0].runn: unknown key (did you mean "run"?)',
      'runtime.yml:6:5 secrets[0].hostz: unknown key (did you mean "hosts"?)',
    ]);
  });
});

void describe("wrong types", () => {
  void it("cpu: lots", () => {
    const i = single(lines("name: x", "compute:", "  cpu: lots"));
    assert.equal(formatIssue(i), 'runtime.yml:3:8 compute.cpu: expected a number of CPU cores, e.g. 2 or 0.5, got a string "lots"');
  });

  void it("install: npm install (a string, not a list)", () => {
    const i = single(lines("name: x", "install: npm install"));
    assert.equal(formatIssue(i), 'runtime.yml:2:10 install: expected a list of shell commands, one per line starting with "- ", got a string "npm install"');
  });

  void it("a mapping where a list is expected", () => {
    const i = single(lines("name: x", "guardrails:", "  commands:", "    deny:", "      rm: true"));
    assert.equal(formatIssue(i), "runtime.yml:5:7 guardrails.commands.deny: expected a list of program names, got a mapping");
  });

  void it("a list where a mapping is expected", () => {
    const i = single(lines("name: x", "compute:", "  - cpu: 2"));
    assert.equal(formatIssue(i), "runtime.yml:3:3 compute: expected a mapping of cpu, memory, timeout, disk, pids, got a list");
  });

  void it("a list item of neither accepted form", () => {
    assert.deepEqual(problems(lines("name: x", "install:", "  - 5", "  - [a]")), [
      'runtime.yml:3:5 install[0]: expected a shell command, or a mapping { run: "…" }, got the number 5',
      'runtime.yml:4:5 install[1]: expected a shell command, or a mapping { run: "…" }, got a list',
    ]);
  });

  void it("a number where a size is expected", () => {
    const i = single(lines("name: x", "compute:", "  memory: 8"));
    assert.equal(formatIssue(i), 'runtime.yml:3:11 compute.memory: expected a size such as "8GB" or "512MiB", got the number 8');
  });
});

void describe("bad values", () => {
  void it("memory: 8 gigs names the accepted forms", () => {
    const i = single(lines("name: x", "compute:", "  memory: 8 gigs"));
    assert.equal(
      formatIssue(i),
      'runtime.yml:3:11 compute.memory: "8 gigs" has an unknown unit "gigs": write a number and a unit, e.g. "8GB", "512MiB", "1.5GiB" or "512M" ' +
        "(KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB and K, M, G, T are powers of 1024)",
    );
  });

  void it("bad durations, zero and over the maximum", () => {
    assert.deepEqual(problems(lines("name: x", "compute:", "  timeout: 30 minutes")), [
      'runtime.yml:3:12 compute.timeout: "30 minutes" is not a duration: write a number and a unit, largest unit first, e.g. "45s", "30m", "2h", "1h30m" or "1d" (units: d, h, m, s)',
    ]);
    assert.deepEqual(problems(lines("name: x", "compute: { timeout: 0s }")), ['runtime.yml:2:21 compute.timeout: "0s" is zero: a session needs some time, e.g. "30m"']);
    assert.deepEqual(problems(lines("name: x", "compute: { timeout: 8d }")), ['runtime.yml:2:21 compute.timeout: "8d" is more than the maximum of 7d']);
  });

  void it("numeric bounds", () => {
    assert.deepEqual(problems(lines("name: x", "compute:", "  cpu: 0", "  memory: 8MiB", "  disk: 1MB", "  pids: 8", "  cpu2: 1")), [
      "runtime.yml:3:8 compute.cpu: must be more than 0 cores; fractions such as 0.5 are allowed",
      'runtime.yml:4:11 compute.memory: "8MiB" is less than the minimum of 16MiB',
      'runtime.yml:5:9 compute.disk: "1MB" is less than the minimum of 16MiB',
      "runtime.yml:6:9 compute.pids: must be at least 16",
      'runtime.yml:7:3 compute.cpu2: unknown key (did you mean "cpu"?)',
    ]);
    assert.deepEqual(problems(lines("name: x", "compute: { cpu: 257, pids: 100.5 }")), [
      "runtime.yml:2:17 compute.cpu: must be at most 256 cores",
      "runtime.yml:2:28 compute.pids: must be a whole number",
    ]);
  });

  void it("bad names: environment, provider, secret, role", () => {
    assert.deepEqual(problems(lines("name: Monorepo Agent", "providers: [e2b, K8s_prod]", "secrets: [stripe-key, 9LIVES]", "rbac:", "  Support: [read]")), [
      'runtime.yml:1:7 name: "Monorepo Agent" is not a valid name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit (did you mean "monorepo-agent"?)',
      'runtime.yml:2:18 providers[1]: "K8s_prod" is not a provider name: use lowercase letters, digits and dashes, e.g. "k8s-prod"',
      'runtime.yml:3:11 secrets[0]: "stripe-key" is not a secret name: use upper-case letters, digits and "_", not starting with a digit, e.g. "STRIPE_API_KEY" (did you mean "STRIPE_KEY"?)',
      'runtime.yml:3:23 secrets[1]: "9LIVES" is not a secret name: use upper-case letters, digits and "_", not starting with a digit, e.g. "STRIPE_API_KEY"',
      'runtime.yml:5:3 rbac.Support: "Support" is not a role name: use lowercase letters, digits, "_" and "-", starting with a letter, e.g. "engineering"',
    ]);
  });

  void it("a name longer than 63 characters", () => {
    const i = single(lines(`name: ${"a".repeat(64)}`));
    assert.equal(i.path, "name");
    assert.match(i.message, /is not a valid name: use 1 to 63 lowercase letters/);
  });

  void it("unknown permission and base list the valid ones", () => {
    assert.deepEqual(problems(lines("name: x", "base: debian-11", "rbac:", "  ops: [read, deploi, admin]")), [
      'runtime.yml:2:7 base: unknown base "debian-11" (did you mean "debian-12"?); valid bases: "host", "debian-12"',
      'runtime.yml:4:15 rbac.ops[1]: unknown permission "deploi" (did you mean "deploy"?); valid permissions: "read", "write", "deploy"',
      'runtime.yml:4:23 rbac.ops[2]: unknown permission "admin"; valid permissions: "read", "write", "deploy"',
    ]);
  });

  void it("empty strings in lists", () => {
    assert.deepEqual(problems(lines("name: x", "install: ['', { run: '  ' }]", "guardrails:", "  commands: { allow: [''] }", "  network: { deny: [''] }")), [
      'runtime.yml:2:11 install[0]: empty install step: write a shell command such as "npm install", or remove the item',
      'runtime.yml:2:22 install[1].run: empty install step: write a shell command such as "npm install", or remove the item',
      'runtime.yml:4:23 guardrails.commands.allow[0]: empty entry: write a program name such as "npm" or a path such as "/usr/bin/npm"',
      'runtime.yml:5:21 guardrails.network.deny[0]: empty entry: write a host such as "api.stripe.com", "*.example.com" or "*"',
    ]);
  });

  void it("more than 50 install steps", () => {
    const i = single(lines("name: x", "install:", ...Array.from({ length: 51 }, (_, n) => `  - echo ${n}`)));
    assert.equal(formatIssue(i), "runtime.yml:3:3 install: too many install steps: at most 50; join related commands with &&");
  });

  void it("duplicates, with where the first copy is", () => {
    assert.deepEqual(problems(lines("name: x", "providers: [e2b, e2b]", "secrets:", "  - A_KEY", "  - name: A_KEY", "guardrails:", "  network:", "    allow: [a.com, A.COM]")), [
      'runtime.yml:2:18 providers[1]: provider "e2b" is listed twice (first at line 2, column 13); remove one',
      'runtime.yml:5:5 secrets[1]: secret "A_KEY" is listed twice (first at line 4); remove one',
      'runtime.yml:8:20 guardrails.network.allow[1]: host "a.com" is listed twice (first at line 8, column 13); remove one',
    ]);
  });

  void it("an entry in both allow and deny", () => {
    const i = single(lines("name: x", "guardrails:", "  commands:", "    allow: [git, rm]", "    deny: [rm]"));
    assert.equal(formatIssue(i), 'runtime.yml:5:12 guardrails.commands.deny[0]: "rm" is in both allow and deny; keep it in one');
  });

  void it("secret bindings: '*' host, empty lists, unknown location", () => {
    assert.deepEqual(problems(lines("name: x", "secrets:", "  - { name: A, hosts: ['*'] }", "  - { name: B, hosts: [], in: [] }", "  - { name: C, in: [cookie] }")), [
      'runtime.yml:3:24 secrets[0].hosts[0]: "*" would send the secret to any host: name the hosts it belongs to, e.g. "api.stripe.com"',
      "runtime.yml:4:23 secrets[1].hosts: empty list: name at least one host, or leave hosts out to use the default binding",
      'runtime.yml:4:31 secrets[1].in: empty list: name at least one of "header", "query", "body", or leave in out for ["header"]',
      'runtime.yml:5:21 secrets[2].in[0]: unknown location "cookie"; valid locations: "header", "query", "body"',
    ]);
  });
});

void describe("missing keys point at the parent mapping", () => {
  void it("a missing name points at the top-level mapping", () => {
    const i = single(lines("# comment", "compute:", "  cpu: 2"));
    assert.equal(formatIssue(i), 'runtime.yml:2:1 name: missing required key: add a name such as "name: monorepo-agent"');
  });

  void it("a missing run or secret name points at the list item", () => {
    assert.deepEqual(problems(lines("name: x", "install:", "  - {}", "secrets:", "  - hosts: [a.com]")), [
      'runtime.yml:3:5 install[0].run: missing required key: add "run: <shell command>"',
      'runtime.yml:5:5 secrets[0].name: missing required key: add "name: STRIPE_API_KEY"',
    ]);
  });

  void it("an empty name is not a missing one", () => {
    assert.deepEqual(problems(lines("name:", "compute: {}")), ['runtime.yml:1:1 name: expected a name such as "monorepo-agent", got nothing']);
  });
});
