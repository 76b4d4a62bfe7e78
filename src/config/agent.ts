/**
 * `agent:` (extension): the coding agents an environment's template installs, and the context they
 * work with, defined once by engineering: instructions (written where each CLI reads them), skills,
 * MCP servers, and `checks:`, the commands that must pass before the agent's work counts as done.
 * Shorthands: `agent: claude-code` and `agent: [claude-code, codex]`. See docs/agents.md.
 */
import { z } from "zod";
import { ALWAYS, expecting, noDuplicates, oneOf, parsedString, refineWith, withDefault } from "./fields.ts";
import { DAY_MS, parseDuration } from "./units.ts";
import { quote } from "./words.ts";

/** Agents with an adapter (src/agents). The first five run as CLIs from npm; cursor is a CLI from cursor.com; devin is hosted. */
export const AGENT_NAMES = ["claude-code", "codex", "gemini", "copilot", "opencode", "cursor", "devin"] as const;
export const RUN_OUTCOMES = ["keep", "snapshot", "stop"] as const;
export const DEFAULT_CHECK_TIMEOUT_MS = 10 * 60_000;
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const ENV_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Instructions and skills are files the agent reads at every turn: bounded so a file cannot make every run carry megabytes. */
const MAX_TEXT = 64 * 1024;

export interface AgentCheck {
  name: string;
  run: string;
  timeoutMs: number;
}

/** `EnvironmentSpec.agent` when the file has `agent:`. */
export interface AgentConfig {
  /** The agents the template installs; the first is the default for `paddock run`. */
  agents: (typeof AGENT_NAMES)[number][];
  model: string | null;
  instructions: string | null;
  skills: { name: string; description: string; content: string }[];
  mcp: Record<string, { command: string; args: string[]; env: Record<string, string> }>;
  checks: AgentCheck[];
  outcome: (typeof RUN_OUTCOMES)[number];
}

const agentName = oneOf(AGENT_NAMES, "agent");
const agentList = z.array(agentName, expecting("a list of agent names")).min(1, { error: 'name at least one agent, e.g. [claude-code]' }).superRefine(noDuplicates("agent"), ALWAYS);

const boundedText = (what: string) =>
  z.string(expecting(what)).superRefine(refineWith((v: string) => (Buffer.byteLength(v) > MAX_TEXT ? `is longer than ${MAX_TEXT / 1024} KiB: keep it short, or put the detail in the repository and point at it` : undefined)));

const nameOf = (what: string) =>
  z.string(expecting(`a ${what} name such as "triage"`)).superRefine(
    refineWith((v: string) => (NAME_RE.test(v) ? undefined : `${quote(v)} is not a ${what} name: use lowercase letters, digits and "-", e.g. "triage"`)),
  );

const skill = z.strictObject(
  {
    name: nameOf("skill").describe("The skill's name. Required."),
    description: z.string(expecting("a one-line description", 'missing required key: add "description: <when the agent should use it>"')).min(1, { error: "is empty: say when the agent should use the skill" }).describe("When the agent should use it (the agent reads this to decide). Required."),
    content: boundedText("the skill's instructions (markdown)").describe("The skill's instructions, markdown, at most 64 KiB. Required."),
  },
  expecting('a mapping such as { name: triage, description: "…", content: "…" }'),
);

const envValues = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()], expecting("a string, number or boolean")).transform((v) => String(v)), expecting("a mapping of variable name to value")).superRefine((env: unknown, ctx) => {
  if (typeof env !== "object" || env === null || Array.isArray(env)) return;
  for (const k of Object.keys(env))
    if (!ENV_RE.test(k)) ctx.addIssue({ code: "custom", path: [k], message: `${quote(k)} is not an environment variable name: use letters, digits and "_", not starting with a digit`, input: k, params: { at: "key" } });
}, ALWAYS);

const mcpServer = z.strictObject(
  {
    command: z.string(expecting('a program such as "npx"', 'missing required key: add "command: <program>"')).min(1, { error: "is empty: name the program that starts the MCP server" }).describe("The program that starts the stdio MCP server, inside the sandbox. Required."),
    args: withDefault(z.array(z.string(expecting("a string")), expecting("a list of arguments")), () => []).describe("Its arguments. Default []."),
    env: withDefault(envValues, () => ({})).describe("Extra environment variables. Secrets are placeholders here like everywhere in the sandbox."),
  },
  expecting('a mapping such as { command: npx, args: ["-y", "@sentry/mcp-server"] }'),
);

const checkTimeout = (n: number): string | undefined => (n <= 0 ? 'is zero: give the check time to run, e.g. "10m"' : n > DAY_MS ? "is more than the maximum of 1d" : undefined);

const check = z.union(
  [
    z.string().min(1, { error: "is an empty command" }).transform((run) => ({ name: run.split(/\s+/).slice(0, 3).join(" "), run, timeoutMs: DEFAULT_CHECK_TIMEOUT_MS })),
    z.strictObject({
      name: z.string(expecting('a short name such as "tests"')).min(1, { error: "is empty" }).optional(),
      run: z.string(expecting("a shell command", 'missing required key: add "run: <shell command>"')).min(1, { error: "is an empty command" }).describe("The shell command; exit 0 means passed. Required."),
      timeout: withDefault(parsedString('a duration such as "10m"', parseDuration, checkTimeout), () => DEFAULT_CHECK_TIMEOUT_MS).describe('Default "10m", at most 1d.'),
    }).transform((c) => ({ name: c.name ?? c.run.split(/\s+/).slice(0, 3).join(" "), run: c.run, timeoutMs: c.timeout })),
  ],
  expecting('a shell command such as "npm test", or { name: tests, run: "npm test", timeout: 10m }'),
);

const full = z
  .strictObject(
    {
      cli: z.union([agentName.transform((a) => [a]), agentList], expecting('an agent name such as "claude-code", or a list of them')).describe(
        'The agent or agents the template installs, e.g. claude-code or [claude-code, codex]; the first is the default for `paddock run`. Required.',
      ),
      model: withDefault(z.string(expecting('a model name such as "claude-sonnet-4-5"')).min(1, { error: "is empty: name a model or remove the key" }).nullable(), () => null).describe("The model the agent asks for. Absent: the agent's default."),
      instructions: withDefault(boundedText("instructions (markdown)").nullable(), () => null).describe("Written where each agent reads its instructions (CLAUDE.md, AGENTS.md, GEMINI.md…) in the working directory. At most 64 KiB."),
      skills: withDefault(z.array(skill, expecting("a list of skills")).superRefine(noDuplicates("skill", (s) => (typeof s === "object" && s !== null && typeof (s as { name?: unknown }).name === "string" ? (s as { name: string }).name : undefined)), ALWAYS), () => []).describe("Skills the agent can load (name, description, content)."),
      mcp: withDefault(z.record(z.string(), mcpServer, expecting("a mapping of server name to { command, args, env }")).superRefine((m: unknown, ctx) => {
        if (typeof m !== "object" || m === null) return;
        for (const k of Object.keys(m)) if (!NAME_RE.test(k)) ctx.addIssue({ code: "custom", path: [k], message: `${quote(k)} is not an MCP server name: use lowercase letters, digits and "-"`, input: k, params: { at: "key" } });
      }, ALWAYS), () => ({})).describe("Stdio MCP servers the agent may use, by name."),
      checks: withDefault(z.array(check, expecting("a list of checks")), () => []).describe("Commands that must pass before the agent's work counts as done (lint, tests), run after every turn; their results are part of the run's outcome."),
      outcome: withDefault(oneOf(RUN_OUTCOMES, "outcome"), () => "keep" as const).describe('After a run: "keep" the session for follow-ups (default), "snapshot" it and stop, or "stop".'),
    },
    expecting('an agent name such as "claude-code", or a mapping such as { cli: claude-code, instructions: "…" }'),
  )
  .transform((a): AgentConfig => ({ agents: a.cli, model: a.model, instructions: a.instructions, skills: a.skills, mcp: a.mcp, checks: a.checks, outcome: a.outcome }));

/** `agent: claude-code` and `agent: [claude-code, codex]` are `{ cli: … }` with every other key at its default. */
export const agentSchema = z
  .preprocess((v) => (typeof v === "string" || Array.isArray(v) ? { cli: v } : v), full.nullish())
  .transform((a): AgentConfig | null => a ?? null)
  .describe("Extension. The coding agents the template installs and the context they work with (docs/agents.md). Absent: no agent; sessions run commands only.");
