/**
 * The secret and egress routes, in the route-table style of routes.ts (the server registers them
 * beside `routes`). A secret value travels in one direction only: in the body of a PUT. No
 * response, error or log line carries one: listings show names, scopes and times.
 */
import { z } from "zod";
import type { ControlPlane } from "../control/index.ts";
import { notFound, PaddockError, unavailable } from "../core/index.ts";
import type { Vault } from "../gateway/vault.ts";
import { sessionScope, type Route } from "./routes.ts";
import { IdParams } from "./schemas.ts";

const Scope = {
  environment: z.string().optional().describe("Only sessions of this environment use the value."),
  team: z.string().optional().describe("Only sessions started for this team use the value."),
  agent: z.string().optional().describe("Only sessions of this agent identity use the value."),
};

export const SecretNameParams = z.object({ name: z.string().describe("Upper-case letters, digits and _ (e.g. STRIPE_API_KEY).") });

export const PutSecretBody = z
  .object({
    value: z.string().describe("The secret value: 1 byte to 64 KiB of UTF-8, no NUL. Never returned by any route."),
    ...Scope,
  })
  .strict()
  .describe("At most one of environment, team, agent; none sets the global value. The most specific scope wins at use: agent > team > environment > global.");

export const SecretScopeQuery = z.object(Scope).describe("The scope to delete; none means the global value.");

export const SecretListItem = z.object({
  name: z.string(),
  scope: z.object(Scope).describe("{} for global; else exactly one of environment, team, agent."),
  hosts: z.array(z.string()).optional().describe("Hosts the secret is swapped into by default; absent when Paddock knows none."),
  createdAt: z.string(),
  updatedAt: z.string(),
  lastUsedAt: z.string().nullable().describe("When the gateway last swapped it into a request; null if never."),
});

export const EgressQuery = z.object({
  limit: z.string().regex(/^\d+$/, "a whole number").optional().describe("At most this many records (default 100, at most 1000)."),
  after: z.string().regex(/^\d+$/, "a record id").optional().describe("Only records after this id, oldest first (for following); without it, the newest records."),
});

export const EgressRecordBody = z.object({
  id: z.number().describe("Increasing; pass the last one seen as `after` to follow."),
  sessionId: z.string(),
  time: z.string(),
  method: z.string(),
  host: z.string(),
  port: z.number(),
  path: z.string().describe("Query values dropped."),
  status: z.number(),
  bytesOut: z.number(),
  bytesIn: z.number(),
  durationMs: z.number(),
  swapped: z.array(z.string()).describe("Names of the secrets swapped into the request (never values)."),
  decision: z.enum(["allowed", "denied"]),
  rule: z.string(),
  reason: z.string().optional(),
});

const DEFAULT_EGRESS_LIMIT = 100;
const MAX_EGRESS_LIMIT = 1000;

export interface SecretRouteOptions {
  /** Hosts a secret is bound to by default (e.g. the gateway's `defaultBinding(name)?.hosts`); null when none is known. */
  hostsOf?: (name: string) => string[] | null;
}

/** The vault of a control plane; `unavailable` until the integration wires one in. */
function vaultOf(cp: ControlPlane): Vault {
  const vault = (cp as ControlPlane & { vault?: Vault }).vault;
  if (!vault) throw unavailable("this server has no secret vault configured; upgrade or restart Paddock");
  return vault;
}

/** The secret and egress routes; `hostsOf` adds each secret's default hosts to the listing. */
export function secretRoutesWith(opts: SecretRouteOptions = {}): Route[] {
  return [
    {
      method: "PUT",
      path: "/v1/secrets/:name",
      operationId: "setSecret",
      access: { kind: "admin" },
      summary: "Set a secret's value in one scope (replacing any earlier value there). The next request through the gateway uses it.",
      params: SecretNameParams,
      body: PutSecretBody,
      response: { status: 204, schema: "none" },
      handler: async ({ cp, params, body, reply }) => {
        const { value, ...scope } = body as z.infer<typeof PutSecretBody>;
        await vaultOf(cp).set(params.name ?? "", value, scope);
        reply.code(204);
        return undefined;
      },
    },
    {
      method: "GET",
      path: "/v1/secrets",
      operationId: "listSecrets",
      access: { kind: "admin" },
      summary: "Every secret by name and scope, with when it was set and last used. Values are never returned.",
      response: { status: 200, schema: z.array(SecretListItem) },
      handler: async ({ cp }) =>
        (await vaultOf(cp).list()).map((s) => {
          const hosts = opts.hostsOf?.(s.name) ?? null;
          return { name: s.name, scope: s.scope, ...(hosts && hosts.length ? { hosts } : {}), createdAt: s.createdAt, updatedAt: s.updatedAt, lastUsedAt: s.lastUsedAt };
        }),
    },
    {
      method: "DELETE",
      path: "/v1/secrets/:name",
      operationId: "deleteSecret",
      access: { kind: "admin" },
      summary: "Delete a secret's value in exactly one scope (the query names it; none means global). Other scopes keep theirs.",
      params: SecretNameParams,
      query: SecretScopeQuery,
      response: { status: 204, schema: "none" },
      handler: async ({ cp, params, query, reply }) => {
        const name = params.name ?? "";
        const scope = query as z.infer<typeof SecretScopeQuery>;
        if (!(await vaultOf(cp).delete(name, scope))) throw new PaddockError("not_found", `secret ${name} has no value in scope ${scopeText(scope)} (see GET /v1/secrets)`);
        reply.code(204);
        return undefined;
      },
    },
    {
      method: "GET",
      path: "/v1/sessions/:id/egress",
      operationId: "listEgress",
      access: { kind: "environment", permission: "read" },
      scope: sessionScope,
      summary: "Requests that left the session through the egress gateway, allowed and denied, oldest first.",
      params: IdParams,
      query: EgressQuery,
      response: { status: 200, schema: z.array(EgressRecordBody) },
      handler: async ({ cp, params, query }) => {
        const id = params.id ?? "";
        if ((await cp.store.getSession(id)) === null) throw notFound("session", id);
        const limit = Math.min(query.limit === undefined ? DEFAULT_EGRESS_LIMIT : Number(query.limit), MAX_EGRESS_LIMIT);
        return cp.store.listEgressRecords({ sessionId: id, limit, ...(query.after === undefined ? {} : { afterId: Number(query.after) }) });
      },
    },
  ];
}

function scopeText(scope: { environment?: string; team?: string; agent?: string }): string {
  const entries = Object.entries(scope).filter(([, v]) => v);
  return entries.length ? entries.map(([k, v]) => `${k}=${String(v)}`).join(", ") : "global";
}

/** The routes with no default hosts in listings. */
export const secretRoutes: Route[] = secretRoutesWith();
