/**
 * Adversarial review of routing (issue 13, round 2), with a real server and a test provider driver
 * (test/control/routing-fixtures.ts: not a fake of any service, a Provider whose behaviour the test
 * sets). compliance.selfHostedOnly must hold on every path that puts a session on a provider, not
 * only the routed one: here, a start from a snapshot taken on a third-party provider before the
 * environment file said selfHostedOnly (the pool-claim path already refuses the same case).
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import { PaddockError, type ProviderDriver } from "../../src/core/index.ts";
import { ProviderRegistry, credentialKey } from "../../src/control/provider-registry.ts";
import { CircuitBreakers, Router, type RoutingStrategy } from "../../src/control/routing/index.ts";
import { SessionRouting } from "../../src/control/session-routing.ts";
import type { AuditLog } from "../../src/guard/index.ts";
import type { Provider, SandboxHandle, Session, Store } from "../../src/core/index.ts";
import { openVault } from "../../src/gateway/vault.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import { testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { capabilities, testDriver, testProvider, type TestSettings } from "./routing-fixtures.ts";

/** The test driver of kind e2b (third-party), whose providers also take snapshots. */
function snapshottingDriver(calls: { creates: number; snapshots: number }): ProviderDriver<TestSettings> {
  const base = testDriver("e2b", calls);
  return {
    ...base,
    async create(instance) {
      const p = testProvider(instance.name, capabilities("e2b", { snapshot: true }), { onCreate: () => (calls.creates += 1) });
      return { ...p, snapshot: async () => { calls.snapshots += 1; return { frozenMs: 0 }; }, removeSnapshot: async () => true };
    },
  };
}

void describe("routing under attack: compliance.selfHostedOnly off the routed path", () => {
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  const calls = { creates: 0, snapshots: 0 };

  before(async () => {
    ({ client, cleanup } = await testServer({ providerDrivers: [snapshottingDriver(calls)] }));
    await client.providers.add({ name: "cloud", kind: "e2b", credentials: { apiKey: "cloud-key-0123456789" } });
  });
  after(async () => cleanup());

  void it("a snapshot taken on a third-party provider before the file said selfHostedOnly never starts a session there", async () => {
    await client.environments.apply("cmp.yml", "name: cmp\nproviders: [cloud]\n");
    const s = await client.sessions.start("cmp");
    assert.equal(s.provider, "cloud");
    const snap = await client.snapshots.create(s.id, { name: "before-compliance" });
    assert.equal(calls.snapshots, 1);
    await client.sessions.stop(s.id);
    // The file now says the environment runs on self-hosted infrastructure only.
    await client.environments.apply("cmp.yml", "name: cmp\nproviders: [local]\ncompliance:\n  selfHostedOnly: true\n");
    const creates = calls.creates;
    await assert.rejects(client.sessions.start(null, { from: snap.id }), (e: unknown) => {
      assert.ok(e instanceof PaddockError, String(e));
      assert.equal(e.code, "forbidden", e.message);
      assert.match(e.message, /third-party provider cloud.*compliance\.selfHostedOnly/);
      return true;
    });
    assert.equal(calls.creates, creates, "nothing was created on the third-party provider");
    const started = (await client.sessions.list({ all: true })).filter((x) => x.snapshot === snap.id);
    assert.deepEqual(started, [], "no session row was made for the refused start");
  });
});

void describe("routing under attack: what an environment reader learns from `route explain`", () => {
  void it("an instance whose driver failed at start, quoting its credential, is explained without the credential (and logged without it)", async () => {
    const home = await tempDir();
    const store = await openSqliteStore(join(home.path, "paddock.db"));
    try {
      const vault = await openVault({ home: home.path, store, log: () => undefined });
      const KEY = "k8s-cluster-token-0123456789";
      // A driver whose build fails at `paddock up` with its credential in the message (as a client library's error may).
      const failing: ProviderDriver<unknown> = {
        ...(testDriver("k8s") as ProviderDriver<unknown>),
        create: (instance) => Promise.reject(new PaddockError("unavailable", `cluster refused token ${instance.credentials["apiKey"] ?? ""}`)),
      };
      await writeFile(join(home.path, "providers.yml"), "providers:\n  cluster:\n    kind: k8s\n");
      await vault.seal(credentialKey("cluster", "apiKey"), KEY);
      const logged: string[] = [];
      const reg = await ProviderRegistry.open({ home: home.path, vault, store, local: testProvider("local", capabilities("local")), drivers: [failing], log: (l) => logged.push(l) });
      assert.ok(!reg.providers.has("cluster"));
      // What `paddock route explain` answers to anyone who may read an environment naming it.
      const decision = await reg.router.decide({ environment: "e", preference: ["cluster", "local"], compute: { cpu: 1, memoryBytes: 2 ** 30, timeoutMs: 3_600_000 }, latency: "batch", selfHostedOnly: false });
      const verdict = decision.candidates.find((c) => c.provider === "cluster");
      assert.match(verdict?.reason ?? "", /configured but not available: cluster refused token \[redacted\]/);
      const everything = JSON.stringify([decision, logged, await reg.list(), await reg.health()]);
      assert.ok(!everything.includes(KEY), `the credential shows: ${everything}`);
    } finally {
      await store.close();
      await home.remove();
    }
  });
});

void describe("routing under attack: the circuit breaker under concurrent starts", () => {
  void it("a half-open breaker lets one trial through: starts meanwhile skip the provider instead of piling onto it", async () => {
    let t = 0;
    const now = () => t;
    let creates = 0;
    let releaseTrial: (err: Error) => void = () => undefined;
    const flaky: Provider = {
      ...testProvider("flaky", capabilities("e2b")),
      // The trial hangs until the test ends it (as a provider that is still down might).
      create: () => {
        creates += 1;
        return new Promise<SandboxHandle>((_, reject) => (releaseTrial = reject));
      },
    };
    const local = testProvider("local", capabilities("local"));
    const providers = new Map<string, Provider>([["flaky", flaky], ["local", local]]);
    const breakers = new CircuitBreakers({ threshold: 1, coolDownMs: 1000, now });
    // Tries providers in the environment's order (no scoring): the half-open one first.
    const inOrder: RoutingStrategy = { name: "in-order", decide: (_req, cs) => ({ strategy: "in-order", order: cs.map((c) => c.name), chosen: cs[0]?.name ?? null, reason: "in order", candidates: [] }) };
    const router = new Router({ providers, routingOf: () => ({}), strategy: inOrder, breakers, now });
    const store = { updateSession: async () => ({}), updateSessionRoute: async () => ({}), getSessionRoute: async () => null } as unknown as Store;
    const audit = { append: async () => undefined } as unknown as AuditLog;
    const routing = new SessionRouting({ store, router, providers, audit, log: () => undefined });
    breakers.failure("flaky", "down");
    t += 1000;
    assert.equal(breakers.state("flaky"), "half-open");
    const request = { environment: "e", preference: ["flaky", "local"], compute: { cpu: 1, memoryBytes: 2 ** 30, timeoutMs: 60_000 }, latency: "batch" as const, selfHostedOnly: false };
    // Two starts decided at the same moment: both see the breaker half-open.
    const [r1, r2] = await Promise.all([routing.decide(request), routing.decide(request)]);
    const start = (id: string, route: typeof r1) => {
      let current: Provider = local;
      const session = { id, provider: "" } as Session;
      return routing.create(session, route, (p) => (current = p), async () => undefined, () => current.create({ id } as never)).then((h) => ({ session, h }));
    };
    const first = start("s1", r1).catch((e: unknown) => e);
    const second = await start("s2", r2);
    assert.equal(second.session.provider, "local", "the second start skipped the provider being trialled");
    assert.equal(creates, 1, "one trial, not one per concurrent start");
    releaseTrial(new Error("still down"));
    assert.ok((await first) instanceof Error || (await first as { session: Session }).session.provider === "local");
    assert.equal(breakers.state("flaky"), "open", "a failed trial opens the breaker again");
    t += 1000;
    assert.equal(breakers.state("flaky"), "half-open", "and it half-opens after the next cool-down");
  });
});
