// Sources, sessions and failure: unregistered sources, unregister closing connections, restore,
// and fail-closed paths (exceptions in policy or secret code, upstream TLS verification failure).
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { createGateway } from "../../src/gateway/index.ts";
import { SECRETS, connect, plainHttp, secretSource, spec, startHarness, startUpstreams, viaConnect, viaTransparent, type Harness } from "./helpers.ts";

void describe("sources and sessions", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h.close());

  void it("an unregistered source gets 403 (HTTP), 403 (CONNECT), a closed TLS connection, and an 'unknown' record", async () => {
    const n = h.up.seen.length;
    let r = await plainHttp(h.gw.endpoints.proxyPort, "http://api.stripe.com/", { host: "api.stripe.com" }, "127.0.0.9");
    assert.equal(r.status, 403);
    assert.equal(h.records.at(-1)!.sessionId, "unknown");
    r = await plainHttp(h.gw.endpoints.httpPort, "/", { host: "api.stripe.com" }, "127.0.0.9");
    assert.equal(r.status, 403);
    const { status } = await connect(h.gw.endpoints.proxyPort, "api.stripe.com:443", "127.0.0.9");
    assert.equal(status, 403);
    await assert.rejects(viaTransparent(h.gw.endpoints.httpsPort, "", "api.stripe.com", {}, "127.0.0.9"));
    assert.equal(h.records.at(-1)!.sessionId, "unknown");
    assert.equal(h.up.seen.length, n);
  });

  void it("unregister closes open connections and later requests are refused; unknown id resolves false", async () => {
    const reg = await h.gw.register(spec("u1", { sourceIp: "127.0.0.4" }));
    const { socket } = await connect(h.gw.endpoints.proxyPort, "api.stripe.com:443", "127.0.0.4");
    const t = tls.connect({ socket, servername: "api.stripe.com", ca: reg.caCertPem });
    await new Promise((r) => t.once("secureConnect", r));
    const closed = new Promise((r) => t.once("close", r));
    assert.equal(await h.gw.unregister("u1"), true);
    await closed;
    assert.equal(await h.gw.unregister("u1"), false);
    const r = await plainHttp(h.gw.endpoints.proxyPort, "http://api.stripe.com/", { host: "api.stripe.com" }, "127.0.0.4");
    assert.equal(r.status, 403);
  });

  void it("restore gives back the same placeholders and CA; a fresh register gives new ones", async () => {
    const first = await h.gw.register(spec("r1", { sourceIp: "127.0.0.5" }));
    const again = await h.gw.register(spec("r1", { sourceIp: "127.0.0.5" }), first);
    assert.deepEqual(again.placeholders, first.placeholders);
    assert.equal(again.caCertPem, first.caCertPem);
    const r = await viaConnect(h.gw.endpoints.proxyPort, first.caCertPem, "api.stripe.com:443", { headers: { authorization: `Bearer ${first.placeholders.STRIPE_API_KEY}` } }, "api.stripe.com", "127.0.0.5");
    assert.equal(r.status, 200);
    assert.equal(h.up.seen.at(-1)!.headers.authorization, `Bearer ${SECRETS.STRIPE_API_KEY}`);
    const fresh = await h.gw.register(spec("r1", { sourceIp: "127.0.0.5" }));
    assert.notEqual(fresh.placeholders.STRIPE_API_KEY, first.placeholders.STRIPE_API_KEY);
    assert.notEqual(fresh.caCertPem, first.caCertPem);
    await h.gw.unregister("r1");
  });

  void it("a policy that does not parse is refused at register", async () => {
    await assert.rejects(h.gw.register(spec("p0", { sourceIp: "127.0.0.8", policy: { allow: [42 as unknown as string], deny: [] } })), /network policy does not parse/);
  });

  void it("a second session on a registered source address is a conflict", async () => {
    await h.gw.register(spec("c1", { sourceIp: "127.0.0.6" }));
    await assert.rejects(h.gw.register(spec("c2", { sourceIp: "127.0.0.6" })), /already registered/);
    await h.gw.unregister("c1");
  });

  void it("an exception in policy code fails closed (502 over HTTP, 502 on CONNECT), nothing dialled", async () => {
    const broken = spec("p1", { sourceIp: "127.0.0.7" });
    await h.gw.register(broken);
    // Corrupt the live policy so policy code throws mid-request.
    broken.policy.allow.push(42 as unknown as string);
    const n = h.up.seen.length;
    const r = await plainHttp(h.gw.endpoints.proxyPort, "http://api.stripe.com/", { host: "api.stripe.com" }, "127.0.0.7");
    assert.equal(r.status, 502);
    assert.equal(h.records.at(-1)!.rule, "gateway.internal-error");
    const { status } = await connect(h.gw.endpoints.proxyPort, "api.stripe.com:443", "127.0.0.7");
    assert.equal(status, 502);
    assert.equal(h.up.seen.length, n);
    await h.gw.unregister("p1");
  });
});

void describe("fail closed around secrets and upstream TLS", () => {
  void it("a secret source that throws mid-request → 502, nothing dialled", async () => {
    let fail = false;
    const src = secretSource();
    const h = await startHarness({ resolve: async (n, s) => (fail ? Promise.reject(new Error("vault down")) : src.resolve(n, s)), touch: () => undefined });
    try {
      const reg = await h.gw.register(spec("f1"));
      fail = true;
      const n = h.up.seen.length;
      const r = await viaConnect(h.gw.endpoints.proxyPort, reg.caCertPem, "api.stripe.com:443", { headers: { authorization: `Bearer ${reg.placeholders.STRIPE_API_KEY}` } });
      assert.equal(r.status, 502);
      assert.equal(h.up.seen.length, n);
    } finally {
      await h.close();
    }
  });

  void it("an upstream certificate that does not verify → 502, the request never sent", async () => {
    const up = await startUpstreams();
    const records: { status: number }[] = [];
    // No extraCaPem: the upstream's test CA is not trusted.
    const gw = await createGateway({ address: "127.0.0.1", secrets: secretSource(), onRecord: (r) => void records.push(r), upstream: { resolve: async () => ["127.0.0.1"], portOverride: () => up.httpsPort } });
    try {
      const reg = await gw.register(spec("t1"));
      const r = await viaConnect(gw.endpoints.proxyPort, reg.caCertPem, "api.stripe.com:443", { headers: { authorization: `Bearer ${reg.placeholders.STRIPE_API_KEY}` } });
      assert.equal(r.status, 502);
      assert.equal(up.seen.length, 0);
      assert.equal(records.at(-1)!.status, 502);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  void it("close() stops every listener", async () => {
    const h = await startHarness();
    const { proxyPort } = h.gw.endpoints;
    await h.close();
    await assert.rejects(new Promise((resolve, reject) => net.connect(proxyPort, "127.0.0.1").on("connect", resolve).on("error", reject)));
  });
});
