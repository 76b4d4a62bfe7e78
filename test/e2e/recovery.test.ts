import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { crashableServer, releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";
import { detectCgroupLayout, installationScope, listCgroupIds, sandboxCgroups } from "../../src/providers/local/index.ts";
import type { PaddockClient } from "../../src/client/index.ts";

/** Invariant 9: kill -9 the control plane at any point; restart finds or reconciles everything. */
void describe("crash recovery with the real server process", () => {
  let home: { path: string; remove: () => Promise<void> };

  // One control plane per data directory at a time: a new one replaces (kills) the previous.
  const { start, kill9 } = crashableServer(() => home.path);
  const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  before(async () => {
    home = await tempDir();
  });
  after(async () => {
    await kill9();
    const s = await start().catch(() => null);
    if (s) {
      for (const x of await s.client.sessions.list()) await s.client.sessions.stop(x.id).catch(() => undefined);
      await kill9();
    }
    await releaseHome(home.path);
    await home.remove();
  });

  void it("a running session survives kill -9 of the server and works after restart, egress included", async () => {
    let s = await start();
    await s.client.secrets.set("STRIPE_API_KEY", "sk_live_recoveryTestValue123456");
    await s.client.environments.apply(
      "paddock.yml",
      "name: crashy\ncompute:\n  timeout: 1h\nsecrets: [STRIPE_API_KEY]\nguardrails:\n  network:\n    allow: [api.stripe.com]\ninstall:\n  - echo layer > /workspace/l.txt\n",
    );
    const session = await s.client.sessions.start("crashy");
    await s.client.sessions.run(session.id, { argv: ["sh", "-c", "echo before-crash > /workspace/state.txt"] });
    const placeholder = (await s.client.sessions.run(session.id, { argv: ["printenv", "STRIPE_API_KEY"] })).stdout;
    await kill9();
    s = await start();
    const again = await s.client.sessions.get(session.id);
    assert.equal(again.state, "running");
    const r = await s.client.sessions.run(session.id, { argv: ["cat", "/workspace/state.txt", "/workspace/l.txt"] });
    assert.equal(r.stdout, "before-crash\nlayer\n");
    // The gateway knows the session again (same placeholders, same CA): a denied host is refused
    // by policy and recorded under this session, over TLS the sandbox still trusts.
    assert.equal((await s.client.sessions.run(session.id, { argv: ["printenv", "STRIPE_API_KEY"] })).stdout, placeholder);
    const denied = await s.client.sessions.run(session.id, { argv: ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://evil.example/"] });
    assert.equal(denied.stdout, "403");
    // The gateway process hands its records over in batches: the refusal is recorded soon, not at once.
    const client = s.client;
    await until(async () => (await client.sessions.egress(session.id)).some((x) => x.host === "evil.example" && x.decision === "denied"), 30_000, "the refusal of evil.example in the session's egress records");
    await s.client.sessions.stop(session.id);
  });

  void it("guardrails and audit survive kill -9: the exec guard keeps denying, a pending approval expires, the chain verifies", async () => {
    let s = await start();
    await s.client.environments.apply("runtime.yml", "name: guarded\ncompute:\n  timeout: 1h\nguardrails:\n  commands:\n    deny: [rm]\n    ask: [tar]\n    askTimeout: 1h\n");
    const session = await s.client.sessions.start("guarded");
    await s.client.files.write(session.id, "/workspace/x", Buffer.from("precious"));
    const waiting = s.client.sessions.run(session.id, { argv: ["tar", "--version"] }).catch((e: unknown) => e);
    await waitFor("the approval request", async () => (await s.client.approvals.list({ state: "pending" })).length === 1);
    const [pending] = await s.client.approvals.list({ state: "pending" });
    await kill9();
    assert.ok((await waiting) instanceof Error, "the waiting request ended with the server");
    s = await start();
    // The sandbox's supervisor outlived the server, and with it the exec guard.
    await s.client.files.write(session.id, "/workspace/go.sh", Buffer.from("rm x\n"));
    const r = await s.client.sessions.run(session.id, { argv: ["bash", "go.sh"] });
    assert.match(r.stderr, /paddock: 'rm' denied by guardrails\.commands\.deny \(runtime\.yml:6\)/);
    assert.equal((await s.client.files.read(session.id, "/workspace/x")).toString(), "precious");
    const expired = await s.client.approvals.get(pending!.id);
    assert.equal(expired.state, "expired");
    assert.match(expired.reason ?? "", /restarted/);
    const records = await s.client.audit.list({ session: session.id, limit: 5000 });
    assert.ok(records.some((x) => x.action === "approval.request") && records.some((x) => x.action === "approval.expire"));
    assert.ok(records.some((x) => x.action === "guard.exec" && x.decision === "denied"));
    const v = await s.client.audit.verify();
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    await s.client.sessions.stop(session.id);
  });

  void it("a session whose sandbox died while the server was down is marked lost and its kernel objects freed", async () => {
    let s: { client: PaddockClient } = await start();
    const session = await s.client.sessions.start("crashy");
    assert.equal((await s.client.sessions.run(session.id, { argv: ["true"] })).exitCode, 0);
    await kill9();
    // Kill the sandbox behind the control plane's back: find its supervisor through its cgroup.
    const layout = await detectCgroupLayout(installationScope(home.path));
    const ids = await listCgroupIds(layout);
    assert.ok(ids.includes(session.id));
    // The supervisor and pid 1 live in the agent's group (commands in the work group die with pid 1).
    for (const dir of sandboxCgroups(layout, session.id).join)
      for (const p of (await readFile(`${dir}/cgroup.procs`, "utf8")).split("\n").filter(Boolean)) process.kill(Number(p), "SIGKILL");
    s = await start();
    const lost = await s.client.sessions.get(session.id);
    assert.equal(lost.state, "lost");
    assert.match(lost.endReason ?? "", /lost/);
    assert.equal((await listCgroupIds(layout)).includes(session.id), false);
    const doctor = await s.client.doctor();
    assert.deepEqual(doctor.leaks, []);
  });

  void it("a build interrupted by kill -9 is marked failed, leaves nothing behind, and the previous template stays current", async () => {
    let s = await start();
    const events: string[] = [];
    const applying = s.client.environments
      .apply("paddock.yml", "name: crashy\ncompute:\n  timeout: 1h\ninstall:\n  - echo layer > /workspace/l.txt\n  - echo started; sleep 60\n", {
        onEvent: (e) => events.push(String(e.type) + ":" + String(e.data ?? e.status ?? "")),
      })
      .catch((e: unknown) => e);
    await waitFor("the slow step to start", async () => events.some((e) => e.startsWith("output:started")));
    await kill9();
    await applying;
    s = await start();
    const history = await s.client.environments.history("crashy");
    assert.equal(history[0]?.buildStatus, "failed");
    assert.match(history[0]?.buildError ?? "", /interrupted/);
    assert.equal((await s.client.environments.get("crashy")).environment.currentVersion, 1);
    assert.deepEqual((await s.client.doctor()).leaks, []);
  });

  void it("compute.timeout ends a session on its own, also across a restart", async () => {
    let s = await start();
    await s.client.environments.apply("short.yml", "name: short\ncompute:\n  timeout: 3s\n");
    const session = await s.client.sessions.start("short");
    await kill9();
    s = await start();
    await waitFor("the timeout", async () => (await s.client.sessions.get(session.id)).state === "stopped");
    assert.equal((await s.client.sessions.get(session.id)).endReason, "compute.timeout reached");
  });
});
