/**
 * Starts a sandbox with the native `paddock-sandbox launch` (see docs/sandbox.md). The launcher
 * runs detached in its own session and does not die with the control plane, so sessions survive
 * a control-plane crash; `supervisorPid` (SIGTERM → the whole sandbox dies) and `initPid` (the
 * sandbox's pid 1 as seen from the host) are what the caller records to find it again.
 *
 * @example
 * const { supervisorPid } = await launchSandbox(sandboxBinaryPath(), {
 *   layersDir: "/var/lib/paddock/layers", lowers: ["l2", "l1"], lowerAbs: ["/"],
 *   upper: "/var/lib/paddock/s1/upper", work: "/var/lib/paddock/s1/work",
 *   rootfs: "/var/lib/paddock/s1/rootfs", user: { uid: 1000, gid: 1000 },
 *   listen: "/run/paddock/s1.sock", caps: "session", tmpfs: [{ dst: "/tmp", size: "512m" }],
 * }, "/var/log/paddock/s1.log");
 */
import { spawn } from "node:child_process";
import { closeSync, fstatSync, openSync } from "node:fs";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Readable } from "node:stream";
import type { ExecGuard, GuardDenial, SandboxMode } from "../../core/provider.ts";
import { PaddockError, invalid, unavailable } from "../../core/errors.ts";

/** Upper bound on launch-to-ready (normally a few ms); past it the launch is killed and rejected. */
const READY_LIMIT_MS = 30_000;

/** One line of /proc/PID/uid_map: `count` ids from `inside` map to host ids from `outside`. */
export interface IdMap {
  inside: number;
  outside: number;
  count: number;
}

export interface BindMount {
  /** Absolute host path. */
  src: string;
  /** Absolute path inside the sandbox; created if missing. */
  dst: string;
}

export interface TmpfsMount {
  /** Absolute path inside the sandbox. */
  dst: string;
  /** tmpfs size: digits with an optional k/m/g/% suffix, e.g. "512m" or "25%" (of RAM). */
  size: string;
}

/** The exec guard of one sandbox: its deny rules and where the launcher's files go (run dir). */
export interface LaunchGuard extends ExecGuard {
  /** Host path the rules are written to (0600) for `--guard`. */
  file: string;
  /** Host path the supervisor appends one JSON line per denial to (`--guard-log`, 0600). */
  log: string;
}

/** Mirrors the options of `paddock-sandbox launch`. */
export interface LaunchOptions {
  /** Directory the `lowers` names are relative to (keeps the overlay option string short). */
  layersDir?: string;
  /** Overlay lower layers, TOPMOST FIRST, relative to `layersDir`. */
  lowers?: string[];
  /** Absolute lower dirs below all `lowers`, e.g. `["/"]` for the host OS as a read-only base. */
  lowerAbs?: string[];
  /** Overlay upper and work dirs (absolute, same filesystem). Absent: a read-only root. */
  upper?: string;
  work?: string;
  /** Existing empty host dir; the overlay is mounted there inside the sandbox's mount namespace only. */
  rootfs: string;
  hostname?: string;
  /** Who commands run as inside ({1000, 1000} for sessions, {0, 0} for builds). */
  user: { uid: number; gid: number };
  /** Default `{ inside: 0, outside: 100000, count: 65536 }`; must start at inside 0 and never reach host id 0. */
  uidMap?: IdMap;
  gidMap?: IdMap;
  /** cgroup directories (v1 per controller, or one v2 dir) joined before any namespace exists. */
  cgroups?: string[];
  /** cgroup directories every command the agent starts moves into (its `cgroup.procs` is opened
   * by the launcher and handed to the agent); absent: commands stay in `cgroups`. */
  workCgroups?: string[];
  /** Paths inside the sandbox to hide (dir → empty read-only tmpfs, file → /dev/null). */
  masks?: string[];
  roBinds?: BindMount[];
  binds?: BindMount[];
  tmpfs?: TmpfsMount[];
  /** Join this existing network namespace instead of a fresh loopback-only one. */
  netns?: string;
  /** Host path of the agent's unix socket (created 0600). */
  listen: string;
  /** Capability set: `session` {SETUID, SETGID, KILL}; `build` adds what package managers need. */
  caps: SandboxMode;
  /** Deny rules enforced at exec time (fanotify in the supervisor); absent or empty: no guard. */
  guard?: LaunchGuard;
  /** Host path of a services spec file (`servicesFileText`): the agent starts and supervises
   * them (`--services`; the launcher opens it and hands the agent its descriptor). */
  services?: string;
}

export interface LaunchedSandbox {
  /** Host pid of `paddock-sandbox launch`; SIGTERM kills the sandbox, it exits with the sandbox. */
  supervisorPid: number;
  /** Host pid of the sandbox's pid 1 (the agent). */
  initPid: number;
}

/** The command line for `paddock-sandbox launch` (without `--ready-fd`). */
export function launchArgs(o: LaunchOptions): string[] {
  const args: string[] = [];
  const add = (flag: string, ...values: string[]): void => void args.push(flag, ...values);
  if (o.layersDir !== undefined) add("--layers-dir", o.layersDir);
  for (const l of o.lowers ?? []) add("--lower", l);
  for (const l of o.lowerAbs ?? []) add("--lower-abs", l);
  if (o.upper !== undefined) add("--upper", o.upper);
  if (o.work !== undefined) add("--work", o.work);
  add("--rootfs", o.rootfs);
  if (o.hostname !== undefined) add("--hostname", o.hostname);
  const map = (m: IdMap): string => `${m.inside} ${m.outside} ${m.count}`;
  add("--user", `${o.user.uid}:${o.user.gid}`);
  if (o.uidMap) add("--uid-map", map(o.uidMap));
  if (o.gidMap) add("--gid-map", map(o.gidMap));
  for (const c of o.cgroups ?? []) add("--cgroup", c);
  for (const c of o.workCgroups ?? []) add("--work-cgroup", c);
  for (const m of o.masks ?? []) add("--mask", m);
  for (const b of o.roBinds ?? []) add("--ro-bind", b.src, b.dst);
  for (const b of o.binds ?? []) add("--bind", b.src, b.dst);
  for (const t of o.tmpfs ?? []) add("--tmpfs", t.dst, t.size);
  if (o.netns !== undefined) add("--netns", o.netns);
  add("--listen", o.listen);
  add("--caps", o.caps);
  if (o.guard && o.guard.deny.length > 0) add("--guard", o.guard.file, "--guard-log", o.guard.log);
  if (o.services !== undefined) add("--services", o.services);
  return args;
}

/** True when S has a control character (the launcher refuses them: they would break the line format). */
const hasControl = (s: string): boolean => [...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

/**
 * The `--guard` file: one `deny<TAB>PROGRAM<TAB>MESSAGE` line per rule. Throws `invalid_argument`
 * for a rule the launcher would refuse (it validates again and fails closed).
 */
export function guardFileText(guard: ExecGuard): string {
  return guard.deny
    .map(({ program, message }) => {
      const bare = !program.startsWith("/");
      const badName =
        program.length === 0 ||
        Buffer.byteLength(program) > 255 ||
        hasControl(program) ||
        (bare ? program.includes("/") || program === "." || program === ".." : program === "/" || /\/\.\.?\//.test(program));
      if (badName) throw invalid(`guardrails.commands.deny: ${JSON.stringify(program)} is not a program name or an absolute path`);
      if (message.length === 0 || Buffer.byteLength(message) > 1024 || hasControl(message))
        throw invalid(`guard message for ${program}: one printable line of 1 to 1024 bytes`);
      return `deny\t${program}\t${message}\n`;
    })
    .join("");
}

/**
 * The denials a sandbox's supervisor has logged so far ([] when the log does not exist). A line
 * that is not a complete record (e.g. one being written) is skipped.
 */
export async function readGuardLog(path: string): Promise<GuardDenial[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out: GuardDenial[] = [];
  for (const line of text.split("\n")) {
    if (!line.endsWith("}")) continue;
    try {
      const d = JSON.parse(line) as Partial<GuardDenial>;
      if (typeof d.time === "string" && typeof d.pid === "number" && typeof d.program === "string" && typeof d.path === "string" && typeof d.reason === "string")
        out.push({ time: d.time, pid: d.pid, program: d.program, path: d.path, reason: d.reason });
    } catch {
      // torn or foreign line: not a denial record
    }
  }
  return out;
}

/** `<repo>/build/paddock-sandbox` (built by `make -C native`). */
export function sandboxBinaryPath(): string {
  return fileURLToPath(new URL("../../../build/paddock-sandbox", import.meta.url));
}

/**
 * Spawn the launcher detached and resolve once the agent inside has written `ready` to the
 * ready pipe (readiness is that byte, never a sleep).
 * @returns the supervisor's and the sandbox init's host pids.
 * Rejects with PaddockError `unavailable` carrying the launcher's `error …` line if the pipe
 * closes without `ready`.
 */
export async function launchSandbox(binary: string, opts: LaunchOptions, logFile: string): Promise<LaunchedSandbox> {
  if (opts.guard && opts.guard.deny.length > 0) {
    await writeFile(opts.guard.file, guardFileText(opts.guard), { mode: 0o600 });
    await chmod(opts.guard.file, 0o600); // the mode above applies only when the file is new
  }
  // Synchronous from spawn until the ready pipe's listeners are attached: a launcher that fails
  // at once (a bad option, say) closes the pipe right away, and an await in between could let the
  // stream's "close" go by unheard (the launch would then hang until READY_LIMIT_MS).
  const log = openSync(logFile, "a", 0o600);
  const logStart = fstatSync(log).size;
  let child;
  try {
    child = spawn(binary, ["launch", ...launchArgs(opts), "--ready-fd", "3"], {
      detached: true,
      stdio: ["ignore", log, log, "pipe"],
      // Fail closed: the control plane's environment may hold secrets; the launcher needs none.
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    });
  } finally {
    closeSync(log); // the child has its own copy
  }
  const ready = child.stdio[3] as Readable;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  let stuck: NodeJS.Timeout | undefined;
  try {
    const initPid = await new Promise<number>((resolve, reject) => {
      let text = "";
      let initPid = 0;
      child.once("error", (err) => reject(unavailable(`cannot run ${binary}: ${err.message}`, err)));
      // Not a readiness guess: a bound so a wedged launcher cannot hang create() forever.
      // Kept referenced until the launch settles: it is also what keeps the event loop alive while
      // a failed launcher's pipe and exit are being read (every other handle here may be unref'd).
      stuck = setTimeout(() => reject(unavailable(`sandbox not ready after ${READY_LIMIT_MS} ms (log: ${logFile})`)), READY_LIMIT_MS);
      ready.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8");
        const pid = /^pid (\d+)$/m.exec(text);
        if (pid) initPid = Number(pid[1]);
        if (/^ready$/m.test(text) && initPid > 0) {
          clearTimeout(stuck);
          resolve(initPid);
        }
      });
      ready.once("close", () => {
        if (initPid > 0 && /^ready$/m.test(text)) return; // resolved; we closed it ourselves
        // The child's error line is written before it exits, and the pipe closes only after
        // every holder exited; give the supervisor a moment to exit too, then read the log.
        const timeout = new Promise<void>((r) => setTimeout(r, 2000).unref());
        void Promise.race([exited, timeout])
          .then(() => startError(logFile, logStart))
          .then((msg) => reject(new PaddockError("unavailable", `sandbox did not start: ${msg}`)));
      });
    });
    return { supervisorPid: child.pid ?? 0, initPid };
  } catch (err) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(child.pid, "SIGTERM"); // a half-started sandbox dies with its supervisor
      } catch {
        // already gone
      }
    }
    throw err;
  } finally {
    clearTimeout(stuck);
    ready.destroy();
    child.unref();
  }
}

async function startError(logFile: string, from: number): Promise<string> {
  const text = (await readFile(logFile)).subarray(from).toString("utf8");
  const errors = text.split("\n").filter((l) => l.startsWith("error "));
  return errors.length ? errors.join("; ") : `launcher exited without an error message (log: ${logFile})`;
}
