/**
 * Who does things, and the record of what they did. A *principal* is a human or an agent
 * identity with one role; every API call carries a token of one. Audit records are append-only and
 * hash-chained (src/guard/audit.ts computes the chain; the store keeps it and refuses edits).
 */

export type PrincipalKind = "human" | "agent";

export interface Principal {
  /** Stable id (`usr_…`); names can be reused after a principal is removed, ids never. */
  id: string;
  /** Unique login name, e.g. `alice` or `triage-bot`. */
  name: string;
  kind: PrincipalKind;
  /** Team name, or null. Teams scope secrets and are shown in the audit. */
  team: string | null;
  /** A role name looked up in each environment's `rbac:`, or the built-in `admin`. */
  role: string;
  createdAt: string;
  /** Set when disabled: its tokens stop working, its history stays. */
  disabledAt: string | null;
}

/** An API token as stored: only a digest of its secret part, never the token itself. */
export interface ApiToken {
  /** The public part of the token (`pdk_<id>_<secret>`), used to find the row. */
  id: string;
  principalId: string;
  /** sha256 (hex) of the secret part. */
  digest: string;
  label: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** What an audit record says was decided. */
export type AuditDecision = "allowed" | "denied" | "pending" | "approved" | "expired" | "info";

/** One audit record before it is chained. Never holds a secret value (names only). */
export interface AuditInput {
  time: string;
  /** Principal name, or `system` for the control plane's own actions. */
  actor: string;
  actorKind: PrincipalKind | "system";
  /** The human an agent acted for, or null. */
  onBehalfOf: string | null;
  /** What was done: `api getSession`, `exec`, `guardrail`, `approval`, `egress`, `login`, … */
  action: string;
  /** What it was done to: a session id, environment name, host, secret name, principal name. */
  target: string;
  environment: string | null;
  sessionId: string | null;
  decision: AuditDecision;
  /** The rule that decided, with its location when it comes from a file, or null. */
  rule: string | null;
  /** Small structured detail (command argv, status, secret names). */
  detail: Record<string, unknown>;
}

/** A chained audit record: `hash` covers `prevHash` and every field above plus `seq`. */
export interface AuditRecord extends AuditInput {
  /** 1, 2, 3…: no gaps. */
  seq: number;
  prevHash: string;
  hash: string;
}

export interface AuditQuery {
  afterSeq?: number;
  limit?: number;
  sessionId?: string;
  actor?: string;
  environment?: string;
  /** ISO time: records at or after it. */
  since?: string;
}

export type ApprovalState = "pending" | "approved" | "denied" | "expired";

/** A command waiting for (or past) a person's approval, from `guardrails.commands.ask`. */
export interface Approval {
  id: string;
  sessionId: string;
  environment: string;
  /** The command as submitted (argv). */
  argv: string[];
  /** The program the ask rule matched, and the rule with its location. */
  program: string;
  rule: string;
  /** Whether the command also counts as deploying (approvers then need `deploy`). */
  deploying: boolean;
  requestedBy: string;
  requestedByKind: PrincipalKind;
  onBehalfOf: string | null;
  state: ApprovalState;
  decidedBy: string | null;
  decidedAt: string | null;
  reason: string | null;
  createdAt: string;
  expiresAt: string;
}
