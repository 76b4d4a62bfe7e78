/**
 * The messages of envd's `process.Process` service (E2B's spec/envd/process/process.proto) in
 * the proto3 JSON mapping the SDK's Connect transport sends: lowerCamelCase fields (the proto
 * names are accepted too), `bytes` as base64, enums as their names or numbers, oneofs as one of
 * their fields. Parsing checks every field's type and answers `invalid_argument` naming the field;
 * unknown fields are ignored, as a proto3 server does for a newer client.
 */
import { ConnectError } from "./connect.ts";

export interface ProcessConfig {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

export interface PtySize {
  cols: number;
  rows: number;
}

export interface StartRequest {
  process: ProcessConfig;
  pty?: PtySize;
  tag?: string;
  /** Absent: stdin is open (envd's behaviour for clients older than the field). */
  stdin?: boolean;
}

export type ProcessSelector = { pid: number } | { tag: string };

export type ProcessInput = { stdin: Buffer } | { pty: Buffer };

/** process.Signal: the only two the service accepts. */
export type ProcessSignal = "SIGTERM" | "SIGKILL";

/** A ProcessEvent's `end`: what envd reports when a process is gone. */
export interface EndEvent {
  exitCode: number;
  exited: boolean;
  status: string;
  error?: string;
}

export type ProcessEvent =
  | { start: { pid: number } }
  | { data: { stdout: string } | { stderr: string } | { pty: string } }
  | { end: EndEvent }
  | { keepalive: Record<string, never> };

/** Largest argv (cmd, args, envs together) a Start may carry. */
const MAX_CONFIG_BYTES = 1 << 20;
/** Largest PTY side; a real terminal is far smaller, and stty refuses more than 65535. */
const MAX_PTY_SIDE = 10_000;

const bad = (message: string): ConnectError => new ConnectError("invalid_argument", message);

function record(value: unknown, where: string): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw bad(`${where} must be a JSON object`);
  return value as Record<string, unknown>;
}

/** A field by its JSON name or its proto name (`exit_code` / `exitCode`). */
function field(obj: Record<string, unknown>, json: string, proto = json): unknown {
  return obj[json] ?? obj[proto];
}

function optString(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw bad(`${where} must be a string`);
  if (value.includes("\0")) throw bad(`${where} contains a NUL byte`);
  return value;
}

function optBool(value: unknown, where: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw bad(`${where} must be true or false`);
  return value;
}

/** uint32: a number, or a decimal string (proto3 JSON allows both). */
function uint32(value: unknown, where: string): number {
  const n = typeof value === "string" && /^\d{1,10}$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw bad(`${where} must be an unsigned 32-bit integer`);
  return n;
}

/** proto3 JSON `bytes`: standard or URL-safe base64, padded or not. */
export function decodeBytes(value: unknown, where: string): Buffer {
  if (value === undefined || value === null) return Buffer.alloc(0);
  if (typeof value !== "string" || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) throw bad(`${where} must be base64 (proto3 JSON bytes)`);
  return Buffer.from(value.replace(/-/g, "+").replace(/_/g, "/"), "base64");
}

export const encodeBytes = (bytes: Buffer): string => bytes.toString("base64");

function parseConfig(value: unknown): ProcessConfig {
  const obj = record(value, "process");
  const cmd = optString(field(obj, "cmd"), "process.cmd");
  if (!cmd) throw bad("process.cmd is required: the program to run, e.g. /bin/bash");
  const rawArgs = field(obj, "args") ?? [];
  if (!Array.isArray(rawArgs)) throw bad("process.args must be an array of strings");
  const args = rawArgs.map((a, i) => optString(a, `process.args[${i}]`) ?? "");
  const envs: Record<string, string> = {};
  for (const [k, v] of Object.entries(record(field(obj, "envs"), "process.envs"))) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw bad(`process.envs: ${JSON.stringify(k.slice(0, 100))} is not a variable name`);
    envs[k] = optString(v, `process.envs.${k}`) ?? "";
  }
  const cwd = optString(field(obj, "cwd"), "process.cwd");
  const size = Buffer.byteLength(JSON.stringify([cmd, args, envs]));
  if (size > MAX_CONFIG_BYTES) throw bad(`process: cmd, args and envs are ${size} bytes together; at most ${MAX_CONFIG_BYTES}`);
  return { cmd, args, envs, ...(cwd ? { cwd } : {}) };
}

function parsePty(value: unknown): PtySize | undefined {
  if (value === undefined || value === null) return undefined;
  const size = record(field(record(value, "pty"), "size"), "pty.size");
  const cols = uint32(field(size, "cols") ?? 0, "pty.size.cols");
  const rows = uint32(field(size, "rows") ?? 0, "pty.size.rows");
  if (cols < 1 || rows < 1 || cols > MAX_PTY_SIDE || rows > MAX_PTY_SIDE) throw bad(`pty.size must be 1 to ${MAX_PTY_SIDE} columns and rows, not ${cols}×${rows}`);
  return { cols, rows };
}

export function parseStartRequest(message: unknown): StartRequest {
  const obj = record(message, "the StartRequest");
  const pty = parsePty(field(obj, "pty"));
  const tag = optString(field(obj, "tag"), "tag");
  const stdin = optBool(field(obj, "stdin"), "stdin");
  return { process: parseConfig(field(obj, "process")), ...(pty ? { pty } : {}), ...(tag !== undefined ? { tag } : {}), ...(stdin !== undefined ? { stdin } : {}) };
}

/** The `process` selector every call but Start and List names its process with. */
export function parseSelector(message: unknown, what: string): ProcessSelector {
  const sel = record(field(record(message, what), "process"), "process");
  const pid = field(sel, "pid");
  const tag = field(sel, "tag");
  if (pid !== undefined && pid !== null) return { pid: uint32(pid, "process.pid") };
  if (tag !== undefined && tag !== null) return { tag: optString(tag, "process.tag") ?? "" };
  throw bad(`${what}: process must name the process by pid or tag, e.g. {"process":{"pid":12}}`);
}

export function parseInput(message: unknown): ProcessInput {
  const input = record(field(record(message, "the SendInputRequest"), "input"), "input");
  if (field(input, "pty") !== undefined) return { pty: decodeBytes(field(input, "pty"), "input.pty") };
  if (field(input, "stdin") !== undefined) return { stdin: decodeBytes(field(input, "stdin"), "input.stdin") };
  throw bad('input must hold stdin or pty bytes (base64), e.g. {"input":{"stdin":"aGkK"}}');
}

const SIGNALS: Record<string, ProcessSignal> = { SIGNAL_SIGTERM: "SIGTERM", SIGNAL_SIGKILL: "SIGKILL", "15": "SIGTERM", "9": "SIGKILL" };

export function parseSignal(message: unknown): ProcessSignal {
  const raw = field(record(message, "the SendSignalRequest"), "signal");
  const signal = typeof raw === "string" || typeof raw === "number" ? SIGNALS[String(raw)] : undefined;
  if (!signal) throw bad(`signal must be SIGNAL_SIGTERM (15) or SIGNAL_SIGKILL (9), not ${JSON.stringify(raw ?? null)}`);
  return signal;
}

export function parseUpdate(message: unknown): PtySize | undefined {
  return parsePty(field(record(message, "the UpdateRequest"), "pty"));
}

/** Go's names for the signals a process can die of (envd reports `signal: killed`). */
const SIGNAL_WORDS: Record<string, string> = {
  SIGKILL: "killed", SIGTERM: "terminated", SIGINT: "interrupt", SIGHUP: "hangup", SIGQUIT: "quit", SIGPIPE: "broken pipe",
  SIGABRT: "aborted", SIGSEGV: "segmentation fault", SIGBUS: "bus error", SIGFPE: "floating point exception", SIGUSR1: "user defined signal 1",
  SIGUSR2: "user defined signal 2", SIGALRM: "alarm clock", SIGXCPU: "CPU time limit exceeded",
};

/**
 * The end event envd sends: `exit status N` for an exit (error set when N is not 0), and for a
 * process killed by a signal (or by its deadline) exit code -1, `exited` false and
 * `signal: killed`, as Go's os.ProcessState says it.
 */
export function endEventOf(result: { exitCode: number; signal: string | null; timedOut: boolean }): EndEvent {
  if (result.signal !== null || result.timedOut) {
    const status = `signal: ${SIGNAL_WORDS[result.signal ?? "SIGKILL"] ?? (result.signal ?? "killed")}`;
    return { exitCode: -1, exited: false, status, error: status };
  }
  const status = `exit status ${result.exitCode}`;
  return { exitCode: result.exitCode, exited: true, status, ...(result.exitCode !== 0 ? { error: status } : {}) };
}
