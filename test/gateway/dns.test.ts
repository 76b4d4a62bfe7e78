// The gateway's DNS server over UDP and TCP: policy answers, never forwarding (attack 15, host side).
import assert from "node:assert/strict";
import dgram from "node:dgram";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import * as packet from "dns-packet";
import { spec, startHarness, type Harness } from "./helpers.ts";

/** dns-packet's types omit the decoded rcode and the answers' data union. */
type Decoded = { id?: number; rcode: string; answers?: { data: unknown }[] };

function udpQuery(port: number, name: string, type: packet.RecordType, localAddress = "127.0.0.1"): Promise<Decoded> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket("udp4");
    s.bind(0, localAddress, () => {
      s.on("message", (m) => {
        s.close();
        resolve(packet.decode(m) as unknown as Decoded);
      });
      s.send(packet.encode({ type: "query", id: 7, flags: packet.RECURSION_DESIRED, questions: [{ type, name }] }), port, "127.0.0.1");
    });
    setTimeout(() => reject(new Error("no answer")), 2000).unref();
  });
}

function tcpQuery(port: number, name: string, type: packet.RecordType): Promise<Decoded> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(packet.streamEncode({ type: "query", id: 9, questions: [{ type, name }] })));
    let buf = Buffer.alloc(0);
    s.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        s.destroy();
        resolve(packet.streamDecode(buf) as unknown as Decoded);
      }
    });
    s.on("error", reject);
  });
}

void describe("DNS", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    await h.gw.register(spec("d1", { policy: { allow: ["api.stripe.com", "*.example.org", "db.x.io:5432"], deny: ["*"] } }));
  });
  after(async () => h.close());
  const port = () => h.gw.endpoints.dnsPort;

  void it("A for an allowed name → the gateway's address; wildcard and port-only rules count", async () => {
    for (const name of ["api.stripe.com", "API.Stripe.com", "www.example.org", "db.x.io"]) {
      const r = await udpQuery(port(), name, "A");
      assert.equal(r.rcode, "NOERROR", name);
      assert.deepEqual(r.answers?.map((a) => a.data), ["127.0.0.1"]);
      assert.equal(r.id, 7);
    }
  });
  void it("attacker names → NXDOMAIN, nothing resolved upstream", async () => {
    const before = h.lookups.length;
    for (const name of ["evil.example", "c2VjcmV0.exfil.attacker.example", "example.org"]) assert.equal((await udpQuery(port(), name, "A")).rcode, "NXDOMAIN", name);
    assert.equal(h.lookups.length, before);
  });
  void it("AAAA → no data; TXT/MX → NOTIMP", async () => {
    const r = await udpQuery(port(), "api.stripe.com", "AAAA");
    assert.equal(r.rcode, "NOERROR");
    assert.equal(r.answers?.length, 0);
    assert.equal((await udpQuery(port(), "api.stripe.com", "TXT")).rcode, "NOTIMP");
    assert.equal((await udpQuery(port(), "api.stripe.com", "MX")).rcode, "NOTIMP");
  });
  void it("unknown source → REFUSED", async () => {
    assert.equal((await udpQuery(port(), "api.stripe.com", "A", "127.0.0.9")).rcode, "REFUSED");
  });
  void it("TCP answers the same way", async () => {
    const r = await tcpQuery(port(), "api.stripe.com", "A");
    assert.deepEqual(r.answers?.map((a) => a.data), ["127.0.0.1"]);
    assert.equal((await tcpQuery(port(), "evil.example", "A")).rcode, "NXDOMAIN");
  });
});
