// Routing properties (fast-check): whatever the providers, prices, health, breakers and request,
// a selfHostedOnly session never reaches a third-party provider (also when a plugged-in strategy
// asks for one), every decision explains every candidate, and equal inputs decide equally.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { ProviderKind } from "../../src/core/index.ts";
import { Router, defaultStrategy, enforce, priceOf, type RouteCandidate, type RouteDecision, type RouteRequest, type RoutingStrategy } from "../../src/control/routing/index.ts";
import { capabilities, testProvider } from "./routing-fixtures.ts";

const KINDS: ProviderKind[] = ["local", "k8s", "e2b", "daytona", "ec2"];
const GIB = 1024 ** 3;

const candidateArb = (name: string, preferenceIndex: number): fc.Arbitrary<RouteCandidate> =>
  fc.record({
    kind: fc.constantFrom(...KINDS),
    selfHosted: fc.boolean(),
    warmPool: fc.boolean(),
    isolation: fc.subarray(["namespaces", "gvisor"] as const, { minLength: 1 }),
    health: fc.option(fc.record({ ok: fc.boolean(), detail: fc.string({ maxLength: 8 }), latencyMs: fc.nat(5000) }), { nil: null }),
    breaker: fc.constantFrom("closed", "open", "half-open" as const),
    price: fc.option(fc.record({ pricePerVcpuHour: fc.double({ min: 0, max: 5, noNaN: true }), pricePerGibHour: fc.double({ min: 0, max: 1, noNaN: true }) }), { nil: undefined }),
    maxCpu: fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
    maxGib: fc.option(fc.integer({ min: 1, max: 256 }), { nil: undefined }),
    latencyClass: fc.option(fc.constantFrom("interactive", "batch" as const), { nil: undefined }),
    pooled: fc.boolean(),
  }).map((r) => {
    const routing = {
      ...(r.price ?? {}), ...(r.maxCpu !== undefined ? { maxCpu: r.maxCpu } : {}), ...(r.maxGib !== undefined ? { maxMemoryBytes: r.maxGib * GIB } : {}),
      ...(r.latencyClass ? { latencyClass: r.latencyClass } : {}),
    };
    return {
      name, preferenceIndex, capabilities: capabilities(r.kind, { selfHosted: r.selfHosted, warmPool: r.warmPool, isolation: [...r.isolation] }),
      routing, health: r.health, breaker: r.breaker, price: priceOf(r.kind, routing), paddockPool: r.pooled,
    };
  });

/** A request and the candidates for it (distinct names, in preference order). */
const scenarioArb = fc.integer({ min: 1, max: 6 }).chain((n) => {
  const names = Array.from({ length: n }, (_, i) => `p${i}`);
  return fc.record({
    candidates: fc.tuple(...names.map((name, i) => candidateArb(name, i))),
    request: fc.record({
      selfHostedOnly: fc.boolean(),
      latency: fc.constantFrom("interactive", "batch" as const),
      cpu: fc.integer({ min: 1, max: 32 }),
      gib: fc.integer({ min: 1, max: 128 }),
      timeoutMs: fc.integer({ min: 60_000, max: 86_400_000 }),
      isolation: fc.option(fc.constantFrom("namespaces", "gvisor" as const), { nil: undefined }),
    }).map((r): RouteRequest => ({
      environment: "web", preference: names, compute: { cpu: r.cpu, memoryBytes: r.gib * GIB, timeoutMs: r.timeoutMs }, latency: r.latency,
      selfHostedOnly: r.selfHostedOnly, ...(r.isolation ? { isolation: r.isolation } : {}),
    })),
  });
});

/** A strategy that orders anything it likes (including unknown names, duplicates, third-party providers) and explains nothing. */
const rogueArb = fc.array(fc.oneof(fc.constantFrom("p0", "p1", "p2", "p3", "p4", "p5"), fc.string({ maxLength: 4 })), { maxLength: 12 }).map(
  (order): RoutingStrategy => ({ name: "rogue", decide: (): RouteDecision => ({ strategy: "rogue", order, chosen: order[0] ?? null, reason: "because", candidates: [] }) }),
);

function checkExplained(d: RouteDecision, candidates: readonly RouteCandidate[]): void {
  assert.deepEqual(d.candidates.map((v) => v.provider).sort(), candidates.map((c) => c.name).sort(), "one verdict per candidate");
  for (const v of d.candidates) {
    assert.equal(v.eligible, d.order.includes(v.provider), `${v.provider}: eligible exactly when it is in the order`);
    assert.ok(v.reason.length > 0, `${v.provider} has a reason`);
  }
  assert.equal(d.chosen, d.order[0] ?? null);
  assert.equal(new Set(d.order).size, d.order.length, "no provider twice");
  assert.ok(d.reason.length > 0);
}

void describe("routing properties", () => {
  void it("a selfHostedOnly session never reaches a third-party provider, and open breakers are never tried (default strategy)", () => {
    fc.assert(fc.property(scenarioArb, ({ candidates, request }) => {
      const d = enforce("default", request, candidates, defaultStrategy.decide(request, candidates));
      const byName = new Map(candidates.map((c) => [c.name, c]));
      for (const name of d.order) {
        const c = byName.get(name);
        assert.ok(c, `${name} is a candidate`);
        if (request.selfHostedOnly) assert.equal(c.capabilities.selfHosted, true, `${name} is self-hosted`);
        assert.notEqual(c.breaker, "open");
      }
    }), { numRuns: 500 });
  });

  void it("…also when a plugged-in strategy asks for anything it likes", () => {
    fc.assert(fc.property(scenarioArb, rogueArb, ({ candidates, request }, rogue) => {
      const d = enforce(rogue.name, request, candidates, rogue.decide(request, candidates));
      for (const name of d.order) {
        const c = candidates.find((x) => x.name === name);
        assert.ok(c, `${name} is a candidate`);
        if (request.selfHostedOnly) assert.equal(c.capabilities.selfHosted, true);
        assert.notEqual(c.breaker, "open");
      }
      checkExplained(d, candidates);
    }), { numRuns: 500 });
  });

  void it("every decision explains every candidate: eligible ones with every factor, skipped ones with the excluding factor", () => {
    fc.assert(fc.property(scenarioArb, ({ candidates, request }) => {
      const d = enforce("default", request, candidates, defaultStrategy.decide(request, candidates));
      checkExplained(d, candidates);
      for (const v of d.candidates) {
        const names = v.factors.map((f) => f.name);
        for (const f of ["compliance", "compute", "health", "breaker", "preference", "latency", "cost"]) assert.ok(names.includes(f), `${v.provider} explains ${f}`);
        if (!v.eligible) assert.ok(v.factors.some((f) => f.excludes), `${v.provider} names what excluded it`);
        else assert.equal(v.score, Math.round(v.factors.reduce((s, f) => s + f.points, 0) * 100) / 100, "the score is the sum of the factors' points");
      }
    }), { numRuns: 500 });
  });

  void it("is deterministic: equal inputs (in any candidate order) give equal decisions", () => {
    fc.assert(fc.property(scenarioArb, fc.nat(), ({ candidates, request }, seed) => {
      const a = defaultStrategy.decide(request, candidates);
      const b = defaultStrategy.decide(structuredClone(request), structuredClone(candidates));
      assert.deepEqual(a, b);
      const shuffled = [...candidates].sort((x, y) => ((x.preferenceIndex * 7919 + seed) % 13) - ((y.preferenceIndex * 7919 + seed) % 13));
      const c = defaultStrategy.decide(request, shuffled);
      assert.deepEqual(c.order, a.order);
      assert.deepEqual([...c.candidates].sort((x, y) => x.provider.localeCompare(y.provider)), [...a.candidates].sort((x, y) => x.provider.localeCompare(y.provider)));
    }), { numRuns: 300 });
  });

  void it("through the Router with real providers: compliance holds and unconfigured names are explained too", async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ kind: fc.constantFrom(...KINDS), selfHosted: fc.boolean(), healthy: fc.boolean() }), { minLength: 1, maxLength: 5 }),
      fc.boolean(), fc.boolean(),
      async (specs, selfHostedOnly, withMissing) => {
        const providers = new Map(specs.map((s, i) => [`p${i}`, testProvider(`p${i}`, capabilities(s.kind, { selfHosted: s.selfHosted }), { healthy: s.healthy })]));
        const router = new Router({ providers, routingOf: () => ({}), strategy: defaultStrategy });
        const preference = [...providers.keys(), ...(withMissing ? ["ghost"] : [])];
        const d = await router.decide({ environment: "web", preference, compute: { cpu: 2, memoryBytes: 4 * GIB, timeoutMs: 3_600_000 }, latency: "batch", selfHostedOnly });
        for (const name of d.order) {
          if (selfHostedOnly) assert.equal(providers.get(name)?.capabilities.selfHosted, true);
          assert.equal(specs[Number(name.slice(1))]?.healthy, true, "unhealthy providers are skipped");
        }
        assert.deepEqual(d.candidates.map((c) => c.provider).sort(), [...preference].sort());
        if (withMissing) assert.match(d.candidates.find((c) => c.provider === "ghost")?.reason ?? "", /not configured/);
      },
    ), { numRuns: 150 });
  });
});
