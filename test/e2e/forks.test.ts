/**
 * `paddock session fork` end to end: N independent sessions from a snapshot of a running one,
 * started at once; a failed start is reported without losing the others; the fork's snapshot goes
 * when its sessions do; and nothing is left behind (layers, cgroups, network namespaces).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import type { SandboxSpec } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { detectCgroupLayout, installationScope, listCgroupIds } from "../../src/providers/local/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";

void describe("session fork", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let home: string;
  let cleanup: () => Promise<void>;
  let source: string;

  before(async () => {
    ({ server, client, home, cleanup } = await testServer());
    await client.environments.apply("runtime.yml", "name: forky\ninstall:\n  - echo layer > /workspace/layer.txt\nguardrails:\n  network:\n    allow: [api.stripe.com]\n");
    source = (await client.sessions.start("forky")).id;
    await client.sessions.run(source, { argv: ["sh", "-c", "echo before-fork > /workspace/state.txt; mkdir -p /home/paddock/.cache && echo warm > /home/paddock/.cache/c"] });
  });
  after(async () => cleanup?.());

  void it("fork --count 12 starts 12 independent sessions from one snapshot of the running session", async () => {
    const r = await cli(server.url, ["session", "fork", source, "--count", "12"]);
    assert.equal(r.code, 0, r.stderr);
    const ids = r.stdout.trim().split("\n");
    assert.equal(ids.length, 12);
    assert.equal(new Set(ids).size, 12);
    const sessions = await Promise.all(ids.map((id) => client.sessions.get(id)));
    const snapshot = sessions[0]?.snapshot ?? "";
    assert.ok(snapshot.startsWith("snap-"));
    for (const s of sessions) {
      assert.equal(s.state, "running");
      assert.equal(s.snapshot, snapshot);
      assert.equal(s.environment, "forky");
    }
    const snap = await client.snapshots.get(snapshot);
    assert.equal(snap.autoRemove, true);
    assert.equal(snap.sourceSession, source);
    assert.equal(snap.users.length, 12);
    // Each fork writes its own id; each sees only its own, the source none.
    await Promise.all(ids.map((id) => client.sessions.run(id, { argv: ["sh", "-c", "echo $PADDOCK_SESSION > /workspace/me; echo changed > /home/paddock/.cache/c"] })));
    for (const id of ids) {
      const out = await client.sessions.run(id, { argv: ["sh", "-c", "cat /workspace/me /workspace/state.txt /workspace/layer.txt /home/paddock/.cache/c"] });
      assert.equal(out.stdout, `${id}\nbefore-fork\nlayer\nchanged\n`);
    }
    const src = await client.sessions.run(source, { argv: ["sh", "-c", "test -e /workspace/me; echo $?; cat /home/paddock/.cache/c"] });
    assert.equal(src.stdout, "1\nwarm\n");
    // Processes too: the source's are not in the forks, and a fork's kill reaches only its own.
    await client.sessions.run(source, { argv: ["sh", "-c", "nohup sleep 300 >/dev/null 2>&1 &"] });
    const ps = await client.sessions.run(ids[0]!, { argv: ["sh", "-c", "ps -eo comm | grep -c '^sleep$' || true"] });
    assert.equal(ps.stdout.trim(), "0");
    const table = await cli(server.url, ["snapshot", "list"]);
    assert.match(table.stdout, new RegExp(`^${snapshot}\\s+\\(fork\\)`, "m"));
    await Promise.all(ids.map((id) => client.sessions.remove(id)));
    await until(async () => (await server.cp.store.getSnapshot(snapshot)) === null, 10_000, "the fork's snapshot to be collected once its sessions ended");
    await until(async () => !(await server.cp.layers.list()).committed.includes(snapshot), 10_000, "its layer to go");
    assert.equal((await client.sessions.get(source)).state, "running");
  });

  void it("a failed start is reported per session; the successes keep running", async () => {
    const provider = server.cp.providers.get("local")!;
    const create = provider.create.bind(provider);
    let n = 0;
    provider.create = async (spec: SandboxSpec, signal?: AbortSignal) => {
      if (spec.from !== undefined && ++n % 3 === 0) throw new PaddockError("unavailable", `injected failure ${n}`);
      return create(spec, signal);
    };
    try {
      const r = await cli(server.url, ["session", "fork", source, "--count", "6", "--json"]);
      assert.equal(r.code, 1, "exit 1 when any start failed");
      const out = JSON.parse(r.stdout) as { snapshot: { id: string }; sessions: { id: string; state: string }[]; failures: { index: number; code: string; message: string }[] };
      assert.equal(out.sessions.length, 4);
      assert.equal(out.failures.length, 2);
      for (const f of out.failures) assert.match(f.message, /injected failure/);
      assert.equal((r.stderr.match(/^paddock: fork \d of 6 failed: injected failure \d+$/gm) ?? []).length, 2, r.stderr);
      for (const s of out.sessions) {
        assert.equal(s.state, "running");
        assert.equal((await client.sessions.run(s.id, { argv: ["cat", "/workspace/state.txt"] })).stdout, "before-fork\n");
      }
      const failed = (await client.sessions.list({ all: true })).filter((s) => s.snapshot === out.snapshot.id && s.state === "failed");
      assert.equal(failed.length, 2);
      for (const s of out.sessions) await client.sessions.remove(s.id);
    } finally {
      provider.create = create;
    }
  });

  void it("fork refuses bad counts and sessions that are not running", async () => {
    const zero = await cli(server.url, ["session", "fork", source, "--count", "0"]);
    assert.equal(zero.code, 2);
    const many = await cli(server.url, ["session", "fork", source, "--count", "101"]);
    assert.equal(many.code, 2);
    const gone = (await client.sessions.start("forky")).id;
    await client.sessions.stop(gone);
    const stopped = await cli(server.url, ["session", "fork", gone, "--count", "2"]);
    assert.equal(stopped.code, 4);
    assert.match(stopped.stderr, /is stopped, not running/);
  });

  void it("after the forks and their snapshots are gone, nothing of them is left: layers, cgroups, network namespaces", async () => {
    await server.cp.gc.collect();
    await until(async () => (await client.snapshots.list()).length === 0, 10_000, "every fork snapshot to be collected");
    const live = new Set((await server.cp.store.listSessions({ states: ["starting", "running"] })).map((s) => s.id));
    assert.deepEqual([...live], [source]);
    const layers = await server.cp.layers.list();
    assert.deepEqual(layers.active, [`sbx-${source}`]);
    assert.deepEqual(layers.committed.filter((c) => c.startsWith("snap-")), []);
    const layout = await detectCgroupLayout(installationScope(home));
    assert.deepEqual(await listCgroupIds(layout), [source]);
    assert.deepEqual(await server.cp.network.list(), [source]);
    assert.deepEqual((await client.doctor()).leaks, []);
  });
});
