/**
 * Who is logged in, for every page: GET /v1/whoami (the principal and, per environment, its
 * permissions). Pages offer only what the principal may do; the server checks again regardless.
 */
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { Me, Permission } from "./types.ts";

export const MeContext = createContext<Me | null>(null);

/** The logged-in principal; the app shell renders pages only once it is known. */
export function useMe(): Me {
  const me = useContext(MeContext);
  if (!me) throw new Error("useMe outside the logged-in app shell");
  return me;
}

/** May `me` do `permission` on environment `env`? Admins may do everything. */
export function can(me: Me, env: string, permission: Permission): boolean {
  return me.admin || (me.environments[env]?.includes(permission) ?? false);
}

/** The environments where `me` may start sessions and runs (write), sorted. */
export function writableEnvironments(me: Me): string[] {
  return Object.keys(me.environments).filter((e) => can(me, e, "write")).sort();
}

/** May `me` answer approvals anywhere (a person with write somewhere; agents never answer)? */
export function mayApprove(me: Me): boolean {
  return me.principal.kind === "human" && (me.admin || writableEnvironments(me).length > 0);
}
