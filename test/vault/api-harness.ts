/**
 * The secret routes served by fastify the way src/server/index.ts serves the route table (zod
 * parsing of params, query and body; one error format), over a stand-in control plane that has
 * only what these routes use: `vault` and `store`. Used until the integration registers
 * `secretRoutes` in the real server; test/server then covers them with the rest of the table.
 * No authentication here: test/server/rbac.test.ts covers who may call these routes.
 */
import Fastify from "fastify";
import type { z } from "zod";
import type { ControlPlane } from "../../src/control/index.ts";
import { asPaddockError, httpStatusOf, invalid, PaddockError } from "../../src/core/index.ts";
import type { Store } from "../../src/core/store.ts";
import type { Vault } from "../../src/gateway/vault.ts";
import type { Route } from "../../src/server/routes.ts";

function parse(schema: z.ZodType | undefined, value: unknown, where: string): unknown {
  if (!schema) return value;
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${i.path.length ? i.path.join(".") : where}: ${i.message}`);
  throw invalid(`bad ${where}: ${problems.join("; ")}`, { problems });
}

export async function serveRoutes(routes: Route[], parts: { vault?: Vault; store: Store }): Promise<{ url: string; close: () => Promise<void> }> {
  const cp = parts as unknown as ControlPlane;
  const app = Fastify({ logger: false });
  app.setErrorHandler((err, _req, reply) => {
    const e = err instanceof PaddockError ? err : (err as { statusCode?: number }).statusCode === 400 ? invalid((err as Error).message) : asPaddockError(err);
    void reply.code(httpStatusOf(e.code)).send({ error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } });
  });
  for (const r of routes) {
    app.route({
      method: r.method,
      url: r.path,
      handler: async (req, reply) => {
        const params = parse(r.params, req.params, "path parameters");
        const query = parse(r.query, req.query, "query");
        const body = r.body && r.body !== "binary" ? parse(r.body, req.body ?? {}, "body") : req.body;
        const result = await r.handler({ cp, principal: null, scope: null, params: params as Record<string, string>, query: query as Record<string, string>, body, req, reply });
        if (r.response.schema === "none") return reply.send();
        return result;
      },
    });
  }
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
}
