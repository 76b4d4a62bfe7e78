/**
 * How domain objects map to SQLite rows and back. Every read builds a new object (JSON columns are
 * parsed afresh), and every write serialises its input, so callers never share memory with what is
 * stored: the "returned objects are copies" rule of the Store interface holds by construction.
 */
import type { Environment, EnvironmentVersion, Layer, Session, SessionState, Template } from "../core/domain.ts";
import { internal, invalid } from "../core/errors.ts";

export interface EnvironmentRow {
  name: string;
  current_version: number | null;
  latest_version: number;
  updated_at: string;
}

export interface VersionRow {
  name: string;
  version: number;
  file_name: string;
  source: string;
  /** JSON. */
  spec: string;
  source_digest: string;
  created_at: string;
  created_by: string;
  build_status: string;
  template_id: string | null;
  build_error: string | null;
}

export interface LayerRow {
  id: string;
  parent_id: string | null;
  command: string;
  content_digest: string;
  size_bytes: number;
  created_at: string;
}

export interface TemplateRow {
  id: string;
  environment: string;
  version: number;
  base: string;
  /** JSON array of layer ids, bottom first. */
  layers: string;
  created_at: string;
}

export interface SessionRow {
  id: string;
  environment: string;
  version: number;
  template_id: string;
  provider: string;
  state: string;
  created_at: string;
  /** `created_at` as epoch milliseconds: the sort key, so "…:00Z" and "…:00.000Z" order alike. */
  created_ms: number;
  expires_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
  /** JSON object. */
  provider_state: string;
  started_by: string;
  agent: string | null;
  snapshot_id: string | null;
}

/** The store's clock: ISO-8601 in UTC with milliseconds, e.g. `2026-11-02T10:04:05.123Z`. */
export function nowIso(): string {
  return new Date().toISOString();
}

/** Serialise a JSON column; `undefined` is stored as `null` (JSON has no undefined). */
export function toJson(value: unknown, what: string): string {
  try {
    return JSON.stringify(value) ?? "null";
  } catch (err) {
    throw invalid(`${what} must be JSON-serialisable (plain objects, arrays, strings, numbers, booleans, null): ${String(err)}`);
  }
}

export function fromJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw internal(`the stored ${what} is not valid JSON; the database may have been edited by hand`, err);
  }
}

/** Epoch milliseconds of an ISO-8601 timestamp; rejects `invalid_argument` when it does not parse. */
export function timestampMs(value: string, what: string): number {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) {
    throw invalid(`${what} must be an ISO-8601 timestamp such as 2026-11-02T10:04:05.000Z, got ${JSON.stringify(value)}`);
  }
  return ms;
}

export function environmentFromRow(r: EnvironmentRow): Environment {
  return { name: r.name, currentVersion: r.current_version, latestVersion: r.latest_version, updatedAt: r.updated_at };
}

export function versionToRow(v: EnvironmentVersion): VersionRow {
  return {
    name: v.name,
    version: v.version,
    file_name: v.fileName,
    source: v.source,
    spec: toJson(v.spec, `spec of environment ${JSON.stringify(v.name)}`),
    source_digest: v.sourceDigest,
    created_at: v.createdAt,
    created_by: v.createdBy,
    build_status: v.buildStatus,
    template_id: v.templateId,
    build_error: v.buildError,
  };
}

export function versionFromRow(r: VersionRow): EnvironmentVersion {
  return {
    name: r.name,
    version: r.version,
    fileName: r.file_name,
    source: r.source,
    spec: fromJson(r.spec, `spec of ${r.name} v${r.version}`),
    sourceDigest: r.source_digest,
    createdAt: r.created_at,
    createdBy: r.created_by,
    buildStatus: r.build_status as EnvironmentVersion["buildStatus"],
    templateId: r.template_id,
    buildError: r.build_error,
  };
}

export function layerToRow(l: Layer): LayerRow {
  return {
    id: l.id,
    parent_id: l.parentId,
    command: l.command,
    content_digest: l.contentDigest,
    size_bytes: l.sizeBytes,
    created_at: l.createdAt,
  };
}

export function layerFromRow(r: LayerRow): Layer {
  return {
    id: r.id,
    parentId: r.parent_id,
    command: r.command,
    contentDigest: r.content_digest,
    sizeBytes: r.size_bytes,
    createdAt: r.created_at,
  };
}

export function templateToRow(t: Template): TemplateRow {
  return {
    id: t.id,
    environment: t.environment,
    version: t.version,
    base: t.base,
    layers: toJson(t.layers, `layers of template ${JSON.stringify(t.id)}`),
    created_at: t.createdAt,
  };
}

export function templateFromRow(r: TemplateRow): Template {
  const layers = fromJson(r.layers, `layer list of template ${r.id}`);
  return {
    id: r.id,
    environment: r.environment,
    version: r.version,
    base: r.base,
    layers: Array.isArray(layers) ? layers.map(String) : [],
    createdAt: r.created_at,
  };
}

export function sessionToRow(s: Session): SessionRow {
  return {
    id: s.id,
    environment: s.environment,
    version: s.version,
    template_id: s.templateId,
    provider: s.provider,
    state: s.state,
    created_at: s.createdAt,
    created_ms: timestampMs(s.createdAt, `createdAt of session ${JSON.stringify(s.id)}`),
    expires_at: s.expiresAt,
    ended_at: s.endedAt,
    end_reason: s.endReason,
    provider_state: toJson(s.providerState, `providerState of session ${JSON.stringify(s.id)}`),
    started_by: s.startedBy,
    agent: s.agent,
    snapshot_id: s.snapshot,
  };
}

export function sessionFromRow(r: SessionRow): Session {
  return {
    id: r.id,
    environment: r.environment,
    version: r.version,
    templateId: r.template_id,
    provider: r.provider,
    state: r.state as SessionState,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    endedAt: r.ended_at,
    endReason: r.end_reason,
    providerState: fromJson(r.provider_state, `providerState of session ${r.id}`) as Record<string, unknown>,
    startedBy: r.started_by,
    agent: r.agent,
    snapshot: r.snapshot_id,
  };
}
