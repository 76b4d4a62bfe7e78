/**
 * Egress of an EC2 session (issue 13): the ec2 provider against the FAKE EC2 API (test/fakes/ec2),
 * whose instance boots a REAL `paddock node` on this machine, and the REAL gateway process with
 * its remote TLS proxy listener. The control plane's `Egress.forRemoteSession` makes the session's
 * attachment; the node gives the sandbox a network namespace whose only way out is TCP to that
 * listener. The listener is bound on this machine's first non-loopback IPv4 address (a netns
 * cannot reach the host's loopback); upstreams are local servers the gateway reaches on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PaddockError, type RemoteEgressAttachment, type SandboxHandle, type SandboxSpec, type Store } from "../../src/core/index.ts";
import { parseEnvironment, type EnvironmentSpec } from "../../src/config/index.ts";
import { Egress, loadGatewayCa } from "../../src/control/egress.ts";
import { startGatewayProcess, type GatewayProcess } from "../../src/gateway/index.ts";
import { openVault, type Vault } from "../../src/gateway/vault.ts";
import { openStore } from "../../src/store/index.ts";
import { createNodeCa, ec2Driver, type Ec2Provider } from "../../src/providers/ec2/index.ts";
import { startFakeEc2, type FakeEc2 } from "../fakes/ec2/index.ts";
import { SECRETS, startUpstreams, type Upstreams } from "../gateway/helpers.ts";
import { tempDir } from "../helpers/tmp.ts";
import { freeNodeHome, repoRoot } from "./helpers.ts";

const ENV = "node-egress";
const KEY_ID = "AKIAFAKEPADDOCK00013";
const SECRET = "fake-secret-access-key-for-tests-only";
const TEMPLATE = { id: "lt-0a1b2c3d4e5f60713", name: "paddock-node" };
const GUARD = { timeout: 120_000 };

/** This machine's first non-loopback IPv4 address: routable from a sandbox's netns, unlike 127.0.0.1. */
function hostAddress(): string {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  throw new Error("this test needs a non-loopback IPv4 address on this machine (the gateway's remote listener binds it)");
}

void describe("node egress (fake EC2 API, real node, real gateway): an EC2 session's only way out is the gateway's proxy", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let up: Upstreams;
  let store: Store;
  let vault: Vault;
  let gateway: GatewayProcess;
  let egress: Egress;
  let fake: FakeEc2;
  let provider: Ec2Provider;
  let envSpec: EnvironmentSpec;
  /** A service on every address of this host (as the node's API is on a real host): nothing from a sandbox may reach it. */
  let hostService: Server;
  const hostServiceHits: Socket[] = [];
  const address = hostAddress();
  let remotePort = 0;
  let n = 0;
  const ids: string[] = [];

  const spec = (over: Partial<SandboxSpec> = {}): SandboxSpec => {
    const id = `egr-${process.pid}-${n++}`;
    ids.push(id);
    return {
      id, mode: "session", base: "host", layers: [],
      compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
      hostname: "egress-test", env: {},
      recipe: { templateId: "t-node-egress", base: "host", steps: ["true"] },
      ...over,
    };
  };

  const sh = async (id: string, script: string): Promise<{ code: number; out: string; err: string }> => {
    let out = "";
    let err = "";
    const r = await provider.exec(id, { argv: ["bash", "-c", script], timeoutMs: 60_000, onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()) });
    return { code: r.exitCode, out, err };
  };

  let sessionId = "";
  let attachment: RemoteEgressAttachment | undefined;
  let handle: SandboxHandle;

  before(async () => {
    dir = await tempDir("paddock-node-egress-");
    up = await startUpstreams();
    const file = `name: ${ENV}\nsecrets: [STRIPE_API_KEY]\nguardrails:\n  network:\n    allow: ["api.stripe.com:${up.httpsPort}"]\n    deny: ["*"]\n`;
    const parsed = parseEnvironment(file, "paddock.yml");
    assert.deepEqual(parsed.issues, []);
    envSpec = parsed.spec as EnvironmentSpec;
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
    remotePort = gateway.remoteProxy?.port ?? 0;
    assert.ok(remotePort > 0);
    egress = new Egress({ gateway, vault, store, gatewayCaPem: gwCa.certPem });
    await vault.set("STRIPE_API_KEY", SECRETS["STRIPE_API_KEY"] ?? "", { environment: ENV });
    hostService = createServer((s) => {
      hostServiceHits.push(s);
      s.destroy();
    });
    await new Promise<void>((r) => hostService.listen(0, "0.0.0.0", r));

    const ca = await createNodeCa("node egress test CA");
    fake = await startFakeEc2({
      keys: { [KEY_ID]: SECRET },
      launchTemplates: [TEMPLATE],
      capacity: 2,
      dir: join(dir.path, "instances"),
      bootEnv: { ...process.env, PATH: `${join(repoRoot, "bin")}:${process.env.PATH ?? ""}`, PADDOCK_FROM_SOURCE: "1" },
      onTerminate: (i) => freeNodeHome(join(i.dir, "home")),
    });
    provider = (await ec2Driver.create(
      {
        name: "ec2-egress",
        settings: ec2Driver.parseSettings({ region: "us-east-1", launchTemplateName: TEMPLATE.name, endpoint: fake.url, bootTimeoutMs: 120_000, maxHosts: 1, sessionsPerHost: 100 }),
        credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET, nodeCa: ca.bundle() },
      },
      { home: join(dir.path, "control"), log: () => undefined },
    )) as Ec2Provider;

    const s = spec();
    sessionId = s.id;
    const make = egress.forRemoteSession(s.id, ENV, 1, envSpec, "paddock.yml");
    handle = await provider.create({
      ...s,
      remoteEgress: async () => {
        attachment = await make();
        return attachment;
      },
    });
  });

  after(async () => {
    for (const id of ids) await provider?.stop(id).catch(() => false);
    await provider?.close();
    await fake?.close();
    await gateway?.close();
    await vault?.idle();
    await store?.close();
    await up?.close();
    await new Promise((r) => (hostService ? hostService.close(r) : r(undefined)));
    await dir?.remove();
  });

  void it("curl in the sandbox, through the proxy: the gateway swaps the real secret in towards its bound host only", GUARD, async () => {
    assert.ok(attachment, "the control plane called remoteEgress");
    assert.deepEqual(attachment.allow, [{ host: address, port: remotePort }]);
    const placeholder = attachment.env["STRIPE_API_KEY"] ?? "";
    assert.match(placeholder, /^paddock-ph-[0-9a-f]{32}$/);
    // The control plane stores the handle's state: never the proxy credential (the gateway keeps its hash only).
    const password = decodeURIComponent(new URL(attachment.proxyUrl).password);
    assert.ok(password.length > 20 && !JSON.stringify(handle).includes(password), "the handle's providerState carries no proxy credential");
    const ok = await sh(sessionId, `curl -sS -m 30 --proxy-cacert "$CURL_CA_BUNDLE" -D - -H "Authorization: Bearer $STRIPE_API_KEY" https://api.stripe.com:${up.httpsPort}/echo-header`);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /HTTP\/1\.1 200/);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`, "the real secret upstream");
    assert.ok(!ok.out.includes(SECRETS["STRIPE_API_KEY"] ?? "?"), "never back into the sandbox");
    const env = await sh(sessionId, "env");
    assert.ok(!env.out.includes(SECRETS["STRIPE_API_KEY"] ?? "?"), "no secret in the sandbox's environment");
    const denied = await sh(sessionId, `curl -sS -m 30 --proxy-cacert "$CURL_CA_BUNDLE" -o /dev/null -w '%{http_connect}' https://github.com:${up.httpsPort}/`);
    assert.equal(denied.out, "403", "the environment's network policy applies");
  });

  void it("nothing else: not the upstream or any other port of this host, not a public address, not the node's address, no DNS, no IPv6", GUARD, async () => {
    const hostPort = (hostService.address() as { port: number }).port;
    // The positive control: the same probe reaches the gateway's proxy listener.
    const control = await sh(sessionId, `timeout 20 bash -c 'exec 3<>/dev/tcp/${address}/${remotePort}' && echo open`);
    assert.equal(control.out.trim(), "open", control.err);
    const route = await sh(sessionId, "cat /proc/net/route");
    const gwHex = /^eth0\s+00000000\s+([0-9A-F]{8})/m.exec(route.out)?.[1] ?? "";
    assert.ok(gwHex, `a default route via the node: ${route.out}`);
    const nodeSide = gwHex.match(/../g)!.map((h) => parseInt(h, 16)).reverse().join(".");
    const targets = [
      [address, hostPort, "a service on the gateway host (as the node's own API listens on a real host)"],
      [address, remotePort + 1 === hostPort ? remotePort + 2 : remotePort + 1, "another port of the gateway host"],
      [nodeSide, hostPort, "the node's side of the sandbox's link"],
      [nodeSide, remotePort, "the proxy's port on another address"],
      ["1.1.1.1", 443, "a public address"],
      ["169.254.169.254", 80, "the instance metadata service"],
    ] as const;
    for (const [ip, port, what] of targets) {
      const r = await sh(sessionId, `timeout 20 bash -c 'exec 3<>/dev/tcp/${ip}/${port}' && echo open`);
      assert.notEqual(r.out.trim(), "open", `${what} (${ip}:${port}) must be unreachable`);
      assert.match(r.err, /No route to host|Connection refused/, `${what}: refused at once by the sandbox's rules, not a timeout: ${r.err}`);
    }
    assert.equal(hostServiceHits.length, 0, "no connection ever reached the host service");
    const dns = await sh(sessionId, `cat /etc/resolv.conf; echo ---; getent hosts example.com; echo "getent=$?"; timeout 20 bash -c 'echo x > /dev/udp/1.1.1.1/53' && echo sent; timeout 20 bash -c 'echo x > /dev/udp/${nodeSide}/53' && echo sent`);
    assert.doesNotMatch(dns.out.split("---")[0] ?? "", /nameserver/, "no name server");
    assert.match(dns.out, /getent=2/, "names do not resolve");
    assert.doesNotMatch(dns.out, /sent/, "UDP to port 53 anywhere is refused");
    const v6 = await sh(sessionId, "cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6; cat /proc/net/if_inet6 | grep -c eth0 || true");
    assert.deepEqual(v6.out.trim().split("\n"), ["1", "0"], "no IPv6 on the sandbox's link");
  });

  void it("a gateway host that does not resolve, or resolves to loopback, is refused before the sandbox starts", GUARD, async () => {
    const base = { env: { HTTPS_PROXY: "https://u:p@x:1" }, files: [], proxyUrl: "https://u:p@x:1" };
    const unresolvable = spec({ remoteEgress: async () => ({ ...base, allow: [{ host: "no-such-gateway.invalid", port: 443 }] }) });
    await assert.rejects(provider.create(unresolvable), (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && /does not resolve/.test(e.message));
    const loopback = spec({ remoteEgress: async () => ({ ...base, allow: [{ host: "127.0.0.1", port: 443 }] }) });
    await assert.rejects(provider.create(loopback), (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && /loopback/.test(e.message));
    assert.deepEqual((await provider.list()).filter((i) => i === unresolvable.id || i === loopback.id), []);
  });

  void it("a sandbox without remoteEgress has no way out at all; SandboxSpec.egress (a local netns) is refused", GUARD, async () => {
    const none = spec();
    await provider.create(none);
    const r = await sh(none.id, `timeout 20 bash -c 'exec 3<>/dev/tcp/${address}/${remotePort}' && echo open; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "`);
    assert.doesNotMatch(r.out, /open/);
    assert.deepEqual(r.out.trim().split("\n"), ["lo"], "loopback only");
    await assert.rejects(provider.create(spec({ egress: async () => ({ env: {}, files: [] }) })), (e: unknown) => e instanceof PaddockError && e.code === "unavailable");
  });
});
