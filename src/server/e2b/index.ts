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
  const app = Fastify({ logger: false, bodyLimit: 256 * 1024 * 1024, requestTimeout: 300_000 });
  // Each service is its own plugin scope, with its own content-type parsers and error shape.
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
