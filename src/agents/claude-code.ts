/**
 * Claude Code (`@anthropic-ai/claude-code`, a native bun binary), run headless with `-p` and its
 * stream-json output. Written and tested against 2.1.197 (test/agents/claude-code.test.ts runs the
 * real CLI in real sandboxes against a local fake of the Messages API):
 *
 * - Permissions: `--dangerously-skip-permissions`, so tools run without a person to click "allow"
 *   (headless, nobody could). Deny rules and PreToolUse hooks still apply in that mode, so the
 *   environment's `guardrails.commands.deny` is mirrored as `permissions.deny` rules
 *   (`Bash(rm:*)`), and a PreToolUse hook on Bash asks Paddock (`paddock.internal`) about every
 *   command, which also covers `allow` and `ask` (the hook waits for a person's approval). The CLI
 *   refuses that flag as root unless `IS_SANDBOX=1`, which it is.
 * - The hook is a `command` hook running curl, not an `http` hook: its failure modes are ours to
 *   choose. `curl -f` turns an unreachable or refusing check into exit 2, which Claude Code treats
 *   as a blocking answer (the tool does not run, stderr reaches the model): fail closed.
 * - CA: the binary honours `NODE_EXTRA_CA_CERTS` (added to its built-in roots) as well as
 *   `SSL_CERT_FILE`; we set the former, which cannot take away roots it already trusts.
 * - Endpoint: `ANTHROPIC_BASE_URL` only when the installation names one; otherwise the default
 *   https://api.anthropic.com, so the gateway sees the real host and swaps the key for it.
 * - Non-essential traffic (updates, telemetry, error reports, feedback) is switched off: the
 *   sandbox's egress policy would refuse it anyway, and the CLI would otherwise retry it.
 * - Instructions, skills and settings go under the session user's `~/.claude` (user memory
 *   `CLAUDE.md`, `skills/<name>/SKILL.md`, `settings.json`), not into the repository in `cwd`, so
 *   a project's own CLAUDE.md and .claude/ are neither overwritten nor committed by the agent.
 */
import type { AgentAdapter, AgentContext, AgentEvent, AgentFile, AgentLaunch, StreamParser } from "./types.ts";
import { AGENT_PACKAGES } from "./packages.ts";

/** How long the PreToolUse hook may wait for Paddock's answer (an `ask` command waits for a person). */
const HOOK_TIMEOUT_S = 24 * 60 * 60;

export const claudeCode: AgentAdapter = {
  name: "claude-code",
  title: "Claude Code",
  package: AGENT_PACKAGES["claude-code"] ?? null,
  vendor: { hosts: ["api.anthropic.com"], keyEnv: "ANTHROPIC_API_KEY" },
  prepare,
  start: (prompt, ctx) => launch(prompt, null, ctx),
  resume: (prompt, agentSessionId, ctx) => launch(prompt, agentSessionId, ctx),
  parser: () => new ClaudeStreamParser(),
};

function prepare(ctx: AgentContext): { env: Record<string, string>; files: AgentFile[] } {
  const env: Record<string, string> = {
    NODE_EXTRA_CA_CERTS: ctx.caFile,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    DISABLE_AUTOUPDATER: "1",
    DISABLE_TELEMETRY: "1",
    DISABLE_ERROR_REPORTING: "1",
    // --dangerously-skip-permissions is refused as root otherwise (a build sandbox's user is root).
    IS_SANDBOX: "1",
  };
  if (ctx.endpoint !== null) env.ANTHROPIC_BASE_URL = ctx.endpoint;
  const dir = `${ctx.home}/.claude`;
  const files: AgentFile[] = [{ path: `${dir}/settings.json`, content: JSON.stringify(settings(ctx), null, 2) + "\n" }];
  if (ctx.instructions !== null) files.push({ path: `${dir}/CLAUDE.md`, content: ctx.instructions.endsWith("\n") ? ctx.instructions : `${ctx.instructions}\n` });
  for (const s of ctx.skills) {
    files.push({ path: `${dir}/skills/${s.name}/SKILL.md`, content: `---\nname: ${JSON.stringify(s.name)}\ndescription: ${JSON.stringify(s.description)}\n---\n\n${s.content}\n` });
  }
  if (Object.keys(ctx.mcp).length > 0) files.push({ path: mcpConfigPath(ctx), content: JSON.stringify({ mcpServers: ctx.mcp }, null, 2) + "\n" });
  return { env, files };
}

/** The URL of Paddock's Claude Code hook endpoint, beside whatever check URL the run names. */
export function claudeHookUrl(checkUrl: string): string {
  return new URL("/v1/hooks/claude-code", checkUrl).toString();
}

function settings(ctx: AgentContext): Record<string, unknown> {
  const url = claudeHookUrl(ctx.checkUrl);
  // Exit 2 blocks the tool call and shows stderr to the model; -f makes an HTTP error a failure.
  const command = `curl -sf --max-time ${HOOK_TIMEOUT_S} -H 'content-type: application/json' --data-binary @- ${url} || { echo "paddock: the command check at ${url} did not answer; the command was not run" >&2; exit 2; }`;
  return {
    permissions: { deny: ctx.commands.deny.flatMap((program) => [`Bash(${program}:*)`, `Bash(${program})`]) },
    hooks: { PreToolUse: [{ matcher: "Bash", hooks: [{ type: "command", command, timeout: HOOK_TIMEOUT_S }] }] },
  };
}

function mcpConfigPath(ctx: AgentContext): string {
  return `${ctx.home}/.claude/paddock-mcp.json`;
}

/** Only the argv: the run writes prepare()'s files and sets its variables for every turn. */
function launch(prompt: string, agentSessionId: string | null, ctx: AgentContext): AgentLaunch {
  const argv = [ctx.bin, "-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions"];
  if (ctx.model !== null) argv.push("--model", ctx.model);
  if (Object.keys(ctx.mcp).length > 0) argv.push("--mcp-config", mcpConfigPath(ctx));
  if (agentSessionId !== null) argv.push("--resume", agentSessionId);
  // After "--" the prompt is never read as an option, whatever it starts with.
  argv.push("--", prompt);
  return { argv, env: {}, files: [] };
}

/** Claude Code's own refusal (a permissions.deny rule) as it reads in a tool_result. */
const PERMISSION_DENIED = /^(Error: )?Permission to use \S+ .*has been denied/;

type Json = Record<string, unknown>;

/** stream-json → AgentEvents. One JSON object a line: system, assistant, user, result. */
class ClaudeStreamParser implements StreamParser {
  line(text: string): AgentEvent[] {
    if (text.trim() === "") return [];
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return [{ type: "raw", line: text }];
    }
    if (!isObject(msg)) return [{ type: "raw", line: text }];
    const events = this.#map(msg);
    return events ?? [{ type: "raw", line: text }];
  }

  end(): AgentEvent[] {
    return [];
  }

  /** null: not something we know how to map (kept as raw). */
  #map(msg: Json): AgentEvent[] | null {
    switch (msg.type) {
      case "system":
        if (msg.subtype !== "init") return null;
        return [{ type: "started", agentSessionId: str(msg.session_id), model: str(msg.model) }];
      case "assistant":
        return blocks(msg, (b) => assistantBlock(b, msg));
      case "user":
        return blocks(msg, userBlock);
      case "result":
        return result(msg);
      default:
        return null;
    }
  }
}

/** Maps each content block of a message line; null when any block is unknown (the line goes raw). */
function blocks(msg: Json, map: (b: Json | string) => AgentEvent[] | null): AgentEvent[] | null {
  const message = isObject(msg.message) ? msg.message : null;
  if (!message) return null;
  const content = message.content;
  if (typeof content === "string") return map(content);
  if (!Array.isArray(content)) return null;
  const out: AgentEvent[] = [];
  for (const b of content) {
    const events = isObject(b) || typeof b === "string" ? map(b) : null;
    if (events === null) return null;
    out.push(...events);
  }
  return out;
}

function assistantBlock(b: Json | string, line: Json): AgentEvent[] | null {
  // An API failure (bad key, overload) arrives as an assistant message with an `error` field.
  const error = str(line.error);
  if (typeof b === "string") return [error ? { type: "error", message: b } : { type: "message", role: "assistant", text: b }];
  switch (b.type) {
    case "text":
      return [error ? { type: "error", message: `${error}: ${str(b.text) ?? ""}` } : { type: "message", role: "assistant", text: str(b.text) ?? "" }];
    case "tool_use": {
      const input = b.input ?? {};
      const command = b.name === "Bash" && isObject(input) && typeof input.command === "string" ? input.command : null;
      return [{ type: "tool_call", id: str(b.id) ?? "", tool: str(b.name) ?? "", input, command }];
    }
    case "thinking":
    case "redacted_thinking":
      return [];
    default:
      return null;
  }
}

function userBlock(b: Json | string): AgentEvent[] | null {
  if (typeof b === "string") return [{ type: "message", role: "user", text: b }];
  switch (b.type) {
    case "text":
      return [{ type: "message", role: "user", text: str(b.text) ?? "" }];
    case "tool_result": {
      const output = toolText(b.content);
      const isError = b.is_error === true;
      // Paddock's refusals all start their line with "paddock:" (the hook's reason, the exec
      // guard's stderr); Claude Code's own deny rules say "Permission to use … has been denied".
      const denied = isError && (/(^|\n)(remote: )?paddock: /.test(output) || PERMISSION_DENIED.test(output));
      return [{ type: "tool_result", id: str(b.tool_use_id) ?? "", output, isError, denied }];
    }
    default:
      return null;
  }
}

function toolText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((c) => (isObject(c) && typeof c.text === "string" ? c.text : "")).join("");
}

function result(msg: Json): AgentEvent[] {
  const usage = isObject(msg.usage) ? msg.usage : {};
  // Input as the model saw it: fresh tokens plus those written to and read from the prompt cache.
  const inputTokens = num(usage.input_tokens) + num(usage.cache_creation_input_tokens) + num(usage.cache_read_input_tokens);
  const cost = typeof msg.total_cost_usd === "number" ? msg.total_cost_usd : null;
  const isError = msg.is_error === true || (typeof msg.subtype === "string" && msg.subtype !== "success");
  const errors = Array.isArray(msg.errors) ? msg.errors.filter((e): e is string => typeof e === "string") : [];
  const text = str(msg.result) ?? (errors.join("\n") || (isError ? String(msg.subtype ?? "error") : ""));
  return [
    { type: "usage", inputTokens, outputTokens: num(usage.output_tokens), costUsd: cost },
    { type: "result", text, isError },
  ];
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}
