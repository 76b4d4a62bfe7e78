import type { Environment, EnvironmentVersion, Layer, PoolMember, PoolSetting, Preview, Run, RunEvent, RunState, Session, SessionState, Snapshot, Template } from "./domain.ts";
import type { ApiToken, Approval, ApprovalState, AuditInput, AuditQuery, AuditRecord, Principal } from "./identity.ts";

/**
 * Persistence for the control plane. One interface, two implementations over time (SQLite embedded
 * by default; PostgreSQL for many nodes). Every method is atomic on its own; `transaction` groups
 * several. Rules every implementation follows (the conformance suite in test/store checks them):
 * - A getter for an unknown key resolves `null`; list methods resolve `[]` when there is nothing.
 * - Writes that would break a uniqueness rule reject with a PaddockError of code `conflict`.
 * - Returned objects are copies: mutating them changes nothing stored.
 * - Timestamps are ISO-8601 strings in UTC.
 */
export interface Store {
  /** Insert a run; a taken id rejects `conflict`. */
  createRun(r: Run): Promise<void>;
  /** Replace a run's mutable fields (state, sessionId, turns, agentSessionId, result, error, endedAt, updatedAt). */
  updateRun(r: Run): Promise<void>;
  getRun(id: string): Promise<Run | null>;
  /** Newest first. */
  listRuns(filter?: { environment?: string; states?: RunState[]; limit?: number }): Promise<Run[]>;
  /** Append transcript entries (their `seq` must continue the run's; a taken seq rejects `conflict`). */
  appendRunEvents(events: RunEvent[]): Promise<void>;
  /** Entries with seq > afterSeq, oldest first, at most `limit` (default 1000). */
  listRunEvents(runId: string, afterSeq?: number, limit?: number): Promise<RunEvent[]>;
  /**
   * Record a webhook delivery by its key (source, trigger and the sender's delivery id): true the
   * first time, false when it was seen before (a replay or a retry: one event, one run). Keys older
   * than `forgetBefore` may be dropped.
   */
  claimWebhookDelivery(key: string, receivedAt: string, forgetBefore: string): Promise<boolean>;
  /** Forget claimed delivery keys (a run that could not start for a passing reason: the sender's retry must start it). */
  releaseWebhookDeliveries(keys: string[]): Promise<void>;
  /** Keep a version's build log (replacing any). */
  putBuildLog(environment: string, version: number, log: string): Promise<void>;
  /** A version's build log, or null when none was kept. */
  getBuildLog(environment: string, version: number): Promise<string | null>;
  /** Register the next version of an environment (version = latest + 1, starting at 1). */
  addEnvironmentVersion(v: Omit<EnvironmentVersion, "version" | "createdAt" | "buildStatus" | "templateId" | "buildError">): Promise<EnvironmentVersion>;
  /** Record the end of a build; on success the environment's current version moves to it. */
  finishBuild(name: string, version: number, result: { templateId: string } | { error: string }): Promise<void>;
  getEnvironment(name: string): Promise<Environment | null>;
  listEnvironments(): Promise<Environment[]>;
  getEnvironmentVersion(name: string, version: number): Promise<EnvironmentVersion | null>;
  /** Versions of one environment, newest first. */
  listEnvironmentVersions(name: string): Promise<EnvironmentVersion[]>;
  /** Delete an environment and all its versions; resolves false when unknown. */
  deleteEnvironment(name: string): Promise<boolean>;

  /** Insert a layer; inserting an id that exists is a no-op (layers are content-keyed). */
  putLayer(layer: Layer): Promise<void>;
  getLayer(id: string): Promise<Layer | null>;
  listLayers(): Promise<Layer[]>;
  deleteLayer(id: string): Promise<boolean>;

  putTemplate(t: Template): Promise<void>;
  getTemplate(id: string): Promise<Template | null>;
  listTemplates(): Promise<Template[]>;

  /**
   * Insert a new session; its id must be new (`conflict` otherwise). A session started from a
   * snapshot (`snapshot` set) is inserted only while that snapshot exists (`not_found` otherwise),
   * in the same transaction, so a snapshot is never removed under a session being started from it.
   */
  createSession(s: Session): Promise<void>;
  /** Change fields of a session; rejects `not_found` for an unknown id. Returns the updated session. */
  updateSession(id: string, patch: Partial<Omit<Session, "id">>): Promise<Session>;
  getSession(id: string): Promise<Session | null>;
  /** Sessions newest first, optionally only those in the given states. */
  listSessions(filter?: { states?: SessionState[]; environment?: string }): Promise<Session[]>;
  deleteSession(id: string): Promise<boolean>;

  /** Insert a snapshot; a taken id or name rejects `conflict`. */
  createSnapshot(s: Snapshot): Promise<void>;
  getSnapshot(id: string): Promise<Snapshot | null>;
  getSnapshotByName(name: string): Promise<Snapshot | null>;
  /** Snapshots newest first, optionally of one environment. */
  listSnapshots(filter?: { environment?: string }): Promise<Snapshot[]>;
  /**
   * What uses a snapshot and so keeps it from being removed: live (`starting`/`running`) sessions
   * started from it as `session <id>`, pool members as `pool member <id>`, previews neither
   * revoked nor expired that would wake from it as `preview <id>`, paused E2B sandboxes as
   * `paused E2B sandbox <id>`.
   */
  snapshotUsers(id: string): Promise<string[]>;
  /**
   * Delete a snapshot unless something uses it (`snapshotUsers`, checked in the same transaction):
   * then it rejects `conflict` naming the users. Resolves false when unknown.
   */
  deleteSnapshot(id: string): Promise<boolean>;

  // --- previews (sqlite-previews.ts) ---
  /** Insert a preview with the sha256 (hex) of its token; a taken id rejects `conflict`. */
  createPreview(p: Preview, tokenHash: string): Promise<void>;
  getPreview(id: string): Promise<Preview | null>;
  /** The sha256 (hex) of a preview's token, or null when unknown. */
  previewTokenHash(id: string): Promise<string | null>;
  /** Newest first; `live`: neither revoked nor expired at `now` (ISO, default the present). */
  listPreviews(filter?: { sessionId?: string; environment?: string; live?: boolean; now?: string }): Promise<Preview[]>;
  /** Change a preview's session, snapshot or revocation; rejects `not_found` for an unknown id. */
  updatePreview(id: string, patch: Partial<Pick<Preview, "sessionId" | "snapshotId" | "revokedAt">>): Promise<Preview>;
  // --- end previews ---

  // --- E2B sandboxes (sqlite-e2b.ts; docs/e2b.md) ---
  /** Insert a sandbox row; a taken id rejects `conflict`. */
  createE2bSandbox(x: E2bSandbox): Promise<void>;
  getE2bSandbox(id: string): Promise<E2bSandbox | null>;
  /** The sandbox whose current session is `sessionId`, or null. */
  getE2bSandboxBySession(sessionId: string): Promise<E2bSandbox | null>;
  /** Every sandbox, oldest first (then by id): the order list pages follow. */
  listE2bSandboxes(): Promise<E2bSandbox[]>;
  /** Change fields of a sandbox; rejects `not_found` for an unknown id. */
  updateE2bSandbox(id: string, patch: Partial<Omit<E2bSandbox, "id">>): Promise<E2bSandbox>;
  /** Delete a sandbox and its access tokens; resolves false when unknown. */
  deleteE2bSandbox(id: string): Promise<boolean>;
  /**
   * Record an envd access token by its sha256 (hex), bound to a sandbox and the principal (id) it
   * was handed to, with the nonce the server derived it from (never the token itself).
   */
  addE2bAccessToken(t: E2bAccessToken & { tokenHash: string }): Promise<void>;
  /** The sandbox and principal an envd access token (by sha256, hex) is bound to, or null. */
  e2bAccessToken(tokenHash: string): Promise<E2bAccessToken | null>;
  /** The access tokens of one sandbox, or of all, oldest first: at most `limit`. */
  listE2bAccessTokens(filter: { sandboxId?: string; limit: number }): Promise<E2bAccessToken[]>;
  // --- end E2B sandboxes ---

  // --- session routes (sqlite-routes.ts; docs/routing.md) ---
  /** Record how a session's provider was chosen; a second record for one session rejects `conflict`. */
  putSessionRoute(r: SessionRoute): Promise<void>;
  /** The routing record of a session, or null (sessions from before routing, or from a snapshot or pool member that had none). */
  getSessionRoute(sessionId: string): Promise<SessionRoute | null>;
  /** Change a session's routing record (its provider after a failover, its skips, its measured cost); rejects `not_found`. */
  updateSessionRoute(sessionId: string, patch: Partial<Omit<SessionRoute, "sessionId">>): Promise<SessionRoute>;
  // --- end session routes ---

  /** Insert a pool member; a taken id (also a session's) rejects `conflict`. */
  addPoolMember(m: PoolMember): Promise<void>;
  /** Change fields of a member; rejects `not_found` when it is unknown (claimed or removed). */
  updatePoolMember(id: string, patch: Partial<Pick<PoolMember, "state" | "providerState">>): Promise<PoolMember>;
  getPoolMember(id: string): Promise<PoolMember | null>;
  /** Members oldest first, optionally of one environment. */
  listPoolMembers(filter?: { environment?: string }): Promise<PoolMember[]>;
  deletePoolMember(id: string): Promise<boolean>;
  /**
   * Claim the oldest `ready` member of an environment version, atomically: in one transaction the
   * member row is deleted and the session `make(member)` returns is inserted (its id must be the
   * member's). Two claims never get the same member. Resolves null when none is ready.
   */
  claimPoolMember(q: { environment: string; version: number }, make: (member: PoolMember) => Session): Promise<Session | null>;

  /** Insert or replace the pool size of an environment. Rejects `invalid_argument` when not 0 ≤ min ≤ max. */
  putPoolSetting(s: PoolSetting): Promise<void>;
  getPoolSetting(environment: string): Promise<PoolSetting | null>;
  /** By environment name. */
  listPoolSettings(): Promise<PoolSetting[]>;
  deletePoolSetting(environment: string): Promise<boolean>;

  /**
   * Insert or replace the sealed value of a secret, keyed by (name, scope). Replacing keeps the
   * row's `createdAt` and `lastUsedAt` and moves `updatedAt` to now. The store never sees a
   * plaintext value: `ciphertext` is opaque to it (the vault in src/gateway/vault.ts seals it).
   */
  putSecret(row: SecretInput): Promise<SecretInfo>;
  /** The sealed row of one secret in exactly that scope (no precedence here), or null. */
  getSecret(name: string, scope: StoredSecretScope): Promise<StoredSecret | null>;
  /** Every secret, by name then scope kind (global, environment, team, agent) then scope value. Never ciphertext. */
  listSecrets(): Promise<SecretInfo[]>;
  /** Delete one secret in exactly that scope; resolves false when unknown. */
  deleteSecret(name: string, scope: StoredSecretScope): Promise<boolean>;
  /** Move `lastUsedAt` forward to `at` (never backwards); resolves false when the secret is unknown. */
  touchSecret(name: string, scope: StoredSecretScope, at: string): Promise<boolean>;

  /** Append egress records, all or none, in order; each gets the next id (ids only grow). */
  addEgressRecords(records: EgressRecordInput[]): Promise<void>;
  /**
   * A session's egress records, oldest first (ascending id). With `afterId`: the first `limit`
   * records whose id is greater (paging forward, following). Without: the newest `limit` records
   * (the tail). `limit` absent means all of them. Unknown sessions resolve `[]`.
   */
  listEgressRecords(query: { sessionId: string; limit?: number; afterId?: number }): Promise<StoredEgressRecord[]>;

  /** Insert or replace a small sealed document under `key` (e.g. a session's CA key and placeholders). */
  putSealed(key: string, sealed: Sealed): Promise<void>;
  getSealed(key: string): Promise<(Sealed & { updatedAt: string }) | null>;
  /** Resolves false when unknown. */
  deleteSealed(key: string): Promise<boolean>;

  /** Insert a principal; a taken name rejects `conflict`. */
  createPrincipal(p: Principal): Promise<void>;
  getPrincipal(id: string): Promise<Principal | null>;
  getPrincipalByName(name: string): Promise<Principal | null>;
  /** Principals by name. */
  listPrincipals(): Promise<Principal[]>;
  /** Rejects `not_found` for an unknown id. */
  updatePrincipal(id: string, patch: Partial<Pick<Principal, "team" | "role" | "disabledAt">>): Promise<Principal>;

  addToken(t: ApiToken): Promise<void>;
  getToken(id: string): Promise<ApiToken | null>;
  /** A principal's tokens, oldest first. */
  listTokens(principalId: string): Promise<ApiToken[]>;
  /** Resolves false when unknown or already revoked. */
  revokeToken(id: string, at: string): Promise<boolean>;
  touchToken(id: string, at: string): Promise<void>;

  /**
   * Append audit records, all or none, in order, each chained to the one before: `seal` gets the
   * previous record's hash (`""` for the first) and the record with its `seq`, and returns its
   * hash. Runs in one write transaction, so the chain has no forks across processes.
   */
  appendAudit(records: AuditInput[], seal: (prevHash: string, record: AuditInput & { seq: number }) => string): Promise<AuditRecord[]>;
  /** Records oldest first matching every given filter; `afterSeq` pages forward. */
  listAudit(query: AuditQuery): Promise<AuditRecord[]>;
  /** The newest record, or null when there is none. */
  lastAudit(): Promise<AuditRecord | null>;

  createApproval(a: Approval): Promise<void>;
  getApproval(id: string): Promise<Approval | null>;
  /** Newest first. */
  listApprovals(filter?: { state?: ApprovalState; sessionId?: string }): Promise<Approval[]>;
  /** Move a pending approval to its final state; rejects `conflict` when it is no longer pending, `not_found` when unknown. */
  decideApproval(id: string, decision: Pick<Approval, "state" | "decidedBy" | "decidedAt" | "reason">): Promise<Approval>;

  close(): Promise<void>;
}

/** Where a stored secret applies: `global` has the value `""`; the others name an environment, team or agent. */
export interface StoredSecretScope {
  kind: "global" | "environment" | "team" | "agent";
  value: string;
}

/** AES-256-GCM output as the store keeps it; `keyId` names the key (a digest, never the key). */
export interface Sealed {
  ciphertext: Uint8Array;
  iv: Uint8Array;
  tag: Uint8Array;
  keyId: string;
}

/** What putSecret takes: the sealed value and where it applies. */
export interface SecretInput extends Sealed {
  name: string;
  scope: StoredSecretScope;
}

/** A secret without its value: what listings show. */
export interface SecretInfo {
  name: string;
  scope: StoredSecretScope;
  keyId: string;
  createdAt: string;
  updatedAt: string;
  lastUsedAt: string | null;
}

export type StoredSecret = SecretInfo & Sealed;

/**
 * One request through the egress gateway, allowed or denied. Defined here, in the lowest box that
 * needs it, and re-exported by the gateway as its `EgressRecord`. Never holds a secret value.
 */
export interface EgressRecordInput {
  sessionId: string;
  time: string;
  method: string;
  /** The host the gateway dialled (or would have), lower-case. */
  host: string;
  port: number;
  /** Path with query values dropped (`/v1/charges?limit=&expand=`). */
  path: string;
  /** Upstream status, or the gateway's own status for a refusal. */
  status: number;
  bytesOut: number;
  bytesIn: number;
  durationMs: number;
  /** Names of the secrets swapped into the request. */
  swapped: string[];
  decision: "allowed" | "denied";
  /** The rule that decided, e.g. `guardrails.network.allow[0] (runtime.yml:27)`, or a built-in reason. */
  rule: string;
  /** Why a request was refused, in words (no secret values). */
  reason?: string;
  /**
   * Set on records of the database gateway (one per statement: method QUERY/EXECUTE/COPY/PARSE/CONNECT,
   * path the statement text), so the audit can tell them from HTTP requests. Not stored as a column.
   */
  protocol?: "postgres";
}

/** An egress record with its id: increasing in insertion order, usable as a cursor (`afterId`). */
export interface StoredEgressRecord extends EgressRecordInput {
  id: number;
}

/** An envd access token's binding (the token itself is never stored). */
export interface E2bAccessToken {
  sandboxId: string;
  /** The principal's id. */
  principal: string;
  nonce: string;
  createdAt: string;
}

/**
 * An E2B sandbox (docs/e2b.md): the id E2B's SDK uses, stable across pause and resume, and the
 * Paddock session that backs it now. Running: `sessionId` is a live session. Paused: that session
 * was stopped after `snapshotId` captured its files; connect starts a new session from it.
 */
export interface E2bSandbox {
  /** Lower-case letters and digits, 20 characters, like E2B's own ids. */
  id: string;
  /** The current (or, when paused, the last) session. */
  sessionId: string;
  /** The environment (E2B template) it runs. */
  environment: string;
  /** The templateID the caller sent (an environment name). */
  templateId: string;
  /** E2B metadata: string keys and values, returned as given and used by list filters. */
  metadata: Record<string, string>;
  /** E2B envVars: the environment every command starts with (not secrets: see docs/e2b.md). */
  envVars: Record<string, string>;
  state: "running" | "paused";
  /** Paused: the snapshot holding its files. */
  snapshotId: string | null;
  /** The human it runs for, and the agent that created it (when one did). */
  startedBy: string;
  agent: string | null;
  createdAt: string;
  /** When the current session started (E2B's startedAt). */
  startedAt: string;
  /** When it is killed unless the timeout is changed (E2B's endAt); paused: when it was paused. */
  endAt: string;
  /** The lifetime (ms) it was last given: what a resume without a timeout gets again. */
  timeoutMs: number;
}

/** A provider a session start passed over, and why (failover: its create failed, or its breaker was open). */
export interface RouteSkip {
  provider: string;
  /** ISO 8601. */
  at: string;
  reason: string;
}

/**
 * How a session's provider was chosen (docs/routing.md): the provider it landed on, the
 * strategy's reason, the cost estimate at start, every provider skipped on the way, and, once it
 * ended, its measured runtime cost (runtime × the same prices).
 */
export interface SessionRoute {
  sessionId: string;
  provider: string;
  strategy: string;
  reason: string;
  /** USD for the expected duration at the chosen provider's prices. */
  estimateUsd: number;
  /** The prices the estimate (and the measured cost) use, and what was priced. */
  price: { perVcpuHour: number; perGibHour: number; source: string; cpu: number; memoryGib: number };
  skips: RouteSkip[];
  /** Every candidate with its factors (the route explanation), as JSON. */
  decision: Record<string, unknown>;
  createdAt: string;
  /** Set when the session ended: how long it ran and what that cost at `price`. */
  runtimeMs: number | null;
  measuredUsd: number | null;
}
