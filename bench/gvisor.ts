/**
 * The gVisor tier beside the namespaces tier, in the same run (issue #13): the local provider
 * with btrfs layers and a network per sandbox, `isolation: "gvisor"` against the default.
 * - session start: `create` of a ready sandbox (the agent's ready line) and its first `exec(["true"])`;
 * - exec round trip: `exec(["true"])` in a running sandbox (agent socket → fork → exec → exit);
 * - a 100-exec loop inside the sandbox (`/bin/true` × 100 from one shell), per exec: the
 *   user-space kernel's fork/exec cost without the host round trip.
 * Samples alternate between the tiers (one of each per round), so both see the same load.
 * `stop` is timed apart. Prints one JSON document on stdout (progress on stderr). Needs root and runsc.
 * Usage: node --import tsx bench/gvisor.ts [--runs N]
 */
import { loadavg } from "node:os";
import { openLayerStore } from "../src/layers/index.ts";
import { createLocalProvider, installationScope, openNetworkManager } from "../src/providers/local/index.ts";
import type { IsolationTier, SandboxSpec } from "../src/core/index.ts";
import { releaseHome } from "../test/helpers/server.ts";
import { tempDir } from "../test/helpers/tmp.ts";
import { freePorts } from "../test/network/helpers.ts";
import { probeGvisor } from "../src/providers/local/gvisor.ts";
import { machine, summarize, time } from "./stats.ts";

const argOf = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const runs = Math.max(1, Number(argOf("--runs")) || 20);
const WARMUP = 2;
const TIERS: IsolationTier[] = ["namespaces", "gvisor"];
const log = (line: string) => process.stderr.write(`[bench gvisor] ${line}\n`);
let seq = 0;

async function main(): Promise<void> {
  const home = await tempDir("paddock-bench-gvisor-");
  const layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * 2 ** 30 });
  const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
  const network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 4 });
  const provider = await createLocalProvider({ home: home.path, layers, network, log });
  try {
    if (!provider.capabilities.isolation.includes("gvisor")) throw new Error("runsc is not usable here: the local provider does not offer isolation gvisor");
    const spec = (isolation: IsolationTier): SandboxSpec => ({
      id: `bench-${isolation === "gvisor" ? "gv" : "ns"}-${process.pid}-${seq++}`,
      mode: "session", base: "host", layers: [], hostname: "bench", env: {}, isolation,
      compute: { cpu: 1, memoryBytes: 512 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
      egress: () => Promise.resolve({ env: {}, files: [] }),
    });
    const start = Object.fromEntries(TIERS.map((t) => [t, [] as number[]])) as Record<IsolationTier, number[]>;
    const warm = Object.fromEntries(TIERS.map((t) => [t, [] as number[]])) as Record<IsolationTier, number[]>;
    const stop = Object.fromEntries(TIERS.map((t) => [t, [] as number[]])) as Record<IsolationTier, number[]>;
    for (let i = 0; i < runs + WARMUP; i++) {
      for (const tier of TIERS) {
        const s = spec(tier);
        const ms = await time(async () => {
          await provider.create(s);
          await provider.exec(s.id, { argv: ["true"] });
        });
        (i < WARMUP ? warm : start)[tier].push(ms);
        stop[tier].push(await time(() => provider.stop(s.id)));
      }
      log(`start round ${i + 1}/${runs + WARMUP}`);
    }
    const running = Object.fromEntries(await Promise.all(TIERS.map(async (t) => {
      const s = spec(t);
      await provider.create(s);
      return [t, s.id] as const;
    }))) as Record<IsolationTier, string>;
    const exec = Object.fromEntries(TIERS.map((t) => [t, [] as number[]])) as Record<IsolationTier, number[]>;
    const loop = Object.fromEntries(TIERS.map((t) => [t, [] as number[]])) as Record<IsolationTier, number[]>;
    const hundred = { argv: ["sh", "-c", "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done"] };
    for (const t of TIERS) for (let i = 0; i < 10; i++) await provider.exec(running[t], { argv: ["true"] });
    for (let i = 0; i < runs * 5; i++) {
      for (const t of TIERS) exec[t].push(await time(() => provider.exec(running[t], { argv: ["true"] })));
      if (i < runs) for (const t of TIERS) loop[t].push((await time(() => provider.exec(running[t], hundred))) / 100);
    }
    for (const t of TIERS) await provider.stop(running[t]);
    const report = {
      benchmark: "gVisor tier beside the namespaces tier (local provider, same run, interleaved)",
      machine: machine(),
      runsc: (await probeGvisor()).detail,
      loadAvgAtEnd: loadavg().map((x) => Math.round(x * 100) / 100),
      runs,
      results: [
        { baseline: summarize("session start (create + first exec), namespaces", start.namespaces), result: summarize("session start (create + first exec), gvisor", start.gvisor) },
        { baseline: summarize("exec `true` round trip, namespaces", exec.namespaces), result: summarize("exec `true` round trip, gvisor", exec.gvisor) },
        { baseline: summarize("one /bin/true inside the sandbox (of a 100-exec loop), namespaces", loop.namespaces), result: summarize("one /bin/true inside the sandbox (of a 100-exec loop), gvisor", loop.gvisor) },
        { baseline: summarize("stop, namespaces", stop.namespaces), result: summarize("stop, gvisor", stop.gvisor) },
      ],
      warmupMs: warm,
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    for (const id of await provider.list()) await provider.stop(id).catch(() => false);
    await provider.close();
    await layers.close({ unmount: true });
    await network.close({ removeHostObjects: true });
    await releaseHome(home.path);
    await home.remove();
  }
}

await main();
