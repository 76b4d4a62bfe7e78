/**
 * The provider drivers this build ships, by kind (docs/routing.md). providers.yml instances of a
 * kind without a driver here are refused at `paddock up`, located. `local` needs none: it is
 * always there.
 *
 * Each driver's SDK (client-node, e2b, @daytona/sdk, @aws-sdk/client-ec2) costs 0.5–1 s to load,
 * so a driver is described here by its light parts (settings parser, credential names and which
 * of them are optional) and its package is imported only when an instance of that kind is
 * created: an installation that configures no remote provider never loads one. test/control/drivers.test.ts checks these
 * descriptions against the packages' own drivers.
 */
import type { ProviderDriver, ProviderKind } from "../core/index.ts";
import { parseDaytonaSettings } from "../providers/daytona/settings.ts";
import { parseE2bSettings } from "../providers/e2b/settings.ts";
import { parseEc2Settings } from "../providers/ec2/settings.ts";
import { parseK8sSettings } from "../providers/k8s/settings.ts";

function lazyDriver<S>(kind: ProviderKind, credentials: readonly string[], parseSettings: (raw: unknown) => S, load: () => Promise<ProviderDriver<S>>, optionalCredentials?: readonly string[]): ProviderDriver<S> {
  return {
    kind,
    credentials,
    ...(optionalCredentials ? { optionalCredentials } : {}),
    parseSettings,
    async create(instance, deps) {
      return (await load()).create(instance, deps);
    },
  };
}

export const DEFAULT_DRIVERS: readonly ProviderDriver[] = [
  // kubeconfig is optional: an instance with settings.inCluster uses the pod's service account.
  lazyDriver("k8s", ["kubeconfig"], parseK8sSettings, async () => (await import("../providers/k8s/index.ts")).k8sDriver, ["kubeconfig"]),
  lazyDriver("e2b", ["apiKey"], parseE2bSettings, async () => (await import("../providers/e2b/index.ts")).e2bDriver),
  lazyDriver("daytona", ["apiKey"], parseDaytonaSettings, async () => (await import("../providers/daytona/index.ts")).daytonaDriver),
  lazyDriver("ec2", ["accessKeyId", "secretAccessKey", "nodeCa"], parseEc2Settings, async () => (await import("../providers/ec2/index.ts")).ec2Driver),
] as ProviderDriver[];
