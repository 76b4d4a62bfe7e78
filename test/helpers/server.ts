import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { startServer, type RunningServer, type ServerOptions } from "../../src/server/index.ts";
import { PaddockClient } from "../../src/client/index.ts";
import { isMountPoint } from "../../src/layers/index.ts";
import { runCommand } from "../../src/core/index.ts";
import { detectCgroupLayout, installationScope, removeCgroupScope, listCgroupIds, cgroupDirs, destroyCgroups, openNetworkManager } from "../../src/providers/local/index.ts";
import { DEFAULT_GATEWAY_PORTS } from "../../src/control/index.ts";
import { tempDir } from "./tmp.ts";
import { readFile, rm } from "node:fs/promises";

/** The admin token of each server a helper started, so `cli(url, …)` can act as admin there. */
const adminTokens = new Map<string, string>();

/** The admin token the first start of an installation wrote to `${home}/admin.token`. */
export async function adminToken(home: string): Promise<string> {
  return (await readFile(join(home, "admin.token"), "utf8")).trim();
}

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The agent CLIs setup installed (scripts/agent-packages.ts). */
export const AGENT_PACKAGES_DIR = join(repoRoot, "vendor", "agents");

/**
 * A real server on a random port with a fresh data directory, for one test file. `cleanup` stops
 * every session, unmounts the layer image, removes this installation's cgroups and run directory
 * and deletes the data directory — also after a failed test.
 */
export async function testServer(
  opts: Pick<ServerOptions, "layerStore" | "gateway" | "log" | "agentPackages" | "hostedAgents" | "e2bPort" | "providerDrivers"> = {},
): Promise<{ server: RunningServer; client: PaddockClient; home: string; token: string; cleanup: () => Promise<void> }> {
  const dir = await tempDir();
  // Agents install from the mirror `make test`'s setup filled (scripts/agent-packages.ts), never from the registry.
  const server = await startServer({ home: dir.path, port: 0, agentPackages: AGENT_PACKAGES_DIR, ...opts });
  const token = await adminToken(dir.path);
  adminTokens.set(server.url, token);
  const client = new PaddockClient({ url: server.url, token });
  return {
    server,
    client,
    home: dir.path,
    token,
    cleanup: async () => {
      for (const s of await server.cp.sessions.list()) await server.cp.sessions.stop(s.id).catch(() => undefined);
      await server.close({ unmountLayers: true, removeHostNetwork: true });
      await releaseHome(dir.path);
      await dir.remove();
    },
  };
}

/** Free every kernel object an installation at `home` may hold (after its server is gone). */
export async function releaseHome(home: string): Promise<void> {
  const scope = installationScope(home);
  const layout = await detectCgroupLayout(scope);
  for (const id of await listCgroupIds(layout)) await destroyCgroups(cgroupDirs(layout, id));
  await removeCgroupScope(layout);
  await rm(join("/run/paddock", scope), { recursive: true, force: true });
  // Whatever network objects a killed server left (netns, veths, the dummy interface, nft table).
  const network = await openNetworkManager({ scope, ports: DEFAULT_GATEWAY_PORTS, poolSize: 0 });
  await network.close({ removeHostObjects: true });
  const layers = join(home, "layers");
  if (await isMountPoint(layers)) await runCommand(["umount", layers]);
}

/**
 * One `paddock up` process at a time on a data directory (`home()`, read at each start), that a
 * test can kill -9 and start again: `start` first kills the previous one, as a new control plane
 * replaces the old.
 */
export function crashableServer(home: () => string): { start: () => ReturnType<typeof spawnServer>; kill9: () => Promise<void> } {
  let proc: ChildProcess | undefined;
  const kill9 = async (): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((r) => {
      p.once("exit", () => r());
      p.kill("SIGKILL");
    });
  };
  const start = async (): ReturnType<typeof spawnServer> => {
    await kill9();
    const s = await spawnServer(home());
    proc = s.proc;
    return s;
  };
  return { start, kill9 };
}

/** The server as its own process (`paddock up`), so a test can kill -9 it. */
export async function spawnServer(home: string): Promise<{ url: string; proc: ChildProcess; client: PaddockClient; stderr: () => string }> {
  const proc = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "src/cli/main.ts"), "up", "--port", "0", "--home", home], {
    cwd: repoRoot,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const lines = createInterface({ input: proc.stderr! });
  const url = await new Promise<string>((resolve, reject) => {
    lines.on("line", (line) => {
      log += line + "\n";
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m?.[1]) resolve(m[1]);
    });
    proc.on("exit", (code) => reject(new Error(`server exited with ${code} before listening:\n${log}`)));
  });
  const token = await adminToken(home);
  adminTokens.set(url, token);
  return { url, proc, client: new PaddockClient({ url, token }), stderr: () => log };
}

/** Run the real CLI (bin/paddock) against a server; as its admin unless `token` names another principal ("" for none). */
export function cli(url: string, args: string[], opts: { input?: string; token?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const token = opts.token ?? adminTokens.get(url) ?? "";
    const env: NodeJS.ProcessEnv = { ...process.env, PADDOCK_URL: url, PADDOCK_TOKEN: token, ...opts.env };
    if (token === "") delete env.PADDOCK_TOKEN;
    const proc = spawn(join(repoRoot, "bin/paddock"), args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    proc.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    proc.on("error", reject);
    proc.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    proc.stdin.on("error", () => undefined);
    proc.stdin.end(opts.input ?? "");
  });
}
