/**
 * Identity, audit and approval routes: who am I, principals and tokens (admin), the audit log and
 * its verification, and answering `ask` approvals.
 */
import { z } from "zod";
import type { ControlPlane } from "../control/index.ts";
import type { AuditRecord, Principal } from "../core/index.ts";
import { PaddockError } from "../core/index.ts";
import { isAdmin, PERMISSION_ORDER } from "../guard/index.ts";
import { caller, type Route, type Scope } from "./routes.ts";
import { readableEnvironments } from "./auth.ts";
import * as S from "./schemas.ts";

const NameParams = z.object({ name: z.string().min(1) });
const IdParams = z.object({ id: z.string().min(1) });
const DEFAULT_AUDIT_LIMIT = 200;
const MAX_AUDIT_LIMIT = 5000;

const approvalScope = async ({ cp, params }: { cp: ControlPlane; params: Record<string, string> }): Promise<Scope> => {
  const a = await cp.approvals.get(params.id ?? "");
  return { environment: a.environment, session: await cp.store.getSession(a.sessionId) };
};

async function whoami(cp: ControlPlane, who: Principal) {
  const environments: Record<string, string[]> = {};
  for (const e of await cp.environments.list()) {
    const perms = await cp.access.permissions(who, e.name, null);
    environments[e.name] = PERMISSION_ORDER.filter((p) => perms.has(p));
  }
  return { principal: who, admin: isAdmin(who), environments };
}

const TokenInfo = z.object({ id: z.string(), label: z.string(), createdAt: z.string(), lastUsedAt: z.string().nullable(), revokedAt: z.string().nullable() });

const Whoami = z.object({ principal: S.PrincipalBody, admin: z.boolean(), environments: z.record(z.string(), z.array(z.enum(["read", "write", "deploy"]))) });

export const guardRoutes: Route[] = [
  {
    method: "GET",
    path: "/v1/whoami",
    operationId: "whoami",
    summary: "The calling principal and its permissions on each environment.",
    access: { kind: "authenticated" },
    response: { status: 200, schema: Whoami },
    handler: async (ctx) => whoami(ctx.cp, caller(ctx)),
  },
  {
    method: "POST",
    path: "/v1/login",
    operationId: "login",
    summary: "Check a token and record the login in the audit log (what `paddock login` calls); answers like whoami.",
    access: { kind: "authenticated" },
    response: { status: 200, schema: Whoami },
    handler: async (ctx) => {
      const who = caller(ctx);
      await ctx.cp.audit.append({ actor: who.name, actorKind: who.kind, action: "login", target: who.name, decision: "allowed", detail: { userAgent: String(ctx.req.headers["user-agent"] ?? "") } });
      return whoami(ctx.cp, who);
    },
  },
  {
    method: "POST",
    path: "/v1/principals",
    operationId: "createPrincipal",
    summary: "Create a human or agent principal with a role and team. The response holds its API token: shown once, stored hashed.",
    access: { kind: "admin" },
    body: S.NewPrincipalBody,
    response: { status: 201, schema: z.object({ principal: S.PrincipalBody, token: z.string() }) },
    handler: async ({ cp, body, reply }) => {
      const b = body as z.infer<typeof S.NewPrincipalBody>;
      const made = await cp.identities.add({ name: b.name, kind: b.kind, role: b.role, team: b.team ?? null });
      reply.code(201);
      return made;
    },
  },
  {
    method: "GET",
    path: "/v1/principals",
    operationId: "listPrincipals",
    summary: "Every principal (never tokens).",
    access: { kind: "admin" },
    response: { status: 200, schema: z.array(S.PrincipalBody) },
    handler: async ({ cp }) => cp.identities.list(),
  },
  {
    method: "POST",
    path: "/v1/principals/:name/tokens",
    operationId: "createToken",
    summary: "Issue another API token for a principal (shown once).",
    access: { kind: "admin" },
    params: NameParams,
    body: z.object({ label: z.string().max(100).optional() }),
    response: { status: 201, schema: z.object({ token: z.string() }) },
    handler: async ({ cp, params, body, reply }) => {
      const p = await cp.identities.byName(params.name ?? "");
      const token = await cp.identities.issueToken(p, (body as { label?: string }).label ?? "issued by an admin");
      reply.code(201);
      return { token };
    },
  },
  {
    method: "GET",
    path: "/v1/principals/:name/tokens",
    operationId: "listTokens",
    summary: "A principal's tokens: id (the public part), label, when created, last used and revoked. Never the secret part.",
    access: { kind: "admin" },
    params: NameParams,
    response: { status: 200, schema: z.array(TokenInfo) },
    handler: async ({ cp, params }) => {
      const p = await cp.identities.byName(params.name ?? "");
      return (await cp.store.listTokens(p.id)).map(({ digest: _secret, principalId: _p, ...t }) => t);
    },
  },
  {
    method: "DELETE",
    path: "/v1/principals/:name/tokens/:token",
    operationId: "revokeToken",
    summary: "Revoke one token (by its id): it stops working at once. The principal's other tokens keep working.",
    access: { kind: "admin" },
    params: z.object({ name: z.string().min(1), token: z.string().min(1) }),
    response: { status: 204, schema: "none" },
    handler: async ({ cp, params, reply }) => {
      const p = await cp.identities.byName(params.name ?? "");
      const t = await cp.store.getToken(params.token ?? "");
      if (!t || t.principalId !== p.id) throw new PaddockError("not_found", `${p.name} has no token ${params.token ?? ""} (see GET /v1/principals/${p.name}/tokens)`);
      if (!(await cp.store.revokeToken(t.id, new Date().toISOString()))) throw new PaddockError("conflict", `token ${t.id} was already revoked at ${t.revokedAt ?? "?"}`);
      reply.code(204);
      return undefined;
    },
  },
  {
    method: "POST",
    path: "/v1/principals/:name/disable",
    operationId: "disablePrincipal",
    summary: "Disable a principal: its tokens stop working at once; its history stays.",
    access: { kind: "admin" },
    params: NameParams,
    response: { status: 200, schema: S.PrincipalBody },
    handler: async (ctx) => {
      if (ctx.params.name === caller(ctx).name) throw new PaddockError("conflict", "you cannot disable yourself; ask another admin");
      return ctx.cp.identities.disable(ctx.params.name ?? "");
    },
  },
  {
    method: "GET",
    path: "/v1/audit",
    operationId: "listAudit",
    summary: "Audit records, oldest first. Admins see all; others see records of environments they can read.",
    access: { kind: "authenticated" },
    filtered: true,
    query: S.AuditQuery,
    response: { status: 200, schema: z.array(S.AuditRecordBody) },
    handler: async (ctx) => {
      const q = ctx.query as z.infer<typeof S.AuditQuery>;
      const limit = Math.min(q.limit === undefined ? DEFAULT_AUDIT_LIMIT : Number(q.limit), MAX_AUDIT_LIMIT);
      const who = caller(ctx);
      const readable = await readableEnvironments(ctx.cp, who);
      const out: AuditRecord[] = [];
      let after = q.after === undefined ? 0 : Number(q.after);
      // Page through until `limit` visible records are found, so filtering never hides later ones.
      for (;;) {
        const page = await ctx.cp.audit.list({
          afterSeq: after, limit: 1000, ...(q.session ? { sessionId: q.session } : {}), ...(q.actor ? { actor: q.actor } : {}),
          ...(q.environment ? { environment: q.environment } : {}), ...(q.since ? { since: q.since } : {}),
        });
        for (const r of page) {
          after = r.seq;
          const visible = isAdmin(who) || (r.environment !== null && (await readable(r.environment))) || (r.environment === null && r.actor === who.name);
          if (visible) out.push(r);
          if (out.length >= limit) return out;
        }
        if (page.length < 1000) return out;
      }
    },
  },
  {
    method: "GET",
    path: "/v1/audit/verify",
    operationId: "verifyAudit",
    summary: "Recompute the audit log's hash chain: reports every record that was changed, removed or inserted.",
    access: { kind: "admin" },
    response: { status: 200, schema: z.object({ ok: z.boolean(), records: z.number(), lastSeq: z.number(), problems: z.array(z.object({ seq: z.number(), problem: z.string() })) }) },
    handler: async ({ cp }) => cp.audit.verify(),
  },
  {
    method: "GET",
    path: "/v1/approvals",
    operationId: "listApprovals",
    summary: "Approvals (commands matched by guardrails.commands.ask), newest first; those of environments the caller can read.",
    access: { kind: "authenticated" },
    filtered: true,
    query: z.object({ state: z.enum(["pending", "approved", "denied", "expired"]).optional(), session: z.string().optional() }),
    response: { status: 200, schema: z.array(S.ApprovalBody) },
    handler: async (ctx) => {
      const q = ctx.query as { state?: "pending"; session?: string };
      const readable = await readableEnvironments(ctx.cp, caller(ctx));
      const all = await ctx.cp.approvals.list({ ...(q.state ? { state: q.state } : {}), ...(q.session ? { sessionId: q.session } : {}) });
      const out = [];
      for (const a of all) if (await readable(a.environment)) out.push(a);
      return out;
    },
  },
  {
    method: "GET",
    path: "/v1/approvals/:id",
    operationId: "getApproval",
    summary: "One approval.",
    access: { kind: "environment", permission: "read" },
    scope: approvalScope,
    params: IdParams,
    response: { status: 200, schema: S.ApprovalBody },
    handler: async ({ cp, params }) => cp.approvals.get(params.id ?? ""),
  },
  {
    method: "POST",
    path: "/v1/approvals/:id/approve",
    operationId: "approve",
    summary: "Approve a waiting command. Needs a person (not the requester) with write on the environment, and deploy when the command deploys.",
    access: { kind: "environment", permission: "write" },
    scope: approvalScope,
    params: IdParams,
    body: S.DecisionBody,
    response: { status: 200, schema: S.ApprovalBody },
    handler: async (ctx) => ctx.cp.approvals.decide(ctx.params.id ?? "", caller(ctx), true, (ctx.body as { reason?: string }).reason ?? null),
  },
  {
    method: "POST",
    path: "/v1/approvals/:id/deny",
    operationId: "deny",
    summary: "Deny a waiting command: it exits 126 with the reason.",
    access: { kind: "environment", permission: "write" },
    scope: approvalScope,
    params: IdParams,
    body: S.DecisionBody,
    response: { status: 200, schema: S.ApprovalBody },
    handler: async (ctx) => ctx.cp.approvals.decide(ctx.params.id ?? "", caller(ctx), false, (ctx.body as { reason?: string }).reason ?? null),
  },
];
