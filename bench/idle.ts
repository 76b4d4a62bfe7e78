/**
 * Idle sessions held at once (issue #10, target: 200 at ≤ 10 MiB of host memory each). Starts N
 * idle sessions (default 200) one after another through a real server with egress on, keeps them
 * all running, and measures what they cost the host; baselines in the same run: N `sleep infinity`
 * processes, and N bwrap sandboxes (`bwrap --unshare-all … sleep infinity`). Prints one JSON
 * document. Usage: node --import tsx bench/idle.ts [--sessions N] [--deny]
 *
 * How memory is measured, per session (each figure is a delta over the same N, before → all
 * running, medians of 5 samples of /proc/meminfo 200 ms apart):
 * - host: MemTotal − MemAvailable (everything the host can no longer hand out: process memory,
 *   kernel slab, page tables, tmpfs, minus what is reclaimable). Other processes on the machine
 *   move it too; the "after stop" figure says how much of the delta came back.
 * - the parts of it: Slab (and its unreclaimable part), KernelStack, PageTables, Percpu, Shmem.
 * - the sandboxes' own memory cgroups: memory.usage_in_bytes (v1) or memory.current (v2), summed
 *   over the installation's sandboxes (supervisor, agent, their page cache and kernel memory).
 * - the control plane's RSS (this process: the server runs in it) and the gateway process's RSS.
 * - attributedMiB, the headline: cgroup usage + kernel memory (Slab, KernelStack, PageTables,
 *   Percpu) not charged to the cgroups (network namespace, veth, cgroup structures, mounts made
 *   by the control plane) + the growth of the control plane and gateway; per session. Unlike
 *   MemTotal − MemAvailable it does not move with other work on the machine.
 * The baselines' processes run in a memory cgroup of their own, so they are measured the same way.
 * `--deny` gives every session an exec guard (guardrails.commands.deny), which adds a fanotify
 * group per session.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { startServer, type RunningServer } from "../src/server/index.ts";
import { PaddockClient } from "../src/client/index.ts";
import { detectCgroupLayout, installationScope } from "../src/providers/local/index.ts";
import { machine, summarize, time } from "./stats.ts";
import { releaseHome } from "../test/helpers/server.ts";

const arg = (name: string): string | undefined => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const count = Number(arg("--sessions")) || 200;
const deny = process.argv.includes("--deny");
const MiB = 2 ** 20;

/** The /proc/meminfo fields we report, in bytes. */
interface Mem {
  used: number;
  slab: number;
  sUnreclaim: number;
  kernelStack: number;
  pageTables: number;
  percpu: number;
  shmem: number;
}

async function meminfo(): Promise<Mem> {
  const kv = new Map<string, number>();
  for (const line of (await readFile("/proc/meminfo", "utf8")).split("\n")) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m?.[1] && m[2]) kv.set(m[1], Number(m[2]) * 1024);
  }
  const f = (k: string): number => kv.get(k) ?? 0;
  return {
    used: f("MemTotal") - f("MemAvailable"),
    slab: f("Slab"),
    sUnreclaim: f("SUnreclaim"),
    kernelStack: f("KernelStack"),
    pageTables: f("PageTables"),
    percpu: f("Percpu"),
    shmem: f("Shmem"),
  };
}

/** Median of 5 samples per field, 200 ms apart: one sample catches whatever else was allocating. */
async function settledMem(): Promise<Mem> {
  const samples: Mem[] = [];
  for (let i = 0; i < 5; i++) {
    if (i) await new Promise((r) => setTimeout(r, 200));
    samples.push(await meminfo());
  }
  const med = (k: keyof Mem): number => [...samples.map((s) => s[k])].sort((a, b) => a - b)[2] ?? NaN;
  return { used: med("used"), slab: med("slab"), sUnreclaim: med("sUnreclaim"), kernelStack: med("kernelStack"), pageTables: med("pageTables"), percpu: med("percpu"), shmem: med("shmem") };
}

const mib = (bytes: number): number => Math.round((bytes / MiB) * 100) / 100;

/** Per-unit delta of every field, in MiB. */
function perUnit(before: Mem, after: Mem, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(before) as (keyof Mem)[]) out[`${k}MiB`] = mib((after[k] - before[k]) / n);
  return out;
}

async function rss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
}

/** The gateway runs in a child process of the control plane. */
async function gatewayPid(server: RunningServer): Promise<number | undefined> {
  return server.cp.gateway.pid;
}

/**
 * Each sandbox's memory cgroup: all it is charged (memory.usage_in_bytes on v1, memory.current on
 * v2) and the kernel part of that (memory.kmem.usage_in_bytes; v2: `kernel` in memory.stat).
 */
async function sandboxCgroups(home: string): Promise<{ usage: number; kmem: number }[]> {
  const layout = await detectCgroupLayout(installationScope(home));
  const root = join(layout.version === 1 ? layout.memory : layout.root, "paddock", layout.scope);
  const out: { usage: number; kmem: number }[] = [];
  for (const id of await readdir(root).catch(() => [] as string[])) {
    const read = (f: string): Promise<string> => readFile(join(root, id, f), "utf8").catch(() => "");
    if (layout.version === 1) {
      const usage = await read("memory.usage_in_bytes");
      if (usage) out.push({ usage: Number(usage.trim()), kmem: Number((await read("memory.kmem.usage_in_bytes")).trim() || 0) });
    } else {
      const usage = await read("memory.current");
      if (usage) out.push({ usage: Number(usage.trim()), kmem: Number(/^kernel (\d+)$/m.exec(await read("memory.stat"))?.[1] ?? 0) });
    }
  }
  return out;
}

/** Start `n` long-lived processes, each ready when it printed its line; returns start times. */
async function startMany(n: number, argv: string[], procs: ChildProcess[]): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    times.push(
      await time(
        () =>
          new Promise<void>((resolve, reject) => {
            const p = spawn(argv[0] ?? "", argv.slice(1), { stdio: ["ignore", "pipe", "ignore"] });
            procs.push(p);
            p.once("error", reject);
            p.once("exit", (code) => reject(new Error(`${argv.join(" ")} exited ${String(code)} before it was ready`)));
            createInterface({ input: p.stdout! }).once("line", () => resolve());
          }),
      ),
    );
  }
  return times;
}

async function stopAll(procs: ChildProcess[]): Promise<void> {
  await Promise.all(
    procs.splice(0).map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once("exit", () => resolve());
          p.kill("SIGKILL");
        }),
    ),
  );
}

/** A memory cgroup of our own for a baseline's processes, so they are measured like sandboxes. */
async function baselineCgroup(home: string): Promise<{ dir: string; read: () => Promise<{ usage: number; kmem: number }>; remove: () => Promise<void> }> {
  const layout = await detectCgroupLayout(installationScope(home));
  const dir = join(layout.version === 1 ? layout.memory : layout.root, `paddock-bench-idle-${process.pid}`);
  await mkdir(dir);
  return {
    dir,
    read: async () => {
      const f = (name: string): Promise<string> => readFile(join(dir, name), "utf8").catch(() => "0");
      if (layout.version === 1) return { usage: Number((await f("memory.usage_in_bytes")).trim()), kmem: Number((await f("memory.kmem.usage_in_bytes")).trim()) };
      return { usage: Number((await f("memory.current")).trim()), kmem: Number(/^kernel (\d+)$/m.exec(await f("memory.stat"))?.[1] ?? 0) };
    },
    remove: () => rmdir(dir).catch(() => undefined),
  };
}

/** What a unit costs the host, from its parts; see `attributedMiB` below. */
function attributed(before: Mem, running: Mem, charged: { usage: number; kmem: number }, rssGrowth: number, n: number): number {
  const d = (k: keyof Mem): number => running[k] - before[k];
  const kernel = d("slab") + d("kernelStack") + d("pageTables") + d("percpu");
  return mib((charged.usage + Math.max(0, kernel - charged.kmem) + rssGrowth) / n);
}

/** Baseline: n processes or sandboxes in a memory cgroup of their own: memory per unit and start times. */
async function baseline(home: string, name: string, argv: string[], procs: ChildProcess[]): Promise<Record<string, unknown>> {
  const cg = await baselineCgroup(home);
  try {
    const before = await settledMem();
    const starts = await startMany(count, ["sh", "-c", `echo $$ > ${cg.dir}/cgroup.procs && exec "$@"`, "sh", ...argv], procs);
    const running = await settledMem();
    const charged = await cg.read();
    await stopAll(procs);
    const after = await settledMem();
    return {
      name,
      count,
      start: summarize(`${name}: start until ready`, starts),
      perUnit: perUnit(before, running, count),
      afterStopPerUnit: perUnit(before, after, count),
      cgroupMiB: { usagePerUnit: mib(charged.usage / count), kernelPerUnit: mib(charged.kmem / count) },
      attributedMiB: attributed(before, running, charged, 0, count),
    };
  } finally {
    await stopAll(procs);
    await cg.remove();
  }
}

function cgroupSummary(groups: { usage: number; kmem: number }[], held: number): Record<string, number> {
  const usage = groups.map((g) => g.usage).sort((a, b) => a - b);
  return {
    groups: groups.length,
    usagePerSession: mib(usage.reduce((a, b) => a + b, 0) / held),
    kernelPerSession: mib(groups.reduce((a, g) => a + g.kmem, 0) / held),
    usageP50: mib(usage[Math.floor(usage.length / 2)] ?? NaN),
    usageMax: mib(usage[usage.length - 1] ?? NaN),
  };
}

/** Start times in bands of 50 while the number of running sessions grows. */
function bands(starts: number[]): ReturnType<typeof summarize>[] {
  const out: ReturnType<typeof summarize>[] = [];
  for (let i = 0; i < starts.length; i += 50) out.push(summarize(`session start, sessions ${i + 1}–${Math.min(starts.length, i + 50)} running`, starts.slice(i, i + 50)));
  return out;
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "paddock-bench-idle-"));
  const procs: ChildProcess[] = [];
  let stopping = false;
  const onSignal = (): void => {
    stopping = true;
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let server: RunningServer | undefined;
  let client: PaddockClient | undefined;
  try {
    server = await startServer({ home, port: 0 });
    client = new PaddockClient({ url: server.url, token: (await readFile(join(home, "admin.token"), "utf8")).trim() });
    const guard = deny ? "guardrails:\n  commands:\n    deny: [nc]\n" : "";
    await client.environments.apply("idle.yml", `name: idle\ninstall:\n  - echo ready > /workspace/ready\n${guard}`);
    // Warm up: the scaffold layer, the page cache of the launcher and agent.
    for (let i = 0; i < 3; i++) await client.sessions.remove((await client.sessions.start("idle")).id);

    const sleepBase = await baseline(home, "sleep infinity", ["sh", "-c", "echo ready; exec sleep infinity"], procs);
    const bwrapBase = await baseline(
      home,
      "bwrap --unshare-all … sleep infinity",
      ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "sh", "-c", "echo ready; exec sleep infinity"],
      procs,
    );

    const gw = await gatewayPid(server);
    const before = await settledMem();
    const rssBefore = { server: await rss(process.pid), gateway: gw ? await rss(gw) : 0 };
    const starts: number[] = [];
    const ids: string[] = [];
    let failure: string | null = null;
    for (let i = 0; i < count && !stopping; i++) {
      try {
        starts.push(await time(async () => ids.push((await client!.sessions.start("idle")).id)));
      } catch (err) {
        failure = `session ${i + 1} of ${count} did not start: ${err instanceof Error ? err.message : String(err)}`;
        break;
      }
    }
    const running = await settledMem();
    const rssRunning = { server: await rss(process.pid), gateway: gw ? await rss(gw) : 0 };
    const groups = await sandboxCgroups(home);
    // Every session still answers: one exec of `true` in each.
    const execs: number[] = [];
    for (const id of ids) execs.push(await time(() => client!.sessions.run(id, { argv: ["true"] })));
    const stops: number[] = [];
    for (const id of ids.splice(0)) stops.push(await time(() => client!.sessions.remove(id)));
    const after = await settledMem();
    const held = starts.length;

    const report = {
      benchmark: "idle sessions held at once",
      machine: machine(),
      layerStore: server.cp.layers.kind,
      execGuard: deny,
      target: { sessions: 200, hostMemoryPerSessionMiB: 10 },
      held,
      failure,
      sessions: {
        start: summarize("session start: POST /v1/sessions until ready (all)", starts),
        startByBand: bands(starts),
        execTrueWithAllRunning: summarize("exec `true` in each session, all running", execs),
        stop: summarize("session stop + delete", stops),
        perSession: held ? perUnit(before, running, held) : null,
        afterStopPerSession: held ? perUnit(before, after, held) : null,
        cgroupMiB: held ? cgroupSummary(groups, held) : null,
        rssPerSessionMiB: held ? { controlPlane: mib((rssRunning.server - rssBefore.server) / held), gateway: mib((rssRunning.gateway - rssBefore.gateway) / held) } : null,
        /**
         * What one session costs the host, from the parts that belong to it: its cgroup (user and
         * kernel memory charged to it), kernel memory not charged to any sandbox (slab, stacks,
         * page tables, per-cpu data: network namespace, veth, mounts, cgroup structures) and the
         * growth of the control plane and gateway processes. Less noisy than `perSession.usedMiB`,
         * which moves with everything else running on the machine.
         */
        attributedMiB: held
          ? attributed(
              before,
              running,
              { usage: groups.reduce((a, g) => a + g.usage, 0), kmem: groups.reduce((a, g) => a + g.kmem, 0) },
              Math.max(0, rssRunning.server - rssBefore.server) + Math.max(0, rssRunning.gateway - rssBefore.gateway),
              held,
            )
          : null,
      },
      baselines: [sleepBase, bwrapBase],
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    await stopAll(procs);
    if (client) for (const s of await client.sessions.list().catch(() => [])) await client.sessions.remove(s.id).catch(() => undefined);
    await server?.close({ unmountLayers: true, removeHostNetwork: true });
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

await main();
