// The session CA: its fields, name constraints that a real client honours, leaf properties.
import "reflect-metadata";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import https from "node:https";
import type net from "node:net";
import tls from "node:tls";
import { describe, it } from "node:test";
import * as x509 from "@peculiar/x509";
import { createSessionCa } from "../../src/gateway/ca.ts";

async function serve(ctx: Promise<tls.SecureContext>): Promise<{ port: number; close: () => void }> {
  const c = await ctx;
  const s = https.createServer({ SNICallback: (_n, cb) => cb(null, c) }, (_q, r) => r.end("ok"));
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return { port: (s.address() as net.AddressInfo).port, close: () => void (s.closeAllConnections(), s.close()) };
}

function handshake(port: number, servername: string, ca: string): Promise<Error | null> {
  return new Promise((resolve) => {
    const t = tls.connect({ host: "127.0.0.1", port, servername, ca }, () => {
      t.destroy();
      resolve(null);
    });
    t.on("error", resolve);
  });
}

void describe("session CA", () => {
  void it("is an ECDSA P-256 CA, CN=Paddock sandbox CA <id>, keyCertSign, ≤ 7 days, name-constrained", async () => {
    const ca = await createSessionCa("sess-1", ["api.stripe.com", "example.org"]);
    const c = new X509Certificate(ca.certPem);
    assert.equal(c.ca, true);
    assert.match(c.subject, /CN=Paddock sandbox CA sess-1/);
    assert.equal(c.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.ok(Date.parse(c.validTo) - Date.parse(c.validFrom) <= 7 * 86_400_000 + 10 * 60_000);
    const px = new x509.X509Certificate(ca.certPem);
    assert.ok(px.getExtension("2.5.29.30"), "name constraints present");
    assert.ok(px.getExtension(x509.KeyUsagesExtension)!.usages & x509.KeyUsageFlags.keyCertSign);
    assert.match(ca.keyPem, /BEGIN PRIVATE KEY/);
  });

  void it("no name constraints when the policy allows `*`", async () => {
    const ca = await createSessionCa("s", null);
    assert.equal(new x509.X509Certificate(ca.certPem).getExtension("2.5.29.30"), null);
  });

  void it("a client refuses a leaf for a name outside the constraints, accepts one inside", async () => {
    const ca = await createSessionCa("s2", ["api.stripe.com"]);
    const good = await serve(ca.contextFor("api.stripe.com"));
    const bad = await serve(ca.contextFor("evil.example"));
    try {
      assert.equal(await handshake(good.port, "api.stripe.com", ca.certPem), null);
      const err = await handshake(bad.port, "evil.example", ca.certPem);
      assert.ok(err, "leaf outside the permitted subtree must be refused");
    } finally {
      good.close();
      bad.close();
    }
  });

  void it("leaves: SAN = the name, ≤ 7 days, cached per name; restore keeps the CA", async () => {
    const ca = await createSessionCa("s3", null);
    assert.equal(ca.contextFor("a.io"), ca.contextFor("a.io"));
    const srv = await serve(ca.contextFor("a.io"));
    const cert = await new Promise<tls.PeerCertificate>((resolve, reject) => {
      const t = tls.connect({ host: "127.0.0.1", port: srv.port, servername: "a.io", ca: ca.certPem }, () => {
        resolve(t.getPeerCertificate());
        t.destroy();
      });
      t.on("error", reject);
    });
    srv.close();
    assert.equal(cert.subjectaltname, "DNS:a.io");
    assert.ok(Date.parse(cert.valid_to) - Date.parse(cert.valid_from) <= 7 * 86_400_000);
    const again = await createSessionCa("s3", null, { certPem: ca.certPem, keyPem: ca.keyPem });
    assert.equal(again.certPem, ca.certPem);
    const srv2 = await serve(again.contextFor("b.io"));
    assert.equal(await handshake(srv2.port, "b.io", ca.certPem), null);
    srv2.close();
  });
});
