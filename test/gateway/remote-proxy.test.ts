// The remote proxy listener (issue 13): remote providers' sandboxes reach the gateway over the
// network as an HTTPS proxy with per-session credentials. The real gateway process, real curl and
// node clients on the host acting as the remote sandbox; local upstreams on random ports.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { SECRETS } from "./helpers.ts";
import { basic, connectThrough, credential, curl, inTunnel, proxyTls, readAll, remoteSpec, startRemoteHarness, type RemoteHarness } from "./remote-harness.ts";
import { until } from "../helpers/wait.ts";

const GUARD = { timeout: 60_000 };

interface Registered {
  id: string;
  user: string;
  password: string;
  proxyUrl: string;
  placeholders: Record<string, string>;
  caFile: string;
  caPem: string;
}

async function register(h: RemoteHarness, id: string, allow?: string[]): Promise<Registered> {
  const c = credential();
  const reg = await h.gw.register(remoteSpec(id, c.remote, h.up, allow));
  return {
    id, user: c.user, password: c.password, proxyUrl: `https://${c.user}:${c.password}@localhost:${h.port}`,
    placeholders: reg.placeholders, caFile: await h.file(`${id}.pem`, reg.caCertPem), caPem: reg.caCertPem,
  };
}

void describe("remote proxy: TLS to the gateway with per-session credentials", () => {
  let h: RemoteHarness;
  let a: Registered;
  let b: Registered;
  const stripe = (): string => `https://api.stripe.com:${h.up.httpsPort}`;
  const allowed = (): string => `https://allowed.example:${h.up.httpsPort}`;

  before(async () => {
    h = await startRemoteHarness();
    a = await register(h, "sess-a");
    // B may reach github.com; A may not.
    b = await register(h, "sess-b", ["api.stripe.com", "github.com"]);
  });
  after(async () => h?.close());

  void it("swaps a secret only towards its bound host, and redacts it on the way back", GUARD, async () => {
    const ph = a.placeholders["STRIPE_API_KEY"] ?? "";
    const r = await curl(a.proxyUrl, [`${stripe()}/echo-header`, "-D", "-", "-H", `Authorization: Bearer ${ph}`], { proxy: h.gatewayCaFile, session: a.caFile });
    assert.equal(r.status, 200, r.stderr);
    assert.equal(h.up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`, "the bound host got the secret");
    assert.match(r.stdout, new RegExp(`x-echo-back: ${ph}`), "the echo came back as the placeholder");
    assert.ok(!r.stdout.includes(SECRETS["STRIPE_API_KEY"] ?? "?"), "no secret reached the client");

    const other = await curl(a.proxyUrl, [`${allowed()}/echo-header`, "-H", `Authorization: Bearer ${ph}`], { proxy: h.gatewayCaFile, session: a.caFile });
    assert.equal(other.status, 200, other.stderr);
    assert.equal(h.up.seen.at(-1)?.headers.authorization, `Bearer ${ph}`, "an allowed host the secret is not bound to gets the placeholder unchanged");
    const rec = h.records.filter((x) => x.sessionId === "sess-a" && x.host === "api.stripe.com");
    assert.deepEqual(rec.at(-1)?.swapped, ["STRIPE_API_KEY"], "the record names the session and the swap");
  });

  void it("serves absolute-form HTTP too, judged by the same policy", GUARD, async () => {
    const ok = await curl(a.proxyUrl, [`http://allowed.example:${h.up.httpPort}/`], { proxy: h.gatewayCaFile });
    assert.equal(ok.status, 200, ok.stderr);
    assert.match(ok.stdout, /hello from allowed\.example/);
    const denied = await curl(a.proxyUrl, [`http://github.com:${h.up.httpPort}/`], { proxy: h.gatewayCaFile });
    assert.equal(denied.status, 403, "A's policy does not allow github.com");
    // A placeholder over plain HTTP towards its bound host is refused, never swapped.
    const clear = await curl(a.proxyUrl, [`http://api.stripe.com:${h.up.httpPort}/`, "-H", `Authorization: Bearer ${a.placeholders["STRIPE_API_KEY"]}`], { proxy: h.gatewayCaFile });
    assert.equal(clear.status, 403);
    assert.ok(!h.up.seen.some((s) => !s.tls && JSON.stringify(s.headers).includes(SECRETS["STRIPE_API_KEY"] ?? "?")));
  });

  void it("missing, wrong or unknown credentials: 407, the same bytes whatever was wrong", GUARD, async () => {
    const target = `api.stripe.com:${h.up.httpsPort}`;
    const answers: string[] = [];
    for (const auth of [undefined, basic(a.user, "wrong-password"), basic("pdk0000000000000000", a.password), basic(a.user, b.password), "Bearer x", "Basic !!!"]) {
      const t = await proxyTls(h.port, h.gatewayCaPem);
      const got = await connectThrough(t, target, auth);
      assert.equal(got.status, 407, `for ${auth === undefined ? "no header" : "a wrong header"}`);
      answers.push(got.head);
      await readAll(t, 5_000); // the proxy closes the connection
    }
    assert.equal(new Set(answers).size, 1, "every refusal is byte-for-byte the same");
    assert.match(answers[0] ?? "", /Proxy-Authenticate: Basic realm="paddock"/);
    assert.ok(!answers[0]?.includes(a.user), "the answer names nothing");
    assert.ok(h.records.some((r) => r.rule === "gateway.remote-auth" && r.status === 407 && r.sessionId === "unknown"));
    // curl says the same.
    const r = await curl(`https://localhost:${h.port}`, [`${stripe()}/`], { proxy: h.gatewayCaFile, session: a.caFile });
    assert.equal(r.connectStatus, 407);
  });

  void it("A's credentials act as A only: A's policy, A's secrets", GUARD, async () => {
    const asA = await curl(a.proxyUrl, [`https://github.com:${h.up.httpsPort}/`], { proxy: h.gatewayCaFile, session: a.caFile });
    assert.equal(asA.connectStatus, 403, "github.com is B's, not A's");
    const asB = await curl(b.proxyUrl, [`https://github.com:${h.up.httpsPort}/`], { proxy: h.gatewayCaFile, session: b.caFile });
    assert.equal(asB.status, 200, asB.stderr);
    // B's placeholder sent with A's credentials to the bound host: A has no such placeholder, so it goes out unchanged.
    const bPh = b.placeholders["STRIPE_API_KEY"] ?? "";
    assert.notEqual(bPh, a.placeholders["STRIPE_API_KEY"]);
    const cross = await curl(a.proxyUrl, [`${stripe()}/`, "-H", `Authorization: Bearer ${bPh}`], { proxy: h.gatewayCaFile, session: a.caFile });
    assert.equal(cross.status, 200, cross.stderr);
    assert.equal(h.up.seen.at(-1)?.headers.authorization, `Bearer ${bPh}`, "not swapped");
    // A connection that authenticated as A cannot switch to B.
    const t = await proxyTls(h.port, h.gatewayCaPem);
    const raw = `GET http://allowed.example:${h.up.httpPort}/ HTTP/1.1\r\nHost: allowed.example:${h.up.httpPort}\r\nProxy-Authorization: ${basic(a.user, a.password)}\r\n\r\n` +
      `GET http://github.com:${h.up.httpPort}/ HTTP/1.1\r\nHost: github.com:${h.up.httpPort}\r\nProxy-Authorization: ${basic(b.user, b.password)}\r\n\r\n`;
    const reading = readAll(t);
    t.write(raw);
    const out = await reading;
    assert.match(out, /^HTTP\/1\.1 200/);
    assert.match(out, /HTTP\/1\.1 407/, "the second request, as B on A's connection, is refused");
  });

  void it("a kept-alive connection survives its session being registered again (a restore)", GUARD, async () => {
    const c = credential();
    const s = remoteSpec("sess-keep", c.remote, h.up);
    const reg = await h.gw.register(s);
    const t = await proxyTls(h.port, h.gatewayCaPem);
    const req = `GET http://allowed.example:${h.up.httpPort}/ HTTP/1.1\r\nHost: allowed.example:${h.up.httpPort}\r\nProxy-Authorization: ${basic(c.user, c.password)}\r\n\r\n`;
    const first = new Promise<string>((resolve) => t.once("data", (d: Buffer) => resolve(d.toString("latin1"))));
    t.write(req);
    assert.match(await first, /^HTTP\/1\.1 200/);
    await h.gw.register(s, reg);
    const second = new Promise<string>((resolve) => t.once("data", (d: Buffer) => resolve(d.toString("latin1"))));
    t.write(req);
    assert.match(await second, /^HTTP\/1\.1 200/, "same session, same connection");
    t.destroy();
    await h.gw.unregister("sess-keep");
  });

  void it("Proxy-Authorization never reaches an upstream, even when sent inside the tunnel", GUARD, async () => {
    const t = await proxyTls(h.port, h.gatewayCaPem);
    const c = await connectThrough(t, `allowed.example:${h.up.httpsPort}`, basic(a.user, a.password));
    assert.equal(c.status, 200);
    const r = await inTunnel(t, "allowed.example", a.caPem, { headers: { host: `allowed.example:${h.up.httpsPort}`, "proxy-authorization": basic(a.user, a.password), "x-probe": "inner" } });
    assert.equal(r.status, 200);
    t.destroy();
    const inner = h.up.seen.find((s) => s.headers["x-probe"] === "inner");
    assert.ok(inner, "the inner request arrived");
    for (const s of h.up.seen) {
      assert.equal(s.headers["proxy-authorization"], undefined);
      assert.ok(!s.rawHeaders.join("\n").includes(a.password) && !s.rawHeaders.join("\n").includes(b.password), "no proxy password upstream");
    }
    assert.ok(!h.logs.join("\n").includes(a.password) && !JSON.stringify(h.records).includes(a.password), "nor in logs or records");
  });

  void it("unregister revokes: the open tunnel is closed, new requests get 407", GUARD, async () => {
    const c = await register(h, "sess-c");
    const t = await proxyTls(h.port, h.gatewayCaPem);
    assert.equal((await connectThrough(t, `allowed.example:${h.up.httpsPort}`, basic(c.user, c.password))).status, 200);
    const inner = tls.connect({ socket: t, servername: "allowed.example", ca: c.caPem });
    await new Promise<void>((resolve, reject) => inner.once("secureConnect", resolve).once("error", reject));
    const closed = new Promise<void>((resolve) => inner.once("close", () => resolve()));
    inner.on("error", () => undefined);
    assert.equal(await h.gw.unregister("sess-c"), true);
    await closed;
    const r = await curl(c.proxyUrl, [`${allowed()}/`], { proxy: h.gatewayCaFile, session: c.caFile });
    assert.equal(r.connectStatus, 407);
  });

  void it("kill -9 of the gateway process: it comes back on the same port and knows the same credentials", GUARD, async () => {
    const pid = h.gw.pid;
    assert.ok(pid);
    const port = h.port;
    process.kill(pid, "SIGKILL");
    await until(async () => h.logs.some((l) => /gateway: process restarted/.test(l)), 30_000, "the gateway process to come back");
    assert.equal(h.gw.remoteProxy?.port, port);
    const r = await curl(a.proxyUrl, [`${stripe()}/`, "-H", `Authorization: Bearer ${a.placeholders["STRIPE_API_KEY"]}`], { proxy: h.gatewayCaFile, session: a.caFile });
    assert.equal(r.status, 200, r.stderr);
    assert.equal(h.up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`);
  });

  void it("the proxy's certificate is for its public name, from the gateway CA; the CA key is not in it", GUARD, async () => {
    const t = await proxyTls(h.port, h.gatewayCaPem);
    const chain = t.getPeerCertificate(true);
    assert.equal(chain.subjectaltname, "DNS:localhost");
    t.destroy();
    // A client that does not trust the gateway CA refuses the proxy.
    const r = await curl(a.proxyUrl, [`${allowed()}/`], { proxy: a.caFile, session: a.caFile });
    assert.notEqual(r.exitCode, 0);
    assert.ok(!h.logs.join("\n").includes("PRIVATE KEY"));
  });
});

void describe("remote proxy: guessing credentials is throttled per source address", () => {
  let h: RemoteHarness;
  const FLOODER = "127.0.88.2";
  before(async () => {
    // Long enough that the dozen handshakes below fit in one window even on a loaded machine.
    h = await startRemoteHarness({ authLimits: { failuresPerWindow: 5, windowMs: 12_000 } });
  });
  after(async () => h?.close());

  void it("past the budget nothing is checked (no oracle); users already seen from that address keep working; it recovers", GUARD, async () => {
    const known = await register(h, "known");
    const fresh = await register(h, "fresh");
    const target = `allowed.example:${h.up.httpsPort}`;
    const attempt = async (auth: string): Promise<number> => {
      const t = await proxyTls(h.port, h.gatewayCaPem, "localhost", FLOODER);
      const got = await connectThrough(t, target, auth);
      t.destroy();
      return got.status;
    };
    assert.equal(await attempt(basic(known.user, known.password)), 200, "known authenticates from the flooder's address first");
    const before = h.records.filter((r) => r.rule === "gateway.remote-auth").length;
    for (let i = 0; i < 10; i++) assert.equal(await attempt(basic(known.user, `guess-${i}`)), 407);
    // Over budget for known's name only (counted per source and user): a session that never
    // authenticated from this address is not locked out by guesses at another's (review of #13).
    assert.equal(await attempt(basic(fresh.user, fresh.password)), 200, "another user from the same address is served");
    assert.equal(await attempt(basic(known.user, known.password)), 200, "a user that authenticated from here before is still served");
    // From another address, fresh is served at once.
    const elsewhere = await curl(fresh.proxyUrl, [`https://allowed.example:${h.up.httpsPort}/`], { proxy: h.gatewayCaFile, session: fresh.caFile });
    assert.equal(elsewhere.status, 200, elsewhere.stderr);
    const flood = h.records.filter((r) => r.rule === "gateway.remote-auth").length - before;
    assert.ok(flood <= 2, `11 refusals were recorded as a burst (${flood} records)`);
    // The window passes: fresh authenticates from the flooder's address too.
    await until(async () => (await attempt(basic(fresh.user, fresh.password))) === 200, 30_000, "the throttle window to pass");
  });
});

void describe("remote proxy: one session's connections cannot starve another's", () => {
  let h: RemoteHarness;
  const sockets: net.Socket[] = [];
  before(async () => {
    h = await startRemoteHarness({ limits: { maxConnectionsPerSession: 16 }, authLimits: { pendingPerSource: 32 } });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await h?.close();
  });

  void it("A holds its cap of tunnels and floods slow unauthenticated connections; B's requests stay fast", GUARD, async () => {
    const a = await register(h, "hog");
    const b = await register(h, "victim");
    const target = `allowed.example:${h.up.httpsPort}`;
    const baseline = await curl(b.proxyUrl, [`https://${target}/`], { proxy: h.gatewayCaFile, session: b.caFile });
    assert.equal(baseline.status, 200, baseline.stderr);
    // A: 40 authenticated tunnels that never start their inner TLS (the cap is 16).
    let opened = 0;
    for (let i = 0; i < 40; i++) {
      const t = await proxyTls(h.port, h.gatewayCaPem);
      t.on("error", () => undefined);
      sockets.push(t);
      if ((await connectThrough(t, target, basic(a.user, a.password))).status === 200) opened++;
    }
    assert.ok(opened <= 16, `A got at most its cap of connections (${opened})`);
    // A: 150 TCP connections from the same address as B that never send a byte (slowloris before TLS).
    for (let i = 0; i < 150; i++) {
      const s = net.connect({ host: "127.0.0.1", port: h.port });
      s.on("error", () => undefined);
      sockets.push(s);
    }
    await until(async () => sockets.slice(40).every((s) => s.remoteAddress !== undefined || s.destroyed), 30_000, "A's connections to be made");
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await curl(b.proxyUrl, [`https://${target}/`], { proxy: h.gatewayCaFile, session: b.caFile });
      assert.equal(r.status, 200, `B's request ${i}: ${r.stderr}`);
      times.push(r.ms);
    }
    const worst = Math.max(...times);
    console.log(`remote proxy: B's request with A hogging: ${times.join(", ")} ms (baseline ${baseline.ms} ms)`);
    assert.ok(worst < 10_000, `B's requests stay fast (worst ${worst} ms)`);
    assert.ok(h.records.some((r) => r.sessionId === "hog" && r.rule === "gateway.limits.connections"), "A's refusals are A's records");
  });
});

void describe("remote proxy: a public address instead of a name", () => {
  let h: RemoteHarness;
  before(async () => {
    h = await startRemoteHarness({ publicHost: "127.0.0.1" });
  });
  after(async () => h?.close());

  void it("the certificate carries the address (IP SAN) and clients verify it", GUARD, async () => {
    const a = await register(h, "by-ip");
    const t = await proxyTls(h.port, h.gatewayCaPem, "127.0.0.1");
    assert.equal(t.getPeerCertificate().subjectaltname, "IP Address:127.0.0.1");
    t.destroy();
    const r = await curl(`https://${a.user}:${a.password}@127.0.0.1:${h.port}`, [`https://api.stripe.com:${h.up.httpsPort}/`, "-H", `Authorization: Bearer ${a.placeholders["STRIPE_API_KEY"]}`], { proxy: h.gatewayCaFile, session: a.caFile });
    assert.equal(r.status, 200, r.stderr);
    assert.equal(h.up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`);
  });
});
