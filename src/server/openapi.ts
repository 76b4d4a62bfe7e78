import { z } from "zod";
import type { Route } from "./routes.ts";
import { ErrorBody } from "./schemas.ts";
import type { Requirement } from "../guard/index.ts";

/** What `x-paddock-access` says: "public", "any principal", "admin", or a permission ("read", "write") on the route's environment. */
export function accessText(r: Requirement): string {
  switch (r.kind) {
    case "public":
      return "public";
    case "authenticated":
      return "any principal";
    case "admin":
      return "admin";
    case "environment":
      return r.permission;
  }
}

/** The OpenAPI 3.1 document, generated from the route table (served at /v1/openapi.json). */
export function openApiDocument(routes: Route[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:([A-Za-z]+)/g, "{$1}");
    const parameters = [
      ...paramsOf(r.params, "path"),
      ...paramsOf(r.query, "query"),
    ];
    const op: Record<string, unknown> = {
      operationId: r.operationId,
      summary: r.summary,
      "x-paddock-access": accessText(r.access),
      ...(r.filtered ? { "x-paddock-filtered": true } : {}),
      ...(r.access.kind === "public" ? { security: [] } : {}),
      ...(parameters.length ? { parameters } : {}),
      responses: {
        [String(r.response.status)]: responseOf(r),
        ...(r.access.kind === "public" ? {} : { 401: { description: "No valid API token" }, 403: { description: "The caller lacks the permission in x-paddock-access" } }),
        default: { description: "Error", content: { "application/json": { schema: jsonSchema(ErrorBody) } } },
      },
    };
    if (r.body === "binary") op.requestBody = { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } };
    else if (r.body) op.requestBody = { required: true, content: { "application/json": { schema: jsonSchema(r.body) } } };
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: "3.1.0",
    info: { title: "Paddock API", version: "0.1.0", description: "Environments, templates and sandboxed sessions for coding agents." },
    servers: [{ url: "http://127.0.0.1:7070" }],
    components: { securitySchemes: { token: { type: "http", scheme: "bearer", description: "A Paddock API token (pdk_…): `paddock user add` prints one." } } },
    security: [{ token: [] }],
    paths,
  };
}

function responseOf(r: Route): Record<string, unknown> {
  const s = r.response.schema;
  const description = r.response.description ?? "Success";
  if (s === "none") return { description };
  if (s === "websocket") return { description: "Switching protocols to a WebSocket" };
  if (s === "binary") return { description, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } };
  if (s === "ndjson") return { description, content: { "application/x-ndjson": { schema: { type: "object" } }, "application/json": { schema: { type: "object" } } } };
  return { description, content: { "application/json": { schema: jsonSchema(s) } } };
}

function paramsOf(schema: z.ZodType | undefined, where: "path" | "query"): Record<string, unknown>[] {
  if (!schema) return [];
  const js = jsonSchema(schema) as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
  return Object.entries(js.properties ?? {}).map(([name, s]) => ({
    name,
    in: where,
    required: where === "path" || (js.required ?? []).includes(name),
    schema: s,
    ...(typeof s.description === "string" ? { description: s.description } : {}),
  }));
}

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { unrepresentable: "any", io: "input" }) as Record<string, unknown>;
  return rest;
}
