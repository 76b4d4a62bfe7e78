import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { spawn } from "node:child_process";
import { gzipSync } from "node:zlib";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../../src/core/index.ts";
import { tempDir } from "./tmp.ts";

/**
 * Local stand-ins for the services agents talk to (Stripe, GitHub, Sentry): real HTTPS servers on a
 * loopback address of this machine, with their own test CA, that record exactly what they
 * received. Nothing here reaches the internet; the gateway is pointed at them by a DNS override.
 */
export interface Received {
  method: string;
  url: string;
  host: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface Upstream {
  address: string;
  caPem: string;
  received: Received[];
  /** Token a `git push`/`clone` must present (as the Basic password). */
  gitToken: string;
  gitRoot: string;
  close(): Promise<void>;
}

/** A CA and one server certificate for `names`, made with openssl. */
export async function makeTestCertificates(dir: string, names: string[]): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const f = (n: string) => join(dir, n);
  await runCommand(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=Paddock test upstream CA"]);
  await writeFile(f("ext.cnf"), `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await runCommand(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("srv.key"), "-out", f("srv.csr"), "-subj", `/CN=${names[0]}`]);
  await runCommand(["openssl", "x509", "-req", "-in", f("srv.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("srv.pem"), "-days", "2", "-extfile", f("ext.cnf")]);
  return { caPem: await readFile(f("ca.pem"), "utf8"), certPem: await readFile(f("srv.pem"), "utf8"), keyPem: await readFile(f("srv.key"), "utf8") };
}

export const UPSTREAM_NAMES = ["api.stripe.com", "github.com", "api.github.com", "o1.ingest.sentry.io", "sentry.io", "evil.example", "registry.example"];

/** Start HTTPS on :443 and HTTP on :80 at `address` (root may bind them). */
export async function startUpstream(address: string, opts: { gitToken: string }): Promise<Upstream> {
  const dir = await tempDir("paddock-upstream-");
  const certs = await makeTestCertificates(dir.path, UPSTREAM_NAMES);
  const gitRoot = join(dir.path, "git");
  await makeRepo(gitRoot, "org/repo.git");
  const received: Received[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if ((req.url ?? "").startsWith("/sink")) {
      // Bulk uploads (load tests): counted, neither kept nor recorded.
      let bytes = 0;
      req.on("data", (c: Buffer) => (bytes += c.length));
      req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ bytes }) + "\n"));
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const r: Received = { method: req.method ?? "", url: req.url ?? "", host: String(req.headers.host ?? ""), headers: req.headers, body: body.toString("utf8") };
      received.push(r);
      route(r, body, req, res, { gitRoot, gitToken: opts.gitToken });
    });
  };
  const https: HttpsServer = createHttpsServer({ key: certs.keyPem, cert: certs.certPem }, handler);
  const http: HttpServer = createHttpServer(handler);
  await Promise.all([listen(https, address, 443), listen(http, address, 80)]);
  return {
    address,
    caPem: certs.caPem,
    received,
    gitToken: opts.gitToken,
    gitRoot,
    close: async () => {
      https.closeAllConnections();
      http.closeAllConnections();
      await Promise.all([new Promise((r) => https.close(r)), new Promise((r) => http.close(r))]);
      await dir.remove();
    },
  };
}

function listen(s: HttpServer | HttpsServer, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once("error", reject);
    s.listen(port, address, () => resolve());
  });
}

function route(r: Received, body: Buffer, req: IncomingMessage, res: ServerResponse, git: { gitRoot: string; gitToken: string }): void {
  const path = r.url.split("?")[0] ?? "";
  if (path.startsWith("/org/")) return gitBackend(r, body, req, res, git);
  if (path === "/redirect") {
    res.writeHead(302, { location: "https://evil.example/landing" }).end();
    return;
  }
  if (path === "/gzip-echo") {
    // Echo compressed: redaction must look inside content-encoding.
    res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" }).end(gzipSync(JSON.stringify(r)));
    return;
  }
  // Default: echo what arrived (headers and body), so tests can see what the upstream saw and what
  // the sandbox got back (a secret echoed here must reach the sandbox as its placeholder).
  const echoed = JSON.stringify({ method: r.method, url: r.url, host: r.host, authorization: r.headers.authorization ?? null, body: r.body });
  res.writeHead(200, {
    "content-type": "application/json",
    "x-echo-authorization": String(r.headers.authorization ?? ""),
    "x-echo-base64": Buffer.from(String(r.headers.authorization ?? "")).toString("base64"),
  });
  res.end(echoed);
}

/** git smart HTTP through git-http-backend (CGI), behind Basic auth with the token as password. */
function gitBackend(r: Received, body: Buffer, req: IncomingMessage, res: ServerResponse, git: { gitRoot: string; gitToken: string }): void {
  const auth = String(req.headers.authorization ?? "");
  const password = auth.startsWith("Basic ") ? Buffer.from(auth.slice(6), "base64").toString().split(":").slice(1).join(":") : "";
  if (password !== git.gitToken) {
    res.writeHead(401, { "www-authenticate": 'Basic realm="test git"' }).end("auth required\n");
    return;
  }
  const [path, query = ""] = r.url.split("?");
  const cgi = spawn("/usr/lib/git-core/git-http-backend", [], {
    env: {
      GIT_PROJECT_ROOT: git.gitRoot,
      GIT_HTTP_EXPORT_ALL: "1",
      PATH_INFO: path ?? "/",
      QUERY_STRING: query,
      REQUEST_METHOD: r.method,
      CONTENT_TYPE: String(req.headers["content-type"] ?? ""),
      CONTENT_LENGTH: String(body.length),
      REMOTE_USER: "agent",
      REMOTE_ADDR: "127.0.0.1",
      PATH: process.env.PATH ?? "/usr/bin:/bin",
    },
  });
  const out: Buffer[] = [];
  cgi.stdout.on("data", (c: Buffer) => out.push(c));
  cgi.on("close", () => {
    const all = Buffer.concat(out);
    const split = all.indexOf("\r\n\r\n");
    const head = all.subarray(0, split).toString();
    const headers: Record<string, string> = {};
    let status = 200;
    for (const line of head.split("\r\n")) {
      const i = line.indexOf(":");
      if (i < 0) continue;
      const k = line.slice(0, i).trim().toLowerCase();
      const v = line.slice(i + 1).trim();
      if (k === "status") status = Number(v.split(" ")[0]);
      else headers[k] = v;
    }
    res.writeHead(status, headers).end(all.subarray(split + 4));
  });
  cgi.stdin.end(body);
}

async function makeRepo(root: string, name: string): Promise<void> {
  const bare = join(root, name);
  await mkdir(bare, { recursive: true });
  await runCommand(["git", "init", "-q", "--bare", "-b", "main", bare]);
  await runCommand(["git", "-C", bare, "config", "http.receivepack", "true"]);
  const work = `${bare}-work`;
  await runCommand(["git", "init", "-q", "-b", "main", work]);
  await writeFile(join(work, "README.md"), "hello from the test git server\n");
  await runCommand(["git", "-C", work, "add", "."]);
  await runCommand(["git", "-C", work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first"]);
  await runCommand(["git", "-C", work, "push", "-q", bare, "main"]);
}
