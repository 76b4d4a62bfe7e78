/**
 * A remote node's sandbox networks (issue 13) across a node restart, and next to a control plane's
 * own sandbox networks on the same machine: a real `paddock node` process (kill -9 and started
 * again on the same home), the real gateway process with its remote TLS proxy listener on this
 * machine's first non-loopback IPv4 address, and a local upstream the gateway reaches on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { SandboxHandle, SandboxSpec, Store } from "../../src/core/index.ts";
import { parseEnvironment, type EnvironmentSpec } from "../../src/config/index.ts";
import { Egress, loadGatewayCa } from "../../src/control/egress.ts";
import { startGatewayProcess, type GatewayProcess } from "../../src/gateway/index.ts";
import { openVault, type Vault } from "../../src/gateway/vault.ts";
import { openStore } from "../../src/store/index.ts";
import { createNodeCa, newNodeName, remoteNodeCapabilities, RemoteNodeProvider } from "../../src/providers/ec2/index.ts";
import { installationScope } from "../../src/providers/local/index.ts";
import { networkNames } from "../../src/providers/local/network.ts";
import { SECRETS, startUpstreams, type Upstreams } from "../gateway/helpers.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";
import { spawnNode, type NodeProcess } from "./helpers.ts";

const ENV = "node-egress-restart";
const GUARD = { timeout: 180_000 };

function hostAddress(): string {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  throw new Error("this test needs a non-loopback IPv4 address on this machine (the gateway's remote listener binds it)");
}

const nft = (args: string[]): Promise<string> =>
  new Promise((resolve) => execFile("nft", args, (err, stdout) => resolve(err ? "" : stdout)));

void describe("node egress: a remote node's sandbox keeps its one way out across a node restart", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let up: Upstreams;
  let store: Store;
  let vault: Vault;
  let gateway: GatewayProcess;
  let egress: Egress;
  let node: NodeProcess;
  let client: RemoteNodeProvider;
  const address = hostAddress();
  const id = `egn-${process.pid}`;
  let handle: SandboxHandle;

  const curl = async (): Promise<{ code: number; out: string; err: string }> => {
    let out = "";
    let err = "";
    const r = await client.exec(id, {
      argv: ["bash", "-c", `curl -sS -m 30 --proxy-cacert "$CURL_CA_BUNDLE" -H "Authorization: Bearer $STRIPE_API_KEY" https://api.stripe.com:${up.httpsPort}/echo-header`],
      timeoutMs: 60_000, onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()),
    });
    return { code: r.exitCode, out, err };
  };

  before(async () => {
    dir = await tempDir("paddock-node-egress-restart-");
    up = await startUpstreams();
    const parsed = parseEnvironment(`name: ${ENV}\nsecrets: [STRIPE_API_KEY]\nguardrails:\n  network:\n    allow: ["api.stripe.com:${up.httpsPort}"]\n    deny: ["*"]\n`, "paddock.yml");
    assert.deepEqual(parsed.issues, []);
    store = await openStore(join(dir.path, "paddock.db"));
    vault = await openVault({ home: dir.path, store, env: {}, log: () => undefined });
    const gwCa = await loadGatewayCa(vault, address);
    gateway = await startGatewayProcess({
      init: {
        address: "127.0.0.1",
        ports: { proxyPort: 0, httpPort: 0, httpsPort: 0, dnsPort: 0, postgresPort: 0 },
        upstream: { extraCaPem: [up.ca.certPem], hosts: { "api.stripe.com": ["127.0.0.1"] }, trustedAddresses: ["127.0.0.1"] },
        remoteProxy: { host: address, port: 0, publicHost: address, ca: gwCa },
      },
      secrets: vault,
      onRecord: () => undefined,
    });
    egress = new Egress({ gateway, vault, store, gatewayCaPem: gwCa.certPem });
    await vault.set("STRIPE_API_KEY", SECRETS["STRIPE_API_KEY"] ?? "", { environment: ENV });
    const ca = await createNodeCa("node egress restart CA");
    const nodeName = newNodeName();
    const clientCert = await ca.issueClient();
    node = await spawnNode(ca, nodeName);
    client = new RemoteNodeProvider({ url: node.url, nodeName, caPem: ca.certPem, clientCert: async () => clientCert, name: "node-egress", capabilities: remoteNodeCapabilities("ec2") });
    const spec: SandboxSpec = {
      id, mode: "session", base: "host", layers: [],
      compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
      hostname: "egress-restart", env: {},
      recipe: { templateId: "t-node-egress-restart", base: "host", steps: ["true"] },
      remoteEgress: egress.forRemoteSession(id, ENV, 1, parsed.spec as EnvironmentSpec, "paddock.yml"),
    };
    handle = await client.create(spec);
  });

  after(async () => {
    await client?.stop(id).catch(() => false);
    await node?.cleanup();
    await gateway?.close();
    await vault?.idle();
    await store?.close();
    await up?.close();
    await dir?.remove();
  });

  void it("the node's network objects are named by its own home, apart from any control plane's", GUARD, async () => {
    const names = networkNames(installationScope(node.home));
    const table = await nft(["list", "table", "inet", names.table]);
    assert.match(table, /set allowed/, "the node's own host table, in proxy mode");
    assert.match(table, new RegExp(`iifname "${names.vethPrefix}\\*"`));
    assert.doesNotMatch(table, /dnat/, "nothing is redirected to a local gateway");
  });

  void it("curl through the proxy swaps the real secret in, before and after the node is killed and started again", GUARD, async () => {
    const first = await curl();
    assert.equal(first.code, 0, first.err);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`);
    const seen = up.seen.length;
    await node.restart();
    // The restarted node made its host table again and gave the running sandbox back its allowed destination.
    await until(async () => (await nft(["list", "set", "inet", networkNames(installationScope(node.home)).table, "allowed"])).includes(address), 60_000, "the restarted node's host table allows the sandbox's destination again");
    // The control plane's recover sends the state it stored (without the proxy credential): the node's own record wins.
    assert.ok(!JSON.stringify(handle.providerState).includes("HTTPS_PROXY"), "the control plane's copy has no proxy URL");
    assert.equal(await client.recover(id, handle.providerState), "running");
    const again = await curl();
    assert.equal(again.code, 0, again.err);
    assert.equal(up.seen.length, seen + 1);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`);
  });

  void it("a stopped sandbox's destination is closed on the host at once", GUARD, async () => {
    const table = networkNames(installationScope(node.home)).table;
    assert.equal(await client.stop(id), true);
    assert.doesNotMatch(await nft(["list", "set", "inet", table, "allowed"]), new RegExp(address.replace(/\./g, "\\.")));
  });
});
