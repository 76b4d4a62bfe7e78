// client-node 2.0.1's undici needs Node ≥ 22.19; on Node 20 this supplies what it reads at load.
import { describe } from "node:test";
import { readFile } from "node:fs/promises";
import type { SandboxSpec } from "../../src/core/index.ts";
import { k8sDriver } from "../../src/providers/k8s/index.ts";
import { providerConformance } from "./conformance.ts";

/**
 * The same conformance suite against a real cluster, when one is given:
 *   PADDOCK_K8S_KUBECONFIG=~/.kube/test-cluster.yaml \
 *   PADDOCK_K8S_SETTINGS='{"namespace":"paddock-test","runtimeClassName":"gvisor"}' \
 *   node --import tsx --test test/providers/k8s.real-cluster.test.ts
 * The namespace and RuntimeClass must exist; the suite makes and removes its own pods.
 * Without PADDOCK_K8S_KUBECONFIG it is skipped, visibly, with this reason.
 */
const kubeconfigFile = process.env.PADDOCK_K8S_KUBECONFIG;

if (!kubeconfigFile) {
  void describe("k8s provider against a real cluster", { skip: "PADDOCK_K8S_KUBECONFIG is not set: no real cluster to run the k8s conformance suite against" }, () => undefined);
} else {
  let n = 0;
  providerConformance("k8s provider against a real cluster", async () => {
    const kubeconfig = await readFile(kubeconfigFile, "utf8");
    const settings = k8sDriver.parseSettings(JSON.parse(process.env.PADDOCK_K8S_SETTINGS ?? "{}"));
    const provider = await k8sDriver.create({ name: "k8s-conformance", settings, credentials: { kubeconfig } }, { home: "/nonexistent", log: (l) => console.error(l) });
    return {
      provider,
      spec: (overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
        id: `conf-${process.pid}-${n++}`,
        mode: "session",
        base: "debian-12",
        layers: [],
        compute: { cpu: 0.5, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 512 * 2 ** 20 },
        hostname: "conformance",
        env: {},
        recipe: { templateId: "conformance", base: "debian-12", steps: [] },
        ...overrides,
      }),
      cleanup: async () => {
        for (const id of await provider.list()) await provider.stop(id).catch(() => false);
        await provider.close();
      },
    };
  });
}
