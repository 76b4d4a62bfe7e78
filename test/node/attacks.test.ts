/**
 * Adversarial review of the remote node's wire (issue #13): a node runs tenants' code, so the
 * control plane's client must survive whatever a node (or whatever took one over) sends back.
 * The "node" here is a hostile stand-in: a real mutual-TLS server with a real node certificate
 * from the CA, answering exec with frames the protocol does not allow.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, request as httpsRequest, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import { createNodeCa, newNodeName, remoteNodeCapabilities, RemoteNodeProvider, type NodeCa, type PemPair } from "../../src/providers/ec2/index.ts";
import { PaddockError, type SandboxSpec } from "../../src/core/index.ts";
import { until } from "../helpers/wait.ts";
import { spawnNode, type NodeProcess } from "./helpers.ts";

void describe("remote node client against a hostile node", () => {
  let ca: NodeCa;
  let clientCert: PemPair;
  let server: Server;
  let wss: WebSocketServer;
  let client: RemoteNodeProvider;
  /** What the hostile node answers the exec's first frame with. */
  let reply: (send: (data: string | Buffer) => void) => void = () => undefined;

  before(async () => {
    ca = await createNodeCa("attacks node CA");
    clientCert = await ca.issueClient();
    const nodeName = newNodeName();
    const tls = await ca.issueNode(nodeName);
    server = createServer({ ca: ca.certPem, cert: tls.certPem, key: tls.keyPem, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" });
    wss = new WebSocketServer({ noServer: true });
    server.on("upgrade", (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => ws.once("message", () => reply((d) => ws.send(d)))));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = new RemoteNodeProvider({ url, nodeName, caPem: ca.certPem, clientCert: async () => clientCert, name: "hostile-node", capabilities: remoteNodeCapabilities("ec2") });
  });
  after(async () => {
    for (const c of wss?.clients ?? []) c.terminate();
    wss?.close();
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  for (const [what, frame] of [
    ["a text frame that is not JSON", "this is not json"],
    ["a JSON text frame that is not an exec end", "null"],
    ["an exit without a result", JSON.stringify({ type: "exit" })],
  ] as const) {
    void it(`${what}: exec rejects with a PaddockError naming the node; the control plane does not crash`, async () => {
      reply = (send) => send(frame);
      const outcome = await client.exec("sbx-1", { argv: ["true"] }).then((r) => r, (e: unknown) => e);
      assert.ok(outcome instanceof PaddockError, `expected a PaddockError, got ${JSON.stringify(outcome) ?? String(outcome)}`);
      assert.match(outcome.message, /hostile|n-[0-9a-f]+\.node/, outcome.message);
    });
  }
});

void describe("paddock node against a client with a valid certificate sending malformed requests (a real node process)", () => {
  let ca: NodeCa;
  let node: NodeProcess;
  let clientCert: PemPair;
  let client: RemoteNodeProvider;

  before(async () => {
    ca = await createNodeCa("attacks node CA 2");
    const nodeName = newNodeName();
    clientCert = await ca.issueClient();
    node = await spawnNode(ca, nodeName);
    client = new RemoteNodeProvider({ url: node.url, nodeName, caPem: ca.certPem, clientCert: async () => clientCert, name: "node-attacks", capabilities: remoteNodeCapabilities("ec2") });
  });
  after(async () => {
    await node?.cleanup();
  });

  void it("a bad percent-escape in a sandbox id (HTTP and the exec upgrade) is refused; the node keeps serving", async () => {
    const tls = { ca: ca.certPem, cert: clientCert.certPem, key: clientCert.keyPem, servername: "x", checkServerIdentity: () => undefined, agent: false as const };
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(new URL("/v1/sandboxes/%E0%A4%A/file?path=/etc/hostname", node.url), tls, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    assert.ok(status >= 400 && status < 500, `HTTP ${status}`);
    // The exec upgrade: the node must refuse it, not die of it.
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(`${node.url.replace(/^https:/, "wss:")}/v1/sandboxes/%E0%A4%A/exec`, tls as unknown as WebSocket.ClientOptions);
      ws.on("open", () => ws.close());
      ws.on("error", () => resolve());
      ws.on("close", () => resolve());
      ws.on("unexpected-response", () => resolve());
    });
    const health = await client.health();
    assert.equal(health.ok, true, `the node stopped answering: ${health.detail}\n${node.log()}`);
    assert.equal(node.proc.exitCode, null, `the node process exited:\n${node.log()}`);
  });
  void it("a create aborted while the node builds the template leaves no sandbox running on the node", async () => {
    const spec: SandboxSpec = {
      id: `abrt-${process.pid}`, mode: "session", base: "host", layers: [], hostname: "attacks", env: {},
      compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
      // Slow enough that the abort lands while the node is busy with this create.
      recipe: { templateId: `t-abort-${process.pid}`, base: "host", steps: [`sleep 3; echo ${process.pid} > /opt-abort-marker`] },
    };
    const abort = new AbortController();
    const creating = client.create(spec, abort.signal).then(() => "created", (e: unknown) => e);
    // The node has read the request and is building (its build sandbox is listed): now the client goes.
    await until(async () => (await client.list()).some((id) => id.startsWith("b-")), 60_000, "the node to start building the template");
    abort.abort();
    const outcome = await creating;
    assert.notEqual(outcome, "created", "the create was aborted before the node answered");
    await until(async () => node.log().includes(`sandbox ${spec.id} was being created: stopped it`), 60_000, "the node to stop the sandbox its client no longer waits for");
    assert.deepEqual((await client.list()).filter((id) => id === spec.id), [], "the aborted create's sandbox is not running on the node");
  });
});
