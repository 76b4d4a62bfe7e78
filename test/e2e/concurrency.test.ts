import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import type { PaddockClient } from "../../src/client/index.ts";
import { testServer } from "../helpers/server.ts";

/**
 * What is created once and shared (the scaffold layer, build layers, network namespaces beyond the
 * pool, per-session CAs) is created once under concurrency, and everyone else waits for it. Run on
 * a new installation, where nothing shared exists yet: the first sessions all need the scaffold at
 * the same moment (issue: 40 concurrent starts gave 2 × 500 ENOTEMPTY on the scaffold's rename).
 */
const SESSIONS = 24;

void describe("concurrency on a new installation", () => {
  let client: PaddockClient;
  let cleanup: () => Promise<void>;

  before(async () => {
    ({ client, cleanup } = await testServer());
  });
  after(async () => {
    await cleanup?.();
  });

  void it(`${SESSIONS} session starts at once, before any layer exists: every one succeeds and works`, async () => {
    // No install steps: applying builds nothing, so the scaffold is first made by these starts.
    await client.environments.apply("paddock.yml", "name: crowd\ncompute:\n  memory: 64MiB\n  pids: 32\n");
    const results = await Promise.allSettled(Array.from({ length: SESSIONS }, () => client.sessions.start("crowd")));
    const failures = results.flatMap((r) => (r.status === "rejected" ? [String(r.reason)] : []));
    assert.deepEqual(failures, [], `${failures.length} of ${SESSIONS} starts failed`);
    const ids = results.flatMap((r) => (r.status === "fulfilled" ? [r.value.id] : []));
    assert.equal(new Set(ids).size, SESSIONS);
    const outputs = await Promise.all(ids.map((id) => client.sessions.run(id, { argv: ["sh", "-c", "echo $PADDOCK_SESSION; id -un"] })));
    assert.deepEqual(
      outputs.map((o) => o.stdout),
      ids.map((id) => `${id}\npaddock\n`),
    );
    await Promise.all(ids.map((id) => client.sessions.stop(id)));
  });

  void it("three environments sharing install steps build at once: every build succeeds and they share the layers", async () => {
    const file = (name: string, last: string) =>
      `name: ${name}\ninstall:\n  - echo shared-1 >> /workspace/steps.log\n  - echo shared-2 >> /workspace/steps.log\n  - echo ${last} >> /workspace/steps.log\n`;
    const applied = await Promise.allSettled(
      ["one", "two", "three"].map((name) =>
        client.environments.apply("paddock.yml", file(name, `own-${name}`)),
      ),
    );
    const failures = applied.flatMap((r) => (r.status === "rejected" ? [String(r.reason)] : []));
    assert.deepEqual(failures, []);
    for (const name of ["one", "two", "three"]) {
      const id = (await client.sessions.start(name)).id;
      const log = await client.sessions.run(id, { argv: ["cat", "/workspace/steps.log"] });
      assert.equal(log.stdout, `shared-1\nshared-2\nown-${name}\n`);
      await client.sessions.stop(id);
    }
    const templates = await Promise.all(["one", "two", "three"].map(async (n) => (await client.environments.get(n)).template?.layers ?? []));
    assert.equal(new Set(templates.map((l) => l.slice(0, 2).join())).size, 1, "the shared steps are one pair of layers");
  });
});
