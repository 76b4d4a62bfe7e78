/**
 * The snapshot and warm-pool part of the SQLite store (snapshots, pool members, pool settings).
 * Its statements are prepared here, from the connection; the runners come from `SqliteStore`
 * (closed-store check, error translation, IMMEDIATE transactions), with the main statements beside
 * these so a claim can move a member into `sessions` in the same transaction.
 */
import type Database from "better-sqlite3";
import type { PoolMember, PoolSetting, Session, Snapshot } from "../core/domain.ts";
import type { Store } from "../core/store.ts";
import { PaddockError, conflict, internal, invalid, notFound } from "../core/errors.ts";
import { fromJson, sessionToRow, timestampMs, toJson } from "./sqlite-rows.ts";
import type { Statements } from "./sqlite-statements.ts";

type SnapshotRecords = Pick<
  Store,
  | "createSnapshot" | "getSnapshot" | "getSnapshotByName" | "listSnapshots" | "snapshotUsers" | "deleteSnapshot"
  | "addPoolMember" | "updatePoolMember" | "getPoolMember" | "listPoolMembers" | "deletePoolMember" | "claimPoolMember"
  | "putPoolSetting" | "getPoolSetting" | "listPoolSettings" | "deletePoolSetting"
>;

interface SnapshotRow {
  id: string; name: string | null; environment: string; version: number; template_id: string; provider: string;
  source_session: string; layer_id: string; created_at: string; created_ms: number; created_by: string; frozen_ms: number; auto_remove: number;
}
interface MemberRow {
  id: string; environment: string; version: number; template_id: string; provider: string; snapshot_id: string | null;
  state: string; created_at: string; created_ms: number; provider_state: string;
}
interface SettingRow { environment: string; min: number; max: number; updated_at: string; updated_by: string }

const snapshotToRow = (s: Snapshot): SnapshotRow => ({
  id: s.id, name: s.name, environment: s.environment, version: s.version, template_id: s.templateId, provider: s.provider,
  source_session: s.sourceSession, layer_id: s.layerId, created_at: s.createdAt, created_ms: timestampMs(s.createdAt, `createdAt of snapshot ${JSON.stringify(s.id)}`),
  created_by: s.createdBy, frozen_ms: s.frozenMs, auto_remove: s.autoRemove ? 1 : 0,
});
const snapshotFromRow = (r: SnapshotRow): Snapshot => ({
  id: r.id, name: r.name, environment: r.environment, version: r.version, templateId: r.template_id, provider: r.provider,
  sourceSession: r.source_session, layerId: r.layer_id, createdAt: r.created_at, createdBy: r.created_by, frozenMs: r.frozen_ms,
  autoRemove: r.auto_remove === 1,
});
const memberToRow = (m: PoolMember): MemberRow => ({
  id: m.id, environment: m.environment, version: m.version, template_id: m.templateId, provider: m.provider, snapshot_id: m.snapshot,
  state: m.state, created_at: m.createdAt, created_ms: timestampMs(m.createdAt, `createdAt of pool member ${JSON.stringify(m.id)}`),
  provider_state: toJson(m.providerState, `providerState of pool member ${JSON.stringify(m.id)}`),
});
const memberFromRow = (r: MemberRow): PoolMember => ({
  id: r.id, environment: r.environment, version: r.version, templateId: r.template_id, provider: r.provider, snapshot: r.snapshot_id,
  state: r.state as PoolMember["state"], createdAt: r.created_at,
  providerState: fromJson(r.provider_state, `providerState of pool member ${r.id}`) as Record<string, unknown>,
});
const settingFromRow = (r: SettingRow): PoolSetting => ({ environment: r.environment, min: r.min, max: r.max, updatedAt: r.updated_at, updatedBy: r.updated_by });

export function prepareSnapshotStatements(db: Database.Database) {
  return {
    insertSnapshot: db.prepare<SnapshotRow>(`INSERT INTO snapshots
      (id, name, environment, version, template_id, provider, source_session, layer_id, created_at, created_ms, created_by, frozen_ms, auto_remove)
      VALUES (@id, @name, @environment, @version, @template_id, @provider, @source_session, @layer_id, @created_at, @created_ms, @created_by, @frozen_ms, @auto_remove)`),
    snapshot: db.prepare<[string], SnapshotRow>("SELECT * FROM snapshots WHERE id = ?"),
    snapshotByName: db.prepare<[string], SnapshotRow>("SELECT * FROM snapshots WHERE name = ?"),
    snapshots: db.prepare<{ environment: string | null }, SnapshotRow>(
      "SELECT * FROM snapshots WHERE (@environment IS NULL OR environment = @environment) ORDER BY created_ms DESC, id ASC"),
    deleteSnapshot: db.prepare<[string]>("DELETE FROM snapshots WHERE id = ?"),
    sessionUsers: db.prepare<[string], string>(
      "SELECT id FROM sessions WHERE snapshot_id = ? AND state IN ('starting', 'running') ORDER BY created_ms, id").pluck(),
    memberUsers: db.prepare<[string], string>("SELECT id FROM pool_members WHERE snapshot_id = ? ORDER BY created_ms, id").pluck(),
    // Previews that would wake from it (neither revoked nor expired): sqlite-previews.ts.
    previewUsers: db.prepare<[string, number], string>(
      "SELECT id FROM previews WHERE snapshot_id = ? AND revoked_at IS NULL AND expires_ms > ? ORDER BY created_ms, id").pluck(),

    // A paused E2B sandbox resumes from it (docs/e2b.md).
    e2bUsers: db.prepare<[string], string>("SELECT id FROM e2b_sandboxes WHERE snapshot_id = ? AND state = 'paused' ORDER BY created_ms, id").pluck(),

    insertMember: db.prepare<MemberRow>(`INSERT INTO pool_members
      (id, environment, version, template_id, provider, snapshot_id, state, created_at, created_ms, provider_state)
      VALUES (@id, @environment, @version, @template_id, @provider, @snapshot_id, @state, @created_at, @created_ms, @provider_state)`),
    member: db.prepare<[string], MemberRow>("SELECT * FROM pool_members WHERE id = ?"),
    members: db.prepare<{ environment: string | null }, MemberRow>(
      "SELECT * FROM pool_members WHERE (@environment IS NULL OR environment = @environment) ORDER BY created_ms, id"),
    replaceMember: db.prepare<{ id: string; state: string; provider_state: string }>(
      "UPDATE pool_members SET state = @state, provider_state = @provider_state WHERE id = @id"),
    deleteMember: db.prepare<[string]>("DELETE FROM pool_members WHERE id = ?"),
    // The claim: the oldest ready member of the version, removed and returned in one statement.
    takeReady: db.prepare<{ environment: string; version: number }, MemberRow>(`
      DELETE FROM pool_members WHERE id = (
        SELECT id FROM pool_members WHERE environment = @environment AND version = @version AND state = 'ready'
        ORDER BY created_ms, id LIMIT 1)
      RETURNING *`),
    sessionExists: db.prepare<[string], number>("SELECT 1 FROM sessions WHERE id = ?").pluck(),

    putSetting: db.prepare<SettingRow>(`
      INSERT INTO pool_settings (environment, min, max, updated_at, updated_by) VALUES (@environment, @min, @max, @updated_at, @updated_by)
      ON CONFLICT (environment) DO UPDATE SET min = excluded.min, max = excluded.max, updated_at = excluded.updated_at, updated_by = excluded.updated_by`),
    setting: db.prepare<[string], SettingRow>("SELECT * FROM pool_settings WHERE environment = ?"),
    settings: db.prepare<[], SettingRow>("SELECT * FROM pool_settings ORDER BY environment"),
    deleteSetting: db.prepare<[string]>("DELETE FROM pool_settings WHERE environment = ?"),
  };
}

export type SnapshotStatements = ReturnType<typeof prepareSnapshotStatements>;
type Runner = <T>(fn: (s: SnapshotStatements, q: Statements) => T, duplicate?: string) => T;

/** Whether snapshot `id` exists (a session started from it may be inserted). */
export function snapshotExists(s: SnapshotStatements, id: string): boolean {
  return s.snapshot.get(id) !== undefined;
}

export class SqliteSnapshotRecords implements SnapshotRecords {
  constructor(
    private readonly run: Runner,
    private readonly write: Runner,
  ) {}

  async createSnapshot(snap: Snapshot): Promise<void> {
    if (snap.name !== null && snap.name.startsWith("snap-")) throw invalid(`snapshot name ${JSON.stringify(snap.name)} must not start with snap- (that is how ids start)`);
    this.write((s) => {
      if (snap.name !== null && s.snapshotByName.get(snap.name)) throw conflict(`a snapshot named ${JSON.stringify(snap.name)} already exists; pick another name`);
      s.insertSnapshot.run(snapshotToRow(snap));
    }, `snapshot ${JSON.stringify(snap.id)} already exists; snapshot ids must be new`);
  }

  async getSnapshot(id: string): Promise<Snapshot | null> {
    return this.run((s) => {
      const row = s.snapshot.get(id);
      return row === undefined ? null : snapshotFromRow(row);
    });
  }

  async getSnapshotByName(name: string): Promise<Snapshot | null> {
    return this.run((s) => {
      const row = s.snapshotByName.get(name);
      return row === undefined ? null : snapshotFromRow(row);
    });
  }

  /** Newest first (createdAt descending, ties by id). */
  async listSnapshots(filter?: { environment?: string }): Promise<Snapshot[]> {
    return this.run((s) => s.snapshots.all({ environment: filter?.environment ?? null }).map(snapshotFromRow));
  }

  async snapshotUsers(id: string): Promise<string[]> {
    return this.run((s) => users(s, id));
  }

  async deleteSnapshot(id: string): Promise<boolean> {
    return this.write((s) => {
      const using = users(s, id);
      if (using.length > 0) {
        throw new PaddockError("conflict", `snapshot ${id} is in use by ${using.join(", ")}; stop ${using.length === 1 ? "it" : "them"} first`, { users: using });
      }
      return s.deleteSnapshot.run(id).changes > 0;
    });
  }

  async addPoolMember(m: PoolMember): Promise<void> {
    const duplicate = `pool member ${JSON.stringify(m.id)} already exists; member ids must be new`;
    this.write((s) => {
      if (s.sessionExists.get(m.id) !== undefined) throw conflict(`${duplicate} (a session has that id)`);
      s.insertMember.run(memberToRow(m));
    }, duplicate);
  }

  async updatePoolMember(id: string, patch: Partial<Pick<PoolMember, "state" | "providerState">>): Promise<PoolMember> {
    return this.write((s) => {
      const row = s.member.get(id);
      if (row === undefined) throw notFound("pool member", id);
      const next = memberToRow({ ...memberFromRow(row), ...(patch.state !== undefined ? { state: patch.state } : {}), ...(patch.providerState !== undefined ? { providerState: patch.providerState } : {}) });
      s.replaceMember.run({ id, state: next.state, provider_state: next.provider_state });
      return memberFromRow(next);
    });
  }

  async getPoolMember(id: string): Promise<PoolMember | null> {
    return this.run((s) => {
      const row = s.member.get(id);
      return row === undefined ? null : memberFromRow(row);
    });
  }

  async listPoolMembers(filter?: { environment?: string }): Promise<PoolMember[]> {
    return this.run((s) => s.members.all({ environment: filter?.environment ?? null }).map(memberFromRow));
  }

  async deletePoolMember(id: string): Promise<boolean> {
    return this.run((s) => s.deleteMember.run(id).changes > 0);
  }

  async claimPoolMember(q: { environment: string; version: number }, make: (member: PoolMember) => Session): Promise<Session | null> {
    return this.write((s, main) => {
      const row = s.takeReady.get(q);
      if (row === undefined) return null;
      const member = memberFromRow(row);
      const session = make(member);
      if (session.id !== member.id) throw internal(`a claimed pool member becomes the session with its id (${member.id}), not ${session.id}`);
      main.insertSession.run(sessionToRow(session));
      return { ...session, providerState: structuredClone(session.providerState) };
    }, "the claimed pool member's id is already a session's");
  }

  async putPoolSetting(p: PoolSetting): Promise<void> {
    if (!Number.isSafeInteger(p.min) || !Number.isSafeInteger(p.max) || p.min < 0 || p.max < p.min) {
      throw invalid(`pool size of ${JSON.stringify(p.environment)} must have 0 ≤ min ≤ max (integers), got min ${p.min}, max ${p.max}`);
    }
    this.run((s) => s.putSetting.run({ environment: p.environment, min: p.min, max: p.max, updated_at: p.updatedAt, updated_by: p.updatedBy }));
  }

  async getPoolSetting(environment: string): Promise<PoolSetting | null> {
    return this.run((s) => {
      const row = s.setting.get(environment);
      return row === undefined ? null : settingFromRow(row);
    });
  }

  async listPoolSettings(): Promise<PoolSetting[]> {
    return this.run((s) => s.settings.all().map(settingFromRow));
  }

  async deletePoolSetting(environment: string): Promise<boolean> {
    return this.run((s) => s.deleteSetting.run(environment).changes > 0);
  }
}

function users(s: SnapshotStatements, id: string): string[] {
  return [
    ...s.sessionUsers.all(id).map((x) => `session ${x}`),
    ...s.memberUsers.all(id).map((x) => `pool member ${x}`),
    ...s.previewUsers.all(id, Date.now()).map((x) => `preview ${x}`),
    ...s.e2bUsers.all(id).map((x) => `paused E2B sandbox ${x}`),
  ];
}
