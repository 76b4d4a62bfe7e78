/**
 * The agent CLIs' npm packages, pinned. Each version is one this adapter's stream parsing and flags
 * were written and tested against, and one that runs on Node 20 (Claude Code from 2.1.198 on needs
 * Node 22: npm would otherwise pick whatever the registry's newest is).
 */
import type { AgentName, AgentPackage } from "./types.ts";

export const AGENT_PACKAGES: Partial<Record<AgentName, AgentPackage>> = {
  "claude-code": { npm: "@anthropic-ai/claude-code", version: "2.1.197", bin: "claude" },
  codex: { npm: "@openai/codex", version: "0.171.0", bin: "codex" },
  gemini: { npm: "@google/gemini-cli", version: "0.61.0", bin: "gemini" },
  copilot: { npm: "@github/copilot", version: "1.0.102", bin: "copilot" },
  opencode: { npm: "opencode-ai", version: "1.18.33", bin: "opencode" },
};
