/**
 * Host commands run by a long-lived helper shell instead of a `spawn()` each from the control plane.
 *
 * Why: `spawn()` forks the calling process. In a server of ~210 MiB RSS (Node 20, a 2-core test
 * machine) each one blocks the event loop ~3 ms on a quiet machine and 5–20 ms on a busy one, and
 * whichever request is in flight pays for it. The helper (`sh`, ~1 MiB) pays for the forks instead;
 * a command costs the event loop one pipe write, one report line and a few file operations on the
 * thread pool.
 *
 * Protocol: the helper reads commands on stdin, one line each, made here only: argv single-quoted
 * (`shellQuote`), scripts and inputs written to files first, so nothing a caller passes is ever
 * parsed by the helper itself. Each command runs in the background with its stdin, stdout and
 * stderr on files in a private directory and reports `<id> <exit status>` on the helper's stdout
 * when it ends (one short `echo`: atomic on a pipe), so any number of commands are in flight at
 * once. The helper starts on first use, and again after it died (the commands it had in flight
 * fail); it keeps the process alive only while a command is in flight. After `close`, commands
 * are spawned directly.
 *
 * @example
 * const runner = new CommandRunner();
 * const { stdout } = await runner.run(["btrfs", "subvolume", "show", path]);
 * await runner.close();
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { readFile, readdir, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { internal, unavailable } from "./errors.ts";
import { runCommand, type RunResult } from "./run.ts";

export interface CommandRunnerOptions {
  /** Environment of the helper, so of every command (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

interface Job {
  /** The command, for messages. */
  what: string;
  /** stdout, stderr, then any input or script file. */
  files: string[];
  resolve: (r: RunResult) => void;
  reject: (err: Error) => void;
}

interface Helper {
  child: ChildProcessWithoutNullStreams;
  dir: string;
  jobs: Map<number, Job>;
  /** Exited, or failed to start. */
  dead: boolean;
  /** `close` ended its input: no new commands. */
  ending: boolean;
  exited: Promise<void>;
  /** Called whenever `jobs` becomes empty. */
  idle: (() => void)[];
  /** The helper's own stderr (e.g. a redirection it could not make), the last few KiB, for messages. */
  stderr: string;
}

/** One argument quoted for sh: in single quotes, each `'` as `'\''`. Safe for any string without NUL. */
export function shellQuote(arg: string): string {
  if (arg.includes("\0")) throw internal("a command argument contains a NUL byte");
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

export class CommandRunner {
  private helper: Helper | null = null;
  private seq = 0;
  private closed = false;

  constructor(private readonly opts: CommandRunnerOptions = {}) {}

  /** The helper's process id while one runs (diagnostics, tests). */
  get pid(): number | undefined {
    return this.helper?.dead ? undefined : this.helper?.child.pid;
  }

  /** Commands in flight in the helper right now. */
  get pending(): number {
    return this.helper?.jobs.size ?? 0;
  }

  /**
   * Like `runCommand`: resolves exit status, stdout and stderr; rejects (PaddockError internal) on
   * a non-zero exit unless `allowFailure`, with the command and its stderr in the message. A
   * program that is not installed exits 127 (the shell says so on stderr). Rejects (unavailable)
   * when the helper died while the command ran: it may or may not have taken effect.
   */
  async run(argv: readonly string[], opts: { allowFailure?: boolean; input?: string } = {}): Promise<RunResult> {
    if (!argv.length) throw internal("CommandRunner.run: empty argv");
    const command = argv.map(shellQuote).join(" ");
    const r = await this.submit(
      argv.join(" "),
      (f) => `${command} <${f.input ?? "/dev/null"} >${f.out} 2>${f.err}`,
      { input: opts.input },
      () => runCommand(argv, { allowFailure: true, input: opts.input, env: this.opts.env }),
    );
    if (r.code !== 0 && !opts.allowFailure) {
      const why = r.stderr.trim() || r.stdout.trim() || `exit ${r.code}`;
      throw internal(`${argv.join(" ")} failed: ${why}`);
    }
    return r;
  }

  /**
   * Run a shell script (in a subshell with `set -e`, stdin from /dev/null) and resolve its output,
   * stdout and stderr together; reject with its last lines when it fails.
   */
  async script(text: string): Promise<string> {
    const r = await this.submit(
      "sh script",
      (f) => `( set -e; . ${f.script ?? "/dev/null"} ) </dev/null >${f.out} 2>&1`,
      { script: text },
      () => runCommand(["sh", "-c", `exec </dev/null 2>&1\nset -e\n${text}`], { allowFailure: true, env: this.opts.env }),
    );
    if (r.code === 0) return r.stdout;
    throw new Error(`script failed (exit ${r.code}): ${r.stdout.trim().split("\n").slice(-5).join("; ")}`);
  }

  /** Waits for the commands in flight, then ends the helper. Later commands are spawned directly. */
  async close(): Promise<void> {
    this.closed = true;
    const h = this.helper;
    this.helper = null;
    if (!h) return;
    h.ending = true;
    if (h.jobs.size) await new Promise<void>((r) => h.idle.push(r));
    // Referenced while we wait: an unreferenced child would let the event loop end under this await.
    hold(h.child, true);
    h.child.stdin.end();
    await h.exited;
    await rm(h.dir, { recursive: true, force: true });
  }

  private async submit(
    what: string,
    line: (f: { out: string; err: string; input?: string; script?: string }) => string,
    files: { input?: string; script?: string },
    direct: () => Promise<RunResult>,
  ): Promise<RunResult> {
    if (this.closed) return direct();
    let h: Helper;
    try {
      h = this.helper && !this.helper.dead ? this.helper : (this.helper = this.start());
    } catch {
      // No helper (no private directory, no process): slower, but the command still runs.
      return direct();
    }
    const id = this.seq++;
    const path = (ext: string): string => join(h.dir, `${id}.${ext}`);
    const paths = [path("o"), path("e")];
    if (files.input !== undefined) await writeFile(paths[paths.push(path("i")) - 1]!, files.input);
    if (files.script !== undefined) await writeFile(paths[paths.push(path("sh")) - 1]!, files.script);
    if (h.dead || h.ending) {
      void removeFiles(paths);
      if (h.ending) return direct();
      throw unavailable(`${what} not run: the command helper exited${h.stderr.trim() ? `: ${h.stderr.trim()}` : ""}`);
    }
    const q = (ext: string): string | undefined => (paths.includes(path(ext)) ? shellQuote(path(ext)) : undefined);
    // The job's pid comes back too, so that the helper can be told to reap it (see `start`).
    const text = `{ ${line({ out: shellQuote(path("o")), err: shellQuote(path("e")), input: q("i"), script: q("sh") })}; echo "${id} $?"; } & echo "${id} pid $!"\n`;
    return new Promise<RunResult>((resolve, reject) => {
      h.jobs.set(id, { what, files: paths, resolve, reject });
      if (h.jobs.size === 1) hold(h.child, true);
      h.child.stdin.write(text);
    });
  }

  private start(): Helper {
    const dir = mkdtempSync(join(tmpdir(), RUN_DIR_PREFIX));
    // Whose it is, so that a later runner can reclaim it once this process is gone (see reclaimRunDirs).
    const self = OWNER ?? "";
    if (self) writeFileSync(join(dir, OWNER_FILE), self);
    if (!swept) {
      swept = true;
      void reclaimRunDirs(tmpdir());
    }
    const child = spawn("sh", [], { env: this.opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let exited = (): void => undefined;
    const h: Helper = { child, dir, jobs: new Map(), dead: false, ending: false, exited: new Promise((r) => (exited = r)), idle: [], stderr: "" };
    const finished = (id: number): Job | undefined => {
      const job = h.jobs.get(id);
      if (!job) return undefined;
      h.jobs.delete(id);
      if (!h.jobs.size) {
        if (!h.ending) hold(child, false);
        for (const r of h.idle.splice(0)) r();
      }
      return job;
    };
    /*
     * A non-interactive sh keeps every background job it started (a zombie and a job table entry)
     * until a `wait` names it. So each job's pid is reported (`<id> pid <pid>`) beside its status
     * (`<id> <status>`), in either order, and once both are in, the helper is told to wait for it:
     * it has reported, so it is exiting, and the `wait` returns at once.
     */
    const pids = new Map<number, string>();
    const reported = new Set<number>();
    let partial = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (text: string) => {
      partial += text;
      const reap: string[] = [];
      for (let nl = partial.indexOf("\n"); nl >= 0; nl = partial.indexOf("\n")) {
        const [idText = "", a = "", b = ""] = partial.slice(0, nl).split(" ");
        partial = partial.slice(nl + 1);
        const id = Number(idText);
        if (a === "pid") {
          if (reported.delete(id)) reap.push(b);
          else pids.set(id, b);
          continue;
        }
        const pid = pids.get(id);
        if (pid === undefined) reported.add(id);
        else {
          pids.delete(id);
          reap.push(pid);
        }
        const job = finished(id);
        if (job) void collect(job, Number(a));
      }
      if (reap.length && !h.dead) child.stdin.write(`wait ${reap.join(" ")}\n`);
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => (h.stderr = (h.stderr + text).slice(-4096)));
    child.stdin.on("error", () => undefined);
    const gone = (err?: Error): void => {
      if (h.dead) return;
      h.dead = true;
      if (this.helper === h) this.helper = null;
      const why = err
        ? `cannot run sh: ${err.message}`
        : `the command helper exited (${child.signalCode ?? `exit ${String(child.exitCode)}`})${h.stderr.trim() ? `: ${h.stderr.trim()}` : ""}`;
      for (const id of [...h.jobs.keys()]) {
        const job = finished(id);
        if (!job) continue;
        void removeFiles(job.files);
        job.reject(unavailable(`${job.what} failed: ${why}`, err));
      }
      hold(child, false);
      exited();
      // Commands it started may still be running and write here; their files go with the directory.
      if (!h.ending) void rm(dir, { recursive: true, force: true }).catch(() => undefined);
    };
    child.once("error", gone);
    child.once("exit", () => gone());
    // Its directory goes with it, also when this process ends without `close` (stdin reaches EOF).
    child.stdin.write(`trap ${shellQuote(`rm -rf -- ${shellQuote(dir)}`)} EXIT\n`);
    hold(child, false);
    return h;
  }
}

const RUN_DIR_PREFIX = "paddock-run-";
const OWNER_FILE = "owner";

/** `<pid> <start time>` of a live process (Linux `/proc/<pid>/stat` field 22), or null when there is none (a zombie is dead). */
function ownerOf(stat: string, pid: string): string | null {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const start = fields[19];
  return start && fields[0] !== "Z" && fields[0] !== "X" ? `${pid} ${start}` : null;
}

/** This process as a run directory's owner (null off Linux: its directories are then never reclaimed by others). */
const OWNER = ((): string | null => {
  try {
    return ownerOf(readFileSync("/proc/self/stat", "utf8"), String(process.pid));
  } catch {
    return null;
  }
})();

let swept = false;

/**
 * Remove the run directories of processes that are gone. A process that ends normally, or alone,
 * leaves none (its helper removes its directory on EOF); one killed with its whole process group
 * (kill -9 of a group, a container or cgroup kill) takes the helper, and so that cleanup, with
 * it. Owned by pid and start time, so a reused pid does not keep a dead owner's directory; a
 * directory without an owner file (being made, or from an older version) is left alone.
 */
export async function reclaimRunDirs(parent: string): Promise<string[]> {
  const removed: string[] = [];
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(RUN_DIR_PREFIX)) continue;
    const dir = join(parent, name);
    const owner = (await readFile(join(dir, OWNER_FILE), "utf8").catch(() => "")).trim();
    const pid = /^(\d+) \d+$/.exec(owner)?.[1];
    if (!pid || owner === OWNER) continue;
    const now = await readFile(`/proc/${pid}/stat`, "utf8").then((s) => ownerOf(s, pid), () => null);
    if (now === owner) continue;
    await rm(dir, { recursive: true, force: true }).then(() => removed.push(dir), () => undefined);
  }
  return removed;
}

async function collect(job: Job, code: number): Promise<void> {
  const [stdout = "", stderr = ""] = await Promise.all(job.files.slice(0, 2).map((f) => readFile(f, "utf8").catch(() => "")));
  await removeFiles(job.files);
  job.resolve({ code: Number.isInteger(code) ? code : 128, stdout, stderr });
}

async function removeFiles(files: string[]): Promise<void> {
  await Promise.all(files.map((f) => unlink(f).catch(() => undefined)));
}

/** Keep the process alive only while a command is in flight. */
function hold(c: ChildProcessWithoutNullStreams, on: boolean): void {
  for (const handle of [c, c.stdin, c.stdout, c.stderr] as { ref(): void; unref(): void }[]) {
    if (on) handle.ref();
    else handle.unref();
  }
}
