/**
 * A session user other than `paddock` for one sandbox (SandboxSpec.sessionUser; the E2B front end
 * asks for `user` with home /home/user). Same uid and gid (1000), so nothing else about the sandbox
 * changes: its writable layer gets an /etc/passwd and /etc/group naming that user, and the home
 * directory, before the sandbox starts. Native sessions never come here and keep the shared
 * scaffold's `paddock`.
 *
 * Every path here is inside a layer that sandboxes wrote (template layers from build steps, a
 * writable layer copied from a snapshot), read and written by the host as root: a symlink there
 * must never be followed, or a sandbox could make the host read or chown a host file. So reads open
 * with O_NOFOLLOW under directories checked with lstat, files are written by rename (which replaces
 * a link instead of following it), and anything that is not what it should be fails the start.
 *
 * The dozen file operations are synchronous: each is a few microseconds on a local file system,
 * while through the thread pool they cost a session start ~10 ms on a loaded machine.
 */
import { closeSync, constants, fstatSync, lchownSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { PaddockError, invalid } from "../../core/index.ts";
import { SESSION_GID, SESSION_UID, hostUid } from "./ids.ts";

const NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const HOME = /^\/home\/[a-z_][a-z0-9_-]{0,31}$/;
/** /etc/passwd and /etc/group are small; a larger one is not read. */
const MAX_BYTES = 1 << 20;

export function checkSessionUser(u: { name: string; home: string }): void {
  if (!NAME.test(u.name) || u.name === "root") throw invalid(`bad session user name ${JSON.stringify(u.name.slice(0, 40))}: lower-case letters, digits, _ and -, not root`);
  if (!HOME.test(u.home)) throw invalid(`bad session home ${JSON.stringify(u.home.slice(0, 60))}: a directory directly under /home`);
}

/**
 * Write the user into the sandbox's writable layer `upperDir` (before it starts). `lowerDirs`:
 * the layers below it, topmost first (absolute host paths), where the current /etc/passwd and
 * /etc/group are read from when the writable layer has none of its own.
 */
export function writeSessionUser(upperDir: string, lowerDirs: string[], user: { name: string; home: string }): void {
  checkSessionUser(user);
  const rootId = hostUid(0);
  for (const kind of ["passwd", "group"] as const) {
    const current = readEtc(upperDir, kind) ?? firstEtc(lowerDirs, kind) ?? (kind === "passwd" ? "root:x:0:0:root:/root:/bin/sh\n" : "root:x:0:\n");
    ensureDir(upperDir, "etc", rootId, rootId, 0o755);
    replaceFile(join(upperDir, "etc", kind), withUser(current, kind, user), rootId);
  }
  ensureDir(upperDir, "home", rootId, rootId, 0o755);
  ensureDir(upperDir, user.home.slice(1), hostUid(SESSION_UID), hostUid(SESSION_GID), 0o755);
}

/** The file's lines without any entry for the session uid/gid or the user's name, plus the user's. */
function withUser(text: string, kind: "passwd" | "group", user: { name: string; home: string }): string {
  const id = String(kind === "passwd" ? SESSION_UID : SESSION_GID);
  const lines = text.split("\n").filter((l) => l && !l.startsWith(`${user.name}:`) && l.split(":")[2] !== id);
  lines.push(kind === "passwd" ? `${user.name}:x:${SESSION_UID}:${SESSION_GID}:Sandbox user:${user.home}:/bin/bash` : `${user.name}:x:${SESSION_GID}:`);
  return `${lines.join("\n")}\n`;
}

function firstEtc(layers: string[], kind: "passwd" | "group"): string | null {
  for (const layer of layers) {
    const text = readEtc(layer, kind);
    if (text !== null) return text;
  }
  return null;
}

/** `<layer>/etc/<kind>` when both are what they should be (a directory, a regular file), else null. */
function readEtc(layer: string, kind: "passwd" | "group"): string | null {
  const etc = lstatSync(join(layer, "etc"), { throwIfNoEntry: false });
  if (!etc?.isDirectory()) return null;
  let fd: number;
  try {
    fd = openSync(join(layer, "etc", kind), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_BYTES) return null;
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/** A directory in the layer, made if missing; an existing entry that is not a directory fails closed. */
function ensureDir(root: string, rel: string, uid: number, gid: number, mode: number): void {
  const path = join(root, rel);
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) throw new PaddockError("conflict", `the sandbox's /${rel} is not a directory (a link or file is there): cannot make the session user's home`);
  if (!st) {
    mkdirSync(path, { mode });
    lchownSync(path, uid, gid);
  } else if (rel !== "etc" && rel !== "home") {
    lchownSync(path, uid, gid);
  }
}

/** Replace `path` with `content` by rename: a link there is replaced, never followed. */
function replaceFile(path: string, content: string, owner: number): void {
  const tmp = `${path}.paddock-${randomBytes(6).toString("hex")}`;
  try {
    writeFileSync(tmp, content, { mode: 0o644, flag: "wx" });
    lchownSync(tmp, owner, owner);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
