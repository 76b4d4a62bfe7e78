/**
 * Test harness for the gateway: a real HTTPS and HTTP upstream on 127.0.0.1 (random ports) that
 * record exactly what they receive, a gateway whose `upstream.resolve` maps every test name to
 * 127.0.0.1 and whose test-only `portOverride` sends 443/80 to the upstreams, and clients.
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { gzipSync } from "node:zlib";
import { createSessionCa, type SessionCa } from "../../src/gateway/ca.ts";
import { createGateway, type EgressRecord, type Gateway, type GatewayLimits, type GatewaySessionSpec, type SecretSource } from "../../src/gateway/index.ts";

export interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: http.IncomingHttpHeaders;
  body: string;
  tls: boolean;
  servername?: string;
}

export interface Upstreams {
  ca: SessionCa;
  seen: Seen[];
  httpsPort: number;
  httpPort: number;
  close(): Promise<void>;
}

/** What the upstreams answer, by path. Echo paths let tests prove redaction. */
function respond(req: http.IncomingMessage, body: string, res: http.ServerResponse): void {
  const auth = String(req.headers["authorization"] ?? req.headers["x-api-key"] ?? "");
  const secret = String(req.headers["x-echo"] ?? auth.replace(/^Bearer /, ""));
  const path = (req.url ?? "/").split("?")[0] ?? "/";
  switch (path) {
    case "/echo-header":
      res.writeHead(200, { "x-echo-back": secret, "content-type": "text/plain" });
      return void res.end("ok");
    case "/echo-body":
      return void res.end(`raw=${secret} b64=${Buffer.from(secret).toString("base64")} url=${encodeURIComponent(secret)} basic=${Buffer.from(`u:${secret}`).toString("base64")} all=${auth} req=${body}`);
    case "/echo-gzip":
      res.writeHead(200, { "content-encoding": "gzip" });
      return void res.end(gzipSync(`gz=${secret}`));
    case "/echo-chunks": {
      res.writeHead(200, { "content-type": "text/plain" });
      const s = `before ${secret} after`;
      let i = 0;
      const step = (): void => {
        if (i >= s.length) return void res.end();
        res.write(s.slice(i, i + 3));
        i += 3;
        setTimeout(step, 1);
      };
      return step();
    }
    case "/redirect":
      res.writeHead(302, { location: "https://evil.example/steal" });
      return void res.end();
    case "/reset":
      return void req.socket.destroy();
    case "/weird-encoding":
      res.writeHead(200, { "content-encoding": "zstd" });
      return void res.end("xx");
    default:
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`hello from ${req.headers.host}`);
  }
}

function recorder(seen: Seen[], isTls: boolean): http.RequestListener {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      const servername = isTls ? (req.socket as tls.TLSSocket).servername || undefined : undefined;
      seen.push({ method: req.method ?? "", url: req.url ?? "", rawHeaders: req.rawHeaders, headers: req.headers, body, tls: isTls, ...(servername ? { servername } : {}) });
      respond(req, body, res);
    });
  };
}

export async function startUpstreams(): Promise<Upstreams> {
  const ca = await createSessionCa("test-upstream", null);
  const seen: Seen[] = [];
  const s = https.createServer({ SNICallback: (name, cb) => void ca.contextFor(name).then((c) => cb(null, c), cb) }, recorder(seen, true));
  const p = http.createServer(recorder(seen, false));
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  await new Promise<void>((r) => p.listen(0, "127.0.0.1", r));
  return {
    ca,
    seen,
    httpsPort: (s.address() as net.AddressInfo).port,
    httpPort: (p.address() as net.AddressInfo).port,
    async close() {
      s.closeAllConnections();
      p.closeAllConnections();
      await Promise.all([new Promise((r) => s.close(r)), new Promise((r) => p.close(r))]);
    },
  };
}

export const SECRETS: Record<string, string> = {
  STRIPE_API_KEY: "sk_live_51HxREALstripeSECRETvalue0001",
  GITHUB_TOKEN: "ghp_REALgithubTOKENvalue00000000000002",
  SENTRY_DSN: "https://f00dREALsentryKEY0003@o1.ingest.sentry.io/42",
  DATABASE_URL: "postgres://app:REALdbPASSWORD0004@db.internal:5432/app",
  QUERY_KEY: "qk_REALqueryKEYvalue0005",
};

export function secretSource(values: Record<string, string> = SECRETS): SecretSource & { touched: string[] } {
  const touched: string[] = [];
  return {
    touched,
    resolve: async (name) => values[name] ?? null,
    touch: (name) => void touched.push(name),
  };
}

export interface Harness {
  gw: Gateway;
  up: Upstreams;
  records: EgressRecord[];
  logs: string[];
  /** Names whose A record is a given address (default 127.0.0.1). */
  dns: Map<string, string[]>;
  /** Every name the gateway resolved, in order. */
  lookups: string[];
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Gateway limits (tests shorten the timeouts). */
  limits?: Partial<GatewayLimits>;
  /**
   * Port 443 leads to a front that looks at the first byte: a TLS ClientHello goes on to the HTTPS
   * upstream, anything else (plain HTTP sent to port 443) to the HTTP upstream, which records it.
   * Without it, plain HTTP to 443 reaches the TLS upstream and nobody can see what was sent.
   */
  sniff443?: boolean;
}

/** A TCP front that routes by the first byte (0x16: TLS handshake) to one of two local ports. */
async function startSniffer(tlsPort: number, plainPort: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    client.once("data", (first: Buffer) => {
      const target = net.connect(first[0] === 0x16 ? tlsPort : plainPort, "127.0.0.1");
      target.write(first);
      client.pipe(target).pipe(client);
      const end = (): void => void (client.destroy(), target.destroy());
      client.on("error", end).on("close", end);
      target.on("error", end).on("close", end);
    });
    client.on("error", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return server;
}

export async function startHarness(source: SecretSource = secretSource(), opts: HarnessOptions = {}): Promise<Harness> {
  const up = await startUpstreams();
  const sniffer = opts.sniff443 ? await startSniffer(up.httpsPort, up.httpPort) : null;
  const port443 = sniffer ? (sniffer.address() as net.AddressInfo).port : up.httpsPort;
  const records: EgressRecord[] = [];
  const logs: string[] = [];
  const dns = new Map<string, string[]>();
  const lookups: string[] = [];
  const gw = await createGateway({
    address: "127.0.0.1",
    secrets: source,
    onRecord: (r) => void records.push(r),
    log: (l) => void logs.push(l),
    upstream: {
      extraCaPem: [up.ca.certPem],
      resolve: async (host) => {
        lookups.push(host);
        const a = dns.get(host);
        if (a && a.length === 0) throw new Error("ENOTFOUND");
        return a ?? ["127.0.0.1"];
      },
      portOverride: (_host, port) => (port === 443 ? port443 : port === 80 ? up.httpPort : up.httpsPort),
    },
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  const closeSniffer = (): Promise<void> => new Promise((r) => (sniffer ? sniffer.close(() => r()) : r()));
  return { gw, up, records, logs, dns, lookups, close: async () => void (await gw.close(), await up.close(), await closeSniffer()) };
}

/** A spec whose policy reaches the upstreams: names allowed, and 127.0.0.1 named as an IP literal. */
export function spec(id: string, over: Partial<GatewaySessionSpec> = {}): GatewaySessionSpec {
  return {
    id,
    sourceIp: "127.0.0.1",
    policy: { allow: ["api.stripe.com", "github.com", "api.github.com", "o1.ingest.sentry.io", "allowed.example", "127.0.0.1", "127.0.0.1:8443"], deny: ["*"], allowSources: ["runtime.yml:27"] },
    secrets: [
      { name: "STRIPE_API_KEY", hosts: ["api.stripe.com"], in: ["header"], kind: "http" },
      { name: "GITHUB_TOKEN", hosts: ["github.com", "api.github.com"], in: ["header"], kind: "http" },
      { name: "SENTRY_DSN", hosts: ["o1.ingest.sentry.io"], in: ["header"], kind: "http" },
      { name: "DATABASE_URL", hosts: [], in: ["header"], kind: "database" },
      { name: "QUERY_KEY", hosts: ["api.stripe.com"], in: ["query", "body"], kind: "http" },
    ],
    scope: { environment: "env-test" },
    ...over,
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function collect(res: http.IncomingMessage): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    res.on("error", reject);
  });
}

/** Open `CONNECT target` through the proxy; resolves the raw socket and the proxy's status. */
export function connect(proxyPort: number, target: string, localAddress = "127.0.0.1"): Promise<{ status: number; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: proxyPort, method: "CONNECT", path: target, localAddress, headers: { host: target } });
    req.on("connect", (res, socket) => resolve({ status: res.statusCode ?? 0, socket }));
    req.on("response", (res) => resolve({ status: res.statusCode ?? 0, socket: res.socket }));
    req.on("error", reject);
    req.end();
  });
}

export interface Req {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
}

/** HTTPS through CONNECT: tunnel to `target`, TLS with `sni`, trusting `caPem`. */
export async function viaConnect(proxyPort: number, caPem: string, target: string, r: Req = {}, sni = target.split(":")[0], localAddress = "127.0.0.1"): Promise<Reply> {
  const { status, socket } = await connect(proxyPort, target, localAddress);
  if (status !== 200) {
    socket.destroy();
    return { status, headers: {}, body: "" };
  }
  const tlsSocket = tls.connect({ socket, servername: sni, ca: caPem });
  return request(() => tlsSocket, r, target.split(":")[0] ?? "");
}

/** HTTPS to the transparent TLS port with `sni`. */
export function viaTransparent(port: number, caPem: string, sni: string, r: Req = {}, localAddress = "127.0.0.1"): Promise<Reply> {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  const tlsSocket = tls.connect({ socket, servername: sni, ca: caPem });
  return request(() => tlsSocket, r, sni);
}

function request(conn: () => net.Socket, r: Req, host: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ createConnection: conn, method: r.method ?? "GET", path: r.path ?? "/", headers: { host, ...r.headers } }, (res) => {
      collect(res).then(resolve, reject);
    });
    req.on("error", reject);
    req.end(r.body);
  });
}

/** Plain HTTP to the proxy (absolute-form) or the transparent port (origin-form). */
export function plainHttp(port: number, path: string, r: Req & { host?: string } = {}, localAddress = "127.0.0.1"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(r.host ? { host: r.host } : {}), ...r.headers };
    const req = http.request({ host: "127.0.0.1", port, method: r.method ?? "GET", path, headers, localAddress, agent: false }, (res) => collect(res).then(resolve, reject));
    req.on("error", reject);
    req.end(r.body);
  });
}

/** Write raw bytes and read everything until the peer closes (or 2 s). */
export function raw(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    let out = "";
    socket.on("data", (c: Buffer) => (out += c.toString("latin1")));
    const done = (): void => resolve(out);
    socket.on("close", done);
    socket.on("error", done);
    setTimeout(() => {
      socket.destroy();
    }, 2000).unref();
    socket.write(text);
  });
}
