/**
 * Session start per provider through the one Provider API (issue #13): `create` of a ready
 * sandbox, then its first `exec(["true"])`, timed together; `stop` after each sample, timed apart
 * and outside the start figure. Every provider available on this machine runs:
 * - `local`: Linux namespaces, btrfs layers, a network per sandbox (the baseline);
 * - `local-gvisor`: the same provider with `isolation: "gvisor"` (runsc);
 * - `daytona`: the real @daytona/sdk against the fake Daytona API (test/fakes/daytona);
 * - `k8s`, `k8s-agent-sandbox`: the real @kubernetes/client-node against the fake cluster
 *   (test/fakes/k8s), its kubelet running each pod as a local sandbox; plain Pods, and
 *   agent-sandbox claims with a warm pool of 1;
 * - `e2b`: the real e2b SDK against Paddock's own E2B front end (a stand-in for E2B's cloud);
 * - `ec2`: the fake EC2 API (test/fakes/ec2) launching a real `paddock node` process here.
 * Remote entries ran against fakes or stand-ins whose sandboxes are local ones, so their figures
 * are this repository's client/protocol overhead on top of a local start, not the cloud's own
 * start time (a real E2B or EC2 start adds the service's scheduling, image pull and network).
 *
 * Each remote provider's samples are interleaved with local baseline samples taken in the same
 * rounds, so its ratio compares starts under the same load. The first WARMUP samples of every
 * provider (image builds, host boot, first connections) are reported apart as `warmupMs`.
 * A provider whose setup fails is skipped with the reason; one whose samples fail stops there and
 * says why. Everything (sandboxes, servers, node processes, kernel objects) is cleaned up, on
 * failure and on SIGINT/SIGTERM too.
 *
 * Prints one JSON document on stdout (progress on stderr). Needs root.
 * Usage: node --import tsx bench/providers.ts [--runs N] [--only local,e2b,...]
 * The local baseline always runs (interleaved with the others); `--only local` runs it alone.
 * Names: local, local-gvisor, daytona, k8s, k8s-agent-sandbox, e2b, ec2.
 */
import { loadavg } from "node:os";
import { join } from "node:path";
import type { Provider, RemoteEgressAttachment, SandboxSpec } from "../src/core/index.ts";
import { runCommand } from "../src/core/index.ts";
import { machine, summarize, time } from "./stats.ts";

const argOf = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const runs = Math.max(1, Number(argOf("--runs")) || 20);
const WARMUP = 2;
const ALL = ["local", "local-gvisor", "daytona", "k8s", "k8s-agent-sandbox", "e2b", "ec2"] as const;
type Name = (typeof ALL)[number];
const only = argOf("--only")?.split(",").map((s) => s.trim()).filter(Boolean);
for (const o of only ?? []) if (!(ALL as readonly string[]).includes(o)) throw new Error(`--only: unknown provider ${o} (known: ${ALL.join(", ")})`);
const wanted = (n: Name) => !only || only.includes(n);

/** A create or exec taking longer than this counts as a failure (the machine may be loaded, so generous). */
const SAMPLE_TIMEOUT_MS = 300_000;
const GiB = 2 ** 30;
const COMPUTE = { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 };
const log = (line: string) => process.stderr.write(`[bench providers] ${line}\n`);
const load = () => loadavg().map((x) => Math.round(x * 100) / 100);
let seq = 0;
const freshId = (prefix: string) => `${prefix}-${process.pid}-${seq++}`;

/** Cleanups of everything set up so far, newest first; run at the end, on failure and on signals. */
const cleanups: (() => Promise<void>)[] = [];
async function cleanAll(): Promise<void> {
  while (cleanups.length > 0) {
    const c = cleanups.pop()!;
    await c().catch((e: unknown) => log(`cleanup failed: ${String(e)}`));
  }
}
/** Runs `f` at most once; later calls get the first call's promise (a cleanup reached from two paths). */
const once = (f: () => Promise<void>): (() => Promise<void>) => {
  let p: Promise<void> | undefined;
  return () => (p ??= f());
};
/** The first signal ends the run after the sample in progress and cleans up as usual; a second cleans up at once and exits. */
let interrupted = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (!interrupted) {
      interrupted = true;
      log(`${sig}: stopping after the sample in progress (again to clean up now)`);
      return;
    }
    log(`${sig} again: cleaning up now`);
    void cleanAll().finally(() => process.exit(130));
  });
}

interface Target {
  provider: Provider;
  spec(): SandboxSpec;
  /** What it ran against, in words. */
  ranAgainst: string;
  /** True when a fake or stand-in took the place of the real service. */
  standIn: boolean;
  cleanup(): Promise<void>;
}

/** Registers `cleanup` before anything can fail after it, and hands the target back. */
const registered = (t: Target): Target => {
  t.cleanup = once(t.cleanup);
  cleanups.push(t.cleanup);
  return t;
};

/** A local provider with btrfs layers and a network per sandbox (no gateway listens: none is needed to start). */
async function localMachine(poolSize: number) {
  const { openLayerStore } = await import("../src/layers/index.ts");
  const { createLocalProvider, installationScope, openNetworkManager } = await import("../src/providers/local/index.ts");
  const { releaseHome } = await import("../test/helpers/server.ts");
  const { tempDir } = await import("../test/helpers/tmp.ts");
  const { freePorts } = await import("../test/network/helpers.ts");
  const home = await tempDir("paddock-bench-providers-");
  let closers: (() => Promise<unknown>)[] = [];
  const close = once(async () => {
    for (const c of closers.reverse()) await c().catch((e: unknown) => log(`local cleanup: ${String(e)}`));
    closers = [];
    await releaseHome(home.path);
    await home.remove();
  });
  try {
    const layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * GiB });
    closers.push(() => layers.close({ unmount: true }));
    const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
    const network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize });
    closers.push(() => network.close({ removeHostObjects: true }));
    const provider = await createLocalProvider({ home: home.path, layers, network });
    closers.push(async () => {
      for (const id of await provider.list()) await provider.stop(id).catch(() => false);
      await provider.close();
    });
    return { home: home.path, layers, network, provider, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** An egress attachment for remote providers: a proxy nobody listens on (starting needs none). */
const remoteEgress = (caPath: string): RemoteEgressAttachment => ({
  env: { HTTPS_PROXY: "https://bench:pw@127.0.0.1:9443", HTTP_PROXY: "https://bench:pw@127.0.0.1:9443", NO_PROXY: "localhost,127.0.0.1" },
  files: [{ path: caPath, content: "-----BEGIN CERTIFICATE-----\nbench\n-----END CERTIFICATE-----\n" }],
  proxyUrl: "https://bench:pw@127.0.0.1:9443",
  allow: [{ host: "127.0.0.1", port: 9443 }],
});

const setups: Record<Exclude<Name, "local">, (local: Target) => Promise<Target>> = {
  // The baseline's own provider, asked for the other tier.
  "local-gvisor": async (local) => {
    const r = await runCommand(["sh", "-c", "command -v runsc"], { allowFailure: true });
    if (r.code !== 0) throw new Error("runsc (gVisor) is not installed");
    if (!local.provider.capabilities.isolation.includes("gvisor")) throw new Error(`the local provider does not declare the gvisor tier (isolation: ${local.provider.capabilities.isolation.join(",")})`);
    return { provider: local.provider, spec: () => ({ ...local.spec(), id: freshId("bp-gv"), isolation: "gvisor" }), ranAgainst: "this machine: the local provider with isolation gvisor (runsc)", standIn: false, cleanup: () => Promise.resolve() };
  },

  daytona: async () => {
    const m = await localMachine(4);
    const h: { fake?: { close(): Promise<void> }; provider?: Provider } = {};
    const t = registered({
      provider: undefined as unknown as Provider,
      spec: () => ({ id: freshId("bp-dt"), mode: "session", base: "debian-12", layers: [], compute: COMPUTE, hostname: "daytona", env: {}, recipe: { templateId: "tpl-bench", base: "debian-12", steps: [] }, remoteEgress: async () => remoteEgress("/etc/paddock/ca.pem") }),
      ranAgainst: "FAKE Daytona API (test/fakes/daytona) driven by the real @daytona/sdk; its sandboxes are local Paddock sandboxes",
      standIn: true,
      cleanup: async () => {
        for (const id of (await h.provider?.list().catch(() => [])) ?? []) await h.provider?.stop(id).catch(() => false);
        await h.provider?.close();
        await h.fake?.close();
        await m.close();
      },
    });
    const { startFakeDaytona } = await import("../test/fakes/daytona/index.ts");
    const { daytonaDriver, parseDaytonaSettings } = await import("../src/providers/daytona/index.ts");
    const fake = await startFakeDaytona({ local: m.provider, network: true });
    h.fake = fake;
    const provider = await daytonaDriver.create(
      { name: "daytona-bench", settings: parseDaytonaSettings({ apiUrl: fake.apiUrl, pollIntervalMs: 30, createTimeoutSeconds: 300 }), credentials: { apiKey: fake.apiKey } },
      { home: m.home, log: () => undefined },
    );
    h.provider = provider;
    t.provider = provider;
    return t;
  },

  k8s: (local) => k8s(local, false),
  "k8s-agent-sandbox": (local) => k8s(local, true),

  e2b: async () => {
    const { testServer } = await import("../test/helpers/server.ts");
    const { e2bDriver } = await import("../src/providers/e2b/index.ts");
    const s = await testServer({ e2bPort: 0 });
    const h: { provider?: Provider } = {};
    const t = registered({
      provider: undefined as unknown as Provider,
      spec: () => ({ id: freshId("bp-e2b"), mode: "session", base: "host", layers: [], compute: COMPUTE, hostname: "e2b", env: {}, recipe: { templateId: "tpl-plain", base: "host", steps: [] }, remoteEgress: async () => remoteEgress("/home/user/.paddock/ca.pem") }),
      ranAgainst: "STAND-IN for E2B's cloud: Paddock's own E2B front end (src/server/e2b) driven by the real e2b SDK 2.51, itself starting local sandboxes (environment `inner`)",
      standIn: true,
      cleanup: async () => {
        for (const id of (await h.provider?.list().catch(() => [])) ?? []) await h.provider?.stop(id).catch(() => false);
        await h.provider?.close();
        await s.cleanup();
      },
    });
    await s.client.environments.apply("runtime.yml", "name: inner\n");
    const url = s.server.e2bUrl;
    const provider = await e2bDriver.create(
      { name: "e2b-bench", settings: e2bDriver.parseSettings({ apiUrl: url, sandboxUrl: url, domain: "e2b.paddock.test", defaultTemplate: "inner" }), credentials: { apiKey: s.token } },
      { home: s.home, log: () => undefined },
    );
    h.provider = provider;
    t.provider = provider;
    return t;
  },

  ec2: async () => {
    const { tempDir } = await import("../test/helpers/tmp.ts");
    const { freeNodeHome, repoRoot } = await import("../test/node/helpers.ts");
    const { startFakeEc2 } = await import("../test/fakes/ec2/index.ts");
    const { ec2Driver, createNodeCa } = await import("../src/providers/ec2/index.ts");
    const KEY_ID = "AKIAFAKEPADDOCKBENCH1";
    const SECRET = "fake-secret-access-key-for-the-bench-only";
    const TEMPLATE = { id: "lt-0b1e2c3d4e5f60718", name: "paddock-node" };
    const dir = await tempDir("paddock-bench-ec2-");
    const h: { fake?: { close(): Promise<void> }; provider?: Provider } = {};
    const t = registered({
      provider: undefined as unknown as Provider,
      spec: () => ({ id: freshId("bp-ec2"), mode: "session", base: "host", layers: [], compute: COMPUTE, hostname: "ec2", env: {}, recipe: { templateId: "t-ec2-bench", base: "host", steps: [] } }),
      ranAgainst: "FAKE EC2 API (test/fakes/ec2, SigV4 checked) whose one instance runs a REAL `paddock node` process on this machine, reached over mutual TLS; host launch is in warmupMs",
      standIn: true,
      cleanup: async () => {
        for (const id of (await h.provider?.list().catch(() => [])) ?? []) await h.provider?.stop(id).catch(() => false);
        await h.provider?.close();
        await h.fake?.close();
        await dir.remove();
      },
    });
    const ca = await createNodeCa("bench installation node CA");
    const fake = await startFakeEc2({
      keys: { [KEY_ID]: SECRET },
      launchTemplates: [TEMPLATE],
      capacity: 2,
      dir: join(dir.path, "instances"),
      bootEnv: { ...process.env, PATH: `${join(repoRoot, "bin")}:${process.env.PATH ?? ""}`, PADDOCK_FROM_SOURCE: "1" },
      onTerminate: (i) => freeNodeHome(join(i.dir, "home")),
    });
    h.fake = fake;
    const provider = await ec2Driver.create(
      {
        name: "ec2-bench",
        settings: ec2Driver.parseSettings({ region: "us-east-1", launchTemplateName: TEMPLATE.name, endpoint: fake.url, bootTimeoutMs: 300_000, maxHosts: 1, sessionsPerHost: 100 }),
        credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET, nodeCa: ca.bundle() },
      },
      { home: join(dir.path, "control"), log: () => undefined },
    );
    h.provider = provider;
    t.provider = provider;
    return t;
  },
};

async function k8s(_local: Target, agentSandbox: boolean): Promise<Target> {
  const { CoreV1Api, KubeConfig, NodeV1Api } = await import("@kubernetes/client-node");
  const { startFakeCluster } = await import("../test/fakes/k8s/index.ts");
  const { localKubelet } = await import("../test/fakes/k8s/kubelet-local.ts");
  const { k8sDriver } = await import("../src/providers/k8s/index.ts");
  const { openLayerStore } = await import("../src/layers/index.ts");
  const { createLocalProvider } = await import("../src/providers/local/index.ts");
  const { releaseHome } = await import("../test/helpers/server.ts");
  const { tempDir } = await import("../test/helpers/tmp.ts");
  const NS = "paddock";
  const home = await tempDir("paddock-bench-k8s-");
  const h: { layers?: { close(o: { unmount: boolean }): Promise<void> }; local?: Provider; cluster?: { close(): Promise<void> }; provider?: Provider } = {};
  const t = registered({
    provider: undefined as unknown as Provider,
    // agent-sandbox pods get their egress files in the template's emptyDirs after the claim; the fake kubelet mounts none (as in the k8s test).
    spec: () => ({ id: freshId(agentSandbox ? "bp-k8sa" : "bp-k8s"), mode: "session", base: "debian-12", layers: [], compute: COMPUTE, hostname: "k8s", env: {}, recipe: { templateId: "tpl-bench", base: "debian-12", steps: [] }, remoteEgress: async () => remoteEgress(agentSandbox ? "/tmp/paddock-egress/ca.pem" : "/etc/paddock/ca.pem") }),
    ranAgainst: `FAKE Kubernetes API server (test/fakes/k8s) driven by the real @kubernetes/client-node; its fake kubelet runs each pod as a local sandbox; ${agentSandbox ? "agent-sandbox SandboxClaims with a SandboxWarmPool of 1" : "plain Pods"}`,
    standIn: true,
    cleanup: async () => {
      for (const id of (await h.provider?.list().catch(() => [])) ?? []) await h.provider?.stop(id).catch(() => false);
      await h.provider?.close();
      await h.cluster?.close();
      for (const id of (await h.local?.list().catch(() => [])) ?? []) await h.local?.stop(id).catch(() => false);
      await h.local?.close();
      await h.layers?.close({ unmount: true });
      await releaseHome(home.path);
      await home.remove();
    },
  });
  const store = await openLayerStore({ home: home.path });
  h.layers = store;
  const local = await createLocalProvider({ home: home.path, layers: store });
  h.local = local;
  const c = await startFakeCluster({ kubelet: localKubelet(local), agentSandbox });
  h.cluster = c;
  const kc = new KubeConfig();
  kc.loadFromString(c.kubeconfig);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
  await kc.makeApiClient(NodeV1Api).createRuntimeClass({ body: { metadata: { name: "gvisor" }, handler: "runsc" } });
  const settings = k8sDriver.parseSettings({ namespace: NS, readyTimeoutMs: 300_000, useAgentSandbox: agentSandbox ? "always" : "never", warmPool: agentSandbox ? 1 : 0 });
  const provider = await k8sDriver.create({ name: "k8s-bench", settings, credentials: { kubeconfig: c.kubeconfig } }, { home: home.path, log: () => undefined });
  h.provider = provider;
  t.provider = provider;
  return t;
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${SAMPLE_TIMEOUT_MS} ms`)), SAMPLE_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** One session start: create → exec(["true"]) timed; stop timed apart. A sandbox left by a failure is stopped. */
async function sample(t: Target): Promise<{ startMs: number; stopMs: number }> {
  const spec = t.spec();
  let live = false;
  try {
    const startMs = await time(async () => {
      await withTimeout(t.provider.create(spec), `create ${spec.id}`);
      live = true;
      const r = await withTimeout(t.provider.exec(spec.id, { argv: ["true"], timeoutMs: SAMPLE_TIMEOUT_MS }), `exec true in ${spec.id}`);
      if (r.exitCode !== 0) throw new Error(`exec true in ${spec.id} exited ${r.exitCode}`);
    });
    const stopMs = await time(async () => {
      const stopped = await withTimeout(t.provider.stop(spec.id), `stop ${spec.id}`);
      live = false;
      if (!stopped) throw new Error(`stop ${spec.id} resolved false for a live sandbox`);
    });
    return { startMs, stopMs };
  } finally {
    if (live) await t.provider.stop(spec.id).catch(() => false);
  }
}

const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n").slice(0, 6).join("\n");

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const loadBefore = load();
  const m = await localMachine(4);
  cleanups.push(m.close);
  const local: Target = {
    provider: m.provider,
    spec: () => ({ id: freshId("bp-local"), mode: "session", base: "host", layers: [], compute: COMPUTE, hostname: "local", env: {}, egress: () => Promise.resolve({ env: {}, files: [] }) }),
    ranAgainst: "this machine: the local provider (Linux namespaces + seccomp, btrfs layers, a network per sandbox from a pool of 4), the baseline",
    standIn: false,
    cleanup: () => Promise.resolve(),
  };
  const localStarts: number[] = [];
  const localStops: number[] = [];
  const entries: Record<string, unknown>[] = [];

  const remotes = (Object.keys(setups) as Exclude<Name, "local">[]).filter(wanted);
  if (remotes.length === 0) {
    // Only the baseline: run it on its own.
    const warm: number[] = [];
    for (let i = 0; i < WARMUP + runs && !interrupted; i++) {
      const s = await sample(local);
      if (i < WARMUP) warm.push(s.startMs);
      else {
        localStarts.push(s.startMs);
        localStops.push(s.stopMs);
      }
    }
  }

  for (const name of remotes) {
    if (interrupted) {
      entries.push({ provider: name, skipped: "interrupted (SIGINT/SIGTERM) before it ran" });
      continue;
    }
    const loadAtStart = load();
    log(`${name}: setting up`);
    let t: Target;
    const mark = cleanups.length;
    try {
      t = await setups[name](local);
      const h = await t.provider.health();
      if (!h.ok) throw new Error(`health: ${h.detail}`);
    } catch (e) {
      log(`${name}: skipped: ${message(e)}`);
      entries.push({ provider: name, skipped: `setup failed: ${message(e)}`, loadAverage: loadAtStart });
      // Only what this setup registered; the baseline stays.
      for (const c of cleanups.splice(mark).reverse()) await c().catch((err: unknown) => log(`${name} cleanup: ${String(err)}`));
      continue;
    }
    const starts: number[] = [];
    const stops: number[] = [];
    const baseStarts: number[] = [];
    const warmupMs: number[] = [];
    let failed: string | undefined;
    for (let i = 0; i < WARMUP + runs && !interrupted; i++) {
      try {
        const b = await sample(local);
        const s = await sample(t);
        if (i < WARMUP) {
          warmupMs.push(Math.round(s.startMs * 100) / 100);
          continue;
        }
        starts.push(s.startMs);
        stops.push(s.stopMs);
        baseStarts.push(b.startMs);
        localStarts.push(b.startMs);
        localStops.push(b.stopMs);
      } catch (e) {
        failed = `sample ${i + 1} failed: ${message(e)}`;
        log(`${name}: ${failed}`);
        break;
      }
    }
    log(`${name}: ${starts.length} samples; cleaning up`);
    const idx = cleanups.indexOf(t.cleanup);
    if (idx >= 0) cleanups.splice(idx, 1);
    await t.cleanup().catch((e: unknown) => log(`${name} cleanup: ${String(e)}`));
    const entry: Record<string, unknown> = {
      provider: name,
      ranAgainst: t.ranAgainst,
      standIn: t.standIn,
      capabilities: { kind: t.provider.capabilities.kind, network: t.provider.capabilities.network, layers: t.provider.capabilities.layers, warmPool: t.provider.capabilities.warmPool },
      loadAverage: { atStart: loadAtStart, atEnd: load() },
      warmupMs,
    };
    if (failed) entry["failed"] = failed;
    if (interrupted && !failed && starts.length < runs) entry["failed"] = `interrupted after ${starts.length} of ${runs} samples`;
    if (starts.length > 0) {
      const start = summarize(`${name}: create → exec(["true"])`, starts);
      const base = summarize(`local (interleaved with ${name}): create → exec(["true"])`, baseStarts);
      Object.assign(entry, { start, stop: summarize(`${name}: stop`, stops), baseline: base, ratioToLocal: { p50: ratio(start.p50Ms, base.p50Ms), p99: ratio(start.p99Ms, base.p99Ms) } });
    }
    entries.push(entry);
  }

  const report = {
    benchmark: "providers",
    what: 'Session start through the Provider interface: create (ready sandbox) → first exec(["true"]); stop timed apart. Remote providers ran against local fakes/stand-ins whose sandboxes are local ones (see ranAgainst).',
    started,
    machine: machine(),
    runs,
    warmup: WARMUP,
    loadAverage: { before: loadBefore, after: load(), note: "1/5/15-minute load averages of this machine (2 CPUs); other work may have run beside the bench" },
    baseline: localStarts.length > 0
      ? { provider: "local", ranAgainst: local.ranAgainst, standIn: false, start: summarize('local: create → exec(["true"]) (all baseline samples)', localStarts), stop: summarize("local: stop", localStops) }
      : { provider: "local", skipped: "no samples" },
    providers: entries,
  };
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
}

try {
  await main();
} finally {
  await cleanAll();
}
if (interrupted) process.exit(130);
