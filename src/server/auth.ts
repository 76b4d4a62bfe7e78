/**
 * Authentication and authorisation at the API's edge: every request but health carries a bearer
 * token (or the web UI's session cookie, under CSRF rules); the route's requirement (docs/rbac.md) is checked against the caller's permissions on the
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
import { crossSite, CSRF_HEADER, hasUiCookie, isPreviewHost, originOf, previewDomainOf, principalFromUiCookie } from "./ui.ts";

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

/** What authentication needs to know of a request besides its headers, to accept the UI cookie. */
export interface RequestKind {
  method: string;
  /** The exec WebSocket's upgrade: the cookie only with the server's own Origin. */
  websocket?: boolean;
}

/**
 * Authenticate; on failure audit the refusal (as `anonymous`) and reject `unauthorized`.
 *
 * A bearer token wins. Without one, and only when `request` says what kind of request this is,
 * the web UI's `paddock_session` cookie (src/server/ui.ts) is accepted, under rules that keep
 * other sites from riding on it (CSRF) — failing closed, with `forbidden`:
 * - an `Origin` other than the server's own, or `Sec-Fetch-Site: cross-site|same-site`, is refused;
 * - a request that may change something (not GET/HEAD) must carry `X-Paddock-CSRF: 1`: a custom
 *   header makes a cross-site fetch preflight, and the server never approves a preflight;
 * - a WebSocket upgrade must carry the server's own `Origin` (browsers always send one, and
 *   WebSockets are not bound by CORS or SameSite=Strict… which does hold, but not on every browser);
 * - never on a preview host (those serve what agents built).
 */
export async function authenticate(cp: ControlPlane, headers: IncomingHttpHeaders, operation: string, request?: RequestKind): Promise<Principal> {
  const bearer = bearerOf(headers);
  if (bearer === undefined && request && hasUiCookie(headers) && !isPreviewHost(headers, previewDomainOf(cp))) {
    const refusal = cookieRefusal(headers, request);
    if (refusal) {
      await cp.audit.append({ actor: "anonymous", actorKind: "system", action: `api.${operation}`, target: "-", decision: "denied", rule: "ui-cookie", detail: { reason: refusal } });
      throw new PaddockError("forbidden", refusal);
    }
    const principal = await principalFromUiCookie(cp, headers);
    if (principal) return principal;
  }
  try {
    return await cp.identities.authenticate(bearer);
  } catch (err) {
    await cp.audit.append({ actor: "anonymous", actorKind: "system", action: `api.${operation}`, target: "-", decision: "denied", rule: "authentication" });
    throw err;
  }
}

/** Why a cookie-authenticated request is refused before the cookie is even looked at, or null. */
function cookieRefusal(headers: IncomingHttpHeaders, request: RequestKind): string | null {
  const origin = originOf(headers);
  if (origin === "foreign" || crossSite(headers)) return "a request from another site cannot use the web UI's login: send `Authorization: Bearer <token>`";
  if (request.websocket) return origin === "same" ? null : "a WebSocket using the web UI's login must come from the UI's own pages (Origin)";
  if (request.method === "GET" || request.method === "HEAD") return null;
  return headers[CSRF_HEADER] === "1" ? null : "a request using the web UI's login must carry the header X-Paddock-CSRF: 1";
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
