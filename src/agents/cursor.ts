/**
 * Cursor's CLI (`cursor-agent`, also installed as `agent`), run headless in print mode with its
 * stream-json output. It is not on npm (cursor.com/install ships a self-contained Node bundle) and
 * cannot be pointed at another model endpoint, so Paddock cannot run it offline: this adapter is
 * written from Cursor's documentation and tested against a FAKE of the CLI
 * (test/fakes/cursor-agent.ts, test/agents/cursor.fake-cli.test.ts) that follows the same docs.
 *
 * Sources (read 2026): the stream-json events from https://cursor.com/docs/cli/reference/output-format
 * (system/init, user, assistant with one line per complete message, tool_call started/completed
 * keyed by `call_id` with a `*ToolCall` object holding `args` and, when completed, `result`,
 * terminal `result` with `is_error`, `result` text and `session_id`); the `shellToolCall` shape
 * (`args.command`, `result.success|failure {stdout, stderr, exitCode}`, `result.rejected`) is not
 * spelled out there and follows community captures of the real stream, so the parser keeps any
 * other shape as a generic tool call rather than dropping it. Flags from
 * https://cursor.com/docs/cli/reference/parameters: `-p/--print`, `--output-format`,
 * `-f/--force` (run tools without asking, except what `permissions.deny` names), `--trust`
 * (headless runs in an untrusted workspace), `--model`, `--resume <chatId>`; auth by
 * `CURSOR_API_KEY`. Permissions from https://cursor.com/docs/cli/reference/permissions:
 * `~/.cursor/cli-config.json` (global) `{"permissions": {"allow": [], "deny": ["Shell(rm)"]}}`,
 * where `Shell(x)` matches the first word of the command line. Rules from
 * https://cursor.com/docs/context/rules: `.cursor/rules/*.mdc` with `alwaysApply: true`.
 *
 * - Guardrails: `guardrails.commands.deny` → `Shell(name)` deny rules, so the CLI refuses them
 *   itself and the model reads the rejection. `Shell(x)` only sees the first word, so Paddock's
 *   exec guard (kernel, every exec in the sandbox) remains what actually stops `echo && rm x`.
 *   `allow` and `ask` are not mirrored: an allow list in the CLI would make everything else
 *   prompt, and headless nothing can answer.
 * - Instructions: a project rule `.cursor/rules/paddock.mdc` (always applied) rather than
 *   AGENTS.md, so a repository's own AGENTS.md is not overwritten. The CLI has no user-level rules
 *   file (user rules live in Cursor's account settings).
 * - CA: the bundle is Node, so `NODE_EXTRA_CA_CERTS`.
 * - Endpoint: none can be set; the gateway swaps `CURSOR_API_KEY` towards Cursor's own hosts.
 * - Not supported here: skills and MCP servers (the CLI reads `.cursor/mcp.json`; written when
 *   the environment names servers), hooks (`.cursor/hooks.json`) until they can be tested.
 */
import { PaddockError } from "../core/index.ts";
import type { AgentAdapter, AgentContext, AgentEvent, AgentFile, AgentLaunch, StreamParser } from "./types.ts";

const CHAT_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$/;

export const cursor: AgentAdapter = {
  name: "cursor",
  title: "Cursor CLI",
  package: null,
  vendor: { hosts: ["api.cursor.com", "api2.cursor.sh"], keyEnv: "CURSOR_API_KEY" },
  prepare,
  start: (prompt, ctx) => launch(prompt, null, ctx),
  resume: (prompt, agentSessionId, ctx) => {
    if (!CHAT_ID.test(agentSessionId)) throw new PaddockError("invalid_argument", `Cursor chat ids are the "started" event's session id, got ${JSON.stringify(agentSessionId)}`);
    return launch(prompt, agentSessionId, ctx);
  },
  parser: () => new CursorStreamParser(),
};

function prepare(ctx: AgentContext): { env: Record<string, string>; files: AgentFile[] } {
  const env: Record<string, string> = { NODE_EXTRA_CA_CERTS: ctx.caFile, NO_COLOR: "1" };
  const files: AgentFile[] = [{ path: `${ctx.home}/.cursor/cli-config.json`, content: JSON.stringify(cliConfig(ctx.commands.deny), null, 2) + "\n" }];
  if (ctx.instructions !== null) {
    files.push({ path: `${ctx.cwd}/.cursor/rules/paddock.mdc`, content: `---\ndescription: Instructions from the Paddock environment\nalwaysApply: true\n---\n\n${ctx.instructions}\n` });
  }
  if (Object.keys(ctx.mcp).length > 0) files.push({ path: `${ctx.home}/.cursor/mcp.json`, content: JSON.stringify({ mcpServers: ctx.mcp }, null, 2) + "\n" });
  return { env, files };
}

/** The CLI's global config with the deny list as `Shell(name)` rules (a path rule by its basename too). */
export function cliConfig(deny: string[]): Record<string, unknown> {
  const names = deny.flatMap((rule) => (rule.includes("/") ? [rule, rule.slice(rule.lastIndexOf("/") + 1)] : [rule]));
  return { version: 1, permissions: { allow: [], deny: [...new Set(names)].map((n) => `Shell(${n})`) } };
}

function launch(prompt: string, agentSessionId: string | null, ctx: AgentContext): AgentLaunch {
  const { env, files } = prepare(ctx);
  const argv = [ctx.bin, "--print", "--output-format", "stream-json", "--force", "--trust"];
  if (ctx.model !== null) argv.push("--model", ctx.model);
  if (agentSessionId !== null) argv.push("--resume", agentSessionId);
  // After "--" the prompt is never read as an option, whatever it starts with.
  argv.push("--", prompt);
  return { argv, env, files };
}

type Json = Record<string, unknown>;

/** stream-json → AgentEvents (one JSON object a line; see the header for the documented shapes). */
export class CursorStreamParser implements StreamParser {
  line(text: string): AgentEvent[] {
    if (text.trim() === "") return [];
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return [{ type: "raw", line: text }];
    }
    if (!isObject(msg)) return [{ type: "raw", line: text }];
    return map(msg) ?? [{ type: "raw", line: text }];
  }

  end(): AgentEvent[] {
    return [];
  }
}

function map(msg: Json): AgentEvent[] | null {
  switch (msg.type) {
    case "system":
      return msg.subtype === "init" ? [{ type: "started", agentSessionId: str(msg.session_id), model: str(msg.model) }] : null;
    case "user":
    case "assistant": {
      const text = messageText(msg.message);
      return text === null ? null : [{ type: "message", role: msg.type, text }];
    }
    case "tool_call":
      return toolCall(msg);
    case "result": {
      const isError = msg.is_error === true || (typeof msg.subtype === "string" && msg.subtype !== "success");
      return [{ type: "result", text: str(msg.result) ?? str(msg.error) ?? "", isError }];
    }
    case "error":
      return [{ type: "error", message: str(msg.message) ?? str(msg.error) ?? JSON.stringify(msg) }];
    default:
      return null;
  }
}

function messageText(message: unknown): string | null {
  if (!isObject(message)) return null;
  if (typeof message.content === "string") return message.content;
  if (!Array.isArray(message.content)) return null;
  return message.content.map((c) => (isObject(c) && typeof c.text === "string" ? c.text : "")).join("");
}

function toolCall(msg: Json): AgentEvent[] | null {
  const id = str(msg.call_id) ?? "";
  const call = isObject(msg.tool_call) ? msg.tool_call : null;
  const key = call ? Object.keys(call)[0] : undefined;
  const body = key !== undefined && call && isObject(call[key]) ? call[key] : null;
  if (!key || !body) return null;
  // `function` tool calls carry their own name; the built-in ones are named by their key.
  const tool = key === "function" ? (str(body.name) ?? "function") : key.replace(/ToolCall$/, "");
  const args = isObject(body.args) ? body.args : key === "function" ? body.arguments : {};
  if (msg.subtype === "started") {
    const command = key === "shellToolCall" && isObject(args) && typeof args.command === "string" ? args.command : null;
    return [{ type: "tool_call", id, tool, input: args, command }];
  }
  if (msg.subtype === "completed") return [toolResult(id, body.result)];
  return null;
}

function toolResult(id: string, result: unknown): AgentEvent {
  if (!isObject(result)) return { type: "tool_result", id, output: "", isError: false, denied: false };
  if (isObject(result.rejected)) {
    const reason = str(result.rejected.reason) ?? "rejected by the CLI's permissions";
    return { type: "tool_result", id, output: reason, isError: true, denied: true };
  }
  const outcome = isObject(result.success) ? result.success : isObject(result.failure) ? result.failure : isObject(result.error) ? result.error : null;
  const failed = !isObject(result.success);
  if (!outcome) return { type: "tool_result", id, output: JSON.stringify(result), isError: failed, denied: false };
  const exitCode = typeof outcome.exitCode === "number" ? outcome.exitCode : null;
  const output = [str(outcome.stdout), str(outcome.stderr), str(outcome.content), str(outcome.message)].filter((s) => s !== null && s !== "").join("");
  // Paddock's exec guard refuses with exit 126 and a "paddock: … denied" line.
  const denied = exitCode === 126 && /paddock: .*denied/.test(output);
  return { type: "tool_result", id, output, isError: failed || (exitCode !== null && exitCode !== 0), denied };
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}
