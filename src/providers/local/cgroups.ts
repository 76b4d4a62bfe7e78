import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ComputeLimits } from "../../core/index.ts";
import { unavailable } from "../../core/index.ts";

/**
 * Compute limits with cgroups, on cgroup v2 (most users' machines) and on v1 or the v1/v2 hybrid
 * layout (this machine: memory, pids and cpu are v1 controllers, cgroup2 at /sys/fs/cgroup/unified
 * holds none). Each sandbox gets one directory per controller under `paddock/<id>`; the launcher
 * joins them before creating any namespace, so every process of the sandbox is accounted.
 * Memory has no swap escape hatch where the kernel accounts swap; OOM kills stay inside the group.
 * Every process inside a sandbox can be frozen at once (`freezeCgroups`, for crash-consistent
 * snapshots), with the v2 freezer (`cgroup.freeze`) wherever a cgroup2 hierarchy is mounted: on
 * v2 its agent and work groups; on the hybrid layout a group of its own in the controller-less
 * unified hierarchy. Only on pure v1 the v1 freezer hierarchy, which has a flaw with vfork (see
 * `freezeCgroups`). Its supervisor is kept out (`excludeSupervisor`).
 */
export type CgroupLayout = (
  | { version: 2; root: string }
  | {
      version: 1;
      memory: string;
      pids: string;
      cpu: string;
      /** The cgroup2 mount of the hybrid layout (no controllers needed: the freezer is core v2). */
      unified?: string;
      /** The v1 freezer hierarchy, used only without `unified`. Neither: no snapshots. */
      freezer?: string;
    }
) & {
  /** One directory per Paddock installation (`paddock/<scope>/<id>`), so two installations on one
   * machine (a server and a test run) never reconcile away each other's sandboxes. */
  scope: string;
};

/** Find the controllers from /proc/self/mountinfo. */
export async function detectCgroupLayout(scope: string): Promise<CgroupLayout> {
  const mounts = (await readFile("/proc/self/mountinfo", "utf8")).split("\n").map((line) => {
    const [left, right] = line.split(" - ");
    const mountPoint = left?.split(" ")[4] ?? "";
    const [fsType, , superOpts] = (right ?? "").split(" ");
    return { mountPoint, fsType, opts: (superOpts ?? "").split(",") };
  });
  const v1 = (controller: string) => mounts.find((m) => m.fsType === "cgroup" && m.opts.includes(controller))?.mountPoint;
  const memory = v1("memory");
  const pids = v1("pids");
  const cpu = v1("cpu");
  const freezer = v1("freezer");
  const unified = mounts.find((m) => m.fsType === "cgroup2" && existsSync(join(m.mountPoint, "cgroup.controllers")));
  if (memory && pids && cpu) {
    if (unified) return { version: 1, memory, pids, cpu, unified: unified.mountPoint, scope };
    return { version: 1, memory, pids, cpu, ...(freezer ? { freezer } : {}), scope };
  }
  if (unified) {
    const available = (await readFile(join(unified.mountPoint, "cgroup.controllers"), "utf8")).split(/\s+/);
    if (["memory", "pids", "cpu"].every((c) => available.includes(c))) return { version: 2, root: unified.mountPoint, scope };
  }
  throw unavailable("no usable cgroup controllers: need memory, pids and cpu (cgroup v2, or v1 controllers mounted)");
}

/**
 * Processes the agent and its handlers may have beside the session's own (`compute.pids`): the
 * supervisor, pid 1, one handler per exec or file operation in flight, and each command for the
 * moment between its fork and its move into the work group. Commands cannot use this reserve, so
 * a session whose processes fill `compute.pids` still serves file operations and `session kill`.
 */
export const AGENT_PIDS_RESERVE = 128;

/**
 * One sandbox's cgroups. The sandbox's own group carries its memory and cpu limits and a pids
 * limit of `compute.pids` plus the agent's reserve. Below it (on the pids hierarchy on v1, on the
 * one tree on v2) the agent's processes live in `agent/` and every command the agent starts moves
 * itself into `work/`, whose pids limit is `compute.pids`.
 */
export interface SandboxCgroups {
  /** The sandbox's own directories, one per hierarchy (recorded; removed with their children at stop). */
  dirs: string[];
  /** What the launcher joins before any namespace exists (the agent's group). */
  join: string[];
  /** Where commands go: the launcher opens their `cgroup.procs` for the agent. */
  work: string[];
  /** The work group's pids directory: `pids.max`, `pids.current` and `cgroup.procs` of commands. */
  workPids: string;
  /** What `freezeCgroups` freezes to stop every process in the sandbox (empty: no freezer on this machine). */
  freezer: string[];
  /** Where `excludeSupervisor` moves the supervisor. */
  supervisor: string | null;
}

/** The paths of a sandbox's cgroups (they need not exist). */
export function sandboxCgroups(layout: CgroupLayout, id: string): SandboxCgroups {
  switch (layout.version) {
    case 2: {
      const dir = join(layout.root, "paddock", layout.scope, id);
      // Not the sandbox's own directory: the supervisor's group beside these two stays thawed.
      return {
        dirs: [dir],
        join: [join(dir, "agent")],
        work: [join(dir, "work")],
        workPids: join(dir, "work"),
        freezer: [join(dir, "agent"), join(dir, "work")],
        supervisor: join(dir, "supervisor"),
      };
    }
    case 1: {
      const [memDir, pidsDir, cpuDir] = [layout.memory, layout.pids, layout.cpu].map((c) => join(c, "paddock", layout.scope, id)) as [string, string, string];
      const freezeRoot = layout.unified ?? layout.freezer;
      const freezeDir = freezeRoot ? join(freezeRoot, "paddock", layout.scope, id) : null;
      // unified: <id>/sandbox is frozen, the supervisor moves to <id>/supervisor. v1 freezer: the
      // supervisor moves back to the hierarchy's root.
      const frozen = freezeDir && layout.unified ? join(freezeDir, "sandbox") : freezeDir;
      return {
        dirs: [memDir, pidsDir, cpuDir, ...(freezeDir ? [freezeDir] : [])],
        join: [memDir, join(pidsDir, "agent"), cpuDir, ...(frozen ? [frozen] : [])],
        work: [join(pidsDir, "work")],
        workPids: join(pidsDir, "work"),
        freezer: frozen ? [frozen] : [],
        supervisor: freezeDir && layout.unified ? join(freezeDir, "supervisor") : (layout.freezer ?? null),
      };
    }
  }
}

/** Directories a sandbox's processes belong to (top level, one per hierarchy). */
export function cgroupDirs(layout: CgroupLayout, id: string): string[] {
  return sandboxCgroups(layout, id).dirs;
}

const CPU_PERIOD_US = 100_000;

/** Create the sandbox's cgroups with its limits. Idempotent. */
export async function createCgroups(layout: CgroupLayout, id: string, limits: ComputeLimits): Promise<SandboxCgroups> {
  const quota = String(Math.max(1000, Math.round(limits.cpu * CPU_PERIOD_US)));
  const groups = sandboxCgroups(layout, id);
  const total = String(limits.pids + AGENT_PIDS_RESERVE);
  switch (layout.version) {
    case 2: {
      const parent = join(layout.root, "paddock", layout.scope);
      await mkdir(parent, { recursive: true });
      // Controllers must be enabled on every ancestor's subtree_control before a child can use them.
      for (const dir of [layout.root, join(layout.root, "paddock"), parent]) {
        await writeFile(join(dir, "cgroup.subtree_control"), "+memory +pids +cpu").catch((err: unknown) => {
          if (dir !== layout.root) throw err;
        });
      }
      const [dir] = groups.dirs as [string];
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "memory.max"), String(limits.memoryBytes));
      if (existsSync(join(dir, "memory.swap.max"))) await writeFile(join(dir, "memory.swap.max"), "0");
      await writeFile(join(dir, "pids.max"), total);
      await writeFile(join(dir, "cpu.max"), `${quota} ${CPU_PERIOD_US}`);
      // Processes live only in the leaves (v2's no-internal-process rule); the memory and cpu
      // limits above cover both.
      await writeFile(join(dir, "cgroup.subtree_control"), "+pids");
      break;
    }
    case 1: {
      const [memDir, pidsDir, cpuDir] = groups.dirs as [string, string, string];
      await Promise.all(groups.dirs.map((d) => mkdir(d, { recursive: true })));
      await writeFile(join(memDir, "memory.limit_in_bytes"), String(limits.memoryBytes));
      // Without swap accounting memsw is absent; with it, equal limits mean "no swap".
      const memsw = join(memDir, "memory.memsw.limit_in_bytes");
      if (existsSync(memsw)) await writeFile(memsw, String(limits.memoryBytes));
      await writeFile(join(pidsDir, "pids.max"), total);
      await writeFile(join(cpuDir, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      await writeFile(join(cpuDir, "cpu.cfs_quota_us"), quota);
      break;
    }
  }
  for (const d of [...groups.join, ...groups.work]) await mkdir(d, { recursive: true });
  await writeFile(join(groups.workPids, "pids.max"), String(limits.pids));
  return groups;
}

/** Pids (host view) in a cgroup directory; [] when it is gone. */
export async function cgroupPids(dir: string): Promise<number[]> {
  const text = await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => "");
  return text.split("\n").filter(Boolean).map(Number);
}

/** How many processes the group holds and may hold; null when the group does not exist. */
export async function pidsUsage(dir: string): Promise<{ current: number; max: number } | null> {
  try {
    const [current, max] = await Promise.all([readFile(join(dir, "pids.current"), "utf8"), readFile(join(dir, "pids.max"), "utf8")]);
    return { current: Number(current.trim()), max: max.trim() === "max" ? Infinity : Number(max.trim()) };
  } catch {
    return null;
  }
}

/**
 * Send `signal` to every process of a work group, and for SIGKILL wait until the group is empty.
 * While it runs the group's pids limit is 0, so nothing in it can fork: the set of processes is
 * closed and one pass reaches them all, however fast a fork bomb respawns. The limit is then set
 * back to `pidsLimit`. The caller serialises calls for one group.
 *
 * @returns how many processes were signalled.
 */
export async function signalWorkGroup(dir: string, signal: NodeJS.Signals, pidsLimit: number, timeoutMs = 10_000): Promise<number> {
  const maxFile = join(dir, "pids.max");
  await writeFile(maxFile, "0");
  try {
    const pids = await cgroupPids(dir);
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        /* already gone */
      }
    }
    if (signal === "SIGKILL") await waitUntilEmpty(dir, timeoutMs);
    return pids.length;
  } finally {
    await writeFile(maxFile, String(pidsLimit));
  }
}

/**
 * Until the group counts no process (its zombies reaped by the sandbox's pid 1). A process can
 * still *move into* the group while its limit is 0 (the limit applies to forks, not to moves): a
 * command the agent starts, or a service the sandbox's supervisor restarts after the kill. So
 * whatever is listed on a later look is killed too.
 */
async function waitUntilEmpty(dir: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const killed = new Set<number>();
  for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
    const usage = await pidsUsage(dir);
    if (!usage || usage.current === 0) return;
    if (Date.now() > deadline) throw unavailable(`${usage.current} processes of the session did not exit within ${timeoutMs} ms of SIGKILL (uninterruptible I/O?)`);
    for (const pid of await cgroupPids(dir)) {
      if (killed.has(pid)) continue;
      killed.add(pid);
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
    // Any leftover killed process is already dying: give the kernel and pid 1's reaping a moment.
    await new Promise((r) => setTimeout(r, wait));
  }
}

/**
 * Kill every process in the sandbox's cgroups and remove them, their child groups first. Waits
 * (bounded) for the kernel to empty each group: rmdir of a populated cgroup fails with EBUSY.
 */
export async function destroyCgroups(dirs: string[]): Promise<void> {
  // A group left frozen (a crash in the middle of a snapshot) must thaw first, all of them before
  // any kill: on v1 a frozen process does not die of SIGKILL until it is thawed, so its other
  // groups would never empty either.
  await thawCgroups(dirs);
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    const children = (await readdir(dir, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
    await destroyCgroups(children);
    for (let attempt = 0; ; attempt++) {
      const pids = await cgroupPids(dir);
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          /* already gone */
        }
      }
      try {
        await rmdir(dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") break;
        if (code !== "EBUSY" || attempt > 500) throw err;
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  }
}

function v1Hierarchies(layout: CgroupLayout & { version: 1 }): string[] {
  const freezeRoot = layout.unified ?? layout.freezer;
  return [layout.memory, layout.pids, layout.cpu, ...(freezeRoot ? [freezeRoot] : [])];
}

/** Sandbox ids that have cgroups on this machine (for reconciliation and `paddock doctor`). */
export async function listCgroupIds(layout: CgroupLayout): Promise<string[]> {
  const parents =
    layout.version === 2 ? [join(layout.root, "paddock", layout.scope)] : v1Hierarchies(layout).map((c) => join(c, "paddock", layout.scope));
  const ids = new Set<string>();
  for (const p of parents) for (const e of await readdir(p, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) ids.add(e.name);
  return [...ids].sort();
}

/** Remove this installation's (empty) scope directories, e.g. when a test's data directory goes away. */
export async function removeCgroupScope(layout: CgroupLayout): Promise<void> {
  const parents =
    layout.version === 2 ? [join(layout.root, "paddock", layout.scope)] : v1Hierarchies(layout).map((c) => join(c, "paddock", layout.scope));
  for (const p of parents) await rmdir(p).catch(() => undefined);
}

/**
 * Take the supervisor (the sandbox's host side; it joins every group before it clones, so that
 * everything it starts is accounted) out of what `freezeCgroups` freezes. With an exec guard it
 * answers the sandbox's exec permission events, and a process waiting for that answer is in a
 * wait the freezer cannot interrupt: a frozen supervisor would keep the freeze from ever
 * completing. It stays in the memory, pids and cpu groups.
 */
export async function excludeSupervisor(groups: SandboxCgroups, pid: number): Promise<void> {
  if (!groups.supervisor || groups.freezer.length === 0) return;
  await mkdir(groups.supervisor, { recursive: true });
  await writeFile(join(groups.supervisor, "cgroup.procs"), String(pid));
}

/**
 * Freeze every process in the groups and resolve once the kernel says all of them are frozen:
 * v1 `freezer.state` reads FROZEN, v2 `cgroup.events` says `frozen 1`. Polled without fixed
 * sleeps (the first checks back to back; the kernel usually finishes within a millisecond).
 *
 * The v1 freezer asks each task to freeze once, when the state is written. A task that was
 * running then (the parent of a vfork, inside copy_process) and went on into a sleep in the
 * kernel without returning to user space (waiting for its vfork child, which froze right after
 * the fork) is never asked again, and the group stays FREEZING: here, a shell looping over
 * `/bin/true` held one in four freezes. v2 counts a vfork parent as frozen, so the v2 freezer is
 * used wherever a cgroup2 hierarchy exists (the hybrid layout too). For pure v1, a freeze that has
 * not completed within a short while is undone and asked for again, waiting twice as long each
 * time.
 *
 * A process in uninterruptible I/O can hold a group in FREEZING for good: past `timeoutMs` the
 * groups are thawed again and this rejects `unavailable`.
 */
export async function freezeCgroups(dirs: string[], timeoutMs = 5000): Promise<void> {
  const v1 = (dir: string) => existsSync(join(dir, "freezer.state"));
  const frozen = async (dir: string) =>
    v1(dir) ? (await readFile(join(dir, "freezer.state"), "utf8")).trim() === "FROZEN" : /^frozen 1$/m.test(await readFile(join(dir, "cgroup.events"), "utf8"));
  const deadline = Date.now() + timeoutMs;
  try {
    // Only v1 needs asking again (see above); a v2 freeze just takes as long as it takes.
    const retry = dirs.some(v1);
    for (let patienceMs = retry ? 2 : timeoutMs; ; patienceMs *= 2) {
      for (const dir of dirs) {
        if (v1(dir)) await writeFile(join(dir, "freezer.state"), "FROZEN");
        else await writeFile(join(dir, "cgroup.freeze"), "1");
      }
      const giveUp = Math.min(deadline, Date.now() + patienceMs);
      let pending = [...dirs];
      for (let i = 0; pending.length > 0 && Date.now() < giveUp; i++) {
        const still: string[] = [];
        for (const dir of pending) if (!(await frozen(dir))) still.push(dir);
        pending = still;
        // Back to back at first (a freeze usually takes well under a millisecond), then 1 ms ticks, so
        // that polling does not take the CPU the sandbox's processes need to reach their freeze point.
        if (pending.length > 0) await new Promise((r) => (i < 20 ? setImmediate(r) : setTimeout(r, 1)));
      }
      if (pending.length === 0) return;
      if (Date.now() >= deadline) throw unavailable(`the sandbox's processes did not all freeze within ${timeoutMs} ms (one in uninterruptible I/O?); they were thawed again`);
      await thawCgroups(dirs);
    }
  } catch (err) {
    await thawCgroups(dirs);
    throw err;
  }
}

/** Let frozen groups run again. A group that is gone, or not frozen, is left as it is. */
export async function thawCgroups(dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    const v1 = join(dir, "freezer.state");
    const v2 = join(dir, "cgroup.freeze");
    try {
      if (existsSync(v1)) await writeFile(v1, "THAWED");
      else if (existsSync(v2)) await writeFile(v2, "0");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
}

/**
 * Bytes of memory a sandbox's cgroup is charged now (its processes' pages, page cache and tmpfs),
 * or null when its group is gone. What a pool's members cost the host while they wait.
 */
export async function sandboxMemoryUsage(layout: CgroupLayout, id: string): Promise<number | null> {
  const file =
    layout.version === 2
      ? join(layout.root, "paddock", layout.scope, id, "memory.current")
      : join(layout.memory, "paddock", layout.scope, id, "memory.usage_in_bytes");
  const text = await readFile(file, "utf8").catch(() => null);
  return text === null ? null : Number(text.trim());
}
