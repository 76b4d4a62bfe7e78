/**
 * Client for the in-sandbox agent (`paddock-sandbox agent`) over its unix socket. One operation
 * per connection. Frame = 1 byte type, 4 bytes big-endian payload length (≤ 1 MiB), payload.
 *
 * Client → agent: `R` request (NUL-terminated fields), `I` stdin bytes, `C` stdin EOF, `K` signal.
 * Agent → client: `P` started (pid), `O` stdout, `E` stderr, `X` result (`exit N` | `signal N` |
 * `timeout` | `error MESSAGE`), after which the agent closes. Full description: docs/sandbox.md.
 *
 * @example
 * const agent = new AgentClient("/run/paddock/s1/agent.sock");
 * const r = await agent.exec({ argv: ["npm", "test"], onStdout: (b) => process.stdout.write(b) });
 */
import net from "node:net";
import { constants as osConstants } from "node:os";
import { PassThrough, type Readable } from "node:stream";
import type { ExecOptions, ExecResult, FileEntry, FileEvent, FileEventType, FileInfo, FileWatch } from "../../core/provider.ts";
import { PaddockError, internal, invalid, unavailable, type ErrorCode } from "../../core/errors.ts";

const MAX_FRAME = 1 << 20;
/** Size of the `I` frames we send: well under the agent's 1 MiB limit. */
const STDIN_CHUNK = 256 * 1024;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const signalNames = new Map<number, string>(
  Object.entries(osConstants.signals).map(([name, num]) => [num, name]),
);

interface Frame {
  type: string;
  payload: Buffer;
}

function frame(type: string, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 1, "latin1");
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

/** `R` frame; fields cannot contain NUL (it is the separator), so refuse rather than truncate. */
function request(fields: string[]): Buffer {
  for (const f of fields) {
    if (f.includes("\0")) throw invalid(`argument contains a NUL byte: ${JSON.stringify(f.slice(0, 80))}`);
  }
  const payload = Buffer.from(fields.map((f) => `${f}\0`).join(""), "utf8");
  if (payload.length > MAX_FRAME) throw invalid(`request is ${payload.length} bytes, over the 1 MiB limit`);
  return frame("R", payload);
}

class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Frame[] = [];
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (len > MAX_FRAME) throw internal(`sandbox agent sent a ${len}-byte frame (limit 1 MiB)`);
      if (this.buf.length < 5 + len) break;
      out.push({ type: String.fromCharCode(this.buf[0] ?? 0), payload: this.buf.subarray(5, 5 + len) });
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }
}

/** Write respecting backpressure; resolves early if the socket goes away. */
function write(sock: net.Socket, buf: Buffer): Promise<void> {
  if (sock.destroyed || sock.write(buf)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      sock.off("drain", done);
      sock.off("close", done);
      resolve();
    };
    sock.on("drain", done);
    sock.on("close", done);
  });
}

interface Call {
  sock: net.Socket;
  /** The `X` payload. Rejects with `unavailable` if the agent goes away first. */
  result: Promise<string>;
  /** Stop treating a close as an error (we are the ones closing). */
  settle(): void;
}

/** Error code for the errno name the agent puts last in a file operation's error (`[ENOENT]`). */
const ERRNO_CODES: Record<string, ErrorCode> = {
  ENOENT: "not_found",
  EACCES: "forbidden",
  EPERM: "forbidden",
  EROFS: "forbidden",
  EEXIST: "conflict",
  ENOTEMPTY: "conflict",
  EBUSY: "conflict",
  ENOSPC: "unavailable",
  EDQUOT: "unavailable",
  EMFILE: "unavailable",
  ENOMEM: "unavailable",
};

function fileError(message: string, path: string): PaddockError {
  const errno = /\[(E[A-Z0-9]+)\]$/.exec(message)?.[1];
  const details = errno === undefined ? undefined : { errno };
  const text = message.replace(/ \[E[A-Z0-9]+\]$/, "");
  if (errno === "ENOENT") return new PaddockError("not_found", `no such file or directory: ${path}`, details);
  if (errno === "EACCES" || errno === "EPERM") return new PaddockError("forbidden", `permission denied: ${path}`, details);
  return new PaddockError((errno === undefined ? undefined : ERRNO_CODES[errno]) ?? "invalid_argument", text, details);
}

const entryTypes: Record<string, FileEntry["type"]> = { f: "file", d: "dir", l: "symlink", o: "other" };
const watchEvents: Record<string, FileEventType> = { c: "create", w: "write", r: "remove", n: "rename", m: "chmod" };

/**
 * One `stat`/`lsx` entry: NUL-separated rel, type, mode (octal), size, mtime seconds, nanoseconds,
 * owner, group, link target, target type, target mode. `base` is the path asked for; `self`: the
 * entry is `base` itself (stat), else it is below it (lsx).
 */
function parseFileInfo(payload: Buffer, base: string, self: boolean): FileInfo {
  const [rel = "", type = "o", mode = "0", size = "0", sec = "0", nsec = "0", owner = "", group = "", target = "", targetType = "", targetMode = ""] =
    payload.toString("utf8").split("\0");
  const path = self ? base : `${base.replace(/\/+$/, "")}/${rel}`;
  const info: FileInfo = {
    path,
    name: self ? rel : rel.slice(rel.lastIndexOf("/") + 1),
    type: entryTypes[type] ?? "other",
    size: Number(size),
    mode: parseInt(mode, 8),
    mtime: { seconds: Number(sec), nanos: Number(nsec) },
    owner,
    group,
  };
  if (info.type === "symlink") {
    info.symlink = { target, type: targetType === "" ? null : (entryTypes[targetType] ?? "other"), mode: targetMode === "" ? 0 : parseInt(targetMode, 8) };
  }
  return info;
}

export class AgentClient {
  constructor(private readonly socketPath: string) {}

  /**
   * Run a command in the sandbox and wait for it.
   * @returns exit status; 128+N if killed by signal N; 124 on timeout; 127 if the program was not
   * found; 126 if it could not be started (the reason goes to `onStderr` as `paddock: …`).
   * Aborting `signal` kills the command's process group and rejects with the abort reason;
   * `signals` are delivered to it and the exit is reported as usual.
   */
  async exec(opts: ExecOptions): Promise<ExecResult> {
    if (opts.argv.length === 0) throw invalid("exec: argv is empty");
    opts.signal?.throwIfAborted();
    const env = { PATH: DEFAULT_PATH, ...opts.env };
    for (const key of Object.keys(env)) {
      if (key === "" || key.includes("=")) throw invalid(`exec: bad environment variable name ${JSON.stringify(key)}`);
    }
    const fields = [
      "exec",
      opts.cwd ?? "/workspace",
      String(Math.max(0, Math.floor(opts.timeoutMs ?? 0))),
      String(opts.argv.length),
      ...opts.argv,
      String(Object.keys(env).length),
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    ];
    const started = performance.now();
    const call = await this.call(fields, (f) => {
      if (f.type === "O") opts.onStdout?.(Buffer.from(f.payload));
      else if (f.type === "E") opts.onStderr?.(Buffer.from(f.payload));
    });
    const aborted = new Promise<never>((_, reject) => {
      const onAbort = (): void => {
        call.settle();
        // SIGKILL to the process group, then close: the agent also kills it on disconnect.
        call.sock.end(frame("K", Buffer.from(String(osConstants.signals.SIGKILL))));
        reject(opts.signal?.reason ?? new Error("aborted"));
      };
      if (opts.signal?.aborted) return onAbort(); // aborted while we were connecting
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      void call.result.finally(() => opts.signal?.removeEventListener("abort", onAbort)).catch(() => undefined);
    });
    aborted.catch(() => undefined);
    // Each signal the caller sends while the command runs goes to its process group as a `K` frame.
    const unlisten = opts.signals?.listen((_name, signo) => {
      if (call.sock.writable) call.sock.write(frame("K", Buffer.from(String(signo))));
    });
    // The caller's output flow control: a paused socket stops the agent's relay, whose writes then
    // block, and the command blocks on its full pipe.
    const unflow = opts.output?.listen((paused) => (paused ? call.sock.pause() : call.sock.resume()));
    void call.result
      .finally(() => {
        unlisten?.();
        unflow?.();
      })
      .catch(() => undefined);
    const stdinDone = feedStdin(call.sock, opts.stdin, call.result);
    stdinDone.catch(() => {
      call.settle();
      call.sock.destroy(); // the agent kills the command when we disconnect
    });
    const outcome = await Promise.race([call.result, aborted, stdinDone.then(() => call.result)]);
    return toExecResult(outcome, performance.now() - started, opts.onStderr);
  }

  /** Atomically replace `path` (never through a symlink) with `data`, created with `mode`. */
  async put(path: string, data: Uint8Array, mode = 0o644): Promise<void> {
    const call = await this.call(["put", path, (mode & 0o7777).toString(8)], () => undefined);
    await feedStdin(call.sock, data, call.result);
    const x = await call.result;
    if (x !== "exit 0") throw fileError(x.replace(/^error /, ""), path);
  }

  /** Contents of the regular file at `path` (symlinks, devices and FIFOs are refused). */
  async get(path: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    const call = await this.call(["get", path], (f) => {
      if (f.type === "O") chunks.push(Buffer.from(f.payload));
    });
    const x = await call.result;
    if (x !== "exit 0") throw fileError(x.replace(/^error /, ""), path);
    return Buffer.concat(chunks);
  }

  /** Like `put`, with the bytes from a stream (read with backpressure; never held whole). */
  async putStream(path: string, data: Readable, mode = 0o644): Promise<void> {
    const call = await this.call(["put", path, (mode & 0o7777).toString(8)], () => undefined);
    const fed = feedStdin(call.sock, data, call.result);
    fed.catch(() => {
      // The source failed: drop the connection without `C`, and the agent leaves nothing behind.
      call.settle();
      call.sock.destroy();
    });
    await Promise.race([fed.then(() => call.result), call.result]);
    await fed; // a source error is the caller's error
    const x = await call.result;
    if (x !== "exit 0") throw fileError(x.replace(/^error /, ""), path);
  }

  /**
   * The regular file at `path` as a stream, read from the agent only as fast as it is consumed.
   * Resolves once the agent has started sending (a refusal rejects here, before any byte).
   */
  async getStream(path: string): Promise<Readable> {
    const conn: { sock?: net.Socket } = {}; // set as soon as connected, before any frame can arrive
    let gotData: () => void = () => undefined;
    const firstData = new Promise<null>((resolve) => (gotData = () => resolve(null)));
    const out = new PassThrough({ highWaterMark: 256 * 1024 });
    const call = await this.call(["get", path], (f) => {
      if (f.type !== "O") return;
      gotData();
      if (!out.write(f.payload)) {
        conn.sock?.pause();
        out.once("drain", () => conn.sock?.resume());
      }
    });
    conn.sock = call.sock;
    const early = await Promise.race([call.result, firstData]);
    if (early !== null && early !== "exit 0") throw fileError(early.replace(/^error /, ""), path);
    out.on("close", () => {
      if (!out.writableFinished) {
        call.settle();
        call.sock.destroy(); // the reader went away: stop the agent's handler too
      }
    });
    void call.result.then(
      (x) => (x === "exit 0" ? out.end() : out.destroy(fileError(x.replace(/^error /, ""), path))),
      (err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))),
    );
    return out;
  }

  /** Entries of the directory at `path`, sorted by name (byte order), without `.` and `..`. */
  async ls(path: string): Promise<FileEntry[]> {
    const entries: FileEntry[] = [];
    const call = await this.call(["ls", path], (f) => {
      if (f.type !== "O") return;
      // One frame per entry: type, mode, size, mtime, then the name (which may hold tabs).
      const line = f.payload.toString("utf8").replace(/\n$/, "");
      const parts = line.split("\t");
      if (parts.length < 5) return;
      const [type = "o", mode = "0", size = "0", mtime = "0"] = parts;
      entries.push({
        name: parts.slice(4).join("\t"),
        type: entryTypes[type] ?? "other",
        mode: parseInt(mode, 8),
        size: Number(size),
        mtime: new Date(Number(mtime)).toISOString(),
      });
    });
    const x = await call.result;
    if (x !== "exit 0") throw fileError(x.replace(/^error /, ""), path);
    return entries;
  }

  /** The entry at `path` itself: a symlink is described (with what it resolves to), not followed. */
  async stat(path: string): Promise<FileInfo> {
    const entries: FileInfo[] = [];
    const call = await this.call(["stat", path], (f) => {
      if (f.type === "O") entries.push(parseFileInfo(f.payload, path, true));
    });
    const x = await call.result;
    if (x !== "exit 0") throw fileError(x.replace(/^error /, ""), path);
    const entry = entries[0];
    if (entry === undefined) throw internal(`sandbox agent answered stat ${path} without an entry`);
    return entry;
  }

  /** Entries below the directory `path`, `depth` levels down (1..256), never through a symlinked directory. */
  async listTree(path: string, depth: number): Promise<FileInfo[]> {
    const entries: FileInfo[] = [];
    const call = await this.call(["lsx", path, String(depth)], (f) => {
      if (f.type === "O") entries.push(parseFileInfo(f.payload, path, false));
    });
    const x = await call.result;
    if (x !== "exit 0") throw fileError(x.replace(/^error /, ""), path);
    return entries;
  }

  /** `mkdir -p path`; false when it already is a directory. */
  async mkdir(path: string): Promise<boolean> {
    const call = await this.call(["mkdir", path], () => undefined);
    const x = await call.result;
    if (x === "exit 0") return true;
    const err = fileError(x.replace(/^error /, ""), path);
    if (err.details?.errno === "EEXIST") return false;
    throw err;
  }

  /** rename(2) `from` to `to`, creating `to`'s missing parents. */
  async move(from: string, to: string): Promise<void> {
    const call = await this.call(["mv", from, to], () => undefined);
    const x = await call.result;
    if (x !== "exit 0") throw fileError(x.replace(/^error /, ""), x.includes(` ${to}: `) ? to : from);
  }

  /** Remove `path` (recursively for a directory, never through a symlink); false when nothing was there. */
  async remove(path: string): Promise<boolean> {
    const call = await this.call(["rm", path], () => undefined);
    const x = await call.result;
    if (x === "exit 0") return true;
    const err = fileError(x.replace(/^error /, ""), path);
    if (err.code === "not_found") return false;
    throw err;
  }

  /**
   * Watch the directory `path` with inotify until `close()`; resolves once the watches are in
   * place. Events arrive in order through `onEvent`.
   */
  async watch(path: string, opts: { recursive: boolean; onEvent: (event: FileEvent) => void }): Promise<FileWatch> {
    let ready: (() => void) | undefined;
    const started = new Promise<void>((resolve) => (ready = resolve));
    const call = await this.call(["watch", path, opts.recursive ? "1" : "0"], (f) => {
      if (f.type === "P") ready?.();
      else if (f.type === "O" && f.payload.length > 0) {
        const type = watchEvents[String.fromCharCode(f.payload[0] ?? 0)];
        if (type !== undefined) opts.onEvent({ type, name: f.payload.subarray(1).toString("utf8") });
      }
    });
    const result = call.result.then((x) => {
      if (x !== "exit 0") throw fileError(x.replace(/^error /, ""), path);
    });
    result.catch(() => undefined);
    // Either the watch is in place, or the agent refused it (its result comes first).
    await Promise.race([started, result]);
    let closed = false;
    let onClosed: () => void = () => undefined;
    const closedByCaller = new Promise<void>((resolve) => (onClosed = resolve));
    return {
      done: Promise.race([result, closedByCaller]),
      close: () => {
        if (closed) return;
        closed = true;
        call.settle();
        call.sock.destroy(); // the agent's handler sees the hang-up and ends the watch
        onClosed();
      },
    };
  }

  private connect(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(this.socketPath);
      const onError = (err: NodeJS.ErrnoException): void => {
        sock.destroy();
        reject(unavailable(`sandbox agent not reachable at ${this.socketPath} (${err.code ?? err.message})`, err));
      };
      sock.once("error", onError);
      sock.once("connect", () => {
        sock.off("error", onError);
        resolve(sock);
      });
    });
  }

  private async call(fields: string[], onFrame: (f: Frame) => void): Promise<Call> {
    const req = request(fields);
    const sock = await this.connect();
    const decoder = new FrameDecoder();
    let settled = false;
    const result = new Promise<string>((resolve, reject) => {
      const fail = (err: PaddockError): void => {
        if (settled) return;
        settled = true;
        sock.destroy();
        reject(err);
      };
      sock.on("data", (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch (err) {
          fail(err instanceof PaddockError ? err : internal(String(err)));
          return;
        }
        for (const f of frames) {
          if (settled) return;
          if (f.type === "X") {
            settled = true;
            resolve(f.payload.toString("utf8"));
            sock.destroy();
            return;
          }
          onFrame(f);
        }
      });
      // After X, a reset (we may still have been sending stdin) is expected and harmless.
      sock.on("error", (err) => fail(unavailable(`sandbox agent connection failed: ${err.message}`, err)));
      sock.on("close", () => fail(unavailable("sandbox agent closed the connection before reporting a result")));
    });
    result.catch(() => undefined); // observed by the caller; avoid an unhandled rejection meanwhile
    sock.write(req);
    return { sock, result, settle: () => void (settled = true) };
  }
}

/** Send stdin as `I` frames with backpressure, then `C`. Stops early once the result is in. */
async function feedStdin(sock: net.Socket, stdin: Readable | Uint8Array | undefined, result: Promise<string>): Promise<void> {
  let finished = false;
  void result.then(
    () => (finished = true),
    () => (finished = true),
  );
  if (stdin instanceof Uint8Array) {
    for (let off = 0; off < stdin.length && !finished && !sock.destroyed; off += STDIN_CHUNK) {
      await write(sock, frame("I", stdin.subarray(off, off + STDIN_CHUNK)));
    }
  } else if (stdin !== undefined) {
    await pumpReadable(sock, stdin, () => finished);
  }
  if (!finished && !sock.destroyed) await write(sock, frame("C"));
}

/** Forward a Readable without taking ownership of it: paused on backpressure, never destroyed. */
function pumpReadable(sock: net.Socket, stream: Readable, done: () => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      sock.off("close", onEnd);
      stream.pause();
    };
    const onData = (chunk: Buffer | string): void => {
      if (done() || sock.destroyed) return onEnd();
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      let full = false;
      for (let off = 0; off < buf.length; off += STDIN_CHUNK) {
        full = !sock.write(frame("I", buf.subarray(off, off + STDIN_CHUNK))) || full;
      }
      if (full) {
        stream.pause();
        sock.once("drain", () => stream.resume());
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("error", onError);
    sock.once("close", onEnd);
    stream.resume();
  });
}

function toExecResult(x: string, durationMs: number, onStderr?: (chunk: Buffer) => void): ExecResult {
  const base = { signal: null, timedOut: false, durationMs };
  let m = /^exit (\d+)$/.exec(x);
  if (m) return { ...base, exitCode: Number(m[1]) };
  m = /^signal (\d+)$/.exec(x);
  if (m) {
    const n = Number(m[1]);
    return { ...base, exitCode: 128 + n, signal: signalNames.get(n) ?? `SIG${n}` };
  }
  if (x === "timeout") return { ...base, exitCode: 124, timedOut: true };
  m = /^error (.*)$/s.exec(x);
  if (m && !m[1]?.startsWith("bad request:")) {
    const message = m[1] ?? "";
    onStderr?.(Buffer.from(`paddock: ${message}\n`));
    const notFound = message.startsWith("exec: ") && message.includes("No such file or directory");
    return { ...base, exitCode: notFound ? 127 : 126 };
  }
  throw internal(`sandbox agent refused the request: ${x}`);
}
