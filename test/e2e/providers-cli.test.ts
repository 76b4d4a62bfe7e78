/**
 * `paddock provider add/list/remove/health` and `paddock route explain` through the real CLI
 * against a real server with a test provider driver (test/control/routing-fixtures.ts): what is
 * printed, what lands in providers.yml (never a credential) and in the vault, and the errors.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { credentialKey } from "../../src/control/provider-registry.ts";
import { cli, testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { testDriver } from "../control/routing-fixtures.ts";

const KEY = "e2b_cli_key_abcdef0123456789";

void describe("paddock provider and route explain", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let home: string;
  let cleanup: () => Promise<void>;
  let files: { path: string; remove: () => Promise<void> };

  before(async () => {
    ({ server, client, home, cleanup } = await testServer({ providerDrivers: [testDriver("e2b"), testDriver("k8s")] }));
    files = await tempDir();
  });
  after(async () => {
    await cleanup();
    await files.remove();
  });

  void it("add reads credentials from a file or stdin, never the command line; nothing prints them", async () => {
    const keyFile = join(files.path, "e2b.key");
    await writeFile(keyFile, `${KEY}\n`);
    const literal = await cli(server.url, ["provider", "add", "e2b", "--kind", "e2b", "--credential", `apiKey=${KEY}`]);
    assert.equal(literal.code, 2);
    assert.match(literal.stderr, /never taken from the command line/);
    assert.ok(!literal.stderr.includes(KEY), "the refusal does not repeat the value");
    const added = await cli(server.url, ["provider", "add", "e2b", "--kind", "e2b", "--credential", `apiKey=@${keyFile}`, "--set", "warmPool=true", "--route", "pricePerVcpuHour=0.06", "--route", "latencyClass=interactive", "--route", "maxMemory=8GiB"]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stderr, /provider e2b \(e2b\) added: ready/);
    const piped = await cli(server.url, ["provider", "add", "k8s-prod", "--kind", "k8s", "--set", "selfHosted=true", "--credential", "apiKey=-", "--json"], { input: "k8s-token-value\n" });
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal((JSON.parse(piped.stdout) as { selfHosted: boolean }).selfHosted, true);
    const file = await readFile(join(home, "providers.yml"), "utf8");
    assert.match(file, /e2b:\n\s+kind: e2b\n\s+settings:\n\s+warmPool: true\n\s+routing:\n\s+pricePerVcpuHour: 0.06/);
    assert.ok(!file.includes(KEY) && !file.includes("k8s-token-value"), "no credential in providers.yml");
    assert.equal(await server.cp.vault.unseal(credentialKey("e2b", "apiKey")), KEY, "one trailing newline dropped");
    assert.equal(await server.cp.vault.unseal(credentialKey("k8s-prod", "apiKey")), "k8s-token-value");
  });

  void it("list shows kinds, status, routing and which credentials are set, never values", async () => {
    const table = await cli(server.url, ["provider", "list"]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split("\n");
    assert.match(lines[0] ?? "", /^NAME\s+KIND\s+SELF-HOSTED\s+STATUS\s+ROUTING\s+CREDENTIALS$/);
    assert.match(lines[1] ?? "", /^local\s+local\s+yes\s+ready\s+-\s+-$/);
    assert.ok(lines.some((l) => /^e2b\s+e2b\s+no\s+ready\s+pricePerVcpuHour=0.06 latencyClass=interactive maxMemoryBytes=8589934592\s+apiKey$/.test(l)), table.stdout);
    const json = await cli(server.url, ["provider", "list", "--json"]);
    const list = JSON.parse(json.stdout) as { name: string; credentials: { name: string; set: boolean }[] }[];
    assert.deepEqual(list.map((p) => p.name), ["local", "e2b", "k8s-prod"]);
    assert.deepEqual(list.find((p) => p.name === "e2b")?.credentials, [{ name: "apiKey", set: true }]);
    assert.ok(!json.stdout.includes(KEY) && !table.stdout.includes(KEY));
    const health = await cli(server.url, ["provider", "health"]);
    assert.equal(health.code, 0, health.stderr);
    assert.match(health.stdout, /^e2b\s+yes\s+\d+ms\s+closed\s+test: ok$/m);
  });

  void it("route explain prints the decision and every factor for every candidate", async () => {
    await client.environments.apply("web.yml", "name: web\nproviders: [k8s-prod, e2b, local, nowhere]\ncompute:\n  cpu: 2\n  memory: 4GiB\n");
    const text = await cli(server.url, ["route", "explain", "web"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^environment web: 2 vCPU, 4 GiB, batch$/m);
    assert.match(text.stdout, /^strategy default: chosen k8s-prod \(/m);
    assert.match(text.stdout, /^failover order: k8s-prod → local → e2b$/m, "batch: e2b's cost puts it after local (equal preference points aside)");
    assert.match(text.stdout, /^nowhere: skipped: not configured on this installation/m);
    for (const f of ["compliance", "compute", "health", "breaker", "preference", "latency", "cost"]) assert.match(text.stdout, new RegExp(`^ {2}${f} `, "m"), `shows ${f}`);
    assert.match(text.stdout, /^ {2}cost +\$0\.1848 .*2 vCPU × \$0\.0600\/h \+ 4 GiB × \$0\.0162\/h over 60 min/m, "e2b priced with its configured vCPU price");
    const interactive = JSON.parse((await cli(server.url, ["route", "explain", "web", "--interactive", "--json"])).stdout) as { request: { latency: string }; decision: { order: string[]; candidates: { provider: string; factors: { name: string; points: number }[] }[] } };
    assert.equal(interactive.request.latency, "interactive");
    const e2bLatency = interactive.decision.candidates.find((c) => c.provider === "e2b")?.factors.filter((f) => f.name.startsWith("latency")).reduce((s, f) => s + f.points, 0);
    assert.equal(e2bLatency, 75, "a warm pool (+60) and a matching latency class (+15)");
    assert.equal(interactive.decision.order[0], "e2b", "interactive prefers the warm pool");
    const missing = await cli(server.url, ["route", "explain", "nope"]);
    assert.equal(missing.code, 3);
  });

  void it("remove takes the instance and its credentials away; errors say what is wrong", async () => {
    const removed = await cli(server.url, ["provider", "remove", "e2b"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(await server.cp.vault.unseal(credentialKey("e2b", "apiKey")), null);
    assert.ok(!(await readFile(join(home, "providers.yml"), "utf8")).includes("e2b:"));
    assert.equal((await cli(server.url, ["provider", "remove", "e2b"])).code, 3);
    const local = await cli(server.url, ["provider", "remove", "local"]);
    assert.equal(local.code, 2);
    assert.match(local.stderr, /cannot be removed/);
    const kind = await cli(server.url, ["provider", "add", "dt", "--kind", "daytona"]);
    assert.equal(kind.code, 2);
    assert.match(kind.stderr, /no driver for kind "daytona"/);
    const noCred = await cli(server.url, ["provider", "add", "e2b2", "--kind", "e2b"]);
    assert.equal(noCred.code, 2);
    assert.match(noCred.stderr, /needs credential apiKey: --credential apiKey=@FILE/);
  });
});
