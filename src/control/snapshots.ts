/**
 * Snapshots and forks (docs/snapshots.md). A snapshot is a running session's writable layer
 * captured copy-on-write while its processes are frozen (the provider does the capture), plus the
 * source session's placeholders and CA, sealed apart under `snapshot-placeholders:<id>`. Sessions
 * start from it with `Sessions.start(…, { from })`; `fork` snapshots a session and starts N
 * sessions from it at once.
 */
import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import type { Principal, Session, Snapshot, Store } from "../core/index.ts";
import { PaddockError, asPaddockError, invalid, type ErrorCode } from "../core/index.ts";
import type { AuditLog } from "../guard/index.ts";
import type { Egress } from "./egress.ts";
import type { Collector } from "./gc.ts";
import type { Sessions } from "./sessions.ts";

/** Names people give snapshots: like environment names, plus `.` and `_`; never `snap-…` (ids). */
const SNAPSHOT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** The most sessions one fork starts. */
export const MAX_FORK_COUNT = 100;
/**
 * Sessions a fork starts at once by default: twice the cores. A start is mostly CPU (process
 * spawns, the launcher, the kernel's namespace and cgroup work); measured on 2 cores, 50 starts
 * took about as long 3 to 6 at a time, and longer 2 or 8 and more at a time (bench/fork.ts).
 */
const FORK_CONCURRENCY = Math.max(2, 2 * availableParallelism());

export interface ForkResult {
  snapshot: Snapshot;
  /** The sessions started, in no particular order. */
  sessions: Session[];
  /** Starts that failed: the others are unaffected. */
  failures: { index: number; code: ErrorCode; message: string }[];
}

/** Who a new session runs for when `who` starts it (an agent's runs for the human behind it). */
export interface Starter {
  startedBy: string;
  agent: string | null;
}

export class Snapshots {
  constructor(
    private readonly deps: {
      store: Store;
      sessions: Sessions;
      egress: Egress | null;
      gc: Collector;
      audit: AuditLog;
      log: (line: string) => void;
      /** Sessions a fork starts at once (default twice the cores). */
      forkConcurrency?: number;
    },
  ) {}

  /**
   * Capture a running session. Its processes are frozen for the instant of the copy-on-write
   * capture (`frozenMs`) and go on afterwards; nothing of it changes.
   */
  async create(sessionId: string, opts: { name?: string | null; createdBy: Principal; autoRemove?: boolean }): Promise<Snapshot> {
    const name = opts.name ?? null;
    if (name !== null) {
      if (!SNAPSHOT_NAME.test(name) || name.startsWith("snap-")) {
        throw invalid(`bad snapshot name ${JSON.stringify(name.slice(0, 80))}: 1 to 63 lowercase letters, digits, ".", "_" and "-", starting with a letter or digit, not "snap-"`);
      }
      if (await this.deps.store.getSnapshotByName(name)) throw new PaddockError("conflict", `a snapshot named ${JSON.stringify(name)} already exists; pick another name or remove it first`);
    }
    const session = await this.deps.sessions.get(sessionId);
    if (session.state !== "running") throw new PaddockError("conflict", `session ${sessionId} is ${session.state}, not running: only a running session can be snapshotted`);
    const provider = this.deps.sessions.providerOf(session);
    const id = `snap-${randomBytes(8).toString("hex")}`;
    // Pinned from before the capture until the record exists (and, for forks, until the forks
    // are started): garbage collection leaves it alone meanwhile.
    this.deps.gc.pinned.add(id);
    let captured = false;
    try {
      const reg = this.deps.egress ? await this.deps.egress.registrationOf(sessionId) : null;
      const { frozenMs } = await provider.snapshot(sessionId, id);
      captured = true;
      if (reg) {
        await this.deps.egress?.sealSnapshot(id, {
          sourceSession: sessionId,
          environment: session.environment,
          version: session.version,
          placeholders: reg.placeholders,
          caCertPem: reg.caCertPem,
          caKeyPem: reg.caKeyPem,
        });
      }
      const snapshot: Snapshot = {
        id,
        name,
        environment: session.environment,
        version: session.version,
        templateId: session.templateId,
        provider: session.provider,
        sourceSession: sessionId,
        layerId: id,
        createdAt: new Date().toISOString(),
        createdBy: opts.createdBy.name,
        frozenMs,
        autoRemove: opts.autoRemove ?? false,
      };
      await this.deps.store.createSnapshot(snapshot);
      await this.deps.audit.append({
        actor: opts.createdBy.name, actorKind: opts.createdBy.kind, onBehalfOf: opts.createdBy.kind === "agent" ? session.startedBy : null,
        action: "snapshot.create", target: id, environment: session.environment, sessionId, decision: "info",
        detail: { snapshot: id, name, frozenMs, version: session.version },
      });
      return snapshot;
    } catch (err) {
      if (captured) await provider.removeSnapshot(id).catch(() => undefined);
      await this.deps.egress?.dropSnapshot(id).catch(() => undefined);
      this.deps.gc.pinned.delete(id);
      throw err;
    } finally {
      // A fork's snapshot stays pinned until its sessions are started (fork unpins it).
      if (!opts.autoRemove) this.deps.gc.pinned.delete(id);
    }
  }

  async get(ref: string): Promise<Snapshot> {
    return this.deps.sessions.snapshot(ref);
  }

  list(filter: { environment?: string } = {}): Promise<Snapshot[]> {
    return this.deps.store.listSnapshots(filter);
  }

  /** What keeps a snapshot from being removed (sessions started from it, pool members, previews later). */
  users(id: string): Promise<string[]> {
    return this.deps.store.snapshotUsers(id);
  }

  /**
   * Remove a snapshot nothing uses: its record (refused with `conflict` naming the users), its
   * sealed placeholders, its layer. Then collects what it alone kept (an older template's layers).
   */
  async remove(ref: string, by: Principal): Promise<Snapshot> {
    const snap = await this.get(ref);
    await this.deps.store.deleteSnapshot(snap.id);
    await this.deps.egress?.dropSnapshot(snap.id);
    await this.deps.sessions.removeSnapshotLayer(snap);
    await this.deps.audit.append({
      actor: by.name, actorKind: by.kind, action: "snapshot.remove", target: snap.id, environment: snap.environment, decision: "info",
      detail: { snapshot: snap.id, name: snap.name },
    });
    this.deps.gc.schedule();
    return snap;
  }

  /**
   * Snapshot a running session and start `count` sessions from it, a few at a time (`forkConcurrency`).
   * Each is independent of the others and of the source (its own copy-on-write layer). A failed
   * start is reported in `failures` without undoing the others. The snapshot is removed by garbage
   * collection once none of them runs any more.
   */
  async fork(sessionId: string, count: number, by: Principal, starter: Starter): Promise<ForkResult> {
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_FORK_COUNT) throw invalid(`count must be a whole number from 1 to ${MAX_FORK_COUNT}, got ${count}`);
    const snapshot = await this.create(sessionId, { createdBy: by, autoRemove: true });
    const sessions: Session[] = [];
    const failures: ForkResult["failures"] = [];
    try {
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < count; i = next++) {
          try {
            sessions.push(await this.deps.sessions.start(snapshot.environment, { startedBy: starter.startedBy, agent: starter.agent, from: snapshot.id }));
          } catch (err) {
            const e = asPaddockError(err);
            failures.push({ index: i, code: e.code, message: e.message });
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.deps.forkConcurrency ?? FORK_CONCURRENCY, count) }, worker));
    } finally {
      this.deps.gc.pinned.delete(snapshot.id);
      // When every start failed, nothing uses the snapshot: it goes now.
      if (sessions.length === 0) this.deps.gc.schedule();
    }
    failures.sort((a, b) => a.index - b.index);
    await this.deps.audit.append({
      actor: by.name, actorKind: by.kind, onBehalfOf: by.kind === "agent" ? starter.startedBy : null,
      action: "session.fork", target: sessionId, sessionId, environment: snapshot.environment, decision: "info",
      detail: { snapshot: snapshot.id, count, started: sessions.map((s) => s.id), failed: failures.length },
    });
    return { snapshot, sessions, failures };
  }
}
