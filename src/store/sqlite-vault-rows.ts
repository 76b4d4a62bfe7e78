/**
 * How the vault's records (secrets, egress records, sealed blobs) map to SQLite rows and back.
 * BLOB columns come back from better-sqlite3 as fresh Buffers, and inputs are copied before they
 * are bound, so callers never share memory with what is stored.
 */
import type { EgressRecordInput, SecretInfo, SecretInput, StoredEgressRecord, StoredSecret, StoredSecretScope } from "../core/store.ts";
import { invalid } from "../core/errors.ts";
import { toJson } from "./sqlite-rows.ts";

export interface SecretRow {
  name: string;
  scope_kind: string;
  scope_value: string;
  ciphertext: Buffer;
  iv: Buffer;
  tag: Buffer;
  key_id: string;
  created_at: string;
  updated_at: string;
  last_used_at: string | null;
}

/** A listing row: every column but the sealed value. */
export type SecretInfoRow = Omit<SecretRow, "ciphertext" | "iv" | "tag">;

export interface EgressRow {
  id: number;
  session_id: string;
  time: string;
  method: string;
  host: string;
  port: number;
  path: string;
  status: number;
  bytes_out: number;
  bytes_in: number;
  duration_ms: number;
  /** JSON array of secret names. */
  swapped: string;
  decision: string;
  rule: string;
  reason: string | null;
}

export interface SealedRow {
  key: string;
  ciphertext: Buffer;
  iv: Buffer;
  tag: Buffer;
  key_id: string;
  updated_at: string;
}

/** Parameters that name one secret. */
export interface SecretKeyParams {
  name: string;
  scope_kind: string;
  scope_value: string;
}

const KINDS = new Set(["global", "environment", "team", "agent"]);

/** The key columns of a secret; rejects `invalid_argument` for a scope the schema cannot hold. */
export function secretKey(name: string, scope: StoredSecretScope): SecretKeyParams {
  if (!KINDS.has(scope.kind)) throw invalid(`secret scope kind ${JSON.stringify(scope.kind)} is not one of global, environment, team, agent`);
  if ((scope.kind === "global") !== (scope.value === "")) {
    throw invalid(`secret scope ${scope.kind} needs ${scope.kind === "global" ? "an empty value" : "a non-empty value"}`);
  }
  return { name, scope_kind: scope.kind, scope_value: scope.value };
}

const copy = (b: Uint8Array): Buffer => Buffer.from(b);

export function secretToRow(s: SecretInput, now: string): SecretRow {
  return {
    ...secretKey(s.name, s.scope),
    ciphertext: copy(s.ciphertext),
    iv: copy(s.iv),
    tag: copy(s.tag),
    key_id: s.keyId,
    created_at: now,
    updated_at: now,
    last_used_at: null,
  };
}

export function secretInfoFromRow(r: SecretInfoRow): SecretInfo {
  return {
    name: r.name,
    scope: { kind: r.scope_kind as StoredSecretScope["kind"], value: r.scope_value },
    keyId: r.key_id,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    lastUsedAt: r.last_used_at,
  };
}

export function secretFromRow(r: SecretRow): StoredSecret {
  return { ...secretInfoFromRow(r), ciphertext: copy(r.ciphertext), iv: copy(r.iv), tag: copy(r.tag) };
}

export function egressToRow(e: EgressRecordInput): Omit<EgressRow, "id"> {
  return {
    session_id: e.sessionId,
    time: e.time,
    method: e.method,
    host: e.host,
    port: Math.round(e.port),
    path: e.path,
    status: Math.round(e.status),
    bytes_out: Math.round(e.bytesOut),
    bytes_in: Math.round(e.bytesIn),
    duration_ms: Math.round(e.durationMs),
    swapped: toJson(e.swapped, `swapped names of an egress record of session ${JSON.stringify(e.sessionId)}`),
    decision: e.decision,
    rule: e.rule,
    reason: e.reason ?? null,
  };
}

export function egressFromRow(r: EgressRow): StoredEgressRecord {
  let swapped: unknown;
  try {
    swapped = JSON.parse(r.swapped);
  } catch {
    swapped = [];
  }
  return {
    id: r.id,
    sessionId: r.session_id,
    time: r.time,
    method: r.method,
    host: r.host,
    port: r.port,
    path: r.path,
    status: r.status,
    bytesOut: r.bytes_out,
    bytesIn: r.bytes_in,
    durationMs: r.duration_ms,
    swapped: Array.isArray(swapped) ? swapped.map(String) : [],
    decision: r.decision as StoredEgressRecord["decision"],
    rule: r.rule,
    ...(r.reason === null ? {} : { reason: r.reason }),
  };
}
