/**
 * The identity and audit part of the SQLite store (principals, tokens, audit records, approvals).
 * Its statements are prepared here, from the connection, so the other store files stay as they were.
 */
import type Database from "better-sqlite3";
import type { ApiToken, Approval, ApprovalState, AuditInput, AuditQuery, AuditRecord, Principal } from "../core/identity.ts";
import type { Store } from "../core/store.ts";
import { conflict, internal, invalid, notFound } from "../core/errors.ts";
import { fromJson, timestampMs, toJson } from "./sqlite-rows.ts";

type GuardRecords = Pick<
  Store,
  | "createPrincipal" | "getPrincipal" | "getPrincipalByName" | "listPrincipals" | "updatePrincipal"
  | "addToken" | "getToken" | "listTokens" | "revokeToken" | "touchToken"
  | "appendAudit" | "listAudit" | "lastAudit"
  | "createApproval" | "getApproval" | "listApprovals" | "decideApproval"
>;

interface PrincipalRow { id: string; name: string; kind: string; team: string | null; role: string; created_at: string; disabled_at: string | null }
interface TokenRow { id: string; principal_id: string; digest: string; label: string; created_at: string; last_used_at: string | null; revoked_at: string | null }
interface AuditRow {
  seq: number; time: string; actor: string; actor_kind: string; on_behalf_of: string | null; action: string; target: string;
  environment: string | null; session_id: string | null; decision: string; rule: string | null; detail: string; prev_hash: string; hash: string;
}
interface ApprovalRow {
  id: string; session_id: string; environment: string; argv: string; program: string; rule: string; deploying: number;
  requested_by: string; requested_by_kind: string; on_behalf_of: string | null; state: string; decided_by: string | null;
  decided_at: string | null; reason: string | null; created_at: string; created_ms: number; expires_at: string;
}

const principalFromRow = (r: PrincipalRow): Principal => ({
  id: r.id, name: r.name, kind: r.kind as Principal["kind"], team: r.team, role: r.role, createdAt: r.created_at, disabledAt: r.disabled_at,
});
const tokenFromRow = (r: TokenRow): ApiToken => ({
  id: r.id, principalId: r.principal_id, digest: r.digest, label: r.label, createdAt: r.created_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at,
});
const auditFromRow = (r: AuditRow): AuditRecord => ({
  seq: r.seq, time: r.time, actor: r.actor, actorKind: r.actor_kind as AuditRecord["actorKind"], onBehalfOf: r.on_behalf_of,
  action: r.action, target: r.target, environment: r.environment, sessionId: r.session_id, decision: r.decision as AuditRecord["decision"],
  rule: r.rule, detail: fromJson(r.detail, `detail of audit record ${r.seq}`) as Record<string, unknown>, prevHash: r.prev_hash, hash: r.hash,
});
const approvalFromRow = (r: ApprovalRow): Approval => ({
  id: r.id, sessionId: r.session_id, environment: r.environment, argv: fromJson(r.argv, `argv of approval ${r.id}`) as string[],
  program: r.program, rule: r.rule, deploying: r.deploying === 1, requestedBy: r.requested_by,
  requestedByKind: r.requested_by_kind as Approval["requestedByKind"], onBehalfOf: r.on_behalf_of, state: r.state as ApprovalState,
  decidedBy: r.decided_by, decidedAt: r.decided_at, reason: r.reason, createdAt: r.created_at, expiresAt: r.expires_at,
});
const approvalToRow = (a: Approval): ApprovalRow => ({
  id: a.id, session_id: a.sessionId, environment: a.environment, argv: toJson(a.argv, `argv of approval ${a.id}`), program: a.program,
  rule: a.rule, deploying: a.deploying ? 1 : 0, requested_by: a.requestedBy, requested_by_kind: a.requestedByKind,
  on_behalf_of: a.onBehalfOf, state: a.state, decided_by: a.decidedBy, decided_at: a.decidedAt, reason: a.reason,
  created_at: a.createdAt, created_ms: timestampMs(a.createdAt, `createdAt of approval ${a.id}`), expires_at: a.expiresAt,
});

function prepare(db: Database.Database) {
  return {
    insertPrincipal: db.prepare<PrincipalRow>(
      "INSERT INTO principals (id, name, kind, team, role, created_at, disabled_at) VALUES (@id, @name, @kind, @team, @role, @created_at, @disabled_at)"),
    principal: db.prepare<[string], PrincipalRow>("SELECT * FROM principals WHERE id = ?"),
    principalByName: db.prepare<[string], PrincipalRow>("SELECT * FROM principals WHERE name = ?"),
    principals: db.prepare<[], PrincipalRow>("SELECT * FROM principals ORDER BY name"),
    replacePrincipal: db.prepare<PrincipalRow>("UPDATE principals SET team = @team, role = @role, disabled_at = @disabled_at WHERE id = @id"),
    insertToken: db.prepare<TokenRow>(
      "INSERT INTO api_tokens (id, principal_id, digest, label, created_at, last_used_at, revoked_at) VALUES (@id, @principal_id, @digest, @label, @created_at, @last_used_at, @revoked_at)"),
    token: db.prepare<[string], TokenRow>("SELECT * FROM api_tokens WHERE id = ?"),
    tokens: db.prepare<[string], TokenRow>("SELECT * FROM api_tokens WHERE principal_id = ? ORDER BY created_at, id"),
    revokeToken: db.prepare<[string, string]>("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
    touchToken: db.prepare<[string, string]>("UPDATE api_tokens SET last_used_at = ? WHERE id = ?"),
    lastAudit: db.prepare<[], AuditRow>("SELECT * FROM audit_records ORDER BY seq DESC LIMIT 1"),
    insertAudit: db.prepare<AuditRow>(`INSERT INTO audit_records
      (seq, time, actor, actor_kind, on_behalf_of, action, target, environment, session_id, decision, rule, detail, prev_hash, hash)
      VALUES (@seq, @time, @actor, @actor_kind, @on_behalf_of, @action, @target, @environment, @session_id, @decision, @rule, @detail, @prev_hash, @hash)`),
    audit: db.prepare<{ after: number; limit: number; session: string | null; actor: string | null; environment: string | null; since: string | null }, AuditRow>(`
      SELECT * FROM audit_records WHERE seq > @after
        AND (@session IS NULL OR session_id = @session) AND (@actor IS NULL OR actor = @actor OR on_behalf_of = @actor)
        AND (@environment IS NULL OR environment = @environment) AND (@since IS NULL OR time >= @since)
      ORDER BY seq ASC LIMIT @limit`),
    insertApproval: db.prepare<ApprovalRow>(`INSERT INTO approvals
      (id, session_id, environment, argv, program, rule, deploying, requested_by, requested_by_kind, on_behalf_of, state, decided_by, decided_at, reason, created_at, created_ms, expires_at)
      VALUES (@id, @session_id, @environment, @argv, @program, @rule, @deploying, @requested_by, @requested_by_kind, @on_behalf_of, @state, @decided_by, @decided_at, @reason, @created_at, @created_ms, @expires_at)`),
    approval: db.prepare<[string], ApprovalRow>("SELECT * FROM approvals WHERE id = ?"),
    approvals: db.prepare<{ state: string | null; session: string | null }, ApprovalRow>(`
      SELECT * FROM approvals WHERE (@state IS NULL OR state = @state) AND (@session IS NULL OR session_id = @session) ORDER BY created_ms DESC, id`),
    decideApproval: db.prepare<{ id: string; state: string; decided_by: string | null; decided_at: string | null; reason: string | null }>(
      "UPDATE approvals SET state = @state, decided_by = @decided_by, decided_at = @decided_at, reason = @reason WHERE id = @id AND state = 'pending'"),
  };
}

export type GuardStatements = ReturnType<typeof prepare>;
export const prepareGuardStatements = prepare;

type Runner = <T>(fn: (q: GuardStatements) => T, duplicate?: string) => T;

/** The guard records over a connection; `run`/`write` are the store's guarded runners. */
export class SqliteGuardRecords implements GuardRecords {
  readonly #run: Runner;
  readonly #write: Runner;
  constructor(run: Runner, write: Runner) {
    this.#run = run;
    this.#write = write;
  }

  async createPrincipal(p: Principal): Promise<void> {
    this.#run((q) => q.insertPrincipal.run({ id: p.id, name: p.name, kind: p.kind, team: p.team, role: p.role, created_at: p.createdAt, disabled_at: p.disabledAt }),
      `a principal named ${JSON.stringify(p.name)} already exists; pick another name`);
  }
  async getPrincipal(id: string): Promise<Principal | null> {
    return this.#run((q) => { const r = q.principal.get(id); return r ? principalFromRow(r) : null; });
  }
  async getPrincipalByName(name: string): Promise<Principal | null> {
    return this.#run((q) => { const r = q.principalByName.get(name); return r ? principalFromRow(r) : null; });
  }
  async listPrincipals(): Promise<Principal[]> {
    return this.#run((q) => q.principals.all().map(principalFromRow));
  }
  async updatePrincipal(id: string, patch: Partial<Pick<Principal, "team" | "role" | "disabledAt">>): Promise<Principal> {
    return this.#write((q) => {
      const r = q.principal.get(id);
      if (!r) throw notFound("principal", id);
      const next = { ...principalFromRow(r), ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) } as Principal;
      q.replacePrincipal.run({ id, name: next.name, kind: next.kind, team: next.team, role: next.role, created_at: next.createdAt, disabled_at: next.disabledAt });
      return next;
    });
  }

  async addToken(t: ApiToken): Promise<void> {
    this.#run((q) => q.insertToken.run({ id: t.id, principal_id: t.principalId, digest: t.digest, label: t.label, created_at: t.createdAt, last_used_at: t.lastUsedAt, revoked_at: t.revokedAt }),
      `token ${t.id} already exists`);
  }
  async getToken(id: string): Promise<ApiToken | null> {
    return this.#run((q) => { const r = q.token.get(id); return r ? tokenFromRow(r) : null; });
  }
  async listTokens(principalId: string): Promise<ApiToken[]> {
    return this.#run((q) => q.tokens.all(principalId).map(tokenFromRow));
  }
  async revokeToken(id: string, at: string): Promise<boolean> {
    return this.#run((q) => q.revokeToken.run(at, id).changes > 0);
  }
  async touchToken(id: string, at: string): Promise<void> {
    this.#run((q) => q.touchToken.run(at, id));
  }

  async appendAudit(records: AuditInput[], seal: (prevHash: string, record: AuditInput & { seq: number }) => string): Promise<AuditRecord[]> {
    if (records.length === 0) return [];
    return this.#write((q) => {
      const last = q.lastAudit.get();
      let prev = last?.hash ?? "";
      let seq = last?.seq ?? 0;
      const out: AuditRecord[] = [];
      for (const input of records) {
        seq += 1;
        const hash = seal(prev, { ...input, seq });
        const row: AuditRow = {
          seq, time: input.time, actor: input.actor, actor_kind: input.actorKind, on_behalf_of: input.onBehalfOf, action: input.action,
          target: input.target, environment: input.environment, session_id: input.sessionId, decision: input.decision, rule: input.rule,
          detail: toJson(input.detail, `detail of audit record ${seq}`), prev_hash: prev, hash,
        };
        q.insertAudit.run(row);
        out.push(auditFromRow(row));
        prev = hash;
      }
      return out;
    });
  }
  async listAudit(query: AuditQuery): Promise<AuditRecord[]> {
    const after = query.afterSeq ?? 0;
    const limit = query.limit ?? -1;
    if (!Number.isSafeInteger(after) || after < 0) throw invalid(`afterSeq must be a non-negative integer, got ${String(query.afterSeq)}`);
    if (!Number.isSafeInteger(limit) || limit < -1) throw invalid(`limit must be a non-negative integer, got ${String(query.limit)}`);
    const since = query.since === undefined ? null : new Date(timestampMs(query.since, "since")).toISOString();
    return this.#run((q) => q.audit.all({ after, limit, session: query.sessionId ?? null, actor: query.actor ?? null, environment: query.environment ?? null, since }).map(auditFromRow));
  }
  async lastAudit(): Promise<AuditRecord | null> {
    return this.#run((q) => { const r = q.lastAudit.get(); return r ? auditFromRow(r) : null; });
  }

  async createApproval(a: Approval): Promise<void> {
    this.#run((q) => q.insertApproval.run(approvalToRow(a)), `approval ${a.id} already exists`);
  }
  async getApproval(id: string): Promise<Approval | null> {
    return this.#run((q) => { const r = q.approval.get(id); return r ? approvalFromRow(r) : null; });
  }
  async listApprovals(filter?: { state?: ApprovalState; sessionId?: string }): Promise<Approval[]> {
    return this.#run((q) => q.approvals.all({ state: filter?.state ?? null, session: filter?.sessionId ?? null }).map(approvalFromRow));
  }
  async decideApproval(id: string, d: Pick<Approval, "state" | "decidedBy" | "decidedAt" | "reason">): Promise<Approval> {
    if (d.state === "pending") throw internal("decideApproval needs a final state");
    return this.#write((q) => {
      const r = q.approval.get(id);
      if (!r) throw notFound("approval", id);
      if (q.decideApproval.run({ id, state: d.state, decided_by: d.decidedBy, decided_at: d.decidedAt, reason: d.reason }).changes === 0) {
        throw conflict(`approval ${id} was already ${r.state}${r.decided_by ? ` by ${r.decided_by}` : ""}`);
      }
      return approvalFromRow({ ...r, state: d.state, decided_by: d.decidedBy, decided_at: d.decidedAt, reason: d.reason });
    });
  }
}
