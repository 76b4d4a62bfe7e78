/**
 * Fork benchmark (issue #10): `POST /v1/sessions/{id}/fork` with count 50 (snapshot of a running
 * session that has written files, then 50 sessions started from it), total time until the answer
 * (every session running); beside, in the same run, 50 cold starts of the same environment one
 * after another and as many at a time as a fork starts them (twice the cores), and the snapshot alone.
 * Prints one JSON document. Usage: node --import tsx bench/fork.ts [--runs N] [--count N]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../src/server/index.ts";
import { PaddockClient } from "../src/client/index.ts";
import { machine, summarize, time } from "./stats.ts";
import { releaseHome } from "../test/helpers/server.ts";

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1]) || fallback;
const runs = arg("--runs", 5);
const count = arg("--count", 50);
/** As a fork does (src/control/snapshots.ts). */
const atOnce = Math.max(2, 2 * availableParallelism());

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "paddock-bench-"));
  const server = await startServer({ home, port: 0 });
  const client = new PaddockClient({ url: server.url, token: (await readFile(join(home, "admin.token"), "utf8")).trim() });
  const removeAll = async (ids: string[]) => {
    for (let i = 0; i < ids.length; i += 8) await Promise.all(ids.slice(i, i + 8).map((id) => client.sessions.remove(id)));
  };
  try {
    await client.environments.apply(
      "fork.yml",
      "name: fork\nsecrets: [STRIPE_API_KEY]\nguardrails:\n  network:\n    allow: [api.stripe.com]\ninstall:\n  - echo ready > /workspace/ready\n",
    );
    await client.secrets.set("STRIPE_API_KEY", "sk_live_benchmarkSecretValue0123456789");
    for (let i = 0; i < 3; i++) await client.sessions.remove((await client.sessions.start("fork")).id);
    const source = (await client.sessions.start("fork")).id;
    // What an agent leaves behind: 2,000 small files and one of 64 MiB.
    const setup = await client.sessions.run(source, {
      argv: ["sh", "-c", "mkdir -p /workspace/node_modules && cd /workspace/node_modules && for i in $(seq 1 2000); do echo \"module $i\" > m$i.js; done && head -c 67108864 /dev/urandom > /workspace/blob"],
      timeoutMs: 120_000,
    });
    if (setup.exitCode !== 0) throw new Error(`setup failed: ${setup.stderr}`);

    const fork: number[] = [];
    const snapshot: number[] = [];
    const frozen: number[] = [];
    const sequential: number[] = [];
    const parallel: number[] = [];
    let failures = 0;
    for (let r = 0; r < runs; r++) {
      let ids: string[] = [];
      fork.push(await time(async () => {
        const out = await client.sessions.fork(source, { count });
        ids = out.sessions.map((s) => s.id);
        failures += out.failures.length;
      }));
      await removeAll(ids);

      let snapId = "";
      snapshot.push(await time(async () => {
        const s = await client.snapshots.create(source);
        snapId = s.id;
        frozen.push(s.frozenMs);
      }));
      await client.snapshots.remove(snapId);

      ids = [];
      sequential.push(await time(async () => {
        for (let i = 0; i < count; i++) ids.push((await client.sessions.start("fork")).id);
      }));
      await removeAll(ids);

      ids = [];
      parallel.push(await time(async () => {
        let next = 0;
        await Promise.all(Array.from({ length: atOnce }, async () => {
          while (next < count) {
            next++;
            ids.push((await client.sessions.start("fork")).id);
          }
        }));
      }));
      await removeAll(ids);
    }
    await client.sessions.remove(source);

    const report = {
      benchmark: "fork",
      machine: machine(),
      layerStore: server.cp.layers.kind,
      runs,
      count,
      sourceWrote: "2,000 files + 64 MiB",
      failedStarts: failures,
      baseline: summarize(`${count} cold starts, one after another`, sequential),
      results: [
        summarize(`fork --count ${count}: POST /v1/sessions/{id}/fork until every session runs`, fork),
        summarize(`${count} cold starts, ${atOnce} at a time`, parallel),
        summarize(`${count} cold starts, one after another`, sequential),
        summarize("snapshot: POST /v1/snapshots until the answer", snapshot),
        summarize("snapshot: source frozen (frozenMs)", frozen),
      ],
      targets: { forkTotalMs: 2000 },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    for (const s of await client.sessions.list()) await client.sessions.remove(s.id).catch(() => undefined);
    await server.close({ unmountLayers: true, removeHostNetwork: true });
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
  }
}

await main();
