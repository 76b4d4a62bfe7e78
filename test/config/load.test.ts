// The example files load to exact specs; defaults; loading from disk. Run:
// node --import tsx --test test/config/*.test.ts
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError, DEFAULT_DEPLOY_COMMANDS, DEFAULT_PROTECTED_BRANCHES, formatIssue, loadEnvironmentFile, parseEnvironment } from "../../src/config/index.ts";
import type { EnvironmentSpec } from "../../src/config/index.ts";
import type { AgentConfig } from "../../src/config/index.ts";
import type { TriggerConfig } from "../../src/config/triggers.ts";

const examples = fileURLToPath(new URL("../../examples/", import.meta.url));
const GiB = 2 ** 30;

// The spec must have exactly the shape the rest of Paddock is written against. This fails to
// compile (tsc) if the zod-derived type drifts from it.
interface ExpectedSpec {
  name: string;
  base: "host" | "debian-12";
  providers: string[];
  compliance: { selfHostedOnly: boolean };
  compute: { cpu: number; memoryBytes: number; timeoutMs: number; diskBytes: number; pids: number; isolation?: "namespaces" | "gvisor" };
  install: { run: string }[];
  secrets: { name: string; hosts: string[] | null; in: ("header" | "query" | "body")[]; cleartext?: boolean; kind?: "http" | "postgres" }[];
  guardrails: {
    commands: { allow: string[]; deny: string[]; ask: string[]; deploy: string[]; protectedBranches: string[]; askTimeoutMs: number; agentsMayDeploy: boolean };
    network: { allow: string[]; deny: string[] };
  };
  build: { network: { allow: string[]; deny: string[] } };
  rbac: Record<string, ("read" | "write" | "deploy")[]>;
  services: {
    name: string; command: string; user: string; cwd: string | null; env: Record<string, string>;
    ready: { port: number } | { command: string }; readyTimeoutMs: number; dataDirs: string[]; dependsOn: string[]; restartLimit: number;
  }[];
  seed: { run: string }[];
  pool: { min: number; max: number } | null;
  agent: AgentConfig | null;
  triggers: TriggerConfig[];
  locations: Record<string, { line: number; column: number }>;
}
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const specHasExactShape: Equals<EnvironmentSpec, ExpectedSpec> = true;

function withoutLocations(spec: EnvironmentSpec): Omit<EnvironmentSpec, "locations"> {
  const { locations: _locations, ...rest } = spec;
  return rest;
}

// DESIGN.md lives beside the checkout, not in it; the copy check is skipped (visibly) without it.
const design = await readFile(fileURLToPath(new URL("../../../shared/DESIGN.md", import.meta.url)), "utf8").catch(() => null);

void it("EnvironmentSpec has exactly the documented shape (the check is done by tsc)", () => {
  assert.equal(specHasExactShape, true);
});

void describe("examples/runtime.yml (the DESIGN.md file)", () => {
  void it("is a byte-for-byte copy of the DESIGN.md example", { skip: design === null && "../shared/DESIGN.md is not present" }, async () => {
    const block = /```yaml\n([\s\S]*?)```/.exec(design ?? "")?.[1];
    assert.equal(await readFile(join(examples, "runtime.yml"), "utf8"), block);
  });

  void it("loads to the exact expected spec", async () => {
    const { spec, fileName, source } = await loadEnvironmentFile(join(examples, "runtime.yml"));
    assert.equal(fileName, "runtime.yml");
    assert.ok(source.startsWith("# runtime.yml\nname: monorepo-agent\n"));
    assert.deepEqual(withoutLocations(spec), {
      name: "monorepo-agent",
      base: "host",
      providers: ["e2b", "k8s-prod"],
      compliance: { selfHostedOnly: false },
      compute: { cpu: 4, memoryBytes: 8_000_000_000, timeoutMs: 30 * 60_000, diskBytes: 10 * GiB, pids: 4096 },
      install: [{ run: "mise install" }, { run: "npm install" }, { run: "docker-compose up -d" }],
      secrets: [
        { name: "STRIPE_API_KEY", hosts: null, in: ["header"] },
        { name: "DATABASE_URL", hosts: null, in: ["header"] },
        { name: "SENTRY_DSN", hosts: null, in: ["header"] },
      ],
      guardrails: {
        commands: { allow: ["npm", "git", "docker", "pytest"], deny: ["rm", "sudo"], ask: [], deploy: [...DEFAULT_DEPLOY_COMMANDS], protectedBranches: [...DEFAULT_PROTECTED_BRANCHES], askTimeoutMs: 600000, agentsMayDeploy: false },
        network: { allow: ["api.stripe.com", "sentry.io", "github.com"], deny: ["*"] },
      },
      build: { network: { allow: ["*"], deny: [] } },
      rbac: { engineering: ["read", "write", "deploy"], support: ["read"] },
      services: [],
      seed: [],
      pool: null,
      agent: null,
      triggers: [],
    });
  });

  void it("records where keys and list items were written", async () => {
    const { spec } = await loadEnvironmentFile(join(examples, "runtime.yml"));
    assert.deepEqual(spec.locations["name"], { line: 2, column: 1 });
    assert.deepEqual(spec.locations["compute.memory"], { line: 8, column: 3 });
    assert.deepEqual(spec.locations["install[2]"], { line: 13, column: 5 });
    assert.deepEqual(spec.locations["guardrails.commands.deny[0]"], { line: 26, column: 9 });
    assert.deepEqual(spec.locations["guardrails.network.deny[0]"], { line: 34, column: 9 });
    assert.deepEqual(spec.locations["rbac.support"], { line: 40, column: 3 });
    // Every key (19) and list item (21) has an entry.
    assert.equal(Object.keys(spec.locations).length, 40);
  });
});

void describe("examples/paddock.yml (every extension)", () => {
  void it("loads with every extension applied", async () => {
    const { spec } = await loadEnvironmentFile(join(examples, "paddock.yml"));
    assert.equal(spec.base, "debian-12");
    assert.deepEqual(spec.compute, { cpu: 0.5, memoryBytes: 1.5 * GiB, timeoutMs: 90 * 60_000, diskBytes: 20 * GiB, pids: 1024 });
    assert.deepEqual(spec.install, [{ run: "npm ci" }, { run: "npx playwright install --with-deps chromium" }]);
    assert.deepEqual(spec.secrets, [
      { name: "SENTRY_DSN", hosts: null, in: ["header"] },
      { name: "STRIPE_API_KEY", hosts: ["api.stripe.com", "*.stripe.com"], in: ["header"] },
      { name: "GITHUB_TOKEN", hosts: ["api.github.com:443"], in: ["header", "query"] },
    ]);
    assert.deepEqual(spec.guardrails.commands, {
      allow: ["npm", "npx", "node", "git"], deny: ["sudo", "/usr/bin/su"], ask: ["kubectl"], deploy: ["git push", "npm publish", "kubectl apply"],
      protectedBranches: ["main", "release/*"], askTimeoutMs: 300000, agentsMayDeploy: false,
    });
    assert.deepEqual(spec.locations["secrets[1].hosts[1]"], { line: 22, column: 9 });
    assert.deepEqual(spec.services.map((s) => [s.name, s.user, s.ready, s.readyTimeoutMs, s.dependsOn, s.restartLimit]), [
      ["postgres", "postgres", { command: "pg_isready -h 127.0.0.1" }, 120_000, [], 5],
      ["stripe-mock", "paddock", { port: 12111 }, 60_000, ["postgres"], 3],
    ]);
    assert.deepEqual(spec.seed, [{ run: "psql -h 127.0.0.1 -U postgres -f /workspace/db/schema.sql" }]);
  });
});

void describe("defaults", () => {
  void it("fills every default for a file with only a name", () => {
    const { spec, issues } = parseEnvironment("name: tiny\n", "paddock.yml");
    assert.deepEqual(issues, []);
    assert.ok(spec !== null);
    assert.deepEqual(withoutLocations(spec), {
      name: "tiny",
      base: "host",
      providers: [],
      compliance: { selfHostedOnly: false },
      compute: { cpu: 2, memoryBytes: 4 * GiB, timeoutMs: 3_600_000, diskBytes: 10 * GiB, pids: 4096 },
      install: [],
      secrets: [],
      guardrails: { commands: { allow: [], deny: [], ask: [], deploy: [...DEFAULT_DEPLOY_COMMANDS], protectedBranches: [...DEFAULT_PROTECTED_BRANCHES], askTimeoutMs: 600000, agentsMayDeploy: false }, network: { allow: [], deny: [] } },
      build: { network: { allow: ["*"], deny: [] } },
      rbac: {},
      services: [],
      seed: [],
      pool: null,
      agent: null,
      triggers: [],
    });
    assert.deepEqual(spec.locations, { name: { line: 1, column: 1 } });
  });

  void it("treats an empty YAML value like an absent key", () => {
    const src = "name: tiny\ncompute:\n  cpu:\ninstall:\nguardrails:\n  commands:\n    deny:\nrbac:\n";
    const { spec } = parseEnvironment(src, "paddock.yml");
    assert.ok(spec !== null);
    assert.equal(spec.compute.cpu, 2);
    assert.deepEqual(spec.install, []);
    assert.deepEqual(spec.guardrails.commands.deny, []);
    assert.deepEqual(spec.rbac, {});
  });

  void it("fills absent compute keys one by one", () => {
    const { spec } = parseEnvironment("name: tiny\ncompute:\n  memory: 512M\n", "paddock.yml");
    assert.deepEqual(spec?.compute, { cpu: 2, memoryBytes: 512 * 2 ** 20, timeoutMs: 3_600_000, diskBytes: 10 * GiB, pids: 4096 });
  });

  void it("gives the short forms of install steps and secrets their extended meaning", () => {
    const { spec } = parseEnvironment("name: t\ninstall: [make, { run: make test }]\nsecrets: [A_KEY, { name: B_KEY }]\n", "x.yml");
    assert.deepEqual(spec?.install, [{ run: "make" }, { run: "make test" }]);
    assert.deepEqual(spec?.secrets, [
      { name: "A_KEY", hosts: null, in: ["header"] },
      { name: "B_KEY", hosts: null, in: ["header"] },
    ]);
  });

  void it("normalises network rules: lower case, no trailing dot", () => {
    const src = "name: t\nguardrails:\n  network:\n    allow: [API.Stripe.COM, 'github.com.', '*.Example.com:8443', '[::1]:5432', 10.0.0.5]\n";
    const { spec, issues } = parseEnvironment(src, "x.yml");
    assert.deepEqual(issues, []);
    assert.deepEqual(spec?.guardrails.network.allow, ["api.stripe.com", "github.com", "*.example.com:8443", "[::1]:5432", "10.0.0.5"]);
  });
});

void describe("loadEnvironmentFile", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const tempFile = async (name: string, text: string): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), "paddock-config-"));
    dirs.push(dir);
    await writeFile(join(dir, name), text);
    return join(dir, name);
  };

  void it("throws a ConfigError with every issue, named by the file's base name", async () => {
    const path = await tempFile("paddock.yml", "name: Bad\ncompute:\n  cpus: 2\n");
    const err = await loadEnvironmentFile(path).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof ConfigError);
    assert.equal(err.code, "invalid_argument");
    assert.deepEqual(err.issues.map(formatIssue), [
      'paddock.yml:1:7 name: "Bad" is not a valid name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit (did you mean "bad"?)',
      'paddock.yml:3:3 compute.cpus: unknown key (did you mean "cpu"?)',
    ]);
    assert.equal(err.message, err.issues.map(formatIssue).join("\n"));
  });

  void it("turns a missing file into a ConfigError, not a raw fs error", async () => {
    const err = await loadEnvironmentFile("/nonexistent/dir/runtime.yml").then(() => null, (e: unknown) => e);
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, "runtime.yml: cannot read the file: it does not exist");
  });

  void it("turns a directory into a ConfigError", async () => {
    const err = await loadEnvironmentFile(tmpdir()).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /cannot read the file: it is a directory$/);
  });

  void it("refuses a file over 1 MiB before parsing it", async () => {
    const path = await tempFile("big.yml", `name: x\n# ${"x".repeat(1024 * 1024)}\n`);
    const err = await loadEnvironmentFile(path).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, "big.yml: cannot read the file: it is larger than 1048576 bytes");
  });
});
