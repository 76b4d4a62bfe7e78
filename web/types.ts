/**
 * The API's shapes as the UI reads them (the server's zod schemas in src/server/schemas.ts and
 * routes-*.ts are the source of truth; these are the fields the pages use).
 */
export type Permission = "read" | "write" | "deploy";

export interface Principal {
  id: string;
  name: string;
  kind: "human" | "agent";
  team: string | null;
  role: string;
  createdAt: string;
  disabledAt: string | null;
}

/** GET /v1/whoami: the principal and its permissions per environment. */
export interface Me {
  principal: Principal;
  admin: boolean;
  environments: Record<string, Permission[]>;
}

export interface Environment {
  name: string;
  currentVersion: number | null;
  latestVersion: number;
  updatedAt: string;
}

export interface EnvironmentVersion {
  name: string;
  version: number;
  fileName: string;
  source: string;
  spec: EnvironmentSpec | null;
  sourceDigest: string;
  createdAt: string;
  createdBy: string;
  buildStatus: "building" | "ready" | "failed";
  templateId: string | null;
  buildError: string | null;
}

/** The parts of a parsed environment file the UI shows (the rest is in `source`). */
export interface EnvironmentSpec {
  name?: string;
  description?: string | null;
  /** `agent:` as parsed: the agents the template installs (the first is the default), model, outcome. */
  agent?: { agents?: string[]; model?: string | null; outcome?: string; checks?: { name?: string; command?: string }[] } | null;
  secrets?: { name: string; hosts?: string[]; [k: string]: unknown }[];
  guardrails?: { commands?: Record<string, unknown>; network?: { allow?: string[]; deny?: string[] }; [k: string]: unknown };
  pool?: { min?: number; max?: number } | null;
  rbac?: Record<string, Permission[]>;
  [k: string]: unknown;
}

export interface Template {
  id: string;
  environment: string;
  version: number;
  base: string;
  layers: string[];
  createdAt: string;
}

export interface EnvironmentDetail {
  environment: Environment;
  current: EnvironmentVersion | null;
  template: Template | null;
}

export interface Session {
  id: string;
  environment: string;
  version: number;
  state: "starting" | "running" | "stopped" | "lost" | "failed";
  createdAt: string;
  expiresAt: string | null;
  endedAt: string | null;
  endReason: string | null;
  startedBy: string;
  agent: string | null;
  snapshot: string | null;
}

// The server's own shapes, as the API serves them (type-only: nothing of the server is bundled).
export type { CheckResult as RunCheck, PoolInfo, Run, RunEvent, RunState } from "../src/core/domain.ts";

export interface Approval {
  id: string;
  sessionId: string;
  environment: string;
  argv: string[];
  program: string;
  rule: string;
  deploying: boolean;
  requestedBy: string;
  requestedByKind: "human" | "agent";
  onBehalfOf: string | null;
  state: "pending" | "approved" | "denied" | "expired";
  decidedBy: string | null;
  decidedAt: string | null;
  reason: string | null;
  createdAt: string;
  expiresAt: string;
}

export interface AuditRecord {
  seq: number;
  time: string;
  actor: string;
  actorKind: "human" | "agent" | "system";
  onBehalfOf: string | null;
  action: string;
  target: string;
  environment: string | null;
  sessionId: string | null;
  decision: "allowed" | "denied" | "pending" | "approved" | "expired" | "info";
  rule: string | null;
  detail: Record<string, unknown>;
}

export interface Snapshot {
  id: string;
  name: string | null;
  environment: string;
  version: number;
  sourceSession: string;
  createdAt: string;
  createdBy: string;
  autoRemove: boolean;
}

/** The agents an environment version installs, the default first ([] for none). */
export function agentsOf(spec: EnvironmentSpec | null | undefined): string[] {
  const a = spec?.agent?.agents;
  return Array.isArray(a) ? a.filter((x): x is string => typeof x === "string") : [];
}
