import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { openLayerStore } from "../../src/layers/index.ts";
import { GVISOR_CAPABILITIES, createLocalProvider, gvisorRootDir, installationScope, openNetworkManager } from "../../src/providers/local/index.ts";
import type { NetworkManager } from "../../src/providers/local/index.ts";
import type { LayerStore, Provider, SandboxSpec } from "../../src/core/index.ts";
import { PaddockError, runCommand, unsupported } from "../../src/core/index.ts";
import { parseEnvironment } from "../../src/config/index.ts";
import type { PaddockClient } from "../../src/client/index.ts";
import { releaseHome, testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";
import { freePorts } from "../network/helpers.ts";
import { startUpstream, UPSTREAM_NAMES, type Upstream } from "../helpers/upstream.ts";
import { providerConformance } from "./conformance.ts";

/**
 * The local provider's gVisor tier (`compute.isolation: gvisor`, docs/sandbox.md "gVisor tier"):
 * real runsc sandboxes on this machine. Skipped, visibly, where runsc is not installed.
 */
const RUNSC = (await runCommand(["sh", "-c", "command -v runsc"], { allowFailure: true })).code === 0;
const skip = RUNSC ? false : "runsc (gVisor) is not installed: apt-get install runsc";

const GiB = 2 ** 30;
let n = 0;
const baseSpec = (overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id: `gv-${process.pid}-${n++}`,
  mode: "session",
  base: "host",
  layers: [],
  compute: { cpu: 1, memoryBytes: GiB / 2, pids: 256, diskBytes: GiB / 4 },
  hostname: "gvisor",
  env: {},
  isolation: "gvisor",
  ...overrides,
});

interface Machine {
  home: { path: string; remove: () => Promise<void> };
  layers: LayerStore;
  network: NetworkManager;
  provider: Provider;
  close: () => Promise<void>;
}

/** An installation's local provider with btrfs layers and per-sandbox networks (no gateway listens). */
async function machine(): Promise<Machine> {
  const home = await tempDir();
  const layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * GiB });
  const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
  const network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 2 });
  const provider = await createLocalProvider({ home: home.path, layers, network });
  return {
    home, layers, network, provider,
    close: async () => {
      for (const id of await provider.list()) await provider.stop(id).catch(() => false);
      await provider.close();
      await layers.close({ unmount: true });
      await network.close({ removeHostObjects: true });
      await releaseHome(home.path);
      await home.remove();
    },
  };
}

/**
 * The provider as a gVisor session sees it: the local provider's capabilities with what the tier
 * lacks switched off (GVISOR_CAPABILITIES), so the suite checks that each of those is refused.
 * removeSnapshot is a provider-wide call with no sandbox to tell the tier by; for this view it is
 * refused like the rest of snapshots.
 */
function gvisorTier(p: Provider): Provider {
  return new Proxy(p, {
    get(target, key) {
      if (key === "capabilities") return { ...target.capabilities, ...GVISOR_CAPABILITIES };
      if (key === "removeSnapshot") return () => Promise.reject(unsupported(target, "remove snapshots of gVisor sandboxes"));
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const isUnsupported = (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && typeof e.details?.capability === "string";

if (RUNSC) {
  providerConformance("local, isolation gvisor", async () => {
    const m = await machine();
    return {
      provider: gvisorTier(m.provider),
      spec: (overrides: Partial<SandboxSpec> = {}) => baseSpec({ egress: () => Promise.resolve({ env: {}, files: [] }), ...overrides }),
      cleanup: m.close,
    };
  });
}

void describe("gVisor tier of the local provider", { skip }, () => {
  let m: Machine;
  const run = async (id: string, script: string, timeoutMs = 60_000) => {
    let stdout = "";
    let stderr = "";
    const r = await m.provider.exec(id, { argv: ["sh", "-c", script], timeoutMs, onStdout: (b) => (stdout += b.toString()), onStderr: (b) => (stderr += b.toString()) });
    return { ...r, stdout, stderr };
  };

  before(async () => {
    m = await machine();
  });
  after(async () => {
    await m?.close();
  });

  void it("declares gvisor only because runsc is here; the sandbox runs on gVisor's kernel, not the host's", async () => {
    assert.deepEqual(m.provider.capabilities.isolation, ["namespaces", "gvisor"]);
    const spec = baseSpec();
    await m.provider.create(spec);
    const r = await run(spec.id, "uname -r; dmesg | head -1");
    const hostRelease = (await readFile("/proc/sys/kernel/osrelease", "utf8")).trim();
    assert.ok(!r.stdout.includes(hostRelease), `the host's kernel ${hostRelease} is visible: ${r.stdout}`);
    assert.match(r.stdout, /Starting gVisor/);
    await m.provider.stop(spec.id);
  });

  void it("commands and files run as the session user (uid 1000); what it writes is host uid 101000 in the writable layer", async () => {
    const spec = baseSpec();
    const h = await m.provider.create(spec);
    const r = await run(spec.id, "id -u; id -g; echo x > /workspace/by-exec; touch /etc/nope 2>/dev/null || echo denied");
    assert.equal(r.stdout, "1000\n1000\ndenied\n", r.stderr);
    await m.provider.writeFile(spec.id, "/workspace/by-put", Buffer.from("y"));
    const upper = h.providerState.upperDir as string;
    for (const f of ["by-exec", "by-put"]) {
      const st = await stat(join(upper, "workspace", f));
      assert.deepEqual([st.uid, st.gid], [101_000, 101_000], f);
    }
    assert.equal((await m.provider.readFile(spec.id, "/workspace/by-exec")).toString(), "x\n");
    await m.provider.stop(spec.id);
  });

  void it("compute.pids holds: a fork bomb cannot fork past it, the host is untouched, and the session is usable after a kill", async () => {
    const spec = baseSpec({ compute: { cpu: 1, memoryBytes: GiB / 2, pids: 64, diskBytes: GiB / 4 } });
    await m.provider.create(spec);
    let stderr = "";
    // The bomb's population rises to the limit and can die out again (a process whose fork fails
    // exits), so it is counted while it runs, not after: every count must stay within the limit.
    const bomb = m.provider.exec(spec.id, { argv: ["sh", "-c", "f(){ f | f & }; f; sleep 30"], timeoutMs: 60_000, onStderr: (b) => (stderr += b.toString()) });
    // Counted from outside (nothing inside can fork now): the session user's processes, by gVisor's own table.
    const runscRoot = join("/run/paddock", installationScope(m.home.path), ".runsc");
    const counts: number[] = [];
    const users = async () => (await runCommand(["runsc", "--root", runscRoot, "ps", spec.id])).stdout.split("\n").slice(1).filter((l) => l.trim().split(/\s+/)[0] === "1000").length;
    await until(async () => {
      counts.push(await users());
      return /Cannot fork|Resource temporarily unavailable/.test(stderr) && Math.max(...counts) > 8;
    }, 30_000, "a refused fork on stderr, and the bomb's processes seen in gVisor's table");
    // RLIMIT_NPROC is checked when a uid-1000 process forks; the command's first process is made by
    // the agent (root) and only then becomes uid 1000, so the user can hold one more than the limit.
    assert.ok(Math.max(...counts) <= 64 + 1, `counts of uid 1000 processes over the limit of 64 (+1): ${counts.join(", ")}`);
    assert.ok((await m.provider.killProcesses(spec.id)) > 0);
    assert.notEqual((await bomb).exitCode, 0);
    assert.equal((await run(spec.id, "echo alive")).stdout, "alive\n");
    await m.provider.stop(spec.id);
  });

  void it("compute.memory holds: going over it ends the sandbox (its sentry, in the sandbox's memory cgroup), never the host", async () => {
    const spec = baseSpec({ compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 64, diskBytes: GiB / 4 } });
    const h = await m.provider.create(spec);
    const hog = m.provider.exec(spec.id, { argv: ["python3", "-c", "b = bytearray(1 << 30); print(len(b))"], timeoutMs: 60_000 });
    await assert.rejects(hog, (e: unknown) => e instanceof PaddockError && e.code === "unavailable");
    const memDir = (h.providerState.cgroups as string[]).find((d) => d.includes("/memory/") || !d.includes("/pids/"));
    assert.ok(memDir);
    // v1: memory.oom_control's oom_kill counter; v2: memory.events.
    const events = await readFile(join(memDir, existsSync(join(memDir, "memory.events")) ? "memory.events" : "memory.oom_control"), "utf8");
    assert.match(events, /oom_kill [1-9]/);
    assert.equal(await m.provider.stop(spec.id), true);
  });

  void it("its network is the pool's namespace: with no gateway listening, direct connections go nowhere", async () => {
    const spec = baseSpec({ egress: () => Promise.resolve({ env: {}, files: [] }) });
    const h = await m.provider.create(spec);
    assert.ok(h.sandboxIp);
    const r = await run(spec.id, `python3 - <<'EOF'
import socket
for addr in [("1.1.1.1", 443), ("1.1.1.1", 22), ("127.0.0.1", 1)]:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect(addr); print("connected", addr)
    except Exception as e:
        print("refused", addr[0], addr[1])
EOF`);
    assert.doesNotMatch(r.stdout, /connected/, r.stdout + r.stderr);
    assert.equal(r.stdout.split("\n").filter((l) => l.startsWith("refused")).length, 3, r.stdout + r.stderr);
    await m.provider.stop(spec.id);
  });

  void it("refuses what cannot hold under gVisor with unsupported, starting nothing: exec guard, services, snapshots, builds", async () => {
    const guard = { deny: [{ program: "rm", message: "paddock: 'rm' denied" }] };
    const services = [{ name: "s", command: "sleep 100", user: "1000", env: {}, ready: { command: "true" }, dataDirs: [], restartLimit: 1, dependsOn: [] }];
    for (const over of [{ guard }, { services }, { mode: "build" as const }, { from: "some-snapshot" }]) {
      const spec = baseSpec(over);
      await assert.rejects(m.provider.create(spec), isUnsupported, JSON.stringify(Object.keys(over)));
      assert.ok(!(await m.provider.list()).includes(spec.id));
    }
    const spec = baseSpec();
    await m.provider.create(spec);
    await assert.rejects(m.provider.snapshot(spec.id, `snap-${process.pid}`), isUnsupported);
    await m.provider.stop(spec.id);
  });

  void it("stop leaves no runsc state, mount, cgroup or directory behind", async () => {
    const spec = baseSpec({ egress: () => Promise.resolve({ env: {}, files: [] }) });
    const h = await m.provider.create(spec);
    const dir = join(gvisorRootDir(installationScope(m.home.path)), spec.id);
    const runscRoot = join("/run/paddock", installationScope(m.home.path), ".runsc");
    const listed = async () => (await runCommand(["runsc", "--root", runscRoot, "list", "-quiet"], { allowFailure: true })).stdout.split("\n");
    assert.ok((await listed()).includes(spec.id));
    assert.ok(existsSync(join(dir, "rootfs", "etc")));
    await m.provider.stop(spec.id);
    assert.ok(!(await listed()).includes(spec.id), "runsc still lists it");
    const mounts = await readFile("/proc/self/mountinfo", "utf8");
    assert.ok(!mounts.includes(dir), "its rootfs is still mounted");
    assert.ok(!existsSync(dir), `${dir} is left`);
    for (const cg of h.providerState.cgroups as string[]) assert.ok(!existsSync(cg), `cgroup ${cg} is left`);
    const pid = h.providerState.initPid as number;
    assert.ok(!existsSync(`/proc/${pid}`) || !(await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).includes("runsc"), "its sandbox process is alive");
  });
});

void describe("compute.isolation in the environment file", () => {
  const issues = (src: string) => parseEnvironment(src, "paddock.yml").issues.map((i) => `${i.line}:${i.path}: ${i.message}`);

  void it("gvisor and namespaces load; anything else is refused at the value", () => {
    assert.equal(parseEnvironment("name: a\ncompute:\n  isolation: gvisor\n", "paddock.yml").spec?.compute.isolation, "gvisor");
    assert.equal(parseEnvironment("name: a\ncompute:\n  isolation: namespaces\n", "paddock.yml").spec?.compute.isolation, "namespaces");
    assert.equal(parseEnvironment("name: a\n", "paddock.yml").spec?.compute.isolation, undefined);
    assert.deepEqual(issues("name: a\ncompute:\n  isolation: kata\n"), ['3:compute.isolation: must be "namespaces" or "gvisor"']);
  });

  void it("gvisor with guardrails.commands.deny or services is refused at compute.isolation, saying why", () => {
    const deny = issues("name: a\ncompute:\n  isolation: gvisor\nguardrails:\n  commands:\n    deny: [rm]\n");
    assert.equal(deny.length, 1);
    assert.match(deny[0]!, /^3:compute\.isolation: gvisor cannot enforce guardrails\.commands\.deny/);
    const services = issues("name: a\ncompute:\n  isolation: gvisor\nservices:\n  db:\n    command: sleep 1000\n    ready:\n      port: 5432\n");
    assert.ok(services.some((l) => /^3:compute\.isolation: gvisor cannot run services/.test(l)), services.join("\n"));
    // The same file under namespaces is fine.
    assert.deepEqual(issues("name: a\ncompute:\n  isolation: namespaces\nguardrails:\n  commands:\n    deny: [rm]\n"), []);
  });
});

/** Secrets and egress through the real gateway, end to end, for a gvisor session. */
const UPSTREAM_IP = "127.0.58.13";
const STRIPE = "sk_live_51GvisorTierSecretValue0123456789";

void describe("a gvisor session through the control plane: egress only via the gateway, secrets swapped there", { skip }, () => {
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  let up: Upstream;
  let id: string;
  const sh = async (script: string) => client.sessions.run(id, { argv: ["sh", "-c", script], timeoutMs: 60_000 });

  before(async () => {
    up = await startUpstream(UPSTREAM_IP, { gitToken: "unused-token-value-0123456789" });
    const t = await testServer({
      gateway: { upstream: { extraCaPem: [up.caPem], hosts: Object.fromEntries(UPSTREAM_NAMES.map((h) => [h, [UPSTREAM_IP]])), trustedAddresses: [UPSTREAM_IP] } },
    });
    ({ client, cleanup } = t);
    await client.secrets.set("STRIPE_API_KEY", STRIPE);
    await client.environments.apply("runtime.yml", "name: gv\ncompute:\n  isolation: gvisor\n  memory: 512MiB\nsecrets:\n  - STRIPE_API_KEY\nguardrails:\n  network:\n    allow: [api.stripe.com]\n    deny: [\"*\"]\n");
    id = (await client.sessions.start("gv")).id;
  });
  after(async () => {
    await cleanup?.();
    await up?.close();
  });

  void it("runs under gVisor", async () => {
    assert.match((await sh("dmesg | head -1")).stdout, /gVisor/);
  });

  void it("curl to a bound host goes through the gateway, which swaps the placeholder for the secret", async () => {
    const r = await sh('echo "$STRIPE_API_KEY"; curl -sS -o /dev/null -w "%{http_code}\\n" -H "Authorization: Bearer $STRIPE_API_KEY" https://api.stripe.com/v1/charges');
    assert.match(r.stdout, /^paddock-ph-[0-9a-f]{32}\n200\n$/, r.stderr);
    const got = [...up.received].reverse().find((x) => x.host.startsWith("api.stripe.com"));
    assert.equal(got?.headers.authorization, `Bearer ${STRIPE}`);
  });

  void it("direct connections are dropped: the upstream's own address, a public IP, another port", async () => {
    const before = up.received.length;
    const r = await sh(`for u in https://${UPSTREAM_IP}/ https://1.1.1.1/ http://1.1.1.1:8080/; do curl -sS --noproxy '*' --max-time 5 -o /dev/null "$u" && echo "reached $u"; done; echo done`);
    assert.doesNotMatch(r.stdout, /reached/);
    assert.match(r.stdout, /done/);
    assert.equal(up.received.length, before, "the upstream was reached directly");
  });
});
