/**
 * The node's own record of its sandboxes (`<home>/sandboxes/<id>.json`: the local provider's state
 * for each), so a node process that restarts (a crash, a service restart) recovers them at once.
 * Without it, its `list()` would be empty until the control plane called `recover`, and an empty
 * list is exactly what makes the EC2 provider terminate a host as idle.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Provider } from "../core/provider.ts";

/** The local provider's sandbox ids; anything else never becomes a file name. */
const ID = /^[a-z0-9][a-z0-9-]{0,40}$/;

export class SandboxRecords {
  constructor(private readonly dir: string) {}

  async put(id: string, providerState: Record<string, unknown>): Promise<void> {
    if (!ID.test(id)) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.${id}.tmp`);
    await writeFile(tmp, JSON.stringify(providerState), { mode: 0o600 });
    await rename(tmp, join(this.dir, `${id}.json`));
  }

  /** The recorded state of `id`, or null when there is none. */
  async get(id: string): Promise<Record<string, unknown> | null> {
    if (!ID.test(id)) return null;
    return readFile(join(this.dir, `${id}.json`), "utf8").then((t) => JSON.parse(t) as Record<string, unknown>, () => null);
  }

  async remove(id: string): Promise<void> {
    if (ID.test(id)) await rm(join(this.dir, `${id}.json`), { force: true });
  }

  /** Recover every recorded sandbox into `local`; forget the ones that are gone. */
  async recoverAll(local: Provider, log: (line: string) => void): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names) {
      const id = name.endsWith(".json") ? name.slice(0, -".json".length) : "";
      if (!ID.test(id)) continue;
      const state = await readFile(join(this.dir, name), "utf8").then((t) => JSON.parse(t) as Record<string, unknown>, () => null);
      const r = state ? await local.recover(id, state).catch(() => "gone" as const) : "gone";
      if (r === "gone") await this.remove(id);
      log(`node: sandbox ${id} ${r === "running" ? "recovered" : "was gone"}`);
    }
  }
}
