/**
 * Snapshots of running sandboxes (issue 10): `Provider.snapshot` freezes every process of the
 * sandbox, captures its writable layer and thaws it; `SandboxSpec.from` starts a sandbox on a
 * copy-on-write copy of a snapshot. Real sandboxes on a btrfs layer store, with networks (so
 * cleanup of network namespaces is checked too). Everything the tests make is removed in `after`,
 * whatever failed.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createHash } from "node:crypto";
import type { ExecOptions, Provider, SandboxSpec } from "../../src/core/index.ts";
import { PaddockError, runCommand } from "../../src/core/index.ts";
import { isMountPoint, openLayerStore, type ClosableLayerStore } from "../../src/layers/index.ts";
import {
  cgroupDirs,
  createLocalProvider,
  detectCgroupLayout,
  installationScope,
  listCgroupIds,
  openNetworkManager,
  removeCgroupScope,
  type NetworkManager,
} from "../../src/providers/local/index.ts";
import { destroyCgroups, freezeCgroups, thawCgroups } from "../../src/providers/local/cgroups.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";
import { freePorts } from "../network/helpers.ts";

const rootOnly = { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, overlayfs, cgroups, btrfs)" };
const isCode = (code: string) => (e: unknown) => e instanceof PaddockError && e.code === code;

/** The writer's line k: fixed width, so a torn line cannot pass for a whole one. */
const PAD = "x".repeat(64);
const line = (k: number) => `line ${k} ${PAD}`;

/**
 * The lines of a file written by the writer below, checked to be exactly lines 1..N, each one
 * complete, with a newline after the last. Returns N.
 */
function completeLines(text: string, where: string): number {
  assert.ok(text.endsWith("\n"), `${where}: the last line is complete (ends with a newline)`);
  const lines = text.slice(0, -1).split("\n");
  for (const [i, l] of lines.entries()) if (l !== line(i + 1)) assert.fail(`${where}: line ${i + 1} is ${JSON.stringify(l.slice(0, 100))}`);
  return lines.length;
}

void describe("local provider: snapshots and starts from them", rootOnly, () => {
  let home: Awaited<ReturnType<typeof tempDir>> | undefined;
  let layers: ClosableLayerStore | undefined;
  let network: NetworkManager | undefined;
  let p: Provider;
  const providers: Provider[] = [];
  const snapshots = new Set<string>();
  let n = 0;
  const id = () => `snap-${process.pid}-${n++}`;
  const spec = (sid: string, over: Partial<SandboxSpec> = {}): SandboxSpec => ({
    id: sid,
    mode: "session",
    base: "host",
    layers: [],
    compute: { cpu: 1, memoryBytes: 512 * 2 ** 20, pids: 256, diskBytes: 512 * 2 ** 20 },
    hostname: "snap",
    env: {},
    egress: async () => ({ env: {}, files: [] }),
    ...over,
  });
  const run = async (sid: string, argv: string[], o: Partial<ExecOptions> = {}) => {
    let out = "";
    let err = "";
    const r = await p.exec(sid, { argv, onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()), ...o });
    return { code: r.exitCode, out, err };
  };
  const snapshot = async (sid: string, layerId: string) => {
    snapshots.add(layerId);
    return p.snapshot(sid, layerId);
  };
  /** Subvolume paths below the layer store's mount. */
  const subvolumes = async () => {
    const { stdout } = await runCommand(["btrfs", "subvolume", "list", join(home!.path, "layers")]);
    return [...stdout.matchAll(/ path (.+)$/gm)].map((m) => m[1]!);
  };

  before(async () => {
    home = await tempDir();
    layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * 2 ** 30 });
    const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
    network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 0 });
    p = await createLocalProvider({ home: home.path, layers, network });
    providers.push(p);
  });

  after(async () => {
    for (const q of providers) for (const s of await q.list()) await q.stop(s).catch(() => undefined);
    for (const s of snapshots) await p?.removeSnapshot(s).catch(() => undefined);
    await layers?.close({ unmount: true }).catch(() => undefined);
    if (home) {
      // Cgroups, run directory and the mount, whatever a failed case left.
      const scope = installationScope(home.path);
      const layout = await detectCgroupLayout(scope);
      for (const cg of await listCgroupIds(layout)) await destroyCgroups(cgroupDirs(layout, cg));
      await removeCgroupScope(layout);
      await rm(join("/run/paddock", scope), { recursive: true, force: true });
      if (await isMountPoint(join(home.path, "layers"))) await runCommand(["umount", join(home.path, "layers")]);
      await home.remove();
    }
    // Last, so that nothing above depends on it: every network of this installation, its gateway
    // interface, route and nft table.
    await network?.close({ removeHostObjects: true });
  });

  void it("snapshot while a process appends lines: a prefix of whole lines, the source goes on, copies see it and stay apart, nothing left after", async () => {
    const a = id();
    const handle = await p.create(spec(a));
    // dash writes each echo with one write(2) (checked with strace when this was written).
    const writer = p.exec(a, { argv: ["sh", "-c", `i=0; while :; do i=$((i+1)); echo "line $i ${PAD}"; done >> /workspace/log`] }).catch((e: unknown) => e);
    const lineCount = async (sid: string) => Number((await run(sid, ["sh", "-c", "wc -l < /workspace/log"])).out.trim());
    await until(async () => (await lineCount(a)) >= 2000, 20_000, "the writer's first 2000 lines");

    const { frozenMs } = await snapshot(a, "snap-lines");
    assert.ok(frozenMs >= 0 && frozenMs < 5000, `frozenMs ${frozenMs}`);
    const captured = await readFile(join(layers!.layerPath("snap-lines"), "workspace", "log"), "utf8");
    // The freezer stops a task only at a freeze point (on its way back to user space, or asleep),
    // never inside a write(2) to a regular file: so no line is torn, not even the last one.
    const capturedLines = completeLines(captured, "the snapshot");
    assert.ok(capturedLines >= 2000, `${capturedLines} lines`);

    // Thawed: the writer goes on past what was captured.
    const freezer = handle.providerState.freezer as string[];
    for (const dir of freezer) assert.match(await readFile(join(dir, "freezer.state"), "utf8").catch(() => readFile(join(dir, "cgroup.events"), "utf8")), /THAWED|frozen 0/);
    await until(async () => (await lineCount(a)) > capturedLines + 1000, 20_000, "the writer writing again after the snapshot");

    const b = id();
    const c = id();
    await p.create(spec(b, { from: "snap-lines" }));
    await p.create(spec(c, { from: "snap-lines" }));
    assert.equal((await p.readFile(b, "/workspace/log")).toString(), captured, "a copy starts with the snapshot's files");
    assert.equal((await run(b, ["sh", "-c", "pgrep -f 'while [:]' || echo none"])).out, "none\n", "files, not processes");
    assert.equal((await run(b, ["sh", "-c", "echo from-b >> /workspace/log && echo b > /workspace/only-b"])).code, 0);
    assert.equal((await run(c, ["sh", "-c", "echo c > /workspace/only-c"])).code, 0);
    const exists = async (sid: string, path: string) => (await run(sid, ["test", "-e", path])).code === 0;
    assert.equal(await exists(b, "/workspace/only-b"), true);
    assert.equal(await exists(a, "/workspace/only-b"), false, "a copy's writes are not in the source");
    assert.equal(await exists(c, "/workspace/only-b"), false, "nor in another copy");
    assert.equal(await exists(b, "/workspace/only-c"), false);
    assert.equal(await exists(a, "/workspace/only-c"), false);
    assert.equal((await p.readFile(c, "/workspace/log")).toString(), captured);
    assert.equal((await run(a, ["grep", "-c", "from-b", "/workspace/log"])).out, "0\n");
    assert.equal(existsSync(join(layers!.layerPath("snap-lines"), "workspace", "only-b")), false);
    assert.equal(await readFile(join(layers!.layerPath("snap-lines"), "workspace", "log"), "utf8"), captured, "the snapshot itself never changes");

    await p.killProcesses(a);
    assert.ok(await writer);
    for (const s of [a, b, c]) assert.equal(await p.stop(s), true);
    assert.equal(await p.removeSnapshot("snap-lines"), true);
    assert.equal(await p.removeSnapshot("snap-lines"), false);
    snapshots.delete("snap-lines");
    const left = await subvolumes();
    assert.deepEqual(
      left.filter((s) => !s.startsWith("committed/scaffold-") && !s.startsWith("spare/")),
      [],
      "only the shared scaffold layer and the store's spares remain",
    );
    const layout = await detectCgroupLayout(installationScope(home!.path));
    const cgroups = await listCgroupIds(layout);
    for (const s of [a, b, c]) assert.equal(cgroups.includes(s), false, `no cgroup of ${s}`);
    for (const dir of freezer) assert.equal(existsSync(dir), false, `the freezer group ${dir} went with the sandbox`);
    assert.deepEqual(await network!.list(), []);
    assert.deepEqual(await network!.leaks(new Set()), []);
  });

  void it("what a frozen process wrote without fsync is in the snapshot", async () => {
    const a = id();
    await p.create(spec(a));
    let ready!: () => void;
    const written = new Promise<void>((r) => (ready = r));
    // Written through the page cache and never synced (dirty data lives 30 s before writeback),
    // then the process stays alive with the file open, so it is frozen by the snapshot.
    const holder = p
      .exec(a, {
        argv: ["sh", "-c", "head -c 8388608 /dev/urandom > /workspace/r && sha256sum < /workspace/r > /workspace/r.sum && echo written && exec sleep 1000 3>>/workspace/r"],
        onStdout: (b) => (b.toString().includes("written") ? ready() : undefined),
      })
      .catch((e: unknown) => e);
    await written;
    await snapshot(a, "snap-dirty");
    const dir = join(layers!.layerPath("snap-dirty"), "workspace");
    const data = await readFile(join(dir, "r"));
    assert.equal(data.length, 8 * 2 ** 20);
    assert.equal(createHash("sha256").update(data).digest("hex"), (await readFile(join(dir, "r.sum"), "utf8")).split(" ")[0]);
    await p.killProcesses(a);
    await holder;
    await p.stop(a);
  });

  void it("refusals: unknown sandbox → not_found, existing layer → conflict (the sandbox is thawed and works), sbx- ids → invalid, unknown snapshot → not_found and nothing left", async () => {
    await assert.rejects(p.snapshot("never-was", "snap-x"), isCode("not_found"));
    const a = id();
    await p.create(spec(a));
    await snapshot(a, "snap-taken");
    await assert.rejects(p.snapshot(a, "snap-taken"), isCode("conflict"));
    await assert.rejects(p.snapshot(a, `sbx-${a}`), isCode("invalid_argument"));
    await assert.rejects(p.snapshot(a, "../x"), isCode("invalid_argument"));
    assert.equal((await run(a, ["echo", "alive"])).out, "alive\n", "not left frozen by a refused snapshot");
    await assert.rejects(p.removeSnapshot(`sbx-${a}`), isCode("invalid_argument"));
    assert.equal(await p.removeSnapshot("never-was"), false);
    const b = id();
    await assert.rejects(p.create(spec(b, { from: "no-such-snapshot" })), isCode("not_found"));
    assert.equal((await p.list()).includes(b), false);
    assert.equal((await subvolumes()).includes(`active/sbx-${b}`), false);
    await p.stop(a);
    assert.equal(await p.removeSnapshot("snap-taken"), true);
    snapshots.delete("snap-taken");
  });

  void it("a sandbox left frozen by a control plane that died mid-snapshot is thawed by recover, and a frozen one can still be stopped", async () => {
    const a = id();
    const handle = await p.create(spec(a));
    await freezeCgroups(handle.providerState.freezer as string[]);
    const again = await createLocalProvider({ home: home!.path, layers: layers!, network: network! });
    providers.push(again);
    assert.equal(await again.recover(a, handle.providerState), "running");
    let out = "";
    await again.exec(a, { argv: ["echo", "thawed"], onStdout: (b) => (out += b.toString()) });
    assert.equal(out, "thawed\n");
    await again.stop(a);
    await p.close();

    const b = id();
    p = await createLocalProvider({ home: home!.path, layers: layers!, network: network! });
    providers.push(p);
    const hb = await p.create(spec(b));
    await freezeCgroups(hb.providerState.freezer as string[]);
    assert.equal(await p.stop(b), true);
    for (const dir of hb.providerState.freezer as string[]) assert.equal(existsSync(dir), false);
    assert.equal((await listCgroupIds(await detectCgroupLayout(installationScope(home!.path)))).includes(b), false);
  });

  void it("a guarded sandbox that keeps exec'ing can be snapshotted (its supervisor, which answers exec checks, is kept out of the freeze)", async () => {
    const a = id();
    await p.create(spec(a, { guard: { deny: [{ program: "rm", message: "paddock: 'rm' denied" }] } }));
    const busy = p.exec(a, { argv: ["sh", "-c", "while :; do /bin/true; done"] }).catch((e: unknown) => e);
    await until(async () => (await run(a, ["sh", "-c", "pgrep -f 'while [:]' >/dev/null && echo yes"])).out === "yes\n", 10_000, "the exec loop");
    for (let i = 0; i < 3; i++) {
      await snapshot(a, `snap-guard-${i}`);
      assert.equal((await run(a, ["echo", "ok"])).out, "ok\n");
    }
    assert.equal((await run(a, ["rm", "-f", "/tmp/x"])).code, 126, "still guarded after the thaw");
    await p.killProcesses(a);
    await busy;
    await p.stop(a);
    for (let i = 0; i < 3; i++) {
      assert.equal(await p.removeSnapshot(`snap-guard-${i}`), true);
      snapshots.delete(`snap-guard-${i}`);
    }
  });

  void it("setEnv merges into every later command's environment and returns the new state; services: none yet", async () => {
    const a = id();
    await p.create(spec(a, { env: { KEEP: "1", OVER: "old" } }));
    const state = await p.setEnv(a, { OVER: "new", ADDED: "yes" });
    assert.deepEqual([(state.env as Record<string, string>).KEEP, (state.env as Record<string, string>).OVER], ["1", "new"]);
    assert.equal((await run(a, ["sh", "-c", "echo $KEEP $OVER $ADDED"])).out, "1 new yes\n");
    await assert.rejects(p.setEnv("never-was", {}), isCode("not_found"));
    assert.deepEqual(await p.services(a), []);
    assert.deepEqual(await p.waitForServices(a, 1000), []);
    await assert.rejects(p.services("never-was"), isCode("not_found"));
    await p.stop(a);
  });

  void it("the v1 freezer (machines without cgroup2): a loop of vforks freezes every time; a frozen group is destroyed", { skip: existsSync("/sys/fs/cgroup/freezer/cgroup.procs") ? false : "no v1 freezer hierarchy" }, async () => {
    const dir = `/sys/fs/cgroup/freezer/paddock-test-${process.pid}`;
    await mkdir(dir);
    const loop = spawn("sh", ["-c", "while :; do /bin/true; done"], { stdio: "ignore" });
    try {
      await writeFile(join(dir, "cgroup.procs"), String(loop.pid));
      for (let i = 0; i < 40; i++) {
        await freezeCgroups([dir]);
        assert.equal((await readFile(join(dir, "freezer.state"), "utf8")).trim(), "FROZEN");
        await thawCgroups([dir]);
      }
      await freezeCgroups([dir]);
      // Frozen tasks of a v1 group ignore SIGKILL until thawed: destroy has to thaw first.
      await destroyCgroups([dir]);
      assert.equal(existsSync(dir), false);
    } finally {
      loop.kill("SIGKILL");
      await destroyCgroups([dir]).catch(() => undefined);
    }
  });
});
