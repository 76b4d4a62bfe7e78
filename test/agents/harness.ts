/**
 * What the real-CLI agent tests share: the context every adapter gets in them, and the way
 * control/runs.ts drives an adapter (its files written as the session user into directories made
 * first, then its argv run with both variable sets), here through the API as the agent's principal.
 */
import { dirname } from "node:path";
import type { PaddockClient } from "../../src/client/index.ts";
import type { AgentAdapter, AgentContext, AgentEvent, AgentLaunch } from "../../src/agents/index.ts";
import { AGENT_PACKAGES, AGENT_ROOT } from "../../src/agents/index.ts";

/** The context of the tests: instructions and a skill to find in the model's requests, `rm` denied. */
export function testContext(adapter: AgentAdapter, overrides: Partial<AgentContext> = {}): AgentContext {
  const pkg = AGENT_PACKAGES[adapter.name];
  return {
    bin: pkg ? `${AGENT_ROOT}/${adapter.name}/node_modules/.bin/${pkg.bin}` : "/usr/local/bin/cursor-agent",
    home: "/home/paddock",
    cwd: "/workspace",
    caFile: "/etc/paddock/ca.pem",
    model: null,
    instructions: "Paddock test instructions: always answer politely.",
    skills: [{ name: "fake-skill", description: "A skill the fake test installs", content: "Say hello." }],
    mcp: {},
    commands: { allow: [], deny: ["rm"], ask: [] },
    checkUrl: "http://paddock.internal/v1/check",
    endpoint: null,
    ...overrides,
  };
}

/** Run one launch of `adapter` in `session` as runs.ts would: prepare()'s and the launch's files, then the argv. */
export async function runLaunch(
  client: PaddockClient,
  session: string,
  adapter: AgentAdapter,
  launch: AgentLaunch,
  ctx: AgentContext,
  timeoutMs = 45_000,
): Promise<{ stdout: string; stderr: string; exitCode: number | null }> {
  const prepared = adapter.prepare(ctx);
  const files = [...prepared.files, ...launch.files];
  // The file API writes into existing directories only (~/.claude/skills/<name>/ are new).
  await client.sessions.run(session, { argv: ["mkdir", "-p", ...new Set(files.map((f) => dirname(f.path)))] });
  for (const f of files) await client.files.write(session, f.path, Buffer.from(f.content), { mode: f.mode ?? 0o644 });
  return client.sessions.run(session, { argv: launch.argv, env: { ...prepared.env, ...launch.env }, cwd: ctx.cwd, timeoutMs });
}

/** Every event the adapter's parser makes of a whole stdout. */
export function parseAll(adapter: AgentAdapter, stdout: string): AgentEvent[] {
  const p = adapter.parser();
  return [...stdout.split("\n").flatMap((line) => p.line(line)), ...p.end()];
}
