/**
 * What the real-CLI agent tests share: the context every adapter gets in them, and the way
 * control/runs.ts drives an adapter (its files written as the session user into directories made
 * first, then its argv run with both variable sets), here through the API as the agent's principal.
 */
import { dirname } from "node:path";
import { PaddockClient } from "../../src/client/index.ts";
import { testServer } from "../helpers/server.ts";
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

/**
 * A real server whose gateway sends `upstream.names` to a local fake, the vendor's key in its vault,
 * `env` applied, and a session of it started by an agent principal for admin, holding
 * /workspace/x (what the denied `rm` must not remove) and /workspace/sneaky.sh (an `rm` a hook sees
 * only as `sh sneaky.sh`: only the kernel's exec guard stops it).
 */
export async function agentSandbox(o: {
  upstream: { caPem: string; address: string; names: string[] };
  key: { name: string; value: string };
  env: string;
  environment: string;
  bot: string;
}): Promise<{ admin: PaddockClient; bot: PaddockClient; session: string; cleanup: () => Promise<void> }> {
  const t = await testServer({
    gateway: { upstream: { extraCaPem: [o.upstream.caPem], hosts: Object.fromEntries(o.upstream.names.map((n) => [n, [o.upstream.address]])), trustedAddresses: [o.upstream.address] } },
  });
  try {
    const admin = t.client;
    await admin.secrets.set(o.key.name, o.key.value);
    await admin.environments.apply("runtime.yml", o.env);
    const bot = new PaddockClient({ url: admin.url, token: (await admin.principals.create({ name: o.bot, role: "agent", kind: "agent" })).token });
    const session = (await bot.sessions.start(o.environment, { onBehalfOf: "admin" })).id;
    await admin.files.write(session, "/workspace/x", Buffer.from("precious\n"));
    await admin.files.write(session, "/workspace/sneaky.sh", Buffer.from("rm -f /workspace/x\n"));
    return { admin, bot, session, cleanup: t.cleanup };
  } catch (err) {
    await t.cleanup();
    throw err;
  }
}
