/**
 * Test fixture for the native sandbox: a fresh temp dir per sandbox with upper/work/rootfs on the
 * host's ext4 and a small lower layer on its own tmpfs (overlayfs refuses a layer that lies inside
 * another lower, and `/` is a lower here), plus cgroups under /sys/fs/cgroup/{pids,memory}.
 * `stop()` undoes everything and is safe to call twice.
 */
import { execFileSync } from "node:child_process";
import { chownSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { AgentClient } from "../../src/providers/local/agent-client.ts";
import type { LaunchOptions, LaunchedSandbox } from "../../src/providers/local/launcher.ts";
import { launchSandbox, sandboxBinaryPath } from "../../src/providers/local/launcher.ts";
import type { ExecOptions } from "../../src/core/provider.ts";

export const ROOT_HOST_ID = 100000;
export const USER_HOST_ID = 101000;
/** A marker that only exists in the test's lower layer, never on the host. */
export const LAYER_PASSWD_MARK = "paddock:x:1000:1000:paddock test layer:/home/paddock:/bin/sh";

/** `{ skip }` for suites that need real root (namespaces, overlayfs, cgroups): visibly skipped otherwise. */
export const rootOnly = { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, overlayfs, cgroups)" };

let built = false;
/** `make -C native` once per test process. */
export function buildNative(): string {
  if (!built) {
    execFileSync("make", ["-s", "-C", new URL("../../native", import.meta.url).pathname], { stdio: "inherit" });
    built = true;
  }
  return sandboxBinaryPath();
}

export interface Fixture {
  dir: string;
  layers: string;
  upper: string;
  layer: string;
  cgroups: string[];
  sandbox: LaunchedSandbox;
  client: AgentClient;
  /** Run argv with stdout/stderr collected as strings. */
  run(argv: string[], opts?: Partial<ExecOptions>): Promise<{ code: number; out: string; err: string; timedOut: boolean }>;
  sh(script: string, opts?: Partial<ExecOptions>): Promise<{ code: number; out: string; err: string; timedOut: boolean }>;
  stop(): Promise<void>;
}

export interface FixtureOptions {
  mode: "session" | "build";
  /** Extra launch options merged over the defaults. */
  launch?: Partial<LaunchOptions>;
  /** Write into cgroup files before launch, e.g. { "pids.max": "64" } (v1 controller inferred). */
  cgroupLimits?: Record<string, string>;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

export async function waitGone(pid: number, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!isAlive(pid)) return true;
    await sleep(10);
  }
  return !isAlive(pid);
}

export function mountsMentioning(text: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.includes(text));
}

/** Host pids whose pid namespace is the sandbox's (found from its init's host pid). */
export function sandboxHostPids(initPid: number): number[] {
  const ns = readlinkSync(`/proc/${initPid}/ns/pid`);
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/ns/pid`) === ns) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

export function statusField(pid: number, field: string): string {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`));
  return (line ?? "").slice(field.length + 1).trim();
}

function makeLayer(layer: string): void {
  for (const d of ["workspace", "home/paddock", "usr/local", "etc"]) mkdirSync(join(layer, d), { recursive: true });
  chownSync(join(layer, "workspace"), USER_HOST_ID, USER_HOST_ID);
  chownSync(join(layer, "home/paddock"), USER_HOST_ID, USER_HOST_ID);
  // Build-mode root may write here: owned by the sandbox's root, not by (unmapped) host root.
  chownSync(join(layer, "usr/local"), ROOT_HOST_ID, ROOT_HOST_ID);
  writeFileSync(join(layer, "etc/passwd"), `root:x:0:0:root:/root:/bin/sh\n${LAYER_PASSWD_MARK}\n`);
}

function makeCgroups(name: string, limits: Record<string, string>): string[] {
  const dirs = ["pids", "memory"].map((c) => `/sys/fs/cgroup/${c}/${name}`);
  for (const d of dirs) mkdirSync(d);
  for (const [file, value] of Object.entries(limits)) {
    const controller = file.split(".")[0] ?? "";
    writeFileSync(`/sys/fs/cgroup/${controller}/${name}/${file}`, value);
  }
  return dirs;
}

async function removeCgroup(dir: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      await sleep(20); // tasks still exiting
    }
  }
}

/** What a fixture leaves behind; enough to clean up after another process launched it. */
export interface FixtureRecord {
  dir: string;
  layers: string;
  cgroups: string[];
  supervisorPid?: number;
  initPid?: number;
}

/** Kill the sandbox (SIGTERM to its supervisor), wait for it, free cgroups, mounts and dirs. */
export async function teardown(r: FixtureRecord): Promise<void> {
  if (r.supervisorPid !== undefined) {
    try {
      process.kill(r.supervisorPid, "SIGTERM");
    } catch {
      // already gone
    }
    if (!(await waitGone(r.supervisorPid)) && r.initPid !== undefined) process.kill(r.initPid, "SIGKILL");
    await waitGone(r.supervisorPid);
  }
  for (const d of r.cgroups) await removeCgroup(d);
  try {
    execFileSync("umount", [r.layers], { stdio: "ignore" });
  } catch {
    // not mounted
  }
  await rm(r.dir, { recursive: true, force: true });
}

export interface Prepared {
  opts: LaunchOptions;
  record: FixtureRecord;
  upper: string;
  layer: string;
}

/** Create the dirs, the layer and the cgroups a sandbox needs, without launching it. */
export async function prepareSandbox(fo: FixtureOptions): Promise<Prepared> {
  const dir = await mkdtemp("/tmp/paddock-test-");
  const layers = join(dir, "layers");
  mkdirSync(layers);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m,mode=0755", "paddock-test-layers", layers]);
  const layer = join(layers, "base");
  makeLayer(layer);
  const [upper, work, rootfs] = ["upper", "work", "rootfs"].map((d) => join(dir, d)) as [string, string, string];
  for (const d of [upper, work, rootfs]) mkdirSync(d);
  chownSync(upper, ROOT_HOST_ID, ROOT_HOST_ID);
  const cgroups = makeCgroups(`paddock-test-${dir.slice(-6)}`, fo.cgroupLimits ?? {});
  const opts: LaunchOptions = {
    layersDir: layers,
    lowers: ["base"],
    lowerAbs: ["/"],
    upper,
    work,
    rootfs,
    hostname: `paddock-${fo.mode}`,
    user: fo.mode === "build" ? { uid: 0, gid: 0 } : { uid: 1000, gid: 1000 },
    cgroups,
    tmpfs: [{ dst: "/tmp", size: "64m" }],
    listen: join(dir, "agent.sock"),
    caps: fo.mode,
    ...fo.launch,
  };
  return { opts, record: { dir, layers, cgroups }, upper, layer };
}

export async function startSandbox(fo: FixtureOptions): Promise<Fixture> {
  const binary = buildNative();
  const { opts, record, upper, layer } = await prepareSandbox(fo);
  const { dir, layers, cgroups } = record;
  const socket = opts.listen;
  let sandbox: LaunchedSandbox | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await teardown({ ...record, ...sandbox });
  };
  try {
    sandbox = await launchSandbox(binary, opts, join(dir, "launcher.log"));
  } catch (err) {
    await stop();
    throw err;
  }
  const client = new AgentClient(socket);
  const run: Fixture["run"] = async (argv, eo = {}) => {
    let out = "";
    let err = "";
    const r = await client.exec({
      argv,
      onStdout: (b) => (out += b.toString()),
      onStderr: (b) => (err += b.toString()),
      ...eo,
    });
    return { code: r.exitCode, out, err, timedOut: r.timedOut };
  };
  return {
    dir,
    layers,
    upper,
    layer,
    cgroups,
    sandbox,
    client,
    run,
    sh: (script, eo) => run(["sh", "-c", script], eo),
    stop,
  };
}
