// End to end against real local upstreams: happy paths through every listener, swapping rules,
// redaction and records. Attack cases of attacks/egress.md are in attacks.test.ts.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { SECRETS, plainHttp, spec, startHarness, viaConnect, viaTransparent, type Harness } from "./helpers.ts";

const run = promisify(execFile);

void describe("gateway end to end, against local fake upstreams (test CA on 127.0.0.1)", () => {
  let h: Harness;
  let ph: Record<string, string>;
  let ca: string;
  before(async () => {
    h = await startHarness();
    const reg = await h.gw.register(spec("s1"));
    ph = reg.placeholders;
    ca = reg.caCertPem;
  });
  after(async () => h.close());
  const last = () => h.up.seen.at(-1)!;

  void it("happy path via CONNECT: upstream sees the real secret, the client sees the placeholder", async () => {
    const r = await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { path: "/echo-header?limit=10", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 200);
    assert.equal(last().headers.authorization, `Bearer ${SECRETS.STRIPE_API_KEY}`);
    assert.equal(last().servername, "api.stripe.com");
    assert.equal(r.headers["x-echo-back"], ph.STRIPE_API_KEY);
    assert.equal(last().headers["accept-encoding"], "identity");
    const rec = h.records.at(-1)!;
    assert.deepEqual(
      { s: rec.sessionId, m: rec.method, h: rec.host, p: rec.port, path: rec.path, st: rec.status, d: rec.decision, sw: rec.swapped, rule: rec.rule },
      { s: "s1", m: "GET", h: "api.stripe.com", p: 443, path: "/echo-header?limit=", st: 200, d: "allowed", sw: ["STRIPE_API_KEY"], rule: "guardrails.network.allow[0] (runtime.yml:27)" },
    );
    assert.ok(rec.bytesIn > 0 && rec.durationMs >= 0);
  });

  void it("happy path with curl through the proxy", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gw-"));
    await writeFile(join(dir, "ca.pem"), ca);
    const { stdout } = await run("curl", ["-sS", "--proxy", `http://127.0.0.1:${h.gw.endpoints.proxyPort}`, "--cacert", join(dir, "ca.pem"), "-H", `Authorization: Bearer ${ph.STRIPE_API_KEY}`, "https://api.stripe.com/echo-body"]);
    assert.match(stdout, new RegExp(`raw=${ph.STRIPE_API_KEY} `));
    assert.ok(!stdout.includes(SECRETS.STRIPE_API_KEY!));
    assert.equal(last().headers.authorization, `Bearer ${SECRETS.STRIPE_API_KEY}`);
  });

  void it("transparent TLS port judges on SNI and swaps", async () => {
    const r = await viaTransparent(h.gw.endpoints.httpsPort, ca, "api.github.com", { path: "/echo-header", headers: { authorization: `Bearer ${ph.GITHUB_TOKEN}` } });
    assert.equal(r.status, 200);
    assert.equal(last().headers.authorization, `Bearer ${SECRETS.GITHUB_TOKEN}`);
    assert.equal(r.headers["x-echo-back"], ph.GITHUB_TOKEN);
  });

  void it("transparent HTTP port judges on Host; absolute-form through the proxy works", async () => {
    let r = await plainHttp(h.gw.endpoints.httpPort, "/plain", { host: "api.stripe.com" });
    assert.equal(r.status, 200);
    assert.equal(r.body, "hello from api.stripe.com");
    assert.equal(last().tls, false);
    r = await plainHttp(h.gw.endpoints.proxyPort, "http://allowed.example/x", { host: "allowed.example" });
    assert.equal(r.status, 200);
    assert.equal(last().url, "/x");
  });

  void it("no swap for an allowed host the secret is not bound to (attack 1)", async () => {
    const r = await viaConnect(h.gw.endpoints.proxyPort, ca, "allowed.example:443", { path: "/echo-header", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 200);
    assert.equal(last().headers.authorization, `Bearer ${ph.STRIPE_API_KEY}`);
    assert.deepEqual(h.records.at(-1)!.swapped, []);
  });

  void it("Basic auth is swapped for bound hosts only (attack 14)", async () => {
    const basic = `Basic ${Buffer.from(`user:${ph.GITHUB_TOKEN}`).toString("base64")}`;
    await viaConnect(h.gw.endpoints.proxyPort, ca, "github.com:443", { headers: { authorization: basic } });
    assert.equal(last().headers.authorization, `Basic ${Buffer.from(`user:${SECRETS.GITHUB_TOKEN}`).toString("base64")}`);
    await viaConnect(h.gw.endpoints.proxyPort, ca, "allowed.example:443", { headers: { authorization: basic } });
    assert.equal(last().headers.authorization, basic);
  });

  void it("a DSN-shaped placeholder keeps its host and path; its key is swapped in X-Sentry-Auth", async () => {
    assert.match(ph.SENTRY_DSN!, /^https:\/\/paddock-ph-[0-9a-f]{32}@o1\.ingest\.sentry\.io\/42$/);
    // A database URL names the gateway itself (docs/database.md): the database gateway uses the real one.
    assert.match(ph.DATABASE_URL!, /^postgres:\/\/paddock-ph-[0-9a-f]{32}:paddock-ph-[0-9a-f]{32}@127\.0\.0\.1:5432\/app$/);
    const key = new URL(ph.SENTRY_DSN!).username;
    const r = await viaConnect(h.gw.endpoints.proxyPort, ca, "o1.ingest.sentry.io:443", { method: "POST", path: "/api/42/envelope/", headers: { "x-sentry-auth": `Sentry sentry_version=7, sentry_key=${key}` }, body: "{}" });
    assert.equal(r.status, 200);
    assert.equal(last().headers["x-sentry-auth"], "Sentry sentry_version=7, sentry_key=f00dREALsentryKEY0003");
  });

  void it("query and body are swapped only when the binding allows them (attack 12)", async () => {
    const pq = ph.QUERY_KEY!;
    const ps = ph.STRIPE_API_KEY!;
    await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { method: "POST", path: `/q?k=${pq}&s=${ps}`, body: `k=${pq}&s=${ps}` });
    assert.equal(last().url, `/q?k=${SECRETS.QUERY_KEY}&s=${ps}`);
    assert.equal(last().body, `k=${SECRETS.QUERY_KEY}&s=${ps}`);
    assert.equal(last().headers["content-length"], String(Buffer.byteLength(last().body)));
    // Header placement of a query/body-only secret is not swapped.
    await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { headers: { "x-key": pq } });
    assert.equal(last().headers["x-key"], pq);
    assert.deepEqual(h.records.at(-1)!.swapped, []);
  });

  void it("echoed secrets are redacted: header, raw, base64, URL-encoded (attack 13)", async () => {
    const r = await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { path: "/echo-body", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}`, "x-echo": `${ph.STRIPE_API_KEY}/+ =` } });
    const s = SECRETS.STRIPE_API_KEY!;
    assert.ok(!r.body.includes(s), r.body);
    assert.ok(!r.body.includes(Buffer.from(s).toString("base64").slice(4, 20)));
    assert.ok(r.body.includes(`all=Bearer ${ph.STRIPE_API_KEY}`));
    assert.ok(r.body.includes(`raw=${ph.STRIPE_API_KEY}/+ =`));
    assert.ok(r.body.includes(`url=${encodeURIComponent(`${ph.STRIPE_API_KEY}/+ =`)}`));
    assert.ok(r.body.includes(`b64=${Buffer.from(`${ph.STRIPE_API_KEY}/+ =`).toString("base64").slice(0, 40)}`));
  });

  void it("gzip responses are decompressed and redacted; chunk-split secrets are redacted", async () => {
    let r = await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { path: "/echo-gzip", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}`, "accept-encoding": "gzip" } });
    assert.equal(r.body, `gz=${ph.STRIPE_API_KEY}`);
    assert.equal(r.headers["content-encoding"], undefined);
    r = await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { path: "/echo-chunks", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.body, `before ${ph.STRIPE_API_KEY} after`);
  });

  void it("redirects are returned unfollowed (attack 11)", async () => {
    const n = h.up.seen.length;
    const r = await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { path: "/redirect", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, "https://evil.example/steal");
    assert.equal(h.up.seen.length, n + 1);
  });

  void it("several requests on one kept-alive tunnel are each judged", async () => {
    const before = h.records.length;
    await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { path: "/a" });
    await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { path: "/b" });
    assert.equal(h.records.length, before + 2);
  });
});
