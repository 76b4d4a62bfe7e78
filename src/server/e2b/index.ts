/**
 * The E2B-compatible front end (docs/e2b.md): code written for E2B's SDK runs on Paddock with two
 * environment variables changed (E2B_API_URL and E2B_SANDBOX_URL → this server, E2B_API_KEY → a
 * Paddock token). It listens on a port of its own, so E2B's paths (`/sandboxes`, `/health`,
 * `/files`, `/process.Process/*`) never meet Paddock's own API and UI.
 *
 * It is a translation, not a second implementation: an E2B sandbox is a Paddock session, a
 * template id names an environment, the API key is a Paddock token, and every call goes through
 * the same control plane, RBAC, audit, guardrails and egress gateway as a native one.
 */
import Fastify from "fastify";
import type { ControlPlane } from "../../control/index.ts";
import type { ErrorReporter } from "../errors.ts";
import { registerControlApi } from "./api.ts";
import type { E2bContext, E2bSandboxes } from "./context.ts";
import { registerFilesystemService } from "./envd-filesystem.ts";
import { registerProcessService } from "./envd-process.ts";
import { createE2bSandboxes } from "./sandboxes.ts";

export type { E2bContext, E2bSandboxes, EnvdCaller } from "./context.ts";

export interface E2bServerOptions {
  host: string;
  /** 0: pick a free port. */
  port: number;
  log?: (line: string) => void;
}

export interface RunningE2bServer {
  /** Base URL for both E2B_API_URL and E2B_SANDBOX_URL, e.g. http://127.0.0.1:7071. */
  url: string;
  close(): Promise<void>;
}

export async function startE2bServer(cp: ControlPlane, errors: ErrorReporter, opts: E2bServerOptions): Promise<RunningE2bServer> {
  const sandboxes: E2bSandboxes = createE2bSandboxes(cp);
  const ctx: E2bContext = { cp, errors, log: opts.log ?? (() => undefined), sandboxes };
  // forceCloseConnections: the SDK's connection pool opens sockets it may never send a request on,
  // and Node's close would wait for them until headersTimeout (~70 s) instead of closing.
  // bodyLimit: what Fastify's own parsers buffer for a route that sets none (the 501 routes,
  // DELETE, a text/plain body sent anywhere), before any authentication: 1 MiB, not the 256 MiB it
  // was (200 MiB sent anonymously to POST /templates grew the server by ~600 MB). Connect bodies
  // have their own limit (connect.ts), and /files uploads are streams, which it does not bound.
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024, requestTimeout: 300_000, forceCloseConnections: true });
  // Each service is its own plugin scope, with its own content-type parsers and error shape.
  // A path no service serves answers in E2B's error shape too, as every other refusal here.
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ code: 404, message: `${req.method} ${req.url.split("?")[0]?.slice(0, 200) ?? ""} is not part of the E2B API served here (docs/e2b.md)` });
  });
  await app.register(async (scope) => registerControlApi(scope, ctx));
  await app.register(async (scope) => registerProcessService(scope, ctx));
  await app.register(async (scope) => registerFilesystemService(scope, ctx));
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  return {
    url: `http://${opts.host}:${port}`,
    close: async () => {
      await app.close();
    },
  };
}
