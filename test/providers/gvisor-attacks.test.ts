import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { openLayerStore } from "../../src/layers/index.ts";
import { createLocalProvider, gvisorRootDir, installationScope, openNetworkManager } from "../../src/providers/local/index.ts";
import type { Provider, SandboxSpec } from "../../src/core/index.ts";
import { runCommand } from "../../src/core/index.ts";
import { crashableServer, releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";
import { freePorts } from "../network/helpers.ts";

/**
 * Adversarial review of the gVisor tier (issue 13, round 2): a control plane killed at the wrong
 * moment must leave neither a gVisor sandbox it can no longer govern nor its host mounts behind
 * (invariant 9), and `session kill` must never become a silent no-op. Real runsc sandboxes;
 * skipped, visibly, where runsc is not installed.
 */
const RUNSC = (await runCommand(["sh", "-c", "command -v runsc"], { allowFailure: true })).code === 0;
const skip = RUNSC ? false : "runsc (gVisor) is not installed: apt-get install runsc";

const GiB = 2 ** 30;
let n = 0;
const baseSpec = (overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id: `gva-${process.pid}-${n++}`,
  mode: "session",
  base: "host",
  layers: [],
  compute: { cpu: 1, memoryBytes: GiB / 2, pids: 128, diskBytes: GiB / 4 },
  hostname: "gvisor",
  env: {},
  isolation: "gvisor",
  ...overrides,
});

const mountsUnder = async (dir: string) => (await readFile("/proc/self/mountinfo", "utf8")).split("\n").map((l) => l.split(" ")[4] ?? "").filter((m) => m === dir || m.startsWith(`${dir}/`));

void describe("gVisor tier under attack: a half-made sandbox after a crash", { skip }, () => {
  let home: { path: string; remove: () => Promise<void> };
  let layers: Awaited<ReturnType<typeof openLayerStore>>;
  let providers: Provider[] = [];
  const close = async () => {
    for (const p of providers) {
      for (const id of await p.list()) await p.stop(id).catch(() => false);
      await p.close();
    }
    providers = [];
  };

  before(async () => {
    home = await tempDir();
    layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * GiB });
  });
  after(async () => {
    await close();
    await layers?.close({ unmount: true });
    await releaseHome(home.path);
    await home.remove();
  });

  void it("a sandbox whose providerState was never recorded (kill -9 mid-create) is released by recover: no runsc sandbox, mount or directory is left", async () => {
    const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
    const network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 0 });
    try {
      const first = await createLocalProvider({ home: home.path, layers, network });
      const spec = baseSpec({ egress: () => Promise.resolve({ env: {}, files: [] }) });
      const h = await first.create(spec);
      const sandboxPid = h.providerState.initPid as number;
      // The control plane dies before it stores providerState: the next one knows only the id.
      await first.close();
      const second = await createLocalProvider({ home: home.path, layers, network });
      providers.push(second);
      assert.equal(await second.recover(spec.id, {}), "gone");
      const dir = join(gvisorRootDir(installationScope(home.path)), spec.id);
      assert.deepEqual(await mountsUnder(dir), [], "the rootfs overlay and idmapped views are unmounted");
      assert.ok(!existsSync(dir), `${dir} is removed`);
      await until(async () => !existsSync(`/proc/${sandboxPid}`), 30_000, "the sandbox process to end");
    } finally {
      await close();
      await network.close({ removeHostObjects: true });
    }
  });
});

void describe("gVisor tier under attack: from inside the sandbox", { skip }, () => {
  let home: { path: string; remove: () => Promise<void> };
  let layers: Awaited<ReturnType<typeof openLayerStore>>;
  let provider: Provider;
  let network: Awaited<ReturnType<typeof openNetworkManager>>;
  const python = async (id: string, code: string) => {
    let stdout = "";
    let stderr = "";
    const r = await provider.exec(id, { argv: ["python3", "-c", code], timeoutMs: 60_000, onStdout: (b) => (stdout += b.toString()), onStderr: (b) => (stderr += b.toString()) });
    return { ...r, stdout, stderr };
  };

  before(async () => {
    home = await tempDir();
    layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * GiB });
    const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
    network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 0 });
    provider = await createLocalProvider({ home: home.path, layers, network });
  });
  after(async () => {
    for (const id of (await provider?.list()) ?? []) await provider.stop(id).catch(() => false);
    await provider?.close();
    await layers?.close({ unmount: true });
    await network?.close({ removeHostObjects: true });
    await releaseHome(home.path);
    await home.remove();
  });

  void it("the session user cannot make a user namespace to gain capabilities: clone(CLONE_NEWUSER), clone3 and unshare fail; fork and threads still work", async () => {
    const spec = baseSpec({ egress: () => Promise.resolve({ env: {}, files: [] }) });
    await provider.create(spec);
    // clone(2) straight through syscall(2): not unshare(2), which the filter already refused.
    const r = await python(spec.id, `
import ctypes, os, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
for name, flag in [("NEWUSER", 0x10000000), ("NEWNS", 0x00020000), ("NEWPID", 0x20000000), ("NEWNET", 0x40000000)]:
    pid = libc.syscall(56, flag | 17, 0, 0, 0, 0)
    if pid == 0:
        caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
        print("child", name, caps, flush=True)
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        print("cloned", name, flush=True)
    else:
        print("refused", name, ctypes.get_errno(), flush=True)
args = (ctypes.c_uint64 * 11)(0x10000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
print("clone3", libc.syscall(435, args, 88), ctypes.get_errno(), flush=True)
print("unshare", libc.unshare(0x10000000), ctypes.get_errno(), flush=True)
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
t = threading.Thread(target=lambda: print("thread ran", flush=True)); t.start(); t.join()
`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /child|cloned/, r.stdout);
    for (const ns of ["NEWUSER", "NEWNS", "NEWPID", "NEWNET"]) assert.match(r.stdout, new RegExp(`refused ${ns} 1\\n`), r.stdout);
    assert.match(r.stdout, /clone3 -1 38\n/);
    assert.match(r.stdout, /unshare -1 1\n/);
    assert.match(r.stdout, /fork 7\nthread ran\n/);
    await provider.stop(spec.id);
  });

  void it("the session user cannot reach the agent: its host-backed socket dir, its socket, its binary, its memory and environment", async () => {
    const spec = baseSpec({ egress: () => Promise.resolve({ env: {}, files: [] }) });
    await provider.create(spec);
    const r = await python(spec.id, `
import os, socket
def attempt(name, fn):
    try:
        fn(); print(name, "ok", flush=True)
    except Exception as e:
        print(name, type(e).__name__, flush=True)
attempt("list sock dir", lambda: os.listdir("/run/.paddock-gvisor/sock"))
attempt("connect agent", lambda: socket.socket(socket.AF_UNIX).connect("/run/.paddock-gvisor/sock/agent.sock"))
attempt("plant socket", lambda: socket.socket(socket.AF_UNIX).bind("/run/.paddock-gvisor/sock/x.sock"))
attempt("write agent binary", lambda: open("/run/.paddock-gvisor/agent/agent" if os.path.isdir("/run/.paddock-gvisor/agent") else "/run/.paddock-gvisor/agent", "ab"))
# gVisor lets the session user read it (the namespaces tier does not: the agent is not dumpable);
# it holds only PATH and HOME (commands get their variables per exec, never through the agent's environment).
try:
    print("agent environ holds", sorted(v.split(b"=")[0].decode() for v in open("/proc/1/environ", "rb").read().split(b"\\0") if v), flush=True)
except Exception as e:
    print("agent environ", type(e).__name__, flush=True)
attempt("agent memory", lambda: open("/proc/1/mem", "rb").read(1))
attempt("agent root", lambda: os.listdir("/proc/1/root/"))
`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.doesNotMatch(r.stdout, / ok$/m, r.stdout);
    assert.equal(r.stdout.trim().split("\n").length, 7, r.stdout);
    assert.match(r.stdout, /^agent environ (PermissionError|holds \[('HOME', )?'PATH'\])$/m, r.stdout);
    await provider.stop(spec.id);
  });
});

void describe("gVisor tier under attack: the network from inside (--network=host in the sandbox's namespace)", { skip }, () => {
  let home: { path: string; remove: () => Promise<void> };
  let layers: Awaited<ReturnType<typeof openLayerStore>>;
  let provider: Provider;
  let network: Awaited<ReturnType<typeof openNetworkManager>>;
  let hostService: Server;
  const hits: string[] = [];

  before(async () => {
    home = await tempDir();
    layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * GiB });
    const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
    network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 0 });
    provider = await createLocalProvider({ home: home.path, layers, network });
    // A host service on every address (as the control plane's API or a database might be).
    hostService = createServer((sock) => {
      hits.push(String(sock.remoteAddress));
      sock.end("host-service\n");
    });
    await new Promise<void>((r) => hostService.listen(0, "0.0.0.0", () => r()));
  });
  after(async () => {
    hostService?.close();
    for (const id of (await provider?.list()) ?? []) await provider.stop(id).catch(() => false);
    await provider?.close();
    await layers?.close({ unmount: true });
    await network?.close({ removeHostObjects: true });
    await releaseHome(home.path);
    await home.remove();
  });

  void it("the host's services are unreachable: on the gateway's address, the host's own addresses and 127.0.0.1; nothing reaches the listener", async () => {
    const port = (hostService.address() as AddressInfo).port;
    const hostAddrs = Object.values(networkInterfaces()).flat().filter((a) => a && a.family === "IPv4" && !a.internal).map((a) => a!.address);
    const spec = baseSpec({ egress: () => Promise.resolve({ env: {}, files: [] }) });
    await provider.create(spec);
    let stdout = "";
    let stderr = "";
    const targets = JSON.stringify([["127.0.0.1", port], ...hostAddrs.map((a) => [a, port]), ["169.254.169.254", 80]]);
    const r = await provider.exec(spec.id, {
      argv: ["python3", "-c", `
import json, socket
gw = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
for host, port in [[gw, ${port}], [gw, 22]] + json.loads(${JSON.stringify(targets)}):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); s.settimeout(3); print("connected", host, port, s.recv(64), flush=True)
    except Exception as e:
        print("unreachable", host, port, type(e).__name__, flush=True)
`],
      timeoutMs: 120_000, onStdout: (b) => (stdout += b.toString()), onStderr: (b) => (stderr += b.toString()),
    });
    assert.equal(r.exitCode, 0, stderr);
    assert.doesNotMatch(stdout, /connected/, stdout);
    assert.equal(stdout.split("\n").filter((l) => l.startsWith("unreachable")).length, 3 + hostAddrs.length + 1, stdout);
    assert.deepEqual(hits, [], "the host service saw no connection");
    await provider.stop(spec.id);
  });
});

void describe("gVisor tier under attack: control-plane restart with a live gVisor session", { skip }, () => {
  let home: { path: string; remove: () => Promise<void> };
  const { start, kill9 } = crashableServer(() => home.path);

  before(async () => {
    home = await tempDir();
  });
  after(async () => {
    await kill9();
    const s = await start().catch(() => null);
    if (s) {
      for (const x of await s.client.sessions.list()) await s.client.sessions.stop(x.id).catch(() => undefined);
      await kill9();
    }
    await releaseHome(home.path);
    await home.remove();
  });

  void it("after kill -9 and restart, `session kill` still ends the session's processes (runsc's state survives the orphan sweep)", async () => {
    let s = await start();
    await s.client.environments.apply("paddock.yml", "name: gv\nbase: host\ncompute:\n  timeout: 1h\n  isolation: gvisor\n");
    const session = await s.client.sessions.start("gv");
    await s.client.sessions.run(session.id, { argv: ["sh", "-c", "nohup sleep 1000 >/dev/null 2>&1 &"] });
    await kill9();
    s = await start();
    assert.equal((await s.client.sessions.get(session.id)).state, "running");
    const { signalled } = await s.client.sessions.killProcesses(session.id);
    assert.ok(signalled > 0, `session kill signalled ${signalled} processes after the restart`);
    const left = await s.client.sessions.run(session.id, { argv: ["sh", "-c", "ps -eo comm | grep -c '^sleep$' || true"] });
    assert.equal(left.stdout.trim(), "0", "the sleeper was killed");
    await s.client.sessions.stop(session.id);
  });
});
