/**
 * Warm pools and a provider whose sandboxes reach the gateway as a proxy (network "proxy",
 * against the routing test driver, test/control/routing-fixtures.ts): Paddock keeps no members
 * there (a member gets the local egress hook, which such a provider cannot take), and says why:
 * in `pool list` (API and CLI), by refusing `pool set`, and in the log. A real server, real
 * control plane.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { testDriver } from "../control/routing-fixtures.ts";

void describe("warm pools on a proxy-network provider (fake test-driver provider)", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  const calls = { creates: 0 };
  const logged: string[] = [];

  before(async () => {
    ({ server, client, cleanup } = await testServer({ providerDrivers: [testDriver("k8s", calls)], log: (line) => logged.push(line) }));
    await client.providers.add({ name: "k8s-prod", kind: "k8s", settings: { selfHosted: true, warmPool: true }, credentials: { apiKey: "k8s-key-value" } });
    await client.environments.apply("remote.yml", "name: remote-pooled\nproviders: [k8s-prod]\npool:\n  min: 2\n");
  });
  after(async () => cleanup());

  void it("the file's pool: starts no member on it; pool list says why; pool set is refused saying why", async () => {
    server.cp.pools.schedule();
    await server.cp.pools.idle();
    assert.equal(calls.creates, 0, "no member was started on the proxy provider");
    assert.deepEqual(await server.cp.store.listPoolMembers({ environment: "remote-pooled" }), []);
    const info = (await client.pools.list()).find((p) => p.environment === "remote-pooled");
    assert.ok(info, "the pool is listed");
    assert.equal(info.ready + info.starting, 0);
    assert.match(info.refused ?? "", /provider k8s-prod.*network "proxy".*only on providers .*network "netns".*k8s-prod keeps warm sandboxes of its own/);
    assert.ok(logged.some((l) => /pool of remote-pooled: no members started: .*network "proxy"/.test(l)), "the log says it");
    const listed = await cli(server.url, ["pool", "list"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /remote-pooled: no members: .*network "proxy"/);
    await assert.rejects(client.pools.set("remote-pooled", { min: 1 }), (err: unknown) => err instanceof PaddockError && err.code === "invalid_argument" && /network "proxy".*set its pool to 0/.test(err.message));
    const zero = await client.pools.set("remote-pooled", { min: 0 });
    assert.equal(zero.refused, undefined, "an empty pool has nothing to refuse");
    const s = await client.sessions.start("remote-pooled");
    assert.equal(s.provider, "k8s-prod", "sessions still start there, fresh");
    assert.equal(calls.creates, 1);
    await client.sessions.stop(s.id);
  });
});
