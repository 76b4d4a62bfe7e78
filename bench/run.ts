/**
 * Session benchmarks (issue #2): session start (API call → first exec possible) and exec round
 * trip of `true`, each beside a bare `bwrap --unshare-all true` measured in the same run on the
 * same machine. Session starts are measured back to back (start, exec, stop, next start) and again
 * spaced 250 ms apart. Prints one JSON document. Usage: node --import tsx bench/run.ts [--runs N]
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../src/server/index.ts";
import { PaddockClient } from "../src/client/index.ts";
import { machine, summarize, time } from "./stats.ts";
import { releaseHome } from "../test/helpers/server.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 200;
/** Pause before each start of the "spaced" measurement. */
const GAP_MS = 250;

function spawnTrue(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: "ignore" });
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(" ")} exited ${code}`))));
  });
}

/** The baseline. Retried once: its recursive bind of / fails when another process on the machine
 * unmounts something at that moment (seen while other test runs shared the machine). */
const bwrapTrue = (): Promise<void> => spawnTrue(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]);

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "paddock-bench-"));
  const server = await startServer({ home, port: 0 });
  const client = new PaddockClient({ url: server.url, token: (await readFile(join(home, "admin.token"), "utf8")).trim() });
  try {
    await client.environments.apply("bench.yml", "name: bench\ninstall:\n  - echo ready > /workspace/ready\n");
    const local = server.cp.providers.get("local")!;
    // Warm up: first session pays for the scaffold layer and page cache.
    for (let i = 0; i < 3; i++) await client.sessions.remove((await client.sessions.start("bench")).id);

    const bwrap: number[] = [];
    const start: number[] = [];
    const startToExec: number[] = [];
    const stop: number[] = [];
    for (let i = 0; i < runs; i++) {
      bwrap.push(await time(() => bwrapTrue().catch(bwrapTrue)));
      let id = "";
      const t0 = process.hrtime.bigint();
      start.push(await time(async () => (id = (await client.sessions.start("bench")).id)));
      await client.sessions.run(id, { argv: ["true"] });
      startToExec.push(Number(process.hrtime.bigint() - t0) / 1e6);
      stop.push(await time(() => client.sessions.remove(id)));
    }

    // The same start on a server with nothing else to do: the previous session's stop and the
    // background work it and its start caused (network pool refill, deletions) are over. Back to
    // back, above, each start shares the cores with that work, as under a steady stream of starts.
    const spaced: number[] = [];
    for (let i = 0; i < runs; i++) {
      await new Promise((r) => setTimeout(r, GAP_MS));
      let sid = "";
      spaced.push(await time(async () => (sid = (await client.sessions.start("bench")).id)));
      await client.sessions.remove(sid);
    }

    const id = (await client.sessions.start("bench")).id;
    const execApi: number[] = [];
    const execProvider: number[] = [];
    const execStream: number[] = [];
    for (let i = 0; i < runs; i++) {
      execApi.push(await time(() => client.sessions.run(id, { argv: ["true"] })));
      execProvider.push(await time(() => local.exec(id, { argv: ["true"] })));
      execStream.push(await time(() => client.sessions.exec(id, { argv: ["true"] })));
    }
    await client.sessions.remove(id);

    const report = {
      benchmark: "sessions",
      machine: machine(),
      layerStore: server.cp.layers.kind,
      runs,
      baseline: summarize("bwrap --unshare-all true (spawned from Node)", bwrap),
      results: [
        summarize("session start: POST /v1/sessions until ready", start),
        summarize("session start → first exec of `true` done", startToExec),
        summarize(`session start, ${GAP_MS} ms after the previous stop`, spaced),
        summarize("session stop + delete", stop),
        summarize("exec `true`: POST /v1/sessions/{id}/exec", execApi),
        summarize("exec `true`: WebSocket stream", execStream),
        summarize("exec `true`: provider (no HTTP)", execProvider),
        summarize("bwrap --unshare-all true (spawned from Node)", bwrap),
      ],
      targets: { sessionStartP50Ms: 25, execRoundTripP50Ms: 10 },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    for (const s of await client.sessions.list()) await client.sessions.remove(s.id).catch(() => undefined);
    await server.close({ unmountLayers: true });
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
  }
}

await main();
