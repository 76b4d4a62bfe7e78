/**
 * `Provider.exec` over envd's process service (`sandbox.commands.run` in the background, then
 * `wait`). envd runs a command line with `/bin/bash -l -c`, so the argv is quoted for the shell
 * word by word (nothing of it is interpreted) after `exec`.
 *
 * What E2B's process API can and cannot do, and how each ExecOptions field maps:
 * - stdin: `stdin: true` and `sendStdin` per chunk, then `closeStdin`; absent: envd's empty stdin.
 * - timeoutMs: our own timer kills the command (SIGKILL) and the result is 124, timedOut.
 * - signal (abort): kills the command and rejects with the abort reason.
 * - signals: only SIGKILL can be sent through E2B's SDK (`kill`); any other signal is refused
 *   with `unsupported`, never dropped.
 * - output (OutputGate): envd streams without flow control, so chunks are held here while the
 *   caller has paused (at most MAX_HELD bytes: past that the command is killed and exec rejects).
 * - Output arrives from the SDK decoded as UTF-8 text: bytes that are not UTF-8 reach the caller
 *   as U+FFFD. A killed command's end is envd's exit code -1 and "signal: killed".
 */
import type { CommandHandle, CommandResult, Sandbox } from "e2b";
import { CommandExitError } from "e2b";
import { Readable } from "node:stream";
import { PaddockError, type ExecOptions, type ExecResult } from "../../core/index.ts";
import { unsupported } from "../../core/index.ts";
import { fromE2b } from "./errors.ts";

/** Most output held for a paused caller before the command is killed. */
const MAX_HELD = 16 * 1024 * 1024;
/** Largest stdin chunk sent in one SendInput call. */
const STDIN_CHUNK = 256 * 1024;

/** `argv` as one `sh`/`bash` command line: every word single-quoted unless it is plainly safe. */
export function shellJoin(argv: string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

/** Go's names for the signals envd reports ("signal: killed") → Node's names. */
const GO_SIGNALS: Record<string, NodeJS.Signals> = {
  killed: "SIGKILL", terminated: "SIGTERM", interrupt: "SIGINT", hangup: "SIGHUP", quit: "SIGQUIT", aborted: "SIGABRT",
  "segmentation fault": "SIGSEGV", "broken pipe": "SIGPIPE", "user defined signal 1": "SIGUSR1", "user defined signal 2": "SIGUSR2", "alarm clock": "SIGALRM",
};
const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

/** envd's end of a command as an ExecResult's status and signal. */
export function statusOf(result: Pick<CommandResult, "exitCode" | "error">): { exitCode: number; signal: NodeJS.Signals | null } {
  if (result.exitCode >= 0) return { exitCode: result.exitCode, signal: null };
  const name = /signal: (.+)$/.exec(result.error ?? "")?.[1]?.trim() ?? "killed";
  const signal = GO_SIGNALS[name] ?? "SIGKILL";
  return { exitCode: 128 + (SIGNAL_NUMBERS[signal] ?? 9), signal };
}

export interface ExecTarget {
  provider: string;
  /** What errors say the provider was doing; default `exec "<argv[0]>"`. */
  what?: string;
  sandbox: Sandbox;
  user: string;
  env: Record<string, string>;
}

export async function execIn(target: ExecTarget, opts: ExecOptions): Promise<ExecResult> {
  const started = Date.now();
  const { provider, sandbox } = target;
  if (opts.argv.length === 0) throw new PaddockError("invalid_argument", "exec needs a program: argv is empty");
  const what = target.what ?? `exec ${JSON.stringify(opts.argv[0]?.slice(0, 64))}`;
  const gate = heldOutput(opts);
  let handle: CommandHandle;
  try {
    // `exec`: bash replaces itself with the program, so a signal that ends it is reported as one
    // (not as bash's 128+N exit) and the command's pid is the one envd kills.
    // `--`: a program whose name starts with "-" is the program, never an option of `exec`
    // (`exec -a NAME …` would otherwise run another program than argv[0]).
    // envd's `bash -l` reads /etc/profile, which sets PATH afresh: a PATH the caller gave is set again after it.
    const envs = { ...target.env, ...opts.env };
    const path = envs["PATH"] !== undefined ? `export PATH=${shellJoin([envs["PATH"]])}; ` : "";
    handle = await sandbox.commands.run(`${path}exec -- ${shellJoin(opts.argv)}`, {
      background: true, cwd: opts.cwd ?? "/workspace", envs, user: target.user, stdin: opts.stdin !== undefined,
      timeoutMs: 0, onStdout: (d) => gate.out("stdout", d), onStderr: (d) => gate.out("stderr", d), ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw fromE2b(provider, what, err);
  }
  let timedOut = false;
  let failure: unknown = null;
  const kill = () => void handle.kill().catch(() => undefined);
  gate.onOverflow(() => {
    failure = new PaddockError("unavailable", `provider ${JSON.stringify(provider)} (e2b): the command's output was not read (more than ${MAX_HELD} bytes held while paused); it was killed`);
    kill();
  });
  const timer = opts.timeoutMs ? setTimeout(() => ((timedOut = true), kill()), opts.timeoutMs) : null;
  const onAbort = () => kill();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let stopSignals = () => undefined as void;
  try {
    stopSignals = opts.signals?.listen((name) => {
      if (name !== "SIGKILL") throw unsupported({ name: provider }, `deliver ${name} to a command`, "E2B's process API sends SIGKILL only (abort the exec, or send SIGKILL)");
      kill();
    }) ?? stopSignals;
  } catch (err) {
    kill();
    failure = err;
  }
  const stdin = opts.stdin === undefined ? Promise.resolve() : feedStdin(handle, opts.stdin).catch(() => undefined);
  let result: CommandResult;
  try {
    result = await handle.wait();
  } catch (err) {
    if (!(err instanceof CommandExitError)) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw fromE2b(provider, what, err);
    }
    result = { exitCode: err.exitCode, stdout: "", stderr: "", ...(err.error !== undefined ? { error: err.error } : {}) };
  } finally {
    if (timer) clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
    stopSignals();
    await stdin;
  }
  await gate.drained();
  if (opts.signal?.aborted) throw opts.signal.reason;
  if (failure) throw failure;
  if (timedOut) return { exitCode: 124, signal: "SIGKILL", timedOut: true, durationMs: Date.now() - started };
  return { ...statusOf(result), timedOut: false, durationMs: Date.now() - started };
}

async function feedStdin(handle: CommandHandle, stdin: Readable | Uint8Array): Promise<void> {
  const source = stdin instanceof Uint8Array ? Readable.from([Buffer.from(stdin.buffer, stdin.byteOffset, stdin.byteLength)]) : stdin;
  for await (const chunk of source as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    for (let i = 0; i < bytes.length; i += STDIN_CHUNK) await handle.sendStdin(bytes.subarray(i, i + STDIN_CHUNK));
  }
  await handle.closeStdin();
}

/** Output delivery honouring `opts.output`: chunks wait here while the caller has paused. */
function heldOutput(opts: ExecOptions) {
  const queue: { stream: "stdout" | "stderr"; chunk: Buffer }[] = [];
  let held = 0;
  let overflow: () => void = () => undefined;
  let overflowed = false;
  let drainedResolve: (() => void) | null = null;
  const deliver = (stream: "stdout" | "stderr", chunk: Buffer) => (stream === "stdout" ? opts.onStdout?.(chunk) : opts.onStderr?.(chunk));
  const flush = () => {
    while (queue.length && !opts.output?.paused) {
      const next = queue.shift()!;
      held -= next.chunk.length;
      deliver(next.stream, next.chunk);
    }
    if (!queue.length) drainedResolve?.();
  };
  const stopListening = opts.output?.listen((paused: boolean) => {
    if (!paused) flush();
  });
  return {
    out(stream: "stdout" | "stderr", text: string) {
      const chunk = Buffer.from(text, "utf8");
      if (!opts.output?.paused && queue.length === 0) return deliver(stream, chunk);
      queue.push({ stream, chunk });
      held += chunk.length;
      if (held > MAX_HELD && !overflowed) {
        overflowed = true;
        overflow();
      }
    },
    onOverflow(fn: () => void) {
      overflow = fn;
    },
    /** Resolves once every held chunk went out (at once when nothing is held, or when overflowed). */
    async drained(): Promise<void> {
      if (queue.length && !overflowed) await new Promise<void>((resolve) => (drainedResolve = resolve));
      stopListening?.();
    },
  };
}
