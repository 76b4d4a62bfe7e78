/**
 * What the client sends once it is relayed: each message is judged (read-only connections),
 * recorded (through the ResponseTracker, which pairs it with the server's answer) and passed on,
 * or replaced by a stand-in the server will answer with an error at the same place (relay.ts).
 * Pure protocol state: no sockets here, so connection.ts only moves bytes.
 */
import { randomBytes } from "node:crypto";
import { parseMessage, queryMessage, readCString, type ErrorFields, type Frame, type Outbox } from "./messages.ts";
import type { Verdict } from "./readonly.ts";
import { pending, ResponseTracker, type RecordSink } from "./relay.ts";

/** Named prepared statements and portals remembered per connection (for records); the oldest is forgotten past this. */
const MAX_STATEMENTS = 10_000;
/** Statement text kept per prepared statement, for records. */
const MAX_KEPT_TEXT = 8192;

export class FrontendRelay {
  readonly tracker: ResponseTracker;
  private readonly marker = `paddock_refused_${randomBytes(8).toString("hex")}`;
  private readonly statements = new Map<string, { text: string; copy: boolean }>();
  private readonly portals = new Map<string, { text: string; copy: boolean }>();

  constructor(
    sink: RecordSink,
    private readonly readOnly: boolean,
    private readonly secretName: string,
    private readonly analyse: (text: string, readOnly: boolean) => Verdict,
  ) {
    this.tracker = new ResponseTracker(sink, Buffer.from(this.marker));
  }

  private refusal(v: Verdict): ErrorFields {
    if (v.syntaxError) {
      return { severity: "ERROR", code: "42601", message: `paddock: ${v.syntaxError}`, hint: "This connection is read-only, and runs only statements the gateway can parse and check." };
    }
    return {
      severity: "ERROR",
      code: "25006",
      message: `paddock: this session's role cannot write to the database (${this.secretName} is read-only): ${v.refusal}`,
      hint: "Run read-only statements (SELECT, SHOW, EXPLAIN, COPY … TO STDOUT), or ask for a role with write permission on this environment.",
    };
  }

  /** Judge, record and pass on one client message (or its stand-in) to `out`; false after Terminate. */
  onClientFrame(f: Frame, out: Outbox): boolean {
    const tracker = this.tracker;
    const readOnly = this.readOnly;
    const send = (b: Buffer): boolean => {
      out.add(b);
      return true;
    };
    switch (f.type) {
      case 0x51: {
        // Query
        const text = readCString(f.body, 0).value;
        const v = this.analyse(text, readOnly);
        if (readOnly && v.refusal) {
          tracker.owed.push({ kind: "Q", records: [pending("QUERY", text)], refusal: this.refusal(v) });
          return send(queryMessage(this.marker));
        }
        tracker.owed.push({ kind: "Q", records: v.statements.map((s) => pending(s.copy ? "COPY" : "QUERY", s.text)) });
        return send(f.raw);
      }
      case 0x50: {
        // Parse
        const name = readCString(f.body, 0);
        const text = readCString(f.body, name.next).value;
        const v = this.analyse(text, readOnly);
        if (readOnly && v.refusal) {
          tracker.owed.push({ kind: "P", records: [pending("PARSE", text)], refusal: this.refusal(v) });
          return send(parseMessage(name.value, this.marker));
        }
        if (this.statements.size >= MAX_STATEMENTS) this.statements.delete(this.statements.keys().next().value!);
        this.statements.set(name.value, { text: text.slice(0, MAX_KEPT_TEXT), copy: v.statements.some((s) => s.copy) });
        tracker.owed.push({ kind: "P", records: [] });
        return send(f.raw);
      }
      case 0x42: {
        // Bind: remember which statement the portal runs
        const portal = readCString(f.body, 0);
        const statement = readCString(f.body, portal.next).value;
        this.portals.set(portal.value, this.statements.get(statement) ?? { text: "", copy: false });
        if (this.portals.size > MAX_STATEMENTS) this.portals.delete(this.portals.keys().next().value!);
        tracker.owed.push({ kind: "B", records: [] });
        return send(f.raw);
      }
      case 0x45: {
        // Execute
        const s = this.portals.get(readCString(f.body, 0).value) ?? { text: "", copy: false };
        tracker.owed.push({ kind: "E", records: [pending(s.copy ? "COPY" : "EXECUTE", s.text)] });
        return send(f.raw);
      }
      case 0x44: // Describe
      case 0x43: // Close
      case 0x53: // Sync
        tracker.owed.push({ kind: f.type === 0x44 ? "D" : f.type === 0x43 ? "C" : "S", records: [] });
        return send(f.raw);
      case 0x46: // FunctionCall: a function by oid, which no parser can judge
        if (readOnly) {
          tracker.owed.push({ kind: "F", records: [pending("QUERY", "(function call)")], refusal: this.refusal({ statements: [], refusal: "a FunctionCall message runs a function the gateway cannot check" }) });
          return send(queryMessage(this.marker));
        }
        tracker.owed.push({ kind: "F", records: [] });
        return send(f.raw);
      case 0x64: {
        // CopyData
        const rec = tracker.current(tracker.owed[0]);
        if (rec) rec.bytesOut += f.raw.length;
        return send(f.raw);
      }
      case 0x58: // Terminate: pass it on so the server ends cleanly
        out.add(f.raw);
        return false;
      default:
        return send(f.raw);
    }
  }
}
