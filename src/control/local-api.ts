/**
 * What `http://paddock.internal` answers for code inside a sandbox (served by the gateway, which
 * names the calling session from its source address). Its purpose: agent tool calls go through the
 * same command check as the exec API before they run, from inside the sandbox, so an agent's own
 * shell tool is held to `allow`, `deny`, `ask` and the deploy permission too.
 *
 * - `POST /v1/check` `{"command": "npm test"}` or `{"argv": ["npm", "test"]}` →
 *   `{"allowed": true}` or `{"allowed": false, "message": "paddock: 'rm' denied by …"}`; an `ask`
 *   command waits for a person's answer first.
 * - `POST /v1/hooks/claude-code`: a Claude Code PreToolUse hook input (`tool_name`, `tool_input`)
 *   → the hook's JSON answer (`hookSpecificOutput.permissionDecision` allow or deny, with the
 *   reason the agent reads). Tools other than Bash get no opinion (`{}`).
 * - `GET /v1/whoami` → the session, environment and acting principal.
 */
import { z } from "zod";
import type { Store } from "../core/index.ts";
import type { LocalApi, LocalResponse } from "../gateway/index.ts";
import type { CommandGate } from "./commands.ts";
import type { Sessions } from "./sessions.ts";

const CheckBody = z.union([z.object({ command: z.string().min(1).max(100_000) }), z.object({ argv: z.array(z.string()).min(1).max(10_000) })]);
const ClaudeHook = z.object({ tool_name: z.string(), tool_input: z.record(z.string(), z.unknown()).optional() });

export function localApi(deps: { store: Store; sessions: Sessions; commands: CommandGate }): LocalApi {
  return async (sessionId, req) => {
    const session = await deps.store.getSession(sessionId);
    if (!session || session.state !== "running") return { status: 403, body: { error: "this sandbox has no running session" } };
    // Who acts inside the sandbox: its agent when it has one, else the person who started it.
    const actor = await deps.store.getPrincipalByName(session.agent ?? session.startedBy);
    if (!actor || actor.disabledAt !== null) return { status: 403, body: { error: "the session's principal is unknown or disabled" } };
    const route = `${req.method} ${req.path.split("?")[0]}`;
    switch (route) {
      case "GET /v1/whoami":
        return { status: 200, body: { session: session.id, environment: session.environment, principal: actor.name, kind: actor.kind, onBehalfOf: session.agent ? session.startedBy : null } };
      case "POST /v1/check": {
        const body = parseJson(req.body, CheckBody);
        if ("error" in body) return body.error;
        const refusal = await deps.commands.decide(session, actor, "command" in body.ok ? body.ok.command : body.ok.argv, req.signal);
        return { status: 200, body: refusal === null ? { allowed: true } : { allowed: false, message: refusal } };
      }
      case "POST /v1/hooks/claude-code": {
        const body = parseJson(req.body, ClaudeHook);
        if ("error" in body) return body.error;
        const command = body.ok.tool_input?.command;
        if (body.ok.tool_name !== "Bash") return { status: 200, body: {} };
        if (typeof command !== "string" || command.trim() === "") return hookAnswer("deny", "paddock: the Bash tool call has no command");
        const refusal = await deps.commands.decide(session, actor, command, req.signal);
        return refusal === null ? hookAnswer("allow", "paddock: allowed by guardrails.commands") : hookAnswer("deny", refusal);
      }
      default:
        return { status: 404, body: { error: `no route ${route} (POST /v1/check, POST /v1/hooks/claude-code, GET /v1/whoami)` } };
    }
  };
}

function hookAnswer(decision: "allow" | "deny", reason: string): LocalResponse {
  return { status: 200, body: { hookSpecificOutput: { hookEventName: "PreToolUse", permissionDecision: decision, permissionDecisionReason: reason } } };
}

function parseJson<T>(raw: Buffer, schema: z.ZodType<T>): { ok: T } | { error: LocalResponse } {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString("utf8"));
  } catch {
    return { error: { status: 400, body: { error: "the body must be JSON" } } };
  }
  const r = schema.safeParse(value);
  if (!r.success) return { error: { status: 400, body: { error: `bad request: ${r.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ")}` } } };
  return { ok: r.data };
}
