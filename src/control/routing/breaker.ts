/**
 * A circuit breaker per provider: after `threshold` create failures in a row it opens (routing
 * skips the provider), after `coolDownMs` it half-opens (the next start may try it once more,
 * with a penalty in the default strategy), and a success closes it. A failure while half-open opens it again for another
 * cool-down. One trial at a time: while it runs (`trial`) the breaker reads open, so concurrent
 * starts skip the provider instead of all trying it; a trial that never ends frees the breaker
 * after `trialLimitMs`. Time comes from `now` so tests drive it without waiting.
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
  /** When the half-open trial in progress started (ms), or null. */
  trialAt: number | null;
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
    if (this.now() - e.openedAt < this.coolDownMs) return "open";
    return e.trialAt !== null && this.now() - e.trialAt < this.trialLimitMs ? "open" : "half-open";
  }

  /** A half-open breaker's one trial starts (a create on the provider); others read open until it ends. */
  trial(provider: string): void {
    const e = this.entries.get(provider);
    if (e && this.state(provider) === "half-open") e.trialAt = this.now();
  }

  /** How long a trial may run before the breaker half-opens again (a create that hangs holds no one off for ever). */
  get trialLimitMs(): number {
    return Math.max(this.coolDownMs, 60_000);
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
    const e = this.entries.get(provider) ?? { failures: 0, openedAt: null, lastError: null, trialAt: null };
    const wasHalfOpen = this.state(provider) === "half-open" || e.trialAt !== null;
    e.failures += 1;
    e.lastError = error;
    e.trialAt = null;
    // A failed trial re-opens at once; a closed breaker opens at the threshold.
    if (wasHalfOpen || e.failures >= this.threshold) e.openedAt = this.now();
    this.entries.set(provider, e);
  }

  /** Forget a provider (removed from the installation). */
  forget(provider: string): void {
    this.entries.delete(provider);
  }
}
