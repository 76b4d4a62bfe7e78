/**
 * The E2B front end's cost (docs/e2b.md): `Sandbox.create()` → first `commands.run('true')` through
 * the real `e2b` SDK (test/e2b-sdk, 2.51.0) against Paddock, beside the same two steps through
 * Paddock's own SDK (src/client: `sessions.start` then `sessions.run` of `true`), interleaved in one
 * run against one server and one environment (no warm pool, so both are cold sandbox starts).
 * Sandboxes are killed/stopped after each sample, outside the clock. Target: ≤ 1.5× the native.
 *
 * Prints one JSON document. Needs root.
 * Usage: node --import tsx bench/e2b.ts [--runs N]
 */
import { Sandbox } from "../test/e2b-sdk/node_modules/e2b/dist/index.mjs";
import { e2bApiKeyOf } from "../src/server/e2b/api.ts";
import { testServer } from "../test/helpers/server.ts";
import { machine, summarize, time } from "./stats.ts";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) || fallback : fallback;
};
const runs = arg("--runs", 20);
const WARMUP = 2;
const ENV = "name: benche2b\n";

async function main(): Promise<void> {
  const t = await testServer({ e2bPort: 0 });
  try {
    await t.client.environments.apply("runtime.yml", ENV);
    const url = t.server.e2bUrl ?? "";
    const opts = { apiKey: e2bApiKeyOf(t.token), apiUrl: url, sandboxUrl: url, requestTimeoutMs: 120_000, timeoutMs: 120_000 };
    const e2b: number[] = [];
    const native: number[] = [];
    for (let i = 0; i < WARMUP + runs; i++) {
      let sandbox: Sandbox | null = null;
      const e = await time(async () => {
        sandbox = await Sandbox.create("benche2b", opts);
        const r = await sandbox.commands.run("true");
        if (r.exitCode !== 0) throw new Error(`e2b: true exited ${r.exitCode}`);
      });
      await (sandbox as Sandbox | null)?.kill();
      let sessionId = "";
      const n = await time(async () => {
        sessionId = (await t.client.sessions.start("benche2b")).id;
        const r = await t.client.sessions.run(sessionId, { argv: ["true"] });
        if (r.exitCode !== 0) throw new Error(`native: true exited ${r.exitCode}`);
      });
      await t.client.sessions.stop(sessionId);
      if (i >= WARMUP) {
        e2b.push(e);
        native.push(n);
      }
    }
    const a = summarize("e2b SDK: Sandbox.create() → commands.run('true')", e2b);
    const b = summarize("Paddock SDK: sessions.start() → sessions.run(['true'])", native);
    const report = {
      benchmark: "e2b",
      machine: machine(),
      sdk: "e2b 2.51.0",
      results: [a, b],
      ratio: { p50: Math.round((a.p50Ms / b.p50Ms) * 100) / 100, p99: Math.round((a.p99Ms / b.p99Ms) * 100) / 100, target: 1.5 },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    await t.cleanup();
  }
}

await main();
