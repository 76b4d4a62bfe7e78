/**
 * The E2B processes of each sandbox: what envd's process table is, kept on the control plane.
 * Each process is one command run through the session's command gate (guardrails, approvals,
 * audit) and exec path, so it runs in the sandbox exactly as a native exec does. It outlives the
 * Start stream that made it (a background command, a disconnected handle) and is forgotten when
 * it ends, or when its sandbox stops and takes the command with it.
 *
 * Pids are Paddock's own: small numbers per sandbox, from 1, never reused while the control
 * plane runs. The agent does not report the in-sandbox pid, and E2B's SDK uses the pid only as
 * a handle for these calls; `ps` inside the sandbox shows other numbers.
 */
import { PassThrough } from "node:stream";
import type { ControlPlane } from "../../control/index.ts";
import { ExecSignals, OutputGate, PaddockError, type Principal } from "../../core/index.ts";
import { ConnectError, type ConnectStream } from "./connect.ts";
import { Listener } from "./process-listener.ts";
import { encodeBytes, endEventOf, type ProcessConfig, type ProcessEvent, type ProcessInput, type ProcessSelector, type ProcessSignal, type PtySize, type StartRequest } from "./process-messages.ts";
import { PtyMarkerFilter, ptyCommand, resizeArgv } from "./process-pty.ts";
import { E2B_USER as E2B_ACCOUNT } from "./sandboxes.ts";

/** E2B's sandbox account (sandboxes.ts): commands run as it (the session user), in its home by default. */
export const E2B_USER = E2B_ACCOUNT.name;
export const E2B_HOME = E2B_ACCOUNT.home;
/** Running processes one sandbox may have here at once. */
export const MAX_PROCESSES_PER_SANDBOX = 256;
/** Bytes a client may leave unread before the process is made to wait (then it blocks in write). */
const OUTPUT_HIGH_WATER = 4 << 20;
/** Stdin bytes held for a process that is not reading before SendInput waits. */
const STDIN_BUFFER = 1 << 20;

/** Who asked, for the command gate and its audit records. */
export interface ProcessOwner {
  sessionId: string;
  principal: Principal;
}

/** One E2B process: its config as the SDK sent it, its listeners, stdin, signals and PTY. */
export class E2bProcess {
  readonly #listeners = new Set<Listener>();
  readonly #signals = new ExecSignals();
  readonly #output = new OutputGate();
  readonly #abort = new AbortController();
  readonly #stdin: PassThrough | null;
  readonly #pty: { filter: PtyMarkerFilter; argv: string[]; size: PtySize; resizing: Promise<void>; pending: boolean } | null;
  #running = true;
  /** Input writes and the stdin close, one after another. */
  #writes: Promise<void> = Promise.resolve();
  /** The end event, or the error that ended it, once it has ended. */
  #outcome: { end: ReturnType<typeof endEventOf> } | { error: unknown } | null = null;

  constructor(
    readonly pid: number,
    readonly request: StartRequest,
    private readonly owner: ProcessOwner,
    private readonly cp: ControlPlane,
  ) {
    const wantsStdin = request.pty !== undefined || request.stdin !== false;
    this.#stdin = wantsStdin ? new PassThrough({ highWaterMark: STDIN_BUFFER }) : null;
    this.#stdin?.on("error", () => undefined);
    if (request.pty) {
      const { argv, marker } = ptyCommand(request.process, request.pty);
      this.#pty = { filter: new PtyMarkerFilter(marker), argv, size: request.pty, resizing: Promise.resolve(), pending: false };
    } else this.#pty = null;
  }

  get tag(): string | undefined {
    return this.request.tag;
  }

  get config(): ProcessConfig {
    return this.request.process;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Stream this process's events to `stream` from now on (start first); resolves after its end. */
  attach(stream: ConnectStream, keepaliveMs: number, stillAuthorised?: () => Promise<boolean>): Promise<void> {
    const listener = new Listener(stream, keepaliveMs, () => this.#flow(), stillAuthorised);
    this.#listeners.add(listener);
    void listener.done.catch(() => undefined).finally(() => {
      this.#listeners.delete(listener);
      this.#flow();
    });
    listener.send({ start: { pid: this.pid } }, 0);
    if (this.#outcome) this.#finish(listener, this.#outcome); // it ended between the look-up and now
    return listener.done;
  }

  /** Run it: through the command gate, as the sandbox's user, in `cwd`. Resolves when it has ended. */
  async run(place: { cwd: string | undefined; e2bHome: boolean }, timeoutMs: number, onGone: () => void): Promise<void> {
    const argv = this.#pty?.argv ?? [this.config.cmd, ...this.config.args];
    // E2B's account, as envd sets it; a sandbox without it keeps the session user's own.
    const account: Record<string, string> = place.e2bHome ? { HOME: E2B_HOME, USER: E2B_USER, LOGNAME: E2B_USER } : {};
    const env = { ...account, ...this.config.envs };
    const cwd = place.cwd;
    let outcome: { end: ReturnType<typeof endEventOf> } | { error: unknown };
    try {
      const result = await this.cp.commands.run(this.owner.sessionId, this.owner.principal, {
        argv, env, signals: this.#signals, output: this.#output, signal: this.#abort.signal,
        ...(cwd ? { cwd } : {}),
        ...(timeoutMs > 0 ? { timeoutMs } : {}),
        ...(this.#stdin ? { stdin: this.#stdin } : {}),
        onStdout: (chunk) => this.#data(this.#pty ? "pty" : "stdout", this.#pty ? this.#pty.filter.push(chunk) : chunk),
        onStderr: (chunk) => this.#data(this.#pty ? "pty" : "stderr", chunk),
      });
      outcome = { end: endEventOf(result) };
    } catch (err) {
      outcome = { error: err };
    }
    if (this.#pty) this.#data("pty", this.#pty.filter.flush());
    this.#running = false;
    this.#outcome = outcome;
    onGone();
    this.#stdin?.destroy();
    for (const l of this.#listeners) this.#finish(l, outcome);
  }

  #finish(listener: Listener, outcome: { end: ReturnType<typeof endEventOf> } | { error: unknown }): void {
    if ("end" in outcome) listener.send({ end: outcome.end }, 0, true);
    else listener.fail(outcome.error);
  }

  /** Kill it now (the control plane is closing). */
  abort(): void {
    this.#abort.abort(new PaddockError("unavailable", "the E2B front end is closing"));
  }

  signal(signal: ProcessSignal): void {
    this.#signals.send(signal);
  }

  /**
   * Write input, in order: a write waits while what the process has not read yet is over
   * STDIN_BUFFER, so at most that plus one request's bytes are held for it.
   */
  write(input: ProcessInput, signal: AbortSignal): Promise<void> {
    const pty = "pty" in input;
    if (pty !== (this.#pty !== null)) {
      return Promise.reject(new ConnectError("failed_precondition", pty ? `process ${this.pid} has no PTY: send its input as stdin` : `process ${this.pid} runs on a PTY: send its input as pty bytes`));
    }
    const bytes = "pty" in input ? input.pty : input.stdin;
    const next = this.#writes.then(() => this.#writeNow(bytes, signal));
    this.#writes = next.catch(() => undefined);
    return next;
  }

  async #writeNow(bytes: Buffer, signal: AbortSignal): Promise<void> {
    const stdin = this.#stdin;
    const closed = (): ConnectError => new ConnectError("failed_precondition", `process ${this.pid} has no open stdin (start it with stdin: true; CloseStdin ends it)`);
    if (!stdin || stdin.writableEnded || !this.#running) throw closed();
    if (stdin.writableNeedDrain) {
      // The command is not reading: hold the caller until it does (or it ends, or the caller goes).
      await new Promise<void>((resolve) => {
        const done = (): void => {
          stdin.off("drain", done).off("close", done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        stdin.once("drain", done).once("close", done);
        signal.addEventListener("abort", done, { once: true });
      });
      if (signal.aborted) throw new ConnectError("canceled", "the client went away before the process read its input");
      if (stdin.writableEnded || stdin.destroyed || !this.#running) throw closed();
    }
    if (bytes.length > 0) stdin.write(bytes);
  }

  /** End its stdin after the input already sent. */
  closeStdin(): Promise<void> {
    if (this.#pty) return Promise.reject(new ConnectError("failed_precondition", `process ${this.pid} runs on a PTY: send Ctrl-D (0x04) as pty input to end its input`));
    const next = this.#writes.then(() => {
      if (this.#stdin && !this.#stdin.writableEnded) this.#stdin.end();
    });
    this.#writes = next;
    return next;
  }

  /** Resize its PTY (in order; a size asked for before the PTY's name is known is applied once it is). */
  resize(size: PtySize): Promise<void> {
    const pty = this.#pty;
    if (!pty) return Promise.reject(new ConnectError("failed_precondition", `process ${this.pid} has no PTY to resize`));
    pty.size = size;
    const next = pty.resizing.then(() => this.#applySize(size));
    pty.resizing = next.catch(() => undefined);
    return next;
  }

  async #applySize(size: PtySize): Promise<void> {
    const pty = this.#pty;
    if (!pty) return;
    // The PTY's name is not known yet: the newest size is applied as soon as it is (see #data).
    if (!pty.filter.tty) {
      pty.pending = !pty.filter.settled;
      return;
    }
    const tty = pty.filter.tty;
    let stderr = "";
    const r = await this.cp.commands.run(this.owner.sessionId, this.owner.principal, {
      argv: resizeArgv(tty, size), timeoutMs: 10_000, onStderr: (c) => (stderr += c.toString("utf8")),
    });
    if (r.exitCode === 126) throw new ConnectError("permission_denied", stderr.trim() || "resizing the PTY was refused");
    if (r.exitCode !== 0) throw new ConnectError("internal", `resizing the PTY (stty) exited ${r.exitCode}: ${stderr.trim().slice(0, 500)}`);
  }

  #data(kind: "stdout" | "stderr" | "pty", chunk: Buffer): void {
    if (this.#pty?.pending && this.#pty.filter.tty) {
      this.#pty.pending = false;
      void this.resize(this.#pty.size).catch(() => undefined);
    }
    if (chunk.length === 0) return;
    const value = encodeBytes(chunk);
    const event: ProcessEvent = { data: kind === "stdout" ? { stdout: value } : kind === "stderr" ? { stderr: value } : { pty: value } };
    for (const l of this.#listeners) l.send(event, chunk.length);
  }

  /** Output flow control: a listener far behind makes the command wait; none behind lets it go on. */
  #flow(): void {
    let behind = false;
    for (const l of this.#listeners) if (!l.closed && l.unread > OUTPUT_HIGH_WATER) behind = true;
    if (behind) this.#output.pause();
    else this.#output.resume();
  }
}

/** One sandbox's processes. */
class SandboxProcesses {
  readonly processes = new Map<number, E2bProcess>();
  /** Starts past the limit check but not yet in `processes` (their cwd is being checked). */
  starting = 0;
  nextPid = 1;
  /** Whether the sandbox has E2B's /home/user (asked once). */
  home: Promise<boolean> | null = null;
}

/** Every sandbox's E2B processes (one per E2B front end). */
export class ProcessTable {
  readonly #sandboxes = new Map<string, SandboxProcesses>();

  constructor(private readonly cp: ControlPlane) {}

  /**
   * Register a process and start it; `attach` the Start stream before this resolves' caller
   * awaits the run. Rejects `resource_exhausted` past MAX_PROCESSES_PER_SANDBOX.
   */
  async start(owner: ProcessOwner, request: StartRequest, timeoutMs: number): Promise<{ process: E2bProcess; run: () => Promise<void> }> {
    const sandbox = this.#sandbox(owner.sessionId);
    // The slot is taken before the first await: concurrent starts must not all pass the check.
    if (sandbox.processes.size + sandbox.starting >= MAX_PROCESSES_PER_SANDBOX) {
      throw new ConnectError("resource_exhausted", `sandbox has ${sandbox.processes.size + sandbox.starting} running processes; at most ${MAX_PROCESSES_PER_SANDBOX}: wait for some to end or kill them`);
    }
    sandbox.starting++;
    let place: { cwd: string | undefined; e2bHome: boolean };
    try {
      place = await this.#place(owner.sessionId, sandbox, request.process.cwd);
    } finally {
      sandbox.starting--;
    }
    const pid = sandbox.nextPid++;
    const process = new E2bProcess(pid, request, owner, this.cp);
    sandbox.processes.set(pid, process);
    // The sandbox's entry (its pid counter, so a pid is never reused) stays while its session
    // runs; once the last process of a stopped session ends, it goes.
    const gone = (): void => {
      sandbox.processes.delete(pid);
      if (sandbox.processes.size > 0 || sandbox.starting > 0) return;
      void this.cp.sessions.get(owner.sessionId).then(
        (s) => s.state === "running" || this.#forget(owner.sessionId, sandbox),
        () => this.#forget(owner.sessionId, sandbox),
      );
    };
    return { process, run: () => process.run(place, timeoutMs, gone) };
  }

  /** The running processes of a session's sandbox. */
  list(sessionId: string): E2bProcess[] {
    return [...(this.#sandboxes.get(sessionId)?.processes.values() ?? [])];
  }

  /** The running process `selector` names, or `not_found` (an ended one is gone, as in envd). */
  find(sessionId: string, selector: ProcessSelector): E2bProcess {
    const all = this.list(sessionId);
    const found = "pid" in selector ? all.find((p) => p.pid === selector.pid) : all.find((p) => p.tag === selector.tag);
    if (!found) throw new ConnectError("not_found", "pid" in selector ? `process with pid ${selector.pid} not found` : `process with tag ${JSON.stringify(selector.tag)} not found`);
    return found;
  }

  #forget(sessionId: string, sandbox: SandboxProcesses): void {
    if (this.#sandboxes.get(sessionId) === sandbox && sandbox.processes.size === 0 && sandbox.starting === 0) this.#sandboxes.delete(sessionId);
  }

  /** Kill every process (the front end is closing). */
  close(): void {
    for (const s of this.#sandboxes.values()) for (const p of s.processes.values()) p.abort();
  }

  #sandbox(sessionId: string): SandboxProcesses {
    let s = this.#sandboxes.get(sessionId);
    if (!s) this.#sandboxes.set(sessionId, (s = new SandboxProcesses()));
    return s;
  }

  /**
   * envd's working directory rules: the request's, `~` meaning the home, relative to the home;
   * without one, the home. One that does not exist is `invalid_argument` before anything starts,
   * as envd answers. Where the sandbox has no /home/user (a native session reached by its session
   * id), the session's own user, home and default directory.
   */
  async #place(sessionId: string, sandbox: SandboxProcesses, requested: string | undefined): Promise<{ cwd: string | undefined; e2bHome: boolean }> {
    sandbox.home ??= this.#isDir(sessionId, E2B_HOME).then((yes) => yes === true);
    const e2bHome = await sandbox.home;
    if (!requested) return { cwd: e2bHome ? E2B_HOME : undefined, e2bHome };
    const cwd = requested === "~" || requested.startsWith("~/") ? E2B_HOME + requested.slice(1) : requested.startsWith("/") ? requested : `${E2B_HOME}/${requested}`;
    if ((await this.#isDir(sessionId, cwd)) === false) throw new ConnectError("invalid_argument", `cwd '${cwd.slice(0, 1024)}' does not exist (or is not a directory)`);
    return { cwd, e2bHome };
  }

  /** Whether `path` is a directory in the sandbox (following a link); null when the provider cannot tell. */
  async #isDir(sessionId: string, path: string): Promise<boolean | null> {
    try {
      const info = await this.cp.sessions.statFile(sessionId, path);
      return (info.type === "symlink" ? info.symlink?.type : info.type) === "dir";
    } catch (err) {
      return err instanceof PaddockError && (err.code === "not_found" || err.code === "invalid_argument") ? false : null;
    }
  }
}
