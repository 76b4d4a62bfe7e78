/**
 * Warm pools end to end (docs/pools.md), with real sandboxes and the real gateway: the file's
 * `pool:` and `paddock pool set` fill a pool; a member is unreachable until claimed; a claimed
 * member runs for its principal with its session's guardrails and secrets only; a burst larger
 * than the pool is served (claims first, cold starts after); the pool refills one member at a
 * time; a new version drains it; emptying it leaves nothing behind.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PaddockClient } from "../../src/client/index.ts";
import type { PoolInfo } from "../../src/client/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { detectCgroupLayout, installationScope, listCgroupIds } from "../../src/providers/local/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { startUpstream, UPSTREAM_NAMES, type Upstream } from "../helpers/upstream.ts";
import { until } from "../helpers/wait.ts";

const UPSTREAM_IP = "127.0.55.1";
const STRIPE = "sk_live_51PoolSecretValue0123456789abcdef";

const env = (version: string, pool = "pool:\n  min: 2\n") => `name: pooled
secrets: [STRIPE_API_KEY]
guardrails:
  commands:
    deny: [rm]
  network:
    allow: [api.stripe.com]
    deny: ["*"]
install:
  - echo ${version} > /workspace/version.txt
rbac:
  engineering: [read, write]
${pool}`;

void describe("warm pools", () => {
  let server: RunningServer;
  let admin: PaddockClient;
  let eng: PaddockClient;
  let engToken: string;
  let home: string;
  let cleanup: () => Promise<void>;
  let up: Upstream;
  const lastTo = (host: string) => [...up.received].reverse().find((r) => r.host.split(":")[0] === host);
  const members = async () => server.cp.store.listPoolMembers({ environment: "pooled" });
  const pool = async (): Promise<PoolInfo | undefined> => (await admin.pools.list()).find((p) => p.environment === "pooled");
  const settled = async (want: number, version?: number) =>
    until(async () => {
      const p = await pool();
      return p && p.ready === want && p.starting === 0 && p.stale === 0 && (version === undefined || p.version === version) ? p : null;
    }, 60_000, `${want} ready members${version ? ` of v${version}` : ""}`);

  before(async () => {
    up = await startUpstream(UPSTREAM_IP, { gitToken: "unused-token-0123456789" });
    const t = await testServer({
      gateway: { upstream: { extraCaPem: [up.caPem], hosts: Object.fromEntries(UPSTREAM_NAMES.map((n) => [n, [UPSTREAM_IP]])), trustedAddresses: [UPSTREAM_IP] } },
    });
    ({ server, client: admin, home, cleanup } = t);
    await admin.secrets.set("STRIPE_API_KEY", STRIPE);
    engToken = (await admin.principals.create({ name: "eng", role: "engineering" })).token;
    eng = new PaddockClient({ url: server.url, token: engToken });
    await admin.environments.apply("runtime.yml", env("v1"));
  });
  after(async () => {
    // Members are sandboxes like sessions: empty every pool before the server goes.
    if (server) {
      for (const e of await server.cp.store.listEnvironments()) await server.cp.pools.set(e.name, { min: 0 }, "admin").catch(() => undefined);
      await server.cp.pools.drain().catch(() => undefined);
      await until(async () => (await server.cp.store.listPoolMembers()).length === 0, 30_000, "every pool member to go").catch(() => undefined);
    }
    await cleanup?.();
    await up?.close();
  });

  void it("the file's pool: fills the pool; pool list shows it", async () => {
    const p = await settled(2, 1);
    assert.equal(p.min, 2);
    assert.equal(p.max, 2);
    assert.equal(p.source, "file");
    // What the two idle members cost: their memory cgroups' charge, more than nothing and far below their limit.
    assert.ok(p.memoryBytes !== null && p.memoryBytes > 0 && p.memoryBytes < 2 * 256 * 2 ** 20, `memory ${p.memoryBytes}`);
    const r = await cli(server.url, ["pool", "list"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ENVIRONMENT\s+VERSION\s+MIN\s+MAX\s+READY\s+STARTING\s+MEMORY\s+SET BY\n/);
    assert.match(r.stdout, /^pooled\s+v1\s+2\s+2\s+2\s+0\s+\d[\d.]* [KMG]iB\s+file$/m);
    assert.equal((await members()).every((m) => m.state === "ready" && m.version === 1), true);
  });

  void it("an unclaimed member is unreachable: no route, no secret, paddock.internal refuses it", async () => {
    await settled(2, 1);
    const [m] = await members();
    assert.ok(m);
    for (const call of [() => eng.sessions.get(m.id), () => eng.sessions.run(m.id, { argv: ["true"] }), () => eng.files.read(m.id, "/workspace/version.txt"), () => admin.sessions.stop(m.id), () => admin.snapshots.create(m.id)]) {
      await assert.rejects(call(), (err: unknown) => err instanceof PaddockError && err.code === "not_found");
    }
    assert.ok(!(await admin.sessions.list({ all: true })).some((s) => s.id === m.id));
    // From inside (the provider directly, as nothing of Paddock's API can reach it).
    const provider = server.cp.providers.get("local")!;
    const run = async (script: string) => {
      let out = "";
      const r = await provider.exec(m.id, { argv: ["sh", "-c", script], onStdout: (b) => (out += b.toString()), onStderr: (b) => (out += b.toString()) });
      return { code: r.exitCode, out };
    };
    assert.deepEqual(await run("printenv STRIPE_API_KEY"), { code: 1, out: "" });
    assert.match((await run("curl -sS -w ' %{http_code}' http://paddock.internal/v1/whoami")).out, /no running session[\s\S]* 403$/);
    await run('curl -sS https://api.stripe.com/v1/member -H "Authorization: Bearer paddock-ph-00000000000000000000000000000000"');
    assert.equal(lastTo("api.stripe.com")?.url, "/v1/member");
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, "Bearer paddock-ph-00000000000000000000000000000000", "a member swaps nothing");
  });

  void it("a claimed member runs for its principal, with its session's guardrails and secrets", async () => {
    await settled(2, 1);
    const before = new Set((await members()).map((m) => m.id));
    const s = await eng.sessions.start("pooled");
    assert.ok(before.has(s.id), "the session is a pool member, claimed");
    assert.equal(s.state, "running");
    assert.equal(s.startedBy, "eng");
    assert.equal(await server.cp.store.getPoolMember(s.id), null, "no longer in the pool");
    const sh = (script: string) => eng.sessions.run(s.id, { argv: ["sh", "-c", script] });
    const ph = (await sh("printf %s $STRIPE_API_KEY")).stdout;
    assert.match(ph, /^paddock-ph-[0-9a-f]{32}$/);
    const curl = await sh('curl -sS https://api.stripe.com/v1/claimed -H "Authorization: Bearer $STRIPE_API_KEY"');
    assert.equal(curl.exitCode, 0, curl.stderr);
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${STRIPE}`);
    const denied = await eng.sessions.run(s.id, { argv: ["rm", "/workspace/version.txt"] });
    assert.equal(denied.exitCode, 126);
    assert.match(denied.stderr, /'rm' denied by guardrails\.commands\.deny/);
    const inner = await sh("echo 'rm /workspace/version.txt' > /tmp/x.sh; sh /tmp/x.sh; echo rc=$?");
    assert.match(inner.stderr, /paddock: 'rm' denied by guardrails\.commands\.deny/, "the in-sandbox exec guard too");
    assert.equal(inner.stdout, "rc=126\n");
    const who = await sh("curl -sS http://paddock.internal/v1/whoami");
    assert.match(who.stdout, /"eng"/);
    assert.equal((await sh("cat /workspace/version.txt; echo $PADDOCK_SESSION")).stdout, `v1\n${s.id}\n`);
    const audit = await admin.audit.list({ session: s.id, limit: 5000 });
    assert.ok(audit.some((r) => r.action === "exec" && r.actor === "eng"));
    // The pool refills behind the claim, with new members.
    await settled(2, 1);
    assert.ok((await members()).every((m) => m.id !== s.id));
    await eng.sessions.remove(s.id);
  });

  void it("a burst larger than the pool is served: claims first, cold starts after, no errors; refills one at a time", async () => {
    await settled(2, 1);
    const before = new Set((await members()).map((m) => m.id));
    let maxStarting = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxStarting = Math.max(maxStarting, (await members()).filter((m) => m.state === "starting").length);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const burst = await Promise.all(Array.from({ length: 6 }, () => eng.sessions.start("pooled")));
    assert.equal(burst.length, 6);
    assert.ok(burst.every((s) => s.state === "running"));
    assert.equal(burst.filter((s) => before.has(s.id)).length, 2, "both ready members were claimed");
    for (const s of burst) assert.equal((await eng.sessions.run(s.id, { argv: ["cat", "/workspace/version.txt"] })).stdout, "v1\n");
    await settled(2, 1);
    sampling = false;
    await sampler;
    assert.ok(maxStarting <= 1, `refills run one at a time (saw ${maxStarting} starting)`);
    await Promise.all(burst.map((s) => eng.sessions.remove(s.id)));
  });

  void it("a new current version drains the pool's idle members and replaces them", async () => {
    await settled(2, 1);
    const old = (await members()).map((m) => m.id);
    await admin.environments.apply("runtime.yml", env("v2"));
    await settled(2, 2);
    const running = await server.cp.providers.get("local")!.list();
    for (const id of old) assert.ok(!running.includes(id), `old member ${id} was stopped`);
    const s = await eng.sessions.start("pooled");
    assert.equal(s.version, 2);
    assert.equal((await eng.sessions.run(s.id, { argv: ["cat", "/workspace/version.txt"] })).stdout, "v2\n");
    await eng.sessions.remove(s.id);
  });

  void it("pool set overrides the file (admin only), reset goes back to it", async () => {
    const denied = await cli(server.url, ["pool", "set", "pooled", "--min", "5"], { token: engToken });
    assert.equal(denied.code, 77);
    // max defaults to min: the pool shrinks to one at once (a larger max would keep members
    // for the claims of the last minute).
    const set = await cli(server.url, ["pool", "set", "pooled", "--min", "1", "--json"]);
    assert.equal(set.code, 0, set.stderr);
    assert.equal((JSON.parse(set.stdout) as PoolInfo).source, "set");
    const p = await settled(1);
    assert.equal(p.max, 1);
    const grow = await cli(server.url, ["pool", "set", "pooled", "--min", "1", "--max", "3", "--json"]);
    assert.equal(grow.code, 0, grow.stderr);
    assert.equal((JSON.parse(grow.stdout) as PoolInfo).max, 3);
    const bad = await cli(server.url, ["pool", "set", "pooled", "--min", "3", "--max", "1"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /min ≤ max/);
    assert.equal((await cli(server.url, ["pool", "set", "nope", "--min", "1"])).code, 3);
    const reset = await cli(server.url, ["pool", "reset", "pooled", "--json"]);
    assert.equal(reset.code, 0, reset.stderr);
    assert.equal((JSON.parse(reset.stdout) as PoolInfo).source, "file");
    await settled(2);
    const audit = await admin.audit.list({ environment: "pooled", limit: 5000 });
    assert.ok(audit.some((r) => r.action === "pool.set" && r.actor === "admin" && r.detail.min === 1 && r.detail.max === 3));
    assert.ok(audit.some((r) => r.action === "pool.reset"));
  });

  void it("emptying the pool stops every member and leaves nothing behind", async () => {
    await settled(2);
    const ids = (await members()).map((m) => m.id);
    const r = await cli(server.url, ["pool", "set", "pooled", "--min", "0"]);
    assert.equal(r.code, 0, r.stderr);
    await until(async () => (await members()).length === 0, 30_000, "the pool to empty");
    await server.cp.pools.idle();
    await until(async () => (await server.cp.layers.list()).active.length === 0, 10_000, "every writable layer to go").catch(async (err: unknown) => {
      throw new Error(`${String(err)}: ${JSON.stringify(await server.cp.layers.list())} sessions ${JSON.stringify((await server.cp.sessions.list()).map((x) => x.id))}`);
    });
    const layout = await detectCgroupLayout(installationScope(home));
    for (const id of ids) {
      assert.ok(!(await listCgroupIds(layout)).includes(id), `cgroup of ${id}`);
      assert.ok(!(await server.cp.network.list()).includes(id), `network of ${id}`);
    }
    assert.deepEqual((await admin.doctor()).leaks, []);
    assert.deepEqual(await admin.pools.list().then((l) => l.filter((x) => x.environment === "pooled" && (x.ready || x.starting))), []);
  });
});
