import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";

/**
 * sha256 over a layer's content: every path (sorted), its type, mode, owner, and the bytes of
 * regular files or the target of symlinks. Timestamps are left out on purpose, so the same change
 * made twice has the same digest.
 */
export async function contentDigest(root: string): Promise<string> {
  const h = createHash("sha256");
  await walk(root, "", h);
  return h.digest("hex");
}

async function walk(root: string, rel: string, h: ReturnType<typeof createHash>): Promise<void> {
  const p = rel ? join(root, rel) : root;
  const st = await lstat(p);
  h.update(`${rel || "."}\0${st.mode}\0${st.uid}\0${st.gid}\0`);
  if (st.isSymbolicLink()) h.update(await readlink(p));
  else if (st.isFile()) {
    h.update(`${st.size}\0`);
    for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
  } else if (st.isCharacterDevice() || st.isBlockDevice()) h.update(`${st.rdev}`);
  else if (st.isDirectory()) for (const e of (await readdir(p)).sort()) await walk(root, rel ? `${rel}/${e}` : e, h);
  h.update("\n");
}
