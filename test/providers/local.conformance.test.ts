import { openLayerStore } from "../../src/layers/index.ts";
import { createLocalProvider, installationScope, openNetworkManager } from "../../src/providers/local/index.ts";
import type { SandboxSpec } from "../../src/core/index.ts";
import { releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { freePorts } from "../network/helpers.ts";
import { providerConformance } from "./conformance.ts";

let n = 0;

/**
 * The local provider as the control plane runs it: btrfs layers and a network per sandbox (its
 * only way out is the gateway's address; no gateway listens here, and the suite needs none), so
 * `portUrl` answers an address this test reaches.
 */
providerConformance("local (btrfs layers)", async () => {
  const home = await tempDir();
  const layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * 2 ** 30 });
  const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
  const network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 4 });
  const provider = await createLocalProvider({ home: home.path, layers, network });
  return {
    provider,
    spec: (overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
      id: `conf-${process.pid}-${n++}`,
      mode: "session",
      base: "host",
      layers: [],
      compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
      hostname: "conformance",
      env: {},
      egress: () => Promise.resolve({ env: {}, files: [] }),
      ...overrides,
    }),
    cleanup: async () => {
      for (const id of await provider.list()) await provider.stop(id).catch(() => false);
      await provider.close();
      await layers.close({ unmount: true });
      await network.close({ removeHostObjects: true });
      await releaseHome(home.path);
      await home.remove();
    },
  };
});
