/**
 * What Paddock knows about each coding agent: one adapter per agent (docs/agents.md). An adapter
 * is pure knowledge, with no I/O of its own: how the agent's package is installed into a template,
 * which files and variables configure it (instructions, skills, MCP servers, the mirrored
 * guardrails, the model endpoint, the CA it honours, non-essential traffic off), the argv that runs
 * it headless, and how its machine-readable stream becomes Paddock's normalised `AgentEvent`s. The
 * control plane (`control/runs.ts`) does the I/O: it writes the files into the session, runs the
 * argv through the same exec path and guardrails as any command, and feeds stdout lines to the
 * adapter's parser.
 *
 * Hosted agents (Devin) have no CLI in the sandbox: they are driven from the control plane over
 * their vendor's API (`HostedAgent`).
 */

import { AGENT_NAMES } from "../config/index.ts";

/** Agents Paddock has adapters for (the environment file's `agent:` names them). */
export { AGENT_NAMES };
export type AgentName = (typeof AGENT_NAMES)[number];

/** Where agent packages live inside a template: `/opt/paddock/agents/<name>/node_modules/.bin/<bin>`. */
export const AGENT_ROOT = "/opt/paddock/agents";

/** An npm package that carries an agent CLI, installed with `npm install --prefix DIR PKG@VERSION`. */
export interface AgentPackage {
  npm: string;
  /** Pinned: an agent's stream format and flags change between releases, and the adapter is written against this one. */
  version: string;
  /** The executable's name in `node_modules/.bin`. */
  bin: string;
}

/** The model API an agent calls, so the gateway can swap its key for that vendor's hosts only. */
export interface ModelVendor {
  /** Hosts the key may be sent to, e.g. ["api.anthropic.com"]. */
  hosts: string[];
  /** The environment variable (and secret name) that holds the key, e.g. "ANTHROPIC_API_KEY". */
  keyEnv: string;
}

/** A skill (a named, described instruction document the agent loads when relevant). */
export interface AgentSkill {
  name: string;
  description: string;
  content: string;
}

/** A stdio MCP server the agent may use. */
export interface McpServer {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/** What a run gives an adapter to prepare and launch the agent. */
export interface AgentContext {
  /** Absolute path of the agent's executable inside the sandbox. */
  bin: string;
  /** The session user's home inside the sandbox (config files go under it). */
  home: string;
  /** The working directory the agent works in (e.g. /workspace); instruction files go here. */
  cwd: string;
  /** PEM bundle path inside the sandbox that includes the session's gateway CA (/etc/paddock/ca.pem). */
  caFile: string;
  /** The model to ask for; null: the adapter's default. */
  model: string | null;
  /** Environment's `agent.instructions`; null: none. */
  instructions: string | null;
  skills: AgentSkill[];
  mcp: Record<string, McpServer>;
  /** The environment's `guardrails.commands`, for mirroring into the agent's own permission system. */
  commands: { allow: string[]; deny: string[]; ask: string[] };
  /**
   * URL of Paddock's in-sandbox check (http://paddock.internal/v1/…): PreToolUse hooks call it so a
   * denied command reaches the agent as a tool error it can act on. Paddock's exec guard and
   * gateway stay the boundary whatever the agent does with the answer.
   */
  checkUrl: string;
  /** Base URL of the vendor API when the installation points agents at a proxy; null: the vendor's own. */
  endpoint: string | null;
}

/** A file the run writes into the sandbox before launching (as the session user). */
export interface AgentFile {
  /** Absolute path inside the sandbox. */
  path: string;
  content: string;
  /** Default 0o644. */
  mode?: number;
}

/** How to run the agent once: argv (argv[0] is `ctx.bin`), extra variables and files to write first. */
export interface AgentLaunch {
  argv: string[];
  env: Record<string, string>;
  files: AgentFile[];
}

/**
 * Paddock's normalised transcript event. Every agent's stream maps onto these; `raw` keeps what
 * could not be mapped so nothing the agent said is lost.
 */
export type AgentEvent =
  /** The agent's own id for this conversation (needed to resume it), and the model when known. */
  | { type: "started"; agentSessionId: string | null; model: string | null }
  | { type: "message"; role: "assistant" | "user"; text: string }
  /** A tool call the model made. `command` is set when the tool runs a shell command. */
  | { type: "tool_call"; id: string; tool: string; input: unknown; command: string | null }
  /** What the tool returned. `denied` when Paddock (or the agent's mirrored rules) refused it. */
  | { type: "tool_result"; id: string; output: string; isError: boolean; denied: boolean }
  /** Tokens and cost as the agent reports them (cumulative for the turn when it says so). */
  | { type: "usage"; inputTokens: number; outputTokens: number; costUsd: number | null }
  /** The agent finished its turn: its final text. */
  | { type: "result"; text: string; isError: boolean }
  | { type: "error"; message: string }
  | { type: "raw"; line: string };

/** Turns an agent's stdout into events; one parser per invocation (they keep state across lines). */
export interface StreamParser {
  /** One line of stdout (without its newline). */
  line(text: string): AgentEvent[];
  /** Stdout ended: whatever was pending. */
  end(): AgentEvent[];
}

export interface AgentAdapter {
  name: AgentName;
  /** For people, e.g. "Claude Code". */
  title: string;
  /** null: not installable from npm (Cursor's CLI installs from cursor.com). */
  package: AgentPackage | null;
  vendor: ModelVendor;
  /**
   * Files and variables every invocation needs: instructions where this CLI reads them (CLAUDE.md,
   * AGENTS.md, GEMINI.md…), skills, MCP servers, the mirrored guardrails (hooks, policy files, deny
   * rules), the model endpoint, the CA variables it honours, and non-essential traffic switched off.
   */
  prepare(ctx: AgentContext): { env: Record<string, string>; files: AgentFile[] };
  /** The first turn, headless, with its machine-readable stream on stdout. */
  start(prompt: string, ctx: AgentContext): AgentLaunch;
  /** A follow-up prompt in the same conversation (`agentSessionId` from its `started` event). */
  resume(prompt: string, agentSessionId: string, ctx: AgentContext): AgentLaunch;
  parser(): StreamParser;
}

/**
 * A hosted agent (Devin): no process in the sandbox; the control plane drives the vendor's API with
 * the key from the vault and maps its messages onto `AgentEvent`s.
 */
export interface HostedAgentSession {
  /** The vendor's id for the session. */
  id: string;
  /** Events since the last call (polling the vendor's API). */
  poll(signal?: AbortSignal): Promise<{ events: AgentEvent[]; done: boolean }>;
  followUp(prompt: string): Promise<void>;
  cancel(): Promise<void>;
}

export interface HostedAgent {
  name: AgentName;
  title: string;
  vendor: ModelVendor;
  /** `apiKey` is the real key from the vault: it never enters a sandbox. */
  start(opts: { prompt: string; apiKey: string; baseUrl: string; fetch?: typeof fetch }): Promise<HostedAgentSession>;
}
