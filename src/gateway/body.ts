/**
 * Request bodies. A body is buffered only when the gateway must read it before forwarding (a
 * secret may be swapped into it, a git push is checked, a paddock.internal call); each buffered
 * byte counts against the session's budget (limits.ts), so one sandbox cannot fill the gateway's
 * memory. Every other body is streamed upstream with backpressure and its framing kept: a
 * Content-Length body keeps its length, a chunked one stays chunked.
 */
import type { ClientRequest, IncomingMessage } from "node:http";
import { headerValues } from "./framing.ts";
import type { SessionUsage } from "./limits.ts";

/** How the client framed its body (framing.ts has already refused ambiguous framings). */
export type BodyFraming = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" };

export function bodyFraming(rawHeaders: string[]): BodyFraming {
  const cl = headerValues(rawHeaders, "content-length")[0];
  if (cl !== undefined) return { kind: "length", length: Number(cl.trim()) };
  if (headerValues(rawHeaders, "transfer-encoding").length > 0) return { kind: "chunked" };
  return { kind: "none" };
}

export interface Refusal {
  status: number;
  rule: string;
  reason: string;
}

export interface Buffered {
  body: Buffer;
  /** Give the bytes back to the session's budget (idempotent). */
  release(): void;
}

export interface BufferOptions {
  /** Largest body accepted; beyond it 413. */
  max: number;
  /** Why the body must be read, for the 413 message ("a secret may be swapped into it"). */
  why: string;
  usage: SessionUsage;
  budget: number;
  /** Aborted when the request's deadline passes. */
  signal: AbortSignal;
  timeoutMs: number;
}

const MiB = 1024 * 1024;
const mib = (n: number): string => `${Math.round((n / MiB) * 10) / 10} MiB`;

/** Read the whole body within the limits; resolves the body or why not. Never rejects. */
export function bufferBody(req: IncomingMessage, o: BufferOptions): Promise<Buffered | Refusal> {
  const tooLarge: Refusal = { status: 413, rule: "gateway.body-limit", reason: `request bodies over ${mib(o.max)} are refused here: the gateway must read this one (${o.why})` };
  const overBudget = (): Refusal => ({
    status: 503,
    rule: "gateway.limits.body-memory",
    reason: `this session already has ${mib(o.usage.bufferedBytes)} of request bodies held in the gateway (limit ${mib(o.budget)}); retry when earlier uploads have finished`,
  });
  const timedOut: Refusal = { status: 408, rule: "gateway.limits.request-timeout", reason: `the request body did not arrive within ${o.timeoutMs} ms` };
  const broken: Refusal = { status: 400, rule: "gateway.framing", reason: "the request body broke off" };
  const framing = bodyFraming(req.rawHeaders);
  if (framing.kind === "length" && framing.length > o.max) return Promise.resolve(tooLarge);
  if (o.signal.aborted) return Promise.resolve(timedOut);
  let reserved = 0;
  const reserve = (n: number): boolean => {
    if (!o.usage.reserve(n)) return false;
    reserved += n;
    return true;
  };
  // A declared length is reserved up front: refused before a byte is held.
  if (framing.kind === "length" && !reserve(framing.length)) return Promise.resolve(overBudget());
  return new Promise((resolve) => {
    // A declared length is read straight into one buffer: no second copy of the whole body.
    const whole = framing.kind === "length" ? Buffer.allocUnsafe(framing.length) : null;
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (r: Buffered | Refusal): void => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onBroken);
      req.off("close", onBroken);
      o.signal.removeEventListener("abort", onAbort);
      if ("status" in r) {
        // The rest is left unread: the refusal closes the connection.
        req.pause();
        o.usage.release(reserved);
        reserved = 0;
      }
      resolve(r);
    };
    const onData = (c: Buffer): void => {
      if (whole) {
        // The parser never delivers more than Content-Length; checked anyway.
        if (size + c.length > whole.length) return settle(broken);
        c.copy(whole, size);
        size += c.length;
        return;
      }
      size += c.length;
      if (size > o.max) return settle(tooLarge);
      if (!reserve(c.length)) return settle(overBudget());
      chunks.push(c);
    };
    const onEnd = (): void => {
      let held = reserved;
      settle({
        body: whole ? whole.subarray(0, size) : Buffer.concat(chunks, size),
        release: () => {
          o.usage.release(held);
          held = 0;
        },
      });
    };
    const onBroken = (): void => settle(broken);
    const onAbort = (): void => settle(timedOut);
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onBroken);
    req.on("close", onBroken);
    o.signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Headers that frame a streamed body upstream the way the client framed it. */
export function streamFraming(framing: BodyFraming, method: string): [string, string][] {
  switch (framing.kind) {
    case "length":
      return [["Content-Length", String(framing.length)]];
    case "chunked":
      // Explicit: Node would otherwise send a GET's body unframed (delimited by closing).
      return [["Transfer-Encoding", "chunked"]];
    case "none":
      return ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"].includes(method) ? [] : [["Content-Length", "0"]];
  }
}

/**
 * Stream `req`'s body into `up` with backpressure. `broke` is called when the client's body stops
 * short (the upstream request is then destroyed: it never sees a complete request). Returns the
 * bytes forwarded so far, and a stop function for when the exchange ends early.
 */
export function streamBody(req: IncomingMessage, up: ClientRequest, framing: BodyFraming, broke: () => void): { bytes(): number; stop(): void } {
  let bytes = 0;
  let stopped = false;
  if (framing.kind === "none") {
    up.end();
    return { bytes: () => 0, stop: () => undefined };
  }
  const onData = (c: Buffer): void => {
    bytes += c.length;
    if (!up.write(c)) req.pause();
  };
  const onDrain = (): void => void req.resume();
  const onEnd = (): void => void up.end();
  const onClose = (): void => {
    if (!req.complete && !stopped) broke();
  };
  const stop = (): void => {
    stopped = true;
    req.off("data", onData);
    req.off("end", onEnd);
    req.off("close", onClose);
    up.off("drain", onDrain);
  };
  req.on("data", onData);
  req.on("end", onEnd);
  req.on("close", onClose);
  req.on("error", () => undefined); // reported through "close"
  up.on("drain", onDrain);
  return { bytes: () => bytes, stop };
}
