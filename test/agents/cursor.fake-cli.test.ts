/**
 * Paddock's Cursor adapter against a FAKE `cursor-agent` (test/fakes/cursor-agent.ts) in a real
 * sandbox: the real CLI cannot run here (not on npm, no way to point it at a local model), so this
 * checks what Paddock controls: the files and argv the adapter produces, the parser on the
 * documented stream-json, and that the sandbox's guardrails hold for whatever the CLI's shell
 * tool runs. It does not show that the real CLI behaves as its docs say.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { PaddockClient } from "../../src/client/index.ts";
import { cursor } from "../../src/agents/cursor.ts";
import type { AgentContext, AgentEvent, AgentLaunch } from "../../src/agents/index.ts";
import { testServer } from "../helpers/server.ts";
import { FAKE_CURSOR_AGENT_SCRIPT, type FakeCursorScenario } from "../fakes/cursor-agent.ts";

const ENV = `name: cursor
secrets:
  - name: CURSOR_API_KEY
    hosts: [api2.cursor.sh]
guardrails:
  commands:
    deny: [rm]
  network:
    allow: [api2.cursor.sh]
    deny: ["*"]
rbac:
  agent: [read, write]
`;
const REAL_KEY = "key_RealCursorApiKeyValue0123456789abcdef0123456789";
const FAKE_BIN = "/home/paddock/.local/bin/cursor-agent";
const SCENARIO = "/home/paddock/fake-cursor-scenario.json";

const ctx: AgentContext = {
  bin: FAKE_BIN,
  home: "/home/paddock",
  cwd: "/workspace",
  caFile: "/etc/paddock/ca.pem",
  model: "fake-model-1",
  instructions: "Paddock test instructions for Cursor.",
  skills: [],
  mcp: {},
  commands: { allow: [], deny: ["rm"], ask: [] },
  checkUrl: "http://paddock.internal/v1/check",
  endpoint: null,
};

void describe("Cursor adapter against a FAKE cursor-agent in a real sandbox", () => {
  let cleanup: (() => Promise<void>) | undefined;
  let bot: PaddockClient;
  let session: string;
  let first: { stdout: string; stderr: string; exitCode: number | null };
  let events: AgentEvent[];

  const run = async (l: AgentLaunch, scenario: FakeCursorScenario) => {
    const prepared = cursor.prepare(ctx);
    const files = [...prepared.files, ...l.files, { path: SCENARIO, content: JSON.stringify(scenario) }];
    await bot.sessions.run(session, { argv: ["mkdir", "-p", ...new Set(files.map((f) => dirname(f.path)))] });
    for (const f of files) await bot.files.write(session, f.path, Buffer.from(f.content), { mode: f.mode ?? 0o644 });
    return bot.sessions.run(session, { argv: l.argv, env: { ...prepared.env, ...l.env, FAKE_CURSOR_SCENARIO: SCENARIO }, cwd: ctx.cwd, timeoutMs: 30_000 });
  };
  const parse = (stdout: string) => {
    const p = cursor.parser();
    return [...stdout.split("\n").flatMap((l) => p.line(l)), ...p.end()];
  };

  before(async () => {
    const t = await testServer();
    cleanup = t.cleanup;
    const admin = t.client;
    await admin.secrets.set("CURSOR_API_KEY", REAL_KEY);
    await admin.environments.apply("runtime.yml", ENV);
    bot = new PaddockClient({ url: admin.url, token: (await admin.principals.create({ name: "cursor-bot", role: "agent", kind: "agent" })).token });
    session = (await bot.sessions.start("cursor", { onBehalfOf: "admin" })).id;
    await bot.sessions.run(session, { argv: ["mkdir", "-p", dirname(FAKE_BIN)] });
    await bot.files.write(session, FAKE_BIN, Buffer.from(FAKE_CURSOR_AGENT_SCRIPT), { mode: 0o755 });
    await admin.files.write(session, "/workspace/x", Buffer.from("precious\n"));
    first = await run(cursor.start("-clean up", ctx), {
      steps: [
        { say: "Cleaning up." },
        { shell: "rm -f /workspace/x" },
        // The CLI's Shell(rm) rule sees only the first word: the exec guard stops the rm.
        { shell: "echo trying && rm -f /workspace/x" },
        { shell: 'echo "hi from shell" && echo "key=$CURSOR_API_KEY"' },
        { say: "Done." },
      ],
    });
    events = parse(first.stdout);
  });

  after(async () => {
    await cleanup?.();
  });

  void it("the fake CLI accepts the adapter's argv and runs to the end", () => {
    assert.equal(first.exitCode, 0, first.stdout + first.stderr);
    const argv = cursor.start("-clean up", ctx).argv;
    assert.deepEqual(argv, [FAKE_BIN, "--print", "--output-format", "stream-json", "--force", "--trust", "--model", "fake-model-1", "--", "-clean up"]);
  });

  void it("writes the permissions file and the always-applied rule", async () => {
    const config = JSON.parse((await bot.files.read(session, "/home/paddock/.cursor/cli-config.json")).toString()) as { permissions: { deny: string[] } };
    assert.deepEqual(config.permissions.deny, ["Shell(rm)"]);
    const rule = (await bot.files.read(session, "/workspace/.cursor/rules/paddock.mdc")).toString();
    assert.match(rule, /^---\n(.*\n)*alwaysApply: true\n---\n\nPaddock test instructions for Cursor\.\n$/);
  });

  void it("the parser maps the stream: started, messages, tool calls and results, the final text", () => {
    const started = events[0];
    assert.ok(started?.type === "started" && /^[0-9a-f-]{36}$/.test(started.agentSessionId ?? "") && started.model === "fake-model-1", JSON.stringify(started));
    assert.deepEqual(events[1], { type: "message", role: "user", text: "-clean up" });
    assert.deepEqual(events[2], { type: "message", role: "assistant", text: "Cleaning up." });
    const calls = events.flatMap((e) => (e.type === "tool_call" ? [[e.tool, e.command]] : []));
    assert.deepEqual(calls, [
      ["shell", "rm -f /workspace/x"],
      ["shell", "echo trying && rm -f /workspace/x"],
      ["shell", 'echo "hi from shell" && echo "key=$CURSOR_API_KEY"'],
    ]);
    assert.deepEqual(events.at(-1), { type: "result", text: "Done.", isError: false });
    assert.deepEqual(events.filter((e) => e.type === "raw"), []);
  });

  void it("the CLI's own deny rule rejects `rm`; the exec guard stops the rm it cannot see", async () => {
    const results = events.filter((e) => e.type === "tool_result");
    assert.equal(results.length, 3);
    const [rejected, guarded, allowed] = results;
    assert.ok(rejected?.type === "tool_result" && rejected.isError && rejected.denied, JSON.stringify(rejected));
    assert.match(rejected.output, /Shell\(rm\)/);
    assert.ok(guarded?.type === "tool_result" && guarded.isError, JSON.stringify(guarded));
    assert.match(guarded.output, /trying\n/);
    assert.match(guarded.output, /rm: .*(Operation not permitted|denied)|paddock: 'rm' denied/);
    assert.ok(allowed?.type === "tool_result" && !allowed.isError && !allowed.denied, JSON.stringify(allowed));
    assert.equal((await bot.files.read(session, "/workspace/x")).toString(), "precious\n");
  });

  void it("the shell tool sees only the key's placeholder", () => {
    const allowed = events.filter((e) => e.type === "tool_result")[2];
    assert.ok(allowed?.type === "tool_result");
    assert.match(allowed.output, /^hi from shell\nkey=paddock-ph-[0-9a-f]{32}\n$/);
    assert.ok(!first.stdout.includes(REAL_KEY));
  });

  void it("resume continues the same chat id", async () => {
    const started = events[0];
    assert.ok(started?.type === "started" && started.agentSessionId);
    const r = await run(cursor.resume("and now?", started.agentSessionId, ctx), { steps: [{ say: "turn {turn}" }] });
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const evs = parse(r.stdout);
    assert.deepEqual(evs[0], { type: "started", agentSessionId: started.agentSessionId, model: "fake-model-1" });
    assert.deepEqual(evs.at(-1), { type: "result", text: "turn 2", isError: false });
    assert.throws(() => cursor.resume("x", "--force rm", ctx), /Cursor chat ids/);
  });
});
