/**
 * Postgres wire messages: the bounded frame splitter both sides of the gateway read with, and the
 * few backend messages the gateway composes itself (authentication, errors, BackendKeyData).
 * Message bodies are written with pg-protocol's `Writer` (the same serializer node-postgres uses);
 * pg-protocol's own `Parser` has no size bound and decodes every DataRow into strings, so the
 * splitting is done here: it only reads the 5-byte header, refuses a length over the limit before
 * allocating anything, and hands each whole frame on as bytes (relayed unchanged).
 */
import { Writer } from "pg-protocol/dist/buffer-writer.js";

/** Protocol request codes carried in the first 8 bytes of an untyped startup-phase packet. */
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** Protocol 3.0 as one int32 (major << 16 | minor). */
export const PROTOCOL_3 = 3 << 16;

/** One whole frame: `type` is the first byte (0 for startup-phase packets, which have none). */
export interface Frame {
  type: number;
  /** The body, without type byte and length. */
  body: Buffer;
  /** The frame as it came, header included (relayed as is). */
  raw: Buffer;
}

export class FrameTooLarge extends Error {
  constructor(readonly length: number, readonly max: number) {
    super(`message of ${length} bytes is over the limit of ${max} bytes`);
  }
}

/**
 * Splits a byte stream into frames. `typed: false` reads startup-phase packets (int32 length
 * including itself, then the body); `typed: true` reads regular messages (type byte, int32 length).
 * A length below its own size or above `maxBytes` throws `FrameTooLarge`/`Error` at once, before
 * any allocation: a 1 GiB length costs nothing.
 */
export class FrameSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(public typed: boolean, public maxBytes: number) {}

  /** Bytes received but not yet part of a whole frame. */
  get buffered(): number {
    return this.pendingBytes;
  }

  /** Append `chunk` and return every frame now complete, in order. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    const frames: Frame[] = [];
    while (true) {
      const frame = this.next();
      if (!frame) return frames;
      frames.push(frame);
      // A startup-phase packet may switch the stream to typed messages (or to TLS): the caller
      // decides after each one, so hand back at most one untyped frame per call.
      if (frame.type === 0) return frames;
    }
  }

  /** Take the bytes not yet framed (used when the stream is handed to TLS or relayed raw). */
  drain(): Buffer {
    const rest = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    return rest;
  }

  private next(): Frame | null {
    const headerSize = this.typed ? 5 : 4;
    if (this.pendingBytes < headerSize) return null;
    const head = this.peek(headerSize);
    const length = head.readUInt32BE(this.typed ? 1 : 0);
    const minimum = this.typed ? 4 : 8;
    if (length < minimum) throw new Error(`malformed message: length ${length} is below ${minimum}`);
    if (length > this.maxBytes) throw new FrameTooLarge(length, this.maxBytes);
    const total = length + (this.typed ? 1 : 0);
    if (this.pendingBytes < total) return null;
    const raw = this.take(total);
    return { type: this.typed ? raw[0]! : 0, body: raw.subarray(headerSize), raw };
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length < n) this.pending = [Buffer.concat(this.pending)];
    return this.pending[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (this.pending[0]!.length < n) this.pending = [Buffer.concat(this.pending)];
    const first = this.pending[0]!;
    const out = first.subarray(0, n);
    if (first.length === n) this.pending.shift();
    else this.pending[0] = first.subarray(n);
    this.pendingBytes -= n;
    return out;
  }
}

/** A NUL-terminated string at `offset`; throws on a missing terminator (malformed message). */
export function readCString(buf: Buffer, offset: number): { value: string; next: number } {
  const end = buf.indexOf(0, offset);
  if (end < 0) throw new Error("malformed message: unterminated string");
  return { value: buf.toString("utf8", offset, end), next: end + 1 };
}

/** Fields of an ErrorResponse or NoticeResponse body, by their one-letter code (S, C, M, D, H…). */
export function readErrorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const code = String.fromCharCode(body[at]!);
    const { value, next } = readCString(body, at + 1);
    fields.set(code, value);
    at = next;
  }
  return fields;
}

export interface ErrorFields {
  severity: "ERROR" | "FATAL";
  /** SQLSTATE, e.g. 28P01. */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** An ErrorResponse composed by the gateway (never with a secret in it). */
export function errorResponse(e: ErrorFields): Buffer {
  const w = new Writer();
  const clean = (text: string): string => text.replace(/\0/g, "");
  w.addString("S").addCString(e.severity);
  w.addString("V").addCString(e.severity);
  w.addString("C").addCString(e.code);
  w.addString("M").addCString(clean(e.message));
  if (e.detail) w.addString("D").addCString(clean(e.detail));
  if (e.hint) w.addString("H").addCString(clean(e.hint));
  w.addString("\0");
  return w.flush(0x45);
}

/** AuthenticationSASL offering SCRAM-SHA-256 only. */
export function authSasl(): Buffer {
  return new Writer().addInt32(10).addCString("SCRAM-SHA-256").addCString("").flush(0x52);
}

export function authSaslContinue(data: string): Buffer {
  return new Writer().addInt32(11).addString(data).flush(0x52);
}

export function authSaslFinal(data: string): Buffer {
  return new Writer().addInt32(12).addString(data).flush(0x52);
}

export function authOk(): Buffer {
  return new Writer().addInt32(0).flush(0x52);
}

export function backendKeyData(pid: number, key: number): Buffer {
  return new Writer().addInt32(pid).addInt32(key).flush(0x4b);
}

/** NegotiateProtocolVersion: the newest minor version of 3 served (0) and the options not understood. */
export function negotiateProtocolVersion(unrecognised: string[]): Buffer {
  const w = new Writer().addInt32(0).addInt32(unrecognised.length);
  for (const name of unrecognised) w.addCString(name);
  return w.flush(0x76);
}

/** A CancelRequest packet (untyped, 16 bytes). */
export function cancelRequest(pid: number, key: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(16, 0);
  b.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(key, 12);
  return b;
}

/** Query ('Q') message. */
export function queryMessage(text: string): Buffer {
  return new Writer().addCString(text).flush(0x51);
}

/** Parse ('P') message with no parameter types. */
export function parseMessage(name: string, text: string): Buffer {
  return new Writer().addCString(name).addCString(text).addInt16(0).flush(0x50);
}

/**
 * Collects the buffers one incoming chunk produces and writes them as few writes as possible:
 * frames cut from the same chunk are adjacent in memory and are written as one slice, so a
 * relayed chunk costs one syscall, not one per message.
 */
export class Outbox {
  private parts: Buffer[] = [];

  add(b: Buffer): void {
    const last = this.parts[this.parts.length - 1];
    if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) {
      this.parts[this.parts.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
    } else this.parts.push(b);
  }

  /** Write everything to `to`; resolves write()'s verdict (false: wait for 'drain'). */
  flush(to: { write(b: Buffer): boolean; cork(): void; uncork(): void }): boolean {
    const parts = this.parts;
    this.parts = [];
    if (parts.length === 0) return true;
    if (parts.length === 1) return to.write(parts[0]!);
    to.cork();
    let ok = true;
    for (const p of parts) ok = to.write(p);
    to.uncork();
    return ok;
  }
}
