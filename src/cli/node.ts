/**
 * `paddock node`: run this machine's local runtime for a control plane elsewhere (an EC2 host
 * boots into it from its user data; docs/providers.md, "EC2"), and `paddock node-ca`: make the
 * node CA an `ec2` provider instance needs as its `nodeCa` credential.
 */
import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { PaddockError } from "../core/index.ts";

export function registerNodeCommands(program: Command): void {
  program
    .command("node")
    .description("serve this machine's sandboxes to a control plane over mutual TLS (a remote node)")
    .requiredOption("--listen <address:port>", "address and port to listen on, e.g. 0.0.0.0:7443")
    .requiredOption("--home <dir>", "the node's data directory (layers, run directory)")
    .requiredOption("--ca <file>", "the node CA certificate: only clients it signed are accepted")
    .requiredOption("--cert <file>", "this node's certificate (from the control plane)")
    .requiredOption("--key <file>", "this node's private key")
    .action(async (o: { listen: string; home: string; ca: string; cert: string; key: string }) => {
      const m = /^(.+):(\d{1,5})$/.exec(o.listen);
      if (!m?.[1] || !m[2] || Number(m[2]) > 65535) throw new PaddockError("invalid_argument", `--listen ${JSON.stringify(o.listen)}: want ADDRESS:PORT, e.g. 0.0.0.0:7443`);
      const [caPem, certPem, keyPem] = await Promise.all([o.ca, o.cert, o.key].map((f) => readFile(f, "utf8")));
      const { startNode } = await import("../node/index.ts");
      const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
      const node = await startNode({ home: resolve(o.home), host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]), caPem: caPem!, certPem: certPem!, keyPem: keyPem!, log });
      // Sandboxes are detached and outlive the node process; a restarted node recovers them.
      const stop = () => void node.close().then(() => process.exit(0), () => process.exit(1));
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
    });
  program
    .command("node-ca")
    .description("print a new node CA (certificate and private key, PEM) for an ec2 provider's nodeCa credential; pipe it into `paddock secret set`")
    .action(async () => {
      const { createNodeCa } = await import("../providers/ec2/index.ts");
      process.stdout.write((await createNodeCa()).bundle());
    });
}
