/**
 * The default strategy (docs/routing.md): `providers:` order is the preference, and each factor
 * adds or takes away points, or excludes a candidate:
 *
 * | factor      | effect |
 * | ----------- | ------ |
 * | compliance  | excludes a third-party provider when `selfHostedOnly` |
 * | isolation   | excludes a provider that cannot run `compute.isolation` |
 * | compute     | excludes an instance whose `maxCpu` / `maxMemoryBytes` is below the request |
 * | health      | excludes a provider whose last health check failed |
 * | breaker     | excludes an open breaker; a half-open one loses 60 (one trial, usually after the others) |
 * | preference  | 100 for the first, then evenly less: 100 × (n − i) / n |
 * | latency     | interactive: +60 for a warm pool (the provider's own, or a Paddock pool on local); +15 when the instance's latencyClass matches the request |
 * | cost        | up to −30: the estimate's share of the dearest eligible estimate |
 *
 * Ties go to the earlier preference, then the name, so equal inputs give equal decisions.
 */
import { costUsd, formatUsd } from "./prices.ts";
import type { CandidateVerdict, RouteCandidate, RouteDecision, RouteFactor, RouteRequest, RoutingStrategy } from "./types.ts";

export const WEIGHTS = { preference: 100, warmPool: 60, latencyClass: 15, cost: 30, halfOpen: 60 } as const;

const GIB = 1024 ** 3;
const gib = (bytes: number): string => `${Math.round((bytes / GIB) * 100) / 100} GiB`;

const factor = (name: string, value: string, points: number, note: string, excludes = false): RouteFactor => ({ name, value, points, excludes, note });

/** The factors that can take a candidate out, each recorded whether or not it does. */
function gates(req: RouteRequest, c: RouteCandidate): RouteFactor[] {
  const out: RouteFactor[] = [];
  const selfHosted = c.capabilities.selfHosted;
  out.push(factor("compliance", selfHosted ? "self-hosted" : "third-party", 0,
    req.selfHostedOnly ? (selfHosted ? "compliance.selfHostedOnly: allowed (self-hosted)" : "compliance.selfHostedOnly: a third-party provider may not run this environment") : "no compliance restriction",
    req.selfHostedOnly && !selfHosted));
  if (req.isolation !== undefined) {
    const ok = c.capabilities.isolation.includes(req.isolation);
    out.push(factor("isolation", req.isolation, 0, ok ? `runs ${req.isolation}` : `cannot run compute.isolation ${req.isolation} (runs ${c.capabilities.isolation.join(", ") || "none"})`, !ok));
  }
  const { maxCpu, maxMemoryBytes } = c.routing;
  const cpuOk = maxCpu === undefined || req.compute.cpu <= maxCpu;
  const memOk = maxMemoryBytes === undefined || req.compute.memoryBytes <= maxMemoryBytes;
  const limits = [maxCpu === undefined ? null : `max ${maxCpu} vCPU`, maxMemoryBytes === undefined ? null : `max ${gib(maxMemoryBytes)}`].filter(Boolean).join(", ");
  out.push(factor("compute", `${req.compute.cpu} vCPU, ${gib(req.compute.memoryBytes)}`, 0,
    cpuOk && memOk ? (limits ? `fits (${limits})` : "no size limit declared") : `too large for this instance (${limits})`, !(cpuOk && memOk)));
  const h = c.health;
  out.push(factor("health", h === null ? "unknown" : h.ok ? "ok" : "failing", 0, h === null ? "not checked yet" : `${h.detail || (h.ok ? "ok" : "failing")} (${Math.round(h.latencyMs)} ms)`, h !== null && !h.ok));
  out.push(factor("breaker", c.breaker, c.breaker === "half-open" ? -WEIGHTS.halfOpen : 0,
    c.breaker === "open" ? "circuit breaker open after repeated create failures" : c.breaker === "half-open" ? "circuit breaker half-open: one trial, after the others" : "closed", c.breaker === "open"));
  return out;
}

export const defaultStrategy: RoutingStrategy = {
  name: "default",
  decide(req: RouteRequest, candidates: readonly RouteCandidate[]): RouteDecision {
    const duration = req.expectedDurationMs ?? req.compute.timeoutMs;
    const n = Math.max(1, req.preference.length || 1);
    const estimates = new Map(candidates.map((c) => [c.name, costUsd(c.price, req.compute.cpu, req.compute.memoryBytes, duration)]));
    const draft = candidates.map((c) => ({ c, factors: gates(req, c) }));
    const eligible = draft.filter((d) => !d.factors.some((f) => f.excludes));
    const dearest = Math.max(0, ...eligible.map((d) => estimates.get(d.c.name) ?? 0));
    const verdicts: (CandidateVerdict & { index: number })[] = draft.map(({ c, factors }) => {
      const estimate = estimates.get(c.name) ?? 0;
      factors.push(factor("preference", `#${c.preferenceIndex + 1} of ${n}`, round(WEIGHTS.preference * (n - c.preferenceIndex) / n), "providers: order in the environment file"));
      const warm = c.capabilities.warmPool || c.paddockPool;
      const warmNote = c.capabilities.warmPool ? "the provider keeps a warm pool" : c.paddockPool ? "a Paddock warm pool of this environment" : "no warm pool";
      factors.push(factor("latency", req.latency, req.latency === "interactive" && warm ? WEIGHTS.warmPool : 0, req.latency === "interactive" ? warmNote : "batch: warm pools not weighed"));
      if (c.routing.latencyClass !== undefined) {
        const match = c.routing.latencyClass === req.latency;
        factors.push(factor("latency class", c.routing.latencyClass, match ? WEIGHTS.latencyClass : 0, match ? "instance declared for this latency class" : "instance declared for the other latency class"));
      }
      const costPoints = dearest > 0 ? -round(WEIGHTS.cost * (estimate / dearest)) : 0;
      factors.push(factor("cost", formatUsd(estimate), costPoints,
        `${req.compute.cpu} vCPU × ${formatUsd(c.price.perVcpuHour)}/h + ${gib(req.compute.memoryBytes)} × ${formatUsd(c.price.perGibHour)}/h over ${Math.round(duration / 60_000)} min (${c.price.source})`));
      const excluded = factors.find((f) => f.excludes);
      const score = excluded ? 0 : round(factors.reduce((s, f) => s + f.points, 0));
      return { provider: c.name, eligible: !excluded, reason: excluded ? `skipped: ${excluded.note}` : "", score, estimateUsd: estimate, factors, index: c.preferenceIndex };
    });
    const ranked = verdicts.filter((v) => v.eligible).sort((a, b) => b.score - a.score || a.index - b.index || (a.provider < b.provider ? -1 : a.provider > b.provider ? 1 : 0));
    ranked.forEach((v, i) => (v.reason = i === 0 ? `chosen: highest score ${v.score}` : `fallback #${i}: score ${v.score}`));
    const chosen = ranked[0]?.provider ?? null;
    return {
      strategy: "default",
      order: ranked.map((v) => v.provider),
      chosen,
      reason: chosen === null ? "no provider the environment names can take this session" : `${chosen}: ${summary(ranked[0]?.factors ?? [])}`,
      candidates: verdicts.map(({ index: _index, ...v }) => v),
    };
  },
};

/** The factors that scored, e.g. "preference +100, latency +40, cost −12". */
function summary(factors: RouteFactor[]): string {
  const scored = factors.filter((f) => f.points !== 0).map((f) => `${f.name} ${f.points > 0 ? "+" : ""}${f.points}`);
  return scored.length ? scored.join(", ") : "the only eligible provider";
}

const round = (x: number): number => Math.round(x * 100) / 100;
