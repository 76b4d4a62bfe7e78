/**
 * Agent runs end to end through the API, the SDK and the CLI: the real Claude Code CLI, installed
 * into the template by `agent: claude-code` (from the local package mirror), runs headless in a real
 * session against a scripted local FAKE of the Anthropic Messages API behind the egress gateway.
 * Covers the transcript (stored, redacted, followed live), the audit of tool calls, checks, the
 * diff, follow-ups, cancel, the outcomes, and a signed webhook (generic HMAC hook) starting a run
 * exactly once.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import type { PaddockClient } from "../../src/client/index.ts";
import type { Run, RunEvent } from "../../src/core/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { FAKE_ANTHROPIC_ADDRESS, FAKE_ANTHROPIC_NAMES, fakeToolResults, startFakeAnthropic, type FakeAnthropic, type FakeTurn } from "../fakes/anthropic.ts";
import { until } from "../helpers/wait.ts";

const REAL_KEY = "sk-ant-api03-RunsTestRealKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN-BBBBBBBB";
const HOOK_SECRET = "whsec_runs_test_signing_secret_0123456789";

const ENV = `name: agents
agent:
  cli: claude-code
  instructions: Keep changes small.
  checks:
    - name: out exists
      run: test -f /workspace/out.txt
    - name: no junk
      run: "! test -e /workspace/junk.txt"
secrets:
  - name: ANTHROPIC_API_KEY
    hosts: [api.anthropic.com]
guardrails:
  commands:
    deny: [rm]
  network:
    allow: [api.anthropic.com, evil.example]
    deny: ["*"]
triggers:
  - name: alert
    on: hook
    secret: RUNS_HOOK_SECRET
    agent: claude-code
    prompt: "Investigate {{alert.title}}"
    as: oncall
    outcome: stop
rbac:
  engineering: [read, write]
  agent: [read, write]
`;

const terminal = (r: Run) => r.state !== "starting" && r.state !== "running";

void describe("agent runs through the API with the real Claude Code CLI against a fake Anthropic API", () => {
  let fake: FakeAnthropic;
  let client: PaddockClient;
  let url: string;
  let cleanup: (() => Promise<void>) | undefined;

  const script = (turns: FakeTurn[]) => fake.script(turns);

  before(async () => {
    fake = await startFakeAnthropic({ address: FAKE_ANTHROPIC_ADDRESS, port: 443 });
    const t = await testServer({
      gateway: { upstream: { extraCaPem: [fake.caPem], hosts: Object.fromEntries(FAKE_ANTHROPIC_NAMES.map((n) => [n, [FAKE_ANTHROPIC_ADDRESS]])), trustedAddresses: [FAKE_ANTHROPIC_ADDRESS] } },
    });
    ({ client, cleanup } = t);
    url = t.server.url;
    await client.secrets.set("ANTHROPIC_API_KEY", REAL_KEY);
    await client.secrets.set("RUNS_HOOK_SECRET", HOOK_SECRET);
    await client.principals.create({ name: "oncall", role: "engineering" });
    await client.environments.apply("runtime.yml", ENV);
  });

  after(async () => {
    await cleanup?.();
    await fake?.close();
  });

  let first: Run;
  let transcript: RunEvent[];

  void it("runs the agent headless: transcript, tool calls, denial, summary, diff and checks", async () => {
    script([
      () => ({ text: "Cleaning up.", tools: [{ name: "Bash", input: { command: "rm -rf /workspace/keep.txt", description: "remove" } }] }),
      () => ({ tools: [{ name: "Bash", input: { command: "echo hi > /workspace/out.txt && echo done", description: "write" } }] }),
      () => ({ tools: [{ name: "Bash", input: { command: 'echo "key=$ANTHROPIC_API_KEY"', description: "show key" } }] }),
      () => ({ text: "All done: wrote out.txt.", usage: { input_tokens: 321, output_tokens: 12 } }),
    ]);
    const started = await client.runs.start({ environment: "agents", prompt: "Tidy the workspace and write out.txt" });
    assert.equal(started.state, "starting");
    assert.equal(started.agent, "claude-code");
    const live: RunEvent[] = [];
    for await (const e of client.runs.follow(started.id)) live.push(e);
    first = await client.runs.get(started.id);
    assert.equal(first.state, "idle", JSON.stringify(first));
    assert.ok(first.sessionId);
    assert.equal(first.result?.summary, "All done: wrote out.txt.");
    assert.deepEqual(first.result?.changedFiles, ["out.txt"]);
    assert.match(first.result?.diff ?? "", /\+hi/);
    assert.deepEqual(first.result?.checks.map((c) => [c.name, c.passed]), [["out exists", true], ["no junk", true]]);
    assert.equal(first.result?.checksPassed, true);
    assert.equal(first.result?.inputTokens !== undefined && first.result.inputTokens > 0, true);
    transcript = await client.runs.events(first.id);
    assert.deepEqual(live.map((e) => e.seq), transcript.map((e) => e.seq), "the live stream is the stored transcript");
    const types = transcript.map((e) => e.event.type);
    for (const t of ["turn", "started", "tool_call", "tool_result", "result", "agent_exit", "check", "state"]) assert.ok(types.includes(t), `${t} in ${types.join(",")}`);
    const denied = transcript.find((e) => e.event.type === "tool_result" && e.event.denied === true);
    assert.ok(denied, "the rm tool call was denied");
    assert.match(String(denied.event.output), /paddock: 'rm' denied/);
    // The model saw the denial as a tool error, and the agent got the placeholder, never the key.
    const toolErrors = fake.turns.flatMap((r) => fakeToolResults(r)).filter((r) => r.isError);
    assert.ok(toolErrors.some((r) => /paddock: 'rm' denied/.test(r.text)));
    for (const r of fake.turns) assert.equal(r.headers["x-api-key"], REAL_KEY);
    const keyLine = transcript.find((e) => e.event.type === "tool_result" && /key=/.test(String(e.event.output)));
    assert.match(String(keyLine?.event.output), /key=paddock-ph-[0-9a-f]{32}/);
    assert.ok(!JSON.stringify(transcript).includes(REAL_KEY));
  });

  void it("audits every tool call as the agent acting for the person who started the run", async () => {
    const audit = await client.audit.list({ session: first.sessionId ?? "" });
    const calls = audit.filter((r) => r.action === "agent.toolcall");
    assert.ok(calls.length >= 3, JSON.stringify(audit.map((r) => r.action)));
    for (const c of calls) {
      assert.equal(c.actor, "claude-code");
      assert.equal(c.actorKind, "agent");
      assert.equal(c.onBehalfOf, "admin");
    }
    assert.ok(audit.some((r) => r.action === "agent.toolresult" && r.decision === "denied"));
    assert.ok(audit.some((r) => r.action === "toolcall" && r.decision === "denied"), "Paddock's own check of the hook's call");
  });

  void it("a follow-up resumes the same conversation and runs the checks again", async () => {
    script([
      (req) => {
        const seen = JSON.stringify(req.json?.messages ?? []);
        return { text: seen.includes("Tidy the workspace") ? "I remember the first prompt." : "I forgot everything.", tools: [{ name: "Bash", input: { command: "touch /workspace/junk.txt", description: "junk" } }] };
      },
      () => ({ text: "Added junk." }),
    ]);
    const before = (await client.runs.events(first.id)).at(-1)?.seq ?? 0;
    await client.runs.followUp(first.id, "Now add a junk file");
    const done = await client.runs.wait(first.id);
    assert.equal(done.state, "idle");
    assert.equal(done.turns, 2);
    const turn2 = (await client.runs.events(first.id, before)).filter((e) => e.turn === 2);
    assert.ok(turn2.some((e) => e.event.type === "message" && e.event.text === "I remember the first prompt."), JSON.stringify(turn2.map((e) => e.event)));
    assert.equal(done.result?.checksPassed, false, "the junk check fails now");
    assert.deepEqual(done.result?.checks.map((c) => c.passed), [true, false]);
  });

  void it("cancel stops a working agent; the CLI prints the run and exits non-zero for failed checks", async () => {
    script([() => ({ tools: [{ name: "Bash", input: { command: "sleep 600", description: "wait", timeout: 600000 } }] })]);
    const run = await client.runs.start({ environment: "agents", prompt: "wait a long time", outcome: "stop" });
    await until(async () => (await client.runs.events(run.id)).some((e) => e.event.type === "tool_call"), 60_000, "the agent to call its sleep tool");
    const cancelled = await client.runs.cancel(run.id);
    assert.equal(cancelled.state, "cancelled");
    assert.equal((await client.sessions.get(cancelled.sessionId ?? "")).state, "stopped", "outcome stop: the session ends with the cancel");
    // A follow-up to a finished run is refused with a clear reason.
    await assert.rejects(client.runs.followUp(run.id, "more"), /is cancelled/);

    script([() => ({ text: "Nothing to do." })]);
    const r = await cli(url, ["run", "agents", "--prompt", "check things", "--outcome", "snapshot"]);
    assert.equal(r.code, 1, "checks failed (out.txt is missing in a new session)");
    assert.match(r.stdout, /summary: Nothing to do\./);
    assert.match(r.stdout, /check out exists: FAILED/);
    assert.match(r.stdout, /snapshot: snap-[0-9a-f]{16}/);
    const id = /run (run-[0-9a-f]{16})/.exec(r.stdout)?.[1] ?? "";
    const snapped = await client.runs.get(id);
    assert.equal(snapped.state, "done");
    assert.equal((await client.sessions.get(snapped.sessionId ?? "")).state, "stopped");
    assert.ok(snapped.result?.snapshotId);
  });

  void it("a signed webhook starts one run as its trigger's principal; replays and bad signatures start none", async () => {
    script([() => ({ text: "Investigated." })]);
    const body = JSON.stringify({ alert: { title: "checkout 500s" } });
    const post = (sig: string, delivery: string, raw = body) =>
      fetch(`${url}/v1/hooks/agents/alert`, { method: "POST", headers: { "content-type": "application/json", "x-paddock-signature": sig, "x-paddock-delivery": delivery }, body: raw });
    const t = Math.floor(Date.now() / 1000);
    const good = `t=${t},v1=${createHmac("sha256", HOOK_SECRET).update(`${t}.${body}`).digest("hex")}`;
    // A bad signature: its first hex digit changed (to a digit it is not, or it would be the good one).
    const bad = good.replace(/v1=(.)/, (_m, c: string) => `v1=${c === "0" ? "1" : "0"}`);
    assert.equal((await post(bad, "d-1")).status, 401);
    const res = await post(good, "d-1");
    assert.equal(res.status, 202);
    const { run: runId } = (await res.json()) as { run: string };
    const again = await post(good, "d-1");
    assert.equal(again.status, 200);
    assert.equal(((await again.json()) as { duplicate: boolean }).duplicate, true);
    const run = await client.runs.wait(runId);
    assert.equal(run.startedBy, "oncall");
    assert.equal(run.prompt, "Investigate checkout 500s");
    assert.deepEqual(run.trigger, { name: "alert", source: "hook", deliveryId: "d-1" });
    assert.equal(run.state, "done");
    assert.equal((await client.runs.list({ environment: "agents" })).filter((r) => r.trigger?.deliveryId === "d-1").length, 1);
  });

  void it("refuses what cannot work, saying why", async () => {
    await assert.rejects(client.runs.start({ environment: "agents", agent: "codex", prompt: "x" }), /does not install agent "codex"/);
    await assert.rejects(client.runs.start({ environment: "agents", prompt: "   " }), /prompt is empty/);
    await client.environments.apply("plain.yml", "name: plain\n");
    await assert.rejects(client.runs.start({ environment: "plain", prompt: "x" }), /has no agent: add e\.g\. "agent: claude-code"/);
    const all = await client.runs.list();
    assert.ok(all.every(terminal) || all.some((r) => r.state === "idle"));
  });
});
