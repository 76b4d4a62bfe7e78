/**
 * Authentication and authorisation at the API's edge: every request but health carries a bearer
 * token; the route's requirement (docs/rbac.md) is checked against the caller's permissions on the
 * environment the request touches; the decision is audited before the handler runs, so an action
 * is never performed unrecorded (a failed audit write fails the request).
 */
import type { IncomingHttpHeaders } from "node:http";
import type { ControlPlane } from "../control/index.ts";
import { forbidden } from "../control/index.ts";
import type { Principal, Session } from "../core/index.ts";
import { asPaddockError, PaddockError } from "../core/index.ts";
import { isAdmin, type Requirement } from "../guard/index.ts";
import type { Scope } from "./routes.ts";
import { accessText } from "./openapi.ts";

/** The token of `Authorization: Bearer <token>`, or undefined. */
export function bearerOf(headers: IncomingHttpHeaders): string | undefined {
  const h = headers.authorization;
  const m = typeof h === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  return m?.[1];
}

export const requirementText = accessText;

export interface Decision {
  principal: Principal | null;
  scope: Scope | null;
}

/** Authenticate; on failure audit the refusal (as `anonymous`) and reject `unauthorized`. */
export async function authenticate(cp: ControlPlane, headers: IncomingHttpHeaders, operation: string): Promise<Principal> {
  try {
    return await cp.identities.authenticate(bearerOf(headers));
  } catch (err) {
    await cp.audit.append({ actor: "anonymous", actorKind: "system", action: `api.${operation}`, target: "-", decision: "denied", rule: "authentication" });
    throw err;
  }
}

/**
 * Decide whether `who` may call the route on `scope`, audit the decision, and reject `forbidden`
 * when not allowed.
 */
export async function authorize(cp: ControlPlane, who: Principal, requirement: Requirement, operation: string, scope: Scope | null, target: string, detail: Record<string, unknown> = {}): Promise<void> {
  let denial: PaddockError | null = null;
  switch (requirement.kind) {
    case "public":
    case "authenticated":
      break;
    case "admin":
      if (!isAdmin(who)) denial = new PaddockError("forbidden", `this needs the admin role; ${who.name} has role ${JSON.stringify(who.role)}`);
      break;
    case "environment": {
      if (!scope) throw new PaddockError("internal", `route ${operation} needs a scope to check ${requirement.permission}`);
      const perms = await cp.access.permissions(who, scope.environment, scope.session, scope.onBehalfOf);
      if (!perms.has(requirement.permission)) denial = forbidden(who, requirement.permission, scope.environment, perms);
      // An agent must name the human it works for when it starts a session.
      if (!denial && who.kind === "agent" && operation === "startSession" && !scope.onBehalfOf) {
        denial = new PaddockError("forbidden", "an agent starts a session on behalf of a person: send onBehalfOf with their name");
      }
      break;
    }
  }
  await cp.audit.append({
    actor: who.name, actorKind: who.kind, onBehalfOf: onBehalfOf(who, scope), action: `api.${operation}`, target,
    environment: scope?.environment ?? null, sessionId: scope?.session?.id ?? null, decision: denial ? "denied" : "allowed",
    rule: `route needs ${requirementText(requirement)}`, detail: denial ? { ...detail, reason: denial.message } : detail,
  });
  if (denial) throw denial;
}

/** Audit a request that failed before it was authorised (bad input, unknown target). */
export async function auditFailure(cp: ControlPlane, who: Principal, operation: string, target: string, err: unknown): Promise<void> {
  const e = asPaddockError(err);
  await cp.audit.append({ actor: who.name, actorKind: who.kind, action: `api.${operation}`, target, decision: "denied", rule: e.code, detail: { reason: e.message } });
}

function onBehalfOf(who: Principal, scope: Scope | null): string | null {
  if (who.kind !== "agent") return null;
  return scope?.session?.startedBy ?? scope?.onBehalfOf ?? null;
}

/** A predicate for listings: may `who` read this environment (for this session)? */
export async function readableEnvironments(cp: ControlPlane, who: Principal): Promise<(env: string, session?: Session | null) => Promise<boolean>> {
  if (isAdmin(who)) return async () => true;
  const cache = new Map<string, boolean>();
  return async (env, session = null) => {
    const key = `${env}\0${session?.startedBy ?? ""}`;
    let ok = cache.get(key);
    if (ok === undefined) {
      ok = (await cp.access.permissions(who, env, session)).has("read");
      cache.set(key, ok);
    }
    return ok;
  };
}
