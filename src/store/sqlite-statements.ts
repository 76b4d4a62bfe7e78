/**
 * Every SQL statement the SQLite store runs, prepared once when the store opens. Named parameters
 * (`@field`) bind from the row objects of sqlite-rows.ts, whose keys are the column names.
 */
import type Database from "better-sqlite3";
import type { EnvironmentRow, LayerRow, SessionRow, TemplateRow, VersionRow } from "./sqlite-rows.ts";
import type { EgressRow, SealedRow, SecretInfoRow, SecretKeyParams, SecretRow } from "./sqlite-vault-rows.ts";

/** Parameters of the session list query: `states` is a JSON array, or null for "any state". */
interface SessionFilterParams {
  states: string | null;
  environment: string | null;
}

export function prepareStatements(db: Database.Database) {
  return {
    // Environments: the row is created by the first version and bumped by every later one.
    nextVersion: db.prepare<{ name: string; now: string }, number>(`
      INSERT INTO environments (name, current_version, latest_version, updated_at) VALUES (@name, NULL, 1, @now)
      ON CONFLICT (name) DO UPDATE SET latest_version = latest_version + 1, updated_at = excluded.updated_at
      RETURNING latest_version`).pluck(),
    getEnvironment: db.prepare<[string], EnvironmentRow>("SELECT * FROM environments WHERE name = ?"),
    listEnvironments: db.prepare<[], EnvironmentRow>("SELECT * FROM environments ORDER BY name"),
    deleteEnvironment: db.prepare<[string]>("DELETE FROM environments WHERE name = ?"),
    // Moves the current version forward only: an older build finishing late never rolls it back.
    advanceCurrent: db.prepare<{ name: string; version: number; now: string }>(`
      UPDATE environments SET current_version = @version, updated_at = @now
      WHERE name = @name AND (current_version IS NULL OR current_version < @version)`),

    insertVersion: db.prepare<VersionRow>(`
      INSERT INTO environment_versions
        (name, version, file_name, source, spec, source_digest, created_at, created_by, build_status, template_id, build_error)
      VALUES
        (@name, @version, @file_name, @source, @spec, @source_digest, @created_at, @created_by, @build_status, @template_id, @build_error)`),
    getVersion: db.prepare<[string, number], VersionRow>("SELECT * FROM environment_versions WHERE name = ? AND version = ?"),
    listVersions: db.prepare<[string], VersionRow>("SELECT * FROM environment_versions WHERE name = ? ORDER BY version DESC"),
    finishVersion: db.prepare<{ name: string; version: number; status: string; templateId: string | null; error: string | null }>(`
      UPDATE environment_versions SET build_status = @status, template_id = @templateId, build_error = @error
      WHERE name = @name AND version = @version`),
    deleteVersions: db.prepare<[string]>("DELETE FROM environment_versions WHERE name = ?"),

    // Layers are content-keyed: the first insert of an id wins, later ones change nothing.
    putLayer: db.prepare<LayerRow>(`
      INSERT INTO layers (id, parent_id, command, content_digest, size_bytes, created_at)
      VALUES (@id, @parent_id, @command, @content_digest, @size_bytes, @created_at)
      ON CONFLICT (id) DO NOTHING`),
    getLayer: db.prepare<[string], LayerRow>("SELECT * FROM layers WHERE id = ?"),
    listLayers: db.prepare<[], LayerRow>("SELECT * FROM layers ORDER BY created_at, id"),
    deleteLayer: db.prepare<[string]>("DELETE FROM layers WHERE id = ?"),

    insertTemplate: db.prepare<TemplateRow>(`
      INSERT INTO templates (id, environment, version, base, layers, created_at)
      VALUES (@id, @environment, @version, @base, @layers, @created_at)`),
    getTemplate: db.prepare<[string], TemplateRow>("SELECT * FROM templates WHERE id = ?"),
    listTemplates: db.prepare<[], TemplateRow>("SELECT * FROM templates ORDER BY created_at, id"),

    insertSession: db.prepare<SessionRow>(`
      INSERT INTO sessions
        (id, environment, version, template_id, provider, state, created_at, created_ms, expires_at, ended_at, end_reason, provider_state, started_by, agent, snapshot_id)
      VALUES
        (@id, @environment, @version, @template_id, @provider, @state, @created_at, @created_ms, @expires_at, @ended_at, @end_reason, @provider_state, @started_by, @agent, @snapshot_id)`),
    replaceSession: db.prepare<SessionRow>(`
      UPDATE sessions SET environment = @environment, version = @version, template_id = @template_id, provider = @provider,
        state = @state, created_at = @created_at, created_ms = @created_ms, expires_at = @expires_at, ended_at = @ended_at,
        end_reason = @end_reason, provider_state = @provider_state, started_by = @started_by, agent = @agent, snapshot_id = @snapshot_id
      WHERE id = @id`),
    getSession: db.prepare<[string], SessionRow>("SELECT * FROM sessions WHERE id = ?"),
    listSessions: db.prepare<SessionFilterParams, SessionRow>(`
      SELECT * FROM sessions
      WHERE (@states IS NULL OR state IN (SELECT value FROM json_each(@states)))
        AND (@environment IS NULL OR environment = @environment)
      ORDER BY created_ms DESC, id ASC`),
    deleteSession: db.prepare<[string]>("DELETE FROM sessions WHERE id = ?"),

    // Secrets: replacing a value keeps when it was created and last used.
    putSecret: db.prepare<SecretRow, SecretInfoRow>(`
      INSERT INTO secrets (name, scope_kind, scope_value, ciphertext, iv, tag, key_id, created_at, updated_at, last_used_at)
      VALUES (@name, @scope_kind, @scope_value, @ciphertext, @iv, @tag, @key_id, @created_at, @updated_at, @last_used_at)
      ON CONFLICT (name, scope_kind, scope_value) DO UPDATE SET
        ciphertext = excluded.ciphertext, iv = excluded.iv, tag = excluded.tag, key_id = excluded.key_id, updated_at = excluded.updated_at
      RETURNING name, scope_kind, scope_value, key_id, created_at, updated_at, last_used_at`),
    getSecret: db.prepare<SecretKeyParams, SecretRow>(
      "SELECT * FROM secrets WHERE name = @name AND scope_kind = @scope_kind AND scope_value = @scope_value",
    ),
    listSecrets: db.prepare<[], SecretInfoRow>(`
      SELECT name, scope_kind, scope_value, key_id, created_at, updated_at, last_used_at FROM secrets
      ORDER BY name, CASE scope_kind WHEN 'global' THEN 0 WHEN 'environment' THEN 1 WHEN 'team' THEN 2 ELSE 3 END, scope_value`),
    deleteSecret: db.prepare<SecretKeyParams>("DELETE FROM secrets WHERE name = @name AND scope_kind = @scope_kind AND scope_value = @scope_value"),
    touchSecret: db.prepare<SecretKeyParams & { at: string }>(`
      UPDATE secrets SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < @at THEN @at ELSE last_used_at END
      WHERE name = @name AND scope_kind = @scope_kind AND scope_value = @scope_value`),

    addEgress: db.prepare<Omit<EgressRow, "id">>(`
      INSERT INTO egress_records (session_id, time, method, host, port, path, status, bytes_out, bytes_in, duration_ms, swapped, decision, rule, reason)
      VALUES (@session_id, @time, @method, @host, @port, @path, @status, @bytes_out, @bytes_in, @duration_ms, @swapped, @decision, @rule, @reason)`),
    // limit -1 is SQLite's "no limit".
    egressAfter: db.prepare<{ session: string; after: number; limit: number }, EgressRow>(`
      SELECT * FROM egress_records WHERE session_id = @session AND id > @after ORDER BY id ASC LIMIT @limit`),
    egressTail: db.prepare<{ session: string; limit: number }, EgressRow>(`
      SELECT * FROM (SELECT * FROM egress_records WHERE session_id = @session ORDER BY id DESC LIMIT @limit) ORDER BY id ASC`),

    putSealed: db.prepare<SealedRow>(`
      INSERT INTO sealed_blobs (key, ciphertext, iv, tag, key_id, updated_at) VALUES (@key, @ciphertext, @iv, @tag, @key_id, @updated_at)
      ON CONFLICT (key) DO UPDATE SET ciphertext = excluded.ciphertext, iv = excluded.iv, tag = excluded.tag,
        key_id = excluded.key_id, updated_at = excluded.updated_at`),
    getSealed: db.prepare<[string], SealedRow>("SELECT * FROM sealed_blobs WHERE key = ?"),
    deleteSealed: db.prepare<[string]>("DELETE FROM sealed_blobs WHERE key = ?"),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
