// Secrets only over TLS (issue 9): a placeholder is swapped only into requests that leave over TLS
// to a verified upstream, unless its binding says `cleartext: true`; over plain HTTP it is refused.
// And every record's `swapped` is exactly what the upstream received. Port 443 of the harness goes
// through a first-byte sniffer, so plain HTTP sent to :443 is seen by the HTTP upstream.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { createGateway, type EgressRecord } from "../../src/gateway/index.ts";
import { SECRETS, plainHttp, secretSource, spec, startHarness, viaConnect, viaTransparent, type Harness, type Reply } from "./helpers.ts";

const BINDINGS = spec("x").secrets;

void describe("secrets only over TLS (local fake upstreams, test CA on 127.0.0.1)", () => {
  let h: Harness;
  let ph: Record<string, string>;
  let ca: string;
  let phOpen: Record<string, string>;
  let caOpen: string;
  before(async () => {
    h = await startHarness(undefined, { sniff443: true });
    const reg = await h.gw.register(spec("tls-only"));
    ph = reg.placeholders;
    ca = reg.caCertPem;
    // The same bindings, but Stripe's allows cleartext.
    const open = BINDINGS.map((b) => (b.name === "STRIPE_API_KEY" ? { ...b, cleartext: true } : b));
    const regOpen = await h.gw.register(spec("cleartext", { sourceIp: "127.0.0.2", secrets: open }));
    phOpen = regOpen.placeholders;
    caOpen = regOpen.caCertPem;
  });
  after(async () => h.close());

  void it("plain http:// with a bound placeholder is refused (403, names the rule and the fix), nothing sent", async () => {
    const n = h.up.seen.length;
    const auth = { authorization: `Bearer ${ph.STRIPE_API_KEY}` };
    for (const r of [
      await plainHttp(h.gw.endpoints.proxyPort, "http://api.stripe.com/v1/charges", { host: "api.stripe.com", headers: auth }),
      await plainHttp(h.gw.endpoints.httpPort, "/v1/charges", { host: "api.stripe.com", headers: auth }),
      await plainHttp(h.gw.endpoints.proxyPort, "http://api.stripe.com:443/v1/charges", { host: "api.stripe.com:443", headers: auth }),
    ]) {
      assert.equal(r.status, 403);
      assert.equal(r.headers["x-paddock-rule"], "gateway.cleartext-secret");
      assert.match(r.body, /STRIPE_API_KEY is sent only over TLS: use https:\/\/api\.stripe\.com\/ .*cleartext: true/);
      const rec = h.records.at(-1)!;
      assert.deepEqual([rec.decision, rec.rule, rec.swapped, rec.status], ["denied", "gateway.cleartext-secret", [], 403]);
    }
    assert.equal(h.up.seen.length, n, "nothing reached an upstream");
  });

  void it("the same request over TLS is swapped; plain http:// without a placeholder, or to an unbound host, goes out", async () => {
    const r = await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 200);
    assert.equal(h.up.seen.at(-1)!.headers.authorization, `Bearer ${SECRETS.STRIPE_API_KEY}`);
    assert.equal((await plainHttp(h.gw.endpoints.httpPort, "/nothing-secret", { host: "api.stripe.com" })).status, 200);
    // Attack 1 still holds over plain HTTP: unbound host → the placeholder arrives unchanged.
    const u = await plainHttp(h.gw.endpoints.proxyPort, "http://allowed.example/", { host: "allowed.example", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(u.status, 200);
    assert.equal(h.up.seen.at(-1)!.headers.authorization, `Bearer ${ph.STRIPE_API_KEY}`);
  });

  void it("a binding with cleartext: true is swapped over plain http:// (proxy and transparent port 80)", async () => {
    const auth = { authorization: `Bearer ${phOpen.STRIPE_API_KEY}` };
    let r = await plainHttp(h.gw.endpoints.proxyPort, "http://api.stripe.com/open", { host: "api.stripe.com", headers: auth }, "127.0.0.2");
    assert.equal(r.status, 200);
    assert.equal(h.up.seen.at(-1)!.headers.authorization, `Bearer ${SECRETS.STRIPE_API_KEY}`);
    assert.equal(h.up.seen.at(-1)!.tls, false);
    assert.deepEqual(h.records.at(-1)!.swapped, ["STRIPE_API_KEY"]);
    r = await plainHttp(h.gw.endpoints.httpPort, "/open", { host: "api.stripe.com", headers: auth }, "127.0.0.2");
    assert.equal(r.status, 200);
    // Only that binding: GitHub's token over plain HTTP is still refused for this session.
    r = await plainHttp(h.gw.endpoints.httpPort, "/", { host: "api.github.com", headers: { authorization: `Bearer ${phOpen.GITHUB_TOKEN}` } }, "127.0.0.2");
    assert.equal(r.status, 403);
  });

  void it("every record's swapped list is exactly the secrets the upstream received (incl. http://host:443)", async () => {
    const P = h.gw.endpoints.proxyPort;
    const T = h.gw.endpoints.httpsPort;
    const H = h.gw.endpoints.httpPort;
    const auth = (p: Record<string, string>): Record<string, string> => ({ authorization: `Bearer ${p.STRIPE_API_KEY}`, "x-gh": `token ${p.GITHUB_TOKEN}` });
    const runs: [string, (path: string) => Promise<Reply>][] = [
      ["connect", (path) => viaConnect(P, ca, "api.stripe.com:443", { path: `${path}?k=${ph.QUERY_KEY}`, method: "POST", headers: auth(ph), body: `b=${ph.QUERY_KEY}` })],
      ["transparent tls", (path) => viaTransparent(T, ca, "api.stripe.com", { path, headers: auth(ph) })],
      ["transparent tls, other host", (path) => viaTransparent(T, ca, "api.github.com", { path, headers: auth(ph) })],
      ["plain, no placeholder", (path) => plainHttp(H, path, { host: "api.stripe.com" })],
      ["cleartext proxy", (path) => plainHttp(P, `http://api.stripe.com${path}`, { host: "api.stripe.com", headers: { authorization: `Bearer ${phOpen.STRIPE_API_KEY}` } }, "127.0.0.2")],
      ["cleartext :443", (path) => plainHttp(P, `http://api.stripe.com:443${path}`, { host: "api.stripe.com:443", headers: { authorization: `Bearer ${phOpen.STRIPE_API_KEY}` } }, "127.0.0.2")],
      ["cleartext transparent", (path) => plainHttp(H, path, { host: "api.stripe.com", headers: { authorization: `Bearer ${phOpen.STRIPE_API_KEY}` } }, "127.0.0.2")],
      ["tls, cleartext session", (path) => viaConnect(P, caOpen, "api.github.com:443", { path, headers: auth(phOpen) }, "api.github.com", "127.0.0.2")],
    ];
    for (const [i, [label, run]] of runs.entries()) {
      const path = `/matrix/${i}`;
      const r = await run(path);
      assert.equal(r.status, 200, label);
      const rec = h.records.filter((x) => x.path.startsWith(path)).at(-1);
      const seen = h.up.seen.filter((s) => s.url.startsWith(path));
      assert.ok(rec && seen.length === 1, `${label}: one record, one upstream request`);
      const received = JSON.stringify([seen[0]!.rawHeaders, seen[0]!.url, seen[0]!.body]);
      const names = Object.entries(SECRETS)
        .filter(([, v]) => received.includes(v) || received.includes(encodeURIComponent(v)))
        .map(([k]) => k)
        .sort();
      assert.deepEqual(rec.swapped, names, label);
    }
    // The case of the issue: plain HTTP to :443 really sent the secret, and the record says so.
    const plain443 = h.up.seen.find((s) => s.url === "/matrix/5")!;
    assert.equal(plain443.tls, false);
    assert.equal(plain443.headers.authorization, `Bearer ${SECRETS.STRIPE_API_KEY}`);
  });

  void it("a failed exchange still records what left: swapped when the request reached the upstream", async () => {
    const r = await viaConnect(h.gw.endpoints.proxyPort, ca, "api.stripe.com:443", { path: "/reset", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 502);
    const rec = h.records.at(-1)!;
    assert.deepEqual(rec.swapped, ["STRIPE_API_KEY"]);
    assert.match(rec.reason ?? "", /reached the upstream/);
    assert.equal(h.up.seen.at(-1)!.headers.authorization, `Bearer ${SECRETS.STRIPE_API_KEY}`);
  });
});

void describe("the record of http://api.stripe.com:443/ (plain HTTP to the TLS port)", () => {
  void it("names the secret that went out in clear, although the upstream (a TLS server) reset the connection", { timeout: 5_000 }, async () => {
    // Stands in for a TLS server receiving plain HTTP: it keeps what arrived, then resets.
    const received: string[] = [];
    const tlsPort = net.createServer((s) => {
      let got = "";
      s.on("data", (c: Buffer) => {
        got += c.toString("latin1");
        if (got.includes("\r\n\r\n")) {
          received.push(got);
          s.resetAndDestroy();
        }
      });
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => tlsPort.listen(0, "127.0.0.1", r));
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const records: EgressRecord[] = [];
    const gw = await createGateway({
      address: "127.0.0.1",
      secrets: secretSource(),
      onRecord: (r) => void records.push(r),
      upstream: {
        resolve: async () => ["127.0.0.1"],
        trustedAddresses: ["127.0.0.1"],
        portOverride: (host) => (host === "api.github.com" ? closedPort : (tlsPort.address() as net.AddressInfo).port),
      },
    });
    try {
      const open = BINDINGS.map((b) => ({ ...b, cleartext: true }));
      const ph = (await gw.register(spec("c443", { secrets: open }))).placeholders;
      const r = await plainHttp(gw.endpoints.proxyPort, "http://api.stripe.com:443/v1/charges", { host: "api.stripe.com:443", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
      assert.equal(r.status, 502);
      assert.equal(received.length, 1);
      assert.ok(received[0]!.includes(`Bearer ${SECRETS.STRIPE_API_KEY}`), "the upstream received the secret");
      assert.deepEqual(records.at(-1)!.swapped, ["STRIPE_API_KEY"]);
      // Nothing listening: the request never left, and the record names no secret.
      const gone = await plainHttp(gw.endpoints.proxyPort, "http://api.github.com/", { host: "api.github.com", headers: { authorization: `Bearer ${ph.GITHUB_TOKEN}` } });
      assert.equal(gone.status, 502);
      assert.deepEqual([records.at(-1)!.host, records.at(-1)!.swapped], ["api.github.com", []]);
    } finally {
      await gw.close();
      await new Promise((r) => tlsPort.close(r));
    }
  });
});
