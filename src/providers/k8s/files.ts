/**
 * File calls as commands in the session container, as the session user: `cat` through stdin and
 * stdout, `find -printf` for listings. Paths are arguments of fixed scripts (never spliced into
 * shell text), so a path cannot become a command; they are resolved inside the pod's own
 * filesystem by construction (the exec runs in the container). Each script reports the cause of
 * a failure as its exit status, mapped to a PaddockError here.
 */
import { PaddockError } from "../../core/index.ts";
import type { FileEntry } from "../../core/index.ts";
import type { KubeClients } from "./kube.ts";
import type { PodRef } from "./exec.ts";
import { rawExec } from "./exec.ts";
import { SESSION_ENV_DIR, SESSION_ENV_FILE, parseListing, sandboxPath, sessionEnvLines } from "./commands.ts";

/** Exit statuses the scripts use for errno-like causes. */
const ENOENT = 44;
const EISDIR = 45;
const EACCES = 46;
const ENOTDIR = 47;

function fail(code: number, path: string, stderr: string): PaddockError {
  switch (code) {
    case ENOENT: return new PaddockError("not_found", `${path}: no such file or directory`, { errno: "ENOENT" });
    case EISDIR: return new PaddockError("invalid_argument", `${path} is a directory`, { errno: "EISDIR" });
    case EACCES: return new PaddockError("forbidden", `${path}: permission denied`, { errno: "EACCES" });
    case ENOTDIR: return new PaddockError("invalid_argument", `${path} is not a directory`, { errno: "ENOTDIR" });
    default: return new PaddockError("unavailable", `${path}: file operation failed (exit ${code}): ${stderr.slice(0, 300).trim()}`);
  }
}

const READ = `[ -e "$1" ] || exit ${ENOENT}; [ -d "$1" ] && exit ${EISDIR}; [ -r "$1" ] || exit ${EACCES}; exec cat -- "$1"`;

export async function readPodFile(c: KubeClients, ref: PodRef, path: string): Promise<Buffer> {
  const p = sandboxPath(path);
  const out: Buffer[] = [];
  let err = "";
  const code = await rawExec(c, ref, ["/bin/sh", "-c", READ, "paddock-read", p], { onStdout: (b) => out.push(b), onStderr: (b) => (err += b.toString()) });
  if (code !== 0) throw fail(code, p, err);
  return Buffer.concat(out);
}

/** Written to a temporary name beside the target and renamed over it: readers never see half a file. */
const WRITE = [
  'd=$(dirname -- "$1")',
  `[ -d "$d" ] || exit ${ENOENT}`,
  `[ -d "$1" ] && exit ${EISDIR}`,
  `[ -w "$d" ] || exit ${EACCES}`,
  't="$d/.paddock-write.$$"',
  'umask 077',
  'cat > "$t" && chmod "$2" "$t" && mv -f -- "$t" "$1" || { rm -f -- "$t"; exit 1; }',
].join("\n");

export async function writePodFile(c: KubeClients, ref: PodRef, path: string, data: Uint8Array, mode = 0o644): Promise<void> {
  const p = sandboxPath(path);
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new PaddockError("invalid_argument", `mode ${mode} is not a permission mode`);
  let err = "";
  const code = await rawExec(c, ref, ["/bin/sh", "-c", WRITE, "paddock-write", p, mode.toString(8)], { stdin: data, onStderr: (b) => (err += b.toString()) });
  if (code !== 0) throw fail(code, p, err);
}

const LIST = `[ -e "$1" ] || exit ${ENOENT}; [ -d "$1" ] || exit ${ENOTDIR}; [ -r "$1" ] && [ -x "$1" ] || exit ${EACCES}; exec find "$1" -mindepth 1 -maxdepth 1 -printf '%y %m %s %T@ %f\\0'`;

export async function listPodDir(c: KubeClients, ref: PodRef, path: string): Promise<FileEntry[]> {
  const p = sandboxPath(path);
  const out: Buffer[] = [];
  let err = "";
  const code = await rawExec(c, ref, ["/bin/sh", "-c", LIST, "paddock-list", p], { onStdout: (b) => out.push(b), onStderr: (b) => (err += b.toString()) });
  if (code !== 0) throw fail(code, p, err);
  return parseListing(Buffer.concat(out).toString("utf8"));
}

/**
 * The session's environment file (commands.ts SESSION_ENV_FILE), the session user's, mode 0600.
 * `add`: the variables are appended (later lines win), as setEnv adds to what the session has;
 * otherwise the file is replaced.
 */
export async function writeSessionEnv(c: KubeClients, ref: PodRef, env: Record<string, string>, opts: { add?: boolean } = {}): Promise<void> {
  const lines = sessionEnvLines(env);
  let before = "";
  if (opts.add) {
    before = await readPodFile(c, ref, SESSION_ENV_FILE).then((b) => b.toString("utf8"), (e: unknown) => {
      if (e instanceof PaddockError && e.code === "not_found") return "";
      throw e;
    });
  }
  const made = await rawExec(c, ref, ["mkdir", "-p", "-m", "700", "--", SESSION_ENV_DIR], {});
  if (made !== 0) throw new PaddockError("unavailable", `cannot make ${SESSION_ENV_DIR} in pod ${ref.pod} for the session's environment (exit ${made})`);
  await writePodFile(c, ref, SESSION_ENV_FILE, Buffer.from(before + lines), 0o600);
}
