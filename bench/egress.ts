/**
 * Egress gateway benchmark (issue #3): added latency of the gateway for HTTP and HTTPS (cached
 * leaf, keep-alive connections on both sides) and throughput for 1 MiB bodies, each against a
 * direct connection and against Debian's tinyproxy as a plain forward proxy, all in one run.
 * Client (this process), gateway and upstream are three processes, as they are in production; all
 * listen on this machine's loopback. Usage: node --import tsx bench/egress.ts [--runs N]
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayEndpoints } from "../src/gateway/index.ts";
import { makeTestCertificates } from "../test/helpers/upstream.ts";
import { tempDir } from "../test/helpers/tmp.ts";
import { machine, summarize, time } from "./stats.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 500;
const UP = "127.0.56.1";
const NAME = "api.stripe.com";

function get(agent: http.Agent, mod: typeof http | typeof https, opts: http.RequestOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = mod.request({ agent, ...opts }, (res) => {
      let n = 0;
      res.on("data", (c: Buffer) => (n += c.length));
      res.on("end", () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end();
  });
}

/** An https.Agent whose connections go through an HTTP CONNECT tunnel (kept alive like any other). */
function tunnelAgent(proxyPort: number, ca: string, target = NAME): https.Agent {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
  (agent as unknown as { createConnection: unknown }).createConnection = (o: tls.ConnectionOptions, cb: (e: Error | null, s?: net.Socket) => void) => {
    const raw = net.connect(proxyPort, "127.0.0.1", () => raw.write(`CONNECT ${target}:443 HTTP/1.1\r\nHost: ${target}:443\r\n\r\n`));
    raw.once("data", (d: Buffer) => {
      if (!/^HTTP\/1\.[01] 200/.test(d.toString())) return cb(new Error(`CONNECT refused: ${d.toString().split("\r\n")[0]}`));
      cb(null, tls.connect({ socket: raw, servername: NAME, ca }));
    });
    raw.on("error", (e) => cb(e));
  };
  return agent;
}

/** Start one part of the benchmark (see egress-parts.ts) as its own process; resolves with its ready line. */
/**
 * The parts run as plain JavaScript, bundled here with esbuild the way scripts/build.mjs builds
 * the product (the gateway runs compiled in production; under tsx every imported binding is a
 * getter call, which costs the redaction loop noticeably).
 */
async function bundleParts(): Promise<string> {
  // Inside the checkout, so its node_modules resolve the external packages.
  const outfile = join(import.meta.dirname, "..", "node_modules", ".cache", "paddock-bench", "egress-parts.mjs");
  await build({ entryPoints: [join(import.meta.dirname, "egress-parts.ts")], bundle: true, platform: "node", format: "esm", target: "node20", packages: "external", outfile, logLevel: "error" });
  return outfile;
}

function startPart(role: "upstream" | "gateway", certDir: string, script: string): Promise<{ proc: ChildProcess; info: Record<string, unknown> }> {
  const proc = spawn(process.execPath, [...(process.env.PROFILE_GATEWAY && role === "gateway" ? ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"] : []), script, role, certDir], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let buf = "";
    proc.stdout!.on("data", (c: Buffer) => {
      buf += c.toString();
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve({ proc, info: JSON.parse(buf.slice(0, nl)) as Record<string, unknown> });
    });
    proc.on("exit", (code) => reject(new Error(`${role} exited with ${code}`)));
  });
}

async function startTinyproxy(dir: string): Promise<{ port: number; proc: ChildProcess }> {
  const port = 18888;
  const conf = join(dir, "tinyproxy.conf");
  await writeFile(conf, `Port ${port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.1\nConnectPort 443\nLogLevel Critical\nDisableViaHeader Yes\n`);
  const proc = spawn("tinyproxy", ["-d", "-c", conf], { stdio: "ignore" });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise<boolean>((r) => net.connect(port, "127.0.0.1").on("connect", function (this: net.Socket) { this.destroy(); r(true); }).on("error", () => r(false)));
    if (up) return { port, proc };
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("tinyproxy did not start");
}

async function measure(name: string, fn: () => Promise<unknown>, n: number) {
  process.stderr.write(`measuring ${name}\n`);
  for (let i = 0; i < 20; i++) await fn(); // warm: connections, leaf certificate, JIT
  const samples: number[] = [];
  for (let i = 0; i < n; i++) samples.push(await time(fn));
  return summarize(name, samples);
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/**
 * Throughput, and where the CPU went: CPU milliseconds per MiB moved for the client (this
 * process), the proxy (gateway or tinyproxy, when there is one) and the upstream. On a 2-core
 * machine the sum of those, not the proxy alone, is what bounds a three-process path.
 */
async function throughput(name: string, fn: () => Promise<number>, n: number, pids: { proxy?: number; upstream: number }) {
  await fn();
  const cpu0 = { client: process.cpuUsage(), proxy: pids.proxy ? cpuSeconds(pids.proxy) : 0, upstream: cpuSeconds(pids.upstream) };
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  for (let i = 0; i < n; i++) bytes += await fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const mib = bytes / 2 ** 20;
  const client = process.cpuUsage(cpu0.client);
  const per = (seconds: number) => Math.round(((seconds * 1000) / mib) * 100) / 100;
  return {
    name,
    requests: n,
    mibPerSecond: Math.round((mib / s) * 10) / 10,
    cpuMsPerMiB: {
      client: per((client.user + client.system) / 1e6),
      ...(pids.proxy ? { proxy: per(cpuSeconds(pids.proxy) - cpu0.proxy) } : {}),
      upstream: per(cpuSeconds(pids.upstream) - cpu0.upstream),
    },
  };
}

async function main(): Promise<void> {
  const dir = await tempDir("paddock-bench-egress-");
  const certs = await makeTestCertificates(dir.path, [NAME]);
  const parts = await bundleParts();
  const upstream = await startPart("upstream", dir.path, parts);
  const gateway = await startPart("gateway", dir.path, parts);
  const tiny = await startTinyproxy(dir.path);
  try {
    const reg = gateway.info as { endpoints: GatewayEndpoints; placeholder: string; caCertPem: string };
    const auth = { authorization: `Bearer ${reg.placeholder}` };
    const e = reg.endpoints;
    const plain = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const viaGw = new http.Agent({ keepAlive: true, maxSockets: 1 });
    // tinyproxy closes client connections after each plain-HTTP request, so its HTTP figures (and
    // the gateway's beside them) use a new connection per request.
    const viaTiny = new http.Agent({ keepAlive: false });
    const viaGwFresh = new http.Agent({ keepAlive: false });
    const directTls = new https.Agent({ keepAlive: true, maxSockets: 1, ca: certs.caPem });
    const gwTls = tunnelAgent(e.proxyPort, reg.caCertPem);
    // tinyproxy resolves names itself (no override), so it is given the upstream's address.
    const tinyTls = tunnelAgent(tiny.port, certs.caPem, UP);
    const h = (agent: http.Agent, host: string, port: number, path: string, absolute: string | null) => () =>
      get(agent, http, { host, port, path: absolute ? `http://${absolute}${path}` : path, headers: { host: NAME, ...auth } });
    const s = (agent: https.Agent, path: string, direct = false) => () =>
      get(agent, https, { host: direct ? UP : NAME, port: 443, path, servername: NAME, headers: { host: NAME, ...auth } } as https.RequestOptions);

    const latency = [
      await measure("HTTP direct", h(plain, UP, 80, "/", null), runs),
      await measure("HTTP via Paddock gateway (explicit proxy, placeholder swapped)", h(viaGw, "127.0.0.1", e.proxyPort, "/", NAME), runs),
      await measure("HTTP via tinyproxy (new connection per request)", h(viaTiny, "127.0.0.1", tiny.port, "/", UP), runs),
      await measure("HTTP via Paddock gateway (new connection per request)", h(viaGwFresh, "127.0.0.1", e.proxyPort, "/", NAME), runs),
      await measure("HTTPS direct", s(directTls, "/", true), runs),
      await measure("HTTPS via Paddock gateway (CONNECT + TLS interception, cached leaf, swap)", s(gwTls, "/"), runs),
      await measure("HTTPS via tinyproxy (CONNECT tunnel, no interception)", s(tinyTls, "/"), runs),
    ];
    const big = Math.max(20, Math.round(runs / 10));
    const up = { upstream: upstream.proc.pid ?? 0 };
    const viaGateway = { ...up, proxy: gateway.proc.pid ?? 0 };
    const viaTinyproxy = { ...up, proxy: tiny.proc.pid ?? 0 };
    const rate = [
      await throughput("1 MiB over HTTPS direct", s(directTls, "/big", true), big, up),
      await throughput("1 MiB over HTTPS via Paddock gateway", s(gwTls, "/big"), big, viaGateway),
      await throughput("1 MiB over HTTPS via tinyproxy", s(tinyTls, "/big"), big, viaTinyproxy),
      await throughput("1 MiB over HTTP direct", h(plain, UP, 80, "/big", null), big, up),
      await throughput("1 MiB over HTTP via Paddock gateway", h(viaGw, "127.0.0.1", e.proxyPort, "/big", NAME), big, viaGateway),
      await throughput("64 MiB bulk over HTTPS direct", s(directTls, "/bulk", true), 5, up),
      await throughput("64 MiB bulk over HTTPS via Paddock gateway", s(gwTls, "/bulk"), 5, viaGateway),
      await throughput("64 MiB bulk over HTTPS via tinyproxy", s(tinyTls, "/bulk"), 5, viaTinyproxy),
    ];
    const p50 = (n: string) => latency.find((l) => l.name.startsWith(n))?.p50Ms ?? NaN;
    const mib = (n: string) => rate.find((r) => r.name === n)?.mibPerSecond ?? NaN;
    const report = {
      benchmark: "egress",
      machine: machine(),
      runs,
      latency,
      throughput: rate,
      added: {
        httpP50Ms: Math.round((p50("HTTP via Paddock") - p50("HTTP direct")) * 100) / 100,
        httpsP50Ms: Math.round((p50("HTTPS via Paddock") - p50("HTTPS direct")) * 100) / 100,
        httpsThroughputVsDirect: Math.round((mib("1 MiB over HTTPS via Paddock gateway") / mib("1 MiB over HTTPS direct")) * 100) / 100,
        httpThroughputVsDirect: Math.round((mib("1 MiB over HTTP via Paddock gateway") / mib("1 MiB over HTTP direct")) * 100) / 100,
        httpsBulkVsDirect: Math.round((mib("64 MiB bulk over HTTPS via Paddock gateway") / mib("64 MiB bulk over HTTPS direct")) * 100) / 100,
      },
      targets: { httpAddedP50Ms: 1, httpsAddedP50Ms: 3, throughputVsDirect: 0.8 },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
    for (const a of [plain, viaGw, viaTiny, viaGwFresh, directTls, gwTls, tinyTls]) a.destroy();
  } finally {
    for (const p of [gateway.proc, upstream.proc, tiny.proc]) p.kill("SIGINT");
    await dir.remove();
  }
}

await main();
