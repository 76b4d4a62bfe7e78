/**
 * Garbage collection of layers (docs/snapshots.md): an old version's template layers stay while a
 * live session or a snapshot uses them and go once nothing does; the current version's and the
 * newest version's build chain always stay; `paddock gc` says what it removed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";

const file = (steps: string[]) => `name: collect\ninstall:\n${steps.map((s) => `  - ${s}\n`).join("")}`;

void describe("garbage collection of layers", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  const committed = async () => (await server.cp.layers.list()).committed;
  const layersOf = async (version: number) => {
    const v = (await client.environments.history("collect")).find((x) => x.version === version);
    const t = v?.templateId ? await server.cp.store.getTemplate(v.templateId) : null;
    return t?.layers ?? [];
  };

  before(async () => {
    ({ server, client, cleanup } = await testServer());
  });
  after(async () => cleanup?.());

  void it("an old version's layers stay while a session or snapshot uses them, then go", async () => {
    await client.environments.apply("runtime.yml", file(["echo shared > /workspace/shared", "echo one > /workspace/v"]));
    const [shared, one] = await layersOf(1);
    assert.ok(shared && one);
    const s = (await client.sessions.start("collect")).id;
    const snap = await client.snapshots.create(s, { name: "keep-v1" });
    await client.environments.apply("runtime.yml", file(["echo shared > /workspace/shared", "echo two > /workspace/v"]));
    const [shared2, two] = await layersOf(2);
    assert.equal(shared2, shared, "the first step is shared (same key)");
    await client.gc();
    for (const l of [shared, one, two!]) assert.ok((await committed()).includes(l), `layer ${l} kept`);

    await client.sessions.stop(s);
    await client.gc();
    assert.ok((await committed()).includes(one), "the snapshot keeps v1's layers");
    // A session from the snapshot runs v1, on v1's layers.
    const from = await client.sessions.start(null, { from: "keep-v1" });
    assert.equal(from.version, 1);
    assert.equal((await client.sessions.run(from.id, { argv: ["cat", "/workspace/v"] })).stdout, "one\n");
    await client.sessions.stop(from.id);

    await client.snapshots.remove("keep-v1");
    await until(async () => !(await committed()).includes(one), 10_000, "v1's own layer to be collected after the snapshot went");
    const r = await cli(server.url, ["gc", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!(await committed()).includes(snap.layerId));
    for (const l of [shared, two!]) assert.ok((await committed()).includes(l), `the current version's layer ${l} stays`);
    assert.equal(await server.cp.store.getLayer(one), null, "its store row went too");
    // The removal was audited as the system's.
    const audit = await client.audit.list({ actor: "system", limit: 5000 });
    assert.ok(audit.some((x) => x.action === "gc" && JSON.stringify(x.detail).includes(one)));
    // A later build that needs the layer again simply builds it.
    await client.environments.apply("runtime.yml", file(["echo shared > /workspace/shared", "echo one > /workspace/v"]));
    assert.ok((await committed()).includes(one));
  });

  void it("the newest version's built steps stay when its build failed, so the next attempt reuses them", async () => {
    const apply = client.environments.apply("runtime.yml", file(["echo shared > /workspace/shared", "echo three > /workspace/w", "exit 3"])).catch((e: unknown) => e);
    assert.ok((await apply) instanceof Error);
    const history = await client.environments.history("collect");
    assert.equal(history[0]?.buildStatus, "failed");
    await client.gc();
    const events: string[] = [];
    await client.environments
      .apply("runtime.yml", file(["echo shared > /workspace/shared", "echo three > /workspace/w", "echo fixed"]), { onEvent: (e) => events.push(`${String(e.type)}:${String(e.status ?? "")}`) });
    assert.deepEqual(events.filter((e) => e.startsWith("step:")), ["step:cached", "step:cached", "step:running"]);
    assert.equal((await cli(server.url, ["gc"], { token: "" })).code, 77, "admin only");
  });
});
