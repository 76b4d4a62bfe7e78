/**
 * The pure parts of running commands and file calls in a pod (no I/O, so unit-tested alone): the
 * exec wrapper and its argv, exit statuses from the status channel, signal names, paths, listings.
 *
 * Kubernetes' exec has no cwd, env or kill, so every command goes through one fixed wrapper
 * script that takes everything as arguments (never a user path or value spliced into shell text):
 *   sh -c WRAPPER paddock-exec pidfile cwd envfile NAME=VALUE… argv…
 * It writes its pid to `pidfile` (under /tmp/.paddock-exec) so a timeout or abort can signal the
 * whole group with a second exec, changes directory, sets the default variables, reads the
 * session's environment from `envfile` (SESSION_ENV_FILE), becomes a process-group leader
 * (setsid, in place, when not one already) and execs `env` with the command's own variables and
 * the program. `env` gives 127 for a program that is not found and 126 for one that cannot run,
 * as a shell would.
 *
 * The session's environment (its placeholders, and HTTPS_PROXY with the session's proxy
 * credential) lives only in that file inside the pod, written by the provider at create and
 * setEnv: never in the Pod object, the provider state the control plane stores, or an exec
 * request's URL (which the API server may log).
 */
import { randomUUID } from "node:crypto";
import { posix } from "node:path";
import { constants as osConstants } from "node:os";
import type { V1Status } from "@kubernetes/client-node";
import { PaddockError } from "../../core/index.ts";
import type { FileEntry } from "../../core/index.ts";
import { SESSION_HOME, WORKSPACE } from "./manifests.ts";

/** Exit status from the status channel: Success → 0; NonZeroExitCode → its ExitCode cause. */
export function exitCodeOf(status: V1Status): number {
  if (status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  const n = cause?.message !== undefined ? Number(cause.message) : NaN;
  if (Number.isInteger(n)) return n;
  // A failure with no exit code: the runtime could not start the process at all.
  throw new PaddockError("unavailable", `exec failed in the pod: ${status.message ?? status.reason ?? "no exit status"}`);
}

const PID_DIR = "/tmp/.paddock-exec";
/** The session's environment file's directory: on the pod's /tmp emptyDir (outside /workspace, so never in a snapshot), the session user's alone. */
export const SESSION_ENV_DIR = "/tmp/.paddock-session";
/** The session's environment as `export NAME='value'` lines (sessionEnvLines), mode 0600; later lines win. */
export const SESSION_ENV_FILE = `${SESSION_ENV_DIR}/env`;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The wrapper (see the file comment). `setsid` runs in place (no fork) when the shell is not a
 * group leader already. A missing environment file is no error (a session started with no
 * environment has none); one that does not parse ends the command (exit 1) before it runs.
 */
export const WRAPPER = [
  'p=$1; d=$2; e=$3; shift 3',
  // Pid files of commands that have ended are removed here (one small loop instead of an exec per command).
  `mkdir -p ${PID_DIR} 2>/dev/null; for f in ${PID_DIR}/*; do [ -f "$f" ] || continue; read -r q <"$f" 2>/dev/null; [ -n "$q" ] && [ -d "/proc/$q" ] || rm -f -- "$f"; done`,
  'echo $$ > "$p" 2>/dev/null',
  'cd -- "$d" || exit 1',
  `PATH=${DEFAULT_PATH}; HOME=${SESSION_HOME}; USER=paddock; LOGNAME=paddock; export PATH HOME USER LOGNAME`,
  'if [ -f "$e" ]; then . "$e" || exit 1; fi',
  'read -r _a _b _c _d pg _rest </proc/$$/stat 2>/dev/null || pg=$$',
  'if [ "$pg" != "$$" ] && command -v setsid >/dev/null 2>&1; then exec setsid env -- "$@"; fi',
  'exec env -- "$@"',
].join("\n");

/** `env` is the command's own variables (ExecOptions.env); the session's are read from `envFile` in the pod. */
export function wrappedArgv(pidFile: string, cwd: string, envFile: string, env: Record<string, string>, argv: string[]): string[] {
  const assignments = Object.entries(env).map(([k, v]) => `${checkedName(k)}=${v}`);
  // env takes leading NAME=VALUE words as assignments, so a program name with '=' would be one.
  if (argv.length === 0 || argv[0] === "" || argv[0]!.includes("=")) throw new PaddockError("invalid_argument", `argv[0] must be a program name without '=' (got ${JSON.stringify((argv[0] ?? "").slice(0, 64))})`);
  return ["/bin/sh", "-c", WRAPPER, "paddock-exec", pidFile, cwd, envFile, ...assignments, ...argv];
}

function checkedName(k: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new PaddockError("invalid_argument", `environment variable name ${JSON.stringify(k.slice(0, 64))} is not valid`);
  return k;
}

/**
 * Variables as lines of the environment file, which the wrapper sources: every value single-quoted
 * (a `'` as `'\''`), so nothing in a value is ever shell syntax. NUL cannot be in a variable.
 */
export function sessionEnvLines(env: Record<string, string>): string {
  return Object.entries(env).map(([k, v]) => {
    if (v.includes("\0")) throw new PaddockError("invalid_argument", `environment variable ${k} holds a NUL byte`);
    return `export ${checkedName(k)}='${v.replaceAll("'", "'\\''")}'\n`;
  }).join("");
}

export const newPidFile = () => `${PID_DIR}/${randomUUID()}`;

/** `128+N` → the signal's name (a process killed by signal N is reported as 128+N by the runtime). */
export function signalOfExit(code: number): string | null {
  if (code <= 128 || code > 128 + 64) return null;
  const n = code - 128;
  const hit = Object.entries(osConstants.signals).find(([, v]) => v === n);
  return hit ? hit[0] : null;
}

/** A path as the session user would name it: relative paths are under /workspace. */
export function sandboxPath(path: string): string {
  if (typeof path !== "string" || path === "" || path.includes("\0")) throw new PaddockError("invalid_argument", "a path must be a non-empty string without NUL bytes");
  return posix.resolve(WORKSPACE, path);
}

const TYPES: Record<string, FileEntry["type"]> = { f: "file", d: "dir", l: "symlink" };

/** `find -printf '%y %m %s %T@ %f\0'` records → entries, by name. */
export function parseListing(text: string): FileEntry[] {
  const entries: FileEntry[] = [];
  for (const rec of text.split("\0")) {
    if (!rec) continue;
    const m = /^(\S) ([0-7]+) (\d+) ([\d.]+) ([\s\S]*)$/.exec(rec);
    if (!m) continue;
    entries.push({
      name: m[5]!,
      type: TYPES[m[1]!] ?? "other",
      mode: parseInt(m[2]!, 8) & 0o7777,
      size: Number(m[3]),
      mtime: new Date(Math.floor(Number(m[4]) * 1000)).toISOString(),
    });
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
