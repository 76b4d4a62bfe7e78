/**
 * Paddock's Devin adapter (a hosted agent driven from the control plane) against a FAKE of Devin's
 * v1 REST API (test/fakes/devin.ts): start, poll for events, follow up, cancel, a bad key.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { devin } from "../../src/agents/devin.ts";
import type { AgentEvent, HostedAgentSession } from "../../src/agents/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { startFakeDevin, type FakeDevin } from "../fakes/devin.ts";
import { until } from "../helpers/wait.ts";

const KEY = "apk_user_RealDevinKeyValue0123456789abcdef";

void describe("Devin hosted agent against a FAKE Devin API", () => {
  let fake: FakeDevin | undefined;
  let session: HostedAgentSession;
  const all: AgentEvent[] = [];
  const pollUntilDone = () =>
    until(async () => {
      const r = await session.poll();
      all.push(...r.events);
      return r.done ? r : null;
    }, 5_000, "Devin to stop working");

  before(async () => {
    fake = await startFakeDevin({ apiKey: KEY });
  });
  after(async () => {
    await fake?.close();
  });

  void it("start creates a session with the prompt; every call carries the Bearer key", async () => {
    session = await devin.start({ prompt: "Fix the flaky test", apiKey: KEY, baseUrl: `${fake!.url}/` });
    assert.match(session.id, /^devin-fake/);
    const created = fake!.requests[0]!;
    assert.deepEqual([created.method, created.path, created.body], ["POST", "/v1/sessions", { prompt: "Fix the flaky test", idempotent: false }]);
    assert.ok(fake!.requests.every((r) => r.authorization === `Bearer ${KEY}`));
  });

  void it("poll maps new messages to events, once each, and status to done", async () => {
    const first = await session.poll();
    assert.equal(first.done, false);
    assert.deepEqual(first.events, [
      { type: "started", agentSessionId: session.id, model: null },
      { type: "message", role: "user", text: "Fix the flaky test" },
    ]);
    assert.deepEqual((await session.poll()).events, [], "nothing new, nothing repeated");
    fake!.devinSays(session.id, "Looking at the test.");
    fake!.devinSays(session.id, "Fixed it; opened a PR.");
    fake!.sessions.get(session.id)!.pull_request = { url: "https://github.com/org/repo/pull/7" };
    fake!.setStatus(session.id, "blocked");
    const r = await pollUntilDone();
    assert.equal(r.done, true);
    assert.deepEqual(r.events, [
      { type: "message", role: "assistant", text: "Looking at the test." },
      { type: "message", role: "assistant", text: "Fixed it; opened a PR." },
      { type: "raw", line: JSON.stringify({ pull_request: { url: "https://github.com/org/repo/pull/7" } }) },
      { type: "result", text: "Fixed it; opened a PR.", isError: false },
    ]);
    assert.deepEqual((await session.poll()).events, [], "the turn ends once");
  });

  void it("a follow-up is sent as a message and starts a new turn", async () => {
    await session.followUp("Also update the changelog.");
    const sent = fake!.requests.at(-1)!;
    assert.deepEqual([sent.method, sent.path, sent.body], ["POST", `/v1/sessions/${session.id}/message`, { message: "Also update the changelog." }]);
    const working = await session.poll();
    assert.equal(working.done, false);
    assert.deepEqual(working.events, [{ type: "message", role: "user", text: "Also update the changelog." }]);
    fake!.devinSays(session.id, "Changelog updated.");
    fake!.setStatus(session.id, "finished");
    const r = await pollUntilDone();
    assert.deepEqual(r.events.at(-1), { type: "result", text: "Changelog updated.", isError: false });
  });

  void it("cancel terminates the session (DELETE); Devin refuses further messages", async () => {
    await session.cancel();
    assert.deepEqual([fake!.requests.at(-1)!.method, fake!.requests.at(-1)!.path], ["DELETE", `/v1/sessions/${session.id}`]);
    assert.equal(fake!.sessions.get(session.id)!.terminated, true);
    await assert.rejects(session.followUp("more?"), (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && /HTTP 400: Session is terminated/.test(e.message));
  });

  void it("an expired session ends its turn as an error", async () => {
    const s = await devin.start({ prompt: "p", apiKey: KEY, baseUrl: fake!.url });
    fake!.setStatus(s.id, "expired");
    const r = await s.poll();
    assert.equal(r.done, true);
    assert.deepEqual(r.events.at(-1), { type: "result", text: "", isError: true });
  });

  void it("a bad key is a clear unauthorized error that does not echo the key", async () => {
    const before = fake!.sessions.size;
    await assert.rejects(devin.start({ prompt: "p", apiKey: "apk_user_wrong", baseUrl: fake!.url }), (e: unknown) => {
      assert.ok(e instanceof PaddockError);
      assert.equal(e.code, "unauthorized");
      assert.match(e.message, /Devin refused the API key \(HTTP 401: Invalid API key \(fake devin\)\): check the DEVIN_API_KEY secret/);
      assert.ok(!e.message.includes("apk_user_wrong"));
      return true;
    });
    assert.equal(fake!.sessions.size, before);
  });

  void it("an unknown session and an unreachable API are clear errors", async () => {
    const s = await devin.start({ prompt: "p", apiKey: KEY, baseUrl: fake!.url });
    fake!.sessions.delete(s.id);
    await assert.rejects(s.poll(), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
    await assert.rejects(devin.start({ prompt: "p", apiKey: KEY, baseUrl: "http://127.0.0.1:1" }), (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && /did not answer POST \/v1\/sessions/.test(e.message));
  });
});
