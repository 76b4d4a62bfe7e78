/**
 * The router: turns a session start's needs into the ordered list of providers to try. It
 * gathers what a strategy needs (each named provider's capabilities, routing settings, prices,
 * cached health and breaker state), asks the strategy, and then enforces what no strategy may
 * change: only configured providers the environment names, no open breaker, and never a
 * third-party provider for a `selfHostedOnly` environment (invariant: a compliance-restricted
 * session runs on self-hosted infrastructure, whatever a plugged-in strategy returns).
 */
import { PaddockError, type Provider, type ProviderHealth } from "../../core/index.ts";
import { CircuitBreakers } from "./breaker.ts";
import { priceOf } from "./prices.ts";
import type { CandidateVerdict, ProviderRouting, RouteCandidate, RouteDecision, RouteRequest, RoutingStrategy } from "./types.ts";

export interface RouterOptions {
  /** The installation's providers by instance name (the registry's live map). */
  providers: Map<string, Provider>;
  /** Routing settings of an instance (providers.yml `routing:`); {} for none. */
  routingOf: (name: string) => ProviderRouting;
  strategy: RoutingStrategy;
  breakers?: CircuitBreakers;
  /** Why a name in `providers:` is not configured (e.g. its driver failed at start); null: the generic reason. */
  missingReason?: (name: string) => string | null;
  /** How long a health answer is reused; default 10 s. */
  healthTtlMs?: number;
  /** A health check slower than this counts as failing; default 5 s. */
  healthTimeoutMs?: number;
  now?: () => number;
}

/** Why a name in `providers:` is not a candidate at all. */
const NOT_CONFIGURED = "not configured on this installation (paddock provider add)";

export class Router {
  readonly breakers: CircuitBreakers;
  private strategy: RoutingStrategy;
  private readonly healthCache = new Map<string, { at: number; value: Promise<ProviderHealth> }>();
  private readonly now: () => number;

  constructor(private readonly opts: RouterOptions) {
    this.strategy = opts.strategy;
    this.breakers = opts.breakers ?? new CircuitBreakers();
    this.now = opts.now ?? Date.now;
  }

  /** An instance's routing settings (providers.yml). */
  routingOf(name: string): ProviderRouting {
    return this.opts.routingOf(name);
  }

  get strategyName(): string {
    return this.strategy.name;
  }

  setStrategy(s: RoutingStrategy): void {
    this.strategy = s;
  }

  /** A provider's health, reused for `healthTtlMs`; a check that throws or hangs is a failing one. */
  health(name: string): Promise<ProviderHealth> {
    const cached = this.healthCache.get(name);
    if (cached && this.now() - cached.at < (this.opts.healthTtlMs ?? 10_000)) return cached.value;
    const provider = this.opts.providers.get(name);
    const value = provider ? checkHealth(provider, this.opts.healthTimeoutMs ?? 5000) : Promise.resolve({ ok: false, detail: NOT_CONFIGURED, latencyMs: 0 });
    this.healthCache.set(name, { at: this.now(), value });
    return value;
  }

  /** Drop a provider's cached health, so the next look asks it again. */
  forgetHealth(name: string): void {
    this.healthCache.delete(name);
  }

  /** Drop a provider's cached health (it was added, removed or replaced). */
  forget(name: string): void {
    this.healthCache.delete(name);
    this.breakers.forget(name);
  }

  /** The candidates for `request`: configured providers it names, in its order ("local" for none). */
  async candidates(request: RouteRequest): Promise<{ candidates: RouteCandidate[]; notConfigured: string[] }> {
    const names = request.preference.length ? request.preference : ["local"];
    const notConfigured = names.filter((n) => !this.opts.providers.has(n));
    const candidates = await Promise.all(
      names.flatMap((name, preferenceIndex) => {
        const p = this.opts.providers.get(name);
        if (!p) return [];
        return [
          this.health(name).then((health): RouteCandidate => {
            const routing = this.opts.routingOf(name);
            return {
              name, preferenceIndex, capabilities: p.capabilities, routing, health, breaker: this.breakers.state(name),
              price: priceOf(p.capabilities.kind, routing), paddockPool: request.pooledOn === name,
            };
          }),
        ];
      }),
    );
    return { candidates, notConfigured };
  }

  /**
   * Decide where a session of `request` runs. Rejects `invalid_argument` when the environment
   * names only providers this installation lacks; otherwise resolves a decision (whose `order`
   * may be empty: every candidate was excluded, each verdict saying why).
   */
  async decide(request: RouteRequest): Promise<RouteDecision> {
    const { candidates, notConfigured } = await this.candidates(request);
    if (candidates.length === 0) throw unconfigured(request, [...this.opts.providers.keys()]);
    let raw: RouteDecision;
    try {
      raw = this.strategy.decide(request, candidates);
    } catch (err) {
      throw new PaddockError("internal", `routing strategy ${JSON.stringify(this.strategy.name)} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    const decision = enforce(this.strategy.name, request, candidates, raw);
    for (const name of notConfigured) {
      const why = this.opts.missingReason?.(name);
      decision.candidates.push({ provider: name, eligible: false, reason: `skipped: ${why ? `configured but not available: ${why}` : NOT_CONFIGURED}`, score: 0, estimateUsd: 0, factors: [] });
    }
    return decision;
  }
}

/**
 * The strategy's answer made safe and complete: `order` keeps only candidates, once each, never
 * an open breaker nor (for selfHostedOnly) a third-party provider; every candidate has a verdict.
 */
export function enforce(strategy: string, request: RouteRequest, candidates: readonly RouteCandidate[], raw: RouteDecision): RouteDecision {
  if (typeof raw !== "object" || raw === null || !Array.isArray(raw.order) || !Array.isArray(raw.candidates)) {
    throw new PaddockError("internal", `routing strategy ${JSON.stringify(strategy)} returned no decision: decide() must return { order: string[], candidates: [...], reason }`);
  }
  const byName = new Map(candidates.map((c) => [c.name, c]));
  const verdicts = new Map<string, CandidateVerdict>();
  for (const v of raw.candidates as unknown[]) {
    const name = (v as { provider?: unknown } | null)?.provider;
    if (typeof name === "string" && byName.has(name) && !verdicts.has(name)) verdicts.set(name, { ...(v as CandidateVerdict), factors: [...((v as CandidateVerdict).factors ?? [])] });
  }
  const refusal = (c: RouteCandidate): string | null => {
    if (request.selfHostedOnly && !c.capabilities.selfHosted) return "compliance.selfHostedOnly: a third-party provider may not run this environment";
    if (c.breaker === "open") return "circuit breaker open after repeated create failures";
    return null;
  };
  const order: string[] = [];
  for (const name of raw.order as unknown[]) {
    if (typeof name !== "string" || order.includes(name)) continue;
    const c = byName.get(name);
    if (!c) continue;
    const why = refusal(c);
    if (why) {
      const v = verdicts.get(name);
      verdicts.set(name, { ...(v ?? blank(name)), eligible: false, reason: `skipped by the router: ${why}`, score: 0 });
      continue;
    }
    order.push(name);
  }
  for (const c of candidates) {
    if (verdicts.has(c.name)) {
      const v = verdicts.get(c.name) as CandidateVerdict;
      // A verdict must agree with the order: eligible exactly when it will be tried.
      if (order.includes(c.name) !== v.eligible) verdicts.set(c.name, { ...v, eligible: order.includes(c.name), reason: order.includes(c.name) ? v.reason || "in the strategy's order" : v.reason || "left out by the strategy" });
      continue;
    }
    verdicts.set(c.name, { ...blank(c.name), eligible: order.includes(c.name), reason: order.includes(c.name) ? "in the strategy's order (it gave no explanation)" : "left out by the strategy (it gave no explanation)" });
  }
  const chosen = order[0] ?? null;
  return {
    strategy,
    order,
    chosen,
    reason: chosen === null ? (typeof raw.reason === "string" && raw.chosen === null ? raw.reason : "no provider the environment names can take this session") : chosen === raw.chosen && typeof raw.reason === "string" ? raw.reason : `${chosen}: first eligible in the strategy's order`,
    candidates: candidates.map((c) => verdicts.get(c.name) as CandidateVerdict),
  };
}

const blank = (provider: string): CandidateVerdict => ({ provider, eligible: false, reason: "", score: 0, estimateUsd: 0, factors: [] });

async function checkHealth(p: Provider, timeoutMs: number): Promise<ProviderHealth> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.health(),
      new Promise<ProviderHealth>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, detail: `no health answer within ${timeoutMs} ms`, latencyMs: timeoutMs }), timeoutMs);
        timer.unref();
      }),
    ]);
  } catch (err) {
    return { ok: false, detail: `health check failed: ${err instanceof Error ? err.message : String(err)}`, latencyMs: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** The error for an environment that names only providers this installation lacks. */
export function unconfigured(request: Pick<RouteRequest, "environment" | "preference">, configured: string[]): PaddockError {
  const wanted = request.preference.length ? request.preference : ["local"];
  return new PaddockError(
    "invalid_argument",
    `environment ${JSON.stringify(request.environment)} asks for provider${wanted.length > 1 ? "s" : ""} ${wanted.join(", ")}, but this installation has only ${configured.map((n) => JSON.stringify(n)).join(", ") || "none"} configured. ` +
      `Configure a provider instance with that name (paddock provider add NAME --kind KIND, or providers.yml in $PADDOCK_HOME; docs/routing.md), or remove \`providers:\` from the file to run on "local".`,
  );
}
