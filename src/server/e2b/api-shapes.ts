/**
 * The E2B control API's request and answer shapes (spec/openapi.yml in e2b-dev/E2B, as SDK 2.39
 * and 2.51 send and read them), and E2B's error body. docs/e2b.md lists what is accepted and what
 * is refused.
 */
import { z } from "zod";
import type { ComputeLimits, E2bSandbox, ErrorCode } from "../../core/index.ts";
import { PaddockError } from "../../core/index.ts";
import { ALL_TRAFFIC, ENVD_VERSION } from "./sandboxes.ts";

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

/** One of E2B's `network.allowOut` / `denyOut` entries: a host name, an IP address or a CIDR block. */
const egressEntry = z.string().min(1).max(253).refine(noNul, "no NUL bytes");

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
  network: z
    .object({ allowOut: z.array(egressEntry).max(100).nullish(), denyOut: z.array(egressEntry).max(100).nullish() })
    .catchall(z.unknown())
    .nullish(),
  mcp: z.unknown().optional(),
  iam: z.unknown().optional(),
  volumeMounts: z.array(z.unknown()).nullish(),
});
export type NewSandbox = z.infer<typeof NewSandboxBody>;

export const TimeoutBody = z.object({ timeout });
export const ConnectBody = z.object({ timeout: timeout.optional(), memory: z.boolean().nullish() });
export const PauseBody = z.object({ memory: z.boolean().nullish() }).nullish();
export const SnapshotBody = z.object({ name: z.string().min(1).max(63).nullish() });

/**
 * What create asks for that Paddock cannot honour, as one sentence, or null. Everything refused
 * here would change how the sandbox is isolated or kept; silently ignoring it would mislead.
 */
export function refusalOf(b: NewSandbox): string | null {
  if (b.autoPause) return "autoPause (lifecycle onTimeout: 'pause') is not supported: a sandbox ends at its timeout; call sandbox.pause() to keep its files";
  if (b.autoResume?.enabled) return "autoResume is not supported: resume a paused sandbox with Sandbox.connect()";
  if (b.secure === false) return "secure: false is not supported: every envd call needs the sandbox's access token";
  const network = networkRefusal(b);
  if (network) return network;
  if (b.mcp !== undefined && b.mcp !== null) return "mcp is not supported by Paddock's E2B front end";
  if (b.iam !== undefined && b.iam !== null) return "iam tokens are not supported: Paddock injects secrets through its gateway (docs/secrets.md)";
  if (b.volumeMounts && b.volumeMounts.length > 0) return "volumeMounts are not supported: use an environment's layers, or files written into the sandbox";
  return null;
}

/**
 * What create asked of E2B's egress controls, or null when it asked nothing. `restricted`: the
 * request denies all traffic (`allow_internet_access: false`, or `network.denyOut` of all
 * traffic) except `allowOut`. A Paddock sandbox's only way out is the gateway, held to its
 * environment's `guardrails.network`; Paddock cannot narrow that per sandbox, so a restricted
 * create is accepted only when the environment allows nothing the request denies (checked by the
 * sandbox table against the version the session runs) and refused otherwise (docs/e2b.md).
 */
export interface EgressRequest {
  allowInternetAccess: boolean | null;
  allowOut: string[];
  denyOut: string[];
  restricted: boolean;
}

export function egressRequestOf(b: NewSandbox): EgressRequest | null {
  const allowOut = b.network?.allowOut ?? [];
  const denyOut = b.network?.denyOut ?? [];
  const allowInternetAccess = b.allow_internet_access ?? null;
  if (allowInternetAccess === null && allowOut.length === 0 && denyOut.length === 0) return null;
  return { allowInternetAccess, allowOut, denyOut, restricted: allowInternetAccess === false || denyOut.includes(ALL_TRAFFIC) };
}

/** E2B network settings Paddock cannot honour: everything but allowOut and a deny-all denyOut. */
function networkRefusal(b: NewSandbox): string | null {
  if (!b.network) return null;
  for (const [key, value] of Object.entries(b.network)) {
    if (key === "allowOut" || key === "denyOut" || value === undefined || value === null) continue;
    return `network.${key.slice(0, 64)} is not supported: Paddock's gateway holds every sandbox's egress (the environment's guardrails.network decides; secrets are injected by Paddock, docs/secrets.md)`;
  }
  const partial = (b.network.denyOut ?? []).find((d) => d !== ALL_TRAFFIC);
  if (partial !== undefined) return `network.denyOut ${JSON.stringify(partial.slice(0, 64))} is not supported: only all traffic ("${ALL_TRAFFIC}") can be denied, with the hosts still allowed in allowOut; the environment's guardrails.network decides the rest`;
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
