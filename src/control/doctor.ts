import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { Store } from "../core/index.ts";
import { runCommand } from "../core/index.ts";
import type { ClosableLayerStore } from "../layers/index.ts";
import { SHARED_FILES, cgroupDirs, detectCgroupLayout, installationScope, listCgroupIds, sandboxBinaryPath, type NetworkManager } from "../providers/local/index.ts";

/**
 * `paddock doctor`: is this host ready to run sandboxes, and has anything leaked? Each check says
 * what it found and, when it fails, how to fix it.
 */
export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
  /** Kernel objects or files that belong to no live session. */
  leaks: string[];
}

export interface DoctorDeps {
  home: string;
  store: Store;
  layers: ClosableLayerStore;
  network: NetworkManager;
}

export async function runDoctor(deps: DoctorDeps): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  const filesystems = await readFile("/proc/filesystems", "utf8").catch(() => "");
  add("overlayfs", /\toverlay\n/.test(filesystems), "kernel supports overlay mounts (modprobe overlay if missing)");
  const maxUserNs = Number((await readFile("/proc/sys/user/max_user_namespaces", "utf8").catch(() => "0")).trim());
  add("user namespaces", maxUserNs > 0, `user.max_user_namespaces = ${maxUserNs}${maxUserNs > 0 ? "" : " (set it above 0)"}`);
  const seccomp = await readFile("/proc/sys/kernel/seccomp/actions_avail", "utf8").catch(() => "");
  add("seccomp", seccomp.includes("errno"), seccomp ? "seccomp filters available" : "kernel lacks seccomp filters");
  const scope = installationScope(deps.home);
  try {
    const layout = await detectCgroupLayout(scope);
    add("cgroups", true, layout.version === 2 ? `cgroup v2 at ${layout.root}` : `cgroup v1 controllers: ${layout.memory}, ${layout.pids}, ${layout.cpu}`);
  } catch (err) {
    add("cgroups", false, (err as Error).message);
  }
  add("launcher", existsSync(sandboxBinaryPath()), `${sandboxBinaryPath()} (build it with: make build)`);
  add(...(await execGuardReadiness()));
  for (const tool of ["mkfs.btrfs", "btrfs", "setfattr", "mmdebstrap", "nft", "ip", "bwrap"]) {
    const found = (await runCommand(["sh", "-c", `command -v ${tool}`], { allowFailure: true })).code === 0;
    add(`tool ${tool}`, found || tool === "bwrap", found ? "installed" : `missing: apt-get install ${debianPackageOf(tool)} (make up installs it)`);
  }
  add("layer store", true, deps.layers.kind === "btrfs" ? "btrfs (copy-on-write, per-session disk limits)" : "directories (no per-session disk limit: install btrfs-progs)");
  return { ok: checks.every((c) => c.ok), checks, leaks: await findLeaks(deps, scope) };
}

/**
 * The exec guard (guardrails.commands.deny inside sandboxes) needs fanotify permission events and
 * the per-pid-namespace memfd_noexec sysctl (Linux ≥ 6.3). Without them a guarded session refuses
 * to start (fail closed), so say so here first.
 */
async function execGuardReadiness(): Promise<[string, boolean, string]> {
  const memfd = existsSync("/proc/sys/vm/memfd_noexec");
  const config = await kernelConfig();
  const fanotify = config === null ? null : /^CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y$/m.test(config);
  if (!memfd) return ["exec guard", false, "vm.memfd_noexec is missing (Linux 6.3 or newer is needed): sessions with guardrails.commands.deny cannot start"];
  if (fanotify === false) return ["exec guard", false, "the kernel lacks CONFIG_FANOTIFY_ACCESS_PERMISSIONS: sessions with guardrails.commands.deny cannot start"];
  return ["exec guard", true, `fanotify permission events ${fanotify === null ? "(kernel config not readable; checked at each guarded launch)" : "available"}, vm.memfd_noexec available`];
}

async function kernelConfig(): Promise<string | null> {
  const release = (await readFile("/proc/sys/kernel/osrelease", "utf8").catch(() => "")).trim();
  const plain = await readFile(`/boot/config-${release}`, "utf8").catch(() => null);
  if (plain !== null) return plain;
  const gz = await readFile("/proc/config.gz").catch(() => null);
  return gz === null ? null : gunzipSync(gz).toString("utf8");
}

function debianPackageOf(tool: string): string {
  switch (tool) {
    case "mkfs.btrfs":
    case "btrfs":
      return "btrfs-progs";
    case "setfattr":
      return "attr";
    case "bwrap":
      return "bubblewrap";
    case "nft":
      return "nftables";
    case "ip":
      return "iproute2";
    default:
      return tool;
  }
}

/** Ids of the sandboxes that must be kept: live sessions and pool members. */
export async function liveSandboxes(store: Store): Promise<Set<string>> {
  const live = new Set((await store.listSessions({ states: ["starting", "running"] })).map((s) => s.id));
  for (const m of await store.listPoolMembers()) live.add(m.id);
  return live;
}

async function findLeaks(deps: DoctorDeps, scope: string): Promise<string[]> {
  const live = await liveSandboxes(deps.store);
  const leaks: string[] = [];
  try {
    const layout = await detectCgroupLayout(scope);
    for (const id of await listCgroupIds(layout)) if (!live.has(id)) leaks.push(`cgroup ${cgroupDirs(layout, id).join(", ")}`);
  } catch {
    /* reported as a check */
  }
  const { active, committed } = await deps.layers.list();
  for (const key of active) if (!live.has(key.replace(/^sbx-/, ""))) leaks.push(`writable layer ${key}`);
  const snapshotLayers = new Set((await deps.store.listSnapshots()).map((s) => s.layerId));
  for (const id of committed) if (id.startsWith("snap-") && !snapshotLayers.has(id)) leaks.push(`snapshot layer ${id} (no snapshot has it)`);
  const runDir = join("/run/paddock", scope);
  for (const id of await readdir(runDir).catch(() => [] as string[])) if (!live.has(id) && id !== SHARED_FILES) leaks.push(`run directory ${join(runDir, id)}`);
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  for (const line of mounts.split("\n")) if (line.includes(`${runDir}/`)) leaks.push(`mount ${line.split(" ")[4]}`);
  leaks.push(...(await deps.network.leaks(live)));
  return leaks;
}
