/**
 * Paths and the user of an envd file call, resolved as envd resolves them: `~` and relative paths
 * are under the user's home (`/home/user`), `..` is folded, and the result is absolute.
 *
 * Paddock runs every file operation as the sandbox's one unprivileged user (E2B's `user`), never
 * as root: a call that asks for another user is refused, not served as someone else.
 */
import { posix } from "node:path";
import type { IncomingHttpHeaders } from "node:http";
import { PaddockError, invalid, quoted } from "../../core/index.ts";

/** E2B's default user and its home, which E2B sandboxes on Paddock have (docs/e2b.md). */
export const E2B_USER = "user";
export const E2B_HOME = "/home/user";
/** Longest path accepted (Linux's PATH_MAX, in bytes). */
export const MAX_PATH_BYTES = 4096;

/**
 * The user an envd call names: the `username` query parameter (`/files`) or the Connect call's
 * `Authorization: Basic base64("<user>:")`. Absent means the default user.
 */
export function envdUser(explicit: string | undefined, headers?: IncomingHttpHeaders): string {
  let name = explicit;
  const auth = headers?.authorization;
  if ((name === undefined || name === "") && typeof auth === "string" && /^basic /i.test(auth)) {
    const decoded = Buffer.from(auth.slice(6).trim(), "base64").toString("utf8");
    name = decoded.slice(0, decoded.includes(":") ? decoded.indexOf(":") : undefined);
  }
  if (name === undefined || name === "" || name === E2B_USER) return E2B_USER;
  throw new PaddockError(
    "forbidden",
    `file operations run as the sandbox user ${quoted(E2B_USER)}; user ${quoted(name, 64)} is not available on Paddock (no sandbox process runs as root or another account)`,
  );
}

/** `path` as envd resolves it for the default user: absolute, `~` expanded, relative to the home, `..` folded. */
export function resolveEnvdPath(path: string, what = "path"): string {
  if (path.includes("\0")) throw invalid(`${what} contains a NUL byte`);
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw invalid(`${what} is ${Buffer.byteLength(path)} bytes long; the limit is ${MAX_PATH_BYTES}`);
  let p = path;
  if (p === "~" || p.startsWith("~/")) p = E2B_HOME + p.slice(1);
  else if (p.startsWith("~")) throw invalid(`${what} ${quoted(path)}: only ~ (the sandbox user's home) can be expanded, not another user's`);
  return posix.resolve(E2B_HOME, p);
}
