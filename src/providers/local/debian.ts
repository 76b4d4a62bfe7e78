import { randomBytes } from "node:crypto";
import { chmod, lchown, lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { LayerStore } from "../../core/index.ts";
import { runCommand, unavailable } from "../../core/index.ts";
import { HOST_ID_BASE } from "./ids.ts";

/**
 * `base: debian-12`: a minimal Debian bookworm built once from Debian's packages with mmdebstrap and
 * cached as a committed layer, so an environment need not depend on the host's OS. Its files are
 * shifted into the sandbox id range (host uid = 100000 + uid inside) so that root inside a build
 * sandbox owns them and apt/dpkg work there, without any sandbox process being host root.
 */
export const DEBIAN_BASE_ID = "base-debian-12-v1";

export async function ensureDebianBase(layers: LayerStore, log: (line: string) => void = () => undefined): Promise<string> {
  if (await layers.has(DEBIAN_BASE_ID)) return DEBIAN_BASE_ID;
  const check = await runCommand(["sh", "-c", "command -v mmdebstrap"], { allowFailure: true });
  if (check.code !== 0) throw unavailable("base: debian-12 needs mmdebstrap on the host: apt-get install mmdebstrap (make up installs it)");
  const key = `${DEBIAN_BASE_ID}-tmp-${randomBytes(6).toString("hex")}`;
  const active = await layers.prepare(key);
  try {
    log("building base debian-12 with mmdebstrap (once per machine)…");
    const started = Date.now();
    await runCommand(["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates", "--mode=root", "bookworm", active.upperDir]);
    log(`shifting ownership into the sandbox id range…`);
    await shiftOwnership(active.upperDir, HOST_ID_BASE);
    await layers.commit(key, DEBIAN_BASE_ID);
    log(`base debian-12 ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return DEBIAN_BASE_ID;
  } catch (err) {
    await layers.remove(key).catch(() => undefined);
    throw err;
  }
}

async function shiftOwnership(p: string, by: number): Promise<void> {
  const st = await lstat(p);
  await lchown(p, st.uid + by, st.gid + by);
  // chown(2) clears set-id bits on regular files; restore them (they stay inert under no_new_privs).
  if (!st.isSymbolicLink() && st.mode & 0o6000) await chmod(p, st.mode & 0o7777);
  if (st.isDirectory()) for (const e of await readdir(p)) await shiftOwnership(join(p, e), by);
}
