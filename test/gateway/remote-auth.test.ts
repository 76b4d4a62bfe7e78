// remote-auth.ts on its own (issue 13): credential checks, the per-source throttle and the
// pending-connection caps, with a clock the test moves. The listener around it is tested with real
// clients in remote-proxy.test.ts.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type net from "node:net";
import { describe, it } from "node:test";
import { RemoteAuth, parseBasic, passwordHash } from "../../src/gateway/remote-auth.ts";
import { SessionTable } from "../../src/gateway/sessions.ts";
import { secretSource, spec } from "./helpers.ts";

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

async function table(): Promise<SessionTable> {
  const t = new SessionTable(secretSource());
  const { sourceIp: _local, ...base } = spec("s1");
  await t.register({ ...base, remote: { user: "pdkaaaaaaaaaaaaaaaa", passwordSha256: passwordHash("right") } });
  await t.register({ ...spec("s2", { sourceIp: undefined }), remote: { user: "pdkbbbbbbbbbbbbbbbb", passwordSha256: passwordHash("other") } });
  return t;
}

/** A stand-in for a socket: destroy() emits close later, as a real one does. */
function fakeSocket(): net.Socket & { destroyedNow: boolean } {
  const e = new EventEmitter() as unknown as net.Socket & { destroyedNow: boolean };
  e.destroyedNow = false;
  (e as unknown as { destroy: () => void }).destroy = () => {
    e.destroyedNow = true;
    setImmediate(() => e.emit("close"));
  };
  return e;
}

void describe("remote auth: credentials, throttle, pending connections", () => {
  void it("parses Basic credentials strictly", () => {
    assert.deepEqual(parseBasic(basic("u", "p:q")), { user: "u", password: "p:q" });
    for (const bad of [undefined, "", "Bearer x", "Basic", "Basic !!!", basic("", "p"), `Basic ${Buffer.from("nocolon").toString("base64")}`]) assert.equal(parseBasic(bad), null, String(bad));
  });

  void it("a registration needs exactly one of sourceIp and remote, and a well-formed credential", async () => {
    const t = new SessionTable(secretSource());
    await assert.rejects(t.register({ ...spec("x"), remote: { user: "pdkaaaaaaaaaaaaaaaa", passwordSha256: passwordHash("p") } }), /exactly one/);
    const { sourceIp: _local, ...base } = spec("y");
    await assert.rejects(t.register(base), /exactly one/);
    await assert.rejects(t.register({ ...base, remote: { user: "short", passwordSha256: passwordHash("p") } }), /remote credential/);
    await t.register({ ...base, remote: { user: "pdkaaaaaaaaaaaaaaaa", passwordSha256: passwordHash("p") } });
    await assert.rejects(t.register({ ...base, id: "z", remote: { user: "pdkaaaaaaaaaaaaaaaa", passwordSha256: passwordHash("q") } }), /already registered to session y/);
  });

  void it("names the session for the right password only; unregister forgets it", async () => {
    const t = await table();
    const auth = new RemoteAuth(t);
    const ok = auth.authenticate(basic("pdkaaaaaaaaaaaaaaaa", "right"), "10.0.0.1");
    assert.ok(ok.ok && ok.session.spec.id === "s1");
    assert.deepEqual(auth.authenticate(basic("pdkaaaaaaaaaaaaaaaa", "other"), "10.0.0.1"), { ok: false, throttled: false }, "B's password is not A's");
    assert.deepEqual(auth.authenticate(basic("pdknobodynobodynobo", "right"), "10.0.0.1"), { ok: false, throttled: false });
    t.unregister("s1");
    assert.equal(auth.authenticate(basic("pdkaaaaaaaaaaaaaaaa", "right"), "10.0.0.1").ok, false);
  });

  void it("past the budget a source's credentials are not checked, except users seen to succeed there; the next window resets", async () => {
    let now = 0;
    const auth = new RemoteAuth(await table(), { failuresPerWindow: 3, windowMs: 1000, pendingPerSource: 4, pendingTotal: 8 }, () => now);
    assert.ok(auth.authenticate(basic("pdkaaaaaaaaaaaaaaaa", "right"), "nat").ok);
    for (let i = 0; i < 3; i++) assert.deepEqual(auth.authenticate(basic("pdkbbbbbbbbbbbbbbbb", `guess${i}`), "nat"), { ok: false, throttled: false });
    assert.deepEqual(auth.authenticate(basic("pdkbbbbbbbbbbbbbbbb", "other"), "nat"), { ok: false, throttled: true }, "the right password is not even checked");
    assert.ok(auth.authenticate(basic("pdkaaaaaaaaaaaaaaaa", "right"), "nat").ok, "a user known at this address keeps working");
    assert.ok(auth.authenticate(basic("pdkbbbbbbbbbbbbbbbb", "other"), "elsewhere").ok, "other addresses are not affected");
    now = 1000;
    assert.ok(auth.authenticate(basic("pdkbbbbbbbbbbbbbbbb", "other"), "nat").ok, "a new window");
  });

  void it("pending connections: at a cap the oldest is closed, never the newest", async () => {
    const auth = new RemoteAuth(await table(), { failuresPerWindow: 3, windowMs: 1000, pendingPerSource: 2, pendingTotal: 3 });
    const [a, b, c] = [fakeSocket(), fakeSocket(), fakeSocket()];
    auth.admit(a, "x");
    auth.admit(b, "x");
    auth.admit(c, "x");
    assert.equal(a.destroyedNow, true, "the oldest of this source went");
    assert.equal(b.destroyedNow || c.destroyedNow, false);
    auth.settle(b); // b authenticated: no longer pending
    const [d, e] = [fakeSocket(), fakeSocket()];
    auth.admit(d, "y");
    auth.admit(e, "z");
    assert.equal(auth.pendingCount, 3);
    const f = fakeSocket();
    auth.admit(f, "w");
    assert.equal(c.destroyedNow, true, "the oldest of all went at the total cap");
    assert.equal(b.destroyedNow, false, "an authenticated connection is never evicted");
    assert.equal(auth.pendingCount, 3);
  });
});
