/**
 * Deadlines of one client connection, so that nothing a sandbox opens can be held forever. One
 * timer per connection, re-armed at each phase:
 *
 *   handshake  TLS connections: accepted (or CONNECT answered) → handshake finished
 *   headers    connection start (after TLS) → first request's complete headers
 *   busy       requests in flight: no connection timer (the request's own deadline and the
 *              upstream timeout apply)
 *   idle       kept alive with nothing in flight; at expiry, if bytes arrived meanwhile (a request
 *              has begun), the headers phase starts, else the connection is closed
 *
 * Node's own headersTimeout/requestTimeout are not used: they only run for connections that a
 * listening http.Server tracks, never for the TLS sockets handed to the inner server by hand.
 */
import type net from "node:net";

export type Expired = "handshake" | "headers" | "idle";

export class Deadlines {
  private timer: NodeJS.Timeout | null = null;
  private inflight = 0;
  private closed = false;
  private idleMs: number;

  /**
   * @param raw the TCP connection (its bytesRead tells whether a request began during idle)
   * @param expire called once when a phase's deadline passes; it must close the connection
   */
  constructor(
    private readonly raw: net.Socket,
    private readonly limits: { headersTimeoutMs: number; keepAliveTimeoutMs: number },
    private readonly expire: (phase: Expired) => void,
  ) {
    this.idleMs = limits.keepAliveTimeoutMs;
    raw.once("close", () => this.stop());
  }

  handshake(ms: number): void {
    this.arm(ms, () => this.fire("handshake"));
  }

  headers(): void {
    this.arm(this.limits.headersTimeoutMs, () => this.fire("headers"));
  }

  /** Idle time allowed between requests from now on (a CONNECT tunnel's differs). */
  setIdle(ms: number): void {
    this.idleMs = ms;
  }

  /** A request's headers are complete; its deadline runs until `res` closes. */
  request(res: { once(event: "close", cb: () => void): unknown }): void {
    this.inflight++;
    this.clear();
    res.once("close", () => {
      this.inflight = Math.max(0, this.inflight - 1);
      if (this.inflight === 0) this.idle();
    });
  }

  private idle(): void {
    const mark = this.raw.bytesRead;
    this.arm(this.idleMs, () => {
      if (this.raw.bytesRead !== mark) this.headers();
      else this.fire("idle");
    });
  }

  private fire(phase: Expired): void {
    this.timer = null;
    if (this.closed) return;
    this.stop();
    this.expire(phase);
  }

  private arm(ms: number, cb: () => void): void {
    this.clear();
    if (this.closed || this.raw.destroyed) return;
    this.timer = setTimeout(cb, ms);
    // A connection's deadline must never keep the process alive on its own.
    this.timer.unref();
  }

  private clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** No more deadlines (the connection closed or was taken over). */
  stop(): void {
    this.closed = true;
    this.clear();
  }
}
