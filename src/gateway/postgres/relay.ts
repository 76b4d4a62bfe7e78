/**
 * After login, the gateway relays frames both ways and keeps, per connection, the queue of
 * responses the client's messages are owed. That queue is what turns the protocol into records
 * (one per statement, with its CommandComplete tag or SQLSTATE) and what lets a refused statement
 * answer in the right place: a refused Query or Parse is replaced upstream by one whose text is a
 * syntax error carrying a per-connection marker, so the server answers it in order (and, in the
 * extended protocol, skips to the next Sync as it would for any error); the ErrorResponse bearing
 * the marker is swapped for the gateway's own 25006 before the client sees it.
 */
import type { EgressRecord } from "../types.ts";
import { errorResponse, readCString, readErrorFields, type ErrorFields } from "./messages.ts";

/** Statement text kept in a record, at most (never bound values: they travel in Bind, not here). */
export const MAX_RECORDED_STATEMENT_CHARS = 4096;

export interface PendingRecord {
  method: "QUERY" | "EXECUTE" | "PARSE" | "COPY";
  text: string;
  started: number;
  bytesOut: number;
  bytesIn: number;
}

/** What the server owes the client for one message (Sync, Query and FunctionCall end in ReadyForQuery). */
export interface Owed {
  kind: "Q" | "P" | "B" | "E" | "D" | "C" | "S" | "F";
  /** Q: one per statement, in order; E: the execution; P: only when refused. */
  records: (PendingRecord | undefined)[];
  /** The gateway refused this message: the error the client gets instead of the server's. */
  refusal?: ErrorFields;
}

export interface RecordSink {
  base: Pick<EgressRecord, "sessionId" | "host" | "port" | "swapped">;
  onRecord(r: EgressRecord): void;
}

export function pending(method: PendingRecord["method"], text: string): PendingRecord {
  return { method, text, started: Date.now(), bytesOut: 0, bytesIn: 0 };
}

export function emit(sink: RecordSink, p: PendingRecord, outcome: { status: number; decision: "allowed" | "denied"; rule: string; reason?: string }): void {
  const path = p.text.length > MAX_RECORDED_STATEMENT_CHARS ? `${p.text.slice(0, MAX_RECORDED_STATEMENT_CHARS)}… (${p.text.length} characters)` : p.text;
  // Built as one literal (this runs once per statement, on the hot path).
  const record: EgressRecord = {
    sessionId: sink.base.sessionId,
    time: new Date(p.started).toISOString(),
    method: p.method,
    host: sink.base.host,
    port: sink.base.port,
    path,
    status: outcome.status,
    bytesOut: p.bytesOut,
    bytesIn: p.bytesIn,
    durationMs: Date.now() - p.started,
    swapped: sink.base.swapped.slice(),
    decision: outcome.decision,
    rule: outcome.rule,
  };
  if (outcome.reason !== undefined) record.reason = outcome.reason;
  sink.onRecord(record);
}

/** The SQLSTATE as a record status: its digits when it is all digits (25006), else 0 with it in `reason`. */
export function statusOf(sqlstate: string): number {
  return /^\d{5}$/.test(sqlstate) ? Number(sqlstate) : 0;
}

/**
 * Tracks owed responses from upstream frames. `onUpstreamFrame` returns the bytes to send the
 * client in place of the frame (usually the frame itself).
 */
export class ResponseTracker {
  readonly owed: Owed[] = [];
  /** Index of the statement of the head Query now running. */
  private statementIndex = 0;

  constructor(private sink: RecordSink, private marker: Buffer) {}

  onUpstreamFrame(type: number, body: Buffer, raw: Buffer): Buffer {
    const head = this.owed[0];
    switch (type) {
      case 0x31: // ParseComplete
      case 0x32: // BindComplete
      case 0x33: // CloseComplete
        if (head && (head.kind === "P" || head.kind === "B" || head.kind === "C")) this.owed.shift();
        return raw;
      case 0x54: // RowDescription
      case 0x6e: // NoData
        if (head?.kind === "D") this.owed.shift();
        return raw;
      case 0x43: // CommandComplete
      case 0x49: // EmptyQueryResponse
      case 0x73: {
        // PortalSuspended
        const tag = type === 0x43 ? readCString(body, 0).value : type === 0x73 ? "suspended" : "empty";
        this.complete(head, { status: 0, decision: "allowed", rule: "database.allowed", reason: tag });
        if (head?.kind === "E") this.owed.shift();
        return raw;
      }
      case 0x44: // DataRow
      case 0x64: {
        // CopyData
        const rec = this.current(head);
        if (rec) rec.bytesIn += raw.length;
        return raw;
      }
      case 0x45:
        return this.onError(head, body, raw);
      case 0x5a: // ReadyForQuery
        while (this.owed.length > 0) {
          const item = this.owed.shift()!;
          this.abandon(item);
          if (item.kind === "S" || item.kind === "Q" || item.kind === "F") break;
        }
        this.statementIndex = 0;
        return raw;
      default:
        return raw;
    }
  }

  /** The record now receiving bytes (a Query's current statement, or an Execute). */
  current(head: Owed | undefined): PendingRecord | undefined {
    if (!head) return undefined;
    if (head.kind === "Q") return head.records[this.statementIndex];
    return head.kind === "E" ? head.records[0] : undefined;
  }

  private complete(head: Owed | undefined, outcome: Parameters<typeof emit>[2]): void {
    const rec = this.current(head);
    if (!rec) return;
    emit(this.sink, rec, outcome);
    if (head!.kind === "Q") {
      head!.records[this.statementIndex] = undefined;
      this.statementIndex++;
    } else head!.records.length = 0;
  }

  private onError(head: Owed | undefined, body: Buffer, raw: Buffer): Buffer {
    const ours = head?.refusal && body.includes(this.marker);
    if (ours) {
      for (const r of head.records) if (r) emit(this.sink, r, { status: statusOf(head.refusal!.code), decision: "denied", rule: "database.read-only", reason: head.refusal!.message });
      head.records.length = 0;
    } else {
      const code = readErrorFields(body).get("C") ?? "";
      this.complete(head, { status: statusOf(code), decision: "allowed", rule: "database.allowed", reason: `SQLSTATE ${code}` });
    }
    // The server skips to the next Sync after an error in the extended protocol: drop what it
    // will never answer (a Query's remaining statements are dropped when ReadyForQuery comes).
    if (head && head.kind !== "Q" && head.kind !== "F" && head.kind !== "S") {
      this.abandon(this.owed.shift()!);
      while (this.owed.length > 0 && this.owed[0]!.kind !== "S") this.abandon(this.owed.shift()!);
    }
    return ours ? errorResponse(head!.refusal!) : raw;
  }

  /** Statements that never ran (an earlier one failed): recorded as such. */
  private abandon(item: Owed): void {
    for (const r of item.records) if (r) emit(this.sink, r, { status: 0, decision: "allowed", rule: "database.allowed", reason: "not executed: an earlier statement failed" });
    item.records.length = 0;
  }
}
