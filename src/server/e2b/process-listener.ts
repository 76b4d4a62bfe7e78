/**
 * One stream (an envd Start or Connect) following an E2B process: its events are written in
 * order, one at a time, each after the connection took the one before (backpressure), with
 * envd's keepalive event after each quiet interval. `unread` tells the process how far behind
 * this client is, for output flow control (process-table.ts).
 */
import { ConnectError, type ConnectStream } from "./connect.ts";
import type { ProcessEvent } from "./process-messages.ts";

/** One stream (Start or Connect) receiving a process's events. */
export class Listener {
  #unread = 0;
  #keepalive: NodeJS.Timeout | null = null;
  readonly done: Promise<void>;
  #resolve!: () => void;
  #reject!: (err: unknown) => void;
  #closed = false;
  readonly #queue: ({ event: ProcessEvent; size: number; last: boolean } | { error: unknown })[] = [];
  #sending = false;

  constructor(
    private readonly stream: ConnectStream,
    private readonly keepaliveMs: number,
    private readonly onFlow: () => void,
    /** Asked at each keepalive: false ends this stream `unauthenticated` (its principal was disabled); the process goes on. */
    private readonly stillAuthorised: () => Promise<boolean> = async () => true,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    stream.signal.addEventListener("abort", () => this.close(), { once: true });
    this.#arm();
  }

  get unread(): number {
    return this.#unread;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queue one event; they are written in order, one at a time. `last` ends this listener once it is written. */
  send(event: ProcessEvent, size: number, last = false): void {
    if (this.#closed) return;
    this.#unread += size;
    this.#queue.push({ event, size, last });
    this.#arm();
    void this.#pump();
  }

  /** One write in flight: the next waits for the socket to take it (the connection's backpressure). */
  async #pump(): Promise<void> {
    if (this.#sending) return;
    this.#sending = true;
    try {
      for (let item = this.#queue.shift(); item && !this.#closed; item = this.#queue.shift()) {
        if ("error" in item) {
          this.#stop();
          this.#reject(item.error);
          break;
        }
        // StartResponse and ConnectResponse both wrap the event: {"event": {"data": …}}.
        await this.stream.send({ event: item.event });
        if (this.#closed) break;
        this.#unread -= item.size;
        this.onFlow();
        if (item.last) this.close();
      }
    } catch {
      this.close(); // the client went away
    } finally {
      this.#sending = false;
    }
  }

  /** End this listener with `err` (the stream's error), after what is queued before it. */
  fail(err: unknown): void {
    if (this.#closed) return;
    this.#queue.push({ error: err });
    void this.#pump();
  }

  close(): void {
    if (this.#closed) return;
    this.#stop();
    this.#resolve();
  }

  #stop(): void {
    this.#closed = true;
    this.#unread = 0;
    this.#queue.length = 0;
    if (this.#keepalive) clearTimeout(this.#keepalive);
    this.onFlow();
  }

  /** A stream outlives its authentication: at each keepalive it ends once its principal is disabled. */
  async #keepaliveTick(): Promise<void> {
    const allowed = await this.stillAuthorised().catch(() => false);
    if (this.#closed) return;
    if (!allowed) return this.fail(new ConnectError("unauthenticated", "this stream's principal was disabled; the process goes on"));
    this.send({ keepalive: {} }, 0);
  }

  /** envd's keepalive: an empty event after each quiet interval, so proxies keep the stream. */
  #arm(): void {
    if (this.#keepalive) clearTimeout(this.#keepalive);
    if (this.#closed) return;
    this.#keepalive = setTimeout(() => void this.#keepaliveTick(), this.keepaliveMs);
    this.#keepalive.unref();
  }
}
