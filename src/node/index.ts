/** The remote node box (`paddock node`): this machine's local runtime served over mutual TLS to a control plane elsewhere (docs/providers.md, "EC2"). */
export { startNode } from "./server.ts";
export type { NodeOptions, RemoteNode } from "./server.ts";
export { nodeLayerKey } from "./recipe.ts";
