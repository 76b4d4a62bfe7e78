/**
 * Failover end to end with a real server and real local sandboxes, against a test provider
 * driver (test/control/routing-fixtures.ts) whose create fails: the session lands on the next
 * provider (local), the skip is on the session (API and `paddock session show`) and in the
 * audit log, the provider's credential (quoted by its error) shows nowhere, the breaker opens
 * after three failures, a selfHostedOnly environment never tries a third-party provider, and a
 * session's measured cost is recorded when it ends.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { PROXY_PASSWORD, testDriver } from "../control/routing-fixtures.ts";

const KEY = "e2b_fo_key_0123456789abcdef";

void describe("failover against a fake (test-driver) provider", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  const calls = { creates: 0 };
  const steadyCalls = { creates: 0 };

  before(async () => {
    ({ server, client, cleanup } = await testServer({ providerDrivers: [testDriver("e2b", calls), testDriver("k8s", steadyCalls)] }));
    await client.providers.add({ name: "flaky", kind: "e2b", settings: { failCreate: true }, credentials: { apiKey: KEY } });
    await client.providers.add({ name: "steady", kind: "k8s", settings: { selfHosted: true }, routing: { pricePerVcpuHour: 360, pricePerGibHour: 0 }, credentials: { apiKey: "k8s-key-value" } });
    await client.environments.apply("fo.yml", "name: fo\nproviders: [flaky, local]\ncompute:\n  cpu: 1\n  memory: 256MiB\n");
    await client.environments.apply("strict.yml", "name: strict\nproviders: [flaky, local]\ncompliance:\n  selfHostedOnly: true\n");
    await client.environments.apply("steady.yml", "name: steady-env\nproviders: [steady]\ncompute:\n  cpu: 1\n  memory: 256MiB\n");
  });
  after(async () => cleanup());

  void it("a failed create on the first provider lands the session on the next, with the skip recorded and audited", async () => {
    const s = await client.sessions.start("fo");
    assert.equal(s.provider, "local");
    assert.equal(calls.creates, 1);
    const r = await client.sessions.exec(s.id, { argv: ["true"] });
    assert.equal(r.exitCode, 0, "the session works on local");
    const shown = await client.sessions.get(s.id);
    assert.equal(shown.route?.provider, "local");
    assert.equal(shown.route?.skips.length, 1);
    assert.equal(shown.route?.skips[0]?.provider, "flaky");
    assert.match(shown.route?.skips[0]?.reason ?? "", /^create failed: upstream refused the sandbox \(key \[redacted\] over quota\)$/);
    assert.match(shown.route?.reason ?? "", /failover/);
    const audit = await client.audit.list({ session: s.id });
    const failover = audit.find((a) => a.action === "session.failover");
    assert.ok(failover, "the skip is audited");
    assert.equal(failover.target, "flaky");
    const cliShow = await cli(server.url, ["session", "show", s.id]);
    assert.equal(cliShow.code, 0, cliShow.stderr);
    assert.match(cliShow.stdout, /skipped: +flaky at .*create failed/);
    const everything = JSON.stringify([shown, audit, await client.providers.list(), cliShow.stdout]);
    assert.ok(!everything.includes(KEY), "the provider's credential shows nowhere");
    await client.sessions.stop(s.id);
    const ended = await client.sessions.get(s.id);
    assert.equal(typeof ended.route?.runtimeMs, "number");
    assert.equal(ended.route?.measuredUsd, 0, "local costs nothing by default");
  });

  void it("after three failures in a row the breaker opens: the provider is skipped without being tried, and the skip is still recorded", async () => {
    for (let i = 0; i < 2; i++) await client.sessions.stop((await client.sessions.start("fo")).id);
    assert.equal(calls.creates, 3);
    const health = (await client.providers.health()).find((h) => h.name === "flaky");
    assert.equal(health?.breaker, "open");
    assert.equal(health?.failures, 3);
    const s = await client.sessions.start("fo");
    assert.equal(calls.creates, 3, "an open breaker is not tried");
    assert.equal(s.provider, "local");
    const shown = await client.sessions.get(s.id);
    assert.deepEqual(shown.route?.skips.map((k) => [k.provider, k.reason]), [["flaky", "circuit breaker open"]]);
    const explained = await cli(server.url, ["route", "explain", "fo"]);
    assert.equal(explained.code, 0, explained.stderr);
    assert.match(explained.stdout, /flaky: skipped: circuit breaker open/);
    await client.sessions.stop(s.id);
  });

  void it("a selfHostedOnly environment never tries the third-party provider", async () => {
    const before = calls.creates;
    const s = await client.sessions.start("strict");
    assert.equal(s.provider, "local");
    assert.equal(calls.creates, before);
    const e = await client.explainRoute("strict");
    const flaky = e.decision.candidates.find((c) => c.provider === "flaky");
    assert.equal(flaky?.eligible, false);
    assert.match(flaky?.reason ?? "", /compliance\.selfHostedOnly/);
    await client.sessions.stop(s.id);
  });

  void it("records the estimate at start and the measured runtime cost at the end", async () => {
    const s = await client.sessions.start("steady-env");
    assert.equal(s.provider, "steady");
    const started = await client.sessions.get(s.id);
    // 1 vCPU at $360/h over compute.timeout's default hour.
    assert.equal(started.route?.estimateUsd, 360);
    assert.equal(started.route?.measuredUsd, null);
    await client.sessions.stop(s.id);
    const ended = await client.sessions.get(s.id);
    const ms = ended.route?.runtimeMs ?? -1;
    assert.ok(ms >= 0);
    // $0.10 per vCPU-second: the measured cost is a tenth of the runtime in seconds.
    assert.ok(Math.abs((ended.route?.measuredUsd ?? -1) - ms / 10_000) < 0.001, `${ended.route?.measuredUsd} for ${ms} ms`);
  });

  void it("a provider error quoting a proxy URL with its password: the password is in no endReason, skip, audit record or answer", async () => {
    await client.providers.add({ name: "leaky", kind: "e2b", settings: { failWithProxyUrl: true }, credentials: { apiKey: "leaky-key-value" } });
    await client.environments.apply("leak1.yml", "name: leak-over\nproviders: [leaky, local]\ncompute:\n  cpu: 1\n  memory: 256MiB\n");
    await client.environments.apply("leak2.yml", "name: leak-only\nproviders: [leaky]\n");
    const over = await client.sessions.start("leak-over");
    assert.equal(over.provider, "local");
    const shown = await client.sessions.get(over.id);
    assert.match(shown.route?.skips[0]?.reason ?? "", /^create failed: sandbox could not reach its proxy HTTPS_PROXY=https:\/\/\[redacted\]@gw\.example\.net:8443 \(timed out\)$/);
    await client.sessions.stop(over.id);
    let answered = "";
    await assert.rejects(client.sessions.start("leak-only"), (err: Error) => ((answered = err.message), /https:\/\/\[redacted\]@gw\.example\.net:8443/.test(err.message)));
    const failed = (await client.sessions.list({ all: true, environment: "leak-only" }))[0];
    assert.ok(failed, "the failed session is listed");
    assert.match((await client.sessions.get(failed.id)).endReason ?? "", /^failed to start: .*\[redacted\]@gw\.example\.net/);
    const everything = JSON.stringify([shown, answered, await client.sessions.get(failed.id), await client.audit.list({ session: over.id }), await client.audit.list({ session: failed.id }), await client.providers.health()]);
    assert.ok(!everything.includes(PROXY_PASSWORD), "the proxy password shows nowhere");
  });

  void it("an environment naming only unconfigured providers gets the clear error", async () => {
    await client.environments.apply("ghost.yml", "name: ghost\nproviders: [nowhere]\n");
    await assert.rejects(client.sessions.start("ghost"), /asks for provider nowhere, but this installation has only .*"local".* configured.*paddock provider add/);
  });
});
