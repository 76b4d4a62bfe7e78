/** The node PKI: `paddock node-ca` makes a CA the ec2 driver loads; leaves are short-lived, single-purpose and pinned by name. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { createNodeCa, loadNodeCa, newNodeName, nodeUserData } from "../../src/providers/ec2/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { repoRoot } from "./helpers.ts";

const DAY = 86_400_000;

void describe("node PKI", () => {
  void it("`paddock node-ca` prints a bundle the driver loads; its leaves chain to it with one purpose and a short life", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", join(repoRoot, "src/cli/main.ts"), "node-ca"], { cwd: repoRoot });
    assert.match(stdout, /-----BEGIN CERTIFICATE-----[\s\S]+-----BEGIN PRIVATE KEY-----/);
    const ca = await loadNodeCa(stdout);
    const caCert = new X509Certificate(ca.certPem);
    assert.equal(caCert.ca, true);

    const name = newNodeName();
    const node = new X509Certificate((await ca.issueNode(name)).certPem);
    assert.ok(node.verify(caCert.publicKey), "the node certificate is signed by the CA");
    assert.equal(node.checkHost(name), name);
    assert.equal(node.checkHost(newNodeName()), undefined, "it names only its own node");
    assert.deepEqual(node.keyUsage, ["1.3.6.1.5.5.7.3.1"], "serverAuth only");
    assert.ok(Date.parse(node.validTo) - Date.now() <= 7 * DAY + 60_000);

    const client = new X509Certificate((await ca.issueClient()).certPem);
    assert.ok(client.verify(caCert.publicKey));
    assert.deepEqual(client.keyUsage, ["1.3.6.1.5.5.7.3.2"], "clientAuth only");
    assert.ok(Date.parse(client.validTo) - Date.now() <= DAY + 60_000);
  });

  void it("refuses a bundle without a key, or whose key is another CA's, without quoting it", async () => {
    const a = await loadNodeCa((await createNodeCa()).bundle());
    await assert.rejects(loadNodeCa(a.certPem), (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument" && /certificate and private key/.test(e.message));
    const other = (await createNodeCa()).bundle();
    const mixed = a.certPem + other.slice(other.indexOf("-----BEGIN PRIVATE KEY-----"));
    await assert.rejects(loadNodeCa(mixed), (e: unknown) => e instanceof PaddockError && /does not belong/.test(e.message) && !e.message.includes("PRIVATE KEY"));
  });

  void it("node names are refused unless they are node names (no wildcard, no other domain)", async () => {
    const ca = await createNodeCa();
    for (const bad of ["*.node.paddock.internal", "evil.example", "a.b.node.paddock.internal", ""]) assert.throws(() => ca.issueNode(bad), PaddockError, bad);
  });

  void it("the user data writes the key files private and runs the node with the usual umask", async () => {
    const script = nodeUserData({ caPem: "CA", node: { certPem: "CERT", keyPem: "KEY" }, port: 7443, command: "paddock" });
    assert.match(script, /^#!\/bin\/sh\n/);
    assert.match(script, /\(\numask 077\n[\s\S]*node-key\.pem[\s\S]*\n\)\numask 022\nexec paddock node --listen "\$\{PADDOCK_NODE_ADDRESS:-0\.0\.0\.0\}:7443"/);
    assert.throws(() => nodeUserData({ caPem: "", node: { certPem: "", keyPem: "" }, port: 1, command: "paddock; rm -rf /" }));
  });
});
