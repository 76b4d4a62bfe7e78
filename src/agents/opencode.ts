/**
 * opencode (`opencode-ai` 1.18.33, a Bun binary), headless: `opencode run --format json`. What this
 * version does, found by running it against a fake OpenAI API (test/agents/opencode.test.ts):
 *
 * - Global config under `~/.config/opencode/` (XDG): `opencode.json`, global instructions
 *   `AGENTS.md` (read besides the repository's own, which we leave alone), skills
 *   `skills/<name>/SKILL.md`, plugins `plugins/*.js`. Sessions live in its database under
 *   `~/.local/share/opencode`; `run --session <id>` continues one.
 * - The model endpoint: its built-in `openai` provider (the AI SDK's, Responses API) with
 *   `options.baseURL` and the key from `{env:OPENAI_API_KEY}` (the sandbox holds the placeholder).
 *   `enabled_providers: ["openai"]` and `small_model` keep title generation on the same provider.
 * - TLS: Bun honours `NODE_EXTRA_CA_CERTS`; we set it to the session's CA bundle.
 * - Guardrails, mirrored twice: `permission.bash` denies each `guardrails.commands.deny` program
 *   (`rm`, `rm *`, and in the system directories), which opencode refuses before running with
 *   "The user has specified a rule which prevents you from using this specific tool call…"; and a
 *   plugin's `tool.execute.before` asks Paddock's check about every bash command and throws its
 *   refusal, which the model reads as the tool's error. The plugin fails closed.
 * - Non-essential traffic off: autoupdate, sharing, the models.dev catalogue fetch, LSP
 *   downloads and the default npm plugins (`OPENCODE_DISABLE_*`), and the npm install of
 *   `@opencode-ai/plugin` into the config directory (a lock file says it is there); the repository's own
 *   opencode.json cannot loosen the mirrored rules (`OPENCODE_DISABLE_PROJECT_CONFIG`).
 */
import type { AgentAdapter, AgentContext, AgentEvent, AgentFile, AgentLaunch, StreamParser } from "./types.ts";
import { AGENT_PACKAGES } from "./packages.ts";

const DEFAULT_MODEL = "gpt-5";
/** The plugin package opencode would install is pinned to opencode's own version. */
const PACKAGE_VERSION = AGENT_PACKAGES.opencode?.version ?? "";
const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
/** The plugin denies when Paddock's check has not answered by then (an `ask` command waits for a person). */
const CHECK_LIMIT_MS = 590_000;
/** opencode's session ids: `ses_` and base62. */
const SESSION_ID = /^ses_[A-Za-z0-9]{10,64}$/;
/** opencode's refusal when a permission rule denies a tool call. */
const RULE_DENIAL = "The user has specified a rule which prevents you from using this specific tool call";

function configDir(ctx: AgentContext): string {
  return `${ctx.home}/.config/opencode`;
}

function model(ctx: AgentContext): string {
  return `openai/${ctx.model ?? DEFAULT_MODEL}`;
}

function prepare(ctx: AgentContext): { env: Record<string, string>; files: AgentFile[] } {
  const dir = configDir(ctx);
  const files: AgentFile[] = [
    { path: `${dir}/opencode.json`, content: JSON.stringify(config(ctx), null, 2) + "\n" },
    { path: `${dir}/plugins/paddock-check.js`, content: checkPlugin(ctx.checkUrl) },
    // opencode installs @opencode-ai/plugin from npm into each config directory unless its
    // node_modules exists and package-lock.json already lists it: our plugin needs nothing.
    { path: `${dir}/package-lock.json`, content: JSON.stringify({ lockfileVersion: 3, packages: { "": { dependencies: { "@opencode-ai/plugin": PACKAGE_VERSION } } } }) + "\n" },
    { path: `${dir}/node_modules/.paddock`, content: "opencode's dependency install is not needed here (written by Paddock)\n" },
  ];
  if (ctx.instructions !== null) files.push({ path: `${dir}/AGENTS.md`, content: ctx.instructions });
  for (const s of ctx.skills) {
    files.push({ path: `${dir}/skills/${safeName(s.name)}/SKILL.md`, content: `---\nname: ${JSON.stringify(s.name)}\ndescription: ${JSON.stringify(s.description)}\n---\n\n${s.content}\n` });
  }
  const env: Record<string, string> = {
    OPENCODE_CONFIG: `${dir}/opencode.json`,
    NODE_EXTRA_CA_CERTS: ctx.caFile,
    OPENCODE_DISABLE_AUTOUPDATE: "1",
    OPENCODE_DISABLE_MODELS_FETCH: "1",
    OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
    OPENCODE_DISABLE_DEFAULT_PLUGINS: "1",
    OPENCODE_DISABLE_SHARE: "1",
    OPENCODE_DISABLE_PROJECT_CONFIG: "1",
  };
  return { env, files };
}

export function config(ctx: AgentContext): Record<string, unknown> {
  const bash: Record<string, string> = { "*": "allow" };
  for (const rule of ctx.commands.deny) {
    const name = rule.includes("/") ? rule.slice(rule.lastIndexOf("/") + 1) : rule;
    const programs = rule.startsWith("/") ? [rule, name] : [name, ...SYSTEM_DIRS.map((d) => `${d}/${name}`)];
    for (const p of programs) Object.assign(bash, { [p]: "deny", [`${p} *`]: "deny" });
  }
  const mcp = Object.fromEntries(Object.entries(ctx.mcp).map(([name, m]) => [name, { type: "local", command: [m.command, ...m.args], environment: m.env, enabled: true }]));
  return {
    $schema: "https://opencode.ai/config.json",
    model: model(ctx),
    small_model: model(ctx),
    enabled_providers: ["openai"],
    autoupdate: false,
    share: "disabled",
    provider: { openai: { options: { baseURL: (ctx.endpoint ?? "https://api.openai.com/v1").replace(/\/$/, ""), apiKey: "{env:OPENAI_API_KEY}" } } },
    permission: { bash },
    ...(Object.keys(mcp).length > 0 ? { mcp } : {}),
  };
}

/**
 * An opencode plugin: before each bash call, ask Paddock's check; a refusal (or no answer) throws,
 * and opencode hands the model the thrown message as the tool's error.
 */
export function checkPlugin(checkUrl: string): string {
  return `// Written by Paddock: asks Paddock's command check before each bash call. Fails closed.
const CHECK_URL = ${JSON.stringify(checkUrl)};
async function check(command) {
  if (typeof command !== "string" || command.trim() === "") throw new Error("paddock: the bash tool call has no command");
  let res, answer = null;
  try {
    res = await fetch(CHECK_URL, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ command }), signal: AbortSignal.timeout(${CHECK_LIMIT_MS}) });
    answer = await res.json().catch(() => null);
  } catch (e) {
    throw new Error(\`paddock: the command check at \${CHECK_URL} failed (\${e?.message ?? e}); the command was not run\`);
  }
  if (res.status === 200 && answer?.allowed === true) return;
  throw new Error(typeof answer?.message === "string" ? answer.message : \`paddock: the command check answered \${res.status}; the command was not run\`);
}
export const PaddockCheck = async () => ({
  "tool.execute.before": async (input, output) => {
    if (input.tool === "bash") await check(output?.args?.command);
  },
});
`;
}

function launch(prompt: string, sessionId: string | null, ctx: AgentContext): AgentLaunch {
  const { env, files } = prepare(ctx);
  const argv = [ctx.bin, "run", "--format", "json", "--model", model(ctx), "--dir", ctx.cwd];
  if (sessionId !== null) argv.push("--session", sessionId);
  // `--` ends the options: a prompt that starts with "-" is never read as one.
  argv.push("--", prompt);
  return { argv, env, files };
}

export const opencode: AgentAdapter = {
  name: "opencode",
  title: "opencode",
  package: AGENT_PACKAGES.opencode ?? null,
  vendor: { hosts: ["api.openai.com"], keyEnv: "OPENAI_API_KEY" },
  prepare,
  start: (prompt, ctx) => launch(prompt, null, ctx),
  resume: (prompt, agentSessionId, ctx) => {
    if (!SESSION_ID.test(agentSessionId)) throw new Error(`not an opencode session id: ${JSON.stringify(agentSessionId)} (opencode session ids look like ses_…)`);
    return launch(prompt, agentSessionId, ctx);
  },
  parser: opencodeParser,
};

type Json = Record<string, unknown>;

/** `opencode run --format json` lines: step_start, text, tool_use, step_finish, error (each with a `part`). */
export function opencodeParser(): StreamParser {
  let started = false;
  let lastText = "";
  return {
    line(text) {
      if (text.trim() === "") return [];
      let ev: Json;
      try {
        ev = JSON.parse(text) as Json;
      } catch {
        return [{ type: "raw", line: text }];
      }
      const out: AgentEvent[] = [];
      if (!started && typeof ev.sessionID === "string") {
        started = true;
        out.push({ type: "started", agentSessionId: ev.sessionID, model: null });
      }
      const part = (ev.part ?? {}) as Json;
      switch (ev.type) {
        case "step_start":
          return out;
        case "text":
          lastText = str(part.text);
          return [...out, { type: "message", role: "assistant", text: lastText }];
        case "tool_use":
          return [...out, ...toolEvents(part)];
        case "step_finish": {
          const tokens = (part.tokens ?? {}) as Json;
          out.push({ type: "usage", inputTokens: num(tokens.input), outputTokens: num(tokens.output), costUsd: typeof part.cost === "number" ? part.cost : null });
          if (part.reason !== "tool-calls") out.push({ type: "result", text: lastText, isError: part.reason === "error" });
          return out;
        }
        case "error": {
          const e = (ev.error ?? {}) as Json;
          const message = str((e.data as Json | undefined)?.message) || str(e.name) || "opencode reported an error";
          return [...out, { type: "error", message }, { type: "result", text: message, isError: true }];
        }
        default:
          return [...out, { type: "raw", line: text }];
      }
    },
    end: () => [],
  };
}

function toolEvents(part: Json): AgentEvent[] {
  const state = (part.state ?? {}) as Json;
  const id = str(part.callID) || str(part.id);
  const tool = str(part.tool);
  const input = state.input ?? null;
  const command = tool === "bash" && typeof (input as Json | null)?.command === "string" ? ((input as Json).command as string) : null;
  const events: AgentEvent[] = [{ type: "tool_call", id, tool, input, command }];
  if (state.status === "completed") {
    const exit = (state.metadata as Json | undefined)?.exit;
    const output = str(state.output);
    events.push({ type: "tool_result", id, output, isError: typeof exit === "number" && exit !== 0, denied: /^paddock: /m.test(output) });
  } else if (state.status === "error") {
    const output = str(state.error);
    events.push({ type: "tool_result", id, output, isError: true, denied: output.includes(RULE_DENIAL) || /(^|: )paddock: /m.test(output) });
  }
  return events;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : v === undefined || v === null ? "" : JSON.stringify(v);
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^\.+/, "_") || "skill";
}
