/** A real `paddock node` process for tests, and how to free everything it held. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { releaseHome } from "../helpers/server.ts";
import type { NodeCa } from "../../src/providers/ec2/index.ts";

export const repoRoot = resolve(import.meta.dirname, "../..");

export interface NodeProcess {
  url: string;
  home: string;
  proc: ChildProcess;
  log: () => string;
  /** kill -9 the node process (its sandboxes are detached and keep running) and start it again on the same home and port. */
  restart: () => Promise<void>;
  /** Stop the process (SIGTERM, then SIGKILL), free its sandboxes and kernel objects, remove its directory. */
  cleanup: () => Promise<void>;
}

/**
 * Start `paddock node` (the real CLI, from source) with a certificate for `nodeName` on 127.0.0.1
 * and a free port. Laid out as the EC2 user data lays a host out (certificates in `<home>/tls`),
 * under /var/tmp rather than /tmp: sandboxes get a tmpfs over /tmp, which would hide the home
 * whether or not the provider masks it.
 */
export async function spawnNode(ca: NodeCa, nodeName: string): Promise<NodeProcess> {
  const dir = await mkdtemp("/var/tmp/paddock-node-test-");
  const home = join(dir, "home");
  const tlsDir = join(home, "tls");
  await mkdir(tlsDir, { recursive: true, mode: 0o700 });
  const tls = await ca.issueNode(nodeName);
  await writeFile(join(tlsDir, "ca.pem"), ca.certPem);
  await writeFile(join(tlsDir, "node.pem"), tls.certPem);
  await writeFile(join(tlsDir, "node-key.pem"), tls.keyPem, { mode: 0o600 });
  const args = (listen: string) => ["--import", "tsx", join(repoRoot, "src/cli/main.ts"), "node", "--listen", listen, "--home", home,
    "--ca", join(tlsDir, "ca.pem"), "--cert", join(tlsDir, "node.pem"), "--key", join(tlsDir, "node-key.pem")];
  let log = "";
  let proc!: ChildProcess;
  const start = async (listen: string): Promise<string> => {
    proc = spawn(process.execPath, args(listen), { cwd: repoRoot, stdio: ["ignore", "ignore", "pipe"] });
    const p = proc;
    return new Promise<string>((res, rej) => {
      createInterface({ input: p.stderr! }).on("line", (line) => {
        log += line + "\n";
        const m = /listening on (https:\/\/\S+)/.exec(line);
        if (m?.[1]) res(m[1]);
      });
      p.on("exit", (code) => rej(new Error(`paddock node exited with ${code} before listening:\n${log}`)));
    });
  };
  const cleanup = async (): Promise<void> => {
    await stopProcess(proc);
    await freeNodeHome(home);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const url = await start("127.0.0.1:0");
    const node: NodeProcess = {
      url, home, proc, log: () => log, cleanup,
      restart: async () => {
        const old = proc;
        const exited = new Promise<void>((r) => old.once("exit", () => r()));
        old.kill("SIGKILL");
        await exited;
        await start(`127.0.0.1:${new URL(url).port}`);
        node.proc = proc;
      },
    };
    return node;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Everything a node at `home` may hold: its sandboxes (killed with their cgroups), run directory and layer mount. */
export async function freeNodeHome(home: string): Promise<void> {
  await releaseHome(home);
}
