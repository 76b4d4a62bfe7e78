/**
 * The SQLite schema as an ordered list of migrations. A migration is never edited once released:
 * a later issue that needs a table or column appends `{ version: N + 1, … }`. `applyMigrations`
 * runs every migration the database has not recorded in `schema_migrations`, all in one IMMEDIATE
 * transaction (so two processes opening the same file cannot both migrate, and a crash half-way
 * leaves the previous schema intact).
 */
import type Database from "better-sqlite3";
import { internal, unavailable } from "../core/errors.ts";

export interface Migration {
  /** 1, 2, 3… strictly increasing; recorded in `schema_migrations.version`. */
  readonly version: number;
  /** Short description, recorded alongside the version for people reading the database. */
  readonly name: string;
  /** Statements run with `exec`, inside the migration transaction. */
  readonly sql: string;
}

// STRICT tables: SQLite otherwise stores a string in an INTEGER column without complaint.
// JSON columns (spec, layers, provider_state) are TEXT written only through JSON.stringify.
// Sessions and templates deliberately have no foreign key to environments: deleting an environment
// keeps the history of sessions that ran from it.
const INITIAL = `
CREATE TABLE environments (
  name TEXT PRIMARY KEY,
  current_version INTEGER,
  latest_version INTEGER NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE environment_versions (
  name TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,
  version INTEGER NOT NULL,
  file_name TEXT NOT NULL,
  source TEXT NOT NULL,
  spec TEXT NOT NULL,
  source_digest TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  build_status TEXT NOT NULL,
  template_id TEXT,
  build_error TEXT,
  PRIMARY KEY (name, version)
) STRICT;

CREATE TABLE layers (
  id TEXT PRIMARY KEY,
  parent_id TEXT,
  command TEXT NOT NULL,
  content_digest TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  created_at TEXT NOT NULL
) STRICT;

CREATE TABLE templates (
  id TEXT PRIMARY KEY,
  environment TEXT NOT NULL,
  version INTEGER NOT NULL,
  base TEXT NOT NULL,
  layers TEXT NOT NULL,
  created_at TEXT NOT NULL
) STRICT;

CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  environment TEXT NOT NULL,
  version INTEGER NOT NULL,
  template_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_at TEXT,
  ended_at TEXT,
  end_reason TEXT,
  provider_state TEXT NOT NULL
) STRICT;

CREATE INDEX sessions_newest_first ON sessions (created_ms DESC, id);
CREATE INDEX sessions_by_environment ON sessions (environment, created_ms DESC, id);
CREATE INDEX sessions_by_state ON sessions (state);
`;

// The vault's tables. Secret values are stored only as AES-256-GCM ciphertext sealed by the vault
// (src/gateway/vault.ts) with the name and scope as associated data; the store never sees plaintext.
// `scope_value` is '' for global so the uniqueness rule needs no NULL handling. Egress records have
// no foreign key to sessions: the log of what left a sandbox outlives the session's row.
const VAULT = `
CREATE TABLE secrets (
  name TEXT NOT NULL,
  scope_kind TEXT NOT NULL CHECK (scope_kind IN ('global', 'environment', 'team', 'agent')),
  scope_value TEXT NOT NULL,
  ciphertext BLOB NOT NULL,
  iv BLOB NOT NULL,
  tag BLOB NOT NULL,
  key_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  last_used_at TEXT,
  UNIQUE (name, scope_kind, scope_value),
  CHECK ((scope_kind = 'global') = (scope_value = ''))
) STRICT;

CREATE TABLE egress_records (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT NOT NULL,
  time TEXT NOT NULL,
  method TEXT NOT NULL,
  host TEXT NOT NULL,
  port INTEGER NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  bytes_out INTEGER NOT NULL,
  bytes_in INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  swapped TEXT NOT NULL,
  decision TEXT NOT NULL CHECK (decision IN ('allowed', 'denied')),
  rule TEXT NOT NULL,
  reason TEXT
) STRICT;

CREATE INDEX egress_by_session ON egress_records (session_id, id);

CREATE TABLE sealed_blobs (
  key TEXT PRIMARY KEY,
  ciphertext BLOB NOT NULL,
  iv BLOB NOT NULL,
  tag BLOB NOT NULL,
  key_id TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;
`;

// Identity and audit. Tokens keep only a digest of their secret part. Audit records are chained
// (prev_hash → hash, computed by src/guard/audit.ts with a key the database never holds) and the
// triggers refuse UPDATE and DELETE, so the only way to alter history is to bypass SQLite's own
// rules, which \`paddock audit verify\` then detects.
const GUARD = `
ALTER TABLE sessions ADD COLUMN started_by TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE sessions ADD COLUMN agent TEXT;

CREATE TABLE principals (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('human', 'agent')),
  team TEXT,
  role TEXT NOT NULL,
  created_at TEXT NOT NULL,
  disabled_at TEXT
) STRICT;

CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  principal_id TEXT NOT NULL REFERENCES principals(id),
  digest TEXT NOT NULL,
  label TEXT NOT NULL,
  created_at TEXT NOT NULL,
  last_used_at TEXT,
  revoked_at TEXT
) STRICT;

CREATE TABLE audit_records (
  seq INTEGER PRIMARY KEY,
  time TEXT NOT NULL,
  actor TEXT NOT NULL,
  actor_kind TEXT NOT NULL,
  on_behalf_of TEXT,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  environment TEXT,
  session_id TEXT,
  decision TEXT NOT NULL,
  rule TEXT,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
) STRICT;

CREATE INDEX audit_by_session ON audit_records (session_id, seq);
CREATE INDEX audit_by_actor ON audit_records (actor, seq);
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;

CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  environment TEXT NOT NULL,
  argv TEXT NOT NULL,
  program TEXT NOT NULL,
  rule TEXT NOT NULL,
  deploying INTEGER NOT NULL,
  requested_by TEXT NOT NULL,
  requested_by_kind TEXT NOT NULL,
  on_behalf_of TEXT,
  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired')),
  decided_by TEXT,
  decided_at TEXT,
  reason TEXT,
  created_at TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_at TEXT NOT NULL
) STRICT;
CREATE INDEX approvals_by_state ON approvals (state, created_ms DESC);
`;

// Snapshots and warm pools. A session started from a snapshot names it (snapshot_id), which is
// what keeps the snapshot from being removed while the session lives. Pool members are not
// sessions: no route reads this table, and a claim moves a member into sessions (same id) in
// one transaction. pool_members.snapshot_id is a seam for pools of a snapshot's sandboxes.
const SNAPSHOTS = `
ALTER TABLE sessions ADD COLUMN snapshot_id TEXT;
CREATE INDEX sessions_by_snapshot ON sessions (snapshot_id) WHERE snapshot_id IS NOT NULL;

CREATE TABLE snapshots (
  id TEXT PRIMARY KEY,
  name TEXT UNIQUE,
  environment TEXT NOT NULL,
  version INTEGER NOT NULL,
  template_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  source_session TEXT NOT NULL,
  layer_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  frozen_ms REAL NOT NULL,
  auto_remove INTEGER NOT NULL CHECK (auto_remove IN (0, 1))
) STRICT;
CREATE INDEX snapshots_newest_first ON snapshots (created_ms DESC, id);

CREATE TABLE pool_members (
  id TEXT PRIMARY KEY,
  environment TEXT NOT NULL,
  version INTEGER NOT NULL,
  template_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  snapshot_id TEXT,
  state TEXT NOT NULL CHECK (state IN ('starting', 'ready')),
  created_at TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  provider_state TEXT NOT NULL
) STRICT;
CREATE INDEX pool_members_ready ON pool_members (environment, version, state, created_ms);

CREATE TABLE pool_settings (
  environment TEXT PRIMARY KEY,
  min INTEGER NOT NULL CHECK (min >= 0),
  max INTEGER NOT NULL CHECK (max >= min),
  updated_at TEXT NOT NULL,
  updated_by TEXT NOT NULL
) STRICT;
`;

// Agent runs and their transcripts (append-only, by sequence number), and the webhook deliveries
// seen (one event, one run: a replayed or retried delivery finds its key taken).
const RUNS = `
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  environment TEXT NOT NULL,
  version INTEGER NOT NULL,
  session_id TEXT,
  agent TEXT NOT NULL,
  started_by TEXT NOT NULL,
  trigger_json TEXT,
  prompt TEXT NOT NULL,
  outcome TEXT NOT NULL CHECK (outcome IN ('keep', 'snapshot', 'stop')),
  state TEXT NOT NULL CHECK (state IN ('starting', 'running', 'idle', 'done', 'failed', 'cancelled')),
  turns INTEGER NOT NULL,
  agent_session_id TEXT,
  created_at TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_at TEXT NOT NULL,
  ended_at TEXT,
  result_json TEXT,
  error TEXT
) STRICT;
CREATE INDEX runs_newest_first ON runs (created_ms DESC, id);
CREATE INDEX runs_by_session ON runs (session_id) WHERE session_id IS NOT NULL;

CREATE TABLE run_events (
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  turn INTEGER NOT NULL,
  time TEXT NOT NULL,
  event_json TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE webhook_deliveries (
  key TEXT PRIMARY KEY,
  received_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (received_ms);
`;

// Previews (docs/previews.md): one port of one session behind a URL. Only a sha256 of the visitor
// token is kept. snapshot_id is the snapshot a visit wakes the session from; a preview neither
// revoked nor expired keeps it from being removed (sqlite-snapshots.ts, users).
const PREVIEWS = `
CREATE TABLE previews (
  id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  environment TEXT NOT NULL,
  port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
  token_hash TEXT NOT NULL,
  public INTEGER NOT NULL CHECK (public IN (0, 1)),
  command TEXT,
  created_by TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_at TEXT NOT NULL,
  expires_ms INTEGER NOT NULL,
  revoked_at TEXT,
  snapshot_id TEXT
) STRICT;
CREATE INDEX previews_newest_first ON previews (created_ms DESC, id);
CREATE INDEX previews_by_session ON previews (session_id);
CREATE INDEX previews_by_snapshot ON previews (snapshot_id) WHERE snapshot_id IS NOT NULL;
`;

// Each build's log (steps, their output, exit codes), kept bounded: what `paddock env log` and
// the UI's build history show. Builds never get secrets, so the text is stored as it is.
const BUILD_LOGS = `
CREATE TABLE build_logs (
  environment TEXT NOT NULL,
  version INTEGER NOT NULL,
  log TEXT NOT NULL,
  PRIMARY KEY (environment, version)
) STRICT;
`;

// E2B sandboxes (docs/e2b.md): the id E2B's SDK knows → the session behind it now, and the
// per-sandbox envd access tokens, kept as sha256 like API tokens, beside the nonce the server
// derives each from with a key of the vault's (to check signed file URLs, which need the token).
const E2B = `
CREATE TABLE e2b_sandboxes (
  id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  environment TEXT NOT NULL,
  template_id TEXT NOT NULL,
  metadata TEXT NOT NULL,
  env_vars TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running', 'paused')),
  snapshot_id TEXT,
  started_by TEXT NOT NULL,
  agent TEXT,
  created_at TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  end_at TEXT NOT NULL,
  timeout_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX e2b_sandboxes_by_session ON e2b_sandboxes (session_id);
CREATE INDEX e2b_sandboxes_oldest_first ON e2b_sandboxes (created_ms, id);

CREATE TABLE e2b_access_tokens (
  token_hash TEXT PRIMARY KEY,
  sandbox_id TEXT NOT NULL REFERENCES e2b_sandboxes(id) ON DELETE CASCADE,
  principal TEXT NOT NULL,
  nonce TEXT NOT NULL,
  created_at TEXT NOT NULL
) STRICT;
CREATE INDEX e2b_access_tokens_by_sandbox ON e2b_access_tokens (sandbox_id);
`;

// How each session's provider was chosen (docs/routing.md): one row per session, written at
// start (provider, reason, estimate, the full explanation), changed by failover (skips) and at
// the end (measured runtime and cost). No foreign key, like sessions' own history tables: a
// removed session's row goes with deleteSession's caller, not a cascade.
const ROUTES = `
CREATE TABLE session_routes (
  session_id TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  strategy TEXT NOT NULL,
  reason TEXT NOT NULL,
  estimate_usd REAL NOT NULL,
  price_json TEXT NOT NULL,
  skips_json TEXT NOT NULL,
  decision_json TEXT NOT NULL,
  created_at TEXT NOT NULL,
  runtime_ms INTEGER,
  measured_usd REAL
) STRICT;
`;

/** Every migration, oldest first. Append only. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: "environments, versions, layers, templates, sessions", sql: INITIAL },
  { version: 2, name: "secrets, egress records, sealed blobs", sql: VAULT },
  { version: 3, name: "principals, tokens, audit records, approvals", sql: GUARD },
  { version: 4, name: "snapshots, pool members, pool settings", sql: SNAPSHOTS },
  { version: 5, name: "agent runs, run transcripts, webhook deliveries", sql: RUNS },
  { version: 6, name: "previews", sql: PREVIEWS },
  { version: 7, name: "build logs", sql: BUILD_LOGS },
  { version: 8, name: "E2B sandboxes and envd access tokens", sql: E2B },
  { version: 9, name: "session routes (provider, reason, cost estimate, skips, measured cost)", sql: ROUTES },
];

function checkOrder(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    const previous = i === 0 ? 0 : (migrations[i - 1]?.version ?? 0);
    if (!Number.isInteger(m.version) || m.version <= previous) {
      throw internal(`migration ${JSON.stringify(m.name)} has version ${m.version}; versions must be integers increasing from 1`);
    }
  });
}

/**
 * Bring `db` up to the newest migration. Resolves the versions applied now (empty when the schema
 * was current). Rejects `unavailable` when the database was migrated by a newer Paddock, rather
 * than running old code against a schema it does not know.
 */
export function applyMigrations(
  db: Database.Database,
  migrations: readonly Migration[] = MIGRATIONS,
  now: () => string = () => new Date().toISOString(),
): number[] {
  checkOrder(migrations);
  const migrate = db.transaction((): number[] => {
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at TEXT NOT NULL
    ) STRICT`);
    const recorded = db.prepare<[], number>("SELECT version FROM schema_migrations").pluck().all();
    const applied = new Set(recorded);
    const newestKnown = migrations.at(-1)?.version ?? 0;
    const newestRecorded = Math.max(0, ...recorded);
    if (newestRecorded > newestKnown) {
      throw unavailable(
        `the SQLite store ${db.name} has schema version ${newestRecorded} but this Paddock knows up to ${newestKnown}; ` +
          "upgrade Paddock, or point it at another database file",
      );
    }
    const record = db.prepare<[number, string, string]>("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
    const done: number[] = [];
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      db.exec(m.sql);
      record.run(m.version, m.name, now());
      done.push(m.version);
    }
    return done;
  });
  return migrate.immediate();
}
