import { readFile, rename } from "node:fs/promises";
import { resolve } from "node:path";
import { invalid, runCommand } from "../core/index.ts";

/** Layer ids and keys become directory names: keep them to a safe alphabet (no `/`, no `..`). */
export function checkLayerName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) throw invalid(`bad layer name ${JSON.stringify(name)}`);
}

/** Is `dir` the mount point of some filesystem (per this process's mount table)? */
export async function isMountPoint(dir: string): Promise<boolean> {
  const target = resolve(dir);
  const table = await readFile("/proc/self/mountinfo", "utf8");
  // Field 5 is the mount point, with spaces etc. octal-escaped.
  return table.split("\n").some((line) => unescapeMountPath(line.split(" ")[4] ?? "") === target);
}

export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Bytes a directory tree takes on disk (du -sb: apparent sizes, each hard link once). */
export async function directoryUsage(dir: string): Promise<number> {
  const { stdout } = await runCommand(["du", "-sb", "--", dir]);
  return Number(stdout.split("\t")[0]);
}

/**
 * rename(2) of a layer directory onto its committed name. Resolves false when the name was taken
 * meanwhile (rename onto a non-empty directory fails with ENOTEMPTY or EEXIST): two sandboxes or
 * builds that made the same layer at once, where the first to commit wins.
 */
export async function renameUnlessTaken(from: string, to: string): Promise<boolean> {
  try {
    await rename(from, to);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOTEMPTY" || code === "EEXIST") return false;
    throw err;
  }
}
