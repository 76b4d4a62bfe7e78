/** envd's process service (Connect-RPC process.Process). Scaffold: filled in by its owner. */
import type { FastifyInstance } from "fastify";
import type { E2bContext } from "./context.ts";

export function registerProcessService(scope: FastifyInstance, ctx: E2bContext): void {
  void scope;
  void ctx;
}
