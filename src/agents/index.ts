/**
 * The agents box: one adapter per coding agent (docs/agents.md). Imports only core-level types; the
 * control plane (`control/runs.ts`) does the I/O.
 */
import { PaddockError } from "../core/index.ts";
import type { AgentAdapter, AgentName, HostedAgent } from "./types.ts";
import { claudeCode } from "./claude-code.ts";
import { codex } from "./codex.ts";
import { gemini } from "./gemini.ts";
import { copilot } from "./copilot.ts";
import { opencode } from "./opencode.ts";
import { cursor } from "./cursor.ts";
import { devin } from "./devin.ts";

export * from "./types.ts";
export { AGENT_PACKAGES } from "./packages.ts";

const CLI_AGENTS: Partial<Record<AgentName, AgentAdapter | null>> = { "claude-code": claudeCode, codex, gemini, copilot, opencode, cursor };
const HOSTED_AGENTS: Partial<Record<AgentName, HostedAgent | null>> = { devin };

/** The adapter of an agent that runs as a CLI inside the session; null for hosted agents. */
export function cliAgent(name: AgentName): AgentAdapter | null {
  return CLI_AGENTS[name] ?? null;
}

/** The hosted agent (driven from the control plane), or null for CLI agents. */
export function hostedAgent(name: AgentName): HostedAgent | null {
  return HOSTED_AGENTS[name] ?? null;
}

export function isHosted(name: AgentName): boolean {
  return name in HOSTED_AGENTS;
}

/** Either kind, or a clear error naming what exists. */
export function requireAgent(name: string): { cli: AgentAdapter } | { hosted: HostedAgent } {
  const cli = CLI_AGENTS[name as AgentName];
  if (cli) return { cli };
  const hosted = HOSTED_AGENTS[name as AgentName];
  if (hosted) return { hosted };
  const known = Object.entries({ ...CLI_AGENTS, ...HOSTED_AGENTS }).filter(([, a]) => a).map(([n]) => n);
  throw new PaddockError("invalid_argument", `no agent ${JSON.stringify(name)}: this installation runs ${known.join(", ") || "none yet"}`);
}
