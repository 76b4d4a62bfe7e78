import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { join, relative } from "node:path";
import { isIP, isIPv4 } from "node:net";
import { lookup } from "node:dns/promises";
import { chown } from "node:fs/promises";
import type { Readable } from "node:stream";
import type { ExecOptions, ExecResult, FileEntry, FileEvent, FileInfo, FileWatch, GuardDenial, LayerStore, Provider, ProviderCapabilities, ProviderHealth, SandboxHandle, SandboxSpec, ServiceStatus, StopOptions } from "../../core/index.ts";
import { PaddockError, SingleFlight, conflict, invalid, notFound, unavailable, unsupported } from "../../core/index.ts";
import { AgentClient } from "./agent-client.ts";
import { launchSandbox, readGuardLog, sandboxBinaryPath } from "./launcher.ts";
import type { CgroupLayout } from "./cgroups.ts";
import { sandboxMemoryUsage, cgroupDirs, cgroupPids, createCgroups, destroyCgroups, detectCgroupLayout, excludeSupervisor, freezeCgroups, pidsUsage, signalWorkGroup, thawCgroups } from "./cgroups.ts";
import { HOST_ID_BASE, SESSION_GID, SESSION_HOME, SESSION_UID, SESSION_USER, WORKSPACE, idMap } from "./ids.ts";
import { ensureScaffold, handOverToSessionUser } from "./scaffold.ts";
import { writeSessionUser } from "./session-user.ts";
import { ensureDebianBase } from "./debian.ts";
import { isAlive, processStartTime, waitForExit } from "./procs.ts";
import { NO_DNS_RESOLV_CONF, hostsFile, resolvConf, type NetworkManager } from "./network.ts";
import { readServices, stopServicesCleanly, waitForServices, writeServicesFile } from "./services.ts";
import type { GvisorRef, GvisorRuntime } from "./gvisor.ts";
import { gvisorHostPids, gvisorKill, gvisorProcesses, gvisorRootDir, launchGvisor, makeGvisorSandboxDir, probeGvisor, releaseGvisor } from "./gvisor.ts";

/**
 * The `local` provider: sessions are Linux sandboxes on this machine (see docs/sandbox.md). The
 * native launcher builds the namespaces, overlay and seccomp filter; this file wires layers,
 * cgroups and the launcher together and keeps the table of live sandboxes.
 */
export interface LocalProviderOptions {
  /** Data directory (`$PADDOCK_HOME`): masked inside every sandbox. */
  home: string;
  layers: LayerStore;
  /** Directory for sockets and mount points; default /run/paddock/<digest of home>. */
  runDir?: string;
  /** The launcher binary; default build/paddock-sandbox in the checkout. */
  binary?: string;
  /** Progress lines for long one-off work (building the debian-12 base). */
  log?: (line: string) => void;
  /** Per-sandbox network namespaces whose only way out is the egress gateway. */
  network?: NetworkManager;
}

/** What the provider records per sandbox (stored by the control plane, used by `recover`). */
interface LocalSandboxState {
  supervisorPid: number;
  initPid: number;
  initStartTime: string;
  socket: string;
  cgroups: string[];
  /** The work group's pids directory, where every command runs (absent for sandboxes started
   * before commands had a group of their own). */
  workPids?: string;
  /** `compute.pids`: the work group's limit. */
  pidsLimit?: number;
  runDir: string;
  layerKey: string;
  upperDir: string;
  env: Record<string, string>;
  /** Set when the sandbox has a network (its own netns, linked to the gateway). */
  sandboxIp?: string;
  /** Set when the sandbox has an exec guard: the supervisor's denial log (in the run dir). */
  guardLog?: string;
  /** Names of the services the sandbox's supervisor runs (in start order), and when it booted. */
  services?: string[];
  servicesSince?: string;
  /** The cgroups that freeze every process in the sandbox (`freezeCgroups`; its supervisor is kept
   * out); absent for sandboxes started before snapshots existed, or on a machine with no freezer
   * (v1 without a freezer hierarchy): no snapshots of those. */
  freezer?: string[];
  /** `compute.isolation`: absent for the namespaces tier. Under gvisor, `initPid` and
   * `supervisorPid` are both the host pid of the sandbox process (`runsc boot`). */
  isolation?: "gvisor";
  /** gvisor: the network namespace runsc commands about the sandbox run in (absent: none). */
  gvisorNetns?: string;
  [k: string]: unknown;
}

export async function createLocalProvider(opts: LocalProviderOptions): Promise<Provider> {
  const scope = installationScope(opts.home);
  const cgroups = await detectCgroupLayout(scope);
  const runDir = opts.runDir ?? join("/run/paddock", scope);
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  await raiseFanotifyGroups(FANOTIFY_GROUPS, opts.log);
  // Probed once: a gvisor session on a machine without a working runsc is refused, never run
  // under namespaces instead.
  const gvisor = await probeGvisor();
  if (!gvisor.runtime) opts.log?.(`compute.isolation: gvisor unavailable: ${gvisor.detail}`);
  return new LocalProvider(opts, cgroups, runDir, opts.binary ?? sandboxBinaryPath(), gvisor);
}

/**
 * Each sandbox with an exec guard holds one fanotify group, owned by root (its supervisor). The
 * kernel's default of 128 groups per user would stop the 129th guarded session from starting, so
 * the limit is raised to this at start (never lowered).
 */
const FANOTIFY_GROUPS = 4096;
const FANOTIFY_GROUPS_FILE = "/proc/sys/fs/fanotify/max_user_groups";

async function raiseFanotifyGroups(wanted: number, log?: (line: string) => void): Promise<void> {
  const now = Number((await readFile(FANOTIFY_GROUPS_FILE, "utf8").catch(() => "")).trim());
  if (!Number.isFinite(now) || now === 0 || now >= wanted) return;
  await writeFile(FANOTIFY_GROUPS_FILE, String(wanted)).then(
    () => log?.(`raised fs.fanotify.max_user_groups from ${now} to ${wanted} (one per session with an exec guard)`),
    (err: unknown) => log?.(`could not raise fs.fanotify.max_user_groups (${now}): ${String(err)}; at most ${now} sessions with an exec guard can run at once`),
  );
}

/** The run directory's entry holding files shared by sandboxes (not a sandbox id: ids start with a letter and never contain "."). */
export const SHARED_FILES = ".shared-files";

/**
 * The run directory's entry holding runsc's state (`--root`) of the installation's gVisor
 * sandboxes: not a sandbox id either, and it must outlive a control-plane restart (the orphan
 * sweep keeps it), or the sandboxes recovered then could no longer be listed or signalled.
 */
export const RUNSC_STATE = ".runsc";

/** A short stable name for one installation (one data directory) on this machine. */
export function installationScope(home: string): string {
  return createHash("sha256").update(home).digest("hex").slice(0, 12);
}

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

class LocalProvider implements Provider {
  readonly name = "local";
  readonly capabilities: ProviderCapabilities;
  private readonly live = new Map<string, LocalSandboxState>();
  /** Files written into the run directory's shared-files directory by this process (see sharedFile). */
  private readonly sharedFiles = new Set<string>();
  private readonly kills = new Map<string, Promise<number>>();
  /** The base and scaffold layers are made once, however many sandboxes start at the same time. */
  private readonly shared = new SingleFlight<string>();
  /** One snapshot at a time per sandbox: a second one's thaw must not end the first one's freeze. */
  private readonly snapshots = new Map<string, Promise<unknown>>();

  constructor(
    private readonly opts: LocalProviderOptions,
    private readonly cgroupLayout: CgroupLayout,
    private readonly runDir: string,
    private readonly binary: string,
    private readonly gvisor: { runtime: GvisorRuntime | null; detail: string },
  ) {
    this.capabilities = {
      kind: "local", selfHosted: true, layers: true, network: "netns", snapshot: true, execGuard: true,
      services: true, fileOps: true, ports: true, warmPool: false,
      isolation: gvisor.runtime ? ["namespaces", "gvisor"] : ["namespaces"],
    };
  }

  /** runsc's state directory for this installation's gVisor sandboxes. */
  private get runscRoot(): string {
    return join(this.runDir, RUNSC_STATE);
  }

  /** The runsc container of a gVisor sandbox. */
  private gvisorRef(id: string, netns: string | undefined): GvisorRef {
    return { runtime: this.gvisor.runtime ?? { runsc: "runsc", version: "" }, stateRoot: this.runscRoot, id, ...(netns ? { netns } : {}) };
  }

  /** A gVisor sandbox's own dir (bundle, rootfs, socket), outside the 0700 run dir (see gvisor.ts). */
  private gvisorDir(id: string): string {
    return join(gvisorRootDir(installationScope(this.opts.home)), id);
  }

  /** What a gvisor sandbox cannot have, refused before anything is prepared (never run without it). */
  private gvisorRuntime(spec: SandboxSpec): GvisorRuntime {
    const runtime = this.gvisor.runtime;
    if (!runtime) throw unsupported(this, "run compute.isolation: gvisor", `${this.gvisor.detail}; use isolation: namespaces`);
    if (spec.mode === "build") throw unsupported(this, "build templates under gVisor", "builds run under namespaces; only sessions use the gvisor tier");
    if (spec.guard && spec.guard.deny.length > 0)
      throw unsupported(this, "enforce guardrails.commands.deny under gVisor", "the exec guard (fanotify) cannot see execs inside gVisor's kernel; use isolation: namespaces");
    if (spec.services?.length) throw unsupported(this, "run services under gVisor", "use isolation: namespaces");
    if (spec.from !== undefined) throw unsupported(this, "start a gVisor sandbox from a snapshot", "snapshots are a namespaces-tier feature (GVISOR_CAPABILITIES)");
    return runtime;
  }

  async create(spec: SandboxSpec): Promise<SandboxHandle> {
    // A tier this provider does not run is refused, never quietly replaced by the default.
    if (spec.isolation && !this.capabilities.isolation.includes(spec.isolation)) throw unsupported(this, `run isolation tier ${spec.isolation}`, `it runs ${this.capabilities.isolation.join(", ")}`);
    if (this.live.has(spec.id)) throw new PaddockError("conflict", `sandbox ${spec.id} already exists`);
    if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(spec.id)) throw invalid(`bad sandbox id ${JSON.stringify(spec.id)}`);
    const gvisor = spec.isolation === "gvisor" ? this.gvisorRuntime(spec) : null;
    const lowers = await this.lowerLayers(spec);
    if (spec.from !== undefined && !(await this.opts.layers.has(spec.from))) throw notFound("snapshot", spec.from);
    const dir = join(this.runDir, spec.id);
    const rootfs = join(dir, "rootfs");
    await mkdir(rootfs, { recursive: true, mode: 0o700 });
    const layerKey = `sbx-${spec.id}`;
    // The three independent preparations run at once: they are most of a session start's time.
    const prepared = await Promise.allSettled([
      spec.from !== undefined
        ? this.opts.layers.prepareFrom(spec.from, layerKey, { maxBytes: spec.compute.diskBytes })
        : this.opts.layers.prepare(layerKey, { maxBytes: spec.compute.diskBytes }),
      createCgroups(this.cgroupLayout, spec.id, gvisor ? { ...spec.compute, pids: gvisorHostPids(spec.compute.pids) } : spec.compute),
      this.attachNetwork(spec),
    ] as const);
    const cleanup = async () => {
      // A rootfs still mounted is never removed recursively (that would reach into its layers).
      if (gvisor && !(await releaseGvisor(this.gvisorRef(spec.id, preparedNet.status === "fulfilled" ? preparedNet.value?.netnsPath : undefined), this.gvisorDir(spec.id)).then(() => true, () => false))) return;
      await destroyCgroups(cgroupDirs(this.cgroupLayout, spec.id)).catch(() => undefined);
      await this.opts.network?.release(spec.id).catch(() => undefined);
      await this.opts.layers.remove(layerKey).catch(() => undefined);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    };
    const [preparedLayer, preparedCgroups, preparedNet] = prepared;
    if (preparedLayer.status === "rejected" || preparedCgroups.status === "rejected" || preparedNet.status === "rejected") {
      await cleanup();
      throw prepared.find((r): r is PromiseRejectedResult => r.status === "rejected")?.reason;
    }
    const active = preparedLayer.value;
    const groups = preparedCgroups.value;
    const net = preparedNet.value;
    try {
      // The upper's root directory is the merged root's owner: root inside, never host root.
      await chown(active.upperDir, HOST_ID_BASE, HOST_ID_BASE);
      const socket = join(dir, "agent.sock");
      const build = spec.mode === "build";
      if (spec.sessionUser && !build) {
        writeSessionUser(active.upperDir, lowers.layers.map((l) => join(this.opts.layers.committedDir, l)), spec.sessionUser);
      }
      // Sessions only: a build runs as root and installs what the environment needs.
      const guard = !build && spec.guard && spec.guard.deny.length > 0 ? { ...spec.guard, file: join(dir, "guard"), log: join(dir, "guard.log") } : undefined;
      // Services start with the environment commands get (egress settings included).
      const services = spec.services?.length ? spec.services : undefined;
      const servicesSince = new Date().toISOString();
      if (gvisor) {
        const state = await this.launchUnderGvisor(gvisor, spec, { dir, lowers, upper: active.upperDir, work: active.workDir, layerKey, groups, net });
        this.live.set(spec.id, state);
        this.opts.network?.started(spec.id);
        return { id: spec.id, ...(net ? { sandboxIp: net.sandboxIp } : {}), providerState: { ...state } };
      }
      const servicesFile = services ? await writeServicesFile(join(dir, "services"), services, { ...this.baseEnv(spec), ...net?.env }) : undefined;
      const { supervisorPid, initPid } = await launchSandbox(
        this.binary,
        {
          layersDir: this.opts.layers.committedDir,
          lowers: lowers.layers,
          lowerAbs: lowers.abs,
          upper: active.upperDir,
          work: active.workDir,
          rootfs,
          hostname: spec.hostname,
          user: build ? { uid: 0, gid: 0 } : { uid: SESSION_UID, gid: SESSION_GID },
          uidMap: idMap,
          gidMap: idMap,
          cgroups: groups.join,
          workCgroups: groups.work,
          masks: this.masks(spec),
          roBinds: [...(net?.binds ?? []), ...(spec.mounts ?? []).map((m) => ({ src: m.source, dst: m.target }))],
          binds: [],
          // tmpfs pages are charged to the sandbox's memory cgroup, so /tmp cannot outgrow it.
          tmpfs: [
            { dst: "/tmp", size: `${Math.max(16, Math.floor(spec.compute.memoryBytes / 2 / 2 ** 20))}m` },
            { dst: "/run", size: "64m" },
          ],
          listen: socket,
          caps: build ? "build" : "session",
          ...(net ? { netns: net.netnsPath } : {}),
          ...(guard ? { guard } : {}),
          ...(servicesFile ? { services: servicesFile } : {}),
        },
        join(dir, "launcher.log"),
      );
      await excludeSupervisor(groups, supervisorPid);
      const state: LocalSandboxState = {
        supervisorPid,
        initPid,
        initStartTime: await processStartTime(initPid),
        socket,
        cgroups: groups.dirs,
        workPids: groups.workPids,
        pidsLimit: spec.compute.pids,
        runDir: dir,
        layerKey,
        upperDir: active.upperDir,
        env: { ...this.baseEnv(spec), ...net?.env },
        ...(net ? { sandboxIp: net.sandboxIp } : {}),
        ...(guard ? { guardLog: guard.log } : {}),
        ...(services ? { services: services.map((x) => x.name), servicesSince } : {}),
        ...(groups.freezer.length > 0 ? { freezer: groups.freezer } : {}),
      };
      this.live.set(spec.id, state);
      // Lets the network manager do its background work now rather than after a guessed pause.
      this.opts.network?.started(spec.id);
      return { id: spec.id, ...(net ? { sandboxIp: net.sandboxIp } : {}), providerState: { ...state } };
    } catch (err) {
      await cleanup();
      throw err;
    }
  }

  /** The gVisor half of `create`: everything but the launch is shared with the namespaces tier. */
  private async launchUnderGvisor(
    runtime: GvisorRuntime,
    spec: SandboxSpec,
    p: {
      dir: string;
      lowers: { layers: string[]; abs: string[] };
      upper: string;
      work: string;
      layerKey: string;
      groups: Awaited<ReturnType<typeof createCgroups>>;
      net: Awaited<ReturnType<LocalProvider["attachNetwork"]>>;
    },
  ): Promise<LocalSandboxState> {
    // The gofer sees host files through an idmapped view where their owner is unmapped: only
    // their "other" permission bits let anything in. What others cannot read (the shadow files,
    // a 0700 data directory) is already out of reach, and the gofer could not open it to mount
    // over it; the rest is masked as under namespaces.
    const masks = (
      await Promise.all(this.masks(spec).map(async (path) => ({ path, st: await stat(path).catch(() => null) })))
    ).flatMap(({ path, st }) => (st && (st.mode & (st.isDirectory() ? 0o005 : 0o004)) !== 0 ? [{ path, dir: st.isDirectory() }] : []));
    const launched = await launchGvisor({
      runtime,
      stateRoot: this.runscRoot,
      id: spec.id,
      dir: await makeGvisorSandboxDir(gvisorRootDir(installationScope(this.opts.home)), spec.id),
      layersDir: this.opts.layers.committedDir,
      lowers: p.lowers.layers,
      lowerAbs: p.lowers.abs,
      upper: p.upper,
      work: p.work,
      hostname: spec.hostname,
      user: { uid: SESSION_UID, gid: SESSION_GID },
      agentBinary: this.binary,
      cgroups: p.groups.join,
      pids: spec.compute.pids,
      ...(p.net ? { netns: p.net.netnsPath } : {}),
      roBinds: p.net?.binds ?? [],
      masks,
      tmpfs: [
        { dst: "/tmp", size: `${Math.max(16, Math.floor(spec.compute.memoryBytes / 2 / 2 ** 20))}m` },
        { dst: "/run", size: "64m" },
      ],
      logFile: join(p.dir, "launcher.log"),
    });
    return {
      supervisorPid: launched.sandboxPid,
      initPid: launched.sandboxPid,
      initStartTime: await processStartTime(launched.sandboxPid),
      socket: launched.socket,
      cgroups: p.groups.dirs,
      pidsLimit: spec.compute.pids,
      runDir: p.dir,
      layerKey: p.layerKey,
      upperDir: p.upper,
      env: { ...this.baseEnv(spec), ...p.net?.env },
      ...(p.net ? { sandboxIp: p.net.sandboxIp, gvisorNetns: p.net.netnsPath } : {}),
      isolation: "gvisor",
    };
  }

  async recover(id: string, providerState: Record<string, unknown>): Promise<"running" | "gone"> {
    const state = providerState as LocalSandboxState;
    if (typeof state.initPid === "number" && (await isAlive(state.initPid, state.initStartTime)) && existsSync(state.socket)) {
      // A control plane that died in the middle of a snapshot left the sandbox frozen.
      if (Array.isArray(state.freezer)) await thawCgroups(state.freezer);
      this.live.set(id, state);
      return "running";
    }
    await this.release(id, state, {});
    return "gone";
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    const state = this.get(id);
    const refusal = await this.pidsRefusal(id, state);
    if (refusal) {
      opts.onStderr?.(Buffer.from(`${refusal}\n`));
      return { exitCode: 126, signal: null, timedOut: false, durationMs: 0 };
    }
    return new AgentClient(state.socket).exec({ ...opts, cwd: opts.cwd ?? WORKSPACE, env: { ...state.env, ...opts.env } });
  }

  async writeFile(id: string, path: string, data: Uint8Array, o: { mode?: number } = {}): Promise<void> {
    await new AgentClient(this.get(id).socket).put(absolute(path), data, o.mode);
  }

  async readFile(id: string, path: string): Promise<Buffer> {
    return new AgentClient(this.get(id).socket).get(absolute(path));
  }

  async listDir(id: string, path: string): Promise<FileEntry[]> {
    return new AgentClient(this.get(id).socket).ls(absolute(path));
  }

  async readFileStream(id: string, path: string): Promise<Readable> {
    return new AgentClient(this.get(id).socket).getStream(absolute(path));
  }

  async writeFileStream(id: string, path: string, data: Readable, o: { mode?: number } = {}): Promise<void> {
    await new AgentClient(this.get(id).socket).putStream(absolute(path), data, o.mode);
  }

  async statFile(id: string, path: string): Promise<FileInfo> {
    return new AgentClient(this.get(id).socket).stat(absolute(path));
  }

  async listTree(id: string, path: string, depth: number): Promise<FileInfo[]> {
    return new AgentClient(this.get(id).socket).listTree(absolute(path), depth);
  }

  async makeDir(id: string, path: string): Promise<boolean> {
    return new AgentClient(this.get(id).socket).mkdir(absolute(path));
  }

  async moveFile(id: string, from: string, to: string): Promise<void> {
    await new AgentClient(this.get(id).socket).move(absolute(from), absolute(to));
  }

  async removeFile(id: string, path: string): Promise<boolean> {
    return new AgentClient(this.get(id).socket).remove(absolute(path));
  }

  async watchDir(id: string, path: string, opts: { recursive: boolean; onEvent: (event: FileEvent) => void }): Promise<FileWatch> {
    return new AgentClient(this.get(id).socket).watch(absolute(path), opts);
  }

  async killProcesses(id: string, signal: NodeJS.Signals = "SIGKILL"): Promise<number> {
    const state = this.get(id);
    // One kill at a time per sandbox: each sets the work group's pids limit to 0 and back.
    const previous = this.kills.get(id) ?? Promise.resolve(0);
    const next = previous.catch(() => 0).then(() => this.killNow(id, state, signal));
    this.kills.set(id, next);
    try {
      return await next;
    } finally {
      if (this.kills.get(id) === next) this.kills.delete(id);
    }
  }

  private async killNow(id: string, state: LocalSandboxState, signal: NodeJS.Signals): Promise<number> {
    if (state.isolation === "gvisor") return this.killGvisor(this.gvisorRef(id, state.gvisorNetns), signal);
    if (state.workPids && typeof state.pidsLimit === "number" && existsSync(state.workPids)) {
      return signalWorkGroup(state.workPids, signal, state.pidsLimit);
    }
    // A sandbox from before work groups: everything in its cgroups but the supervisor and pid 1.
    const spare = new Set([state.supervisorPid, state.initPid]);
    let n = 0;
    for (const dir of state.cgroups) {
      for (const pid of await cgroupPids(dir)) {
        if (spare.has(pid)) continue;
        try {
          process.kill(pid, signal);
          n++;
        } catch {
          /* already gone */
        }
      }
    }
    return n;
  }

  /**
   * Every command process (not uid 0: the agent and its handlers are root inside, commands never
   * are), signalled through runsc: nothing starts inside. Repeated for SIGKILL until none is left
   * (a fork bomb keeps making new ones while it is being killed), bounded.
   */
  private async killGvisor(ref: GvisorRef, signal: NodeJS.Signals): Promise<number> {
    if (!this.gvisor.runtime) throw unavailable(`sandbox ${ref.id} runs under gVisor, but runsc is not usable: ${this.gvisor.detail}`);
    const commands = async () => (await gvisorProcesses(ref)).filter((p) => p.uid !== 0 && p.pid !== 1);
    let n = 0;
    const deadline = Date.now() + 30_000;
    for (let left = await commands(); left.length > 0 && Date.now() < deadline; left = signal === "SIGKILL" ? await commands() : []) {
      for (const p of left) if (await gvisorKill(ref, p.pid, signal)) n++;
    }
    return n;
  }

  /** The line an exec gets instead of running when the session's processes fill compute.pids. */
  private async pidsRefusal(id: string, state: LocalSandboxState): Promise<string | null> {
    if (!state.workPids || typeof state.pidsLimit !== "number") return null;
    const usage = await pidsUsage(state.workPids);
    if (!usage || usage.current < usage.max) return null;
    return `paddock: session ${id} has reached compute.pids (${state.pidsLimit}); 'paddock session kill ${id}' ends its processes`;
  }

  async memoryUsage(id: string): Promise<number | null> {
    this.get(id);
    return sandboxMemoryUsage(this.cgroupLayout, id);
  }

  async guardDenials(id: string): Promise<GuardDenial[]> {
    const log = this.live.get(id)?.guardLog;
    return typeof log === "string" ? readGuardLog(log) : [];
  }

  async snapshot(id: string, layerId: string): Promise<{ frozenMs: number }> {
    const state = this.get(id);
    checkSnapshotId(layerId);
    if (state.isolation === "gvisor") throw unsupported(this, "snapshot a gVisor sandbox", "gVisor's kernel caches writes the host's freezer cannot capture; snapshot sessions that run under isolation: namespaces");
    const freezer = state.freezer;
    if (!freezer?.length) throw unavailable(`sandbox ${id} cannot be frozen (started before snapshots, or no cgroup freezer on this machine), so it cannot be snapshotted`);
    if (await this.opts.layers.has(layerId)) throw conflict(`layer ${layerId} already exists`);
    const previous = this.snapshots.get(id) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(async () => {
      // Written out before the freeze, so the freeze lasts as long as the capture, not the disk.
      await this.opts.layers.flush(state.layerKey);
      const t0 = performance.now();
      try {
        await freezeCgroups(freezer);
        // Frozen: no process of the sandbox is between two halves of anything. What the layer
        // holds now, page cache included (btrfs writes delalloc out as part of the snapshot), is
        // what a crash at this instant would have left, and that is what is captured.
        await this.opts.layers.snapshot(state.layerKey, layerId);
      } finally {
        // Never leave a sandbox frozen, whatever failed.
        await thawCgroups(freezer);
      }
      return { frozenMs: Math.round((performance.now() - t0) * 1000) / 1000 };
    });
    this.snapshots.set(id, next);
    try {
      return await next;
    } finally {
      if (this.snapshots.get(id) === next) this.snapshots.delete(id);
    }
  }

  async removeSnapshot(layerId: string): Promise<boolean> {
    checkSnapshotId(layerId);
    // Committed layers only: never a sandbox's writable layer that happens to share the name.
    if (!(await this.opts.layers.has(layerId))) return false;
    return this.opts.layers.remove(layerId);
  }

  async setEnv(id: string, env: Record<string, string>): Promise<Record<string, unknown>> {
    const state = this.get(id);
    state.env = { ...state.env, ...env };
    return { ...state };
  }

  /** What the sandbox's supervisor reports (native/supervise.c), read through its agent. */
  async services(id: string): Promise<ServiceStatus[]> {
    const state = this.get(id);
    if (!state.services?.length) return [];
    return readServices(new AgentClient(state.socket), state.services, state.servicesSince ?? new Date(0).toISOString());
  }

  async waitForServices(id: string, timeoutMs: number): Promise<ServiceStatus[]> {
    const state = this.get(id);
    if (!state.services?.length) return [];
    return waitForServices(new AgentClient(state.socket), state.services, state.servicesSince ?? new Date(0).toISOString(), timeoutMs);
  }

  async stop(id: string, o: StopOptions = {}): Promise<boolean> {
    const state = this.live.get(id);
    if (!state) return false;
    this.live.delete(id);
    // A layer about to be committed gets its services' clean shutdown first (a database's files
    // as after a clean stop); any other stop is a power cut, as for every other process.
    if (o.commitAs && state.services?.length) await stopServicesCleanly(state, state.services.length);
    await this.release(id, state, o);
    return true;
  }

  /** Local sandboxes need nothing remote: healthy while this process runs. */
  async health(): Promise<ProviderHealth> {
    return { ok: true, detail: `${this.live.size} sandbox${this.live.size === 1 ? "" : "es"} running`, latencyMs: 0 };
  }

  async portUrl(id: string, port: number): Promise<string> {
    const s = this.live.get(id);
    if (!s) throw notFound("sandbox", id);
    if (!s.sandboxIp) throw unavailable(`sandbox ${id} has no network, so port ${port} cannot be reached`);
    return `http://${s.sandboxIp}:${port}`;
  }

  async list(): Promise<string[]> {
    return [...this.live.keys()].sort();
  }

  async close(): Promise<void> {
    // Sandboxes outlive the control plane on purpose (invariant 9); nothing to tear down here.
    this.live.clear();
  }

  private get(id: string): LocalSandboxState {
    const s = this.live.get(id);
    if (!s) throw notFound("session", id);
    return s;
  }

  /** Kill everything the sandbox ran, then free its cgroups, run dir and writable layer. */
  private async release(id: string, state: Partial<LocalSandboxState>, o: StopOptions): Promise<void> {
    // A gVisor sandbox whose state was never recorded (the control plane died in the middle of its
    // create) is known by its dir: its cgroups go first (the sentry and gofer with them, so nothing
    // holds its mounts and runsc, asked from outside its network namespace, has nothing to stop).
    const gvisorDir = this.gvisorDir(id);
    if (state.isolation !== "gvisor" && existsSync(gvisorDir)) {
      await destroyCgroups(cgroupDirs(this.cgroupLayout, id));
      await releaseGvisor(this.gvisorRef(id, undefined), gvisorDir);
    }
    if (state.isolation === "gvisor") {
      // runsc's state, the sentry and the rootfs mount go first; throws (leaving the run dir and
      // layer in place) rather than remove a rootfs that is still mounted.
      await releaseGvisor(this.gvisorRef(id, state.gvisorNetns), gvisorDir);
    }
    if (typeof state.initPid === "number" && (await isAlive(state.initPid, state.initStartTime ?? ""))) {
      // SIGKILL to pid 1 of the sandbox's pid namespace kills every process in it.
      try {
        process.kill(state.initPid, "SIGKILL");
      } catch {
        /* raced with its exit */
      }
    }
    if (typeof state.supervisorPid === "number") await waitForExit(state.supervisorPid, 5000);
    await destroyCgroups(state.cgroups ?? []);
    await this.opts.network?.release(id);
    await rm(state.runDir ?? join(this.runDir, id), { recursive: true, force: true });
    const key = state.layerKey ?? `sbx-${id}`;
    if (o.commitAs && state.upperDir) {
      await handOverToSessionUser(state.upperDir);
      await this.opts.layers.commit(key, o.commitAs);
    } else await this.opts.layers.remove(key);
  }

  /**
   * A network namespace linked only to the gateway, and the files and variables the sandbox needs
   * to use it (resolver, CA, proxy settings, placeholders). Fails closed: a sandbox that asked for
   * egress and cannot get it is not started.
   */
  private async attachNetwork(
    spec: SandboxSpec,
  ): Promise<{ netnsPath: string; sandboxIp: string; env: Record<string, string>; binds: { src: string; dst: string }[] } | null> {
    if (this.opts.network?.mode === "proxy") return this.attachProxyNetwork(spec);
    if (spec.remoteEgress) throw unsupported(this, "reach a remote gateway as a proxy (SandboxSpec.remoteEgress)", "its sandboxes use the local gateway (SandboxSpec.egress)");
    if (!spec.egress) return null;
    if (!this.opts.network) throw new PaddockError("unavailable", "this sandbox needs the egress gateway, but the local provider has no network manager");
    const net = await this.opts.network.acquire(spec.id);
    const attachment = await spec.egress(net.sandboxIp);
    const files = [
      { path: "/etc/resolv.conf", content: resolvConf(net.gatewayIp) },
      { path: "/etc/hosts", content: hostsFile(spec.hostname) },
      ...attachment.files,
    ];
    const binds: { src: string; dst: string }[] = [];
    for (const f of files) binds.push({ src: await this.sharedFile(f.content), dst: f.path });
    return { netnsPath: net.netnsPath, sandboxIp: net.sandboxIp, env: attachment.env, binds };
  }

  /**
   * A remote node's sandbox (network manager in mode "proxy"): its only way out is TCP to the
   * attachment's `allow` entries (Paddock's gateway as an HTTPS proxy), each name resolved here,
   * once, and pinned in the sandbox's /etc/hosts; it has no DNS. A name that does not resolve to
   * an IPv4 address, or resolves to loopback (the sandbox's own), is refused: fail closed.
   */
  private async attachProxyNetwork(
    spec: SandboxSpec,
  ): Promise<{ netnsPath: string; sandboxIp: string; env: Record<string, string>; binds: { src: string; dst: string }[] } | null> {
    if (spec.egress) throw unsupported(this, "link a sandbox to a gateway on this machine (SandboxSpec.egress)", "give SandboxSpec.remoteEgress");
    if (!spec.remoteEgress) return null;
    const attachment = await spec.remoteEgress();
    if (!attachment.allow.length) throw invalid(`sandbox ${spec.id}: the egress attachment allows no destination`);
    const pinned: { name: string; ip: string; port: number }[] = [];
    for (const a of attachment.allow) {
      const ip = isIP(a.host) ? a.host : await lookup(a.host, { family: 4 }).then((r) => r.address, () => null);
      if (!ip || !isIPv4(ip)) throw unavailable(`sandbox ${spec.id}: the gateway's proxy host ${JSON.stringify(a.host)} does not resolve to an IPv4 address on this node`);
      if (ip.startsWith("127.") || ip === "0.0.0.0") throw unavailable(`sandbox ${spec.id}: the gateway's proxy host ${JSON.stringify(a.host)} is ${ip}, which a sandbox cannot reach (its loopback is its own)`);
      pinned.push({ name: a.host, ip, port: a.port });
    }
    const net = await this.opts.network!.acquire(spec.id, pinned.map((p) => ({ ip: p.ip, port: p.port })));
    const files = [
      { path: "/etc/resolv.conf", content: NO_DNS_RESOLV_CONF },
      { path: "/etc/hosts", content: hostsFile(spec.hostname, pinned.filter((p) => !isIP(p.name))) },
      ...attachment.files,
    ];
    const binds: { src: string; dst: string }[] = [];
    for (const f of files) binds.push({ src: await this.sharedFile(f.content), dst: f.path });
    return { netnsPath: net.netnsPath, sandboxIp: net.sandboxIp, env: attachment.env, binds };
  }

  /**
   * A file to bind-mount read-only into sandboxes, named by its content: the resolver, hosts and
   * CA files are the same for every session of an environment version, so each is written once,
   * not at every start. Written under a temporary name and renamed, so a sandbox never binds a
   * half-written file. World-readable on purpose: the unprivileged sandbox user reads them, and
   * none is secret (a CA certificate, never its key).
   */
  private async sharedFile(content: string): Promise<string> {
    const dir = join(this.runDir, SHARED_FILES);
    const path = join(dir, createHash("sha256").update(content).digest("hex"));
    if (this.sharedFiles.has(path) && existsSync(path)) return path;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    await writeFile(tmp, content, { mode: 0o644 });
    await rename(tmp, path);
    this.sharedFiles.add(path);
    return path;
  }

  private async lowerLayers(spec: SandboxSpec): Promise<{ layers: string[]; abs: string[] }> {
    for (const l of spec.layers) if (!(await this.opts.layers.has(l))) throw notFound("layer", l);
    // Lower names are relative to committedDir, which keeps the overlay option string short.
    const rel = (id: string) => relative(this.opts.layers.committedDir, this.opts.layers.layerPath(id));
    const top = [...spec.layers].reverse().map(rel);
    switch (spec.base) {
      case "host":
        return { layers: [...top, rel(await this.shared.run("scaffold-host", () => ensureScaffold(this.opts.layers, "host", "/etc")))], abs: ["/"] };
      case "debian-12": {
        const base = await this.shared.run("base-debian-12", () => ensureDebianBase(this.opts.layers, this.opts.log));
        const scaffold = await this.shared.run("scaffold-debian-12", () => ensureScaffold(this.opts.layers, "debian-12", join(this.opts.layers.layerPath(base), "etc")));
        return { layers: [...top, rel(scaffold), rel(base)], abs: [] };
      }
    }
  }

  /** Host paths hidden in every sandbox on `base: host`, whatever their permissions say. */
  private masks(spec: SandboxSpec): string[] {
    if (spec.base !== "host") return [];
    return ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", this.opts.home];
  }

  private baseEnv(spec: SandboxSpec): Record<string, string> {
    const build = spec.mode === "build";
    return {
      PATH: DEFAULT_PATH,
      HOME: (!build && spec.sessionUser?.home) || SESSION_HOME,
      USER: build ? "root" : (spec.sessionUser?.name ?? SESSION_USER),
      LOGNAME: build ? "root" : (spec.sessionUser?.name ?? SESSION_USER),
      SHELL: "/bin/bash",
      LANG: "C.UTF-8",
      TERM: "xterm-256color",
      PADDOCK_SANDBOX: spec.id,
      ...spec.env,
    };
  }
}

/**
 * Snapshot ids name committed layers. `sbx-…` is how writable layers are named, and a layer store's
 * `remove` takes either kind of name: refusing the prefix keeps a snapshot from shadowing one.
 */
function checkSnapshotId(layerId: string): void {
  if (layerId.startsWith("sbx-")) throw invalid(`bad snapshot id ${JSON.stringify(layerId)}: the sbx- prefix names sandboxes' writable layers`);
}

function absolute(path: string): string {
  if (path.includes("\0")) throw invalid("path contains a NUL byte");
  return path.startsWith("/") ? path : `${WORKSPACE}/${path}`;
}

export async function readLauncherLog(runDir: string): Promise<string> {
  return readFile(join(runDir, "launcher.log"), "utf8").catch(() => "");
}
