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
 */
export type CgroupLayout = (
  | { version: 2; root: string }
  | { version: 1; memory: string; pids: string; cpu: string }
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
  if (memory && pids && cpu) return { version: 1, memory, pids, cpu, scope };
  const unified = mounts.find((m) => m.fsType === "cgroup2" && existsSync(join(m.mountPoint, "cgroup.controllers")));
  if (unified) {
    const available = (await readFile(join(unified.mountPoint, "cgroup.controllers"), "utf8")).split(/\s+/);
    if (["memory", "pids", "cpu"].every((c) => available.includes(c))) return { version: 2, root: unified.mountPoint, scope };
  }
  throw unavailable("no usable cgroup controllers: need memory, pids and cpu (cgroup v2, or v1 controllers mounted)");
}

/** Directories a sandbox's processes join. */
export function cgroupDirs(layout: CgroupLayout, id: string): string[] {
  switch (layout.version) {
    case 2:
      return [join(layout.root, "paddock", layout.scope, id)];
    case 1:
      return [layout.memory, layout.pids, layout.cpu].map((c) => join(c, "paddock", layout.scope, id));
  }
}

const CPU_PERIOD_US = 100_000;

/** Create the sandbox's cgroups with its limits. Idempotent. */
export async function createCgroups(layout: CgroupLayout, id: string, limits: ComputeLimits): Promise<string[]> {
  const quota = String(Math.max(1000, Math.round(limits.cpu * CPU_PERIOD_US)));
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
      const dir = join(parent, id);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "memory.max"), String(limits.memoryBytes));
      if (existsSync(join(dir, "memory.swap.max"))) await writeFile(join(dir, "memory.swap.max"), "0");
      await writeFile(join(dir, "pids.max"), String(limits.pids));
      await writeFile(join(dir, "cpu.max"), `${quota} ${CPU_PERIOD_US}`);
      return [dir];
    }
    case 1: {
      const [memDir, pidsDir, cpuDir] = cgroupDirs(layout, id) as [string, string, string];
      await Promise.all([memDir, pidsDir, cpuDir].map((d) => mkdir(d, { recursive: true })));
      await writeFile(join(memDir, "memory.limit_in_bytes"), String(limits.memoryBytes));
      // Without swap accounting memsw is absent; with it, equal limits mean "no swap".
      const memsw = join(memDir, "memory.memsw.limit_in_bytes");
      if (existsSync(memsw)) await writeFile(memsw, String(limits.memoryBytes));
      await writeFile(join(pidsDir, "pids.max"), String(limits.pids));
      await writeFile(join(cpuDir, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      await writeFile(join(cpuDir, "cpu.cfs_quota_us"), quota);
      return [memDir, pidsDir, cpuDir];
    }
  }
}

/** Pids (host view) in a cgroup directory; [] when it is gone. */
export async function cgroupPids(dir: string): Promise<number[]> {
  const text = await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => "");
  return text.split("\n").filter(Boolean).map(Number);
}

/**
 * Kill every process in the sandbox's cgroups and remove them. Waits (bounded) for the kernel to
 * empty each group: rmdir of a populated cgroup fails with EBUSY.
 */
export async function destroyCgroups(dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
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

/** Sandbox ids that have cgroups on this machine (for reconciliation and `paddock doctor`). */
export async function listCgroupIds(layout: CgroupLayout): Promise<string[]> {
  const parents =
    layout.version === 2 ? [join(layout.root, "paddock", layout.scope)] : [layout.memory, layout.pids, layout.cpu].map((c) => join(c, "paddock", layout.scope));
  const ids = new Set<string>();
  for (const p of parents) for (const e of await readdir(p, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) ids.add(e.name);
  return [...ids].sort();
}

/** Remove this installation's (empty) scope directories, e.g. when a test's data directory goes away. */
export async function removeCgroupScope(layout: CgroupLayout): Promise<void> {
  const parents =
    layout.version === 2 ? [join(layout.root, "paddock", layout.scope)] : [layout.memory, layout.pids, layout.cpu].map((c) => join(c, "paddock", layout.scope));
  for (const p of parents) await rmdir(p).catch(() => undefined);
}
