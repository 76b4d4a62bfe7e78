/** envd's filesystem service (Connect-RPC filesystem.Filesystem), /files upload and download, /health. Scaffold: filled in by its owner. */
import type { FastifyInstance } from "fastify";
import type { E2bContext } from "./context.ts";

export function registerFilesystemService(scope: FastifyInstance, ctx: E2bContext): void {
  void scope;
  void ctx;
}
