/**
 * A hosted agent's run (Devin) through the API, against a local FAKE of Devin's v1 REST API: the
 * control plane drives the vendor's API with the key from the vault; no sandbox is involved, and
 * the key never reaches one.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { PaddockClient } from "../../src/client/index.ts";
import { testServer } from "../helpers/server.ts";
import { startFakeDevin, type FakeDevin } from "../fakes/devin.ts";
import { until } from "../helpers/wait.ts";

const KEY = "apk_user_RealDevinKey0123456789abcdef";

void describe("a hosted agent (Devin) run through the API against a fake Devin API", () => {
  let fake: FakeDevin;
  let client: PaddockClient;
  let cleanup: (() => Promise<void>) | undefined;

  before(async () => {
    fake = await startFakeDevin({ apiKey: KEY });
    const t = await testServer({ hostedAgents: { devin: fake.url } });
    ({ client, cleanup } = t);
    await client.environments.apply("runtime.yml", "name: hosted\nagent: devin\nrbac:\n  agent: [read, write]\n");
  });
  after(async () => {
    await cleanup?.();
    await fake?.close();
  });

  void it("refuses to start without the vendor's key in the vault", async () => {
    await assert.rejects(client.runs.start({ environment: "hosted", prompt: "Fix the flaky test" }), /needs its API key in the vault: paddock secret set DEVIN_API_KEY/);
  });

  void it("drives the vendor's API with the vault's key and records its messages as the transcript", async () => {
    await client.secrets.set("DEVIN_API_KEY", KEY);
    const run = await client.runs.start({ environment: "hosted", prompt: "Fix the flaky test" });
    assert.equal(run.sessionId, null);
    await until(async () => fake.sessions.size === 1, 30_000, "the run to create a Devin session");
    const [id] = [...fake.sessions.keys()];
    fake.devinSays(id!, "Fixed it; opened a PR.");
    fake.setStatus(id!, "finished");
    const done = await client.runs.wait(run.id);
    assert.equal(done.state, "done", JSON.stringify(done));
    assert.equal(done.result?.summary, "Fixed it; opened a PR.");
    assert.equal(done.agentSessionId, id);
    const events = (await client.runs.events(run.id)).map((e) => e.event);
    assert.ok(events.some((e) => e.type === "message" && e.text === "Fixed it; opened a PR."));
    assert.ok(fake.requests.every((r) => r.authorization === `Bearer ${KEY}`), "every call carried the real key");
    assert.ok(!JSON.stringify(events).includes(KEY));
  });
});
