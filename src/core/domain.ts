/**
 * Paddock's nouns as they are stored and served. Words follow DESIGN.md: an *environment* is a
 * named, versioned environment file; its built form is a *template* (a stack of layers); a
 * *session* is one running sandbox started from a template.
 */

/** One version of an environment file, exactly as applied. */
export interface EnvironmentVersion {
  name: string;
  /** 1, 2, 3… per environment name. */
  version: number;
  /** The file name it was applied from, e.g. `runtime.yml` (used in located messages). */
  fileName: string;
  /** The file's text, byte for byte. */
  source: string;
  /** The validated, normalised spec (JSON of config's `EnvironmentSpec`). */
  spec: unknown;
  /** sha256 of `source`. */
  sourceDigest: string;
  createdAt: string;
  /** Who applied it (principal id; "local-admin" until identities exist). */
  createdBy: string;
  /** Build of this version: building until it finishes. */
  buildStatus: "building" | "ready" | "failed";
  /** Set when buildStatus is ready. */
  templateId: string | null;
  /** Why the build failed (no secret values: build output is not secret-bearing yet). */
  buildError: string | null;
}

/** An environment: its name and which version sessions start from. */
export interface Environment {
  name: string;
  /** The newest version whose build succeeded: sessions start from it. Null until one has. */
  currentVersion: number | null;
  latestVersion: number;
  updatedAt: string;
}

/** A filesystem layer: the changes one install step made on top of its parent. */
export interface Layer {
  /** sha256 over (parent id, base, step command): the build cache key, stable across machines. */
  id: string;
  parentId: string | null;
  /** The install step that produced it, or a base marker such as `base:debian-12`. */
  command: string;
  /** sha256 over the layer's content (paths, modes, owners, bytes). */
  contentDigest: string;
  sizeBytes: number;
  createdAt: string;
}

/** The built form of one environment version: an immutable stack of layers. */
export interface Template {
  id: string;
  environment: string;
  version: number;
  base: string;
  /** Layer ids from the bottom (first) to the top (last). Empty for a template with no steps. */
  layers: string[];
  createdAt: string;
}

export type SessionState = "starting" | "running" | "stopped" | "lost" | "failed";

export interface Session {
  id: string;
  environment: string;
  version: number;
  templateId: string;
  provider: string;
  state: SessionState;
  createdAt: string;
  /** When the session must end (compute.timeout); null for none. */
  expiresAt: string | null;
  endedAt: string | null;
  /** Why it ended: "stopped by user", "compute.timeout reached", "lost: …". */
  endReason: string | null;
  /** Provider-private handle to find the sandbox again after a restart (JSON). */
  providerState: Record<string, unknown>;
  /** The human principal (name) the session runs for: an agent's permissions are cut to theirs. */
  startedBy: string;
  /** The agent principal (name) acting in the session, or null for a human's own session. */
  agent: string | null;
  /** The snapshot the session was started from (`session start --from`, `session fork`), or null. */
  snapshot: string | null;
}

/**
 * A frozen session: its writable layer captured copy-on-write (the provider's layer `layerId`),
 * on top of the template it ran. Sessions started from it get the same environment version and
 * template, and the source session's placeholders (sealed apart, never in this record).
 */
export interface Snapshot {
  /** `snap-` and 16 hex digits. */
  id: string;
  /** Optional name, unique among snapshots; never starts with `snap-`. */
  name: string | null;
  environment: string;
  version: number;
  templateId: string;
  provider: string;
  /** The session it was captured from. */
  sourceSession: string;
  /** The provider's layer holding the captured writable layer. */
  layerId: string;
  createdAt: string;
  /** The principal who took it. */
  createdBy: string;
  /** How long the source's processes were frozen for the capture. */
  frozenMs: number;
  /** Made by `session fork`: removed by garbage collection once no live session was started from it. */
  autoRemove: boolean;
}

export type PoolMemberState = "starting" | "ready";

/**
 * A sandbox of a warm pool: started (services ready) and bound to nobody. Its id is the id the
 * session that claims it will have. It is no session: no route reaches it until it is claimed.
 */
export interface PoolMember {
  id: string;
  environment: string;
  version: number;
  templateId: string;
  provider: string;
  /** Seam for pools of a snapshot's sandboxes; null for pools of an environment's template. */
  snapshot: string | null;
  state: PoolMemberState;
  createdAt: string;
  /** Provider-private handle (as for sessions). */
  providerState: Record<string, unknown>;
}

/** A pool size set with `paddock pool set`, overriding the environment file's `pool:`. */
export interface PoolSetting {
  environment: string;
  /** Members kept ready. */
  min: number;
  /** Most members at once (ready and starting); the pool grows toward it while sessions claim members. */
  max: number;
  updatedAt: string;
  updatedBy: string;
}

/** One environment's warm pool, as `paddock pool list` shows it. */
export interface PoolInfo {
  environment: string;
  /** The version members are started from (the environment's current one), or null before any build. */
  version: number | null;
  min: number;
  max: number;
  /** Where the size comes from: `paddock pool set` (`set`) or the environment file's `pool:` (`file`). */
  source: "set" | "file";
  /** Members of the current version ready to be claimed. */
  ready: number;
  /** Members starting (their sandboxes or services not ready yet). */
  starting: number;
  /** Members of older versions not drained yet. */
  stale: number;
  /** Sessions claimed from the pool in the last minute. */
  claimedLastMinute: number;
  /** Memory the members use now (sum of their memory cgroups), or null when the provider cannot tell. */
  memoryBytes: number | null;
  /** Why no member is started, when the environment's provider cannot hold Paddock's pool members (a `network: "proxy"` provider). */
  refused?: string;
}

/**
 * An agent run (`paddock run ENV --agent NAME --prompt …`): one coding agent working in one
 * session, over one or more turns (the first prompt, then follow-ups). `idle`: its last turn ended
 * and its session is kept for follow-ups (outcome `keep`); `done`, `failed` and `cancelled` are final.
 */
export type RunState = "starting" | "running" | "idle" | "done" | "failed" | "cancelled";
export type RunOutcome = "keep" | "snapshot" | "stop";

/** One `agent.checks` command's result after a turn. */
export interface CheckResult {
  name: string;
  command: string;
  exitCode: number;
  passed: boolean;
  durationMs: number;
  /** The end of its output (at most 8 KiB, secrets redacted). */
  outputTail: string;
}

/** What the agent's last turn left behind. */
export interface RunOutput {
  /** The agent's final text of the turn (redacted). */
  summary: string;
  /** The agent itself reported an error. */
  isError: boolean;
  /** `git diff` of the working directory against the start of the run (at most 256 KiB, redacted), or null when it is no git work tree. */
  diff: string | null;
  /** Files the diff touches. */
  changedFiles: string[];
  checks: CheckResult[];
  /** Every check passed (true when there are none). */
  checksPassed: boolean;
  inputTokens: number;
  outputTokens: number;
  costUsd: number | null;
  /** Outcome `snapshot`: the snapshot taken before the session stopped. */
  snapshotId: string | null;
}

export interface Run {
  /** `run-` and 16 hex digits. */
  id: string;
  environment: string;
  version: number;
  /** The session the agent works in (null until it started). */
  sessionId: string | null;
  /** The agent's name (`claude-code`, `codex`, …), also its principal's name. */
  agent: string;
  /** The person the agent acts for (its permissions are cut to theirs). */
  startedBy: string;
  /** Set when a webhook started it. */
  trigger: { name: string; source: string; deliveryId: string } | null;
  /** The first prompt (redacted). */
  prompt: string;
  outcome: RunOutcome;
  state: RunState;
  /** Turns started so far (1 for the first prompt). */
  turns: number;
  /** The agent's conversation id, for follow-ups. */
  agentSessionId: string | null;
  createdAt: string;
  updatedAt: string;
  endedAt: string | null;
  result: RunOutput | null;
  /** Why it failed or was cancelled. */
  error: string | null;
}

/** One entry of a run's transcript: a normalised agent event (see agents/types.ts), redacted. */
export interface RunEvent {
  runId: string;
  /** 1, 2, 3… per run. */
  seq: number;
  turn: number;
  time: string;
  /** `AgentEvent` (message, tool_call, tool_result, usage, result, …) or a run event (`turn`, `check`, `state`). */
  event: { type: string } & Record<string, unknown>;
}

// --- previews (docs/previews.md) ---
/**
 * A preview: a URL that serves one port of one session to browsers, with a TTL, revocable, and
 * able to wake a stopped session from the snapshot taken when it stopped. The visitor's token is
 * never stored (the store keeps a sha256 of it beside the row, not in this type).
 */
export interface Preview {
  /** `pv-` and 10 hex digits; the URL's host is `<port>-<id>.<previewDomain>`. */
  id: string;
  /** The session it serves now (a wake re-points it to the session started from `snapshotId`). */
  sessionId: string;
  environment: string;
  port: number;
  /** Served to anyone with the URL, no token or login needed. */
  public: boolean;
  /** Started in the background in the session a wake starts (e.g. `npm start`), or null. */
  command: string | null;
  /** The principal who made it; a wake starts the session for them. */
  createdBy: string;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
  /** Taken when its session stopped: what a visit wakes the session from. */
  snapshotId: string | null;
}
