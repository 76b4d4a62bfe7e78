/**
 * The k8s provider box: sessions as pods in a Kubernetes cluster (plain Pods, or
 * kubernetes-sigs/agent-sandbox claims when the cluster serves them). See docs/providers.md.
 */
import type { Provider, ProviderDriver } from "../../core/index.ts";
import { kubeClients } from "./kube.ts";
import { K8sProvider } from "./provider.ts";
import { parseK8sSettings } from "./settings.ts";
import type { K8sSettings } from "./settings.ts";

export { K8sProvider } from "./provider.ts";
export type { K8sProviderOptions } from "./provider.ts";
export { parseK8sSettings, k8sSettingsSchema } from "./settings.ts";
export type { K8sSettings } from "./settings.ts";
export * as manifests from "./manifests.ts";

/**
 * `kind: k8s`. Credential `kubeconfig`: a kubeconfig YAML (its current context names the cluster
 * and user); optional, and ignored, with `settings.inCluster`. Discovery runs at create: a
 * cluster that cannot be reached then is logged, and asked again at the first session.
 */
export const k8sDriver: ProviderDriver<K8sSettings> = {
  kind: "k8s",
  parseSettings: parseK8sSettings,
  credentials: ["kubeconfig"],
  // Not needed with settings.inCluster; without it, kubeClients refuses naming the vault key and the setting.
  optionalCredentials: ["kubeconfig"],
  async create(instance, deps): Promise<Provider> {
    const clients = kubeClients({ kubeconfig: instance.credentials["kubeconfig"], inCluster: instance.settings.inCluster, instance: instance.name });
    const provider = new K8sProvider({ name: instance.name, settings: instance.settings, clients, log: deps.log });
    await provider.refresh().catch((e: unknown) => deps.log(`k8s ${instance.name}: ${e instanceof Error ? e.message : String(e)} (asked again at the first session)`));
    return provider;
  },
};
