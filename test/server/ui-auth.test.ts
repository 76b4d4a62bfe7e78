/**
 * The web UI's login and its cookie (src/server/ui.ts, src/server/auth.ts), without a browser:
 * what the cookie is, that the API takes it in place of a bearer token only under the CSRF rules
 * (X-Paddock-CSRF on anything but GET/HEAD, the server's own Origin, the own Origin on the exec
 * WebSocket), that disabling or revoking ends it at once, and that preview hosts get neither the
 * UI nor the cookie. Also how the built app is served (types, caching, CSP, no traversal).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { PaddockClient } from "../../src/client/index.ts";
import { parseToken } from "../../src/guard/index.ts";
import { startServer, type RunningServer } from "../../src/server/index.ts";
import { mintUiSession, principalFromUiCookie, UI_CSP } from "../../src/server/ui.ts";
import { rawRequest } from "../helpers/raw-http.ts";
import { adminToken, AGENT_PACKAGES_DIR, releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";

const APP_JS = 'console.log("paddock ui");\n';
const JS_HASH = createHash("sha256").update(APP_JS).digest("base64url");

void describe("web UI: login, cookie, CSRF and origin rules", () => {
  let server: RunningServer;
  let url: string;
  let host: string;
  let admin: PaddockClient;
  let adminTok: string;
  let aliceTok: string;
  let cleanup: () => Promise<void>;

  before(async () => {
    const dir = await tempDir();
    const web = join(dir.path, "web");
    await mkdir(web);
    await writeFile(join(web, "index.html"), '<!doctype html><title>Paddock</title><script type="module" src="/app.js"></script><div id="app"></div>');
    await writeFile(join(web, "app.js"), APP_JS);
    await writeFile(join(web, ".stamp"), "");
    server = await startServer({ home: join(dir.path, "home"), port: 0, agentPackages: AGENT_PACKAGES_DIR, webRoot: web });
    url = server.url;
    host = new URL(url).host;
    adminTok = await adminToken(join(dir.path, "home"));
    admin = new PaddockClient({ url, token: adminTok });
    aliceTok = (await admin.principals.create({ name: "alice", role: "engineering" })).token;
    cleanup = async () => {
      await server.close({ unmountLayers: true, removeHostNetwork: true });
      await releaseHome(join(dir.path, "home"));
      await dir.remove();
    };
  });
  after(async () => cleanup());

  /** POST /ui/login with a JSON token; the cookie's `name=value` (or null) and the answer. */
  const login = async (token: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}/ui/login`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ token }) });
    const setCookie = res.headers.get("set-cookie");
    return { res, setCookie, cookie: setCookie ? (setCookie.split(";")[0] ?? null) : null, body: (await res.json().catch(() => null)) as Record<string, unknown> | null };
  };
  const call = (method: string, path: string, cookie: string, headers: Record<string, string> = {}, body?: unknown) =>
    fetch(url + path, { method, headers: { cookie, ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const whoami = async (cookie: string, headers: Record<string, string> = {}) => {
    const res = await call("GET", "/v1/whoami", cookie, headers);
    return { status: res.status, body: (await res.json()) as { principal?: { name: string }; error?: { code: string; message: string } } };
  };
  const lastAudit = async (action: string) => (await admin.audit.list({ limit: 5000 })).filter((r) => r.action === action).at(-1);

  void it("a good token logs in: HttpOnly, SameSite=Strict, host-only cookie for 12 h, and the login is audited", async () => {
    const { res, setCookie, body } = await login(aliceTok);
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.ok(setCookie);
    assert.match(setCookie, /^paddock_session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; /);
    assert.match(setCookie, /; HttpOnly/);
    assert.match(setCookie, /; SameSite=Strict/);
    assert.match(setCookie, /; Path=\//);
    assert.match(setCookie, /; Max-Age=43200/);
    assert.doesNotMatch(setCookie, /Domain=/i, "host-only: no Domain attribute");
    assert.ok(!setCookie.includes(aliceTok) && !setCookie.includes(parseToken(aliceTok)?.secret ?? "?"), "the token is not in the cookie");
    assert.equal((body?.principal as { name: string }).name, "alice");
    const rec = await lastAudit("ui.login");
    assert.equal(rec?.actor, "alice");
    assert.equal(rec?.decision, "allowed");
  });

  void it("a bad, a revoked or an agent's token does not log in, and each attempt is audited", async () => {
    const bad = await login(`pdk_${"0".repeat(16)}_${"A".repeat(43)}`);
    assert.equal(bad.res.status, 401);
    assert.equal(bad.setCookie, null);
    assert.match(String((bad.body?.error as { message: string }).message), /not valid/);
    assert.equal((await lastAudit("ui.login"))?.decision, "denied");
    assert.equal((await login("")).res.status, 401);

    const extra = (await admin.principals.issueToken("alice", "to revoke")).token;
    assert.equal((await login(extra)).res.status, 200);
    await admin.principals.revokeToken("alice", parseToken(extra)?.id ?? "");
    const revoked = await login(extra);
    assert.equal(revoked.res.status, 401);
    assert.equal(revoked.setCookie, null);

    const bot = (await admin.principals.create({ name: "ui-bot", role: "engineering", kind: "agent" })).token;
    const agent = await login(bot);
    assert.equal(agent.res.status, 403);
    assert.equal(agent.setCookie, null);
  });

  void it("a plain HTML form logs in too (303 to /ui/), and login from another site is refused", async () => {
    const form = await fetch(`${url}/ui/login`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", origin: url }, body: new URLSearchParams({ token: aliceTok }).toString() });
    assert.equal(form.status, 303);
    assert.equal(form.headers.get("location"), "/ui/");
    assert.match(form.headers.get("set-cookie") ?? "", /^paddock_session=/);
    const foreign = await login(aliceTok, { origin: "https://evil.example" });
    assert.equal(foreign.res.status, 403);
    assert.equal(foreign.setCookie, null);
    assert.equal((await login(aliceTok, { "sec-fetch-site": "cross-site" })).res.status, 403);
  });

  void it("the cookie authenticates GET requests to the API; without it, or tampered with, it does not", async () => {
    const { cookie } = await login(aliceTok);
    assert.ok(cookie);
    const ok = await whoami(cookie);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.principal?.name, "alice");
    assert.equal((await whoami(cookie, { origin: url })).status, 200, "the own Origin is fine");
    assert.equal((await whoami("paddock_session=nope")).status, 401);
    const [payload, sig] = cookie.slice("paddock_session=".length).split(".");
    const forged = Buffer.from(JSON.stringify({ p: "usr_0000000000000000", t: "x", e: Date.now() + 1000 })).toString("base64url");
    assert.equal((await whoami(`paddock_session=${forged}.${sig}`)).status, 401, "another payload under alice's signature");
    assert.equal((await whoami(`paddock_session=${payload}.${(sig ?? "").slice(0, -2)}AA`)).status, 401, "a changed signature");
    assert.equal((await whoami(`${cookie}; ${cookie}`)).status, 401, "two session cookies (one planted) are refused");
  });

  void it("an expired cookie is refused (12 h), even with a valid signature", async () => {
    const p = await admin.principals.list().then((all) => all.find((x) => x.name === "alice"));
    const tokenId = parseToken(aliceTok)?.id ?? "";
    const old = mintUiSession(server.cp, p?.id ?? "", tokenId, Date.now() - 12 * 3600 * 1000 - 1000);
    assert.equal((await whoami(`paddock_session=${old.value}`)).status, 401);
    const fresh = mintUiSession(server.cp, p?.id ?? "", tokenId);
    assert.equal((await whoami(`paddock_session=${fresh.value}`)).status, 200);
  });

  void it("a cookie-authenticated POST needs X-Paddock-CSRF: 1, and never from a foreign Origin", async () => {
    const { cookie } = await login(aliceTok);
    assert.ok(cookie);
    const body = { fileName: "runtime.yml", source: "name: web\n" };
    const plain = await call("POST", "/v1/environments/validate", cookie, {}, body);
    assert.equal(plain.status, 403);
    assert.match(((await plain.json()) as { error: { message: string } }).error.message, /X-Paddock-CSRF/);
    const rec = await lastAudit("api.validateEnvironment");
    assert.equal(rec?.decision, "denied");
    assert.equal(rec?.rule, "ui-cookie");
    assert.equal((await call("POST", "/v1/environments/validate", cookie, { "x-paddock-csrf": "1" }, body)).status, 200);
    assert.equal((await call("POST", "/v1/environments/validate", cookie, { "x-paddock-csrf": "1", origin: url }, body)).status, 200);
    assert.equal((await call("POST", "/v1/environments/validate", cookie, { "x-paddock-csrf": "1", origin: "https://evil.example" }, body)).status, 403);
    assert.equal((await call("POST", "/v1/environments/validate", cookie, { "x-paddock-csrf": "1", origin: "null" }, body)).status, 403);
    assert.equal((await call("POST", "/v1/environments/validate", cookie, { "x-paddock-csrf": "1", "sec-fetch-site": "cross-site" }, body)).status, 403);
    assert.equal((await whoami(cookie, { origin: "https://evil.example" })).status, 403, "a foreign Origin is refused on GET too");
    // A bearer token is not subject to any of this (the CLI, the SDK).
    const bearer = await fetch(`${url}/v1/environments/validate`, { method: "POST", headers: { authorization: `Bearer ${aliceTok}`, "content-type": "application/json", origin: "https://evil.example" }, body: JSON.stringify(body) });
    assert.equal(bearer.status, 200);
  });

  void it("disabling the principal or revoking the token ends its UI sessions at once", async () => {
    const bobTok = (await admin.principals.create({ name: "bob", role: "support" })).token;
    const { cookie } = await login(bobTok);
    assert.ok(cookie);
    assert.equal((await whoami(cookie)).status, 200);
    await admin.principals.disable("bob");
    assert.equal((await whoami(cookie)).status, 401);

    const carolTok = (await admin.principals.create({ name: "carol", role: "support" })).token;
    const carol = await login(carolTok);
    assert.ok(carol.cookie);
    assert.equal((await whoami(carol.cookie)).status, 200);
    await admin.principals.revokeToken("carol", parseToken(carolTok)?.id ?? "");
    assert.equal((await whoami(carol.cookie)).status, 401);
  });

  void it("logout clears the cookie (needs no CSRF header, but not from another site) and is audited", async () => {
    const { cookie } = await login(aliceTok);
    assert.ok(cookie);
    const foreign = await call("POST", "/ui/logout", cookie, { origin: "https://evil.example" });
    assert.equal(foreign.status, 403);
    const res = await call("POST", "/ui/logout", cookie, { origin: url });
    assert.equal(res.status, 204);
    assert.match(res.headers.get("set-cookie") ?? "", /^paddock_session=; HttpOnly; SameSite=Strict; Path=\/; Max-Age=0/);
    assert.equal((await lastAudit("ui.logout"))?.actor, "alice");
  });

  void it("the exec WebSocket takes the cookie only with the server's own Origin", async () => {
    const { cookie } = await login(aliceTok);
    assert.ok(cookie);
    const upgrade = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`${url.replace("http", "ws")}/v1/sessions/s-doesnotexist/exec/stream`, { headers });
        ws.on("unexpected-response", (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.on("open", () => {
          ws.terminate();
          resolve(101);
        });
        ws.on("error", (err) => (err.message.includes("Unexpected server response") ? undefined : reject(err)));
      });
    assert.equal(await upgrade({ cookie }), 403, "no Origin");
    assert.equal(await upgrade({ cookie, origin: "https://evil.example" }), 403, "a foreign Origin");
    // The own Origin: authenticated as alice, so the next thing checked is the session (none).
    assert.equal(await upgrade({ cookie, origin: url }), 404);
    assert.equal(await upgrade({ cookie: "paddock_session=nope", origin: url }), 401);
  });

  void it("serves the app: index.html for / and /ui/*, assets with their type and caching, CSP, nothing else", async () => {
    for (const path of ["/", "/ui", "/ui/", "/ui/login", "/ui/runs/run-123"]) {
      const res = await fetch(url + path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
      assert.equal(res.headers.get("content-security-policy"), UI_CSP);
      assert.equal(res.headers.get("cache-control"), "no-cache");
      assert.equal(res.headers.get("x-frame-options"), "DENY");
      assert.match(await res.text(), /<div id="app">/);
    }
    const js = await fetch(`${url}/app.js?v=${JS_HASH.slice(0, 12)}`);
    assert.equal(js.status, 200);
    assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal(js.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.equal(await js.text(), APP_JS);
    const stale = await fetch(`${url}/app.js?v=AAAAAAAAAAAA`);
    assert.equal(stale.headers.get("cache-control"), "no-cache", "a version that is not this file's is not cached for good");
    const etag = stale.headers.get("etag") ?? "";
    assert.equal((await fetch(`${url}/app.js`, { headers: { "if-none-match": etag } })).status, 304);
    for (const path of ["/.stamp", "/nothing.js", "/index.html", "/%2e%2e%2fpackage.json", "/..%2f..%2fetc%2fpasswd", "/v1"]) {
      const res = await fetch(url + path);
      assert.equal(res.status, 404, path);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "not_found");
    }
  });

  void it("preview hosts get neither the UI nor the cookie", async () => {
    const { cookie } = await login(aliceTok);
    assert.ok(cookie);
    const previewHost = `3000-pv-0123456789.preview.localhost:${new URL(url).port}`;
    const page = await rawRequest(url, `GET / HTTP/1.1\r\nHost: ${previewHost}\r\nConnection: close\r\n\r\n`);
    assert.notEqual(page.status, 200);
    assert.doesNotMatch(page.body, /<div id="app">/);
    const api = await rawRequest(url, `GET /v1/whoami HTTP/1.1\r\nHost: ${previewHost}\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`);
    assert.notEqual(api.status, 200);
    assert.doesNotMatch(api.body, /"alice"/);
    const body = JSON.stringify({ token: aliceTok });
    const loginThere = await rawRequest(url, `POST /ui/login HTTP/1.1\r\nHost: ${previewHost}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    assert.notEqual(loginThere.status, 200);
    assert.doesNotMatch(loginThere.text, /set-cookie: paddock_session/i);
    // The function the preview gateway uses refuses preview hosts itself, and accepts the UI's host.
    assert.equal(await principalFromUiCookie(server.cp, { host: previewHost, cookie }), null);
    assert.equal(await principalFromUiCookie(server.cp, { host: "preview.localhost", cookie }), null);
    assert.equal((await principalFromUiCookie(server.cp, { host, cookie }))?.name, "alice");
  });
});
