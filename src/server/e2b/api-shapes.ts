/**
 * The E2B control API's request and answer shapes (spec/openapi.yml in e2b-dev/E2B, as SDK 2.39
 * and 2.51 send and read them), and E2B's error body. docs/e2b.md lists what is accepted and what
 * is refused.
 */
import { z } from "zod";
import type { ComputeLimits, E2bSandbox, ErrorCode } from "../../core/index.ts";
import { PaddockError } from "../../core/index.ts";
import { ENVD_VERSION } from "./sandboxes.ts";

/** Longest lifetime a request may name (seconds); the environment's compute.timeout caps it further. */
const MAX_TIMEOUT_S = 30 * 24 * 3600;
const timeout = z.number().int().min(1, "timeout must be at least 1 second").max(MAX_TIMEOUT_S, `timeout must be at most ${MAX_TIMEOUT_S} seconds`);

// NUL bytes never reach a sandbox: the agent's protocol separates fields with them.
const noNul = (s: string) => !s.includes("\0");
const metadata = z
  .record(z.string().min(1).max(256).refine(noNul, "no NUL bytes"), z.string().max(4096).refine(noNul, "no NUL bytes"))
  .refine((m) => Object.keys(m).length <= 100, "at most 100 metadata entries");
const envVars = z
  .record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,255}$/, "variable names are letters, digits and _, not starting with a digit").refine((k) => !k.startsWith("PADDOCK_"), "PADDOCK_* variables are Paddock's own"),
    z.string().max(32 * 1024).refine(noNul, "no NUL bytes"),
  )
  .refine((m) => Object.keys(m).length <= 200, "at most 200 variables");

export const NewSandboxBody = z.object({
  templateID: z.string().min(1).max(200),
  timeout: timeout.optional(),
  metadata: metadata.nullish(),
  envVars: envVars.nullish(),
  autoPause: z.boolean().nullish(),
  autoPauseMemory: z.boolean().nullish(),
  autoResume: z.object({ enabled: z.boolean() }).passthrough().nullish(),
  secure: z.boolean().nullish(),
  allow_internet_access: z.boolean().nullish(),
  network: z.record(z.string(), z.unknown()).nullish(),
  mcp: z.unknown().optional(),
  iam: z.unknown().optional(),
  volumeMounts: z.array(z.unknown()).nullish(),
});
export type NewSandbox = z.infer<typeof NewSandboxBody>;

export const TimeoutBody = z.object({ timeout });
export const ConnectBody = z.object({ timeout: timeout.optional(), memory: z.boolean().nullish() });
export const PauseBody = z.object({ memory: z.boolean().nullish() }).nullish();

/**
 * What create asks for that Paddock cannot honour, as one sentence, or null. Everything refused
 * here would change how the sandbox is isolated or kept; silently ignoring it would mislead.
 */
export function refusalOf(b: NewSandbox): string | null {
  if (b.autoPause) return "autoPause (lifecycle onTimeout: 'pause') is not supported: a sandbox ends at its timeout; call sandbox.pause() to keep its files";
  if (b.autoResume?.enabled) return "autoResume is not supported: resume a paused sandbox with Sandbox.connect()";
  if (b.secure === false) return "secure: false is not supported: every envd call needs the sandbox's access token";
  if (b.allow_internet_access === false) return "allow_internet_access: false is not supported: the environment's guardrails.network decides what the sandbox reaches (use an environment that allows no hosts)";
  if (b.network && Object.values(b.network).some((v) => v !== undefined && v !== null)) return "network settings are not supported: the environment's guardrails.network decides what the sandbox reaches";
  if (b.mcp !== undefined && b.mcp !== null) return "mcp is not supported by Paddock's E2B front end";
  if (b.iam !== undefined && b.iam !== null) return "iam tokens are not supported: Paddock injects secrets through its gateway (docs/secrets.md)";
  if (b.volumeMounts && b.volumeMounts.length > 0) return "volumeMounts are not supported: use an environment's layers, or files written into the sandbox";
  return null;
}

/** E2B's error body: the HTTP status as `code`, and a message. */
export interface E2bError {
  code: number;
  message: string;
}

const STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
  internal: 500,
};
export const statusOf = (code: ErrorCode): number => STATUS[code];

export function invalidBody(where: string, err: z.ZodError): PaddockError {
  const issues = err.issues.slice(0, 5).map((i) => `${i.path.length ? i.path.join(".") : where}: ${i.message}`);
  return new PaddockError("invalid_argument", `bad ${where}: ${issues.join("; ")}`);
}

/** The `Sandbox` answer of create, connect and resume. */
export function sandboxAnswer(row: E2bSandbox, accessToken: string) {
  return {
    templateID: row.templateId,
    sandboxID: row.id,
    alias: row.environment,
    clientID: "paddock",
    envdVersion: ENVD_VERSION,
    envdAccessToken: accessToken,
    trafficAccessToken: null,
    domain: null,
  };
}

/** The `ListedSandbox` / `SandboxDetail` answer: what getInfo and list read. */
export function detailAnswer(row: E2bSandbox, compute: ComputeLimits | null) {
  return {
    templateID: row.templateId,
    alias: row.environment,
    sandboxID: row.id,
    clientID: "paddock",
    startedAt: row.startedAt,
    endAt: row.endAt,
    envdVersion: ENVD_VERSION,
    cpuCount: Math.max(1, Math.round(compute?.cpu ?? 1)),
    memoryMB: Math.round((compute?.memoryBytes ?? 0) / 2 ** 20),
    diskSizeMB: Math.round((compute?.diskBytes ?? 0) / 2 ** 20),
    metadata: row.metadata,
    state: row.state,
    domain: null,
    volumeMounts: [],
  };
}
