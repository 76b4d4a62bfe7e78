/**
 * A fake kubelet that runs each pod as a real Paddock sandbox through a given `Provider` (a
 * local provider the test made), base "host": exec and files inside "pods" are real and isolated
 * from each other and from this machine. One sandbox per pod (its first container's view: every
 * container of the pod shares it, as containers of a pod share a network namespace; their
 * filesystems are not separated here). The container's `command` is not started; the pod runs
 * while its sandbox does. Container `env` values (not `valueFrom`) become the sandbox's
 * environment, `workingDir` the exec directory, and `resources.limits` its compute limits.
 */
import type { Provider, SandboxSpec } from "../../../src/core/index.ts";
import type { ExecStreams, FakeKubelet, KubeObject } from "./api.ts";

interface Container {
  name: string;
  env?: { name: string; value?: string }[];
  workingDir?: string;
  resources?: { limits?: Record<string, string | number> };
}

/** A Kubernetes quantity (`500m`, `2`, `256Mi`, `1G`) as a number of cores or bytes. */
export function parseQuantity(q: string | number): number {
  if (typeof q === "number") return q;
  const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(q.trim());
  if (!m) throw new Error(`not a quantity: ${q}`);
  const n = Number(m[1]);
  const scale: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return n * (m[2] ? scale[m[2]]! : 1);
}

function sandboxId(pod: KubeObject): string {
  // Pod uids are unique for the cluster's life; sandbox ids must be short and path-safe.
  return `k8spod-${pod.metadata.uid!.replace(/-/g, "").slice(0, 16)}`;
}

export function localKubelet(provider: Provider, opts: { hostnamePrefix?: string } = {}): FakeKubelet & { sandboxIdOf(pod: KubeObject): string } {
  let nextIp = 2;
  const containersOf = (pod: KubeObject) => (pod.spec as { containers: Container[] }).containers;
  return {
    sandboxIdOf: sandboxId,
    async startPod(pod) {
      const first = containersOf(pod)[0]!;
      const limits = first.resources?.limits ?? {};
      const env: Record<string, string> = {};
      for (const c of containersOf(pod)) for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
      const spec: SandboxSpec = {
        id: sandboxId(pod),
        mode: "session",
        base: "host",
        layers: [],
        compute: {
          cpu: limits.cpu !== undefined ? parseQuantity(limits.cpu) : 1,
          memoryBytes: limits.memory !== undefined ? parseQuantity(limits.memory) : 512 * 2 ** 20,
          pids: 512,
          diskBytes: limits["ephemeral-storage"] !== undefined ? parseQuantity(limits["ephemeral-storage"]) : 512 * 2 ** 20,
        },
        hostname: `${opts.hostnamePrefix ?? ""}${pod.metadata.name}`.slice(0, 63),
        env,
      };
      const handle = await provider.create(spec);
      // The sandbox has no network of its own (loopback only): the pod IP is a made-up address on the fake pod network.
      const n = nextIp++;
      return { podIP: handle.sandboxIp ?? `10.244.1.${n}` };
    },
    async exec(pod, containerName, argv, streams: ExecStreams) {
      const container = containersOf(pod).find((c) => c.name === containerName);
      const result = await provider.exec(sandboxId(pod), {
        argv,
        cwd: container?.workingDir ?? "/",
        ...(streams.stdin ? { stdin: streams.stdin } : {}),
        onStdout: (chunk) => streams.stdout.write(chunk),
        onStderr: (chunk) => (streams.tty ? streams.stdout : streams.stderr).write(chunk),
      });
      return result.exitCode;
    },
    async stop(pod) {
      await provider.stop(sandboxId(pod));
    },
  };
}
