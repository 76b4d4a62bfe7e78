/**
 * The audit log: append-only, hash-chained records of who did what. Each record's hash is an
 * HMAC over the previous hash and the record, keyed by a key derived from the vault key, which the
 * database never holds: someone who can edit the database can neither alter, remove nor insert a
 * record without `verify` noticing. The newest (seq, hash) is also written to `audit.head` beside
 * the database, so cutting records off the end is noticed too.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import type { AuditInput, AuditQuery, AuditRecord, Store } from "../core/index.ts";

export interface AuditProblem {
  seq: number;
  problem: string;
}

export interface AuditVerification {
  ok: boolean;
  records: number;
  lastSeq: number;
  problems: AuditProblem[];
}

export type AuditEntry = Omit<AuditInput, "time" | "onBehalfOf" | "environment" | "sessionId" | "rule" | "detail"> &
  Partial<Pick<AuditInput, "time" | "onBehalfOf" | "environment" | "sessionId" | "rule" | "detail">>;

const PAGE = 1000;

export class AuditLog {
  #headWrite: Promise<void> = Promise.resolve();
  #scrubFor: { values: string[]; scrub: ReturnType<typeof redactor> } | null = null;

  /**
   * `key`: 32 bytes derived from the vault key; `headPath`: where the newest seq and hash are kept;
   * `secretValues`: every secret value, so one typed into a command line is redacted before it is
   * written (invariant 4: no secret value in any audit record).
   */
  constructor(
    private readonly store: Store,
    private readonly key: Buffer,
    private readonly headPath: string,
    private readonly secretValues: () => Promise<string[]> = async () => [],
  ) {}

  /** Append records in order. Rejects when the store cannot write: callers fail closed on it. */
  async append(...entries: AuditEntry[]): Promise<AuditRecord[]> {
    const values = await this.secretValues();
    // The redactor is rebuilt only when the list of values is a new one (the caller caches it).
    if (this.#scrubFor?.values !== values) this.#scrubFor = { values, scrub: redactor(values) };
    const scrub = this.#scrubFor.scrub;
    const inputs: AuditInput[] = entries.map((e) => scrub({
      time: e.time ?? new Date().toISOString(),
      actor: e.actor,
      actorKind: e.actorKind,
      onBehalfOf: e.onBehalfOf ?? null,
      action: e.action,
      target: e.target,
      environment: e.environment ?? null,
      sessionId: e.sessionId ?? null,
      decision: e.decision,
      rule: e.rule ?? null,
      detail: e.detail ?? {},
    }));
    const out = await this.store.appendAudit(inputs, (prev, r) => this.hash(prev, r));
    const last = out.at(-1);
    if (last) this.#writeHead(last);
    return out;
  }

  list(query: AuditQuery): Promise<AuditRecord[]> {
    return this.store.listAudit(query);
  }

  /** Walk the whole chain: every hash recomputed, every link and sequence number checked, the head compared. */
  async verify(): Promise<AuditVerification> {
    await this.#headWrite;
    const problems: AuditProblem[] = [];
    let prev = "";
    let expected = 1;
    let count = 0;
    for (let after = 0; ; ) {
      const page = await this.store.listAudit({ afterSeq: after, limit: PAGE });
      for (const r of page) {
        count++;
        if (r.seq !== expected) problems.push({ seq: r.seq, problem: `expected record ${expected} next: ${r.seq - expected} record(s) missing before it` });
        if (r.prevHash !== prev) problems.push({ seq: r.seq, problem: "does not link to the record before it (prev_hash differs)" });
        if (!sameHex(this.hash(r.prevHash, r), r.hash)) problems.push({ seq: r.seq, problem: "content changed after it was written (hash mismatch)" });
        prev = r.hash;
        expected = r.seq + 1;
        after = r.seq;
      }
      if (page.length < PAGE) break;
    }
    const head = await this.#readHead();
    if (head && head.seq >= expected) problems.push({ seq: head.seq, problem: `the log ends at record ${expected - 1} but record ${head.seq} was written: records were removed from the end` });
    else if (head) {
      const [atHead] = await this.store.listAudit({ afterSeq: head.seq - 1, limit: 1 });
      if (atHead?.seq === head.seq && atHead.hash !== head.hash) problems.push({ seq: head.seq, problem: "differs from the record the head file remembers: the log was rewritten" });
    }
    return { ok: problems.length === 0, records: count, lastSeq: expected - 1, problems };
  }

  /** Resolves once the newest head has been written (tests, shutdown). */
  flush(): Promise<void> {
    return this.#headWrite;
  }

  private hash(prevHash: string, r: AuditInput & { seq: number }): string {
    const fields = [prevHash, r.seq, r.time, r.actor, r.actorKind, r.onBehalfOf, r.action, r.target, r.environment, r.sessionId, r.decision, r.rule, canonical(r.detail)];
    return createHmac("sha256", this.key).update(JSON.stringify(fields)).digest("hex");
  }

  #nextHead: AuditRecord | null = null;

  #writeHead(r: AuditRecord): void {
    // Coalesced: while one write is under way, later appends only replace the record to write
    // next, so a burst of appends costs one or two file writes. A failed write is retried by the
    // next append.
    const idle = this.#nextHead === null;
    this.#nextHead = r;
    if (!idle) return;
    this.#headWrite = this.#headWrite.then(async () => {
      const next = this.#nextHead;
      this.#nextHead = null;
      if (!next) return;
      const tmp = `${this.headPath}.tmp`;
      await writeFile(tmp, `${next.seq} ${next.hash}\n`, { mode: 0o600 });
      await rename(tmp, this.headPath);
    }).catch(() => undefined);
  }

  async #readHead(): Promise<{ seq: number; hash: string } | null> {
    const text = await readFile(this.headPath, "utf8").catch(() => null);
    const m = text ? /^(\d+) ([0-9a-f]{64})\n?$/.exec(text) : null;
    return m?.[1] && m[2] ? { seq: Number(m[1]), hash: m[2] } : null;
  }
}

export const REDACTED_SECRET = "[redacted secret]";

/** Replaces every secret value (as typed, base64 and URL-encoded) in a text (a log line, a record's strings). */
export function secretScrubber(values: string[]): (text: string) => string {
  const forms = [...new Set(values.filter((v) => v.length >= 4).flatMap((v) => [v, Buffer.from(v).toString("base64"), encodeURIComponent(v)]))].sort((a, b) => b.length - a.length);
  return (t) => forms.reduce((acc, f) => (acc.includes(f) ? acc.split(f).join(REDACTED_SECRET) : acc), t);
}

/** Replaces every secret value (as typed, base64 and URL-encoded) in a record's strings. */
function redactor(values: string[]): (r: AuditInput) => AuditInput {
  if (!values.some((v) => v.length >= 4)) return (r) => r;
  const text = secretScrubber(values);
  const deep = (v: unknown): unknown => {
    if (typeof v === "string") return text(v);
    if (Array.isArray(v)) return v.map(deep);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, deep(x)]));
    return v;
  };
  return (r) => ({ ...r, target: text(r.target), rule: r.rule === null ? null : text(r.rule), detail: deep(r.detail) as Record<string, unknown> });
}

/** JSON with object keys sorted at every level, so the hash does not depend on key order. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a, "hex");
  const y = Buffer.from(b, "hex");
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}
