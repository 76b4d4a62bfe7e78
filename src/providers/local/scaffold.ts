import { chmod, chown, lchown, lstat, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import type { LayerStore } from "../../core/index.ts";
import { runCommand } from "../../core/index.ts";
import { SESSION_GID, SESSION_HOME, SESSION_UID, SESSION_USER, WORKSPACE, hostUid } from "./ids.ts";

/**
 * The scaffold layer sits right above the base filesystem and gives every sandbox what Paddock
 * promises: the session user in /etc/passwd, its home, /workspace, and on `base: host` opaque
 * (emptied) copies of the host directories that hold other people's data (/root, /home, /var/log,
 * /var/tmp…),
 * so the host OS is there read-only but its private corners are not. It is generated, cached as a
 * committed layer named by a digest of what it contains, and shared by every template on that base.
 */
const SCAFFOLD_VERSION = "2";

/** Host directories a `base: host` sandbox must not see into: replaced by empty opaque dirs. */
const HOST_OPAQUE_DIRS = ["root", "home", "var/log", "var/mail", "var/spool", "var/backups", "var/lib/paddock", "etc/ssh"];
/**
 * Top-level host entries a `base: host` sandbox keeps: the OS itself. Everything else at the top of
 * the host's filesystem (checkouts under /work or /srv, data disks, stray files) is whited out, so
 * "the host OS read-only" does not mean "every world-readable file on the host".
 */
const HOST_ROOT_KEEP = new Set(["bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "opt", "var", "tmp", "run", "proc", "sys", "dev", "home", "root"]);
/** Directories install steps may add to as root on `base: host` (new entries only; host files stay read-only). */
const ROOT_WRITABLE_DIRS = ["opt", "usr/local", "usr/local/bin", "usr/local/lib", "usr/local/share", "usr/local/include", "usr/local/sbin", "usr/local/etc", "usr/local/src", "var/tmp", "var/cache", "var/lib"];

export async function ensureScaffold(layers: LayerStore, base: "host" | "debian-12", baseEtcDir: string): Promise<string> {
  const passwd = await readFile(join(baseEtcDir, "passwd"), "utf8").catch(() => "root:x:0:0:root:/root:/bin/sh\n");
  const group = await readFile(join(baseEtcDir, "group"), "utf8").catch(() => "root:x:0:\n");
  const files = { passwd: withSessionUser(passwd, "passwd"), group: withSessionUser(group, "group") };
  const hidden = base === "host" ? (await readdir("/")).filter((e) => !HOST_ROOT_KEEP.has(e)).sort() : [];
  const id = "scaffold-" + createHash("sha256").update(JSON.stringify({ SCAFFOLD_VERSION, base, files, hidden })).digest("hex").slice(0, 32);
  if (await layers.has(id)) return id;
  const key = `${id}-tmp-${randomBytes(6).toString("hex")}`;
  const active = await layers.prepare(key);
  try {
    await writeScaffold(active.upperDir, base, files, hidden);
    await layers.commit(key, id);
  } catch (err) {
    await layers.remove(key).catch(() => undefined);
    throw err;
  }
  return id;
}

async function writeScaffold(root: string, base: "host" | "debian-12", files: { passwd: string; group: string }, hidden: string[]): Promise<void> {
  const rootId = hostUid(0);
  const user = hostUid(SESSION_UID);
  const userGroup = hostUid(SESSION_GID);
  await chown(root, rootId, rootId);
  await chmod(root, 0o755);
  if (base === "host") {
    for (const d of HOST_OPAQUE_DIRS) await makeDir(root, d, rootId, rootId, d === "root" ? 0o700 : 0o755, true);
    // /var/tmp is the host's shared temporary directory: other users' files live there, so the
    // sandbox gets an empty one of its own (opaque), like /tmp (a tmpfs).
    for (const d of ROOT_WRITABLE_DIRS) await makeDir(root, d, rootId, rootId, d === "var/tmp" ? 0o1777 : 0o755, d === "var/tmp");
    // An overlay whiteout is a 0/0 character device: the entry below it disappears.
    for (const e of hidden) await runCommand(["mknod", join(root, e), "c", "0", "0"]);
  }
  await makeDir(root, "etc", rootId, rootId, 0o755, false);
  await writeFile(join(root, "etc/passwd"), files.passwd, { mode: 0o644 });
  await writeFile(join(root, "etc/group"), files.group, { mode: 0o644 });
  await chown(join(root, "etc/passwd"), rootId, rootId);
  await chown(join(root, "etc/group"), rootId, rootId);
  await makeDir(root, SESSION_HOME.slice(1), user, userGroup, 0o755, false);
  await makeDir(root, WORKSPACE.slice(1), user, userGroup, 0o755, false);
  for (const d of ["tmp", "run", "proc", "sys", "dev"]) await makeDir(root, d, rootId, rootId, d === "tmp" ? 0o1777 : 0o755, false);
}

/** Replace any entry for the session uid/name with Paddock's own. */
function withSessionUser(text: string, kind: "passwd" | "group"): string {
  const lines = text.split("\n").filter((l) => l && !l.startsWith(`${SESSION_USER}:`) && l.split(":")[2] !== String(kind === "passwd" ? SESSION_UID : SESSION_GID));
  lines.push(kind === "passwd" ? `${SESSION_USER}:x:${SESSION_UID}:${SESSION_GID}:Paddock session user:${SESSION_HOME}:/bin/bash` : `${SESSION_USER}:x:${SESSION_GID}:`);
  return lines.join("\n") + "\n";
}

async function makeDir(root: string, rel: string, uid: number, gid: number, mode: number, opaque: boolean): Promise<void> {
  const p = join(root, rel);
  // Parents created on the way (e.g. `var` for `var/log`) belong to root inside, never to host root.
  const parts = rel.split("/");
  for (let i = 1; i < parts.length; i++) {
    const parent = join(root, ...parts.slice(0, i));
    await mkdir(parent, { recursive: true });
    await chown(parent, hostUid(0), hostUid(0));
  }
  await mkdir(p, { recursive: true });
  await chown(p, uid, gid);
  await chmod(p, mode);
  // overlayfs hides everything below an opaque directory in the layers beneath it.
  if (opaque) await runCommand(["setfattr", "-n", "trusted.overlay.opaque", "-v", "y", p]);
}

/**
 * Give the session user what an install step (run as root inside) left in /workspace and the
 * session home, so sessions can change what was installed for them. Runs on a stopped build layer.
 */
export async function handOverToSessionUser(upperDir: string): Promise<void> {
  for (const rel of [WORKSPACE.slice(1), SESSION_HOME.slice(1)]) await chownTree(join(upperDir, rel), hostUid(0), hostUid(SESSION_UID), hostUid(SESSION_GID));
}

async function chownTree(p: string, fromUid: number, uid: number, gid: number): Promise<void> {
  const st = await lstat(p).catch(() => null);
  if (!st) return;
  // Only what root made changes hands: overlay whiteouts (char 0/0) and others' files are left alone.
  if (st.uid === fromUid && !st.isCharacterDevice()) {
    await lchown(p, uid, gid);
    // chown clears set-id bits; put them back where a step set them on purpose.
    if (!st.isSymbolicLink() && st.mode & 0o6000) await chmod(p, st.mode & 0o7777);
  }
  if (st.isDirectory()) for (const e of await readdir(p)) await chownTree(join(p, e), fromUid, uid, gid);
}
