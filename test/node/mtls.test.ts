/**
 * `paddock node` as a real second process: only clients with a certificate from the installation's
 * node CA, for client authentication and unexpired, get past the TLS handshake; the client only
 * talks to the node its certificate pins; a valid client creates, execs, moves files and stops.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:https";
import { Readable } from "node:stream";
import { createNodeCa, newNodeName, remoteNodeCapabilities, RemoteNodeProvider, type NodeCa, type PemPair } from "../../src/providers/ec2/index.ts";
import { ExecSignals, PaddockError, type SandboxSpec } from "../../src/core/index.ts";
import { layerKey } from "../../src/control/builder.ts";
import { nodeLayerKey } from "../../src/node/index.ts";
import { spawnNode, type NodeProcess } from "./helpers.ts";

const spec = (id: string, over: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id, mode: "session", base: "host", layers: [], hostname: "node-test", env: { FROM_SPEC: "yes" },
  compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
  recipe: { templateId: "t-node-test", base: "host", steps: ["mkdir -p /opt/built && echo from-recipe > /opt/built/marker"] },
  ...over,
});

/** A raw HTTPS GET of /v1/health with these client credentials: the status, or the error that ended it. */
function rawHealth(url: string, ca: string, client: PemPair | null, servername: string): Promise<{ status?: number; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const req = request(new URL("/v1/health", url), {
      ca, servername, agent: false, ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
      checkServerIdentity: () => undefined,
    }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
      res.on("error", (error) => resolve({ error }));
    });
    req.on("error", (error) => resolve({ error }));
    req.end();
  });
}

const refusedAtTls = (r: { status?: number; error?: NodeJS.ErrnoException }, what: string): void => {
  assert.equal(r.status, undefined, `${what}: the node answered HTTP ${String(r.status)} instead of refusing the handshake`);
  assert.ok(r.error, `${what}: no error`);
  assert.match(`${r.error.code ?? ""} ${r.error.message}`, /ERR_SSL|ECONNRESET|EPIPE|alert|certificate|socket hang up/i, what);
};

void describe("paddock node over mutual TLS (a real node process)", () => {
  let ca: NodeCa;
  let nodeName: string;
  let node: NodeProcess;
  let client: RemoteNodeProvider;
  let clientCert: PemPair;

  before(async () => {
    ca = await createNodeCa("test node CA");
    nodeName = newNodeName();
    clientCert = await ca.issueClient();
    node = await spawnNode(ca, nodeName);
    client = new RemoteNodeProvider({ url: node.url, nodeName, caPem: ca.certPem, clientCert: async () => clientCert, name: "node-test", capabilities: remoteNodeCapabilities("ec2") });
  });

  after(async () => {
    if (client) for (const id of await client.list().catch(() => [] as string[])) await client.stop(id).catch(() => undefined);
    await node?.cleanup();
  });

  void it("refuses a client without a certificate at the TLS layer", async () => {
    refusedAtTls(await rawHealth(node.url, ca.certPem, null, nodeName), "no client certificate");
  });

  void it("refuses a client certificate from another CA", async () => {
    const other = await createNodeCa("another installation");
    refusedAtTls(await rawHealth(node.url, ca.certPem, await other.issueClient(), nodeName), "certificate from another CA");
  });

  void it("refuses an expired client certificate from the right CA", async () => {
    const expired = await ca.issueClient({ notBefore: new Date(Date.now() - 3 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    refusedAtTls(await rawHealth(node.url, ca.certPem, expired, nodeName), "expired certificate");
  });

  void it("refuses a node's certificate offered as a client's (server-only purpose)", async () => {
    refusedAtTls(await rawHealth(node.url, ca.certPem, await ca.issueNode(newNodeName()), nodeName), "node certificate as client");
  });

  void it("accepts a valid client certificate", async () => {
    assert.equal((await rawHealth(node.url, ca.certPem, clientCert, nodeName)).status, 200);
    const h = await client.health();
    assert.equal(h.ok, true, h.detail);
  });

  void it("the client refuses a node whose certificate names another node (pinning)", async () => {
    const impostor = new RemoteNodeProvider({ url: node.url, nodeName: newNodeName(), caPem: ca.certPem, clientCert: async () => clientCert, name: "node-test", capabilities: remoteNodeCapabilities("ec2") });
    const h = await impostor.health();
    assert.equal(h.ok, false);
    assert.match(h.detail, /altnames|does not match|Hostname/i);
    await assert.rejects(impostor.list(), (e: unknown) => e instanceof PaddockError && e.code === "unavailable");
  });

  void it("a valid client creates from a recipe, execs (stdin, stderr, exit, signals), moves files and stops", async () => {
    const id = `nt-${process.pid}-a`;
    const handle = await client.create(spec(id));
    assert.equal(handle.id, id);
    assert.ok((await client.list()).includes(id));
    let out = "";
    let err = "";
    const r = await client.exec(id, {
      argv: ["sh", "-c", "cat /opt/built/marker; echo $FROM_SPEC $X; cat; echo oops >&2; exit 3"], env: { X: "per-exec" },
      stdin: Readable.from([Buffer.from("from-stdin\n")]), onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()),
    });
    assert.equal(r.exitCode, 3);
    assert.equal(out, "from-recipe\nyes per-exec\nfrom-stdin\n");
    assert.equal(err, "oops\n");
    assert.equal((await client.exec(id, { argv: ["id", "-u"], onStdout: (b) => (out = b.toString()) })).exitCode, 0);
    assert.equal(out.trim(), "1000", "session commands run as the session user");

    const signals = new ExecSignals();
    const sleeping = client.exec(id, { argv: ["sleep", "60"], signals });
    setTimeout(() => signals.send("SIGTERM"), 300);
    const s = await sleeping;
    assert.equal(s.signal, "SIGTERM");

    await client.writeFile(id, "/workspace/hello.txt", Buffer.from("hello node"), { mode: 0o640 });
    assert.equal((await client.readFile(id, "/workspace/hello.txt")).toString(), "hello node");
    const entry = (await client.listDir(id, "/workspace")).find((e) => e.name === "hello.txt");
    assert.equal(entry?.size, 10);
    assert.equal(entry?.mode, 0o640);
    await assert.rejects(client.readFile(id, "/workspace/../../etc/shadow-nope"), (e: unknown) => e instanceof PaddockError && e.code === "not_found");

    assert.equal(await client.stop(id), true);
    assert.equal(await client.stop(id), false);
    await assert.rejects(client.exec(id, { argv: ["true"] }), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
  });

  void it("a node's sandbox has loopback only: the node's own API and the host are unreachable, the node's key unreadable", async () => {
    const id = `nt-${process.pid}-net`;
    await client.create(spec(id));
    let out = "";
    const port = new URL(node.url).port;
    const r = await client.exec(id, {
      argv: ["bash", "-c", `ls /sys/class/net; (exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null && echo reached-node || echo no-node; test -d /var/tmp && echo var-tmp-visible; cat ${node.home}/tls/node-key.pem 2>/dev/null | wc -c; ls ${node.home} 2>/dev/null | wc -l`],
      onStdout: (b) => (out += b.toString()),
    });
    assert.equal(r.exitCode, 0);
    assert.equal(out, "lo\nno-node\nvar-tmp-visible\n0\n0\n", "only loopback; the node's port (on the host's loopback) is not this loopback; its home (and key) are masked");
    assert.equal(await client.stop(id), true);
  });

  void it("a node process killed with -9 and started again recovers its sandboxes (they kept running)", async () => {
    const id = `nt-${process.pid}-r`;
    await client.create(spec(id));
    await client.writeFile(id, "/workspace/before.txt", Buffer.from("kept"));
    await node.restart();
    assert.match(node.log(), new RegExp(`sandbox ${id} recovered`));
    assert.ok((await client.list()).includes(id), "listed at once, before any recover call");
    assert.equal((await client.readFile(id, "/workspace/before.txt")).toString(), "kept");
    let out = "";
    assert.equal((await client.exec(id, { argv: ["echo", "after"], onStdout: (b) => (out += b.toString()) })).exitCode, 0);
    assert.equal(out, "after\n");
    assert.equal(await client.stop(id), true);
  });

  void it("reuses the layer a recipe step built (same Merkle id as the control plane's builder)", async () => {
    const step = "mkdir -p /opt/built && echo from-recipe > /opt/built/marker";
    assert.equal(nodeLayerKey("host", null, step), layerKey("host", null, step));
    const built = () => node.log().match(/built layer [0-9a-f]{12} \(step 1\)/g)?.length ?? 0;
    await client.create(spec(`nt-${process.pid}-b1`));
    const before = built();
    assert.ok(before >= 1, "the step was built once");
    await client.create(spec(`nt-${process.pid}-b2`));
    assert.equal(built(), before, "the second create built nothing");
    assert.equal(await client.stop(`nt-${process.pid}-b1`), true);
    assert.equal(await client.stop(`nt-${process.pid}-b2`), true);
  });

  void it("a failing recipe step fails the create with the step and its exit code", async () => {
    await assert.rejects(client.create(spec(`nt-${process.pid}-c`, { recipe: { templateId: "t-bad", base: "host", steps: ["echo broken >&2; exit 7"] } })),
      (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument" && /step 1 .*exit code 7/.test(e.message));
  });

  void it("refuses what a node cannot do with `unsupported`, before anything starts", async () => {
    const unavailable = (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && /cannot/.test(e.message);
    await assert.rejects(client.create(spec(`nt-${process.pid}-d`, { egress: async () => ({ env: {}, files: [] }) })), unavailable);
    await assert.rejects(client.create(spec(`nt-${process.pid}-e`, { from: "snap" })), unavailable);
    await assert.rejects(client.snapshot(), unavailable);
    assert.deepEqual((await client.list()).filter((i) => i.startsWith(`nt-${process.pid}-`)), []);
  });
});
