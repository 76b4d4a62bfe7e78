/**
 * Network manager lifecycle without sandboxes: naming, restart (adoption of what sessions left),
 * leaks, range clashes, cleanup, and acquire/release latency (printed, not asserted).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readlinkSync } from "node:fs";
import type { NetworkManager } from "../../src/providers/local/network.ts";
import { networkNames, openNetworkManager } from "../../src/providers/local/network.ts";
import { rootOnly } from "../native/helpers.ts";
import type { Ports } from "./helpers.ts";
import { freePorts, hostObjects, percentile, testScope } from "./helpers.ts";
import { until } from "../helpers/wait.ts";

const opened: { scope: string; mgr: NetworkManager }[] = [];

async function open(scope: string, ports: Ports, extra: { poolSize?: number; octet?: number; quietMs?: number } = {}): Promise<NetworkManager> {
  const mgr = await openNetworkManager({ scope, ports, ...extra });
  opened.push({ scope, mgr });
  return mgr;
}

async function testPorts(): Promise<Ports> {
  const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
  return { proxyPort, httpPort, httpsPort, dnsPort };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

void describe("network manager lifecycle", rootOnly, () => {
  after(async () => {
    for (const { mgr } of opened.reverse()) await mgr.close({ removeHostObjects: true }).catch(() => undefined);
    for (const { scope } of opened) assert.deepEqual(hostObjects(scope), [], `nothing left of ${scope}`);
  });

  void it("names everything from the scope, within 15 characters", () => {
    const n = networkNames("0123456789ab");
    assert.deepEqual(n, { dummy: "pdk0123456789ab", table: "paddock_0123456789ab", vethPrefix: "pk012345678", netnsPrefix: "paddock-0123456789ab-" });
    assert.ok(`${n.vethPrefix}ffff`.length <= 15);
    assert.ok(n.dummy.length <= 15);
    assert.throws(() => networkNames("../etc"), /bad installation scope/);
  });

  void it("survives a control-plane restart: sessions keep their networks, the stale pool goes", async () => {
    const scope = testScope();
    const ports = await testPorts();
    const m1 = await open(scope, ports, { poolSize: 2 });
    // The pool fills in the background: wait for its two namespaces; s1 takes one of them, and one
    // missing is less than a refill's batch, so the other stays alone.
    await until(async () => hostObjects(scope).filter((o) => o.startsWith("netns ")).length === 2, 20_000, "m1's pool of 2 network namespaces");
    const s1 = await m1.acquire("s1");
    await assert.rejects(m1.acquire("s1"), /already has a network/);
    // A second manager on the same scope while m1's pool exists = a restart after a crash.
    const m2 = await open(scope, ports, { poolSize: 0 });
    assert.equal(m2.gatewayIp, m1.gatewayIp, "an existing gateway interface pins the range");
    assert.deepEqual(await m2.list(), ["s1"]);
    assert.deepEqual(await m2.leaks(new Set(["s1"])), [], "the dead manager's pool was removed");
    assert.match((await m2.leaks(new Set())).join("\n"), /network of sandbox s1 \(no live session\)/);
    const s2 = await m2.acquire("s2");
    assert.notEqual(s2.sandboxIp, s1.sandboxIp);
    assert.notEqual(s2.hostIface, s1.hostIface);
    await m1.close(); // leaves host objects: m2 still runs
    assert.ok(hostObjects(scope).includes(`link ${networkNames(scope).dummy}`));
    await m2.release("s1");
    await m2.release("s1");
    await m2.release("never-existed");
    assert.deepEqual(await m2.list(), ["s2"]);
    await m2.close();
    assert.deepEqual(
      hostObjects(scope).filter((o) => o.startsWith("netns")),
      [`netns ${s2.netnsPath.split("/").pop() ?? ""}`],
      "close() without removeHostObjects keeps running sessions' networks",
    );
    const m3 = await open(scope, ports);
    assert.deepEqual(await m3.list(), ["s2"]);
    await m3.close({ removeHostObjects: true });
    assert.deepEqual(hostObjects(scope), []);
    assert.doesNotMatch(execFileSync("ip", ["route", "show", "table", "all"], { encoding: "utf8" }), new RegExp(m3.subnet.replace(/\./g, "\\.")));
  });

  void it("reports half-made objects as leaks and removes them with the host objects", async () => {
    const scope = testScope();
    const mgr = await open(scope, await testPorts(), { poolSize: 0 });
    const orphan = `${networkNames(scope).netnsPrefix}00ff`;
    execFileSync("ip", ["netns", "add", orphan]);
    assert.deepEqual(await mgr.leaks(new Set()), [`network namespace without a veth: /run/netns/${orphan}`]);
    await mgr.close({ removeHostObjects: true });
    assert.deepEqual(hostObjects(scope), []);
  });

  void it("refuses a range that overlaps an existing route, and picks a free one otherwise", async () => {
    const scope = testScope();
    const octet = 200 + (parseInt(scope.slice(0, 4), 16) % 50);
    // A local-only blackhole route stands in for someone else's network in that range.
    execFileSync("ip", ["route", "add", "blackhole", `10.${octet}.7.0/24`]);
    try {
      await assert.rejects(open(scope, await testPorts(), { octet }), new RegExp(`10\\.${octet}\\.0\\.0/16 overlaps route 10\\.${octet}\\.7\\.0/24`));
      assert.deepEqual(hostObjects(scope), [], "a refused open leaves nothing");
      const mgr = await open(scope, await testPorts(), { poolSize: 0 });
      assert.notEqual(mgr.gatewayIp, `10.${octet}.0.1`);
      await mgr.close({ removeHostObjects: true });
    } finally {
      execFileSync("ip", ["route", "del", "blackhole", `10.${octet}.7.0/24`]);
    }
  });

  void it("refuses to open beside another installation's table that matches its interfaces, and names the way out", async () => {
    const scope = testScope();
    // A left-over table of an installation whose scope shares our veth prefix (a crash's leftover, say).
    const other = `${scope.slice(0, 9)}${scope.slice(9) === "fff" ? "000" : "fff"}`;
    execFileSync("nft", ["-f", "-"], { input: `table inet paddock_${other} {\n chain input { type filter hook input priority filter - 10; policy accept; iifname "${networkNames(other).vethPrefix}*" drop; }\n}\n` });
    try {
      await assert.rejects(open(scope, await testPorts(), { poolSize: 0 }), (err: Error) => {
        assert.match(err.message, new RegExp(`nft table inet paddock_${other}\\) match this installation's interfaces ${networkNames(scope).vethPrefix}\\*`));
        assert.match(err.message, new RegExp(`nft delete table inet paddock_${other}`));
        return true;
      });
      assert.deepEqual(hostObjects(scope), [], "a refused open leaves nothing");
    } finally {
      execFileSync("nft", ["delete", "table", "inet", `paddock_${other}`]);
    }
  });

  void it("hands out networks concurrently beyond the pool", async () => {
    const scope = testScope();
    const mgr = await open(scope, await testPorts(), { poolSize: 2 });
    const ids = ["c1", "c2", "c3", "c4", "c5"];
    const nets = await Promise.all(ids.map((id) => mgr.acquire(id)));
    assert.equal(new Set(nets.map((n) => n.sandboxIp)).size, 5);
    assert.deepEqual(await mgr.list(), ids);
    await Promise.all(ids.map((id) => mgr.release(id)));
    assert.deepEqual(await mgr.list(), []);
    await mgr.close({ removeHostObjects: true });
    assert.deepEqual(hostObjects(scope), []);
  });

  void it("release returns at once; released networks go in the background, never to the next sandbox", async () => {
    const scope = testScope();
    const mgr = await open(scope, await testPorts(), { poolSize: 0 });
    const first = await Promise.all(["r1", "r2", "r3"].map((id) => mgr.acquire(id)));
    await Promise.all(["r1", "r2", "r3"].map((id) => mgr.release(id)));
    // Until they are gone, their addresses are not handed out again.
    const next = await mgr.acquire("r4");
    assert.ok(!first.some((n) => n.sandboxIp === next.sandboxIp || n.hostIface === next.hostIface));
    // list() and leaks() finish the deletions first.
    assert.deepEqual(await mgr.list(), ["r4"]);
    assert.deepEqual(await mgr.leaks(new Set(["r4"])), []);
    const names = hostObjects(scope);
    for (const n of first) {
      assert.ok(!names.includes(`link ${n.hostIface}`), `${n.hostIface} is gone`);
      assert.ok(!names.includes(`netns ${n.netnsPath.split("/").pop() ?? ""}`), `${n.netnsPath} is gone`);
    }
    await mgr.close({ removeHostObjects: true });
    assert.deepEqual(hostObjects(scope), []);
  });

  void it("cuts off a released network whose namespace something still holds", async () => {
    const scope = testScope();
    const mgr = await open(scope, await testPorts(), { poolSize: 0 });
    const net = await mgr.acquire("held");
    // A process inside keeps the namespace alive after its unmount, so the kernel keeps the veth.
    const holder = spawn("nsenter", [`--net=${net.netnsPath}`, "sleep", "600"], { stdio: "ignore" });
    try {
      await until(async () => existsSync(`/proc/${holder.pid ?? 0}/ns/net`) && readlinkSync(`/proc/${holder.pid ?? 0}/ns/net`) !== readlinkSync("/proc/self/ns/net"), 5_000, "the holder inside the namespace");
      await mgr.release("held");
      assert.deepEqual(await mgr.list(), []);
      assert.ok(!hostObjects(scope).includes(`link ${net.hostIface}`), "the veth was deleted explicitly");
    } finally {
      holder.kill("SIGKILL");
    }
    await mgr.close({ removeHostObjects: true });
    assert.deepEqual(hostObjects(scope), []);
  });

  void it("keeps the pool full in the background, also after a burst larger than the pool", async () => {
    const scope = testScope();
    const mgr = await open(scope, await testPorts(), { poolSize: 3, quietMs: 10 });
    const netns = (): number => hostObjects(scope).filter((o) => o.startsWith("netns ")).length;
    await until(async () => netns() === 3, 20_000, "a pool of 3 namespaces");
    const ids = ["b1", "b2", "b3", "b4", "b5"];
    const nets = await Promise.all(ids.map((id) => mgr.acquire(id)));
    assert.equal(new Set(nets.map((n) => n.sandboxIp)).size, 5);
    for (const id of ids) mgr.started(id);
    await until(async () => netns() === 5 + 3, 20_000, "the pool refilled beside 5 sandboxes");
    await Promise.all(ids.map((id) => mgr.release(id)));
    await until(async () => netns() === 3, 20_000, "the 5 released namespaces deleted");
    assert.deepEqual(await mgr.leaks(new Set()), []);
    await mgr.close({ removeHostObjects: true });
    assert.deepEqual(hostObjects(scope), []);
  });

  void it("acquire and release latency (p50 of 50)", async () => {
    const scope = testScope();
    const ports = await testPorts();
    const report = async (label: string, poolSize: number | undefined, gapMs: number): Promise<void> => {
      const mgr = await open(scope, ports, poolSize === undefined ? {} : { poolSize });
      await sleep(300);
      const acq: number[] = [];
      const rel: number[] = [];
      for (let i = 0; i < 50; i++) {
        const t0 = performance.now();
        await mgr.acquire(`lat-${i}`);
        acq.push(performance.now() - t0);
        const t1 = performance.now();
        await mgr.release(`lat-${i}`);
        rel.push(performance.now() - t1);
        if (gapMs) await sleep(gapMs);
      }
      await mgr.close();
      const f = (xs: number[]): string => `p50 ${percentile(xs, 50).toFixed(2)} ms, p90 ${percentile(xs, 90).toFixed(2)} ms`;
      console.log(`network ${label}: acquire ${f(acq)}; release ${f(rel)}`);
    };
    await report("default pool, 50 ms between sessions", undefined, 50);
    await report("default pool, back to back", undefined, 0);
    await report("no pool (built on demand)", 0, 0);
    const mgr = await open(scope, ports, { poolSize: 0 });
    await mgr.close({ removeHostObjects: true });
    assert.deepEqual(hostObjects(scope), []);
  });
});
