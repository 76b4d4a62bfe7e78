import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { testServer } from "../helpers/server.ts";
import { startUpstream, UPSTREAM_NAMES, type Upstream } from "../helpers/upstream.ts";
import { until } from "../helpers/wait.ts";

/**
 * The egress gateway runs in a process of its own (issue 9): killing it costs sandboxes a dropped
 * connection, never their identity (placeholders and CA stay), and the control plane brings it
 * back by itself. Upstreams are local fakes of Stripe and friends (see test/helpers/upstream.ts).
 */
const UPSTREAM_IP = "127.0.56.1";
const KEY_V1 = "sk_live_FirstValueOfTheKey0001";
const KEY_V2 = "sk_live_RotatedValueOfTheKey0002";

void describe("gateway process: crash and restart, secret rotation (local fake upstreams)", () => {
  let client: PaddockClient;
  let server: RunningServer;
  let cleanup: () => Promise<void>;
  let up: Upstream;
  let id: string;
  const log: string[] = [];
  const stripe = () =>
    client.sessions.run(id, { argv: ["sh", "-c", 'curl -sS -m 20 https://api.stripe.com/v1/charges -H "Authorization: Bearer $STRIPE_API_KEY"'], timeoutMs: 30_000 });
  const lastAuth = () => [...up.received].reverse().find((r) => r.host.startsWith("api.stripe.com"))?.headers.authorization;

  before(async () => {
    up = await startUpstream(UPSTREAM_IP, { gitToken: "unused" });
    ({ client, server, cleanup } = await testServer({
      log: (line) => log.push(line),
      gateway: { upstream: { extraCaPem: [up.caPem], hosts: Object.fromEntries(UPSTREAM_NAMES.map((n) => [n, [UPSTREAM_IP]])), trustedAddresses: [UPSTREAM_IP] } },
    }));
    await client.secrets.set("STRIPE_API_KEY", KEY_V1);
    await client.environments.apply("paddock.yml", "name: gw\nsecrets: [STRIPE_API_KEY]\nguardrails:\n  network:\n    allow: [api.stripe.com]\n    deny: ['*']\n");
    id = (await client.sessions.start("gw")).id;
  });
  after(async () => {
    await cleanup?.();
    await up?.close();
  });

  void it("runs apart from the control plane", () => {
    const pid = server.cp.gateway.pid;
    assert.ok(pid !== undefined && pid !== process.pid, "the gateway has a process of its own");
  });

  void it("kill -9 of the gateway process: it comes back by itself, the session's placeholder and CA still work", async () => {
    const before = await stripe();
    assert.equal(before.exitCode, 0, before.stderr);
    assert.equal(lastAuth(), `Bearer ${KEY_V1}`);
    const placeholder = (await client.sessions.run(id, { argv: ["sh", "-c", "printf %s $STRIPE_API_KEY"] })).stdout;
    const oldPid = server.cp.gateway.pid;
    assert.ok(oldPid);
    process.kill(oldPid, "SIGKILL");
    await until(async () => log.some((l) => /gateway: process restarted, \d+ session\(s\) served again/.test(l)), 30_000, "the control plane to restart the gateway process");
    assert.ok(log.some((l) => /process exited unexpectedly \(SIGKILL\)/.test(l)), "the cause is logged");
    assert.notEqual(server.cp.gateway.pid, oldPid);
    // Same placeholder in the sandbox, and curl still trusts the (same) session CA.
    assert.equal((await client.sessions.run(id, { argv: ["sh", "-c", "printf %s $STRIPE_API_KEY"] })).stdout, placeholder);
    const after = await stripe();
    assert.equal(after.exitCode, 0, after.stderr);
    assert.equal(lastAuth(), `Bearer ${KEY_V1}`);
    assert.ok(!after.stdout.includes(KEY_V1), "the echoed key is still redacted");
  });

  void it("a rotated secret is used on the very next request (the gateway's cache is told)", async () => {
    await stripe();
    await client.secrets.set("STRIPE_API_KEY", KEY_V2);
    const r = await stripe();
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(lastAuth(), `Bearer ${KEY_V2}`);
    assert.ok(!r.stdout.includes(KEY_V2));
  });

  void it("the API answers while the gateway is down", async () => {
    const pid = server.cp.gateway.pid;
    assert.ok(pid);
    process.kill(pid, "SIGSTOP");
    try {
      // Stopped, not dead: nothing restarts it, and the API must not be waiting on it.
      assert.equal((await client.health()).ok, true);
      assert.equal((await client.sessions.get(id)).state, "running");
    } finally {
      process.kill(pid, "SIGCONT");
    }
  });
});
