/**
 * Services through the API and the CLI: a session start resolves once its services are ready
 * (fresh, claimed from a pool, or started from a snapshot), and `paddock session services` shows
 * them.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PaddockClient, ServiceStatus } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";

const ENV = `name: svc
services:
  web:
    command: exec python3 -m http.server 8123 --bind 127.0.0.1 --directory /workspace
    ready: { port: 8123 }
install:
  - echo hello > /workspace/index.txt
pool:
  min: 1
`;

void describe("session services through the API", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let cleanup: () => Promise<void>;

  before(async () => {
    ({ server, client, cleanup } = await testServer());
    await client.environments.apply("runtime.yml", ENV);
  });
  after(async () => {
    if (server) {
      await server.cp.pools.set("svc", { min: 0 }, "admin").catch(() => undefined);
      await server.cp.pools.drain().catch(() => undefined);
      await until(async () => (await server.cp.store.listPoolMembers()).length === 0, 30_000, "members to go").catch(() => undefined);
    }
    await cleanup?.();
  });

  const ready = async (id: string) => {
    const r = await client.sessions.run(id, { argv: ["curl", "-sS", "--noproxy", "*", "http://127.0.0.1:8123/index.txt"] });
    assert.equal(r.stdout, "hello\n", `the service answers at once in ${id}: ${r.stderr}`);
  };

  void it("a session's start resolves with its services ready; session services shows them", async () => {
    await until(async () => (await client.pools.list()).find((p) => p.environment === "svc" && p.ready === 1), 60_000, "the pool member to be ready");
    const members = new Set((await server.cp.store.listPoolMembers()).map((m) => m.id));
    const claimed = await client.sessions.start("svc");
    assert.ok(members.has(claimed.id), "claimed from the pool");
    await ready(claimed.id);
    const fresh = await client.sessions.start("svc");
    assert.ok(!members.has(fresh.id), "a cold start (the pool was empty)");
    await ready(fresh.id);
    const list = await client.sessions.services(fresh.id);
    assert.deepEqual(list.map((s) => [s.name, s.state]), [["web", "ready"]]);
    const json = await cli(server.url, ["session", "services", fresh.id, "--json"]);
    assert.equal(json.code, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as ServiceStatus[])[0]?.state, "ready");
    const table = await cli(server.url, ["session", "services", fresh.id]);
    assert.match(table.stdout, /^NAME\s+STATE\s+RESTARTS\s+PID\s+SINCE\s+MESSAGE\nweb\s+ready\s+0\s+\d+\s/);
    const logs = await cli(server.url, ["session", "services", fresh.id, "--logs", "web"]);
    assert.equal(logs.code, 0, logs.stderr);
    // The service's log after the table (it may have grown since `list`: compare its start).
    const shown = logs.stdout.split("\n==> web <==\n")[1] ?? "";
    assert.ok(shown.startsWith("[paddock] starting (as paddock, uid 1000)") && shown.includes("[paddock] ready\n"), logs.stdout);
    const noSuch = await cli(server.url, ["session", "services", fresh.id, "--logs", "db"]);
    assert.deepEqual([noSuch.code, noSuch.stderr.trim()], [3, `paddock: session ${fresh.id} has no service "db"; its services are web`]);
    const missing = await cli(server.url, ["session", "services", "s-0000000000000000"]);
    assert.equal(missing.code, 3);

    // From a snapshot: the services start again on the captured data.
    await client.sessions.run(fresh.id, { argv: ["sh", "-c", "echo changed > /workspace/index.txt"] });
    const fork = await client.sessions.fork(fresh.id, { count: 2 });
    assert.equal(fork.failures.length, 0, JSON.stringify(fork.failures));
    for (const s of fork.sessions) {
      const r = await client.sessions.run(s.id, { argv: ["curl", "-sS", "--noproxy", "*", "http://127.0.0.1:8123/index.txt"] });
      assert.equal(r.stdout, "changed\n");
      assert.equal((await client.sessions.services(s.id))[0]?.state, "ready");
    }
    for (const s of [claimed, fresh, ...fork.sessions]) await client.sessions.remove(s.id);
  });
});
