/**
 * Preview URLs end to end (docs/previews.md): a real server, real sandboxes, an app inside them
 * (node builtins only: HTTP, a big download, server-sent events, a minimal WebSocket echo) and real
 * clients through the preview gateway. The token becomes a cookie and leaves the URL; without it a
 * visitor is refused; public previews need nothing; revocation and expiry refuse the next request
 * (also on an open keep-alive connection); another port, another preview's id in the Host header
 * and the API are unreachable from a preview host; streams pass through unbuffered; a stopped
 * session is snapshotted and woken by a visit, with the preview's command starting the app again.
 */
import assert from "node:assert/strict";
import { Agent, request } from "node:http";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";

const ENV = `name: web
rbac:
  engineering: [read, write]
  support: [read]
`;

/** The app: node builtins only (the repo, and its node_modules, are not visible in the sandbox). */
const APP = String.raw`
const http = require("http"), crypto = require("crypto");
const port = Number(process.argv[2] || 3000);
let release = null;
const server = http.createServer((req, res) => {
  const u = new URL(req.url, "http://x");
  if (u.pathname === "/headers") {
    res.setHeader("content-type", "application/json");
    res.setHeader("set-cookie", ["app=1; Path=/", "paddock_preview_pv-0000000000=evil; Path=/"]);
    return res.end(JSON.stringify({ url: req.url, headers: req.headers, remote: req.socket.remoteAddress }));
  }
  if (u.pathname === "/big") {
    const n = Number(u.searchParams.get("mb") || 1);
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": n * 1048576 });
    const chunk = Buffer.alloc(65536, 97);
    let left = n * 16;
    const pump = () => { while (left > 0) { left--; if (!res.write(chunk)) return res.once("drain", pump); } res.end(); };
    return pump();
  }
  if (u.pathname === "/sse") {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write("data: first\n\n");
    release = () => { res.write("data: second\n\n"); res.end(); };
    return;
  }
  if (u.pathname === "/sse-release") { if (release) release(); release = null; return res.end("released"); }
  if (u.pathname === "/conn") return res.end(String(req.socket.remotePort));
  res.end("hello from " + process.env.PADDOCK_SESSION + " on " + port + "\n");
});
server.on("upgrade", (req, sock) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  sock.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n");
  let buf = Buffer.alloc(0);
  sock.on("error", () => {});
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const op = buf[0] & 15; let len = buf[1] & 127, off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      const masked = buf[1] & 128; if (buf.length < off + (masked ? 4 : 0) + len) return;
      const mask = masked ? buf.subarray(off, off + 4) : null; if (masked) off += 4;
      const payload = Buffer.from(buf.subarray(off, off + len)); if (mask) for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
      buf = buf.subarray(off + len);
      if (op === 8) { sock.end(Buffer.from([0x88, 0])); return; }
      if (op === 1 || op === 2) {
        const out = Buffer.from("echo:" + payload.toString());
        const hdr = out.length < 126 ? Buffer.from([0x80 | op, out.length]) : Buffer.from([0x80 | op, 126, out.length >> 8, out.length & 255]);
        sock.write(Buffer.concat([hdr, out]));
      }
    }
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, "0.0.0.0");
`;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

void describe("previews: token, cookie, access, reach, streams, WebSocket, revoke, expiry, wake", () => {
  let server: RunningServer;
  let admin: PaddockClient;
  let eng: PaddockClient;
  let engToken: string;
  let cleanup: () => Promise<void>;
  let port: number;
  let a: string;
  let b: string;

  /** A request to the server with the given Host (browsers resolve *.localhost to loopback; node's resolver may not). */
  const get = (host: string, path: string, headers: Record<string, string> = {}, agent: Agent | false = false): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, headers: { host, ...headers }, agent }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
  const hostOf = (url: string) => new URL(url).host;
  const cookieOf = (r: Answer) => String((r.headers["set-cookie"] as string[] | undefined)?.[0] ?? "").split(";")[0] ?? "";
  /** Exchange a preview URL's token for its cookie. */
  const login = async (url: string) => {
    const u = new URL(url);
    const r = await get(u.host, u.pathname + u.search);
    assert.equal(r.status, 302);
    return cookieOf(r);
  };
  const startApp = async (id: string, appPort: number) => {
    await admin.sessions.run(id, { argv: ["sh", "-c", `nohup node /workspace/app.js ${appPort} >/tmp/app-${appPort}.log 2>&1 &`] });
  };
  /** Wait until the app answers on the session's address, from the gateway address (as the preview gateway connects). */
  const appUp = async (id: string, appPort: number) => {
    const s = await server.cp.store.getSession(id);
    const ip = String(s?.providerState.sandboxIp);
    await until(
      () =>
        new Promise<boolean>((resolve) => {
          const req = request({ host: ip, port: appPort, path: "/", localAddress: server.cp.network.gatewayIp, agent: false }, (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode === 200));
          });
          req.on("error", () => resolve(false));
          req.end();
        }),
      30_000,
      `the app on port ${appPort} of ${id}`,
    );
  };
  const newSession = async () => {
    const s = await eng.sessions.start("web");
    await eng.files.write(s.id, "/workspace/app.js", Buffer.from(APP));
    return s.id;
  };

  before(async () => {
    const t = await testServer();
    server = t.server;
    admin = t.client;
    cleanup = t.cleanup;
    port = Number(new URL(server.url).port);
    engToken = (await admin.principals.create({ name: "eng", role: "engineering" })).token;
    eng = new PaddockClient({ url: server.url, token: engToken });
    await admin.environments.apply("runtime.yml", ENV);
    a = await newSession();
    b = await newSession();
    await startApp(a, 3000);
    await startApp(a, 3001);
    await startApp(b, 3000);
    await appUp(a, 3000);
    await appUp(a, 3001);
    await appUp(b, 3000);
  });
  after(async () => cleanup());

  void it("paddock preview prints the URL; the token becomes a host-only HttpOnly cookie and leaves the URL", async () => {
    const r = await cli(server.url, ["preview", a, "3000"], { token: engToken });
    assert.equal(r.code, 0, r.stderr);
    const url = r.stdout.trim();
    assert.match(url, new RegExp(`^http://3000-pv-[0-9a-f]{10}\\.preview\\.localhost:${port}/\\?paddock_preview=[A-Za-z0-9_-]{43}$`));
    const u = new URL(url);
    const first = await get(u.host, "/headers?x=1&paddock_preview=" + u.searchParams.get("paddock_preview"));
    assert.equal(first.status, 302);
    assert.equal(first.headers.location, "/headers?x=1", "the token is gone from the address");
    assert.equal(first.headers["referrer-policy"], "no-referrer");
    const setCookie = String((first.headers["set-cookie"] as string[])[0]);
    assert.match(setCookie, /^paddock_preview_pv-[0-9a-f]{10}=/);
    assert.match(setCookie, /; HttpOnly/);
    assert.match(setCookie, /; SameSite=Lax/);
    assert.match(setCookie, /; Path=\//);
    assert.doesNotMatch(setCookie, /Domain=/i, "host-only: other preview hosts never get it");
    assert.ok(!setCookie.includes(u.searchParams.get("paddock_preview") ?? "-"), "the cookie is not the token");
    const cookie = cookieOf(first);
    const page = await get(u.host, "/", { cookie });
    assert.equal(page.status, 200);
    assert.equal(page.body, `hello from ${a} on 3000\n`);
    // What the app sees: no Paddock cookie, no token; its own cookies pass; it is reached from the gateway address.
    const seen = await get(u.host, "/headers?q=2", { cookie: `${cookie}; theme=dark; paddock_session=ui-cookie` });
    const h = JSON.parse(seen.body) as { url: string; headers: Record<string, string>; remote: string };
    assert.equal(h.url, "/headers?q=2");
    assert.equal(h.headers.cookie, "theme=dark");
    assert.equal(h.remote, server.cp.network.gatewayIp);
    assert.deepEqual(seen.headers["set-cookie"], ["app=1; Path=/"], "the app cannot set a cookie in Paddock's names");
    // Listing shows it, without a token.
    const listed = await eng.previews.list({ session: a });
    assert.ok(listed.some((p) => p.id === u.host.split(".")[0]?.slice(5)));
    assert.ok(!JSON.stringify(listed).includes(u.searchParams.get("paddock_preview") ?? "-"));
  });

  void it("refuses visitors without a token, with a wrong one, or with another preview's cookie", async () => {
    const p = await eng.previews.create(a, 3000);
    const host = hostOf(p.url);
    assert.equal((await get(host, "/")).status, 401);
    // A browser is sent to the UI's origin to sign in instead (see the UI login test below).
    const browser = await get(host, "/some/page?x=1", { accept: "text/html" });
    assert.equal(browser.status, 302);
    assert.equal(browser.headers.location, `${server.url}/ui/preview-auth?preview=${p.preview.id}&next=${encodeURIComponent("/some/page?x=1")}`);
    assert.equal((await get(host, "/?paddock_preview=" + "A".repeat(43))).status, 403);
    const other = await eng.previews.create(b, 3000);
    const otherCookie = await login(other.url);
    // Host spoofing: another preview's cookie, renamed to this preview's, does not verify.
    const renamed = otherCookie.replace(other.preview.id, p.preview.id);
    assert.equal((await get(host, "/", { cookie: otherCookie })).status, 401);
    assert.equal((await get(host, "/", { cookie: renamed })).status, 401);
    // And a Host naming the other preview with this one's cookie reaches nothing either.
    const mine = await login(p.url);
    assert.equal((await get(hostOf(other.url), "/", { cookie: mine })).status, 401);
    // The same cookie on its own host works, and answers from its own session only.
    assert.equal((await get(host, "/", { cookie: mine })).body, `hello from ${a} on 3000\n`);
    assert.equal((await get(hostOf(other.url), "/", { cookie: otherCookie })).body, `hello from ${b} on 3000\n`);
    const denied = (await server.cp.store.listAudit({ limit: 5000 })).filter((r) => r.action === "preview.access" && r.decision === "denied" && r.target === p.preview.id);
    assert.ok(denied.length >= 3, "refusals are audited");
  });

  void it("reaches only its own port: another port, an unknown id and the bare domain are not served", async () => {
    const p = await eng.previews.create(a, 3000);
    const cookie = await login(p.url);
    const h = hostOf(p.url);
    const otherPort = h.replace(/^3000-/, "3001-");
    assert.equal((await get(otherPort, "/", { cookie })).status, 404, "3001 of the same session is not this preview");
    assert.equal((await get(`3000-pv-0123456789.preview.localhost:${port}`, "/", { cookie })).status, 404);
    assert.equal((await get(`preview.localhost:${port}`, "/v1/health")).status, 404);
  });

  void it("a preview host never serves the API", async () => {
    const p = await eng.previews.create(a, 3000);
    const h = hostOf(p.url);
    const bearer = { authorization: `Bearer ${engToken}` };
    for (const path of ["/v1/health", "/v1/sessions", "/v1/openapi.json", "/ui/preview-auth?preview=" + p.preview.id]) {
      const r = await get(h, path, bearer);
      assert.equal(r.status, 401, `${path} on a preview host is the preview's, not the API's`);
      assert.equal(r.headers["x-paddock-preview"], "gateway");
    }
    const cookie = await login(p.url);
    const r = await get(h, "/v1/sessions", { ...bearer, cookie });
    assert.equal(r.body, `hello from ${a} on 3000\n`, "with the cookie, /v1/… is the app's path");
    // The API on its own host is unaffected.
    assert.equal((await fetch(`${server.url}/v1/health`)).status, 200);
  });

  void it("public previews need no token", async () => {
    const p = await eng.previews.create(a, 3001, { public: true });
    assert.equal(p.preview.public, true);
    const r = await get(hostOf(p.url), "/");
    assert.equal(r.status, 200);
    assert.equal(r.body, `hello from ${a} on 3001\n`);
  });

  void it("keep-alive connections are reused, and revocation refuses the next request on an open one", async () => {
    const p = await eng.previews.create(a, 3000);
    const cookie = await login(p.url);
    const h = hostOf(p.url);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const ports = new Set<string>();
      const clientSockets = new Set<unknown>();
      for (let i = 0; i < 5; i++) {
        const r = await new Promise<Answer>((resolve, reject) => {
          const req = request({ host: "127.0.0.1", port, path: "/conn", headers: { host: h, cookie }, agent }, (res) => {
            clientSockets.add(res.socket);
            let body = "";
            res.on("data", (c: Buffer) => (body += c.toString()));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
          });
          req.on("error", reject);
          req.end();
        });
        assert.equal(r.status, 200);
        ports.add(r.body);
      }
      assert.equal(clientSockets.size, 1, "one client connection");
      assert.equal(ports.size, 1, "one upstream connection, reused");
      await eng.previews.revoke(p.preview.id);
      const refused = await get(h, "/conn", { cookie }, agent);
      assert.equal(refused.status, 410);
      assert.equal((await get(h, "/", { cookie })).status, 410);
      const again = await eng.previews.get(p.preview.id);
      assert.ok(again.revokedAt);
    } finally {
      agent.destroy();
    }
    const revoked = (await server.cp.store.listAudit({ limit: 5000 })).filter((r) => r.action === "preview.revoke" && r.target === p.preview.id);
    assert.equal(revoked.length, 1);
  });

  void it("streams a large download, server-sent events without buffering, and WebSockets both ways", async () => {
    const p = await eng.previews.create(a, 3000);
    const cookie = await login(p.url);
    const h = hostOf(p.url);
    const big = await new Promise<number>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/big?mb=32", headers: { host: h, cookie }, agent: false }, (res) => {
        let n = 0;
        res.on("data", (c: Buffer) => (n += c.length));
        res.on("end", () => resolve(n));
      });
      req.on("error", reject);
      req.end();
    });
    assert.equal(big, 32 * 1048576);
    // SSE: the first event must arrive while the app still holds the stream open.
    const events: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/sse", headers: { host: h, cookie, accept: "text/event-stream" }, agent: false }, (res) => {
        assert.equal(res.headers["content-type"], "text/event-stream");
        res.setEncoding("utf8");
        res.on("data", (c: string) => events.push(c));
        res.on("end", () => resolve());
      });
      req.on("error", reject);
      req.end();
    });
    await until(async () => events.join("").includes("data: first"), 10_000, "the first event, before the stream ends");
    assert.ok(!events.join("").includes("second"));
    assert.equal((await get(h, "/sse-release", { cookie })).body, "released");
    await done;
    assert.match(events.join(""), /data: first\n\ndata: second\n\n/);
    // WebSocket through the preview, with the cookie; refused without it.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: h, cookie } });
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.on("open", () => ws.send("ping"));
      ws.on("message", (d: Buffer) => resolve(d.toString()));
      ws.on("error", reject);
    });
    assert.equal(echoed, "echo:ping");
    ws.close();
    const refused = await new Promise<number>((resolve, reject) => {
      const w = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: h } });
      w.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      w.on("open", () => reject(new Error("opened without a cookie")));
      w.on("error", () => undefined);
    });
    assert.equal(refused, 401);
  });

  void it("an expired preview is refused", async () => {
    const p = await eng.previews.create(a, 3000, { ttl: "1s" });
    const cookie = await login(p.url);
    await until(async () => (await get(hostOf(p.url), "/", { cookie })).status === 410, 10_000, "the preview to expire");
    assert.equal((await eng.previews.list({ session: a })).some((x) => x.id === p.preview.id), false, "listings show live previews by default");
  });

  void it("the one-time code from a UI login sets the cookie once", async () => {
    const p = await eng.previews.create(a, 3000);
    const h = hostOf(p.url);
    const code = server.cp.previews.mintCode(p.preview.id);
    const r = await get(h, `/__paddock/auth?code=${code}&next=${encodeURIComponent("/headers?z=1")}`);
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, "/headers?z=1");
    assert.equal((await get(h, "/", { cookie: cookieOf(r) })).status, 200);
    assert.equal((await get(h, `/__paddock/auth?code=${code}&next=/`)).status, 403, "a code works once");
    const foreign = server.cp.previews.mintCode("pv-0000000000");
    assert.equal((await get(h, `/__paddock/auth?code=${foreign}&next=/`)).status, 403, "a code minted for another preview does not work here");
    const offsite = server.cp.previews.mintCode(p.preview.id);
    assert.equal((await get(h, `/__paddock/auth?code=${offsite}&next=${encodeURIComponent("//evil.example/")}`)).headers.location, "/");
    // Not logged in to the UI: one same-site reload (the Strict UI cookie rides only on that), then refused.
    const bounce = await fetch(`${server.url}/ui/preview-auth?preview=${p.preview.id}&next=/`, { redirect: "manual" });
    assert.equal(bounce.status, 200);
    assert.match(await bounce.text(), /http-equiv="refresh" content="0;url=\/ui\/preview-auth\?preview=pv-[0-9a-f]{10}&#38;next=%2F&#38;same-site=1"/);
    assert.equal((await fetch(`${server.url}/ui/preview-auth?preview=${p.preview.id}&next=/&same-site=1`, { redirect: "manual" })).status, 401);
  });

  void it("a UI user with read gets in through /ui/preview-auth; one without read does not", async () => {
    const p = await eng.previews.create(a, 3000);
    const uiLogin = async (token: string) => {
      const r = await fetch(`${server.url}/ui/login`, { method: "POST", headers: { "content-type": "application/json", origin: server.url }, body: JSON.stringify({ token }) });
      assert.equal(r.status, 200, await r.clone().text());
      return String(r.headers.get("set-cookie")).split(";")[0] ?? "";
    };
    const supToken = (await admin.principals.create({ name: "reader", role: "support" })).token;
    const reader = await uiLogin(supToken);
    const auth = await fetch(`${server.url}/ui/preview-auth?preview=${p.preview.id}&next=${encodeURIComponent("/headers")}`, { redirect: "manual", headers: { cookie: reader } });
    assert.equal(auth.status, 302);
    const to = new URL(String(auth.headers.get("location")));
    assert.equal(to.host, hostOf(p.url));
    assert.equal(to.pathname, "/__paddock/auth");
    assert.equal(auth.headers.get("referrer-policy"), "no-referrer");
    const set = await get(to.host, to.pathname + to.search);
    assert.equal(set.status, 302);
    assert.equal(set.headers.location, "/headers");
    const seen = JSON.parse((await get(to.host, "/headers", { cookie: cookieOf(set) })).body) as { headers: Record<string, string> };
    assert.equal(seen.headers.cookie, undefined, "neither cookie reaches the app");
    const outsider = await uiLogin((await admin.principals.create({ name: "outsider", role: "marketing" })).token);
    const refused = await fetch(`${server.url}/ui/preview-auth?preview=${p.preview.id}&next=/`, { redirect: "manual", headers: { cookie: outsider } });
    assert.equal(refused.status, 403);
    const audited = (await server.cp.store.listAudit({ limit: 5000 })).filter((r) => r.action === "preview.access" && r.target === p.preview.id && r.detail.via === "ui");
    assert.deepEqual(audited.map((r) => `${r.actor} ${r.decision}`), ["reader allowed", "outsider denied"]);
  });

  void it("wakes a stopped session from its snapshot on a visit, with the preview's command", async () => {
    const c = await newSession();
    await startApp(c, 3000);
    await appUp(c, 3000);
    const p = await eng.previews.create(c, 3000, { command: "node /workspace/app.js 3000" });
    const cookie = await login(p.url);
    const h = hostOf(p.url);
    assert.equal((await get(h, "/", { cookie })).body, `hello from ${c} on 3000\n`);
    await eng.sessions.stop(c);
    const stopped = await eng.previews.get(p.preview.id);
    assert.match(stopped.snapshotId ?? "", /^snap-/, "the session was snapshotted before it stopped");
    assert.ok((await admin.snapshots.get(stopped.snapshotId ?? "")).users.includes(`preview ${p.preview.id}`), "the preview keeps its snapshot");
    // A browser gets the starting page at once; an API client is held until the app answers.
    const browser = await get(h, "/", { cookie, accept: "text/html" });
    assert.equal(browser.status, 503);
    assert.equal(browser.headers["retry-after"], "1");
    assert.match(browser.body, /<meta http-equiv="refresh" content="1">/);
    const woken = await get(h, "/", { cookie });
    assert.equal(woken.status, 200);
    const now = await eng.previews.get(p.preview.id);
    assert.notEqual(now.sessionId, c);
    assert.equal(woken.body, `hello from ${now.sessionId} on 3000\n`);
    const session = await eng.sessions.get(now.sessionId);
    assert.equal(session.state, "running");
    assert.equal(session.snapshot, stopped.snapshotId);
    assert.equal(session.startedBy, "eng");
    const wakes = (await server.cp.store.listAudit({ limit: 5000 })).filter((r) => r.action === "preview.wake" && r.target === p.preview.id);
    assert.equal(wakes.length, 1, "one wake, audited once (single flight)");
    assert.equal(wakes[0]?.sessionId, now.sessionId);
    const created = (await server.cp.store.listAudit({ limit: 5000 })).filter((r) => r.action === "preview.create" && r.target === p.preview.id);
    assert.equal(created.length, 1);
  });

  void it("only a caller with write on the session's environment may make a preview; readers may list", async () => {
    const sup = new PaddockClient({ url: server.url, token: (await admin.principals.create({ name: "sup", role: "support" })).token });
    await assert.rejects(sup.previews.create(a, 3000), /write on environment "web" is needed/);
    assert.ok((await sup.previews.list()).length > 0);
  });
});
