/**
 * Previews in the SQLite store (docs/previews.md). A row is one port of one session behind a URL;
 * the visitor token is kept only as its sha256, beside the row and never in the `Preview` the rest
 * of the code sees. Which previews keep a snapshot alive is answered in sqlite-snapshots.ts
 * (`users`), from the same table, in the snapshot's own transaction.
 */
import type Database from "better-sqlite3";
import type { Preview } from "../core/domain.ts";
import type { Store } from "../core/store.ts";
import { notFound } from "../core/errors.ts";
import { timestampMs } from "./sqlite-rows.ts";

type PreviewRecords = Pick<Store, "createPreview" | "getPreview" | "previewTokenHash" | "listPreviews" | "updatePreview">;

interface PreviewRow {
  id: string; session_id: string; environment: string; port: number; token_hash: string; public: number; command: string | null;
  created_by: string; created_at: string; created_ms: number; expires_at: string; expires_ms: number; revoked_at: string | null; snapshot_id: string | null;
}

const previewFromRow = (r: PreviewRow): Preview => ({
  id: r.id, sessionId: r.session_id, environment: r.environment, port: r.port, public: r.public === 1, command: r.command,
  createdBy: r.created_by, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at, snapshotId: r.snapshot_id,
});

export function preparePreviewStatements(db: Database.Database) {
  return {
    insert: db.prepare<PreviewRow>(`INSERT INTO previews
      (id, session_id, environment, port, token_hash, public, command, created_by, created_at, created_ms, expires_at, expires_ms, revoked_at, snapshot_id)
      VALUES (@id, @session_id, @environment, @port, @token_hash, @public, @command, @created_by, @created_at, @created_ms, @expires_at, @expires_ms, @revoked_at, @snapshot_id)`),
    one: db.prepare<[string], PreviewRow>("SELECT * FROM previews WHERE id = ?"),
    tokenHash: db.prepare<[string], string>("SELECT token_hash FROM previews WHERE id = ?").pluck(),
    list: db.prepare<{ session_id: string | null; environment: string | null; live: number; now: number }, PreviewRow>(`
      SELECT * FROM previews
      WHERE (@session_id IS NULL OR session_id = @session_id) AND (@environment IS NULL OR environment = @environment)
        AND (@live = 0 OR (revoked_at IS NULL AND expires_ms > @now))
      ORDER BY created_ms DESC, id ASC`),
    update: db.prepare<{ id: string; session_id: string; snapshot_id: string | null; revoked_at: string | null }>(
      "UPDATE previews SET session_id = @session_id, snapshot_id = @snapshot_id, revoked_at = @revoked_at WHERE id = @id"),
  };
}

export type PreviewStatements = ReturnType<typeof preparePreviewStatements>;
type Runner = <T>(fn: (s: PreviewStatements) => T, duplicate?: string) => T;

export class SqlitePreviewRecords implements PreviewRecords {
  constructor(
    private readonly run: Runner,
    private readonly write: Runner,
  ) {}

  async createPreview(p: Preview, tokenHash: string): Promise<void> {
    const what = `preview ${JSON.stringify(p.id)}`;
    this.write((s) =>
      s.insert.run({
        id: p.id, session_id: p.sessionId, environment: p.environment, port: p.port, token_hash: tokenHash, public: p.public ? 1 : 0, command: p.command,
        created_by: p.createdBy, created_at: p.createdAt, created_ms: timestampMs(p.createdAt, `createdAt of ${what}`),
        expires_at: p.expiresAt, expires_ms: timestampMs(p.expiresAt, `expiresAt of ${what}`), revoked_at: p.revokedAt, snapshot_id: p.snapshotId,
      }), `${what} already exists; preview ids must be new`);
  }

  async getPreview(id: string): Promise<Preview | null> {
    return this.run((s) => {
      const row = s.one.get(id);
      return row === undefined ? null : previewFromRow(row);
    });
  }

  async previewTokenHash(id: string): Promise<string | null> {
    return this.run((s) => s.tokenHash.get(id) ?? null);
  }

  async listPreviews(filter: { sessionId?: string; environment?: string; live?: boolean; now?: string } = {}): Promise<Preview[]> {
    const now = filter.now === undefined ? Date.now() : timestampMs(filter.now, "now");
    return this.run((s) => s.list.all({ session_id: filter.sessionId ?? null, environment: filter.environment ?? null, live: filter.live ? 1 : 0, now }).map(previewFromRow));
  }

  async updatePreview(id: string, patch: Partial<Pick<Preview, "sessionId" | "snapshotId" | "revokedAt">>): Promise<Preview> {
    return this.write((s) => {
      const row = s.one.get(id);
      if (row === undefined) throw notFound("preview", id);
      const next = { ...previewFromRow(row), ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) } as Preview;
      s.update.run({ id, session_id: next.sessionId, snapshot_id: next.snapshotId, revoked_at: next.revokedAt });
      return next;
    });
  }
}
