/** the E2B control API (sandboxes, templates): create, connect, kill, info, list, timeout, pause/resume. Scaffold: filled in by its owner. */
import type { FastifyInstance } from "fastify";
import type { E2bContext } from "./context.ts";

export function registerControlApi(scope: FastifyInstance, ctx: E2bContext): void {
  void scope;
  void ctx;
}
