/**
 * Snapshot benchmarks (issue 10), on real sandboxes through the local provider (no HTTP):
 *
 * - `snapshot` of a session that wrote 1 MiB and one that wrote 1 GiB, each "dirty" (just written,
 *   still in the page cache: the usual case, dirty data lives 30 s) and "synced" (on disk), with
 *   the call's total time and how long the sandbox was frozen (`frozenMs`);
 * - starting a sandbox from a snapshot of the 1 GiB session, beside a plain start;
 * - the layer store's `prepare` with and without spare subvolumes, and `prepareFrom`;
 * - baselines in the same run: `btrfs subvolume snapshot -r` alone (of the clean 1 GiB layer, and
 *   of a dirty one, which is what a freeze would last without the pre-flush), and the cost of one
 *   `btrfs` invocation beside spawning `true`.
 *
 * Prints one JSON document. Usage: node --import tsx bench/snapshot.ts [--runs N] [--dirty-gib-runs N]
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Provider, SandboxSpec } from "../src/core/index.ts";
import { runCommand } from "../src/core/index.ts";
import { openBtrfsLayerStore, openLayerStore, type ClosableLayerStore } from "../src/layers/index.ts";
import { createLocalProvider } from "../src/providers/local/index.ts";
import { releaseHome } from "../test/helpers/server.ts";
import { machine, summarize, time } from "./stats.ts";

const arg = (name: string, dflt: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) || dflt : dflt);
const runs = arg("--runs", 30);
const dirtyGibRuns = arg("--dirty-gib-runs", 5);
const GiB = 2 ** 30;

const spec = (id: string, over: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id,
  mode: "session",
  base: "host",
  layers: [],
  compute: { cpu: 2, memoryBytes: 4 * GiB, pids: 256, diskBytes: 4 * GiB },
  hostname: "bench",
  env: {},
  ...over,
});

type Summary = ReturnType<typeof summarize>;

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "paddock-bench-snapshot-"));
  const home2 = await mkdtemp(join(tmpdir(), "paddock-bench-snapshot-nospares-"));
  let layers: ClosableLayerStore | undefined;
  let bare: ClosableLayerStore | undefined;
  let p: Provider | undefined;
  try {
    layers = await openLayerStore({ home, kind: "btrfs", imageBytes: 16 * GiB });
    bare = await openBtrfsLayerStore({ root: join(home2, "layers"), image: join(home2, "layers.img"), imageBytes: 4 * GiB, spares: 0 });
    p = await createLocalProvider({ home, layers });
    const provider = p;
    const store = layers;
    const sh = async (id: string, script: string) => {
      let err = "";
      const r = await provider.exec(id, { argv: ["sh", "-c", script], onStderr: (b) => (err += b.toString()) });
      if (r.exitCode !== 0) throw new Error(`${script}: exit ${r.exitCode}: ${err}`);
    };
    const upper = (id: string) => join(store.committedDir, "..", "active", `sbx-${id}`);
    let n = 0;
    const snapId = () => `bench-${process.pid}-${n++}`;
    // Warm up: the first sandbox pays for the scaffold layer.
    await provider.create(spec("warm"));
    await provider.stop("warm");

    const results: (Summary & { frozen?: Summary })[] = [];
    /**
     * `count` snapshots of each of two sessions, one holding 1 MiB and one 1 GiB, taken in turn so
     * that whatever else the machine does weighs on both alike. With `dirty`, each session's data
     * is rewritten before each of its snapshots; else it is written once and synced.
     */
    const snapshots = async (dirty: boolean, count: number, sizes: number[]) => {
      const samples = new Map(sizes.map((mib) => [mib, { total: [] as number[], frozen: [] as number[] }]));
      const id = (mib: number) => `s${mib}${dirty ? "d" : "c"}`;
      const write = (mib: number) => `rm -f /workspace/data; dd if=/dev/zero of=/workspace/data bs=1M count=${mib} status=none`;
      for (const mib of sizes) {
        await provider.create(spec(id(mib)));
        if (!dirty) await sh(id(mib), write(mib));
      }
      if (!dirty) await runCommand(["sync", "-f", store.committedDir]);
      for (let i = 0; i < count; i++) {
        for (const mib of sizes) {
          if (dirty) await sh(id(mib), write(mib));
          const layerId = snapId();
          let f = 0;
          samples.get(mib)!.total.push(await time(async () => (f = (await provider.snapshot(id(mib), layerId)).frozenMs)));
          samples.get(mib)!.frozen.push(f);
          await provider.removeSnapshot(layerId);
        }
      }
      for (const mib of sizes) {
        await provider.stop(id(mib));
        const name = `snapshot of a session that wrote ${mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`}, ${dirty ? "just written (dirty)" : "after sync"}`;
        const { total, frozen } = samples.get(mib)!;
        results.push({ ...summarize(`${name}: Provider.snapshot total`, total), frozen: summarize(`${name}: frozenMs`, frozen) });
        process.stderr.write(`${name}: total p50 ${results.at(-1)!.p50Ms} ms, frozen p50 ${results.at(-1)!.frozen!.p50Ms} ms\n`);
      }
    };
    await snapshots(false, runs, [1, 1024]);
    await snapshots(true, runs, [1]);
    await snapshots(true, dirtyGibRuns, [1024]);

    // Starts: plain, and from a snapshot of a session holding 1 GiB.
    await provider.create(spec("src"));
    await sh("src", "dd if=/dev/zero of=/workspace/data bs=1M count=1024 status=none");
    await provider.snapshot("src", "bench-from");
    const plain: number[] = [];
    const from: number[] = [];
    for (let i = 0; i < runs; i++) {
      plain.push(await time(() => provider.create(spec(`p${i}`))));
      await provider.stop(`p${i}`);
      from.push(await time(() => provider.create(spec(`f${i}`, { from: "bench-from" }))));
      await provider.stop(`f${i}`);
    }
    results.push(summarize("sandbox start (Provider.create until ready), empty writable layer", plain));
    results.push(summarize("sandbox start from a snapshot of a session holding 1 GiB", from));

    // Layer store operations alone.
    const spareDir = join(store.committedDir, "..", "spare");
    const prepSpare: number[] = [];
    const prepBare: number[] = [];
    const prepFrom: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Spares are made in the background once starts pause: wait for a full pool (steady state).
      for (let t = 0; (await readdir(spareDir)).length < 4 && t < 2000; t++) await new Promise((r) => setTimeout(r, 5));
      prepSpare.push(await time(() => store.prepare(`k${i}`, { maxBytes: 4 * GiB })));
      prepBare.push(await time(() => bare!.prepare(`k${i}`, { maxBytes: 4 * GiB })));
      prepFrom.push(await time(() => store.prepareFrom("bench-from", `c${i}`, { maxBytes: 4 * GiB })));
      await store.remove(`k${i}`);
      await store.remove(`c${i}`);
      await bare.remove(`k${i}`);
    }
    results.push(summarize("LayerStore.prepare with a spare subvolume ready (rename)", prepSpare));
    results.push(summarize("LayerStore.prepare without spares (btrfs subvolume create + qgroup limit)", prepBare));
    results.push(summarize("LayerStore.prepareFrom a 1 GiB snapshot (snapshot + qgroup limit)", prepFrom));

    // Baselines.
    const srcVolume = upper("src");
    await runCommand(["sync", "-f", srcVolume]);
    const cliSnap: number[] = [];
    const spawnTrue: number[] = [];
    const cliCreate: number[] = [];
    const cliLimit: number[] = [];
    const scratch = join(store.committedDir, "..", "tmp");
    for (let i = 0; i < runs; i++) {
      const to = join(scratch, `bench-${i}`);
      cliSnap.push(await time(() => runCommand(["btrfs", "subvolume", "snapshot", "-r", srcVolume, to])));
      await runCommand(["btrfs", "subvolume", "delete", to]);
      spawnTrue.push(await time(() => runCommand(["true"])));
      cliCreate.push(await time(() => runCommand(["btrfs", "subvolume", "create", to])));
      cliLimit.push(await time(() => runCommand(["btrfs", "qgroup", "limit", String(GiB), to])));
      await runCommand(["btrfs", "subvolume", "delete", to]);
    }
    const dirtyCli: number[] = [];
    for (let i = 0; i < Math.min(3, dirtyGibRuns); i++) {
      await sh("src", "rm -f /workspace/data; dd if=/dev/zero of=/workspace/data bs=1M count=1024 status=none");
      const to = join(scratch, `bench-dirty-${i}`);
      dirtyCli.push(await time(() => runCommand(["btrfs", "subvolume", "snapshot", "-r", srcVolume, to])));
      await runCommand(["btrfs", "subvolume", "delete", to]);
    }
    await provider.stop("src");
    await provider.removeSnapshot("bench-from");
    const baselines = [
      summarize("btrfs subvolume snapshot -r of the 1 GiB session's layer, after sync (CLI, no freeze)", cliSnap),
      summarize("btrfs subvolume snapshot -r of a layer with 1 GiB just written (CLI, no pre-flush): what a freeze would last without Provider.snapshot's flush", dirtyCli),
      summarize("spawn `true` from Node", spawnTrue),
      summarize("btrfs subvolume create (CLI)", cliCreate),
      summarize("btrfs qgroup limit (CLI)", cliLimit),
    ];
    const byName = (prefix: string) => results.find((r) => r.name.startsWith(prefix))!;
    const gib = byName("snapshot of a session that wrote 1 GiB, after sync");
    const mib = byName("snapshot of a session that wrote 1 MiB, after sync");
    const report = {
      benchmark: "snapshot",
      machine: machine(),
      // Other work on the machine shows in the tails; this says how much there was.
      loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
      layerStore: store.kind,
      runs,
      dirtyGibRuns,
      results,
      baselines,
      targets: { snapshot1GiBP50Ms: 20, snapshot1GiBOver1MiBP50: 1.5 },
      achieved: {
        snapshot1GiBAfterSyncP50Ms: gib.p50Ms,
        snapshot1GiBOver1MiBAfterSyncP50: Math.round((gib.p50Ms / mib.p50Ms) * 100) / 100,
        snapshot1GiBDirtyP50Ms: byName("snapshot of a session that wrote 1 GiB, just written").p50Ms,
        frozen1GiBDirtyP50Ms: byName("snapshot of a session that wrote 1 GiB, just written").frozen!.p50Ms,
      },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    if (p) for (const s of await p.list()) await p.stop(s).catch(() => undefined);
    await layers?.close({ unmount: true }).catch(() => undefined);
    await bare?.close({ unmount: true }).catch(() => undefined);
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
    await rm(home2, { recursive: true, force: true });
  }
}

await main();
