/**
 * Provider and routing routes (docs/routing.md): the installation's provider instances
 * (`paddock provider add/list/remove/health`, admin only: they hold credentials and decide where
 * every environment's code runs) and a routing explanation (`paddock route explain`, read on the
 * environment). A credential travels one way only: in the body of the POST; no answer carries one.
 */
import { z } from "zod";
import type { ControlPlane } from "../control/index.ts";
import { type Route, type Scope } from "./routes.ts";

const ADMIN = { kind: "admin" } as const;
const KINDS = ["local", "k8s", "e2b", "daytona", "ec2"] as const;

const Routing = z.object({
  pricePerVcpuHour: z.number().optional(),
  pricePerGibHour: z.number().optional(),
  latencyClass: z.enum(["interactive", "batch"]).optional(),
  region: z.string().optional(),
  maxCpu: z.number().optional(),
  maxMemoryBytes: z.number().optional(),
}).describe("Routing settings (providers.yml `routing:`); maxMemory is shown in bytes.");

export const ProviderInfoSchema = z.object({
  name: z.string(),
  kind: z.enum(KINDS),
  status: z.string().describe('"ready", or "failed: why" when it could not be built at start (sessions skip it).'),
  selfHosted: z.boolean().nullable().describe("Runs on infrastructure the installation controls; null when not built."),
  settings: z.record(z.string(), z.unknown()).describe("The kind's settings from providers.yml (never credentials)."),
  routing: Routing,
  credentials: z.array(z.object({ name: z.string(), set: z.boolean() })).describe("Credential names the kind needs and whether the vault has each; never values."),
});

const AddProviderBody = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "1 to 63 lowercase letters, digits and dashes").describe("Instance name, as environments' `providers:` name it."),
  kind: z.enum(KINDS),
  settings: z.record(z.string(), z.unknown()).optional().describe("The kind's settings (see its driver's documentation)."),
  routing: z.record(z.string(), z.unknown()).optional().describe("As providers.yml `routing:` (pricePerVcpuHour, pricePerGibHour, latencyClass, region, maxCpu, maxMemory, createTimeoutSeconds)."),
  credentials: z.record(z.string(), z.string().min(1).max(65_536)).optional().describe("Credential name → value, sealed in the vault as provider/<name>/<credential>. Never returned."),
}).strict();

const HealthSchema = z.object({
  name: z.string(), ok: z.boolean(), detail: z.string(), latencyMs: z.number(),
  breaker: z.enum(["closed", "open", "half-open"]), failures: z.number().describe("Create failures in a row."), lastError: z.string().nullable(),
});

const Factor = z.object({ name: z.string(), value: z.string(), points: z.number(), excludes: z.boolean(), note: z.string() });
const Verdict = z.object({ provider: z.string(), eligible: z.boolean(), reason: z.string(), score: z.number(), estimateUsd: z.number(), factors: z.array(Factor) });
export const RouteExplanation = z.object({
  request: z.object({
    environment: z.string(), preference: z.array(z.string()), compute: z.object({ cpu: z.number(), memoryBytes: z.number(), timeoutMs: z.number() }),
    latency: z.enum(["interactive", "batch"]), selfHostedOnly: z.boolean(), isolation: z.string().optional(), pooledOn: z.string().optional(), expectedDurationMs: z.number().optional(),
  }),
  decision: z.object({ strategy: z.string(), order: z.array(z.string()), chosen: z.string().nullable(), reason: z.string(), candidates: z.array(Verdict) }),
});

const environmentScope = async ({ params }: { params: Record<string, string> }): Promise<Scope> => ({ environment: params.name ?? "", session: null });

export function providerRoutes(): Route[] {
  return [
    {
      method: "GET", path: "/v1/providers", operationId: "listProviders", access: ADMIN,
      summary: "The installation's provider instances: local and providers.yml's, with status, settings and which credentials are set (never their values).",
      response: { status: 200, schema: z.array(ProviderInfoSchema) },
      handler: async ({ cp }) => registryOf(cp).list(),
    },
    {
      method: "POST", path: "/v1/providers", operationId: "addProvider", access: ADMIN,
      summary: "Configure a provider instance: validated, built by its kind's driver, credentials sealed in the vault, written to providers.yml, usable at once.",
      body: AddProviderBody,
      response: { status: 201, schema: ProviderInfoSchema },
      handler: async ({ cp, body, reply }) => {
        const b = body as z.infer<typeof AddProviderBody>;
        const info = await registryOf(cp).add({ name: b.name, kind: b.kind, ...(b.settings ? { settings: b.settings } : {}), ...(b.routing ? { routing: b.routing } : {}), ...(b.credentials ? { credentials: b.credentials } : {}) });
        reply.code(201);
        return info;
      },
    },
    {
      method: "DELETE", path: "/v1/providers/:name", operationId: "removeProvider", access: ADMIN,
      summary: "Remove a provider instance from providers.yml and its credentials from the vault; refused while sessions or pool members run on it.",
      params: z.object({ name: z.string().min(1) }),
      response: { status: 204, schema: "none" },
      handler: async ({ cp, params, reply }) => {
        await registryOf(cp).remove(params.name ?? "");
        reply.code(204);
        return undefined;
      },
    },
    {
      method: "GET", path: "/v1/providers/health", operationId: "providerHealth", access: ADMIN,
      summary: "A fresh health check of every provider instance, with its circuit breaker's state.",
      response: { status: 200, schema: z.array(HealthSchema) },
      handler: async ({ cp }) => registryOf(cp).health(),
    },
    {
      method: "GET", path: "/v1/environments/:name/route", operationId: "explainRoute", access: { kind: "environment", permission: "read" }, scope: environmentScope,
      summary: "Where a session of the environment's current version would run now, and why: every candidate provider with every factor (chosen, fallbacks, skipped). Starts nothing.",
      params: z.object({ name: z.string().min(1) }),
      query: z.object({ latency: z.enum(["interactive", "batch"]).optional().describe("The start's latency class; default batch.") }),
      response: { status: 200, schema: RouteExplanation },
      handler: async ({ cp, params, query }) => cp.sessions.explain(params.name ?? "", query.latency === "interactive" || query.latency === "batch" ? { latency: query.latency } : {}),
    },
  ];
}

function registryOf(cp: ControlPlane) {
  return cp.providerRegistry;
}
