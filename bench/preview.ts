/**
 * Preview gateway benchmark (issue #12), all in one run against one app in one real session:
 * - latency a request gains through the preview (cookie check, the preview's row, the proxy) over
 *   a direct connection to the session's port from the gateway address, both on keep-alive
 *   connections, interleaved (target: ≤ 1 ms added at p50);
 * - throughput of a large download through the preview vs direct (target: ≥ 80 %);
 * - wake: a visit to the preview of a stopped session until the first byte of the app's answer
 *   (a session started from the snapshot taken at its stop, the preview's command started, the
 *   port ready) (target: ≤ 1 s p50). The stop itself (with its snapshot) is not timed.
 * Prints one JSON document.
 * Usage: node --import tsx bench/preview.ts [--runs N] [--mb N] [--downloads N] [--wakes N]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../src/server/index.ts";
import { runCommand } from "../src/core/index.ts";
import { PaddockClient } from "../src/client/index.ts";
import { machine, summarize } from "./stats.ts";
import { releaseHome } from "../test/helpers/server.ts";

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1]) || fallback;
const runs = arg("--runs", 2000);
const mb = arg("--mb", 256);
const downloads = arg("--downloads", 5);
const wakes = arg("--wakes", 10);

/** A small app with node builtins: `/` answers a short body, `/big?mb=N` streams N MiB. */
const APP = String.raw`
const http = require("http");
const chunk = Buffer.alloc(65536, 97);
http.createServer((req, res) => {
  const u = new URL(req.url, "http://x");
  if (u.pathname === "/big") {
    let left = Number(u.searchParams.get("mb") || 1) * 16;
    res.writeHead(200, { "content-length": left * 65536 });
    const pump = () => { while (left > 0) { left--; if (!res.write(chunk)) return res.once("drain", pump); } res.end(); };
    return pump();
  }
  res.end("ok\n");
}).listen(3000, "0.0.0.0").keepAliveTimeout = 60000;
`;

interface Via {
  host: string;
  port: number;
  headers: Record<string, string>;
  localAddress?: string;
  agent: Agent;
}

/** One request; resolves at the first byte of the body (`firstByte`) and at its end. */
function fetchVia(v: Via, path: string): Promise<{ status: number; firstByteMs: number; totalMs: number; bytes: number }> {
  const t0 = process.hrtime.bigint();
  const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
  return new Promise((resolve, reject) => {
    const req = request({ host: v.host, port: v.port, path, headers: v.headers, agent: v.agent, ...(v.localAddress ? { localAddress: v.localAddress } : {}) }, (res) => {
      let first = -1;
      let bytes = 0;
      res.on("data", (c: Buffer) => {
        if (first < 0) first = ms();
        bytes += c.length;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, firstByteMs: first < 0 ? ms() : first, totalMs: ms(), bytes }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "paddock-bench-"));
  const server = await startServer({ home, port: 0 });
  const client = new PaddockClient({ url: server.url, token: (await readFile(join(home, "admin.token"), "utf8")).trim() });
  const serverPort = Number(new URL(server.url).port);
  const agents: Agent[] = [];
  const agent = () => {
    const a = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(a);
    return a;
  };
  try {
    await client.environments.apply("web.yml", "name: web\n");
    const s = await client.sessions.start("web");
    await client.files.write(s.id, "/workspace/app.js", Buffer.from(APP));
    await client.sessions.run(s.id, { argv: ["sh", "-c", "nohup node /workspace/app.js >/tmp/app.log 2>&1 &"] });
    const created = await client.previews.create(s.id, 3000, { command: "node /workspace/app.js" });
    const u = new URL(created.url);
    const exchange = await fetchVia({ host: "127.0.0.1", port: serverPort, headers: { host: u.host }, agent: agent() }, u.pathname + u.search);
    if (exchange.status !== 302) throw new Error(`token exchange answered ${exchange.status}`);
    // The cookie, from the exchange's Set-Cookie (read again with the raw API for the header).
    const cookie = await new Promise<string>((resolve, reject) => {
      request({ host: "127.0.0.1", port: serverPort, path: u.pathname + u.search, headers: { host: u.host } }, (res) => {
        res.resume();
        resolve(String(res.headers["set-cookie"]?.[0] ?? "").split(";")[0] ?? "");
      }).on("error", reject).end();
    });
    const directOf = async (): Promise<Via> => {
      const session = await server.cp.store.getSession((await client.previews.get(created.preview.id)).sessionId);
      return { host: String(session?.providerState.sandboxIp), port: 3000, localAddress: server.cp.network.gatewayIp, headers: {}, agent: agent() };
    };
    const direct = await directOf();
    const preview: Via = { host: "127.0.0.1", port: serverPort, headers: { host: u.host, cookie }, agent: agent() };
    // Ready: the app answers directly (a readiness check, not a wait).
    for (let i = 0; ; i++) {
      const ok = await fetchVia(direct, "/").then((r) => r.status === 200, () => false);
      if (ok) break;
      if (i > 3000) throw new Error("the app never answered");
      await new Promise((r) => setTimeout(r, 10));
    }

    // Latency, interleaved, after a warm-up.
    for (let i = 0; i < 200; i++) {
      await fetchVia(direct, "/");
      await fetchVia(preview, "/");
    }
    const lat = { direct: [] as number[], preview: [] as number[] };
    for (let i = 0; i < runs; i++) {
      lat.direct.push((await fetchVia(direct, "/")).totalMs);
      const r = await fetchVia(preview, "/");
      if (r.status !== 200) throw new Error(`preview answered ${r.status}`);
      lat.preview.push(r.totalMs);
    }
    const d = summarize("direct: GET / to the session's port (keep-alive)", lat.direct);
    const p = summarize("preview: GET / through the preview gateway (keep-alive, cookie)", lat.preview);

    // Throughput, interleaved, by curl (a client in a process of its own, as a browser is: this
    // process serves the preview, and must not also spend its event loop on being the client).
    const mbps = { direct: [] as number[], preview: [] as number[] };
    const curl = async (args: string[]): Promise<number> => {
      const r = await runCommand(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}", ...args]);
      const [size, speed] = r.stdout.trim().split(" ").map(Number);
      if (size !== mb * 1048576) throw new Error(`curl downloaded ${size} bytes: ${r.stderr}`);
      return (speed ?? 0) / 1048576;
    };
    for (let i = 0; i < downloads; i++) {
      mbps.direct.push(await curl(["--interface", server.cp.network.gatewayIp, `http://${direct.host}:3000/big?mb=${mb}`]));
      mbps.preview.push(await curl(["-H", `host: ${u.host}`, "-H", `cookie: ${cookie}`, `http://127.0.0.1:${serverPort}/big?mb=${mb}`]));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;

    // Wake: stop (snapshot first; not timed), then one visit until the first byte.
    const wake: number[] = [];
    for (let i = 0; i < wakes; i++) {
      const current = (await client.previews.get(created.preview.id)).sessionId;
      await client.sessions.stop(current);
      const r = await fetchVia({ ...preview, agent: agent() }, "/");
      if (r.status !== 200) throw new Error(`wake answered ${r.status}`);
      wake.push(r.firstByteMs);
    }

    const report = {
      benchmark: "preview gateway",
      machine: machine(),
      latency: {
        runs,
        direct: d,
        preview: p,
        addedP50Ms: Math.round((p.p50Ms - d.p50Ms) * 1000) / 1000,
        addedP99Ms: Math.round((p.p99Ms - d.p99Ms) * 1000) / 1000,
        targetAddedP50Ms: 1,
      },
      throughput: {
        downloadMiB: mb,
        downloads,
        directMiBps: Math.round(median(mbps.direct)),
        previewMiBps: Math.round(median(mbps.preview)),
        ratio: Math.round((median(mbps.preview) / median(mbps.direct)) * 1000) / 1000,
        target: 0.8,
      },
      wake: { ...summarize("visit of a stopped session's preview → first byte (session from snapshot, command started, port ready)", wake), targetP50Ms: 1000 },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    for (const a of agents) a.destroy();
    for (const s of await server.cp.sessions.list()) await server.cp.sessions.stop(s.id).catch(() => undefined);
    await server.close({ unmountLayers: true, removeHostNetwork: true });
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
  }
}

await main();
