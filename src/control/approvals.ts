/**
 * Approvals for `guardrails.commands.ask`: the command waits while a person with the right role
 * approves or denies it (CLI or API); no answer within `askTimeout` is a denial. A waiting command
 * lives in this process only, so approvals still pending when the control plane starts are expired.
 */
import { randomBytes } from "node:crypto";
import type { Approval, Principal, Session, Store } from "../core/index.ts";
import { PaddockError, notFound } from "../core/index.ts";
import type { AuditLog } from "../guard/index.ts";
import type { Access } from "./access.ts";

export interface ApprovalRequest {
  session: Session;
  argv: string[];
  program: string;
  rule: string;
  deploying: boolean;
  actor: Principal;
  onBehalfOf: string | null;
  timeoutMs: number;
  signal?: AbortSignal;
}

export class Approvals {
  readonly #waiting = new Map<string, (a: Approval) => void>();

  constructor(
    private readonly deps: { store: Store; access: Access; audit: AuditLog },
  ) {}

  /** Record the request and wait for its answer; resolves the final approval (approved, denied or expired). */
  async request(r: ApprovalRequest): Promise<Approval> {
    const now = Date.now();
    const approval: Approval = {
      id: `apr-${randomBytes(6).toString("hex")}`,
      sessionId: r.session.id, environment: r.session.environment, argv: r.argv, program: r.program, rule: r.rule, deploying: r.deploying,
      requestedBy: r.actor.name, requestedByKind: r.actor.kind, onBehalfOf: r.onBehalfOf, state: "pending",
      decidedBy: null, decidedAt: null, reason: null, createdAt: new Date(now).toISOString(), expiresAt: new Date(now + r.timeoutMs).toISOString(),
    };
    await this.deps.store.createApproval(approval);
    await this.deps.audit.append({
      actor: r.actor.name, actorKind: r.actor.kind, onBehalfOf: r.onBehalfOf, action: "approval.request", target: approval.id,
      environment: r.session.environment, sessionId: r.session.id, decision: "pending", rule: r.rule, detail: { argv: r.argv, program: r.program, deploying: r.deploying },
    });
    return new Promise<Approval>((resolve) => {
      const finish = (a: Approval) => {
        clearTimeout(timer);
        r.signal?.removeEventListener("abort", onAbort);
        this.#waiting.delete(approval.id);
        resolve(a);
      };
      const expire = (reason: string) => {
        this.#expire(approval.id, reason).then(finish, () => finish({ ...approval, state: "expired", reason }));
      };
      const onAbort = () => expire("the requester went away");
      const timer = setTimeout(() => expire(`no answer within ${Math.round(r.timeoutMs / 1000)}s (guardrails.commands.askTimeout)`), r.timeoutMs);
      r.signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.set(approval.id, finish);
    });
  }

  /**
   * Answer a pending approval. The approver must be a human with `write` on the environment (and
   * `deploy` when the command deploys), and not the principal that asked, unless that was an agent
   * acting for them.
   */
  async decide(id: string, approver: Principal, approve: boolean, reason: string | null): Promise<Approval> {
    const a = await this.deps.store.getApproval(id);
    if (!a) throw notFound("approval", id);
    if (approver.kind !== "human") throw new PaddockError("forbidden", "only a person can answer an approval; agents cannot");
    if (approver.name === a.requestedBy) throw new PaddockError("forbidden", "you asked for this command: another person with the right role must approve it");
    await this.deps.access.require(approver, "write", a.environment, null);
    if (a.deploying && approve) await this.deps.access.require(approver, "deploy", a.environment, null);
    if (a.state !== "pending") throw new PaddockError("conflict", `approval ${id} is already ${a.state}${a.decidedBy ? ` (by ${a.decidedBy})` : ""}`);
    const decided = await this.deps.store.decideApproval(id, { state: approve ? "approved" : "denied", decidedBy: approver.name, decidedAt: new Date().toISOString(), reason });
    await this.deps.audit.append({
      actor: approver.name, actorKind: "human", action: approve ? "approval.approve" : "approval.deny", target: id, environment: a.environment,
      sessionId: a.sessionId, decision: approve ? "approved" : "denied", rule: a.rule, detail: { argv: a.argv, requestedBy: a.requestedBy, ...(reason ? { reason } : {}) },
    });
    this.#waiting.get(id)?.(decided);
    return decided;
  }

  list(filter?: { state?: Approval["state"]; sessionId?: string }): Promise<Approval[]> {
    return this.deps.store.listApprovals(filter);
  }

  async get(id: string): Promise<Approval> {
    const a = await this.deps.store.getApproval(id);
    if (!a) throw notFound("approval", id);
    return a;
  }

  /** At start: nobody waits for approvals made by a previous incarnation. */
  async expireAbandoned(): Promise<number> {
    const pending = await this.deps.store.listApprovals({ state: "pending" });
    for (const a of pending) await this.#expire(a.id, "the control plane restarted while it waited").catch(() => undefined);
    return pending.length;
  }

  async #expire(id: string, reason: string): Promise<Approval> {
    const a = await this.deps.store.decideApproval(id, { state: "expired", decidedBy: null, decidedAt: new Date().toISOString(), reason });
    await this.deps.audit.append({
      actor: "paddock", actorKind: "system", action: "approval.expire", target: id, environment: a.environment, sessionId: a.sessionId,
      decision: "expired", rule: a.rule, detail: { argv: a.argv, reason },
    });
    return a;
  }
}
