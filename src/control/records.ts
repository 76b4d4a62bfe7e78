import type { Store } from "../core/index.ts";
import type { EgressRecord } from "../gateway/index.ts";

/**
 * Egress records arrive one per request on the gateway's hot path; they are written to the store
 * in small batches (one transaction each) right after, so recording costs the request nothing.
 */
export class RecordWriter {
  private pending: EgressRecord[] = [];
  private scheduled = false;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly log: (line: string) => void,
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
      );
    }
    return this.writing;
  }
}
