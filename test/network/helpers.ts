/**
 * Fixtures for the sandbox network tests: free ports, a stand-in gateway (TCP listeners for the
 * proxy/http/https/dns ports and a UDP one for dns, each answering with its name and recording the
 * peer address), and a python probe that runs inside a sandbox. Nothing here sends a packet to an
 * address that is not on this machine: public addresses in probes are either DNATed to the
 * stand-in gateway inside the sandbox or dropped before they leave its namespace.
 */
import { execFileSync } from "node:child_process";
import { createServer } from "node:net";
import type { AddressInfo, Server } from "node:net";
import { createSocket } from "node:dgram";
import type { Socket } from "node:dgram";
import type { GatewayEndpoints } from "../../src/gateway/types.ts";
import { networkNames } from "../../src/providers/local/network.ts";

/** The gateway's ports; `postgresPort` optional, as openNetworkManager takes them. */
export type Ports = Omit<GatewayEndpoints, "address" | "postgresPort"> & { postgresPort?: number };

/** A random scope no real installation uses (12 hex). */
export function testScope(): string {
  return `fe${Math.floor(Math.random() * 0xffffffffff)
    .toString(16)
    .padStart(10, "0")}`;
}

/** `count` distinct TCP ports that are free right now (bound to port 0, then closed). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  const ports = new Set<number>();
  while (ports.size < count) {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, "0.0.0.0", r));
    servers.push(s);
    ports.add((s.address() as AddressInfo).port);
  }
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return [...ports];
}

export interface Hit {
  listener: string;
  peer: string;
}

export interface StandIn {
  hits: Hit[];
  close(): Promise<void>;
}

/** TCP listeners answering `<name> <peer>\n` to the first line; records every connection. */
export async function listenTcp(listeners: { name: string; host: string; port: number }[], hits: Hit[]): Promise<Server[]> {
  const servers: Server[] = [];
  for (const l of listeners) {
    const s = createServer((sock) => {
      const peer = sock.remoteAddress ?? "?";
      hits.push({ listener: l.name, peer });
      sock.on("error", () => undefined);
      sock.once("data", () => sock.end(`${l.name} ${peer}\n`));
    });
    await new Promise<void>((r) => s.listen(l.port, l.host, r));
    servers.push(s);
  }
  return servers;
}

export async function startStandInGateway(address: string, ports: Ports): Promise<StandIn> {
  const hits: Hit[] = [];
  const tcp = await listenTcp(
    [
      { name: "proxy", host: address, port: ports.proxyPort },
      { name: "http", host: address, port: ports.httpPort },
      { name: "https", host: address, port: ports.httpsPort },
      { name: "dns-tcp", host: address, port: ports.dnsPort },
      ...(ports.postgresPort !== undefined ? [{ name: "postgres", host: address, port: ports.postgresPort }] : []),
    ],
    hits,
  );
  const udp: Socket = createSocket("udp4");
  udp.on("message", (_msg, rinfo) => {
    hits.push({ listener: "dns-udp", peer: rinfo.address });
    udp.send(`dns-udp ${rinfo.address}\n`, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => udp.bind(ports.dnsPort, address, r));
  return {
    hits,
    close: async () => {
      await Promise.all(tcp.map((s) => new Promise((r) => s.close(r))));
      await new Promise<void>((r) => udp.close(() => r()));
    },
  };
}

/**
 * `python3 -c PROBE kind host port [timeout]`: prints `OK <reply>` or `ERR <errno name>`
 * (`ERR timeout` when nothing answered). kind: tcp | udp | icmp.
 */
export const PROBE = String.raw`
import errno, socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 3
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if kind == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(timeout)
        s.connect((host, port)); s.sendall(b"hi\n"); print("OK", s.recv(200).decode().strip())
    elif kind == "udp":
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.sendto(b"hi", (host, port)); print("OK", s.recv(200).decode().strip())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); s.settimeout(timeout)
        s.sendto(b"\x08\x00\x00\x00\x00\x01\x00\x01pdk", (host, 0)); s.recv(200); print("OK echo")
except socket.timeout:
    print("ERR timeout")
except OSError as e:
    print("ERR", errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__)
`;

/** What the host shows of an installation's network objects (for leak assertions). */
export function hostObjects(scope: string): string[] {
  const out: string[] = [];
  const links = execFileSync("ip", ["-o", "link"], { encoding: "utf8" });
  for (const l of links.split("\n")) {
    const name = /^\d+: ([^:@]+)/.exec(l)?.[1];
    const names = networkNames(scope);
    if (name && (name.startsWith(names.vethPrefix) || name === names.dummy)) out.push(`link ${name}`);
  }
  for (const n of execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n"))
    if (n.startsWith(`paddock-${scope}-`)) out.push(`netns ${n.split(" ")[0] ?? ""}`);
  if (execFileSync("nft", ["list", "tables"], { encoding: "utf8" }).includes(`paddock_${scope}`)) out.push(`table paddock_${scope}`);
  return out;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
