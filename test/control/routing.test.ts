// Routing units: the circuit breaker, the price maths, providers.yml (located errors, edits that
// keep comments, nothing lost on bad input), the registry's credentials, and strategy loading.
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CircuitBreakers, DEFAULT_PRICES, Router, costUsd, defaultStrategy, loadStrategy, priceOf, scrubUrlCredentials } from "../../src/control/routing/index.ts";
import { parseProvidersFile, formatProvidersIssue } from "../../src/control/providers-file.ts";
import { ProviderRegistry, credentialKey } from "../../src/control/provider-registry.ts";
import { DEFAULT_DRIVERS } from "../../src/control/drivers.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import { openVault, type Vault } from "../../src/gateway/vault.ts";
import type { ProviderDriver, Store } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { openControlPlane } from "../../src/control/index.ts";
import { tempDir } from "../helpers/tmp.ts";
import { capabilities, testDriver, testProvider } from "./routing-fixtures.ts";

const GIB = 1024 ** 3;

void describe("circuit breaker", () => {
  void it("opens after N consecutive failures, half-opens after the cool-down, closes on success, re-opens on a failed trial", () => {
    let now = 1_000_000;
    const b = new CircuitBreakers({ threshold: 3, coolDownMs: 30_000, now: () => now });
    assert.equal(b.state("e2b"), "closed");
    b.failure("e2b", "boom");
    b.failure("e2b", "boom");
    assert.equal(b.state("e2b"), "closed", "two failures stay closed");
    b.success("e2b");
    b.failure("e2b", "boom");
    b.failure("e2b", "boom");
    assert.equal(b.state("e2b"), "closed", "a success resets the count");
    b.failure("e2b", "boom 3");
    assert.equal(b.state("e2b"), "open");
    assert.equal(b.describe("e2b").failures, 3);
    assert.equal(b.describe("e2b").lastError, "boom 3");
    assert.equal(b.describe("e2b").retryAt, new Date(now + 30_000).toISOString());
    now += 29_999;
    assert.equal(b.state("e2b"), "open");
    now += 1;
    assert.equal(b.state("e2b"), "half-open");
    b.failure("e2b", "still down");
    assert.equal(b.state("e2b"), "open", "a failed trial re-opens at once");
    now += 30_000;
    assert.equal(b.state("e2b"), "half-open");
    b.success("e2b");
    assert.equal(b.state("e2b"), "closed");
    assert.equal(b.state("other"), "closed", "breakers are per provider");
  });

  void it("routing skips an open breaker and tries a half-open one after the others", async () => {
    let now = 0;
    const breakers = new CircuitBreakers({ threshold: 1, coolDownMs: 1000, now: () => now });
    const providers = new Map([
      ["k8s", testProvider("k8s", capabilities("k8s"))],
      ["local", testProvider("local", capabilities("local"))],
    ]);
    const router = new Router({ providers, routingOf: () => ({}), strategy: defaultStrategy, breakers, now: () => now });
    const request = { environment: "web", preference: ["k8s", "local"], compute: { cpu: 1, memoryBytes: GIB, timeoutMs: 3_600_000 }, latency: "batch" as const, selfHostedOnly: false };
    assert.deepEqual((await router.decide(request)).order, ["k8s", "local"]);
    breakers.failure("k8s", "down");
    const open = await router.decide(request);
    assert.deepEqual(open.order, ["local"]);
    assert.match(open.candidates.find((c) => c.provider === "k8s")?.reason ?? "", /breaker open/);
    now = 1000;
    assert.deepEqual((await router.decide(request)).order, ["local", "k8s"], "half-open: one trial, last in line");
  });
});

void describe("prices", () => {
  void it("costs cpu × per-vCPU-hour + GiB × per-GiB-hour over the duration", () => {
    assert.equal(costUsd({ perVcpuHour: 0.0504, perGibHour: 0.0162 }, 2, 4 * GIB, 3_600_000), 0.1656);
    assert.equal(costUsd({ perVcpuHour: 0.0504, perGibHour: 0.0162 }, 2, 4 * GIB, 30 * 60_000), 0.0828);
    assert.equal(costUsd({ perVcpuHour: 1, perGibHour: 0 }, 0.5, 0, 7_200_000), 1);
    assert.equal(costUsd({ perVcpuHour: 1, perGibHour: 1 }, 4, 8 * GIB, 0), 0);
    assert.equal(costUsd({ perVcpuHour: 1, perGibHour: 1 }, 4, 8 * GIB, -5), 0, "a negative duration costs nothing");
  });

  void it("E2B's per-second list prices are the hourly table's", () => {
    assert.equal(Math.round(0.000014 * 3600 * 1e6) / 1e6, DEFAULT_PRICES.e2b.perVcpuHour);
    assert.equal(Math.round(0.0000045 * 3600 * 1e6) / 1e6, DEFAULT_PRICES.e2b.perGibHour);
    // EC2's split adds up to m7i.large's hour (2 vCPU, 8 GiB) within a tenth of a cent.
    assert.ok(Math.abs(2 * DEFAULT_PRICES.ec2.perVcpuHour + 8 * DEFAULT_PRICES.ec2.perGibHour - 0.1008) < 0.001);
    assert.equal(DEFAULT_PRICES.local.perVcpuHour + DEFAULT_PRICES.k8s.perGibHour, 0);
  });

  void it("an instance's own prices win, a half-set one takes the rest from the table", () => {
    assert.deepEqual(priceOf("e2b", {}), DEFAULT_PRICES.e2b);
    assert.equal(priceOf("k8s", { pricePerVcpuHour: 0.02, pricePerGibHour: 0.003 }).source, "providers.yml");
    const half = priceOf("e2b", { pricePerVcpuHour: 0.01 });
    assert.equal(half.perVcpuHour, 0.01);
    assert.equal(half.perGibHour, DEFAULT_PRICES.e2b.perGibHour);
  });
});

void describe("providers.yml", () => {
  void it("reads instances and routing", () => {
    const r = parseProvidersFile("routing:\n  breaker: { failures: 2, coolDownSeconds: 5 }\nproviders:\n  e2b:\n    kind: e2b\n    settings: { domain: e2b.app }\n    routing: { pricePerVcpuHour: 0.05, latencyClass: interactive, maxMemory: 16GiB, maxCpu: 8 }\n");
    assert.ok(r.ok);
    assert.deepEqual(r.config.instances, [{ name: "e2b", kind: "e2b", settings: { domain: "e2b.app" }, routing: { pricePerVcpuHour: 0.05, latencyClass: "interactive", maxCpu: 8, maxMemoryBytes: 16 * GIB } }]);
    assert.deepEqual(r.config.breaker, { failures: 2, coolDownMs: 5000 });
  });

  void it("reports every problem at once, located as providers.yml:LINE:COL path: message", () => {
    const source = [
      "providers:",            // 1
      "  e2b:",                // 2
      "    kind: e2c",         // 3
      "    routing:",          // 4
      "      pricePerVcpuHour: -1", // 5
      "      colour: blue",    // 6
      "  k8s-prod:",           // 7
      "    kind: k8s",         // 8
      "    routing: { maxMemory: lots }", // 9
      "  local:",              // 10
      "    kind: e2b",         // 11
    ].join("\n");
    const r = parseProvidersFile(source);
    assert.ok(!r.ok);
    const lines = r.issues.map((i) => formatProvidersIssue(i));
    assert.ok(lines.some((l) => l.startsWith("providers.yml:3:11 providers.e2b.kind: ")), lines.join("\n"));
    assert.ok(lines.some((l) => l.startsWith("providers.yml:5:25 providers.e2b.routing.pricePerVcpuHour: ")), lines.join("\n"));
    assert.ok(lines.some((l) => l.startsWith("providers.yml:6:7 providers.e2b.routing.colour: unknown key")), lines.join("\n"));
    // Schema problems come first; the checks after it (sizes, names) run once the shape is right.
    const second = parseProvidersFile(source.replace("kind: e2c", "kind: e2b").replace("pricePerVcpuHour: -1", "pricePerVcpuHour: 1").replace("      colour: blue\n", ""));
    assert.ok(!second.ok);
    const more = second.issues.map((i) => formatProvidersIssue(i));
    assert.ok(more.some((l) => /^providers\.yml:\d+:\d+ providers\.k8s-prod\.routing\.maxMemory: .*not a size/.test(l)), more.join("\n"));
    assert.ok(more.some((l) => /^providers\.yml:\d+:\d+ providers\.local\.kind: .*local/.test(l)), more.join("\n"));
  });

  void it("reports YAML syntax errors located", () => {
    const r = parseProvidersFile("providers:\n  e2b:\n    kind: e2b\n  e2b:\n    kind: k8s\n");
    assert.ok(!r.ok);
    assert.equal(r.issues[0]?.line, 4);
  });
});

void describe("provider registry", () => {
  let home: { path: string; remove: () => Promise<void> };
  let store: Store;
  let vault: Vault;
  const local = testProvider("local", capabilities("local"));
  const open = () => ProviderRegistry.open({ home: home.path, vault, store, local, drivers: [testDriver("e2b"), testDriver("k8s")], log: () => undefined });

  before(async () => {
    home = await tempDir();
    store = await openSqliteStore(join(home.path, "paddock.db"));
    vault = await openVault({ home: home.path, store, log: () => undefined });
  });
  after(async () => {
    await store.close();
    await home.remove();
  });

  void it("adds an instance: credentials sealed in the vault (never in the file, never listed), usable at once, read again at the next start", async () => {
    const file = join(home.path, "providers.yml");
    await writeFile(file, "# our providers\nproviders:\n  # the cluster\n  k8s-prod:\n    kind: k8s\n    settings: { selfHosted: true }\n");
    await vault.seal(credentialKey("k8s-prod", "apiKey"), "k8s-cred-value");
    const reg = await open();
    assert.deepEqual([...reg.providers.keys()].sort(), ["k8s-prod", "local"]);
    const info = await reg.add({ name: "e2b", kind: "e2b", settings: { failCreate: false }, routing: { pricePerVcpuHour: 0.07, maxMemory: "8GiB" }, credentials: { apiKey: "e2b_secret_value_123" } });
    assert.equal(info.status, "ready");
    assert.deepEqual(info.credentials, [{ name: "apiKey", set: true }]);
    assert.equal(reg.providers.get("e2b")?.capabilities.selfHosted, false);
    const text = await readFile(file, "utf8");
    assert.ok(!text.includes("e2b_secret_value_123"), "no credential in providers.yml");
    assert.match(text, /# our providers/, "comments are kept");
    assert.match(text, /# the cluster/);
    assert.ok(!JSON.stringify(await reg.list()).includes("e2b_secret_value_123"), "no credential in the listing");
    assert.equal(await vault.unseal(credentialKey("e2b", "apiKey")), "e2b_secret_value_123");
    assert.equal(reg.scrub("key e2b_secret_value_123 refused"), "key [redacted] refused");
    const again = await open();
    assert.deepEqual([...again.providers.keys()].sort(), ["e2b", "k8s-prod", "local"]);
    assert.deepEqual(again.router.routingOf("e2b"), { pricePerVcpuHour: 0.07, maxMemoryBytes: 8 * GIB });
  });

  void it("refuses bad adds with the reason, changing nothing", async () => {
    const reg = await open();
    const file = join(home.path, "providers.yml");
    const before = await readFile(file, "utf8");
    const refused = async (req: Parameters<typeof reg.add>[0], re: RegExp) => {
      await assert.rejects(reg.add(req), (err: unknown) => err instanceof PaddockError && re.test(err.message));
      assert.equal(await readFile(file, "utf8"), before);
    };
    await refused({ name: "e2b", kind: "e2b", credentials: { apiKey: "x-value" } }, /already configured/);
    await refused({ name: "dt", kind: "daytona" }, /no driver for kind "daytona"/);
    await refused({ name: "e2", kind: "e2b" }, /needs credential apiKey/);
    await refused({ name: "e3", kind: "e2b", credentials: { apiKey: "v-1234", token: "t" } }, /not token/);
    await refused({ name: "e4", kind: "e2b", settings: { colour: "blue" }, credentials: { apiKey: "v-1234" } }, /settings\.colour: unknown setting/);
    await refused({ name: "e5", kind: "e2b", routing: { maxCpu: -1 }, credentials: { apiKey: "v-1234" } }, /providers\.e5\.routing\.maxCpu/);
    await refused({ name: "local", kind: "e2b" }, /always configured/);
    assert.equal(await vault.unseal(credentialKey("e4", "apiKey")), null, "a refused add leaves no credential behind");
  });

  void it("a providers.yml broken by hand is not written over: add and remove refuse, located, and the file is kept", async () => {
    const file = join(home.path, "providers.yml");
    const good = await readFile(file, "utf8");
    const reg = await open();
    const broken = good + "  oops:\n    kind: nope\n";
    await writeFile(file, broken);
    await assert.rejects(reg.add({ name: "e9", kind: "e2b", credentials: { apiKey: "v-1234" } }), /providers\.yml:\d+:\d+ providers\.oops\.kind/);
    await assert.rejects(reg.remove("e2b"), /providers\.yml:\d+:\d+ providers\.oops\.kind/);
    assert.equal(await readFile(file, "utf8"), broken, "nothing lost");
    await assert.rejects(ProviderRegistry.check(home.path), /providers\.yml:\d+:\d+ providers\.oops\.kind/);
    await writeFile(file, good);
  });

  void it("removes an instance and its credentials; local cannot be removed", async () => {
    const reg = await open();
    await reg.remove("e2b");
    assert.ok(!reg.providers.has("e2b"));
    assert.equal(await vault.unseal(credentialKey("e2b", "apiKey")), null);
    assert.ok(!(await readFile(join(home.path, "providers.yml"), "utf8")).includes("e2b"));
    await assert.rejects(reg.remove("local"), /cannot be removed/);
    await assert.rejects(reg.remove("nope"), (err: unknown) => err instanceof PaddockError && err.code === "not_found");
  });

  void it("paddock up refuses a bad providers.yml, located, before it opens anything", async () => {
    const bad = await tempDir();
    try {
      await writeFile(join(bad.path, "providers.yml"), "providers:\n  e2b:\n    kind: e2c\n");
      await assert.rejects(openControlPlane({ home: bad.path }), (err: unknown) => err instanceof PaddockError && err.code === "invalid_argument" && /^providers\.yml:3:11 providers\.e2b\.kind: one of/.test(err.message));
      assert.equal(await readFile(join(bad.path, "providers.yml"), "utf8"), "providers:\n  e2b:\n    kind: e2c\n", "nothing lost");
      await assert.rejects(readFile(join(bad.path, "paddock.db")), /ENOENT/, "no store was opened");
    } finally {
      await bad.remove();
    }
  });

  void it("an instance whose credential is missing is listed as failed and explained by routing, not fatal", async () => {
    await writeFile(join(home.path, "providers.yml"), "providers:\n  e2b-eu:\n    kind: e2b\n");
    const reg = await open();
    const info = (await reg.list()).find((p) => p.name === "e2b-eu");
    assert.match(info?.status ?? "", /^failed: credential apiKey of provider e2b-eu is not in the vault/);
    const d = await reg.router.decide({ environment: "web", preference: ["e2b-eu", "local"], compute: { cpu: 1, memoryBytes: GIB, timeoutMs: 60_000 }, latency: "batch", selfHostedOnly: false });
    assert.deepEqual(d.order, ["local"]);
    assert.match(d.candidates.find((c) => c.provider === "e2b-eu")?.reason ?? "", /configured but not available: credential apiKey/);
    await writeFile(join(home.path, "providers.yml"), "providers: {}\n");
  });
});

void describe("scrubbing URL credentials out of provider errors", () => {
  void it("replaces the userinfo of every URL, and nothing else", () => {
    assert.equal(scrubUrlCredentials("proxy https://pdk-s1:pw-123@gw:8443 refused; db postgres://app:s3cr%2Ft@db.internal/x?u=a@b"),
      "proxy https://[redacted]@gw:8443 refused; db postgres://[redacted]@db.internal/x?u=a@b");
    assert.equal(scrubUrlCredentials('HTTPS_PROXY="http://u@h" and https://h/p@q'), 'HTTPS_PROXY="http://[redacted]@h" and https://h/p@q');
    assert.equal(scrubUrlCredentials("no url here: user@example.com"), "no url here: user@example.com");
  });
});

void describe("optional provider credentials", () => {
  void it("a k8s instance with settings.inCluster needs no kubeconfig; without it, it is still refused naming the credential and the setting", async () => {
    const home = await tempDir();
    const store = await openSqliteStore(join(home.path, "paddock.db"));
    try {
      const vault = await openVault({ home: home.path, store, log: () => undefined });
      const reg = await ProviderRegistry.open({ home: home.path, vault, store, local: testProvider("local", capabilities("local")), drivers: DEFAULT_DRIVERS, log: () => undefined });
      const info = await reg.add({ name: "k8s-in", kind: "k8s", settings: { inCluster: true } });
      assert.equal(info.status, "ready");
      assert.deepEqual(info.credentials, [{ name: "kubeconfig", set: false, optional: true }]);
      assert.equal(await vault.unseal(credentialKey("k8s-in", "kubeconfig")), null, "nothing stored for a credential not given");
      const again = await ProviderRegistry.open({ home: home.path, vault, store, local: testProvider("local", capabilities("local")), drivers: DEFAULT_DRIVERS, log: () => undefined });
      assert.ok(again.providers.has("k8s-in"), "built again at the next start without the optional credential");
      await assert.rejects(reg.add({ name: "k8s-out", kind: "k8s", credentials: { kubeconfig: "" } }), (err: unknown) =>
        err instanceof PaddockError && err.code === "invalid_argument" && /k8s-out.*no kubeconfig.*provider\/k8s-out\/kubeconfig.*settings\.inCluster/.test(err.message));
      assert.ok(!(await reg.list()).some((p) => p.name === "k8s-out"));
      await reg.remove("k8s-in");
      for (const p of [...reg.providers.values(), ...again.providers.values()]) if (p.name !== "local") await p.close();
    } finally {
      await store.close();
      await home.remove();
    }
  });

  void it("a driver's required credentials are still required", async () => {
    const home = await tempDir();
    const store = await openSqliteStore(join(home.path, "paddock.db"));
    try {
      const vault = await openVault({ home: home.path, store, log: () => undefined });
      const partly: ProviderDriver<unknown> = { ...(testDriver("e2b") as ProviderDriver<unknown>), credentials: ["apiKey", "region"], optionalCredentials: ["region"] };
      const reg = await ProviderRegistry.open({ home: home.path, vault, store, local: testProvider("local", capabilities("local")), drivers: [partly], log: () => undefined });
      await assert.rejects(reg.add({ name: "e", kind: "e2b", credentials: { region: "eu" } }), /needs credential apiKey/);
      const info = await reg.add({ name: "e", kind: "e2b", credentials: { apiKey: "key-1234" } });
      assert.deepEqual(info.credentials, [{ name: "apiKey", set: true }, { name: "region", set: false, optional: true }]);
    } finally {
      await store.close();
      await home.remove();
    }
  });
});

void describe("strategy modules", () => {
  let dir: { path: string; remove: () => Promise<void> };
  before(async () => (dir = await tempDir()));
  after(async () => dir.remove());

  void it("loads a module's default export and refuses wrong shapes, saying what is wrong", async () => {
    await writeFile(join(dir.path, "good.mjs"), "export default { name: 'cheapest', decide: (req, cs) => ({ strategy: 'cheapest', order: cs.map((c) => c.name).reverse(), chosen: null, reason: 'r', candidates: [] }) };\n");
    await writeFile(join(dir.path, "noname.mjs"), "export default { decide() {} };\n");
    await writeFile(join(dir.path, "fn.mjs"), "export default function decide() {}\n");
    await writeFile(join(dir.path, "broken.mjs"), "export default {\n");
    const where = "providers.yml:2:13 routing.strategy";
    const s = await loadStrategy("./good.mjs", dir.path, where);
    assert.equal(s.name, "cheapest");
    await assert.rejects(loadStrategy("./noname.mjs", dir.path, where), /providers\.yml:2:13 routing\.strategy: .*noname\.mjs does not export a RoutingStrategy.*`name` is not a non-empty string/);
    await assert.rejects(loadStrategy("./fn.mjs", dir.path, where), /its export is function, not an object/);
    await assert.rejects(loadStrategy("./missing.mjs", dir.path, where), /cannot load routing strategy module/);
    await assert.rejects(loadStrategy("./broken.mjs", dir.path, where), /cannot load routing strategy module/);
    // A plugged-in strategy's order is followed (within what the router enforces), its missing explanations filled in.
    const providers = new Map([["local", testProvider("local", capabilities("local"))], ["k8s", testProvider("k8s", capabilities("k8s"))]]);
    const router = new Router({ providers, routingOf: () => ({}), strategy: s });
    const d = await router.decide({ environment: "web", preference: ["local", "k8s"], compute: { cpu: 1, memoryBytes: GIB, timeoutMs: 60_000 }, latency: "batch", selfHostedOnly: false });
    assert.deepEqual(d.order, ["k8s", "local"]);
    assert.equal(d.strategy, "cheapest");
    assert.ok(d.candidates.every((c) => c.reason.includes("gave no explanation")));
  });
});
