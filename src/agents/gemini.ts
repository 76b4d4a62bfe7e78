/**
 * Gemini CLI (`@google/gemini-cli`, Node), run headless with `-p` and `-o stream-json`. Written and
 * tested against 0.61.0 (test/agents/gemini.test.ts runs the real CLI in real sandboxes against a
 * local fake of the Gemini API; the flags and files below are the ones its bundled docs,
 * `bundle/docs/{cli/headless,reference/configuration,reference/policy-engine,hooks/reference}.md`,
 * describe and the bundle implements):
 *
 * - Approval: `--approval-mode yolo`. Headless, an `ask_user` decision is a refusal (nobody can
 *   click "allow"), so without it no shell or edit tool would ever run. User-tier policy rules and
 *   BeforeTool hooks still apply in yolo mode, which is what the guardrails below rely on.
 * - Trust: `--skip-trust`. 0.61 refuses to run headless in a folder nobody trusted (exit 55), and
 *   would otherwise drop the approval mode back to "default".
 * - Guardrails, mirrored twice (Paddock's exec guard and gateway stay the boundary either way):
 *   `~/.gemini/policies/paddock.toml` turns `guardrails.commands.deny` into `deny` rules on
 *   `run_shell_command` (`commandPrefix`, which the policy engine applies to every sub-command of
 *   a compound line), and a BeforeTool hook on `run_shell_command` POSTs each command to
 *   Paddock's `/v1/check`, which also covers `allow`, `ask` (it waits for a person) and what a
 *   prefix cannot see (`a=rm; $a x`). A refusal reaches the model as a tool error it can act on.
 *   `tools.exclude` is not used: 0.61 documents it as deprecated in favour of policy rules.
 * - The hook is a small Node script (Node is there: the CLI is a Node program) that fails closed:
 *   no answer, a bad answer or its own time limit is a `deny`. Its limit is below the CLI's hook
 *   timeout, because a hook the CLI times out is only a warning and the tool call would go on.
 * - Auth and endpoint: `security.auth.selectedType: "gemini-api-key"` with `GEMINI_API_KEY` (the
 *   sandbox has its placeholder; the gateway swaps it towards generativelanguage.googleapis.com,
 *   where the CLI sends it as `x-goog-api-key`). `GOOGLE_GEMINI_BASE_URL` only when the
 *   installation names an endpoint.
 * - CA: Node honours `NODE_EXTRA_CA_CERTS` (added to its built-in roots).
 * - Non-essential traffic off: usage statistics (Clearcut), telemetry, auto-update and its check.
 * - Instructions, skills, MCP servers and settings go under the session user's `~/.gemini`
 *   (user memory `GEMINI.md`, `skills/<name>/SKILL.md`, `settings.json`), not into the repository
 *   in `cwd`, so a project's own GEMINI.md is neither overwritten nor committed by the agent.
 * - Resume: the `init` event's `session_id` is a UUID the CLI keeps under
 *   `~/.gemini/tmp/<project>/chats/`; `--resume <uuid>` continues it (same `cwd`, same home).
 */
import { PaddockError } from "../core/index.ts";
import type { AgentAdapter, AgentContext, AgentEvent, AgentFile, AgentLaunch, StreamParser } from "./types.ts";
import { AGENT_PACKAGES } from "./packages.ts";

/** How long the CLI lets the BeforeTool hook run (an `ask` command waits for a person). */
const HOOK_TIMEOUT_MS = 24 * 60 * 60 * 1000;
/** The hook gives up (and denies) before the CLI would time it out and let the call through. */
const HOOK_OWN_LIMIT_MS = HOOK_TIMEOUT_MS - 60_000;
const SHELL_TOOL = "run_shell_command";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SKILL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export const gemini: AgentAdapter = {
  name: "gemini",
  title: "Gemini CLI",
  package: AGENT_PACKAGES.gemini ?? null,
  vendor: { hosts: ["generativelanguage.googleapis.com"], keyEnv: "GEMINI_API_KEY" },
  prepare,
  start: (prompt, ctx) => launch(prompt, null, ctx),
  resume: (prompt, agentSessionId, ctx) => {
    // The id goes on a command line: only the CLI's own form (a UUID) is accepted.
    if (!UUID.test(agentSessionId)) throw new PaddockError("invalid_argument", `Gemini CLI session ids are UUIDs (from the run's "started" event), got ${JSON.stringify(agentSessionId)}`);
    return launch(prompt, agentSessionId, ctx);
  },
  parser: () => new GeminiStreamParser(),
};

function prepare(ctx: AgentContext): { env: Record<string, string>; files: AgentFile[] } {
  const env: Record<string, string> = {
    NODE_EXTRA_CA_CERTS: ctx.caFile,
    GEMINI_TELEMETRY_ENABLED: "false",
    // The CLI's terminal niceties (colour checks, update nags) have no terminal here.
    NO_COLOR: "1",
  };
  if (ctx.endpoint !== null) env.GOOGLE_GEMINI_BASE_URL = ctx.endpoint;
  const dir = geminiDir(ctx);
  const files: AgentFile[] = [
    { path: `${dir}/settings.json`, content: JSON.stringify(settings(ctx), null, 2) + "\n" },
    { path: hookPath(ctx), content: hookScript(ctx.checkUrl), mode: 0o755 },
    { path: `${dir}/policies/paddock.toml`, content: policyToml(ctx.commands.deny) },
  ];
  if (ctx.instructions !== null) files.push({ path: `${dir}/GEMINI.md`, content: ctx.instructions.endsWith("\n") ? ctx.instructions : `${ctx.instructions}\n` });
  for (const s of ctx.skills) {
    if (!SKILL_NAME.test(s.name)) throw new PaddockError("invalid_argument", `skill name ${JSON.stringify(s.name)}: use letters, digits, '.', '_' and '-' (it names a directory)`);
    files.push({ path: `${dir}/skills/${s.name}/SKILL.md`, content: `---\nname: ${JSON.stringify(s.name)}\ndescription: ${JSON.stringify(s.description)}\n---\n\n${s.content}\n` });
  }
  return { env, files };
}

function geminiDir(ctx: AgentContext): string {
  return `${ctx.home}/.gemini`;
}

function hookPath(ctx: AgentContext): string {
  return `${geminiDir(ctx)}/paddock-before-tool.mjs`;
}

function settings(ctx: AgentContext): Record<string, unknown> {
  const s: Record<string, unknown> = {
    security: { auth: { selectedType: "gemini-api-key" } },
    privacy: { usageStatisticsEnabled: false },
    telemetry: { enabled: false, logPrompts: false },
    general: { enableAutoUpdate: false, enableAutoUpdateNotification: false },
    hooksConfig: { enabled: true, notifications: false },
    hooks: {
      BeforeTool: [{ matcher: `^${SHELL_TOOL}$`, hooks: [{ type: "command", name: "paddock-check", command: `node ${shellQuote(hookPath(ctx))}`, timeout: HOOK_TIMEOUT_MS }] }],
    },
  };
  if (Object.keys(ctx.mcp).length > 0) s.mcpServers = ctx.mcp;
  return s;
}

/** `guardrails.commands.deny` as user-tier policy rules: the program by name and in the system directories. */
export function policyToml(deny: string[]): string {
  const lines = ["# Written by Paddock from the environment's guardrails.commands.deny. Paddock's exec guard enforces it", "# whatever this file says; here it makes the refusal a tool error the model reads.", ""];
  for (const rule of deny) {
    const name = rule.includes("/") ? rule.slice(rule.lastIndexOf("/") + 1) : rule;
    const prefixes = rule.startsWith("/") ? [rule, name] : [name, ...["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map((d) => `${d}/${name}`)];
    lines.push(
      "[[rule]]",
      `toolName = "${SHELL_TOOL}"`,
      `commandPrefix = [${[...new Set(prefixes)].map((p) => JSON.stringify(p)).join(", ")}]`,
      'decision = "deny"',
      "priority = 999",
      `denyMessage = ${JSON.stringify(`paddock: '${rule}' denied by guardrails.commands.deny`)}`,
      "",
    );
  }
  return lines.join("\n");
}

/**
 * The BeforeTool hook: reads the CLI's hook input on stdin, asks Paddock's check about the shell
 * command and answers `{}` (no opinion: it runs) or `{"decision":"deny","reason":…}`. Plain
 * http to paddock.internal (served by the gateway; it never leaves the machine).
 */
export function hookScript(checkUrl: string): string {
  return `// Written by Paddock: Gemini CLI BeforeTool hook. Fails closed: anything but "allowed" denies.
import { request } from "node:http";
const url = new URL(${JSON.stringify(checkUrl)});
const deny = (reason) => { process.stdout.write(JSON.stringify({ decision: "deny", reason })); process.exit(0); };
setTimeout(() => deny("paddock: the command check did not answer in time; the command was not run"), ${HOOK_OWN_LIMIT_MS}).unref();
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  let command;
  try { command = JSON.parse(input)?.tool_input?.command; } catch { return deny("paddock: unreadable hook input; the command was not run"); }
  if (typeof command !== "string" || command.trim() === "") return deny("paddock: the shell tool call has no command");
  const body = JSON.stringify({ command });
  const req = request(url, { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c) => (text += c));
    res.on("end", () => {
      let answer = null;
      try { answer = JSON.parse(text); } catch {}
      if (res.statusCode === 200 && answer?.allowed === true) { process.stdout.write("{}"); process.exit(0); }
      deny(typeof answer?.message === "string" ? answer.message : \`paddock: the command check answered \${res.statusCode}: \${text.slice(0, 300)}\`);
    });
  });
  req.on("error", (e) => deny(\`paddock: the command check at \${url} failed (\${e.message}); the command was not run\`));
  req.end(body);
});
`;
}

function launch(prompt: string, agentSessionId: string | null, ctx: AgentContext): AgentLaunch {
  const { env, files } = prepare(ctx);
  // `--prompt=…` in one word: a prompt that starts with "-" is never read as an option.
  const argv = [ctx.bin, `--prompt=${prompt}`, "--output-format", "stream-json", "--approval-mode", "yolo", "--skip-trust"];
  if (ctx.model !== null) argv.push("--model", ctx.model);
  if (agentSessionId !== null) argv.push("--resume", agentSessionId);
  return { argv, env, files };
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

type Json = Record<string, unknown>;

/** The error types 0.61 gives a tool call its policy or a hook refused. */
const DENIED_ERROR_TYPES = new Set(["policy_violation", "hook_blocked", "hook_denied", "permission_denied"]);

/**
 * stream-json → AgentEvents. One JSON object a line: `init`, `message` (assistant text arrives in
 * `delta` pieces, joined here into one message per stretch of text), `tool_use`, `tool_result`,
 * `error` (warnings too), `result` (status and token stats; its final text is the assistant text
 * since the last tool call).
 */
export class GeminiStreamParser implements StreamParser {
  /** Assistant text not yet emitted as a message. */
  #pending = "";
  /** Assistant text since the last tool call: the turn's answer when it ends. */
  #sinceTool = "";

  line(text: string): AgentEvent[] {
    if (text.trim() === "") return [];
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return [{ type: "raw", line: text }];
    }
    if (!isObject(msg)) return [{ type: "raw", line: text }];
    if (msg.type === "message" && msg.role === "assistant" && typeof msg.content === "string") {
      this.#pending += msg.content;
      this.#sinceTool += msg.content;
      return [];
    }
    const mapped = this.#map(msg);
    return [...this.#flush(), ...(mapped ?? [{ type: "raw", line: text }])];
  }

  end(): AgentEvent[] {
    return this.#flush();
  }

  #flush(): AgentEvent[] {
    if (this.#pending === "") return [];
    const text = this.#pending;
    this.#pending = "";
    return [{ type: "message", role: "assistant", text }];
  }

  /** null: not something we know how to map (kept as raw). */
  #map(msg: Json): AgentEvent[] | null {
    switch (msg.type) {
      case "init":
        return [{ type: "started", agentSessionId: str(msg.session_id), model: str(msg.model) }];
      case "message":
        return msg.role === "user" && typeof msg.content === "string" ? [{ type: "message", role: "user", text: msg.content }] : null;
      case "tool_use": {
        this.#sinceTool = "";
        const input = isObject(msg.parameters) ? msg.parameters : {};
        const tool = str(msg.tool_name) ?? "";
        const command = tool === SHELL_TOOL && typeof input.command === "string" ? input.command : null;
        return [{ type: "tool_call", id: str(msg.tool_id) ?? "", tool, input, command }];
      }
      case "tool_result": {
        const error = isObject(msg.error) ? msg.error : null;
        const isError = msg.status === "error";
        const output = isError ? (str(error?.message) ?? str(msg.output) ?? "tool error") : (str(msg.output) ?? "");
        const denied = isError && (DENIED_ERROR_TYPES.has(str(error?.type) ?? "") || /^paddock: /m.test(output));
        return [{ type: "tool_result", id: str(msg.tool_id) ?? "", output, isError, denied }];
      }
      case "error":
        return [{ type: "error", message: `${msg.severity === "warning" ? "warning: " : ""}${str(msg.message) ?? "unknown error"}` }];
      case "result":
        return this.#result(msg);
      default:
        return null;
    }
  }

  #result(msg: Json): AgentEvent[] {
    const out: AgentEvent[] = [];
    const stats = isObject(msg.stats) ? msg.stats : null;
    if (stats) out.push({ type: "usage", inputTokens: num(stats.input_tokens), outputTokens: num(stats.output_tokens), costUsd: null });
    const isError = msg.status !== "success";
    const error = isObject(msg.error) ? str(msg.error.message) : null;
    out.push({ type: "result", text: isError ? (error ?? (this.#sinceTool || `the run ended with status ${String(msg.status)}`)) : this.#sinceTool, isError });
    this.#sinceTool = "";
    return out;
  }
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
