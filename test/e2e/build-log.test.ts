/**
 * Build logs: every version keeps its build's log (steps, output, exit codes), failed builds too,
 * bounded (a huge output keeps its head and tail); served as text to `read`, and by `paddock env log`.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { PaddockClient } from "../../src/client/index.ts";
import { cli, testServer } from "../helpers/server.ts";

void describe("build logs", () => {
  let client: PaddockClient;
  let url: string;
  let cleanup: (() => Promise<void>) | undefined;
  before(async () => {
    const t = await testServer();
    ({ client, cleanup } = t);
    url = t.server.url;
  });
  after(async () => cleanup?.());

  void it("keeps each step's command, output and exit code, for a good build and a failed one", async () => {
    await client.environments.apply("runtime.yml", "name: logs\ninstall:\n  - echo hello-from-step-one\n  - echo second >&2\n");
    const log = await client.environments.buildLog("logs", 1);
    assert.match(log, /== step 1\/2: echo hello-from-step-one\nhello-from-step-one\n-- exit 0 in \d+ ms\n/);
    assert.match(log, /== step 2\/2: echo second >&2\nsecond\n-- exit 0/);
    assert.match(log, /== done: template [0-9a-f]+/);
    await assert.rejects(client.environments.apply("runtime.yml", "name: logs\ninstall:\n  - echo hello-from-step-one\n  - echo about to fail; exit 3\n"));
    const failed = await client.environments.buildLog("logs", 2);
    assert.match(failed, /== step 1\/2: echo hello-from-step-one \(cached\)/);
    assert.match(failed, /about to fail\n-- exit 3/);
    assert.match(failed, /== failed: install step 2 .* failed with exit code 3/);
    const r = await cli(url, ["env", "log", "logs"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, failed, "the newest version by default");
    assert.equal((await cli(url, ["env", "log", "logs", "v1"])).stdout, log);
    await assert.rejects(client.environments.buildLog("logs", 9), /no build log for logs version 9/);
  });

  void it("a huge output keeps the log's head and tail, and says what was left out", async () => {
    await client.environments.apply("big.yml", "name: big\ninstall:\n  - head -c 2000000 /dev/zero | tr '\\\\0' 'x' | fold -w 100; echo THE-END\n");
    const log = await client.environments.buildLog("big", 1);
    assert.ok(log.length < 300 * 1024, `${log.length} characters`);
    assert.match(log, /^== big version 1/);
    assert.match(log, /… \d+ characters of output left out …/);
    assert.match(log, /THE-END\n-- exit 0/);
  });
});
