/**
 * GitHub Copilot CLI (`@github/copilot` 1.0.102, a native binary behind an npm loader), headless:
 * `copilot --prompt=… --output-format json`. What this version does, found by running it against a
 * fake OpenAI API (test/agents/copilot.test.ts; `copilot help environment` lists the variables):
 *
 * - The model: BYOK. `COPILOT_PROVIDER_BASE_URL` with `COPILOT_PROVIDER_TYPE=openai` makes it call
 *   an OpenAI-compatible API instead of GitHub's model routing, with no GitHub login; and
 *   `COPILOT_OFFLINE=true` turns off everything else it would reach (GitHub auth, telemetry, web
 *   tools, the GitHub MCP server, auto-update). So Copilot's vendor here is OpenAI: api.openai.com
 *   with `OPENAI_API_KEY`, over Chat Completions (`COPILOT_PROVIDER_WIRE_API` default,
 *   "completions"). The key comes from `COPILOT_PROVIDER_API_KEY_COMMAND=printenv OPENAI_API_KEY`:
 *   the sandbox holds only the placeholder, which the gateway swaps towards api.openai.com.
 * - TLS: it is a Node program (single executable); it honours `NODE_EXTRA_CA_CERTS`.
 * - State under `COPILOT_HOME` (`~/.copilot`): user hooks `hooks/*.json`, skills
 *   `skills/<name>/SKILL.md`, `mcp-config.json`, user instructions `copilot-instructions.md`
 *   (read besides the repository's own AGENTS.md / .github/copilot-instructions.md, which we leave
 *   alone; an AGENTS.md in a `COPILOT_CUSTOM_INSTRUCTIONS_DIRS` directory was not read by 1.0.102),
 *   and its sessions (`--resume <id>`).
 * - Guardrails, mirrored twice: `--deny-tool 'shell(<program>)'` for each `guardrails.commands.deny`
 *   program ("Permission to run this tool was denied due to the following rules: `shell(rm)`"),
 *   and a preToolUse hook that asks Paddock's check about every shell command ("Denied by
 *   preToolUse hook: paddock: …"). Both reach the model as the tool's error.
 * - The JSON stream names the session only in its last line (`result`): the `started` event comes
 *   from there.
 */
import type { AgentAdapter, AgentContext, AgentEvent, AgentFile, AgentLaunch, StreamParser } from "./types.ts";
import { checkHookScript, shellQuote } from "./codex.ts";
import { AGENT_PACKAGES } from "./packages.ts";

const DEFAULT_MODEL = "gpt-5";
const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** How long Copilot lets the hook run (seconds; an `ask` command waits for a person). */
const HOOK_TIMEOUT_S = 600;

function copilotHome(ctx: AgentContext): string {
  return `${ctx.home}/.copilot`;
}

function prepare(ctx: AgentContext): { env: Record<string, string>; files: AgentFile[] } {
  const home = copilotHome(ctx);
  const hook = `${home}/paddock-check.mjs`;
  const files: AgentFile[] = [
    { path: hook, content: checkHookScript(ctx.checkUrl, "copilot"), mode: 0o755 },
    { path: `${home}/hooks/paddock.json`, content: JSON.stringify({ version: 1, hooks: { preToolUse: [{ type: "command", bash: `node ${shellQuote(hook)}`, timeoutSec: HOOK_TIMEOUT_S }] } }, null, 2) + "\n" },
  ];
  const env: Record<string, string> = {
    COPILOT_HOME: home,
    COPILOT_OFFLINE: "true",
    COPILOT_PROVIDER_TYPE: "openai",
    COPILOT_PROVIDER_BASE_URL: (ctx.endpoint ?? "https://api.openai.com/v1").replace(/\/$/, ""),
    COPILOT_PROVIDER_API_KEY_COMMAND: "printenv OPENAI_API_KEY",
    COPILOT_MODEL: ctx.model ?? DEFAULT_MODEL,
    COPILOT_AUTO_UPDATE: "false",
    NODE_EXTRA_CA_CERTS: ctx.caFile,
    NO_COLOR: "1",
  };
  if (ctx.instructions !== null) files.push({ path: `${home}/copilot-instructions.md`, content: ctx.instructions });
  for (const s of ctx.skills) {
    files.push({ path: `${home}/skills/${safeName(s.name)}/SKILL.md`, content: `---\nname: ${JSON.stringify(s.name)}\ndescription: ${JSON.stringify(s.description)}\n---\n\n${s.content}\n` });
  }
  const servers = Object.fromEntries(Object.entries(ctx.mcp).map(([name, m]) => [name, { type: "local", command: m.command, args: m.args, env: m.env, tools: ["*"] }]));
  if (Object.keys(servers).length > 0) files.push({ path: `${home}/mcp-config.json`, content: JSON.stringify({ mcpServers: servers }, null, 2) + "\n" });
  return { env, files };
}

/** `--deny-tool shell(<program>)` for each deny rule, by name and in the system directories. */
export function denyToolFlags(deny: string[]): string[] {
  const programs = new Set<string>();
  for (const rule of deny) {
    const name = rule.includes("/") ? rule.slice(rule.lastIndexOf("/") + 1) : rule;
    for (const p of rule.startsWith("/") ? [rule, name] : [name, ...SYSTEM_DIRS.map((d) => `${d}/${name}`)]) programs.add(p);
  }
  return [...programs].map((p) => `--deny-tool=shell(${p})`);
}

function launch(prompt: string, sessionId: string | null, ctx: AgentContext): AgentLaunch {
  const { env, files } = prepare(ctx);
  // `--prompt=…` in one word: a prompt that starts with "-" is never read as an option.
  const argv = [ctx.bin, `--prompt=${prompt}`, "--output-format", "json", "--allow-all-tools", "--no-ask-user", "--no-auto-update", "--disable-builtin-mcps", "--no-color", ...denyToolFlags(ctx.commands.deny)];
  if (sessionId !== null) argv.push(`--resume=${sessionId}`);
  return { argv, env, files };
}

export const copilot: AgentAdapter = {
  name: "copilot",
  title: "GitHub Copilot CLI",
  package: AGENT_PACKAGES.copilot ?? null,
  vendor: { hosts: ["api.openai.com"], keyEnv: "OPENAI_API_KEY" },
  prepare,
  start: (prompt, ctx) => launch(prompt, null, ctx),
  resume: (prompt, agentSessionId, ctx) => {
    if (!UUID.test(agentSessionId)) throw new Error(`not a Copilot session id: ${JSON.stringify(agentSessionId)} (Copilot session ids are UUIDs)`);
    return launch(prompt, agentSessionId, ctx);
  },
  parser: copilotParser,
};

type Json = Record<string, unknown>;

/** Events Copilot's JSON stream carries that say nothing Paddock keeps (progress, deltas, bookkeeping). */
const QUIET = new Set([
  "session.skills_loaded", "session.mcp_servers_loaded", "session.tools_updated", "session.background_tasks_changed", "session.info", "session.warning",
  "user.message", "assistant.turn_start", "assistant.turn_end", "assistant.message_start", "assistant.message_delta", "assistant.tool_call_delta",
  "assistant.reasoning_delta", "assistant.idle", "model.call_start", "model.call_finished", "model.call_final_result", "tool.execution_start",
  "tool.shell_output", "tool.execution_partial_result", "hook.start", "hook.end",
]);

/** `copilot --output-format json` lines: session/assistant/tool events, then one `result`. */
export function copilotParser(): StreamParser {
  let lastText = "";
  let model: string | null = null;
  let outputTokens = 0;
  const calls = new Map<string, { tool: string; input: unknown }>();
  return {
    line(text) {
      if (text.trim() === "") return [];
      let ev: Json;
      try {
        ev = JSON.parse(text) as Json;
      } catch {
        return [{ type: "raw", line: text }];
      }
      const data = (ev.data ?? {}) as Json;
      switch (ev.type) {
        case "assistant.message": {
          if (typeof data.model === "string") model = data.model;
          if (typeof data.outputTokens === "number") outputTokens += data.outputTokens;
          const out: AgentEvent[] = [];
          if (typeof data.content === "string" && data.content !== "") {
            lastText = data.content;
            out.push({ type: "message", role: "assistant", text: data.content });
          }
          for (const r of Array.isArray(data.toolRequests) ? (data.toolRequests as Json[]) : []) {
            const id = str(r.toolCallId);
            const tool = str(r.name);
            calls.set(id, { tool, input: r.arguments ?? null });
            const command = (r.arguments as Json | undefined)?.command;
            out.push({ type: "tool_call", id, tool, input: r.arguments ?? null, command: tool === "bash" && typeof command === "string" ? command : null });
          }
          return out;
        }
        case "tool.execution_complete": {
          const id = str(data.toolCallId);
          const error = data.error as Json | undefined;
          const result = data.result as Json | undefined;
          const output = error ? str(error.message) : str(result?.content);
          const exit = (data.shellExecution as Json | undefined)?.exitCode;
          const isError = data.success === false || (typeof exit === "number" && exit !== 0);
          const denied = error?.code === "denied" || /(^|: )paddock: /m.test(output);
          return [{ type: "tool_result", id, output, isError, denied }];
        }
        case "session.error":
          return [{ type: "error", message: str(data.message) || str(data.errorType) }];
        case "result": {
          const exitCode = typeof ev.exitCode === "number" ? ev.exitCode : 0;
          // 1.0.102's stream reports premium requests and durations, not tokens, for BYOK: a usage
          // event only when its messages carried output tokens.
          return [
            { type: "started", agentSessionId: typeof ev.sessionId === "string" ? ev.sessionId : null, model },
            ...(outputTokens > 0 ? [{ type: "usage" as const, inputTokens: 0, outputTokens, costUsd: null }] : []),
            { type: "result", text: lastText, isError: exitCode !== 0 },
          ];
        }
        default:
          return typeof ev.type === "string" && QUIET.has(ev.type) ? [] : [{ type: "raw", line: text }];
      }
    },
    end: () => [],
  };
}

function str(v: unknown): string {
  return typeof v === "string" ? v : v === undefined || v === null ? "" : JSON.stringify(v);
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^\.+/, "_") || "skill";
}
