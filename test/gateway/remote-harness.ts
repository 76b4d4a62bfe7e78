/**
 * Harness for the remote proxy listener: the real gateway process (startGatewayProcess) with its
 * TLS proxy for remote sandboxes on 127.0.0.1 (a free port), local HTTPS/HTTP upstreams on random
 * ports (policies name them as `host:port`, so no fixed address or port override is needed), and
 * clients that act as the remote sandbox from the host: curl, and raw TLS-in-TLS in node.
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import { randomBytes } from "node:crypto";
import { gatewayCa, passwordHash, startGatewayProcess, type EgressRecord, type GatewayLimits, type GatewayProcess, type GatewaySessionSpec, type RemoteAuthLimits } from "../../src/gateway/index.ts";
import { tempDir } from "../helpers/tmp.ts";
import { secretSource, spec, startUpstreams, type Upstreams } from "./helpers.ts";

export const NAMES = ["api.stripe.com", "github.com", "api.github.com", "allowed.example", "o1.ingest.sentry.io"];

export interface RemoteHarness {
  gw: GatewayProcess;
  up: Upstreams;
  records: EgressRecord[];
  logs: string[];
  /** The gateway CA's certificate, as a file (what a remote sandbox trusts for the proxy). */
  gatewayCaFile: string;
  gatewayCaPem: string;
  gatewayCaKeyPem: string;
  dir: string;
  port: number;
  /** Write a PEM to a file in the harness's directory. */
  file(name: string, content: string): Promise<string>;
  close(): Promise<void>;
}

export interface RemoteHarnessOptions {
  limits?: Partial<GatewayLimits>;
  authLimits?: Partial<RemoteAuthLimits>;
  /** The name or address the proxy is reached by (default "localhost": a DNS name in its certificate). */
  publicHost?: string;
}

export async function startRemoteHarness(opts: RemoteHarnessOptions = {}): Promise<RemoteHarness> {
  const up = await startUpstreams();
  const dir = await tempDir("paddock-remote-proxy-");
  const publicHost = opts.publicHost ?? "localhost";
  const ca = await gatewayCa(publicHost);
  const records: EgressRecord[] = [];
  const logs: string[] = [];
  const gw = await startGatewayProcess({
    init: {
      address: "127.0.0.1",
      ports: { proxyPort: 0, httpPort: 0, httpsPort: 0, dnsPort: 0, postgresPort: 0 },
      upstream: { extraCaPem: [up.ca.certPem], hosts: Object.fromEntries(NAMES.map((n) => [n, ["127.0.0.1"]])), trustedAddresses: ["127.0.0.1"] },
      ...(opts.limits ? { limits: opts.limits as Record<string, number> } : {}),
      remoteProxy: { host: "127.0.0.1", port: 0, publicHost, ca: { certPem: ca.certPem, keyPem: ca.keyPem }, ...(opts.authLimits ? { authLimits: opts.authLimits } : {}) },
    },
    secrets: secretSource(),
    onRecord: (r) => void records.push(r),
    log: (l) => void logs.push(l),
  });
  const file = async (name: string, content: string): Promise<string> => {
    const p = join(dir.path, name);
    await writeFile(p, content);
    return p;
  };
  const gatewayCaFile = await file("gateway-ca.pem", ca.certPem);
  if (!gw.remoteProxy) throw new Error("the gateway did not start its remote proxy");
  return {
    gw, up, records, logs, gatewayCaFile, gatewayCaPem: ca.certPem, gatewayCaKeyPem: ca.keyPem, dir: dir.path, port: gw.remoteProxy.port, file,
    async close() {
      await gw.close();
      await up.close();
      await dir.remove();
    },
  };
}

/** A fresh remote credential: what the sandbox is given, and what the gateway keeps. */
export function credential(): { user: string; password: string; remote: { user: string; passwordSha256: string } } {
  const user = `pdk${randomBytes(8).toString("hex")}`;
  const password = randomBytes(32).toString("base64url");
  return { user, password, remote: { user, passwordSha256: passwordHash(password) } };
}

/** A remote session's spec: the helpers' secrets, a policy naming the upstreams' ports. */
export function remoteSpec(id: string, remote: { user: string; passwordSha256: string }, up: Upstreams, allow: string[] = ["api.stripe.com", "allowed.example"]): GatewaySessionSpec {
  const { sourceIp: _local, ...base } = spec(id);
  return {
    ...base,
    remote,
    policy: { allow: allow.flatMap((h) => [`${h}:${up.httpsPort}`, `${h}:${up.httpPort}`]), deny: ["*"] },
  };
}

export interface CurlResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Status of the final response (0 when none). */
  status: number;
  /** Status the proxy gave the CONNECT (0 when none). */
  connectStatus: number;
  ms: number;
}

/** curl as a remote sandbox runs it: HTTPS proxy with credentials, the proxy's and the session's CA. */
export function curl(proxyUrl: string, args: string[], cas: { proxy: string; session?: string }, env: Record<string, string> = {}): Promise<CurlResult> {
  const started = Date.now();
  const argv = ["-sS", "-m", "30", "--proxy", proxyUrl, "--proxy-cacert", cas.proxy, ...(cas.session ? ["--cacert", cas.session] : []), "-w", "\n%{http_code} %{http_connect}", ...args];
  return new Promise((resolve) => {
    execFile("curl", argv, { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const lines = stdout.split("\n");
      const [code, connect] = (lines.pop() ?? "").split(" ");
      resolve({
        exitCode: err ? ((err as { code?: number }).code ?? 1) : 0,
        stdout: lines.join("\n"),
        stderr,
        status: Number(code) || 0,
        connectStatus: Number(connect) || 0,
        ms: Date.now() - started,
      });
    });
  });
}

/** TLS to the proxy itself (trusting only the gateway CA), from `localAddress`. */
export function proxyTls(port: number, gatewayCaPem: string, servername = "localhost", localAddress = "127.0.0.1"): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: "127.0.0.1", port, localAddress });
    raw.once("error", reject);
    // An address is checked against the certificate's IP SAN and sent as no SNI at all (RFC 6066).
    const who = net.isIP(servername) ? { host: servername } : { servername };
    const t = tls.connect({ socket: raw, ...who, ca: gatewayCaPem }, () => resolve(t));
    t.once("error", reject);
  });
}

/** Everything the peer sends until it closes (or `ms`). */
export function readAll(socket: net.Socket, ms = 10_000): Promise<string> {
  return new Promise((resolve) => {
    let out = "";
    socket.on("data", (c: Buffer) => (out += c.toString("latin1")));
    const done = (): void => resolve(out);
    socket.once("close", done);
    socket.once("error", done);
    setTimeout(() => {
      socket.destroy();
    }, ms).unref();
  });
}

/** Send `CONNECT target` with `auth` (a full header value, or none) over a TLS connection to the proxy; resolves its status line's code and the socket. */
export function connectThrough(t: tls.TLSSocket, target: string, auth?: string): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const onData = (c: Buffer): void => {
      buf += c.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      t.off("data", onData);
      const rest = Buffer.from(buf.slice(end + 4), "latin1");
      if (rest.length) t.unshift(rest);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1] ?? 0), head: buf.slice(0, end + 4) });
    };
    t.on("data", onData);
    t.once("close", () => resolve({ status: 0, head: buf }));
    t.once("error", reject);
    t.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ""}\r\n`);
  });
}

export const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

/** An HTTPS request inside an established tunnel (TLS in TLS), trusting `sessionCaPem`. */
export function inTunnel(t: tls.TLSSocket, host: string, sessionCaPem: string, r: { path?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const inner = tls.connect({ socket: t, servername: host, ca: sessionCaPem });
    inner.once("error", reject);
    const req = http.request({ createConnection: () => inner, path: r.path ?? "/", headers: { host, ...r.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end();
  });
}
