/**
 * Attacks on the Postgres gateway, each refused cleanly while another session's connection keeps
 * working: the real password instead of the placeholder, another session's user, malformed
 * startup packets, a 1 GiB length (before and after login), a connection flood past the
 * per-session cap, a stuck startup, SSL negotiation games (SSLRequest then plaintext, plaintext
 * pipelined behind SSLRequest, GSSENCRequest), and CancelRequests with wrong keys or from
 * another session's address.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import PG from "pg";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { until } from "../helpers/wait.ts";
import { startHarness, type Harness } from "./postgres-harness.ts";

/** A raw TCP client that keeps everything it receives and knows when the gateway closed it. */
interface Raw {
  socket: net.Socket;
  data(): Buffer;
  closed: Promise<void>;
}

function raw(port: number, localAddress = "127.0.0.1"): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    const closed = new Promise<void>((r) => socket.on("close", () => r()));
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", () => undefined);
    socket.once("connect", () => resolve({ socket, data: () => Buffer.concat(chunks), closed }));
    socket.once("error", reject);
  });
}

function startup(params: Record<string, string>, version = 3 << 16): Buffer {
  const body = Buffer.concat([...Object.entries(params).flatMap(([k, v]) => [Buffer.from(`${k}\0${v}\0`)]), Buffer.from([0])]);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.writeUInt32BE(version, 4);
  return Buffer.concat([head, body]);
}

const request = (code: number, extra: number[] = []): Buffer => {
  const b = Buffer.alloc(8 + extra.length * 4);
  b.writeUInt32BE(b.length, 0);
  b.writeUInt32BE(code, 4);
  extra.forEach((v, i) => b.writeInt32BE(v, 8 + i * 4));
  return b;
};

/** SQLSTATE of the first ErrorResponse in `data`, or null. */
function sqlstate(data: Buffer): string | null {
  const at = data.indexOf(0x45);
  if (at < 0) return null;
  const m = /C([0-9A-Z]{5})\0/.exec(data.subarray(at).toString("latin1"));
  return m ? m[1]! : null;
}

void describe("postgres gateway: attacks", () => {
  let pg: TestPostgres;
  let h: Harness;
  /** A connection of the other session, open through every attack. */
  let bystander: PG.Client;

  before(async () => {
    pg = await startPostgres();
    h = await startHarness(pg, { limits: { maxConnectionsPerSession: 6, startupTimeoutMs: 2_000 } });
    bystander = new PG.Client(h.client(h.sessions.s2));
    await bystander.connect();
  });
  after(async () => {
    await bystander?.end().catch(() => undefined);
    await h?.close();
    await pg?.stop();
  });

  const bystanderWorks = async (): Promise<void> => {
    assert.deepEqual((await bystander.query("SELECT 1 AS ok")).rows, [{ ok: 1 }]);
    const fresh = new PG.Client(h.client(h.sessions.s2));
    await fresh.connect();
    await fresh.end();
  };
  const s1Url = (user: string, password: string): string => `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${h.port}/${pg.database}?sslmode=disable`;

  void it("the real password instead of the placeholder fails like any wrong password", async () => {
    for (const user of [h.sessions.s1.user, pg.user]) {
      const c = new PG.Client({ connectionString: s1Url(user, pg.password) });
      await assert.rejects(c.connect(), (e: Error & { code?: string }) => {
        assert.equal(e.code, "28P01");
        assert.equal(e.message, `password authentication failed for user "${user}"`);
        return true;
      });
    }
    assert.ok(h.records.some((r) => r.method === "CONNECT" && r.decision === "denied" && r.rule === "database.auth"));
    await bystanderWorks();
  });

  void it("another session's user and placeholder from this session's address fails the same way", async () => {
    const c = new PG.Client({ connectionString: s1Url(h.sessions.s2.user, h.sessions.s2.placeholder) });
    await assert.rejects(c.connect(), (e: Error & { code?: string }) => e.code === "28P01" && e.message === `password authentication failed for user "${h.sessions.s2.user}"`);
    await bystanderWorks();
  });

  void it("malformed startup packets are refused with an error, then closed", async () => {
    const cases: [string, Buffer, string][] = [
      ["protocol 1234.5678", startup({ user: "sess1" }, (1234 << 16) | 5678), "0A000"],
      ["no user", startup({ database: "appdb" }), "28000"],
      ["unterminated parameter", Buffer.concat([Buffer.from([0, 0, 0, 17, 0, 3, 0, 0]), Buffer.from("user\0sess1")]), "08P01"],
      ["length below the header", Buffer.from([0, 0, 0, 4, 0, 3, 0, 0]), "08P01"],
      ["an HTTP request", Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "54000"],
    ];
    for (const [name, bytes, code] of cases) {
      const r = await raw(h.port);
      r.socket.write(bytes);
      await r.closed;
      assert.equal(sqlstate(r.data()), code, name);
    }
    await bystanderWorks();
  });

  void it("a 1 GiB length is refused at once, in startup and after login", async () => {
    const r = await raw(h.port);
    r.socket.write(Buffer.from([0x40, 0, 0, 0, 0, 3, 0, 0]));
    await r.closed;
    assert.equal(sqlstate(r.data()), "54000");
    const c = new PG.Client({ connectionString: h.url(h.sessions.s1) });
    await c.connect();
    const ended = new Promise<Error>((resolve) => c.on("error", resolve));
    const stream = (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
    const heapBefore = process.memoryUsage().rss;
    stream.write(Buffer.from([0x51, 0x40, 0, 0, 0, 0x53, 0x45, 0x4c]));
    const err = await ended;
    assert.match(err.message, /over the limit|terminated|Connection/i);
    assert.ok(process.memoryUsage().rss - heapBefore < 256 * 1024 * 1024, "no 1 GiB buffer was allocated");
    await c.end().catch(() => undefined);
    await bystanderWorks();
  });

  void it("a flood beyond the per-session cap is refused (53300) while the other session keeps working", async () => {
    // Logged-in clients hold the slots (a silent raw connection would be closed at the 2 s startup deadline).
    const held: PG.Client[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const c = new PG.Client({ connectionString: h.url(h.sessions.s1) });
        await c.connect();
        held.push(c);
      }
      // libpq's order: SSLRequest first. It is declined ('N'), and the startup then gets 53300,
      // so a client shows "too many connections", not an error in the middle of SSL negotiation.
      const over = await raw(h.port);
      over.socket.write(request(80877103));
      await until(async () => over.data().length >= 1, 30_000, "the answer to SSLRequest");
      assert.equal(over.data().subarray(0, 1).toString(), "N");
      over.socket.write(startup({ user: "sess1", database: "appdb" }));
      await over.closed;
      assert.equal(sqlstate(over.data().subarray(1)), "53300");

      await bystanderWorks();
      assert.ok(h.records.some((r) => r.method === "CONNECT" && r.status === 53300 && r.rule === "database.limits"));
    } finally {
      for (const c of held) await c.end().catch(() => undefined);
    }
    // Closed connections give their slots back: a new one from s1 gets in again.
    await until(async () => {
      const c = new PG.Client({ connectionString: h.url(h.sessions.s1) });
      try {
        await c.connect();
        return true;
      } catch {
        return false;
      } finally {
        await c.end().catch(() => undefined);
      }
    }, 30_000, "the session's connection slots to be free again");
  });

  void it("at the cap, a CancelRequest still gets through (cancelling is what a full session needs most)", async () => {
    const clients: PG.Client[] = [];
    try {
      // Fill the session's six slots with logged-in clients; the last runs a long query.
      for (let i = 0; i < 6; i++) {
        const c = new PG.Client({ connectionString: h.url(h.sessions.s1) });
        await c.connect();
        clients.push(c);
      }
      const busy = clients.at(-1)!;
      const realPid = Number((await busy.query("SELECT pg_backend_pid() AS p")).rows[0].p);
      const sleeping = busy.query("SELECT pg_sleep(30)");
      sleeping.catch(() => undefined);
      // A cancel that arrives before the query runs cancels nothing (as with any Postgres).
      await until(async () => (await pg.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${realPid} AND state = 'active'`)).trim() === "1", 30_000, "pg_sleep to run");
      const over = await raw(h.port);
      over.socket.write(startup({ user: "sess1", database: "appdb" }));
      await over.closed;
      assert.equal(sqlstate(over.data()), "53300", "the session is at its cap");
      const key = busy as unknown as { processID: number; secretKey: number };
      const cancel = await raw(h.port);
      cancel.socket.end(request(80877102, [key.processID, key.secretKey]));
      await assert.rejects(sleeping, (err: { code?: string }) => err.code === "57014");
    } finally {
      for (const c of clients) await c.end().catch(() => undefined);
    }
  });

  void it("a stuck startup is closed at the deadline", async () => {
    const r = await raw(h.port);
    r.socket.write(startup({ user: "sess1", database: "appdb" }));
    const started = Date.now();
    await r.closed;
    assert.ok(Date.now() - started >= 1_500, "closed by the startup deadline, not earlier");
    assert.equal(sqlstate(r.data().subarray(r.data().indexOf(0x45))), "08P01");
  });

  void it("SSLRequest then plaintext instead of a TLS ClientHello is refused", async () => {
    const r = await raw(h.port);
    r.socket.write(request(80877103));
    await until(async () => r.data().length >= 1, 30_000, "the answer to SSLRequest");
    assert.equal(r.data().toString("latin1", 0, 1), "S");
    r.socket.write(startup({ user: "sess1", database: "appdb" }));
    await r.closed;
    assert.equal(r.data().length, 1, "nothing but 'S' was sent in the clear");
    await bystanderWorks();
  });

  void it("plaintext pipelined behind SSLRequest (before the handshake) is refused without 'S'", async () => {
    const r = await raw(h.port);
    r.socket.write(Buffer.concat([request(80877103), startup({ user: "sess1", database: "appdb" })]));
    await r.closed;
    assert.notEqual(r.data()[0], 0x53);
    assert.equal(sqlstate(r.data()), "08P01");
  });

  void it("GSSENCRequest is answered 'N' and startup goes on in the clear", async () => {
    const r = await raw(h.port);
    r.socket.write(request(80877104));
    await until(async () => r.data().length >= 1, 30_000, "the answer to GSSENCRequest");
    assert.equal(r.data().toString("latin1"), "N");
    r.socket.write(startup({ user: "sess1", database: "appdb" }));
    await until(async () => r.data().length > 1, 30_000, "the authentication request");
    assert.equal(r.data()[1], 0x52, "AuthenticationSASL follows");
    assert.ok(r.data().includes("SCRAM-SHA-256"));
    r.socket.destroy();
  });

  void it("CancelRequests with wrong keys or from another session's address do nothing; the right one cancels", async () => {
    const c = new PG.Client({ connectionString: h.url(h.sessions.s1) });
    await c.connect();
    try {
      const { pid, key } = { pid: (c as unknown as { processID: number }).processID, key: (c as unknown as { secretKey: number }).secretKey };
      const realPid = Number((await c.query("SELECT pg_backend_pid() AS p")).rows[0].p);
      assert.notEqual(pid, realPid, "the client sees the gateway's keys, not the server's");
      const sleeping = c.query("SELECT pg_sleep(30)");
      const running = async (): Promise<boolean> => (await pg.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${realPid} AND state = 'active'`)).trim() === "1";
      await until(running, 30_000, "pg_sleep to run");
      for (const [from, p, k] of [["127.0.0.1", pid, key ^ 1], ["127.0.0.1", realPid, key], ["127.0.0.2", pid, key]] as const) {
        const r = await raw(h.port, from);
        r.socket.write(request(80877102, [p, k]));
        await r.closed;
        assert.equal(r.data().length, 0);
      }
      assert.equal(await running(), true, "still running after the bogus cancels");
      const r = await raw(h.port);
      r.socket.write(request(80877102, [pid, key]));
      await assert.rejects(sleeping, (e: Error & { code?: string }) => e.code === "57014");
    } finally {
      await c.end();
    }
    await bystanderWorks();
  });

  void it("no record, log line or client-visible message contains the real password", () => {
    const all = JSON.stringify([h.records, h.logs]);
    assert.ok(!all.includes(pg.password));
  });
});
