/**
 * The local provider's stronger tier, `compute.isolation: gvisor`: the sandbox runs under gVisor's
 * user-space kernel (`runsc`, Debian's package) instead of sharing the host kernel through
 * namespaces. What stays the same as the namespaces tier (docs/sandbox.md, "gVisor tier"):
 * - the root filesystem: the same overlay (template layers + scaffold + base + writable layer),
 *   here mounted on the host over idmapped views of the layers (`paddock-sandbox idmap`) and
 *   handed to runsc as the OCI bundle's root: gVisor sees host 100000 + n as n, so layer ownership
 *   and what the session user writes (host 101000) are the same in both tiers;
 * - pid 1 is our agent (`paddock-sandbox agent`), dropping to the session user for every command
 *   and file operation, serving the same wire protocol on a unix socket the host reaches through
 *   a shared directory (runsc `--host-uds=create` makes the agent's socket a host socket);
 * - readiness is the agent's `ready` line, written to the container's stdout (a pipe to us);
 * - the network: runsc runs inside the sandbox's network namespace from the pool with
 *   `--network=host` (see `runscFlags` for why not gVisor's own stack), so the same veth, DNAT and
 *   nft rules leave the gateway as the only way out;
 * - limits: runsc runs inside the sandbox's cgroups (memory, cpu, pids, joined before exec, with
 *   `--ignore-cgroups` so runsc leaves them alone): the sentry's memory (the guest's included) and
 *   CPU are the sandbox's. Guest processes are not host processes, so `compute.pids` is enforced
 *   by gVisor's kernel as RLIMIT_NPROC of the session user, and the host pids limit is a backstop
 *   for the sentry's own threads and ptrace stubs.
 * What cannot hold is refused at validation (src/config/schema.ts) or by the provider: the exec
 * guard (fanotify sees no exec inside gVisor), services, snapshots (the sentry caches writes the
 * host freezer cannot capture) and builds.
 */
import { spawn } from "node:child_process";
import { closeSync, fstatSync, openSync } from "node:fs";
import { chmod, chown, copyFile, mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import type { Readable } from "node:stream";
import { PaddockError, runCommand, unavailable } from "../../core/index.ts";
import { HOST_ID_BASE } from "./ids.ts";
import { waitForExit } from "./procs.ts";

/** Upper bound on launch-to-ready (a start is ~0.5 s here); past it the launch is killed and rejected. */
const READY_LIMIT_MS = 60_000;

/**
 * Where things are inside a gVisor sandbox: under the /run tmpfs (nothing lands in the layer), at
 * names the host's /run does not have (the gofer resolves mount points in the rootfs first).
 */
const AGENT_IN_SANDBOX = "/run/.paddock-gvisor/agent";
const SOCKET_DIR_IN_SANDBOX = "/run/.paddock-gvisor/sock";
export const GVISOR_SOCKET_NAME = "agent.sock";

/** Where one installation's gVisor sandboxes live: /run/paddock-gvisor/<scope>, traversable (0711), not listable. */
export function gvisorRootDir(scope: string): string {
  return join("/run/paddock-gvisor", scope);
}

/**
 * A fresh dir for one sandbox (0700, owned by host 100000, root of the sandbox id range): only
 * host root and runsc's gofer, which opens the bundle's files itself with few privileges, reach
 * what is in it. Its parents are 0711 (traversable, not listable).
 */
export async function makeGvisorSandboxDir(root: string, id: string): Promise<string> {
  for (const d of [dirname(root), root]) {
    await mkdir(d, { recursive: true });
    await chmod(d, 0o711);
  }
  const dir = join(root, id);
  // A release of the installation's last sandbox may remove `root` in between: make it again once.
  await mkdir(dir, { mode: 0o700 }).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
    await mkdir(root, { recursive: true, mode: 0o711 });
    await mkdir(dir, { mode: 0o700 });
  });
  await chown(dir, HOST_ID_BASE, HOST_ID_BASE);
  return dir;
}

/**
 * The host pids limit of one gVisor sandbox: its guest's processes are not host processes, but
 * the ptrace platform runs each on host stub processes and threads, next to the sentry's and
 * gofer's Go threads. Measured here (runsc 2022-12): idle ~34 host tasks, ~9 more per guest
 * process, and a fork bomb held to 64 guest processes by RLIMIT_NPROC peaked at ~3,100 host tasks
 * (~7,000 while it was being killed). Hitting this limit makes the sentry panic (the sandbox dies,
 * the host is untouched), so it is a generous backstop; `compute.pids` itself is the guest's
 * RLIMIT_NPROC, which makes fork fail with EAGAIN.
 */
export function gvisorHostPids(pids: number): number {
  return pids * 128 + 4096;
}

/**
 * What the local provider can do for a sandbox under gVisor (its `capabilities` are the
 * namespaces tier's): no exec guard, services or snapshots, each refused with `unsupported`.
 */
export const GVISOR_CAPABILITIES = { snapshot: false, execGuard: false, services: false } as const;

/** runsc on this machine: present and runnable (`runsc --version`), probed once per provider. */
export interface GvisorRuntime {
  /** Absolute path of runsc. */
  runsc: string;
  version: string;
}

/** Finds runsc and checks it runs; null (with why) when this machine has no usable gVisor. */
export async function probeGvisor(): Promise<{ runtime: GvisorRuntime | null; detail: string }> {
  const which = await runCommand(["sh", "-c", "command -v runsc"], { allowFailure: true }).catch(() => null);
  const runsc = which?.code === 0 ? which.stdout.trim() : "";
  if (!runsc) return { runtime: null, detail: "runsc (gVisor) is not installed: apt-get install runsc" };
  const v = await runCommand([runsc, "--version"], { allowFailure: true }).catch((err: unknown) => ({ code: 1, stdout: "", stderr: String(err) }));
  if (v.code !== 0) return { runtime: null, detail: `runsc --version failed: ${v.stderr.trim() || `exit ${v.code}`}` };
  const version = /runsc version (\S+)/.exec(v.stdout)?.[1] ?? v.stdout.trim();
  return { runtime: { runsc, version }, detail: `runsc ${version}` };
}

export interface GvisorLaunchOptions {
  runtime: GvisorRuntime;
  /** runsc's state directory (`--root`), one per installation. */
  stateRoot: string;
  /** The container id (the sandbox id). */
  id: string;
  /**
   * The sandbox's gVisor dir (`makeGvisorSandboxDir`): bundle (config.json), rootfs mount point,
   * idmapped views, socket dir, and copies of the files bound into it (what the gofer opens is
   * kept here, never in the provider's 0700 run dir).
   */
  dir: string;
  /** Overlay layers: directory the relative `lowers` are in, lowers TOPMOST FIRST, absolute lowers below them. */
  layersDir: string;
  lowers: string[];
  lowerAbs: string[];
  upper: string;
  work: string;
  hostname: string;
  user: { uid: number; gid: number };
  /** The launcher binary (bound read-only into the sandbox; its `agent` mode is pid 1). */
  agentBinary: string;
  /** cgroup directories runsc (and so the sentry, gofer and stubs) joins before it starts. */
  cgroups: string[];
  /** The guest's process limit (RLIMIT_NPROC of every user inside). */
  pids: number;
  /** Network namespace from the pool; absent: loopback only (`--network=none`). */
  netns?: string;
  roBinds: { src: string; dst: string }[];
  /** Paths to hide: a directory gets an empty read-only tmpfs, a file an empty read-only file. */
  masks: { path: string; dir: boolean }[];
  tmpfs: { dst: string; size: string }[];
  logFile: string;
}

/** What the provider records to find a gVisor sandbox again. */
export interface GvisorLaunched {
  /** Host pid of the sandbox process (`runsc boot`): alive as long as the sandbox is. */
  sandboxPid: number;
  /** Host path of the agent's socket. */
  socket: string;
  rootfs: string;
}

const SESSION_CAPS = ["CAP_SETUID", "CAP_SETGID", "CAP_KILL"];

/** CLONE_NEWUSER, NEWNS, NEWPID, NEWNET, NEWIPC, NEWUTS, NEWCGROUP, NEWTIME. */
const CLONE_NAMESPACE_FLAGS = [0x10000000, 0x00020000, 0x20000000, 0x40000000, 0x08000000, 0x04000000, 0x02000000, 0x00000080];

/**
 * In-sandbox seccomp filter (runsc `--oci-seccomp`; enforced by gVisor's kernel): gVisor is the
 * boundary, this keeps the agent's own fail-closed check (seccomp on, no_new_privs) meaningful,
 * and refuses what no session needs.
 */
const SECCOMP = {
  defaultAction: "SCMP_ACT_ALLOW",
  architectures: ["SCMP_ARCH_X86_64"],
  syscalls: [
    {
      names: ["ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "init_module", "finit_module", "delete_module", "mount", "umount2", "pivot_root", "unshare", "setns", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd"],
      action: "SCMP_ACT_ERRNO",
      errnoRet: 1,
    },
    // As under namespaces (native/restrict.c): clone with any namespace flag, or the session user
    // gets a user namespace with every capability in it (gVisor's kernel allows that, and unshare
    // being refused does not stop clone). clone3, which hides its flags from seccomp, needs no
    // rule: this gVisor does not implement it (ENOSYS, and libc falls back to clone), while a rule
    // for it here breaks thread creation (test/providers/gvisor-attacks.test.ts checks both).
    ...CLONE_NAMESPACE_FLAGS.map((flag) => ({
      names: ["clone"],
      action: "SCMP_ACT_ERRNO",
      errnoRet: 1,
      args: [{ index: 0, value: flag, valueTwo: flag, op: "SCMP_CMP_MASKED_EQ" }],
    })),
  ],
};

/** The OCI runtime spec (config.json) of one gVisor sandbox. */
export function gvisorSpec(o: GvisorLaunchOptions): Record<string, unknown> {
  const caps = SESSION_CAPS;
  const mounts: Record<string, unknown>[] = [
    { destination: "/proc", type: "proc", source: "proc" },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    ...o.tmpfs.map((t) => ({ destination: t.dst, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", `size=${t.size}`, t.dst === "/tmp" ? "mode=1777" : "mode=755"] })),
    { destination: AGENT_IN_SANDBOX, type: "bind", source: join(o.dir, "files", "agent"), options: ["rbind", "ro"] },
    { destination: SOCKET_DIR_IN_SANDBOX, type: "bind", source: join(o.dir, "sock"), options: ["rbind", "rw"] },
    ...o.roBinds.map((b, i) => ({ destination: b.dst, type: "bind", source: join(o.dir, "files", String(i)), options: ["rbind", "ro"] })),
    ...o.masks.map((m) =>
      m.dir
        ? { destination: m.path, type: "tmpfs", source: "tmpfs", options: ["ro", "size=4k", "mode=555"] }
        : { destination: m.path, type: "bind", source: join(o.dir, "files", "empty"), options: ["rbind", "ro"] },
    ),
  ];
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [AGENT_IN_SANDBOX, "agent", "--listen", `${SOCKET_DIR_IN_SANDBOX}/${GVISOR_SOCKET_NAME}`, "--ready-fd", "1", "--user", `${o.user.uid}:${o.user.gid}`],
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      cwd: "/",
      noNewPrivileges: true,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: "RLIMIT_NPROC", hard: o.pids, soft: o.pids }],
    },
    root: { path: join(o.dir, "rootfs"), readonly: false },
    hostname: o.hostname,
    mounts,
    linux: {
      namespaces: [
        { type: "pid" },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
        // With a network: runsc runs in the pool's namespace already (nsenter, see runscFlags).
        ...(o.netns ? [] : [{ type: "network" }]),
      ],
      seccomp: SECCOMP,
    },
  };
}

/**
 * runsc's global flags for one installation (every call about a sandbox uses the same ones).
 * `host` is the host kernel's network stack *of the namespace runsc runs in*, the sandbox's own
 * from the pool: runsc 2022-12's own stack (`sandbox`) refuses every network namespace on this
 * kernel (it takes /proc/sys/net/core/rmem_default, which newer kernels show in every namespace,
 * as the mark of the root one). So the sandbox's sockets are the namespace's sockets, and the
 * veth, DNAT and nft rules that leave the gateway as the only way out apply to them unchanged.
 */
export function runscFlags(stateRoot: string, network: "host" | "none"): string[] {
  // PADDOCK_RUNSC_DEBUG=<dir>: runsc's debug logs there (an operator's aid; never on by default).
  const debug = process.env.PADDOCK_RUNSC_DEBUG ? ["--debug", `--debug-log=${process.env.PADDOCK_RUNSC_DEBUG.replace(/\/?$/, "/")}`] : [];
  return ["--root", stateRoot, `--network=${network}`, "--host-uds=create", "--oci-seccomp", "--ignore-cgroups", ...debug];
}

/**
 * Mount the sandbox's overlay on the host at `rootfs` (runsc's gofer serves it to the sandbox),
 * built from idmapped views of its layers (`paddock-sandbox idmap`): on-disk ids 100000 + n show as
 * n, so gVisor sees root and the session user as 0 and 1000, and what the session user writes
 * lands on disk as 101000, as under the namespaces tier. Host files (a `base: host` lower) show
 * as nobody.
 */
async function mountRootfs(o: GvisorLaunchOptions, rootfs: string): Promise<void> {
  const views = join(o.dir, "views");
  await mkdir(views, { mode: 0o700 });
  const lowers = [...o.lowers.map((l) => resolve(o.layersDir, l)), ...o.lowerAbs];
  // Upper and work dir must be on one mount: their nearest common directory is viewed as one.
  const writable = commonDir(o.upper, o.work);
  const pairs: string[] = [];
  for (const [i, l] of lowers.entries()) {
    await mkdir(join(views, String(i)));
    pairs.push(l, join(views, String(i)));
  }
  await mkdir(join(views, "w"));
  pairs.push(writable, join(views, "w"));
  // The overlay's work dir is written by the mounter (host root, shown as the sandbox's root).
  await chown(o.work, HOST_ID_BASE, HOST_ID_BASE);
  await runCommand([o.agentBinary, "idmap", ...pairs]);
  const lowerdir = lowers.map((_, i) => `views/${i}`).join(":");
  const upper = join("views/w", relative(writable, o.upper));
  const work = join("views/w", relative(writable, o.work));
  // Relative names (resolved against the sandbox dir, the cwd) keep the option string short.
  await runCommand(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${lowerdir},upperdir=${upper},workdir=${work}`, rootfs], { cwd: o.dir });
}

function commonDir(a: string, b: string): string {
  const pa = a.split("/");
  const pb = b.split("/");
  let i = 0;
  while (i < pa.length && i < pb.length && pa[i] === pb[i]) i++;
  return pa.slice(0, i).join("/") || "/";
}

/**
 * Start the sandbox: overlay, bundle, `runsc run --detach` inside its cgroups, and resolve once the
 * agent wrote `ready` (never on a timer). Fails closed: on any error everything started is removed
 * by the caller's `releaseGvisor`.
 */
export async function launchGvisor(o: GvisorLaunchOptions): Promise<GvisorLaunched> {
  const rootfs = join(o.dir, "rootfs");
  const sockDir = join(o.dir, "sock");
  // Root's (root inside too: no user namespace), 0700: the session user cannot reach the agent's socket.
  await mkdir(sockDir, { recursive: true, mode: 0o700 });
  // The work dir's index is created by the host's root; the upper's root is root inside.
  // Copies the gofer can reach (host root's files stay out of its reach): the agent binary, the
  // resolver/hosts/CA files, and an empty file to bind over masked files.
  const files = join(o.dir, "files");
  await mkdir(files, { mode: 0o755 });
  await copyFile(o.agentBinary, join(files, "agent"));
  await chmod(join(files, "agent"), 0o755);
  for (const [i, b] of o.roBinds.entries()) {
    await copyFile(b.src, join(files, String(i)));
    await chmod(join(files, String(i)), 0o644);
  }
  await writeFile(join(files, "empty"), "", { mode: 0o444 });
  await mkdir(rootfs, { mode: 0o755 });
  await mountRootfs(o, rootfs);
  await writeFile(join(o.dir, "config.json"), JSON.stringify(gvisorSpec(o), null, 1), { mode: 0o600 });
  await mkdir(o.stateRoot, { recursive: true, mode: 0o700 });
  const flags = runscFlags(o.stateRoot, o.netns ? "host" : "none");
  const enter = o.netns ? ["/usr/bin/nsenter", `--net=${o.netns}`, "--"] : [];
  const log = openSync(o.logFile, "a", 0o600);
  const logStart = fstatSync(log).size;
  let child;
  try {
    // Joins the sandbox's cgroups, then becomes runsc: the sentry, gofer and stubs it forks are in
    // them from their first instruction. Paths are arguments, never interpolated into the script.
    child = spawn(
      "/bin/sh",
      ["-c", 'for g in "$@"; do [ "$g" = -- ] && break; echo $$ > "$g/cgroup.procs" || exit 125; shift; done; shift; exec "$@"', "sh", ...o.cgroups, "--", ...enter, o.runtime.runsc, ...flags, "run", "--detach", "--bundle", o.dir, o.id],
      { detached: true, stdio: ["ignore", "pipe", log], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } },
    );
  } finally {
    closeSync(log);
  }
  const ready = child.stdout as Readable;
  // `runsc run --detach` exits once the container started; its state is saved only then.
  const detached = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  let stuck: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      let text = "";
      child.once("error", (err) => reject(unavailable(`cannot run ${o.runtime.runsc}: ${err.message}`, err)));
      stuck = setTimeout(() => reject(unavailable(`gVisor sandbox not ready after ${READY_LIMIT_MS} ms (log: ${o.logFile})`)), READY_LIMIT_MS);
      ready.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8");
        if (/^ready$/m.test(text)) resolve();
      });
      ready.once("close", () => {
        if (/^ready$/m.test(text)) return;
        void readFile(o.logFile)
          .then((b) => b.subarray(logStart).toString("utf8").trim().split("\n").slice(-5).join("; "))
          .catch(() => "")
          .then((why) => reject(new PaddockError("unavailable", `gVisor sandbox did not start: ${why || "runsc exited without a message"} (log: ${o.logFile})`)));
      });
    });
  } catch (err) {
    child.unref();
    throw err;
  } finally {
    clearTimeout(stuck);
    ready.destroy();
  }
  // Referenced until runsc returns: nothing else may be keeping the event loop alive meanwhile.
  let returned: NodeJS.Timeout | undefined;
  const code = await Promise.race([detached, new Promise<"stuck">((r) => (returned = setTimeout(() => r("stuck"), READY_LIMIT_MS)))]);
  clearTimeout(returned);
  child.unref();
  if (code !== 0) throw unavailable(`runsc run --detach for ${o.id} ${code === "stuck" ? "did not return" : `exited with ${String(code)}`} (log: ${o.logFile})`);
  const sandboxPid = await gvisorSandboxPid({ runtime: o.runtime, stateRoot: o.stateRoot, id: o.id, ...(o.netns ? { netns: o.netns } : {}) });
  if (sandboxPid === null) throw unavailable(`gVisor sandbox ${o.id} reported ready but runsc does not know it`);
  // gVisor refused the agent's chmod of its host-backed socket; the host sets it (its dir is 0700 anyway).
  await chmod(join(sockDir, GVISOR_SOCKET_NAME), 0o600);
  return { sandboxPid, socket: join(sockDir, GVISOR_SOCKET_NAME), rootfs };
}

/**
 * Which runsc container a call is about. `netns`: the sandbox's network namespace, which runsc
 * commands about it must run in: runsc reaches a sandbox through an abstract unix socket, and
 * those belong to a network namespace (from outside, a running sandbox looks stopped).
 */
export interface GvisorRef {
  runtime: GvisorRuntime;
  stateRoot: string;
  id: string;
  netns?: string;
}

function runsc(ref: GvisorRef, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const enter = ref.netns ? ["/usr/bin/nsenter", `--net=${ref.netns}`, "--"] : [];
  return runCommand([...enter, ref.runtime.runsc, "--root", ref.stateRoot, ...args], { allowFailure: true });
}

/** The host pid of the sandbox's `runsc boot` process, or null when runsc has no such container. */
export async function gvisorSandboxPid(ref: GvisorRef): Promise<number | null> {
  const r = await runsc(ref, ["state", ref.id]);
  if (r.code !== 0) return null;
  try {
    const state = JSON.parse(r.stdout) as { pid?: unknown; status?: unknown };
    return typeof state.pid === "number" && state.pid > 0 && state.status !== "stopped" ? state.pid : null;
  } catch {
    return null;
  }
}

/**
 * Guest processes of the container (pid as gVisor numbers them, uid inside) from `runsc ps`'s
 * table (its JSON form has no uids in this release). The agent and its connection handlers are
 * uid 0; every command runs as the session user. Rejects `unavailable` when runsc cannot list them.
 */
export async function gvisorProcesses(ref: GvisorRef): Promise<{ pid: number; uid: number }[]> {
  const r = await runsc(ref, ["ps", ref.id]);
  // Never "no processes" for a sandbox runsc cannot see: a kill would then be a silent no-op.
  if (r.code !== 0) throw unavailable(`runsc cannot list the processes of gVisor sandbox ${ref.id}: ${r.stderr.trim().split("\n").at(-1) || `exit ${r.code}`}`);
  const out: { pid: number; uid: number }[] = [];
  for (const line of r.stdout.split("\n").slice(1)) {
    const [uid, pid] = line.trim().split(/\s+/);
    if (uid !== undefined && pid !== undefined && /^\d+$/.test(uid) && /^\d+$/.test(pid)) out.push({ pid: Number(pid), uid: Number(uid) });
  }
  return out;
}

/** Signal one guest process (never starts a process inside). False when it was already gone. */
export async function gvisorKill(ref: GvisorRef, pid: number, signal: string): Promise<boolean> {
  const r = await runsc(ref, ["kill", "--pid", String(pid), ref.id, signal.replace(/^SIG/, "")]);
  return r.code === 0;
}

/**
 * Stop the sandbox and free what runsc and the mount held: `runsc delete --force` (kills the
 * sentry, gofer and every guest process, removes runsc's state), then the rootfs overlay. Safe to
 * call for a half-started or already gone sandbox.
 */
export async function releaseGvisor(ref: GvisorRef, dir: string): Promise<void> {
  const pid = await gvisorSandboxPid(ref);
  if (pid !== null) {
    // A power cut, as under namespaces: the sandbox process first (its guest and gofer go with
    // it), then runsc's bookkeeping, which is quick once there is nothing left to stop gracefully.
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
    await waitForExit(pid, 10_000);
  }
  await runsc(ref, ["delete", "--force", ref.id]);
  const rootfs = join(dir, "rootfs");
  const mounted = (await readFile("/proc/self/mountinfo", "utf8")).split("\n").some((l) => l.split(" ")[4] === rootfs);
  if (mounted) {
    const r = await runCommand(["umount", rootfs], { allowFailure: true });
    // Still busy (a gofer exiting): detach it, the kernel frees it once the last user goes.
    if (r.code !== 0) await runCommand(["umount", "-l", rootfs]);
  }
  const views = join(dir, "views");
  const viewMounts = (await readFile("/proc/self/mountinfo", "utf8")).split("\n").map((l) => l.split(" ")[4] ?? "").filter((m) => m.startsWith(`${views}/`));
  for (const m of viewMounts) {
    const r = await runCommand(["umount", m], { allowFailure: true });
    if (r.code !== 0) await runCommand(["umount", "-l", m]);
  }
  // Never recursive into a mounted rootfs or view: unmounted (or detached) above, or this line is not reached.
  await rm(dir, { recursive: true, force: true });
  // The installation's gVisor dir goes with its last sandbox (another one may be starting: then it stays).
  await rmdir(dirname(dir)).catch(() => undefined);
}
