/**
 * The routing contract (docs/routing.md): a strategy gets one session start's needs and every
 * configured provider the environment names, and returns the order to try them in with every
 * factor it weighed, so `paddock route explain` can show why. Strategies are pure: the router
 * gathers health, breaker states and prices first, and enforces compliance on what comes back.
 */
import type { IsolationTier, ProviderCapabilities, ProviderHealth } from "../../core/index.ts";

/** "interactive": someone waits on the start (prefer warm pools); "batch": nobody does. */
export type LatencyClass = "interactive" | "batch";

/** Per-instance routing settings from providers.yml (`routing:`); all optional. */
export interface ProviderRouting {
  /** USD per vCPU-hour; absent: the default table's price for the provider's kind (prices.ts). */
  pricePerVcpuHour?: number;
  /** USD per GiB-hour of memory; absent: the default table's. */
  pricePerGibHour?: number;
  /** What the instance is good for; interactive starts prefer "interactive" instances, batch ones "batch". */
  latencyClass?: LatencyClass;
  /** Free text shown in explanations (e.g. "eu-west-1"); not weighed by the default strategy. */
  region?: string;
  /** The largest session it takes: `compute.cpu` above this skips it. */
  maxCpu?: number;
  /** The largest session it takes: `compute.memory` above this skips it. */
  maxMemoryBytes?: number;
  /**
   * How long one create on this instance may take before it is abandoned (aborted, counted by the
   * breaker, skipped for the next provider); 0: no limit. Absent: providers.yml's
   * `routing.createTimeoutSeconds`, else 10 minutes for remote kinds and no limit for local.
   */
  createTimeoutMs?: number;
}

/** What one session start needs. */
export interface RouteRequest {
  environment: string;
  /** The file's `providers:`, most preferred first; [] means "local". */
  preference: string[];
  compute: { cpu: number; memoryBytes: number; timeoutMs: number };
  latency: LatencyClass;
  /** `compliance.selfHostedOnly`: only providers with `capabilities.selfHosted`. */
  selfHostedOnly: boolean;
  /** `compute.isolation` when the file sets it. */
  isolation?: IsolationTier;
  /** The provider a Paddock warm pool of this environment has ready members on, if any. */
  pooledOn?: string;
  /** How long the session is expected to run, for the cost estimate; absent: `compute.timeoutMs`. */
  expectedDurationMs?: number;
}

/** Circuit breaker state of a provider (breaker.ts). */
export type BreakerState = "closed" | "open" | "half-open";

/** Prices a candidate is costed at, and where they came from. */
export interface Price {
  perVcpuHour: number;
  perGibHour: number;
  /** e.g. "providers.yml" or "default table: E2B list price, 2025-06". */
  source: string;
}

/** One configured provider the environment names, with everything the router knows about it. */
export interface RouteCandidate {
  name: string;
  /** Place in `preference` (0: most preferred). */
  preferenceIndex: number;
  capabilities: ProviderCapabilities;
  routing: ProviderRouting;
  /** Its last health check (cached briefly), or null when it has none yet. */
  health: ProviderHealth | null;
  breaker: BreakerState;
  price: Price;
  /** A Paddock warm pool of this environment exists on it (local pools). */
  paddockPool: boolean;
}

/** One thing weighed about a candidate. `points` adds to its score; `excludes` takes it out. */
export interface RouteFactor {
  name: string;
  /** The value weighed, as shown, e.g. "2 vCPU ≤ max 8" or "$0.12". */
  value: string;
  points: number;
  excludes: boolean;
  note: string;
}

export interface CandidateVerdict {
  provider: string;
  eligible: boolean;
  /** Chosen, a fallback (with its place), or why it was skipped. */
  reason: string;
  score: number;
  /** USD for the expected duration at its prices. */
  estimateUsd: number;
  factors: RouteFactor[];
}

/** A strategy's answer: eligible providers in the order to try, and a verdict for every candidate. */
export interface RouteDecision {
  strategy: string;
  /** Names of eligible candidates, first choice first; failover walks it. Empty: nowhere to run. */
  order: string[];
  /** order[0], or null. */
  chosen: string | null;
  /** One line: why `chosen`, or why nothing. */
  reason: string;
  candidates: CandidateVerdict[];
}

/**
 * A routing strategy. `decide` must be a pure function of its arguments (no clock, no I/O, no
 * randomness): equal inputs give equal decisions, and the explanation is the decision. It must
 * return one verdict per candidate. The router then drops from `order` anything that is not a
 * candidate, whose breaker is open, or that breaks `selfHostedOnly`, whatever the strategy said.
 */
export interface RoutingStrategy {
  readonly name: string;
  decide(request: RouteRequest, candidates: readonly RouteCandidate[]): RouteDecision;
}
