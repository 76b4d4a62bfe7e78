/**
 * Routing (docs/routing.md): which provider a session runs on, and why. One public entry for
 * the control plane: the strategy contract, the default strategy, prices, breakers, the router.
 */
export type { BreakerState, CandidateVerdict, LatencyClass, Price, ProviderRouting, RouteCandidate, RouteDecision, RouteFactor, RouteRequest, RoutingStrategy } from "./types.ts";
export { defaultStrategy, WEIGHTS } from "./default-strategy.ts";
export { DEFAULT_PRICES, costUsd, formatUsd, priceOf } from "./prices.ts";
export { CircuitBreakers, type BreakerOptions } from "./breaker.ts";
export { Router, enforce, unconfigured, type RouterOptions } from "./router.ts";
export { loadStrategy } from "./load.ts";
export { scrubUrlCredentials } from "./scrub.ts";
