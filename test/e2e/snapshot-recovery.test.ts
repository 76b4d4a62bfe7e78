/**
 * Invariant 9 with snapshots, forks and pools: kill -9 the control plane while they exist; after
 * the restart nothing is lost (snapshots listed, forks running with their files and placeholders,
 * pool members recovered or replaced, sessions start from the snapshot and claim from the pool)
 * and nothing leaks once they are removed.
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import type { PaddockClient } from "../../src/client/index.ts";
import { crashableServer, releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";

const ENV = `name: durable
secrets: [STRIPE_API_KEY]
guardrails:
  network:
    allow: [api.stripe.com]
install:
  - echo layer > /workspace/layer.txt
pool:
  min: 2
`;

/**
 * TLS through the gateway works: the sandbox trusts the CA it was given (the upstream itself is
 * unreachable from here, so the gateway answers 502 after the handshake; an untrusted CA would
 * fail the handshake, and curl would print 000).
 */
async function assertTrustsGateway(c: PaddockClient, id: string): Promise<void> {
  const r = await c.sessions.run(id, { argv: ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "https://api.stripe.com/"] });
  assert.match(r.stdout, /^[1-5]\d\d$/, `TLS to the gateway failed in ${id}: ${r.stderr}`);
}

void describe("kill -9 with snapshots, forks and pools", () => {
  let home: { path: string; remove: () => Promise<void> };

  const { start, kill9 } = crashableServer(() => home.path);
  /** What the store holds, read beside the server (SQLite allows it). */
  const memberIds = () => {
    const db = new Database(join(home.path, "paddock.db"), { readonly: true });
    try {
      return db.prepare<[], string>("SELECT id FROM pool_members WHERE state = 'ready' ORDER BY id").pluck().all();
    } finally {
      db.close();
    }
  };
  const settled = (c: PaddockClient) =>
    until(async () => {
      const p = (await c.pools.list()).find((x) => x.environment === "durable");
      return p && p.ready === 2 && p.starting === 0 && p.stale === 0 ? p : null;
    }, 60_000, "the pool to hold 2 ready members");

  before(async () => {
    home = await tempDir();
  });
  after(async () => {
    await kill9();
    const s = await start().catch(() => null);
    if (s) {
      for (const x of await s.client.sessions.list()) await s.client.sessions.stop(x.id).catch(() => undefined);
      await s.client.pools.set("durable", { min: 0 }).catch(() => undefined);
      await until(async () => memberIds().length === 0, 30_000, "members to go").catch(() => undefined);
      await kill9();
    }
    await releaseHome(home.path);
    await home.remove();
  });

  void it("snapshots, forks and pool members survive kill -9; afterwards nothing leaks", async () => {
    let s = await start();
    await s.client.secrets.set("STRIPE_API_KEY", "sk_live_durableSecretValue0123456789");
    await s.client.environments.apply("runtime.yml", ENV);
    await settled(s.client);
    const source = (await s.client.sessions.start("durable")).id;
    await s.client.sessions.run(source, { argv: ["sh", "-c", 'echo before > /workspace/state.txt; printf %s "$STRIPE_API_KEY" > /workspace/.key'] });
    const placeholder = (await s.client.sessions.run(source, { argv: ["printenv", "STRIPE_API_KEY"] })).stdout.trim();
    const snap = await s.client.snapshots.create(source, { name: "durable-1" });
    const fork = await s.client.sessions.fork(source, { count: 2 });
    assert.equal(fork.sessions.length, 2, JSON.stringify(fork.failures));
    const [f1, f2] = fork.sessions.map((x) => x.id) as [string, string];
    await s.client.sessions.run(f1, { argv: ["sh", "-c", "echo f1 > /workspace/mine.txt"] });
    await settled(s.client);
    const before = memberIds();
    assert.equal(before.length, 2);

    await kill9();
    s = await start();

    const snapshots = await s.client.snapshots.list();
    assert.deepEqual(snapshots.map((x) => x.id).sort(), [snap.id, fork.snapshot.id].sort());
    assert.deepEqual((await s.client.snapshots.get(fork.snapshot.id)).users.sort(), [`session ${f1}`, `session ${f2}`].sort());
    for (const id of [source, f1, f2]) assert.equal((await s.client.sessions.get(id)).state, "running");
    assert.equal((await s.client.sessions.run(f1, { argv: ["cat", "/workspace/state.txt", "/workspace/mine.txt", "/workspace/layer.txt"] })).stdout, "before\nf1\nlayer\n");
    assert.equal((await s.client.sessions.run(f2, { argv: ["sh", "-c", "test -e /workspace/mine.txt; echo $?"] })).stdout, "1\n");
    // The forks are served by the gateway again with the snapshot's placeholders and CA.
    for (const id of [f1, f2]) {
      assert.equal((await s.client.sessions.run(id, { argv: ["printenv", "STRIPE_API_KEY"] })).stdout.trim(), placeholder);
      const denied = await s.client.sessions.run(id, { argv: ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://evil.example/"] });
      assert.equal(denied.stdout, "403", denied.stderr);
      await assertTrustsGateway(s.client, id);
    }
    // The pool: members recovered (or replaced when they had died), ready to be claimed.
    await settled(s.client);
    const after = memberIds();
    assert.ok(after.some((id) => before.includes(id)), `members recovered: before ${before}, after ${after}`);
    const claimed = await s.client.sessions.start("durable");
    assert.ok(after.includes(claimed.id), "a start claims a recovered member");
    const ph = (await s.client.sessions.run(claimed.id, { argv: ["printenv", "STRIPE_API_KEY"] })).stdout.trim();
    assert.match(ph, /^paddock-ph-[0-9a-f]{32}$/);
    assert.notEqual(ph, placeholder);
    await assertTrustsGateway(s.client, claimed.id);
    // A session from the snapshot, after the restart: its files and its source's placeholder.
    const from = (await s.client.sessions.start(null, { from: "durable-1" })).id;
    assert.equal((await s.client.sessions.run(from, { argv: ["sh", "-c", "cat /workspace/state.txt; cat /workspace/.key; echo; printenv STRIPE_API_KEY"] })).stdout, `before\n${placeholder}\n${placeholder}\n`);
    await settled(s.client);
    assert.deepEqual((await s.client.doctor()).leaks, []);

    // Remove everything: nothing of it may be left.
    for (const id of [source, f1, f2, claimed.id, from]) await s.client.sessions.remove(id);
    await s.client.pools.set("durable", { min: 0 });
    await until(async () => memberIds().length === 0 && (await s.client.pools.list()).every((p) => p.starting === 0), 30_000, "the pool to empty");
    await s.client.snapshots.remove("durable-1");
    await until(async () => (await s.client.snapshots.list()).length === 0, 10_000, "the fork snapshot to be collected");
    await s.client.gc();
    assert.deepEqual((await readdir(join(home.path, "layers", "committed"))).filter((n) => n.startsWith("snap-")), []);
    await until(async () => (await readdir(join(home.path, "layers", "active"))).length === 0, 10_000, "every writable layer to go");
    assert.deepEqual((await s.client.doctor()).leaks, []);
  });
});
