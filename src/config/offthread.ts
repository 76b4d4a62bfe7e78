/**
 * Parsing off the event loop, for files that arrive over the network: one worker thread checks
 * them one at a time, each within a time limit. A file that takes longer costs its own request a
 * located issue and the worker its life (a new one starts for the next file); the server's event
 * loop, and so every other request, never waits for a parse.
 */
import process from "node:process";
import { Worker } from "node:worker_threads";
import type { ConfigIssue } from "./issues.ts";
import type { ParseResult } from "./parse.ts";

/** A file to check; `id` comes back with its result. */
export interface ParseJob {
  id: number;
  source: string;
  fileName: string;
}

/** What the worker posts: "ready" once loaded, then one result per job. */
export type WorkerMessage = { ready: true } | { id: number; result: ParseResult };

export interface OffThreadParserOptions {
  /** Longest one file may take to check; then its worker is ended and a new one started. Default 2000. */
  timeoutMs?: number;
  /** Heap limit of the worker in MiB; a file needing more is refused. Default 256. */
  maxMemoryMb?: number;
  /** Longest the worker may take to load before parsing fails with an error. Default 30000. */
  startTimeoutMs?: number;
}

/** `parseEnvironment` in a worker thread. Keeps no process alive while idle; `close()` ends the worker. */
export interface OffThreadParser {
  /**
   * The same result as `parseEnvironment(source, fileName)`, or one issue for the whole file when
   * checking it took longer than `timeoutMs` (the parser's, or this call's) or more memory than
   * `maxMemoryMb`.
   * @throws Error when the worker cannot start, or after `close()`.
   */
  parse(source: string, fileName: string, opts?: { timeoutMs?: number }): Promise<ParseResult>;
  /** Ends the worker; pending and later `parse` calls reject. */
  close(): Promise<void>;
}

// Written exactly like this so the build (scripts/build.mjs) points it at dist/parse.worker.js.
const WORKER_URL = new URL("./parse.worker.ts", import.meta.url);

/**
 * Starts the worker. Compiled, it is dist/parse.worker.js. From source (tests, bin/paddock without
 * a build) Node cannot load .ts files and, in Node 20, tsx's `--import` hooks do not reach worker
 * threads, so a small bootstrap registers tsx in the worker and then imports the .ts entry.
 */
function spawnWorker(maxMemoryMb: number): Worker {
  const resourceLimits = { maxOldGenerationSizeMb: maxMemoryMb };
  // The worker inherits this process's flags; --input-type (of `node -e`) is refused for a file.
  const execArgv = process.execArgv.filter((a) => !a.startsWith("--input-type"));
  if (!WORKER_URL.pathname.endsWith(".ts")) return new Worker(WORKER_URL, { resourceLimits, execArgv });
  const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const boot = `import(${tsx}).then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_URL.href)}); });`;
  return new Worker(boot, { eval: true, resourceLimits });
}

function wholeFile(fileName: string, message: string): ParseResult {
  const issue: ConfigIssue = { file: fileName, line: 0, column: 0, path: "", message };
  return { spec: null, issues: [issue] };
}

interface Pending {
  job: ParseJob;
  timeoutMs: number;
  resolve(r: ParseResult): void;
  reject(e: Error): void;
}

class WorkerParser implements OffThreadParser {
  private worker: Worker | null = null;
  private ready = false;
  private startTimer: NodeJS.Timeout | undefined;
  private readonly queue: Pending[] = [];
  private current: { pending: Pending; timer: NodeJS.Timeout } | null = null;
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: Required<OffThreadParserOptions>) {}

  parse(source: string, fileName: string, opts: { timeoutMs?: number } = {}): Promise<ParseResult> {
    if (this.closed) return Promise.reject(new Error("the environment-file checker is closed"));
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { id: this.nextId++, source, fileName }, timeoutMs, resolve, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    const pending = this.current?.pending;
    this.drop();
    const closed = new Error("the environment-file checker is closed");
    pending?.reject(closed);
    this.failAll(closed);
    if (worker !== null) await worker.terminate();
  }

  /** Sends the next job when the worker is free; keeps the process alive only while there is work. */
  private pump(): void {
    if (this.closed) return;
    if (this.current === null && this.queue.length === 0) {
      this.worker?.unref();
      return;
    }
    let worker: Worker;
    try {
      worker = this.worker ?? this.start();
    } catch (e) {
      // new Worker throws at once for a bad option or a missing entry: every caller learns why.
      this.failAll(new Error(`cannot start the environment-file checker (${WORKER_URL.href}): ${(e as Error).message}`));
      return;
    }
    worker.ref();
    const pending = this.current === null && this.ready ? this.queue.shift() : undefined;
    if (pending === undefined) return;
    // The clock starts when the worker gets the file, so time spent queued or loading is not counted.
    const timer = setTimeout(() => this.tooSlow(), pending.timeoutMs);
    this.current = { pending, timer };
    worker.postMessage(pending.job);
  }

  private start(): Worker {
    const worker = spawnWorker(this.opts.maxMemoryMb);
    worker.on("message", (m: WorkerMessage) => {
      if (worker === this.worker) this.onMessage(m);
    });
    worker.on("error", (e: Error) => {
      if (worker === this.worker) this.onFailure(e);
    });
    worker.on("exit", (code: number) => {
      if (worker === this.worker) this.onFailure(new Error(`the worker exited with code ${code}`));
    });
    this.startTimer = setTimeout(() => {
      if (worker === this.worker) this.onFailure(new Error(`it did not load within ${this.opts.startTimeoutMs} ms`));
    }, this.opts.startTimeoutMs);
    this.startTimer.unref();
    this.worker = worker;
    this.ready = false;
    return worker;
  }

  private onMessage(m: WorkerMessage): void {
    if ("ready" in m) {
      clearTimeout(this.startTimer);
      this.ready = true;
    } else if (this.current !== null && this.current.pending.job.id === m.id) {
      clearTimeout(this.current.timer);
      this.current.pending.resolve(m.result);
      this.current = null;
    }
    this.pump();
  }

  /** The file in the worker took too long: it is refused, and the worker (maybe stuck) is ended. */
  private tooSlow(): void {
    const pending = this.current?.pending;
    if (pending === undefined) return;
    const worker = this.worker;
    this.drop();
    void worker?.terminate();
    const seconds = pending.timeoutMs / 1000;
    pending.resolve(wholeFile(pending.job.fileName, `the file took too long to check (over ${seconds} s): an environment file is a few kilobytes`));
    this.pump();
  }

  /** The worker died: the file it was checking is refused; a worker that never loaded fails every caller. */
  private onFailure(e: Error): void {
    const pending = this.current?.pending;
    const loaded = this.ready;
    const worker = this.worker;
    this.drop();
    void worker?.terminate();
    if (pending !== undefined) {
      const why = (e as NodeJS.ErrnoException).code === "ERR_WORKER_OUT_OF_MEMORY" ? "it needs too much memory" : e.message;
      pending.resolve(wholeFile(pending.job.fileName, `the file could not be checked: ${why.slice(0, 200)}`));
    }
    if (!loaded) this.failAll(new Error(`cannot start the environment-file checker (${WORKER_URL.href}): ${e.message}`));
    this.pump();
  }

  /** Forgets the current worker and its job (the caller settles the job). */
  private drop(): void {
    clearTimeout(this.startTimer);
    if (this.current !== null) clearTimeout(this.current.timer);
    this.current = null;
    this.worker = null;
    this.ready = false;
  }

  private failAll(e: Error): void {
    for (const p of this.queue.splice(0)) p.reject(e);
  }
}

/**
 * A parser that runs `parseEnvironment` in a worker thread, one file at a time, each within
 * `timeoutMs`. The worker starts on first use and is restarted after a timeout or crash.
 *
 * @example
 * const parser = createOffThreadParser({ timeoutMs: 2000 });
 * const { spec, issues } = await parser.parse(text, "runtime.yml"); // the event loop stays free
 * await parser.close();
 */
export function createOffThreadParser(opts: OffThreadParserOptions = {}): OffThreadParser {
  return new WorkerParser({ timeoutMs: opts.timeoutMs ?? 2000, maxMemoryMb: opts.maxMemoryMb ?? 256, startTimeoutMs: opts.startTimeoutMs ?? 30_000 });
}
