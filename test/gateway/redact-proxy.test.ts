// Redaction through the real gateway (issue 9), against a local TLS upstream that echoes the swapped
// secret the ways the attack review found reaching the sandbox: lower-case percent-encoding in the
// body and in a Location header, the secret as a header name, and inside a gzip transfer coding.
import assert from "node:assert/strict";
import type http from "node:http";
import https from "node:https";
import type net from "node:net";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { createSessionCa } from "../../src/gateway/ca.ts";
import { createGateway, type Gateway } from "../../src/gateway/index.ts";
import { secretSource, spec, viaConnect } from "./helpers.ts";

// Secrets with characters that percent-encoding changes (the defaults of helpers.ts have none).
const SECRETS = {
  STRIPE_API_KEY: "sk_live_51Hx/REAL+stripe=SECRET&value0001",
  GITHUB_TOKEN: "ghp_REALgithubTOKENvalue00000000000002",
};
const lowerPercent = (s: string): string => encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());

/** What the upstream answers, by path, with the secret it received. */
function answer(path: string, secret: string, res: http.ServerResponse): void {
  switch (path) {
    case "/percent":
      return void res.end(`{"next":"https://api.example/cb?token=${lowerPercent(secret)}"}`);
    case "/location":
      res.writeHead(302, { location: `https://evil.example/steal?t=${lowerPercent(secret)}` });
      return void res.end();
    case "/header-name":
      res.writeHead(200, [`x-${secret}`, "1", `x-${Buffer.from(secret).toString("hex")}`, "2", "x-fine", "3"]);
      return void res.end("ok");
    case "/transfer-gzip":
      res.writeHead(200, { "transfer-encoding": "gzip, chunked", "content-type": "text/plain" });
      return void res.end(gzipSync(`gz=${secret}`));
    case "/transfer-compress":
      res.writeHead(200, { "transfer-encoding": "compress, chunked" });
      return void res.end("xx");
    case "/json-html":
      return void res.end(`{"a":"${secret.replace(/\//g, "\\/").replace(/\+/g, "\\u002B")}","b":"${secret.replace(/&/g, "&amp;").replace(/=/g, "&#x3d;")}"}`);
    default:
      return void res.end("hello");
  }
}

void describe("redaction through the gateway (local TLS upstream)", () => {
  let gw: Gateway;
  let upstream: https.Server;
  let ph: Record<string, string>;
  let ca: string;
  const seen: string[] = [];
  before(async () => {
    const upCa = await createSessionCa("redact-upstream", null);
    upstream = https.createServer({ SNICallback: (name, cb) => void upCa.contextFor(name).then((c) => cb(null, c), cb) }, (req, res) => {
      const secret = String(req.headers.authorization ?? "").replace(/^Bearer /, "");
      seen.push(secret);
      req.resume();
      req.on("end", () => answer((req.url ?? "/").split("?")[0] ?? "/", secret, res));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const port = (upstream.address() as net.AddressInfo).port;
    gw = await createGateway({
      address: "127.0.0.1",
      secrets: secretSource(SECRETS),
      onRecord: () => undefined,
      upstream: { extraCaPem: [upCa.certPem], resolve: async () => ["127.0.0.1"], portOverride: () => port },
    });
    const reg = await gw.register(spec("redact", { secrets: spec("x").secrets.filter((s) => s.name in SECRETS) }));
    ph = reg.placeholders;
    ca = reg.caCertPem;
  });
  after(async () => {
    // Also after a failed `before`: an upstream left listening would keep this file's process alive.
    const server = upstream as https.Server | undefined;
    await (gw as Gateway | undefined)?.close();
    server?.closeAllConnections();
    if (server) await new Promise((r) => server.close(r));
  });

  const get = (path: string, name: keyof typeof SECRETS = "STRIPE_API_KEY") =>
    viaConnect(gw.endpoints.proxyPort, ca, `${name === "GITHUB_TOKEN" ? "api.github.com" : "api.stripe.com"}:443`, { path, headers: { authorization: `Bearer ${ph[name]}` } });

  void it("lower-case percent-encoding (%2f) in the body becomes the encoded placeholder", async () => {
    const r = await get("/percent");
    assert.equal(seen.at(-1), SECRETS.STRIPE_API_KEY, "the upstream saw the real secret");
    assert.equal(r.body, `{"next":"https://api.example/cb?token=${encodeURIComponent(ph.STRIPE_API_KEY!)}"}`);
  });

  void it("lower-case percent-encoding in a Location header", async () => {
    const r = await get("/location");
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, `https://evil.example/steal?t=${encodeURIComponent(ph.STRIPE_API_KEY!)}`);
  });

  void it("a header whose name holds the secret (lower-cased by Node) is dropped", async () => {
    const r = await get("/header-name", "GITHUB_TOKEN");
    assert.equal(r.status, 200);
    const names = Object.keys(r.headers).join("\n");
    assert.ok(!names.includes(SECRETS.GITHUB_TOKEN.toLowerCase()), names);
    assert.ok(!names.includes(Buffer.from(SECRETS.GITHUB_TOKEN).toString("hex")), names);
    assert.equal(r.headers["x-fine"], "3");
  });

  void it("a gzip transfer coding is decoded and redacted; one the gateway cannot read is refused", async () => {
    const r = await get("/transfer-gzip");
    assert.equal(r.status, 200);
    assert.equal(r.body, `gz=${ph.STRIPE_API_KEY}`);
    const refused = await get("/transfer-compress");
    assert.equal(refused.status, 502);
    assert.match(refused.body, /transfer-encoding "compress"/);
  });

  void it("JSON and HTML escapes in one body", async () => {
    const r = await get("/json-html");
    assert.equal(r.body, `{"a":"${ph.STRIPE_API_KEY}","b":"${ph.STRIPE_API_KEY}"}`);
  });
});
