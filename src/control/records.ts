import type { Session, Store } from "../core/index.ts";
import type { EgressRecord } from "../gateway/index.ts";
import type { AuditEntry, AuditLog } from "../guard/index.ts";

/**
 * Egress records arrive one per request on the gateway's hot path; they are written to the store
 * in small batches (one transaction each) right after, so recording costs the request nothing.
 */
export class RecordWriter {
  private pending: EgressRecord[] = [];
  private scheduled = false;
  private writing: Promise<void> = Promise.resolve();

  /** Who acts in each session, for the audit: looked up once per session. */
  private readonly actors = new Map<string, Pick<Session, "startedBy" | "agent" | "environment"> | null>();

  constructor(
    private readonly store: Store,
    private readonly log: (line: string) => void,
    private readonly audit: AuditLog | null = null,
  ) {}

  push(r: EgressRecord): void {
    this.pending.push(r);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /** Write what is pending; resolves when everything pushed so far is stored. */
  flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    if (batch.length) {
      this.writing = this.writing.then(() =>
        this.store.addEgressRecords(batch).catch((err: unknown) => this.log(`could not store ${batch.length} egress records: ${(err as Error).message}`)),
      ).then(() => this.auditBatch(batch));
    }
    return this.writing;
  }

  /** Every gateway decision (and database statement) is also an audit record: the host, the rule, the secrets used (names only). */
  private async auditBatch(batch: EgressRecord[]): Promise<void> {
    if (!this.audit) return;
    const entries: AuditEntry[] = [];
    for (const r of batch) {
      if (!this.actors.has(r.sessionId)) this.actors.set(r.sessionId, await this.store.getSession(r.sessionId).catch(() => null));
      const s = this.actors.get(r.sessionId) ?? null;
      const actorKind = s?.agent ? ("agent" as const) : s ? ("human" as const) : ("system" as const);
      // A database statement is audited as one: its text (never bound values: the gateway records
      // none) and the secret whose connection ran it; the audit scrubs secret values all the same.
      const database = r.protocol === "postgres";
      entries.push({
        time: r.time, actor: s ? (s.agent ?? s.startedBy) : "build", actorKind, onBehalfOf: s?.agent ? s.startedBy : null,
        action: database ? "database.statement" : "egress",
        target: database ? `${r.method} postgres://${r.host}:${r.port} ${r.path}` : `${r.method} ${r.host}:${r.port}${r.path}`,
        environment: s?.environment ?? null, sessionId: r.sessionId,
        decision: r.decision, rule: r.rule, detail: { status: r.status, secrets: r.swapped, ...(r.reason ? { reason: r.reason } : {}) },
      });
    }
    await this.audit.append(...entries).catch((err: unknown) => this.log(`could not audit ${entries.length} egress decisions: ${(err as Error).message}`));
  }
}
