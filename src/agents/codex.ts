/**
 * OpenAI Codex CLI (`@openai/codex` 0.171.0), headless: `codex exec --json`. What this version does,
 * found by running it against a fake Responses API (test/agents/codex.test.ts):
 *
 * - Everything lives under `CODEX_HOME` (we use `~/.codex`): `config.toml`, global instructions
 *   `AGENTS.md` (read besides any AGENTS.md of the repository, which we leave alone), skills
 *   `skills/<name>/SKILL.md`, execpolicy `rules/*.rules`, `hooks.json`, and its session files
 *   (`sessions/…/rollout-…-<thread id>.jsonl`, what `codex exec resume <id>` reads).
 * - The model endpoint is a custom `[model_providers.paddock]` with `wire_api = "responses"`, the
 *   key read from `OPENAI_API_KEY` (the sandbox holds only its placeholder; the gateway swaps it
 *   towards api.openai.com).
 * - TLS: Codex is a Rust binary with its own root store: it ignores `NODE_EXTRA_CA_CERTS` and
 *   reads `CODEX_CA_CERTIFICATE` (first) or `SSL_CERT_FILE`. We set `CODEX_CA_CERTIFICATE` to the
 *   session's CA bundle, so it works whatever `SSL_CERT_FILE` says.
 * - Codex's own sandbox (bubblewrap/landlock) cannot nest in Paddock's, so it runs with
 *   `--dangerously-bypass-approvals-and-sandbox`: Paddock's sandbox, exec guard and gateway are the
 *   boundary. Execpolicy rules still apply in that mode, and so do hooks.
 * - Guardrails, mirrored twice: each `guardrails.commands.deny` program becomes a `forbidden`
 *   execpolicy prefix rule (the refusal text is the rule's justification), and a PreToolUse hook
 *   (Claude Code's format; Codex names its shell tool `Bash` there) asks Paddock's check about
 *   every command. Hooks need `[features] hooks = true` and, being files Codex has not reviewed,
 *   `--dangerously-bypass-hook-trust`. A refused call never runs and reaches the model as the
 *   tool's output ("Command blocked by PreToolUse hook: paddock: …"). Codex's `--json` stream does
 *   not show calls refused before they start (hook, rules): they appear only in the next message
 *   and on stderr. Calls Paddock's exec guard stops do appear (exit 126, "paddock: …" output).
 * - Non-essential traffic: update checks, analytics, feedback and OpenTelemetry export are off.
 */
import type { AgentAdapter, AgentContext, AgentEvent, AgentFile, AgentLaunch, StreamParser } from "./types.ts";
import { AGENT_PACKAGES } from "./packages.ts";

/** The model when the environment names none: one whose metadata this version ships. */
const DEFAULT_MODEL = "gpt-5.5";
/** How long Codex lets the hook run (seconds; an `ask` command waits for a person). */
const HOOK_TIMEOUT_S = 600;
/** The hook denies before Codex would time it out. */
const HOOK_OWN_LIMIT_MS = (HOOK_TIMEOUT_S - 10) * 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

function codexHome(ctx: AgentContext): string {
  return `${ctx.home}/.codex`;
}

function prepare(ctx: AgentContext): { env: Record<string, string>; files: AgentFile[] } {
  const home = codexHome(ctx);
  const files: AgentFile[] = [
    { path: `${home}/config.toml`, content: configToml(ctx), mode: 0o600 },
    { path: `${home}/hooks.json`, content: JSON.stringify(hooksJson(`${home}/paddock-check.mjs`), null, 2) + "\n" },
    { path: `${home}/paddock-check.mjs`, content: checkHookScript(ctx.checkUrl, "codex"), mode: 0o755 },
    { path: `${home}/rules/paddock.rules`, content: execpolicyRules(ctx.commands.deny) },
  ];
  if (ctx.instructions !== null) files.push({ path: `${home}/AGENTS.md`, content: ctx.instructions });
  for (const s of ctx.skills) files.push({ path: `${home}/skills/${safeName(s.name)}/SKILL.md`, content: skillMarkdown(s) });
  return { env: { CODEX_HOME: home, CODEX_CA_CERTIFICATE: ctx.caFile, NO_COLOR: "1" }, files };
}

export function configToml(ctx: AgentContext): string {
  const base = (ctx.endpoint ?? "https://api.openai.com/v1").replace(/\/$/, "");
  const lines = [
    "# Written by Paddock for this run.",
    `model = ${toml(ctx.model ?? DEFAULT_MODEL)}`,
    'model_provider = "paddock"',
    "check_for_update_on_startup = false",
    "",
    "[model_providers.paddock]",
    'name = "OpenAI (through Paddock\'s gateway)"',
    `base_url = ${toml(base)}`,
    'env_key = "OPENAI_API_KEY"',
    'wire_api = "responses"',
    "",
    "[features]",
    "hooks = true",
    // Off: they fetch from github.com (the plugin marketplace) and chatgpt.com (apps, remote plugins).
    "plugins = false",
    "remote_plugin = false",
    "plugin_sharing = false",
    "apps = false",
    "in_app_updates = false",
    "skill_mcp_dependency_install = false",
    "",
    "[analytics]",
    "enabled = false",
    "",
    "[feedback]",
    "enabled = false",
    "",
    "[otel]",
    'exporter = "none"',
    "",
  ];
  for (const [name, m] of Object.entries(ctx.mcp)) {
    lines.push(`[mcp_servers.${toml(name)}]`, `command = ${toml(m.command)}`, `args = [${m.args.map(toml).join(", ")}]`);
    if (Object.keys(m.env).length > 0) lines.push(`env = { ${Object.entries(m.env).map(([k, v]) => `${toml(k)} = ${toml(v)}`).join(", ")} }`);
    lines.push("");
  }
  return lines.join("\n");
}

function hooksJson(script: string): unknown {
  return { hooks: { PreToolUse: [{ matcher: "Bash", hooks: [{ type: "command", command: `node ${shellQuote(script)}`, timeout: HOOK_TIMEOUT_S }] }] } };
}

/** `guardrails.commands.deny` as execpolicy rules: the program by name and in the system directories. */
export function execpolicyRules(deny: string[]): string {
  const lines = ["# Written by Paddock from guardrails.commands.deny. Paddock's exec guard enforces it whatever this", "# file says; here it makes the refusal a tool error the model reads.", ""];
  for (const rule of deny) {
    const name = rule.includes("/") ? rule.slice(rule.lastIndexOf("/") + 1) : rule;
    const programs = rule.startsWith("/") ? [rule, name] : [name, ...SYSTEM_DIRS.map((d) => `${d}/${name}`)];
    const justification = `paddock: '${rule}' denied by guardrails.commands.deny`;
    for (const p of new Set(programs)) lines.push(`prefix_rule(pattern=[${JSON.stringify(p)}], decision="forbidden", justification=${JSON.stringify(justification)})`);
  }
  return lines.join("\n") + "\n";
}

function skillMarkdown(s: { name: string; description: string; content: string }): string {
  return `---\nname: ${JSON.stringify(s.name)}\ndescription: ${JSON.stringify(s.description)}\n---\n\n${s.content}\n`;
}

/**
 * A PreToolUse hook in Node (there: the CLI is an npm package) that POSTs the shell command to
 * Paddock's check and fails closed: no answer, a bad answer or its own time limit denies. Other
 * tools than the shell get no opinion. Allowing is answering nothing (Codex 0.171 rejects
 * `permissionDecision: "allow"`, and Copilot's would skip its own deny rules); refusing is Claude
 * Code's `hookSpecificOutput` deny for `codex`, `{"permissionDecision": "deny", …}` for `copilot`.
 */
export function checkHookScript(checkUrl: string, format: "codex" | "copilot"): string {
  const deny =
    format === "codex"
      ? 'JSON.stringify({ hookSpecificOutput: { hookEventName: "PreToolUse", permissionDecision: "deny", permissionDecisionReason: reason } })'
      : 'JSON.stringify({ permissionDecision: "deny", permissionDecisionReason: reason })';
  return `// Written by Paddock: a PreToolUse hook that asks Paddock's command check. Fails closed.
import { request } from "node:http";
const url = new URL(${JSON.stringify(checkUrl)});
const deny = (reason) => { process.stdout.write(${deny}); process.exit(0); };
setTimeout(() => deny("paddock: the command check did not answer in time; the command was not run"), ${HOOK_OWN_LIMIT_MS}).unref();
const SHELL_TOOLS = ["Bash", "bash", "shell"];
const commandOf = (input) => {
  const i = input.tool_input ?? input.toolArgs ?? input.args;
  const o = typeof i === "string" ? JSON.parse(i) : i;
  return o?.command;
};
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  let command;
  try {
    const parsed = JSON.parse(input);
    const tool = parsed.tool_name ?? parsed.toolName;
    if (typeof tool === "string" && !SHELL_TOOLS.includes(tool)) process.exit(0);
    command = commandOf(parsed);
  } catch { return deny("paddock: unreadable hook input; the command was not run"); }
  if (typeof command !== "string" || command.trim() === "") return deny("paddock: the shell tool call has no command");
  const body = JSON.stringify({ command });
  const req = request(url, { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c) => (text += c));
    res.on("end", () => {
      let answer = null;
      try { answer = JSON.parse(text); } catch {}
      if (res.statusCode === 200 && answer?.allowed === true) process.exit(0);
      deny(typeof answer?.message === "string" ? answer.message : \`paddock: the command check answered \${res.statusCode}: \${text.slice(0, 300)}\`);
    });
  });
  req.on("error", (e) => deny(\`paddock: the command check at \${url} failed (\${e.message}); the command was not run\`));
  req.end(body);
});
`;
}

function launch(prompt: string, threadId: string | null, ctx: AgentContext): AgentLaunch {
  const { env, files } = prepare(ctx);
  const flags = ["--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--dangerously-bypass-hook-trust", "--color", "never"];
  // `--` ends the options: a prompt that starts with "-" is never read as one.
  const argv =
    threadId === null
      ? [ctx.bin, "exec", "--json", ...flags, "--cd", ctx.cwd, "--", prompt]
      : [ctx.bin, "exec", "--json", "--skip-git-repo-check", "--color", "never", "--cd", ctx.cwd, "resume", "--dangerously-bypass-approvals-and-sandbox", "--dangerously-bypass-hook-trust", "--", threadId, prompt];
  return { argv, env, files };
}

export const codex: AgentAdapter = {
  name: "codex",
  title: "Codex",
  package: AGENT_PACKAGES.codex ?? null,
  vendor: { hosts: ["api.openai.com"], keyEnv: "OPENAI_API_KEY" },
  prepare,
  start: (prompt, ctx) => launch(prompt, null, ctx),
  resume: (prompt, agentSessionId, ctx) => {
    if (!UUID.test(agentSessionId)) throw new Error(`not a Codex thread id: ${JSON.stringify(agentSessionId)} (Codex thread ids are UUIDs)`);
    return launch(prompt, agentSessionId, ctx);
  },
  parser: codexParser,
};

type Json = Record<string, unknown>;

/** `codex exec --json` lines: thread.started, turn.*, item.started/completed (by item type), error. */
export function codexParser(): StreamParser {
  let lastText = "";
  const calls = new Set<string>();
  const call = (item: Json, tool: string, input: unknown, command: string | null): AgentEvent[] => {
    const id = String(item.id);
    if (calls.has(id)) return [];
    calls.add(id);
    return [{ type: "tool_call", id, tool, input, command }];
  };
  const item = (phase: "started" | "completed", it: Json): AgentEvent[] | null => {
    switch (it.type) {
      case "agent_message":
        if (phase === "started") return [];
        lastText = str(it.text);
        return [{ type: "message", role: "assistant", text: lastText }];
      case "command_execution": {
        const command = unwrapShell(str(it.command));
        const head = call(it, "shell", { command: str(it.command) }, command);
        if (phase === "started") return head;
        const output = str(it.aggregated_output);
        const isError = it.status === "failed" || it.status === "declined" || (typeof it.exit_code === "number" && it.exit_code !== 0);
        const denied = it.status === "declined" || /^paddock: /m.test(output);
        return [...head, { type: "tool_result", id: String(it.id), output, isError, denied }];
      }
      case "file_change": {
        const head = call(it, "apply_patch", { changes: it.changes }, null);
        if (phase === "started") return head;
        return [...head, { type: "tool_result", id: String(it.id), output: JSON.stringify(it.changes ?? []), isError: it.status === "failed", denied: false }];
      }
      case "mcp_tool_call": {
        const head = call(it, `${str(it.server)}.${str(it.tool)}`, it.arguments ?? null, null);
        if (phase === "started") return head;
        const error = it.error as Json | null | undefined;
        const output = error ? str(error.message) : JSON.stringify(it.result ?? null);
        return [...head, { type: "tool_result", id: String(it.id), output, isError: Boolean(error) || it.status === "failed", denied: false }];
      }
      case "error":
        return phase === "completed" ? [{ type: "error", message: str(it.message) }] : [];
      default:
        return null;
    }
  };
  return {
    line(text) {
      if (text.trim() === "") return [];
      let ev: Json;
      try {
        ev = JSON.parse(text) as Json;
      } catch {
        return [{ type: "raw", line: text }];
      }
      switch (ev.type) {
        case "thread.started":
          return [{ type: "started", agentSessionId: typeof ev.thread_id === "string" ? ev.thread_id : null, model: null }];
        case "turn.started":
          return [];
        case "item.started":
        case "item.completed":
          return item(ev.type === "item.started" ? "started" : "completed", (ev.item ?? {}) as Json) ?? [{ type: "raw", line: text }];
        case "turn.completed": {
          const u = (ev.usage ?? {}) as Json;
          return [
            { type: "usage", inputTokens: num(u.input_tokens), outputTokens: num(u.output_tokens), costUsd: null },
            { type: "result", text: lastText, isError: false },
          ];
        }
        case "turn.failed": {
          const message = str((ev.error as Json | undefined)?.message);
          return [{ type: "error", message }, { type: "result", text: message, isError: true }];
        }
        case "error":
          return [{ type: "error", message: str(ev.message) }];
        default:
          return [{ type: "raw", line: text }];
      }
    },
    end: () => [],
  };
}

/** Codex shows a shell call as `/bin/bash -lc '<line>'`: the line the model asked for. */
export function unwrapShell(command: string): string {
  const m = /^(?:\S*\/)?(?:ba|z)?sh -l?c (.*)$/s.exec(command);
  if (!m?.[1]) return command;
  const word = m[1];
  if (/^'([^']|'\\'')*'$/s.test(word)) return word.slice(1, -1).replace(/'\\''/g, "'");
  if (/^"([^"\\$`]|\\.)*"$/s.test(word)) return word.slice(1, -1).replace(/\\(.)/gs, "$1");
  return /^[^\s'"\\$`]+$/.test(word) ? word : command;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : v === undefined || v === null ? "" : JSON.stringify(v);
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

function toml(s: string): string {
  return JSON.stringify(s);
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^\.+/, "_") || "skill";
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
