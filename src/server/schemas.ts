import { z } from "zod";

/** Wire shapes of the HTTP API. They feed request validation and the OpenAPI document alike. */
export const ErrorBody = z
  .object({
    error: z.object({
      code: z.enum(["not_found", "invalid_argument", "unauthorized", "forbidden", "conflict", "unavailable", "internal"]),
      message: z.string().describe("What went wrong and how to fix it."),
      details: z.record(z.string(), z.unknown()).optional().describe("Machine-readable detail, e.g. every located issue of an invalid file."),
      errorId: z.string().optional().describe("Internal errors only: the id under which the server log has the details (docs/operations.md)."),
    }),
  })
  .describe("Every error response has this shape.");

export const ApplyBody = z.object({
  fileName: z.string().min(1).max(255).describe("File name used in located messages, e.g. runtime.yml."),
  source: z.string().max(1_000_000).describe("The environment file's text."),
  noCache: z.boolean().optional().describe("Rebuild every install step even when a cached layer exists."),
});

export const ValidateBody = ApplyBody.omit({ noCache: true });

export const Issue = z.object({ file: z.string(), line: z.number(), column: z.number(), path: z.string(), message: z.string() });

export const Environment = z.object({
  name: z.string(),
  currentVersion: z.number().nullable().describe("Version sessions start from; null until a build succeeded."),
  latestVersion: z.number(),
  updatedAt: z.string(),
});

export const EnvironmentVersion = z.object({
  name: z.string(),
  version: z.number(),
  fileName: z.string(),
  source: z.string(),
  spec: z.unknown(),
  sourceDigest: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  buildStatus: z.enum(["building", "ready", "failed"]),
  templateId: z.string().nullable(),
  buildError: z.string().nullable(),
});

export const Template = z.object({
  id: z.string(),
  environment: z.string(),
  version: z.number(),
  base: z.string(),
  layers: z.array(z.string()),
  createdAt: z.string(),
});

export const Session = z.object({
  id: z.string(),
  environment: z.string(),
  version: z.number(),
  templateId: z.string(),
  provider: z.string(),
  state: z.enum(["starting", "running", "stopped", "lost", "failed"]),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  endReason: z.string().nullable(),
  startedBy: z.string().describe("The human the session runs for."),
  agent: z.string().nullable().describe("The agent principal acting in it, or null."),
  snapshot: z.string().nullable().describe("The snapshot it was started from, or null."),
  route: z.object({
    provider: z.string(),
    strategy: z.string(),
    reason: z.string().describe("Why this provider (the strategy's reason, a failover, a pool claim or a snapshot's provider)."),
    estimateUsd: z.number().describe("Cost estimate at start: (cpu × per-vCPU-hour + GiB × per-GiB-hour) × the expected hours."),
    price: z.object({ perVcpuHour: z.number(), perGibHour: z.number(), source: z.string(), cpu: z.number(), memoryGib: z.number() }),
    skips: z.array(z.object({ provider: z.string(), at: z.string(), reason: z.string() })).describe("Providers passed over on the way (failover), in order."),
    runtimeMs: z.number().nullable().describe("Set once it ended."),
    measuredUsd: z.number().nullable().describe("Runtime × the same prices; set once it ended."),
    createdAt: z.string(),
  }).nullable().optional().describe("How its provider was chosen (docs/routing.md); on GET /v1/sessions/{id} only; null for sessions without a record."),
});

export const StartSessionBody = z
  .object({
    environment: z.string().min(1).optional().describe("Environment name; the session starts from its current template (or from a ready pool member of it). Optional with `from`; given with it, it must be the snapshot's environment."),
    from: z.string().min(1).max(128).optional().describe("A snapshot id or name: start from it instead, with its environment version and files (docs/snapshots.md)."),
    onBehalfOf: z.string().min(1).optional().describe("Agents only: the human the session runs for. The agent then acts with the intersection of its role and theirs."),
    latency: z.enum(["interactive", "batch"]).optional().describe("Routing's latency class (docs/routing.md): interactive prefers providers with warm pools. Default batch."),
  })
  .refine((b) => b.environment !== undefined || b.from !== undefined, { error: "give environment, or from (a snapshot), or both", path: ["environment"] });

export const Snapshot = z.object({
  id: z.string().describe("snap- and 16 hex digits."),
  name: z.string().nullable(),
  environment: z.string(),
  version: z.number().describe("The environment version sessions started from it run."),
  templateId: z.string(),
  provider: z.string(),
  sourceSession: z.string().describe("The session it was captured from."),
  layerId: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  frozenMs: z.number().describe("How long the source session's processes were frozen for the capture."),
  autoRemove: z.boolean().describe("Made by a fork: removed by garbage collection once no session started from it runs."),
});

export const SnapshotDetail = Snapshot.extend({
  users: z.array(z.string()).describe("What keeps it from being removed: `session <id>` for running sessions started from it, `pool member <id>`."),
});

export const CreateSnapshotBody = z.object({
  session: z.string().min(1).describe("The running session to capture."),
  name: z.string().min(1).max(63).optional().describe("A unique name: lowercase letters, digits, . _ -; not starting with snap-."),
});

export const SnapshotListQuery = z.object({ environment: z.string().optional() });

export const ForkBody = z.object({
  count: z.number().int().min(1).max(100).describe("How many sessions to start from the snapshot (1 to 100)."),
});

export const ForkResponse = z.object({
  snapshot: Snapshot.describe("The snapshot the sessions were started from (removed by garbage collection once none of them runs)."),
  sessions: z.array(Session),
  failures: z.array(z.object({ index: z.number(), code: z.string(), message: z.string() })).describe("Starts that failed; the others are unaffected."),
});

export const ServiceStatus = z.object({
  name: z.string(),
  state: z.enum(["starting", "ready", "restarting", "failed", "stopped"]),
  restarts: z.number(),
  pid: z.number().nullable(),
  since: z.string(),
  message: z.string().nullable(),
  logTail: z.string(),
});

export const PoolInfo = z.object({
  environment: z.string(),
  version: z.number().nullable().describe("The version members are started from (the current one)."),
  min: z.number().describe("Members kept ready."),
  max: z.number().describe("Most members at once; the pool grows toward it with the claims of the last minute."),
  source: z.enum(["set", "file"]).describe("`set`: paddock pool set; `file`: the environment file's pool:."),
  ready: z.number(),
  starting: z.number(),
  stale: z.number().describe("Members of older versions not drained yet."),
  claimedLastMinute: z.number(),
  memoryBytes: z.number().nullable().describe("Memory the members use now, or null when the provider cannot tell."),
});

export const PoolBody = z.object({
  min: z.number().int().min(0).max(200).describe("Members to keep ready."),
  max: z.number().int().min(0).max(200).optional().describe("Most members at once (default: min)."),
});

export const GcResponse = z.object({
  layers: z.array(z.string()).describe("Template layers removed."),
  snapshots: z.array(z.string()).describe("Fork snapshots removed (no session started from them runs)."),
  orphans: z.array(z.string()).describe("Snapshot layers removed that had no snapshot."),
});

export const ExecBody = z.object({
  argv: z.array(z.string()).min(1).describe("Program and arguments, e.g. [\"npm\", \"test\"]. For a shell line use [\"sh\", \"-c\", \"…\"]."),
  cwd: z.string().optional().describe("Working directory inside the sandbox; default /workspace."),
  env: z.record(z.string(), z.string()).optional(),
  timeoutMs: z.number().int().min(0).max(7 * 24 * 3600 * 1000).optional().describe("Kill the command after this long; 0 or absent for none. Exit code 124 on timeout."),
  stdin: z.string().optional().describe("Standard input, base64."),
});

export const KillBody = z.object({
  signal: z
    .string()
    .regex(/^SIG[A-Z0-9]+$/, { error: "a signal name such as SIGKILL, SIGTERM or SIGINT" })
    .optional()
    .describe("Signal name; default SIGKILL (the call then returns once every process is gone)."),
});

export const KillResponse = z.object({
  signalled: z.number().describe("How many processes were signalled."),
});

/** Most output of one stream a POST exec collects for its JSON answer. */
export const MAX_EXEC_OUTPUT_BYTES = 16 * 1024 * 1024;

export const ExecResponse = z.object({
  exitCode: z.number(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  durationMs: z.number(),
  stdout: z.string().describe("Standard output, UTF-8 (use the WebSocket stream for binary output)."),
  stderr: z.string(),
  truncated: z.boolean().describe(`True when stdout or stderr was longer than ${MAX_EXEC_OUTPUT_BYTES} bytes: the rest was dropped (the WebSocket stream carries any amount).`),
});

export const FileEntry = z.object({
  name: z.string(),
  type: z.enum(["file", "dir", "symlink", "other"]),
  size: z.number(),
  mode: z.number(),
  mtime: z.string(),
});

export const PathQuery = z.object({ path: z.string().min(1).describe("Path inside the sandbox; relative paths are under /workspace.") });
export const PutFileQuery = PathQuery.extend({ mode: z.string().regex(/^[0-7]{3,4}$/).optional().describe("Octal permission bits, default 644.") });
export const IdParams = z.object({ id: z.string() });
export const NameParams = z.object({ name: z.string() });
export const SessionListQuery = z.object({
  all: z.enum(["true", "false"]).optional().describe("Include ended sessions."),
  environment: z.string().optional(),
});

export const DoctorReport = z.object({
  ok: z.boolean(),
  checks: z.array(z.object({ name: z.string(), ok: z.boolean(), detail: z.string() })),
  leaks: z.array(z.string()),
});

export const PrincipalBody = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.enum(["human", "agent"]),
  team: z.string().nullable(),
  role: z.string(),
  createdAt: z.string(),
  disabledAt: z.string().nullable(),
});

export const NewPrincipalBody = z.object({
  name: z.string().min(1).max(63).describe('Login name, e.g. "alice".'),
  kind: z.enum(["human", "agent"]).default("human"),
  role: z.string().min(1).max(63).describe('A role from the environments\' rbac: (e.g. "engineering"), or "admin" (humans only).'),
  team: z.string().min(1).max(63).optional(),
});

export const AuditRecordBody = z.object({
  seq: z.number(),
  time: z.string(),
  actor: z.string(),
  actorKind: z.enum(["human", "agent", "system"]),
  onBehalfOf: z.string().nullable(),
  action: z.string(),
  target: z.string(),
  environment: z.string().nullable(),
  sessionId: z.string().nullable(),
  decision: z.enum(["allowed", "denied", "pending", "approved", "expired", "info"]),
  rule: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()),
  prevHash: z.string(),
  hash: z.string(),
});

export const AuditQuery = z.object({
  session: z.string().optional(),
  actor: z.string().optional().describe("Records by this principal, or by agents acting for them."),
  environment: z.string().optional(),
  since: z.string().optional().describe("ISO time, e.g. 2026-11-26T10:00:00Z."),
  after: z.string().regex(/^\d+$/).optional().describe("Only records with a larger seq (paging forward)."),
  limit: z.string().regex(/^\d+$/).optional().describe("At most this many (default 200, at most 5000)."),
});

export const ApprovalBody = z.object({
  id: z.string(),
  sessionId: z.string(),
  environment: z.string(),
  argv: z.array(z.string()),
  program: z.string(),
  rule: z.string(),
  deploying: z.boolean(),
  requestedBy: z.string(),
  requestedByKind: z.enum(["human", "agent"]),
  onBehalfOf: z.string().nullable(),
  state: z.enum(["pending", "approved", "denied", "expired"]),
  decidedBy: z.string().nullable(),
  decidedAt: z.string().nullable(),
  reason: z.string().nullable(),
  createdAt: z.string(),
  expiresAt: z.string(),
});

export const DecisionBody = z.object({ reason: z.string().max(500).optional() });
