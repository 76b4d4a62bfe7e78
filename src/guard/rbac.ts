/**
 * Role-based access: what a principal may do on one environment. Roles map to permissions in each
 * environment's `rbac:`; `admin` is built in and may do everything, including what no environment
 * grants (environments, secrets, principals). An agent acts with the intersection of its own role
 * and the human it works for, and deploys only when the environment lets agents deploy at all.
 */
import type { Principal } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import { ADMIN_ROLE } from "./identity.ts";

export type Permission = "read" | "write" | "deploy";
export const PERMISSION_ORDER: readonly Permission[] = ["read", "write", "deploy"];

/** What a route needs: nothing (public), any principal, admin, or a permission on one environment. */
export type Requirement = { kind: "public" } | { kind: "authenticated" } | { kind: "admin" } | { kind: "environment"; permission: Permission };

type RbacSpec = Pick<EnvironmentSpec, "rbac"> & { guardrails: { commands: Pick<EnvironmentSpec["guardrails"]["commands"], "agentsMayDeploy"> } };

export const isAdmin = (p: Principal): boolean => p.kind === "human" && p.role === ADMIN_ROLE;

/** A role's permissions on an environment; an unknown environment (null spec) grants nothing but to admin. */
export function rolePermissions(p: Principal, spec: RbacSpec | null): Set<Permission> {
  if (isAdmin(p)) return new Set(PERMISSION_ORDER);
  return new Set(spec?.rbac[p.role] ?? []);
}

/**
 * What `actor` may do on the environment, acting for `human` when it is an agent. A human acts on
 * its own; an agent without a human behind it may do nothing.
 */
export function effectivePermissions(actor: Principal, human: Principal | null, spec: RbacSpec | null): Set<Permission> {
  const own = rolePermissions(actor, spec);
  if (actor.kind === "human") return own;
  // Fail closed: an agent's authority is borrowed; with no human to borrow from it has none.
  if (!human || human.kind !== "human" || human.disabledAt !== null) return new Set();
  const theirs = rolePermissions(human, spec);
  const both = new Set([...own].filter((x) => theirs.has(x)));
  if (!spec?.guardrails.commands.agentsMayDeploy) both.delete("deploy");
  return both;
}

/** "read, write" for messages; "no permissions" when empty. */
export function describePermissions(perms: Set<Permission>): string {
  const list = PERMISSION_ORDER.filter((x) => perms.has(x));
  return list.length ? list.join(", ") : "no permissions";
}
