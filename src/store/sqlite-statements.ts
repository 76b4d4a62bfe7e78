/**
 * Every SQL statement the SQLite store runs, prepared once when the store opens. Named parameters
 * (`@field`) bind from the row objects of sqlite-rows.ts, whose keys are the column names.
 */
import type Database from "better-sqlite3";
import type { EnvironmentRow, LayerRow, SessionRow, TemplateRow, VersionRow } from "./sqlite-rows.ts";

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
        (id, environment, version, template_id, provider, state, created_at, created_ms, expires_at, ended_at, end_reason, provider_state)
      VALUES
        (@id, @environment, @version, @template_id, @provider, @state, @created_at, @created_ms, @expires_at, @ended_at, @end_reason, @provider_state)`),
    replaceSession: db.prepare<SessionRow>(`
      UPDATE sessions SET environment = @environment, version = @version, template_id = @template_id, provider = @provider,
        state = @state, created_at = @created_at, created_ms = @created_ms, expires_at = @expires_at, ended_at = @ended_at,
        end_reason = @end_reason, provider_state = @provider_state
      WHERE id = @id`),
    getSession: db.prepare<[string], SessionRow>("SELECT * FROM sessions WHERE id = ?"),
    listSessions: db.prepare<SessionFilterParams, SessionRow>(`
      SELECT * FROM sessions
      WHERE (@states IS NULL OR state IN (SELECT value FROM json_each(@states)))
        AND (@environment IS NULL OR environment = @environment)
      ORDER BY created_ms DESC, id ASC`),
    deleteSession: db.prepare<[string]>("DELETE FROM sessions WHERE id = ?"),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
