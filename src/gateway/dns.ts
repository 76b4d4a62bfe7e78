/**
 * The sandboxes' DNS server. It answers from policy alone and never forwards a query anywhere, so
 * no DNS leaves the machine (no tunnel through a resolver). An A query for a name the session's
 * policy could allow on some port is answered with the gateway's own address: the client then
 * connects to the gateway, where the request is judged again. Everything else is NXDOMAIN; AAAA is
 * answered with no data (sandboxes have no IPv6 route); other types NOTIMP; unknown sources REFUSED.
 */
import dgram from "node:dgram";
import net from "node:net";
import * as packet from "dns-packet";
import { canonicalHost, sourceAddress } from "./addresses.ts";
import { couldAllowName } from "./policy.ts";
import type { SessionTable } from "./sessions.ts";
import { LOCAL_API_HOST } from "./local.ts";

const TTL_SECONDS = 5;
const NOTIMP = 4;
const REFUSED = 5;
const NXDOMAIN = 3;
const FORMERR = 1;

/** The answer to one query packet from `source`, or null to drop it (unparseable, or a response). */
export function answer(sessions: SessionTable, gatewayAddress: string, source: string, query: Buffer): Buffer | null {
  let q: packet.Packet;
  try {
    q = packet.decode(query);
  } catch {
    return null;
  }
  if (q.type !== "query") return null;
  const reply = (rcode: number, answers: packet.Answer[] = []): Buffer =>
    packet.encode({
      id: q.id ?? 0,
      type: "response",
      // RA unset: this is not a recursive resolver. AA set: the answer comes from policy.
      flags: packet.AUTHORITATIVE_ANSWER | (rcode & 0xf),
      questions: q.questions ?? [],
      answers,
    });
  const session = sessions.bySourceAddress(sourceAddress(source));
  if (!session) return reply(REFUSED);
  const question = q.questions?.[0];
  if (!question || (q.questions?.length ?? 0) !== 1) return reply(FORMERR);
  const name = canonicalHost(question.name);
  // paddock.internal (the control plane's API for sandboxes) resolves for every registered session.
  const allowed = name !== null && name.ip === undefined && (name.host === LOCAL_API_HOST || couldAllowName(session.spec.policy, name.host));
  if (question.type === "A") {
    if (!allowed) return reply(NXDOMAIN);
    return reply(0, [{ name: question.name, type: "A", class: "IN", ttl: TTL_SECONDS, data: gatewayAddress }]);
  }
  if (question.type === "AAAA") return reply(allowed ? 0 : NXDOMAIN);
  return reply(NOTIMP);
}

export interface DnsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Listen on UDP and TCP `address:port` (0: a free port, the same number for both). With 0, the
 * port UDP got may already be taken for TCP (by any socket on the machine, e.g. an outgoing
 * connection's local port): then both are closed and another port is tried, a few times.
 */
export async function startDns(sessions: SessionTable, address: string, port: number): Promise<DnsServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDnsOn(sessions, address, port);
    } catch (err) {
      const taken = (err as NodeJS.ErrnoException).code === "EADDRINUSE";
      if (port !== 0 || !taken || attempt >= 8) throw err;
    }
  }
}

async function startDnsOn(sessions: SessionTable, address: string, port: number): Promise<DnsServer> {
  const family = net.isIPv6(address) ? "udp6" : "udp4";
  const udp = dgram.createSocket({ type: family });
  udp.on("message", (msg, rinfo) => {
    const out = answer(sessions, address, rinfo.address, msg);
    if (out) udp.send(out, rinfo.port, rinfo.address);
  });
  udp.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(port, address, () => {
      udp.off("error", reject);
      resolve();
    });
  });
  const bound = udp.address().port;
  const open = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    // DNS over TCP counts against the session's connection cap like every other listener.
    const usage = sessions.bySourceAddress(sourceAddress(socket.remoteAddress))?.usage;
    if (usage && !usage.openConnection()) return void socket.destroy();
    open.add(socket);
    socket.once("close", () => {
      open.delete(socket);
      usage?.closeConnection();
    });
    let buf = Buffer.alloc(0);
    socket.on("error", () => socket.destroy());
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const out = answer(sessions, address, socket.remoteAddress ?? "", buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (!out) return void socket.destroy();
        const frame = Buffer.alloc(2 + out.length);
        frame.writeUInt16BE(out.length, 0);
        out.copy(frame, 2);
        socket.write(frame);
      }
      if (buf.length > 4096) socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", (err) => {
      // Nothing listens: give the UDP port back before the caller tries another.
      udp.close(() => reject(err));
    });
    tcp.listen(bound, address, () => resolve());
  });
  return {
    port: bound,
    close: async () => {
      for (const s of open) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
}
