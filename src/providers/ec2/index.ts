/**
 * The `ec2` provider box: EC2 hosts running Paddock's local runtime as remote nodes, reached over
 * mutual TLS (docs/providers.md, "EC2"). Also the node wire protocol and PKI, which `paddock node`
 * (src/node/) serves.
 */
import type { ProviderDriver } from "../../core/provider.ts";
import { Ec2Provider } from "./provider.ts";
import { loadNodeCa } from "./pki.ts";
import { parseEc2Settings, type Ec2Settings } from "./settings.ts";

export const ec2Driver: ProviderDriver<Ec2Settings> = {
  kind: "ec2",
  parseSettings: parseEc2Settings,
  // nodeCa: the node CA's certificate and key as one PEM bundle (`paddock node-ca` prints a new one).
  credentials: ["accessKeyId", "secretAccessKey", "nodeCa"],
  async create(instance, deps) {
    const c = instance.credentials;
    return new Ec2Provider({
      name: instance.name,
      settings: instance.settings,
      credentials: { accessKeyId: c["accessKeyId"] ?? "", secretAccessKey: c["secretAccessKey"] ?? "" },
      ca: await loadNodeCa(c["nodeCa"] ?? ""),
      deps,
    });
  },
};

export { Ec2Provider } from "./provider.ts";
export type { Ec2ProviderOptions } from "./provider.ts";
export { parseEc2Settings } from "./settings.ts";
export type { Ec2Settings } from "./settings.ts";
export { RemoteNodeProvider, remoteNodeCapabilities } from "./remote-node.ts";
export type { RemoteNodeOptions } from "./remote-node.ts";
export { createNodeCa, loadNodeCa, newNodeName, certExpiry, NODE_NAME_SUFFIX } from "./pki.ts";
export type { NodeCa, PemPair, Validity } from "./pki.ts";
export { nodeUserData } from "./user-data.ts";
export * from "./protocol.ts";
