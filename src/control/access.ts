/**
 * Access decisions over stored state: which environment a request touches, the human an agent
 * works for, and the permissions that follow (src/guard/rbac.ts holds the rules themselves).
 */
import type { Principal, Session, Store } from "../core/index.ts";
import { PaddockError } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import { describePermissions, effectivePermissions, isAdmin, type Permission } from "../guard/index.ts";

export class Access {
  constructor(private readonly store: Store) {}

  /**
   * The spec whose `rbac:` applies to an environment: its newest applied version, so a change to
   * roles takes effect when it is applied (even before its build finishes). Null when unknown.
   */
  async rbacSpec(environment: string): Promise<EnvironmentSpec | null> {
    const env = await this.store.getEnvironment(environment);
    if (!env) return null;
    return (await this.versionSpec(environment, env.latestVersion))?.spec ?? null;
  }

  // Versions never change once applied, so their parsed specs can be kept (one per version).
  readonly #specs = new Map<string, { spec: EnvironmentSpec; fileName: string } | null>();

  /** The spec and file name of one applied version (cached: versions are immutable), or null. */
  async versionSpec(environment: string, version: number): Promise<{ spec: EnvironmentSpec; fileName: string } | null> {
    const key = `${environment}\0${version}`;
    if (this.#specs.has(key)) return this.#specs.get(key) ?? null;
    const v = await this.store.getEnvironmentVersion(environment, version);
    const found = v ? { spec: v.spec as EnvironmentSpec, fileName: v.fileName } : null;
    // Unknown versions are not cached: they may be applied later under the same number after a delete.
    if (found) this.#specs.set(key, found);
    if (this.#specs.size > 1000) this.#specs.delete(this.#specs.keys().next().value as string);
    return found;
  }

  /** The human an agent acts for in a session (its starter), or named when it starts one. */
  async humanFor(actor: Principal, session: Session | null, onBehalfOf?: string): Promise<Principal | null> {
    if (actor.kind === "human") return actor;
    const name = session?.startedBy ?? onBehalfOf;
    if (!name) return null;
    const p = await this.store.getPrincipalByName(name);
    return p && p.kind === "human" && p.disabledAt === null ? p : null;
  }

  async permissions(actor: Principal, environment: string, session: Session | null, onBehalfOf?: string): Promise<Set<Permission>> {
    const spec = await this.rbacSpec(environment);
    return effectivePermissions(actor, await this.humanFor(actor, session, onBehalfOf), spec);
  }

  /** Rejects `forbidden`, saying what was missing and what the caller has. */
  async require(actor: Principal, permission: Permission, environment: string, session: Session | null, onBehalfOf?: string): Promise<Set<Permission>> {
    const perms = await this.permissions(actor, environment, session, onBehalfOf);
    if (!perms.has(permission)) throw forbidden(actor, permission, environment, perms);
    return perms;
  }

  requireAdmin(actor: Principal): void {
    if (!isAdmin(actor)) throw new PaddockError("forbidden", `this needs the admin role; ${actor.name} has role ${JSON.stringify(actor.role)}`);
  }
}

export function forbidden(actor: Principal, permission: Permission, environment: string, perms: Set<Permission>): PaddockError {
  const who = actor.kind === "agent" ? `agent ${actor.name} (acting with the intersection of its role and its human's)` : `${actor.name} (role ${JSON.stringify(actor.role)})`;
  return new PaddockError("forbidden", `${permission} on environment ${JSON.stringify(environment)} is needed; ${who} has ${describePermissions(perms)} there`);
}
