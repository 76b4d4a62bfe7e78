// Attacks on the remote proxy listener (issue 13 review) by a hostile remote sandbox that shares a
// NAT address with others: the real gateway process and real TLS clients on the host (remote
// harness), and remote-auth.ts on its own with a clock the test moves.
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it, after, before } from "node:test";
import { RemoteAuth, passwordHash } from "../../src/gateway/remote-auth.ts";
import { SessionTable } from "../../src/gateway/sessions.ts";
import { secretSource, spec } from "./helpers.ts";
import { until } from "../helpers/wait.ts";
import { basic, connectThrough, credential, inTunnel, proxyTls, remoteSpec, startRemoteHarness, type RemoteHarness } from "./remote-harness.ts";

const GUARD = { timeout: 60_000 };

async function remoteTable(users: Record<string, string>): Promise<SessionTable> {
  const t = new SessionTable(secretSource());
  for (const [user, password] of Object.entries(users)) {
    const { sourceIp: _local, ...base } = spec(`s-${user}`);
    await t.register({ ...base, remote: { user, passwordSha256: passwordHash(password) } });
  }
  return t;
}

void describe("remote proxy attacks: a guesser behind a shared NAT address", () => {
  void it("cannot lock out a session that has not yet authenticated from that address", async () => {
    const auth = new RemoteAuth(await remoteTable({ pdkvictimvictimvi: "victim-pw", pdkguessedguessed: "guessed-pw" }), { failuresPerWindow: 3, windowMs: 60_000, pendingPerSource: 4, pendingTotal: 8 }, () => 0);
    // The attacker floods bad credentials: random user names, and guesses at a name it somehow knows.
    for (let i = 0; i < 50; i++) assert.equal(auth.authenticate(basic(`pdkrandom${i}xxxxxxxx`, "x"), "nat").ok, false);
    for (let i = 0; i < 50; i++) assert.equal(auth.authenticate(basic("pdkguessedguessed", `g${i}`), "nat").ok, false);
    for (let i = 0; i < 50; i++) assert.equal(auth.authenticate("Basic !!!", "nat").ok, false);
    const victim = auth.authenticate(basic("pdkvictimvictimvi", "victim-pw"), "nat");
    assert.ok(victim.ok && victim.session.spec.id === "s-pdkvictimvictimvi", "a new session behind the same NAT address is served");
    // Guessing one user's password stays capped: past the budget even the right one is not checked.
    assert.deepEqual(auth.authenticate(basic("pdkguessedguessed", "guessed-pw"), "nat"), { ok: false, throttled: true });
    assert.ok(auth.authenticate(basic("pdkguessedguessed", "guessed-pw"), "elsewhere").ok);
  });

  void it("very long user names share one window per source (bounded state)", async () => {
    const auth = new RemoteAuth(await remoteTable({ pdkvictimvictimvi: "victim-pw" }), { failuresPerWindow: 3, windowMs: 60_000, pendingPerSource: 4, pendingTotal: 8 }, () => 0);
    for (let i = 0; i < 3; i++) auth.authenticate(basic(`${"u".repeat(100)}${i}`, "x"), "nat");
    assert.deepEqual(auth.authenticate(basic(`${"u".repeat(100)}z`, "x"), "nat"), { ok: false, throttled: true });
    assert.equal((auth as unknown as { windows: Map<string, unknown> }).windows.size, 1);
  });
});

void describe("remote proxy attacks: the real gateway, a flood from a shared address", () => {
  let h: RemoteHarness;
  const NAT = "127.0.89.7";
  before(async () => {
    h = await startRemoteHarness({ authLimits: { failuresPerWindow: 3, windowMs: 120_000 } });
  });
  after(async () => h?.close());

  void it("a new session, and every session after a gateway restart, authenticates from a flooded address", GUARD, async () => {
    const register = async (id: string): Promise<{ user: string; password: string }> => {
      const c = credential();
      await h.gw.register(remoteSpec(id, c.remote, h.up));
      return c;
    };
    const target = `allowed.example:${h.up.httpsPort}`;
    const attempt = async (auth: string): Promise<number> => {
      const t = await proxyTls(h.port, h.gatewayCaPem, "localhost", NAT);
      const got = await connectThrough(t, target, auth);
      t.destroy();
      return got.status;
    };
    const early = await register("early");
    assert.equal(await attempt(basic(early.user, early.password)), 200);
    // The hostile neighbour: bad credentials well past the budget.
    for (let i = 0; i < 8; i++) assert.equal(await attempt(basic(`pdk${i}notauserxxxxx`, "guess")), 407);
    const late = await register("late");
    assert.equal(await attempt(basic(late.user, late.password)), 200, "a session started after the flood is not locked out");
    // A restarted gateway process knows no one's history: the flood must not lock out `early` now.
    const pid = h.gw.pid;
    assert.ok(pid);
    process.kill(pid, "SIGKILL");
    await until(async () => h.logs.some((l) => /gateway: process restarted/.test(l)), 30_000, "the gateway process to come back");
    for (let i = 0; i < 8; i++) assert.equal(await attempt(basic(`pdk${i}notauserxxxxx`, "guess")), 407);
    assert.equal(await attempt(basic(early.user, early.password)), 200, "after a restart, a flooded address still serves its sessions");
  });
});

void describe("remote proxy attacks: a neighbour that keeps opening connections", () => {
  let h: RemoteHarness;
  const sockets: net.Socket[] = [];
  before(async () => {
    h = await startRemoteHarness({ authLimits: { pendingPerSource: 8 } });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await h?.close();
  });

  void it("never closes an authenticated connection; does close a pending one (the documented limit)", GUARD, async () => {
    const c = credential();
    const reg = await h.gw.register(remoteSpec("churned", c.remote, h.up));
    const target = `allowed.example:${h.up.httpsPort}`;
    const churn = async (n: number): Promise<void> => {
      const made: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        const s = net.connect({ host: "127.0.0.1", port: h.port });
        s.on("error", () => undefined);
        sockets.push(s);
        made.push(new Promise((resolve) => { s.once("connect", () => resolve()); s.once("close", () => resolve()); }));
      }
      await Promise.all(made);
    };
    // Authenticated first: three caps' worth of silent connections later its tunnel still works.
    const authed = await proxyTls(h.port, h.gatewayCaPem);
    assert.equal((await connectThrough(authed, target, basic(c.user, c.password))).status, 200);
    await churn(24);
    const r = await inTunnel(authed, "allowed.example", reg.caCertPem, { headers: { host: target } });
    assert.equal(r.status, 200, `an authenticated connection is never evicted: ${r.body}`);
    // Pending (TLS done, request not yet sent): a cap's worth of new connections closes it.
    const pending = await proxyTls(h.port, h.gatewayCaPem);
    const closed = new Promise<void>((resolve) => pending.once("close", () => resolve()));
    await churn(8);
    await until(async () => pending.destroyed || pending.readyState === "closed", 30_000, "the pending connection to be closed");
    await closed;
  });
});
