/**
 * Warm-pool benchmark (issue #10): a session start that claims a pool member (POST /v1/sessions
 * until the answer: the member bound to its principal, its secrets registered, its placeholders in
 * its environment), beside a cold start of the same environment without a pool, interleaved in the
 * same run. Between runs the pool is refilled (not timed). Prints one JSON document.
 * Usage: node --import tsx bench/pool.ts [--runs N] [--pool N]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../src/server/index.ts";
import { PaddockClient } from "../src/client/index.ts";
import { machine, summarize, time } from "./stats.ts";
import { releaseHome } from "../test/helpers/server.ts";

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1]) || fallback;
const runs = arg("--runs", 100);
const poolSize = arg("--pool", 2);

const env = (name: string) => `name: ${name}
secrets: [STRIPE_API_KEY]
guardrails:
  commands:
    deny: [sudo]
  network:
    allow: [api.stripe.com]
install:
  - echo ready > /workspace/ready
`;

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "paddock-bench-"));
  const server = await startServer({ home, port: 0 });
  const client = new PaddockClient({ url: server.url, token: (await readFile(join(home, "admin.token"), "utf8")).trim() });
  try {
    await client.secrets.set("STRIPE_API_KEY", "sk_live_benchmarkSecretValue0123456789");
    await client.environments.apply("pooled.yml", env("pooled"));
    await client.environments.apply("cold.yml", env("cold"));
    // Warm up both paths (scaffold layer, page cache, the version CA).
    for (let i = 0; i < 3; i++) await client.sessions.remove((await client.sessions.start("cold")).id);
    await client.pools.set("pooled", { min: poolSize });
    const refilled = async () => {
      for (;;) {
        await server.cp.pools.idle();
        const p = (await client.pools.list()).find((x) => x.environment === "pooled");
        if (p && p.ready >= poolSize && p.starting === 0) return;
        await new Promise((r) => setTimeout(r, 5));
      }
    };

    const claim: number[] = [];
    const claimToExec: number[] = [];
    const cold: number[] = [];
    const coldToExec: number[] = [];
    let claimed = 0;
    for (let i = 0; i < runs; i++) {
      await refilled();
      const members = new Set((await server.cp.store.listPoolMembers({ environment: "pooled" })).map((m) => m.id));
      let id = "";
      const t0 = process.hrtime.bigint();
      claim.push(await time(async () => (id = (await client.sessions.start("pooled")).id)));
      await client.sessions.run(id, { argv: ["true"] });
      claimToExec.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (members.has(id)) claimed++;
      await client.sessions.remove(id);

      // The refill that claim started is not the cold start's business: let it finish first.
      await refilled();
      const t1 = process.hrtime.bigint();
      cold.push(await time(async () => (id = (await client.sessions.start("cold")).id)));
      await client.sessions.run(id, { argv: ["true"] });
      coldToExec.push(Number(process.hrtime.bigint() - t1) / 1e6);
      await client.sessions.remove(id);
    }

    // The floor under any API call: an authenticated, authorised, audited GET of a session.
    const floor: number[] = [];
    const probe = (await client.sessions.start("cold")).id;
    for (let i = 0; i < runs; i++) floor.push(await time(() => client.sessions.get(probe)));
    await client.sessions.remove(probe);

    const report = {
      benchmark: "pool",
      machine: machine(),
      layerStore: server.cp.layers.kind,
      runs,
      poolSize,
      claimedFromPool: claimed,
      baseline: summarize("cold start: POST /v1/sessions until ready (no pool)", cold),
      results: [
        summarize("claim: POST /v1/sessions until ready (pool member)", claim),
        summarize("claim → first exec of `true` done", claimToExec),
        summarize("cold start: POST /v1/sessions until ready (no pool)", cold),
        summarize("cold start → first exec of `true` done", coldToExec),
        summarize("API floor: GET /v1/sessions/{id} (token, RBAC, audit record)", floor),
      ],
      targets: { claimP50Ms: 3, claimP99Ms: 10 },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    await client.pools.set("pooled", { min: 0 }).catch(() => undefined);
    await server.cp.pools.drain().catch(() => undefined);
    await server.cp.pools.idle();
    await server.cp.pools.drain().catch(() => undefined);
    for (const s of await client.sessions.list()) await client.sessions.remove(s.id).catch(() => undefined);
    await server.close({ unmountLayers: true, removeHostNetwork: true });
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
  }
}

await main();
