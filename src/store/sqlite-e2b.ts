/**
 * E2B sandboxes in the SQLite store (docs/e2b.md): the sandbox id E2B's SDK knows, the session
 * behind it now, its state (running or paused on a snapshot), and the envd access tokens
 * create/connect handed out, kept only as their sha256.
 */
import type Database from "better-sqlite3";
import type { E2bAccessToken, E2bSandbox, Store } from "../core/store.ts";
import { notFound } from "../core/errors.ts";
import { timestampMs } from "./sqlite-rows.ts";

type E2bRecords = Pick<
  Store,
  "createE2bSandbox" | "getE2bSandbox" | "getE2bSandboxBySession" | "listE2bSandboxes" | "updateE2bSandbox" | "deleteE2bSandbox" | "addE2bAccessToken" | "e2bAccessToken" | "listE2bAccessTokens"
>;

interface TokenRow { sandbox_id: string; principal: string; nonce: string; created_at: string }
const tokenFromRow = (r: TokenRow): E2bAccessToken => ({ sandboxId: r.sandbox_id, principal: r.principal, nonce: r.nonce, createdAt: r.created_at });

interface E2bRow {
  id: string; session_id: string; environment: string; template_id: string; metadata: string; env_vars: string; state: string;
  snapshot_id: string | null; started_by: string; agent: string | null; created_at: string; created_ms: number; started_at: string; end_at: string; timeout_ms: number;
}

const fromRow = (r: E2bRow): E2bSandbox => ({
  id: r.id, sessionId: r.session_id, environment: r.environment, templateId: r.template_id,
  metadata: JSON.parse(r.metadata) as Record<string, string>, envVars: JSON.parse(r.env_vars) as Record<string, string>,
  state: r.state === "paused" ? "paused" : "running", snapshotId: r.snapshot_id, startedBy: r.started_by, agent: r.agent,
  createdAt: r.created_at, startedAt: r.started_at, endAt: r.end_at, timeoutMs: r.timeout_ms,
});

const toRow = (x: E2bSandbox): E2bRow => ({
  id: x.id, session_id: x.sessionId, environment: x.environment, template_id: x.templateId, metadata: JSON.stringify(x.metadata), env_vars: JSON.stringify(x.envVars),
  state: x.state, snapshot_id: x.snapshotId, started_by: x.startedBy, agent: x.agent, created_at: x.createdAt,
  created_ms: timestampMs(x.createdAt, `createdAt of E2B sandbox ${JSON.stringify(x.id)}`), started_at: x.startedAt, end_at: x.endAt, timeout_ms: x.timeoutMs,
});

export function prepareE2bStatements(db: Database.Database) {
  return {
    insert: db.prepare<E2bRow>(`INSERT INTO e2b_sandboxes
      (id, session_id, environment, template_id, metadata, env_vars, state, snapshot_id, started_by, agent, created_at, created_ms, started_at, end_at, timeout_ms)
      VALUES (@id, @session_id, @environment, @template_id, @metadata, @env_vars, @state, @snapshot_id, @started_by, @agent, @created_at, @created_ms, @started_at, @end_at, @timeout_ms)`),
    one: db.prepare<[string], E2bRow>("SELECT * FROM e2b_sandboxes WHERE id = ?"),
    bySession: db.prepare<[string], E2bRow>("SELECT * FROM e2b_sandboxes WHERE session_id = ?"),
    all: db.prepare<[], E2bRow>("SELECT * FROM e2b_sandboxes ORDER BY created_ms, id"),
    update: db.prepare<E2bRow>(`UPDATE e2b_sandboxes SET session_id = @session_id, environment = @environment, template_id = @template_id,
      metadata = @metadata, env_vars = @env_vars, state = @state, snapshot_id = @snapshot_id, started_by = @started_by, agent = @agent,
      created_at = @created_at, created_ms = @created_ms, started_at = @started_at, end_at = @end_at, timeout_ms = @timeout_ms WHERE id = @id`),
    deleteTokens: db.prepare<[string]>("DELETE FROM e2b_access_tokens WHERE sandbox_id = ?"),
    delete: db.prepare<[string]>("DELETE FROM e2b_sandboxes WHERE id = ?"),
    insertToken: db.prepare<[string, string, string, string, string]>("INSERT INTO e2b_access_tokens (token_hash, sandbox_id, principal, nonce, created_at) VALUES (?, ?, ?, ?, ?)"),
    token: db.prepare<[string], TokenRow>("SELECT sandbox_id, principal, nonce, created_at FROM e2b_access_tokens WHERE token_hash = ?"),
    tokens: db.prepare<{ sandbox_id: string | null; limit: number }, TokenRow>(
      "SELECT sandbox_id, principal, nonce, created_at FROM e2b_access_tokens WHERE (@sandbox_id IS NULL OR sandbox_id = @sandbox_id) ORDER BY created_at, token_hash LIMIT @limit"),
  };
}

export type E2bStatements = ReturnType<typeof prepareE2bStatements>;
type Runner = <T>(fn: (s: E2bStatements) => T, duplicate?: string) => T;

export class SqliteE2bRecords implements E2bRecords {
  constructor(
    private readonly run: Runner,
    private readonly write: Runner,
  ) {}

  async createE2bSandbox(x: E2bSandbox): Promise<void> {
    this.write((s) => s.insert.run(toRow(x)), `E2B sandbox ${JSON.stringify(x.id)} already exists; sandbox ids must be new`);
  }

  async getE2bSandbox(id: string): Promise<E2bSandbox | null> {
    return this.run((s) => {
      const row = s.one.get(id);
      return row === undefined ? null : fromRow(row);
    });
  }

  async getE2bSandboxBySession(sessionId: string): Promise<E2bSandbox | null> {
    return this.run((s) => {
      const row = s.bySession.get(sessionId);
      return row === undefined ? null : fromRow(row);
    });
  }

  async listE2bSandboxes(): Promise<E2bSandbox[]> {
    return this.run((s) => s.all.all().map(fromRow));
  }

  async updateE2bSandbox(id: string, patch: Partial<Omit<E2bSandbox, "id">>): Promise<E2bSandbox> {
    return this.write((s) => {
      const row = s.one.get(id);
      if (row === undefined) throw notFound("E2B sandbox", id);
      const next = { ...fromRow(row), ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)), id } as E2bSandbox;
      s.update.run(toRow(next));
      return next;
    });
  }

  async deleteE2bSandbox(id: string): Promise<boolean> {
    return this.write((s) => {
      s.deleteTokens.run(id);
      return s.delete.run(id).changes > 0;
    });
  }

  async addE2bAccessToken(t: E2bAccessToken & { tokenHash: string }): Promise<void> {
    this.write((s) => s.insertToken.run(t.tokenHash, t.sandboxId, t.principal, t.nonce, t.createdAt), "that access token is already recorded");
  }

  async e2bAccessToken(tokenHash: string): Promise<E2bAccessToken | null> {
    return this.run((s) => {
      const row = s.token.get(tokenHash);
      return row === undefined ? null : tokenFromRow(row);
    });
  }

  async listE2bAccessTokens(filter: { sandboxId?: string; limit: number }): Promise<E2bAccessToken[]> {
    return this.run((s) => s.tokens.all({ sandbox_id: filter.sandboxId ?? null, limit: filter.limit }).map(tokenFromRow));
  }
}
