/**
 * The E2B sandbox table: E2B sandbox id → the Paddock session behind it, and the envd access
 * tokens create/connect hand out.
 *
 * PROVISIONAL (lead's scaffold, replaced by the control-API work): the sandbox id is the session
 * id and the access token is a Paddock API token.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { ControlPlane } from "../../control/index.ts";
import { PaddockError } from "../../core/index.ts";
import type { Requirement } from "../../guard/index.ts";
import { authorize } from "../auth.ts";
import type { E2bSandboxes, EnvdCaller } from "./context.ts";

/** The sandbox an envd call names: the `E2b-Sandbox-Id` header, else the `<port>-<id>.<domain>` Host. */
export function sandboxIdOf(headers: IncomingHttpHeaders): string | null {
  const header = headers["e2b-sandbox-id"];
  if (typeof header === "string" && header !== "") return header;
  const host = typeof headers.host === "string" ? headers.host : "";
  const m = /^\d+-([a-z0-9-]+)\./i.exec(host);
  return m?.[1] ?? null;
}

export function createE2bSandboxes(cp: ControlPlane): E2bSandboxes {
  return {
    async envdCaller(headers: IncomingHttpHeaders, operation: string, requirement: Requirement, target?: string): Promise<EnvdCaller> {
      const sandboxId = sandboxIdOf(headers);
      if (sandboxId === null) throw new PaddockError("invalid_argument", "no sandbox named: send the E2b-Sandbox-Id header");
      const token = headers["x-access-token"];
      const principal = await cp.identities.authenticate(typeof token === "string" ? token : undefined);
      const session = await cp.sessions.get(sandboxId);
      await authorize(cp, principal, requirement, operation, { environment: session.environment ?? "", session }, target ?? sandboxId);
      return { sandboxId, sessionId: session.id, principal, environment: session.environment ?? null };
    },
  };
}
