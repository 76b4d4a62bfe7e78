/**
 * A remote node's "proxy" networks (issue 13) given destinations a sandbox must never reach: the
 * network manager is the last line (whatever a create names, however a gateway's name resolved on
 * the node), so it refuses them before any kernel object lets a sandbox through. Real nftables,
 * namespaces and veths on a random scope, removed afterwards.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { PaddockError } from "../../src/core/index.ts";
import { networkNames, openNetworkManager, unreachableDestination, type NetworkManager } from "../../src/providers/local/network.ts";
import { testScope } from "../network/helpers.ts";

const GUARD = { timeout: 120_000 };

const nft = (args: string[]): Promise<string> =>
  new Promise((resolve) => execFile("nft", args, (err, stdout) => resolve(err ? "" : stdout)));

void describe("node egress attacks: a proxy-mode network never opens the metadata service, its own sandboxes or non-hosts", () => {
  const scope = testScope();
  let net: NetworkManager;

  before(async () => {
    net = await openNetworkManager({ scope, mode: "proxy", poolSize: 0 });
  });

  after(async () => {
    await net?.close({ removeHostObjects: true });
  });

  void it("refuses each such destination at acquire, and leaves nothing behind for the sandbox", GUARD, async () => {
    const [a, b] = net.subnet.split(".");
    const refused = [
      { ip: "169.254.169.254", port: 80, why: /link-local/ },
      { ip: "169.254.170.2", port: 80, why: /link-local/ },
      { ip: net.gatewayIp, port: 443, why: /sandbox network/ },
      { ip: `${a}.${b}.0.7`, port: 443, why: /sandbox network/ },
      { ip: "127.0.0.1", port: 443, why: /loopback/ },
      { ip: "0.0.0.0", port: 443, why: /not a host/ },
      { ip: "224.0.0.1", port: 443, why: /multicast/ },
      { ip: "255.255.255.255", port: 443, why: /broadcast/ },
    ];
    for (const [i, d] of refused.entries()) {
      // Next to a legitimate destination: one bad entry refuses the whole create.
      await assert.rejects(net.acquire(`egress-attack-${i}`, [{ ip: "192.0.2.10", port: 443 }, { ip: d.ip, port: d.port }]),
        (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument" && d.why.test(e.message), `${d.ip}:${d.port} must be refused`);
    }
    assert.deepEqual(await net.list(), [], "no sandbox network was made");
    const allowed = await nft(["list", "set", "inet", networkNames(scope).table, "allowed"]);
    assert.match(allowed, /set allowed/, "the node's host table exists");
    assert.doesNotMatch(allowed, /elements/, "and lets no sandbox through to anything");
  });

  void it("a routable gateway address is let through (the positive control), only that pair, and closed at release", GUARD, async () => {
    const got = await net.acquire("egress-attack-ok", [{ ip: "192.0.2.10", port: 443 }]);
    const table = networkNames(scope).table;
    assert.match(await nft(["list", "set", "inet", table, "allowed"]), new RegExp(`${got.sandboxIp.replace(/\./g, "\\.")} \\. 192\\.0\\.2\\.10 \\. 443`));
    await net.release("egress-attack-ok");
    assert.doesNotMatch(await nft(["list", "set", "inet", table, "allowed"]), /192\.0\.2\.10/);
  });

  void it("unreachableDestination: public and private gateway addresses pass", () => {
    for (const ip of ["192.0.2.10", "10.0.0.5", "172.31.4.9", "203.0.113.1", "169.253.0.1", "223.255.255.254"]) assert.equal(unreachableDestination(ip, "10.213.0.0/16"), null, ip);
    assert.match(unreachableDestination("10.213.9.9", "10.213.0.0/16") ?? "", /sandbox network/);
  });
});
