import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { testServer } from "../helpers/server.ts";
import type { PaddockClient } from "../../src/client/index.ts";

/** The fallback layer store runs the same sessions as btrfs (on a loop-mounted ext4 image here). */
void describe("sessions on the directory layer store", () => {
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  before(async () => {
    const t = await testServer({ layerStore: "directory" });
    ({ client, cleanup } = t);
    assert.equal(t.server.cp.layers.kind, "directory");
  });
  after(async () => cleanup());

  void it("builds layers, starts sessions on them and keeps sessions apart", async () => {
    await client.environments.apply("paddock.yml", "name: dirs\ninstall:\n  - echo from-layer > /workspace/f\n  - echo two >> /workspace/f\n");
    const a = await client.sessions.start("dirs");
    const b = await client.sessions.start("dirs");
    assert.equal((await client.sessions.run(a.id, { argv: ["cat", "/workspace/f"] })).stdout, "from-layer\ntwo\n");
    await client.sessions.run(a.id, { argv: ["sh", "-c", "echo mine > /workspace/f"] });
    assert.equal((await client.sessions.run(b.id, { argv: ["cat", "/workspace/f"] })).stdout, "from-layer\ntwo\n");
    await client.sessions.stop(a.id);
    await client.sessions.stop(b.id);
    assert.deepEqual((await client.doctor()).leaks, []);
  });
});
