// Per-session limits (issue 9): nothing a sandbox opens is held forever, one session cannot take
// every connection or megabyte of the gateway, and the leaf-certificate cache is bounded. Timeouts
// are shortened through CreateGatewayOptions.limits; every wait is on a socket event, bounded by
// the test's own timeout.
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { createSessionCa } from "../../src/gateway/ca.ts";
import { createGateway, type EgressRecord, type Gateway, type GatewaySessionSpec } from "../../src/gateway/index.ts";
import { connect, plainHttp, secretSource, spec, startHarness, viaTransparent, type Harness } from "./helpers.ts";

const SHORT = { tlsHandshakeTimeoutMs: 300, headersTimeoutMs: 400, requestTimeoutMs: 400, keepAliveTimeoutMs: 300, tunnelIdleTimeoutMs: 300 };
const GUARD = { timeout: 5_000 };

/** Resolves with what the peer sent once it closed the connection, and how long that took. */
function closed(socket: net.Socket): Promise<{ data: string; ms: number }> {
  const started = Date.now();
  let data = "";
  socket.on("data", (c: Buffer) => (data += c.toString("latin1")));
  socket.on("error", () => undefined);
  return new Promise((resolve) => socket.once("close", () => resolve({ data, ms: Date.now() - started })));
}

function rawTcp(port: number, localAddress = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress }, () => resolve(s));
    s.once("error", reject);
  });
}

function secure(socket: net.Socket | undefined, port: number, ca: string, servername: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tls.connect({ ...(socket ? { socket } : { host: "127.0.0.1", port }), servername, ca }, () => resolve(t));
    t.once("error", reject);
  });
}

const byRule = (records: EgressRecord[], rule: string): EgressRecord[] => records.filter((r) => r.rule === rule);

void describe("timeouts: nothing a sandbox opens is held forever", () => {
  let h: Harness;
  let ca: string;
  before(async () => {
    h = await startHarness(undefined, { limits: SHORT });
    ca = (await h.gw.register(spec("t"))).caCertPem;
  });
  after(async () => h.close());

  void it("raw TCP to the TLS port that never sends a ClientHello is closed after the handshake timeout, recorded once", GUARD, async () => {
    const sockets = await Promise.all(Array.from({ length: 5 }, () => rawTcp(h.gw.endpoints.httpsPort)));
    const results = await Promise.all(sockets.map(closed));
    for (const r of results) assert.ok(r.ms >= 250, `closed after ${r.ms} ms`);
    const recs = byRule(h.records, "gateway.limits.tls-handshake-timeout");
    assert.equal(recs.length, 1, "one record for the burst, not one per connection");
    assert.equal(recs[0]!.sessionId, "t");
  });

  void it("a CONNECT tunnel that never starts TLS is closed after the handshake timeout", GUARD, async () => {
    const { status, socket } = await connect(h.gw.endpoints.proxyPort, "api.stripe.com:443");
    assert.equal(status, 200);
    assert.ok((await closed(socket)).ms >= 250);
  });

  void it("a TLS connection with half-sent headers gets 408 and is closed after the header timeout", GUARD, async () => {
    const t = await secure(undefined, h.gw.endpoints.httpsPort, ca, "api.stripe.com");
    const done = closed(t);
    t.write("GET /slow HTTP/1.1\r\nHost: api.stripe.com\r\nX-Half: ");
    const r = await done;
    assert.match(r.data, /^HTTP\/1\.1 408 /);
    assert.ok(r.ms >= 350, `closed after ${r.ms} ms`);
    assert.ok(byRule(h.records, "gateway.limits.headers-timeout").length >= 1);
  });

  void it("a TLS connection that never sends a request is closed after the header timeout", GUARD, async () => {
    const t = await secure(undefined, h.gw.endpoints.httpsPort, ca, "api.stripe.com");
    assert.match((await closed(t)).data, /^HTTP\/1\.1 408 /);
  });

  void it("a request whose body stops short gets 408 after the request timeout; the upstream never sees a complete request", GUARD, async () => {
    const n = h.up.seen.length;
    const t = await secure(undefined, h.gw.endpoints.httpsPort, ca, "api.stripe.com");
    const done = closed(t);
    t.write("POST /half-body HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Length: 100\r\n\r\nonly-ten!!");
    const r = await done;
    assert.match(r.data, /^HTTP\/1\.1 408 /);
    assert.equal(h.up.seen.length, n);
    assert.equal(h.records.at(-1)!.rule, "gateway.limits.request-timeout");
  });

  void it("an idle CONNECT tunnel is closed after the tunnel idle timeout", GUARD, async () => {
    const { socket } = await connect(h.gw.endpoints.proxyPort, "api.stripe.com:443");
    const t = await secure(socket, 0, ca, "api.stripe.com");
    let answered = 0;
    t.once("data", () => (answered = Date.now()));
    const done = closed(t);
    t.write("GET /then-idle HTTP/1.1\r\nHost: api.stripe.com\r\n\r\n");
    const r = await done;
    assert.match(r.data, /^HTTP\/1\.1 200 /);
    assert.ok(Date.now() - answered >= 250, "kept open for the idle timeout after the answer");
    assert.ok(socket.destroyed, "the tunnel itself is closed");
  });

  void it("an idle keep-alive connection on the plain HTTP port is closed after the keep-alive timeout", GUARD, async () => {
    const s = await rawTcp(h.gw.endpoints.httpPort);
    const done = closed(s);
    s.write("GET /keep HTTP/1.1\r\nHost: api.stripe.com\r\n\r\n");
    let answered = 0;
    s.once("data", () => (answered = Date.now()));
    const r = await done;
    assert.match(r.data, /^HTTP\/1\.1 200 /);
    assert.ok(!r.data.includes("408"), "idle after a complete exchange: closed quietly");
    assert.ok(Date.now() - answered >= 250);
  });

  void it("a connection that keeps a request open with a trickle is still closed by the header timeout", GUARD, async () => {
    const s = await rawTcp(h.gw.endpoints.proxyPort);
    const done = closed(s);
    s.write("GET http://api.stripe.com/ HTTP/1.1\r\n");
    const trickle = setInterval(() => s.writable && s.write("X-A: b\r\n"), 100);
    try {
      assert.match((await done).data, /^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(trickle);
    }
  });
});

void describe("per-session connection cap", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness(undefined, { limits: { maxConnectionsPerSession: 8 } });
    await h.gw.register(spec("A", { sourceIp: "127.0.0.30" }));
    await h.gw.register(spec("B", { sourceIp: "127.0.0.31" }));
  });
  after(async () => h.close());

  void it("session A over its cap is refused at once (recorded once) while session B's requests succeed", GUARD, async () => {
    const { proxyPort, httpPort, httpsPort } = h.gw.endpoints;
    // A holds its 8 connections across all listeners.
    const held = await Promise.all([proxyPort, httpPort, httpsPort, proxyPort, httpPort, httpsPort, proxyPort, httpPort].map((p) => rawTcp(p, "127.0.0.30")));
    const overs = await Promise.all([httpPort, httpsPort, proxyPort, httpPort, httpsPort].map((p) => rawTcp(p, "127.0.0.30")));
    for (const o of await Promise.all(overs.map(closed))) assert.equal(o.data, "", "closed at once, nothing said");
    await assert.rejects(plainHttp(httpPort, "/", { host: "api.stripe.com" }, "127.0.0.30"));
    // B is not affected.
    assert.equal((await plainHttp(httpPort, "/b", { host: "api.stripe.com" }, "127.0.0.31")).status, 200);
    const caB = (await h.gw.register(spec("B", { sourceIp: "127.0.0.31" }))).caCertPem;
    assert.equal((await viaTransparent(httpsPort, caB, "api.stripe.com", {}, "127.0.0.31")).status, 200);
    const recs = byRule(h.records, "gateway.limits.connections");
    assert.equal(recs.length, 1, "one record for the burst, not one per refused connection");
    assert.equal(recs[0]!.sessionId, "A");
    // Once A's connections end, it may connect again (bounded retries: closes are asynchronous).
    await Promise.all(held.map((s) => (s.destroy(), closed(s))));
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) status = await plainHttp(httpPort, "/again", { host: "api.stripe.com" }, "127.0.0.30").then((r) => r.status, () => 0);
    assert.equal(status, 200);
  });
});

const MiB = 1024 * 1024;
const BODY = 30 * MiB;

/** A sink upstream: reads and drops bodies, answers with the byte count. */
async function startSink(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    let n = 0;
    req.on("data", (c: Buffer) => (n += c.length));
    req.on("end", () => res.end(String(n)));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/** POST `size` bytes through the proxy from a shared 1 MiB chunk, with backpressure. */
function upload(proxyPort: number, url: string, size: number, localAddress: string): Promise<{ status: number; body: string }> {
  const chunk = Buffer.alloc(MiB, 0x61);
  return new Promise((resolve) => {
    const req = http.request({ host: "127.0.0.1", port: proxyPort, method: "POST", path: url, localAddress, agent: false, headers: { host: new URL(url).host, "content-length": String(size) } });
    let answered = false;
    req.on("response", (res) => {
      answered = true;
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    // A refusal closes the connection while the body is still being written: that is expected.
    req.on("error", () => !answered && resolve({ status: 0, body: "" }));
    let sent = 0;
    const pump = (): void => {
      while (sent < size) {
        sent += chunk.length;
        const ok = sent >= size ? (req.end(chunk), true) : req.write(chunk);
        if (!ok) return void req.once("drain", pump);
      }
    };
    pump();
  });
}

/** Peak rss while `work` runs, minus rss before it. */
async function peakRssDelta<T>(work: () => Promise<T>): Promise<{ delta: number; result: T }> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { delta: peak - before, result };
  } finally {
    clearInterval(sample);
  }
}

void describe("request bodies: streamed, or buffered within a per-session budget", () => {
  let gw: Gateway;
  let sink: { port: number; close(): Promise<void> };
  const records: EgressRecord[] = [];
  const session: GatewaySessionSpec = {
    ...spec("mem", { sourceIp: "127.0.0.40" }),
    policy: { allow: ["stream.example", "inspect.example"], deny: [] },
    // Bodies to inspect.example may carry a secret: they must be buffered (cleartext: plain HTTP here).
    secrets: [{ name: "QUERY_KEY", hosts: ["inspect.example"], in: ["body"], kind: "http", cleartext: true }],
  };
  before(async () => {
    sink = await startSink();
    gw = await createGateway({
      address: "127.0.0.1",
      secrets: secretSource(),
      onRecord: (r) => void records.push(r),
      upstream: { resolve: async () => ["127.0.0.1"], trustedAddresses: ["127.0.0.1"], portOverride: () => sink.port },
    });
    await gw.register(session);
  });
  after(async () => {
    await gw.close();
    await sink.close();
  });

  // Bound asserted: peak rss growth under 200 MiB while 16 × 30 MiB (480 MiB) pass through. The old
  // gateway buffered each body twice (chunks, then one copy) and grew by over 1 GiB here.
  void it("16 concurrent 30 MiB uploads are streamed: all arrive whole, memory stays bounded", { timeout: 60_000 }, async () => {
    const { delta, result } = await peakRssDelta(() => Promise.all(Array.from({ length: 16 }, () => upload(gw.endpoints.proxyPort, "http://stream.example/up", BODY, "127.0.0.40"))));
    for (const r of result) assert.deepEqual(r, { status: 200, body: String(BODY) });
    assert.ok(delta < 200 * MiB, `rss grew by ${Math.round(delta / MiB)} MiB`);
    assert.ok(records.filter((r) => r.host === "stream.example").every((r) => r.bytesOut === BODY));
  });

  // Budget 64 MiB: two 30 MiB bodies fit, a third is refused (503) until one finishes.
  void it("bodies that must be read count against the session's 64 MiB budget; beyond it 503 with the reason", { timeout: 60_000 }, async () => {
    const { delta, result } = await peakRssDelta(() => Promise.all(Array.from({ length: 16 }, () => upload(gw.endpoints.proxyPort, "http://inspect.example/up", BODY, "127.0.0.40"))));
    const ok = result.filter((r) => r.status === 200);
    const refused = result.filter((r) => r.status === 503);
    assert.equal(ok.length + refused.length, 16, JSON.stringify(result.map((r) => r.status)));
    assert.ok(ok.length >= 1 && refused.length >= 1);
    for (const r of ok) assert.equal(r.body, String(BODY));
    assert.match(refused[0]!.body, /request bodies held in the gateway \(limit 64 MiB\)/);
    assert.ok(records.some((r) => r.rule === "gateway.limits.body-memory" && r.status === 503));
    assert.ok(delta < 200 * MiB, `rss grew by ${Math.round(delta / MiB)} MiB`);
    // Everything was given back: a new upload fits again.
    assert.equal((await upload(gw.endpoints.proxyPort, "http://inspect.example/again", BODY, "127.0.0.40")).status, 200);
  });

  void it("a single body over the buffer limit is refused with 413, before it is read", async () => {
    const r = await upload(gw.endpoints.proxyPort, "http://inspect.example/big", 33 * MiB, "127.0.0.40");
    assert.equal(r.status, 413);
    assert.match(r.body, /over 32 MiB .*a secret may be swapped into it/);
  });
});

void describe("leaf certificate cache", () => {
  void it("keeps at most leafCacheSize names per CA, least recently used dropped", async () => {
    const ca = await createSessionCa("lru", null, undefined, { leafCacheSize: 4 });
    const a = ca.contextFor("a.example");
    assert.equal(ca.contextFor("a.example"), a, "a hit is the same context");
    for (const n of ["b", "c", "d"]) await ca.contextFor(`${n}.example`);
    assert.equal(ca.contextFor("a.example"), a, "used again: now the most recent");
    await ca.contextFor("e.example"); // drops b, the least recently used
    assert.equal(ca.contextFor("a.example"), a);
    const b = ca.contextFor("b.example");
    await b;
    for (const n of ["f", "g", "h", "i"]) await ca.contextFor(`${n}.example`);
    assert.notEqual(ca.contextFor("a.example"), a, "pushed out by newer names: minted again");
    assert.notEqual(ca.contextFor("b.example"), b);
  });
});
