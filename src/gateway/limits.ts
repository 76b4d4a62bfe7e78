/**
 * Per-session limits (GatewayLimits in types.ts): their defaults, what a session currently uses
 * against them, and records of refusals that are written once per burst. Without these one sandbox
 * could hold every socket, timer and megabyte of the gateway, and so every other session's egress.
 */
import { invalid } from "../core/errors.ts";
import type { EgressRecord, GatewayLimits } from "./types.ts";

const MiB = 1024 * 1024;

/** The defaults (docs/gateway.md, "Limits", says why each value). */
export const DEFAULT_LIMITS: Readonly<GatewayLimits> = Object.freeze({
  maxConnectionsPerSession: 256,
  tlsHandshakeTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 60_000,
  tunnelIdleTimeoutMs: 60_000,
  maxBufferedBodyBytes: 32 * MiB,
  maxBufferedBodyBytesPerSession: 64 * MiB,
  leafCacheSize: 256,
});

/** The defaults with `over` applied. Throws invalid_argument for a value that is not a positive integer. */
export function resolveLimits(over: Partial<GatewayLimits> = {}): GatewayLimits {
  const out: GatewayLimits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof GatewayLimits)[]) {
    const v = over[key];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v <= 0) throw invalid(`gateway limit ${key} must be a positive integer, got ${JSON.stringify(v)}`);
    out[key] = v;
  }
  return out;
}

/** Time window in which repeated refusals of one kind are summed into one record. */
export const BURST_WINDOW_MS = 10_000;

interface Burst {
  first: EgressRecord;
  suppressed: number;
  timer: NodeJS.Timeout;
  write: (r: EgressRecord) => void;
}

/**
 * Refusals that an attacker can repeat at will (connections over the cap, handshake and header
 * timeouts) are recorded once per burst: the first at once, then at most one summary per window
 * saying how many more there were. Records must not become the denial of service.
 */
export class Bursts {
  private readonly open = new Map<string, Burst>();

  constructor(private readonly windowMs = BURST_WINDOW_MS) {}

  note(r: EgressRecord, write: (r: EgressRecord) => void): void {
    const burst = this.open.get(r.rule);
    if (burst) {
      burst.suppressed++;
      return;
    }
    write(r);
    this.start(r, write);
  }

  private start(first: EgressRecord, write: (r: EgressRecord) => void): void {
    const burst: Burst = { first, suppressed: 0, write, timer: setTimeout(() => this.flush(first.rule, true), this.windowMs) };
    burst.timer.unref();
    this.open.set(first.rule, burst);
  }

  private flush(rule: string, again: boolean): void {
    const burst = this.open.get(rule);
    if (!burst) return;
    clearTimeout(burst.timer);
    this.open.delete(rule);
    if (burst.suppressed === 0) return;
    const summary: EgressRecord = { ...burst.first, time: new Date().toISOString(), durationMs: 0, reason: `${burst.first.reason ?? "refused"} (${burst.suppressed} more since the last record of this kind)` };
    burst.write(summary);
    if (again) this.start(burst.first, burst.write);
  }

  /** Write the pending summaries now and stop every timer (the session ended). */
  close(): void {
    for (const rule of [...this.open.keys()]) this.flush(rule, false);
  }
}

/** What one session currently holds of the gateway, counted against GatewayLimits. */
export class SessionUsage {
  connections = 0;
  bufferedBytes = 0;
  readonly bursts = new Bursts();

  constructor(private readonly limits: GatewayLimits) {}

  /** Take one connection slot; false when the session is at its cap. */
  openConnection(): boolean {
    if (this.connections >= this.limits.maxConnectionsPerSession) return false;
    this.connections++;
    return true;
  }

  closeConnection(): void {
    this.connections = Math.max(0, this.connections - 1);
  }

  /** Reserve `n` bytes of body buffer; false when that would pass the session's budget. */
  reserve(n: number): boolean {
    if (this.bufferedBytes + n > this.limits.maxBufferedBodyBytesPerSession) return false;
    this.bufferedBytes += n;
    return true;
  }

  release(n: number): void {
    this.bufferedBytes = Math.max(0, this.bufferedBytes - n);
  }
}
