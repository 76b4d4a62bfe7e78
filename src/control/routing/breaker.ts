/**
 * A circuit breaker per provider: after `threshold` create failures in a row it opens (routing
 * skips the provider), after `coolDownMs` it half-opens (the next start may try it once more,
 * with a penalty in the default strategy), and a success closes it. A failure while half-open opens it again for another
 * cool-down. Time comes from `now` so tests drive it without waiting.
 */
import type { BreakerState } from "./types.ts";

export interface BreakerOptions {
  /** Consecutive create failures that open the breaker; default 3. */
  threshold?: number;
  /** How long it stays open before a trial; default 30 s. */
  coolDownMs?: number;
  now?: () => number;
}

interface Entry {
  failures: number;
  /** When it opened (ms), or null while closed. */
  openedAt: number | null;
  lastError: string | null;
}

export class CircuitBreakers {
  readonly threshold: number;
  readonly coolDownMs: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();

  constructor(opts: BreakerOptions = {}) {
    this.threshold = Math.max(1, opts.threshold ?? 3);
    this.coolDownMs = Math.max(0, opts.coolDownMs ?? 30_000);
    this.now = opts.now ?? Date.now;
  }

  state(provider: string): BreakerState {
    const e = this.entries.get(provider);
    if (!e || e.openedAt === null) return "closed";
    return this.now() - e.openedAt >= this.coolDownMs ? "half-open" : "open";
  }

  /** For explanations: failures in a row, the last error, and when an open breaker half-opens. */
  describe(provider: string): { state: BreakerState; failures: number; lastError: string | null; retryAt: string | null } {
    const e = this.entries.get(provider);
    const state = this.state(provider);
    return {
      state,
      failures: e?.failures ?? 0,
      lastError: e?.lastError ?? null,
      retryAt: state === "open" && e?.openedAt != null ? new Date(e.openedAt + this.coolDownMs).toISOString() : null,
    };
  }

  success(provider: string): void {
    this.entries.delete(provider);
  }

  failure(provider: string, error: string): void {
    const e = this.entries.get(provider) ?? { failures: 0, openedAt: null, lastError: null };
    const wasHalfOpen = this.state(provider) === "half-open";
    e.failures += 1;
    e.lastError = error;
    // A failed trial re-opens at once; a closed breaker opens at the threshold.
    if (wasHalfOpen || e.failures >= this.threshold) e.openedAt = this.now();
    this.entries.set(provider, e);
  }

  /** Forget a provider (removed from the installation). */
  forget(provider: string): void {
    this.entries.delete(provider);
  }
}
