import { readFile } from "node:fs/promises";

/**
 * Processes we did not start in this incarnation (after a restart) can only be watched by pid. A
 * pid is reused by the kernel, so "alive" means "that pid exists AND started at the time we
 * recorded" (field 22 of /proc/PID/stat, in clock ticks since boot).
 */
export async function processStartTime(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return rest[19] ?? "";
}

export async function isAlive(pid: number, startTime: string): Promise<boolean> {
  const now = await processStartTime(pid);
  if (!now) return false;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  return state !== "Z" && (startTime === "" || now === startTime);
}

/** Wait (bounded) until a process is gone; the process need not be our child. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const alive = await processStartTime(pid);
    if (!alive) return true;
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return true;
    await new Promise((r) => setTimeout(r, 2));
  }
  return false;
}
