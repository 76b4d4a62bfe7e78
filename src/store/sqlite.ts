/**
 * The embedded SQLite store: one file (or `:memory:`), one connection per store instance.
 * better-sqlite3 is synchronous, so each method runs to completion before its promise settles: a
 * resolved write has been committed. Multi-statement writes run in IMMEDIATE transactions, which
 * take the write lock up front, so two processes sharing the file wait (busy_timeout) instead of
 * failing half-way.
 */
import Database from "better-sqlite3";
import type { Environment, EnvironmentVersion, Layer, PoolMember, PoolSetting, Run, RunEvent, RunState, Session, SessionState, Snapshot, Template } from "../core/domain.ts";
import { asPaddockError, conflict, internal, notFound, PaddockError, unavailable } from "../core/errors.ts";
import type { Store } from "../core/store.ts";
import {
  environmentFromRow,
  layerFromRow,
  layerToRow,
  nowIso,
  sessionFromRow,
  sessionToRow,
  templateFromRow,
  templateToRow,
  versionFromRow,
  versionToRow,
} from "./sqlite-rows.ts";
import { applyMigrations } from "./sqlite-schema.ts";
import { prepareStatements, type Statements } from "./sqlite-statements.ts";
import { SqliteVaultRecords } from "./sqlite-vault.ts";
import { prepareGuardStatements, SqliteGuardRecords, type GuardStatements } from "./sqlite-guard.ts";
import type { ApiToken, Approval, ApprovalState, AuditInput, AuditQuery, AuditRecord, Principal } from "../core/identity.ts";
import { prepareRunStatements, SqliteRunRecords } from "./sqlite-runs.ts";
import { prepareSnapshotStatements, snapshotExists, SqliteSnapshotRecords, type SnapshotStatements } from "./sqlite-snapshots.ts";
import { preparePreviewStatements, SqlitePreviewRecords, type PreviewStatements } from "./sqlite-previews.ts";
import { prepareE2bStatements, SqliteE2bRecords, type E2bStatements } from "./sqlite-e2b.ts";
import { prepareRouteStatements, SqliteRouteRecords, type RouteStatements } from "./sqlite-routes.ts";
import type { E2bAccessToken, E2bSandbox } from "../core/store.ts";
import type { SessionRoute } from "../core/store.ts";
import type { Preview } from "../core/domain.ts";

/** How long a write waits for another process's write lock before rejecting `unavailable`. */
const BUSY_TIMEOUT_MS = 5000;

/**
 * Open (creating if needed) the SQLite store at `path` and bring its schema up to date.
 * `":memory:"` gives a private, empty, in-memory store (tests). Rejects `unavailable` when the file
 * cannot be opened or was migrated by a newer Paddock.
 *
 * @example
 * const store = await openSqliteStore("/var/lib/paddock/paddock.db");
 * await store.close();
 */
export async function openSqliteStore(path: string): Promise<Store & { readonly path: string }> {
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw unavailable(`cannot open the SQLite store ${path}: ${reason}; check that its directory exists and is writable`, err);
  }
  try {
    configure(db, path);
    applyMigrations(db);
    return new SqliteStore(path, db, prepareStatements(db));
  } catch (err) {
    db.close();
    throw translate(err, path);
  }
}

function configure(db: Database.Database, path: string): void {
  // Durability: in WAL mode a COMMIT appends the transaction's pages to the -wal file with write(2)
  // before it returns; synchronous=NORMAL only skips the fsync, which SQLite then does at
  // checkpoints. Written pages live in the kernel's page cache, not in this process, so a crash or
  // kill -9 of the process loses no committed transaction: the next open replays the WAL. Only an
  // OS crash or power cut can roll back the last few commits (never corrupting the file); FULL
  // would cover that at the cost of an fsync per write.
  const mode = db.pragma("journal_mode = WAL", { simple: true });
  if (!db.memory && mode !== "wal") {
    throw unavailable(`the SQLite store ${path} cannot use WAL journaling (got ${String(mode)}); put it on a local filesystem`);
  }
  db.pragma("synchronous = NORMAL");
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.pragma("foreign_keys = ON");
}

/** SQLite failures as PaddockErrors; `duplicate` is the message for a uniqueness violation. */
function translate(err: unknown, path: string, duplicate?: string): PaddockError {
  if (err instanceof PaddockError) return err;
  if (err instanceof Database.SqliteError) {
    const code = err.code;
    if (duplicate !== undefined && (code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "SQLITE_CONSTRAINT_UNIQUE")) {
      return conflict(duplicate);
    }
    if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
      return unavailable(`the SQLite store ${path} stayed locked by another process for ${BUSY_TIMEOUT_MS} ms; retry, or stop the other process`, err);
    }
    if (["SQLITE_READONLY", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN"].some((c) => code.startsWith(c))) {
      return unavailable(`the SQLite store ${path} cannot be written (${err.message}); check free disk space and permissions`, err);
    }
  }
  return asPaddockError(err);
}

/** Keep only the fields a patch sets: `{ endedAt: undefined }` changes nothing. */
function definedFields<T extends object>(patch: T): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function sameTemplate(a: Template, b: Template): boolean {
  return a.environment === b.environment && a.version === b.version && a.base === b.base && JSON.stringify(a.layers) === JSON.stringify(b.layers);
}

class SqliteStore extends SqliteVaultRecords implements Store {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #q: Statements;

  constructor(path: string, db: Database.Database, statements: Statements) {
    super();
    this.path = path;
    this.#db = db;
    this.#q = statements;
    const snaps = prepareSnapshotStatements(db);
    this.#snapStatements = snaps;
    this.#snaps = new SqliteSnapshotRecords(
      <T>(fn: (s: SnapshotStatements, q: Statements) => T, duplicate?: string) => this.#run((q) => fn(snaps, q), duplicate),
      <T>(fn: (s: SnapshotStatements, q: Statements) => T, duplicate?: string) => this.#write((q) => fn(snaps, q), duplicate),
    );
    const r = prepareRunStatements(db);
    this.#runs = new SqliteRunRecords(
      <T>(fn: (s: ReturnType<typeof prepareRunStatements>) => T, duplicate?: string) => this.#run(() => fn(r), duplicate),
      <T>(fn: (s: ReturnType<typeof prepareRunStatements>) => T, duplicate?: string) => this.#write(() => fn(r), duplicate),
    );
    // --- previews ---
    const pv = preparePreviewStatements(db);
    this.#previews = new SqlitePreviewRecords(
      <T>(fn: (s: PreviewStatements) => T, duplicate?: string) => this.#run(() => fn(pv), duplicate),
      <T>(fn: (s: PreviewStatements) => T, duplicate?: string) => this.#write(() => fn(pv), duplicate),
    );
    // --- end previews ---
    const e2b = prepareE2bStatements(db);
    this.#e2b = new SqliteE2bRecords(
      <T>(fn: (s: E2bStatements) => T, duplicate?: string) => this.#run(() => fn(e2b), duplicate),
      <T>(fn: (s: E2bStatements) => T, duplicate?: string) => this.#write(() => fn(e2b), duplicate),
    );
    const rt = prepareRouteStatements(db);
    this.#routes = new SqliteRouteRecords(
      <T>(fn: (s: RouteStatements) => T, duplicate?: string) => this.#run(() => fn(rt), duplicate),
      <T>(fn: (s: RouteStatements) => T, duplicate?: string) => this.#write(() => fn(rt), duplicate),
    );
    const g = prepareGuardStatements(db);
    this.#guard = new SqliteGuardRecords(
      <T>(fn: (q: GuardStatements) => T, duplicate?: string) => this.#run(() => fn(g), duplicate),
      <T>(fn: (q: GuardStatements) => T, duplicate?: string) => this.#write(() => fn(g), duplicate),
    );
  }

  readonly #runs: SqliteRunRecords;
  // Runs, transcripts and webhook deliveries live in sqlite-runs.ts; these forward to it.
  createRun(x: Run) { return this.#runs.createRun(x); }
  updateRun(x: Run) { return this.#runs.updateRun(x); }
  getRun(id: string) { return this.#runs.getRun(id); }
  listRuns(filter?: { environment?: string; states?: RunState[]; limit?: number }) { return this.#runs.listRuns(filter); }
  appendRunEvents(events: RunEvent[]) { return this.#runs.appendRunEvents(events); }
  listRunEvents(runId: string, afterSeq?: number, limit?: number) { return this.#runs.listRunEvents(runId, afterSeq, limit); }
  claimWebhookDelivery(key: string, receivedAt: string, forgetBefore: string) { return this.#runs.claimWebhookDelivery(key, receivedAt, forgetBefore); }
  releaseWebhookDeliveries(keys: string[]) { return this.#runs.releaseWebhookDeliveries(keys); }
  putBuildLog(environment: string, version: number, log: string) { return this.#runs.putBuildLog(environment, version, log); }
  getBuildLog(environment: string, version: number) { return this.#runs.getBuildLog(environment, version); }

  readonly #snapStatements: SnapshotStatements;
  readonly #snaps: SqliteSnapshotRecords;
  // Snapshots and pools live in sqlite-snapshots.ts; these forward to it.
  createSnapshot(x: Snapshot) { return this.#snaps.createSnapshot(x); }
  getSnapshot(id: string) { return this.#snaps.getSnapshot(id); }
  getSnapshotByName(name: string) { return this.#snaps.getSnapshotByName(name); }
  listSnapshots(filter?: { environment?: string }) { return this.#snaps.listSnapshots(filter); }
  snapshotUsers(id: string) { return this.#snaps.snapshotUsers(id); }
  deleteSnapshot(id: string) { return this.#snaps.deleteSnapshot(id); }
  addPoolMember(m: PoolMember) { return this.#snaps.addPoolMember(m); }
  updatePoolMember(id: string, patch: Partial<Pick<PoolMember, "state" | "providerState">>) { return this.#snaps.updatePoolMember(id, patch); }
  getPoolMember(id: string) { return this.#snaps.getPoolMember(id); }
  listPoolMembers(filter?: { environment?: string }) { return this.#snaps.listPoolMembers(filter); }
  deletePoolMember(id: string) { return this.#snaps.deletePoolMember(id); }
  claimPoolMember(q: { environment: string; version: number }, make: (member: PoolMember) => Session) { return this.#snaps.claimPoolMember(q, make); }
  putPoolSetting(p: PoolSetting) { return this.#snaps.putPoolSetting(p); }
  getPoolSetting(environment: string) { return this.#snaps.getPoolSetting(environment); }
  listPoolSettings() { return this.#snaps.listPoolSettings(); }
  deletePoolSetting(environment: string) { return this.#snaps.deletePoolSetting(environment); }

  // --- session routes: they live in sqlite-routes.ts; these forward to it ---
  readonly #routes: SqliteRouteRecords;
  putSessionRoute(r: SessionRoute) { return this.#routes.putSessionRoute(r); }
  getSessionRoute(sessionId: string) { return this.#routes.getSessionRoute(sessionId); }
  updateSessionRoute(sessionId: string, patch: Partial<Omit<SessionRoute, "sessionId">>) { return this.#routes.updateSessionRoute(sessionId, patch); }

  // --- E2B sandboxes: they live in sqlite-e2b.ts; these forward to it ---
  readonly #e2b: SqliteE2bRecords;
  createE2bSandbox(x: E2bSandbox) { return this.#e2b.createE2bSandbox(x); }
  getE2bSandbox(id: string) { return this.#e2b.getE2bSandbox(id); }
  getE2bSandboxBySession(sessionId: string) { return this.#e2b.getE2bSandboxBySession(sessionId); }
  listE2bSandboxes() { return this.#e2b.listE2bSandboxes(); }
  updateE2bSandbox(id: string, patch: Partial<Omit<E2bSandbox, "id">>) { return this.#e2b.updateE2bSandbox(id, patch); }
  deleteE2bSandbox(id: string) { return this.#e2b.deleteE2bSandbox(id); }
  addE2bAccessToken(t: E2bAccessToken & { tokenHash: string }) { return this.#e2b.addE2bAccessToken(t); }
  e2bAccessToken(tokenHash: string) { return this.#e2b.e2bAccessToken(tokenHash); }
  listE2bAccessTokens(filter: { sandboxId?: string; limit: number }) { return this.#e2b.listE2bAccessTokens(filter); }

  // --- previews: they live in sqlite-previews.ts; these forward to it ---
  readonly #previews: SqlitePreviewRecords;
  createPreview(p: Preview, tokenHash: string) { return this.#previews.createPreview(p, tokenHash); }
  getPreview(id: string) { return this.#previews.getPreview(id); }
  previewTokenHash(id: string) { return this.#previews.previewTokenHash(id); }
  listPreviews(filter?: { sessionId?: string; environment?: string; live?: boolean; now?: string }) { return this.#previews.listPreviews(filter); }
  updatePreview(id: string, patch: Partial<Pick<Preview, "sessionId" | "snapshotId" | "revokedAt">>) { return this.#previews.updatePreview(id, patch); }
  // --- end previews ---

  readonly #guard: SqliteGuardRecords;
  // Identity, audit and approvals live in sqlite-guard.ts; these forward to it.
  createPrincipal(p: Principal) { return this.#guard.createPrincipal(p); }
  getPrincipal(id: string) { return this.#guard.getPrincipal(id); }
  getPrincipalByName(name: string) { return this.#guard.getPrincipalByName(name); }
  listPrincipals() { return this.#guard.listPrincipals(); }
  updatePrincipal(id: string, patch: Partial<Pick<Principal, "team" | "role" | "disabledAt">>) { return this.#guard.updatePrincipal(id, patch); }
  addToken(t: ApiToken) { return this.#guard.addToken(t); }
  getToken(id: string) { return this.#guard.getToken(id); }
  listTokens(principalId: string) { return this.#guard.listTokens(principalId); }
  revokeToken(id: string, at: string) { return this.#guard.revokeToken(id, at); }
  touchToken(id: string, at: string) { return this.#guard.touchToken(id, at); }
  appendAudit(records: AuditInput[], seal: (prevHash: string, record: AuditInput & { seq: number }) => string): Promise<AuditRecord[]> {
    return this.#guard.appendAudit(records, seal);
  }
  listAudit(query: AuditQuery) { return this.#guard.listAudit(query); }
  lastAudit() { return this.#guard.lastAudit(); }
  createApproval(a: Approval) { return this.#guard.createApproval(a); }
  getApproval(id: string) { return this.#guard.getApproval(id); }
  listApprovals(filter?: { state?: ApprovalState; sessionId?: string }) { return this.#guard.listApprovals(filter); }
  decideApproval(id: string, d: Pick<Approval, "state" | "decidedBy" | "decidedAt" | "reason">) { return this.#guard.decideApproval(id, d); }

  /** Run `fn` against the open database, translating failures; `duplicate` names a conflict. */
  #run<T>(fn: (q: Statements) => T, duplicate?: string): T {
    if (!this.#db.open) throw unavailable(`the store ${this.path} is closed; open it again`);
    try {
      return fn(this.#q);
    } catch (err) {
      throw translate(err, this.path, duplicate);
    }
  }

  /** Like #run, inside one IMMEDIATE transaction: all of `fn` commits, or none of it. */
  #write<T>(fn: (q: Statements) => T, duplicate?: string): T {
    return this.#run((q) => this.#db.transaction(() => fn(q)).immediate(), duplicate);
  }

  // The runners as the vault records (sqlite-vault.ts) see them.
  protected run<T>(fn: (q: Statements) => T, duplicate?: string): T {
    return this.#run(fn, duplicate);
  }

  protected write<T>(fn: (q: Statements) => T, duplicate?: string): T {
    return this.#write(fn, duplicate);
  }

  async addEnvironmentVersion(
    v: Omit<EnvironmentVersion, "version" | "createdAt" | "buildStatus" | "templateId" | "buildError">,
  ): Promise<EnvironmentVersion> {
    return this.#write((q) => {
      const now = nowIso();
      const version = q.nextVersion.get({ name: v.name, now });
      if (version === undefined) throw internal(`could not number the next version of environment ${JSON.stringify(v.name)}`);
      const row = versionToRow({
        name: v.name,
        version,
        fileName: v.fileName,
        source: v.source,
        spec: v.spec,
        sourceDigest: v.sourceDigest,
        createdAt: now,
        createdBy: v.createdBy,
        buildStatus: "building",
        templateId: null,
        buildError: null,
      });
      q.insertVersion.run(row);
      return versionFromRow(row);
    });
  }

  /**
   * Rejects `not_found` for an unknown version and `conflict` when its build already finished
   * (a finished build is history: a rebuild is a new version).
   */
  async finishBuild(name: string, version: number, result: { templateId: string } | { error: string }): Promise<void> {
    this.#write((q) => {
      const row = q.getVersion.get(name, version);
      if (row === undefined) throw notFound("environment version", `${name} v${version}`);
      if (row.build_status !== "building") {
        throw conflict(`the build of environment ${JSON.stringify(name)} v${version} already finished (${row.build_status}); apply the file again to build a new version`);
      }
      if ("templateId" in result) {
        q.finishVersion.run({ name, version, status: "ready", templateId: result.templateId, error: null });
        q.advanceCurrent.run({ name, version, now: nowIso() });
      } else {
        q.finishVersion.run({ name, version, status: "failed", templateId: null, error: result.error });
      }
    });
  }

  async getEnvironment(name: string): Promise<Environment | null> {
    return this.#run((q) => {
      const row = q.getEnvironment.get(name);
      return row === undefined ? null : environmentFromRow(row);
    });
  }

  /** Environments by name. */
  async listEnvironments(): Promise<Environment[]> {
    return this.#run((q) => q.listEnvironments.all().map(environmentFromRow));
  }

  async getEnvironmentVersion(name: string, version: number): Promise<EnvironmentVersion | null> {
    return this.#run((q) => {
      const row = q.getVersion.get(name, version);
      return row === undefined ? null : versionFromRow(row);
    });
  }

  async listEnvironmentVersions(name: string): Promise<EnvironmentVersion[]> {
    return this.#run((q) => q.listVersions.all(name).map(versionFromRow));
  }

  async deleteEnvironment(name: string): Promise<boolean> {
    return this.#write((q) => {
      q.deleteVersions.run(name);
      return q.deleteEnvironment.run(name).changes > 0;
    });
  }

  async putLayer(layer: Layer): Promise<void> {
    this.#run((q) => q.putLayer.run(layerToRow(layer)));
  }

  async getLayer(id: string): Promise<Layer | null> {
    return this.#run((q) => {
      const row = q.getLayer.get(id);
      return row === undefined ? null : layerFromRow(row);
    });
  }

  /** Layers oldest first (createdAt, then id). */
  async listLayers(): Promise<Layer[]> {
    return this.#run((q) => q.listLayers.all().map(layerFromRow));
  }

  async deleteLayer(id: string): Promise<boolean> {
    return this.#run((q) => q.deleteLayer.run(id).changes > 0);
  }

  /**
   * Templates are immutable: putting an id again with the same environment, version, base and
   * layers is a no-op (the first stays); with anything else it rejects `conflict`.
   */
  async putTemplate(t: Template): Promise<void> {
    const duplicate = `template ${JSON.stringify(t.id)} already exists with different content; templates are immutable, build under a new id`;
    this.#write((q) => {
      const existing = q.getTemplate.get(t.id);
      if (existing === undefined) {
        q.insertTemplate.run(templateToRow(t));
      } else if (!sameTemplate(templateFromRow(existing), t)) {
        throw conflict(duplicate);
      }
    }, duplicate);
  }

  async getTemplate(id: string): Promise<Template | null> {
    return this.#run((q) => {
      const row = q.getTemplate.get(id);
      return row === undefined ? null : templateFromRow(row);
    });
  }

  /** Templates oldest first (createdAt, then id). */
  async listTemplates(): Promise<Template[]> {
    return this.#run((q) => q.listTemplates.all().map(templateFromRow));
  }

  async createSession(s: Session): Promise<void> {
    const duplicate = `session ${JSON.stringify(s.id)} already exists; session ids must be new`;
    if (s.snapshot === null) {
      this.#run((q) => q.insertSession.run(sessionToRow(s)), duplicate);
      return;
    }
    const from = s.snapshot;
    this.#write((q) => {
      if (!snapshotExists(this.#snapStatements, from)) throw notFound("snapshot", from);
      q.insertSession.run(sessionToRow(s));
    }, duplicate);
  }

  async updateSession(id: string, patch: Partial<Omit<Session, "id">>): Promise<Session> {
    return this.#write((q) => {
      const row = q.getSession.get(id);
      if (row === undefined) throw notFound("session", id);
      const next = sessionToRow({ ...sessionFromRow(row), ...definedFields(patch), id });
      q.replaceSession.run(next);
      return sessionFromRow(next);
    });
  }

  async getSession(id: string): Promise<Session | null> {
    return this.#run((q) => {
      const row = q.getSession.get(id);
      return row === undefined ? null : sessionFromRow(row);
    });
  }

  /** Newest first (createdAt descending, ties by id ascending). `states: []` matches no session. */
  async listSessions(filter?: { states?: SessionState[]; environment?: string }): Promise<Session[]> {
    const states = filter?.states === undefined ? null : JSON.stringify(filter.states);
    const environment = filter?.environment ?? null;
    return this.#run((q) => q.listSessions.all({ states, environment }).map(sessionFromRow));
  }

  async deleteSession(id: string): Promise<boolean> {
    const deleted = this.#run((q) => q.deleteSession.run(id).changes > 0);
    this.#routes.deleteSessionRoute(id);
    return deleted;
  }

  /** Close the connection (checkpointing the WAL). Closing twice is a no-op; other calls then reject `unavailable`. */
  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}
