/**
 * The scheduler and kubelet side of pods: admission (a pod naming a RuntimeClass that does not
 * exist is refused at create, 403 "pod rejected: RuntimeClass … not found", as the RuntimeClass
 * admission plugin does), binding to the one fake node, starting the pod through the
 * `FakeKubelet` (Pending → Running with podIP and Ready), and graceful deletion (Terminating:
 * `deletionTimestamp` set, the kubelet stops the pod, then it is gone). A RuntimeClass whose
 * handler the kubelet does not offer, or one deleted after admission, leaves the pod Pending with
 * a FailedCreatePodSandBox event, as a real kubelet does.
 */
import type { FakeKubelet, KubeObject } from "./api.ts";
import type { ApiServer } from "./apiserver.ts";
import { ApiError, forbidden } from "./status.ts";

export const NODE_NAME = "paddock-fake-node";
const NODE_IP = "10.0.0.10";

type PodStatus = Record<string, unknown>;
const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

export interface KubeletOptions {
  kubelet: FakeKubelet | null;
  /** RuntimeClass handlers the node has (absent: any). */
  runtimeHandlers?: string[];
}

export class PodLifecycle {
  private nextIp = 2;
  /** Pods the kubelet started (by uid), so close() can stop them. */
  private readonly started = new Map<string, KubeObject>();
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly api: ApiServer,
    private readonly opts: KubeletOptions,
  ) {
    const pods = api.def("", "pods")!;
    api.podHooks = {
      admit: (pod) => this.admit(pod),
      terminate: (pod) => this.track(this.terminate(pod)),
    };
    api.store.onChange((type, def, obj) => {
      if (def === pods && type === "ADDED") this.track(this.startPod(obj));
    });
  }

  private track(p: Promise<unknown>): void {
    const tracked = p.catch(() => undefined).finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  private admit(pod: KubeObject): void {
    const rc = (pod.spec as { runtimeClassName?: string }).runtimeClassName;
    if (!rc) return;
    if (!this.api.store.get(this.api.def("node.k8s.io", "runtimeclasses")!, undefined, rc))
      throw forbidden(this.api.def("", "pods")!, pod.metadata.name, `pod rejected: RuntimeClass "${rc}" not found`);
  }

  /** Write the pod's status (and binding) from a fresh read; gone pods are left alone. */
  private writePod(pod: KubeObject, change: (p: KubeObject) => void): KubeObject | null {
    const pods = this.api.def("", "pods")!;
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = this.api.store.get(pods, pod.metadata.namespace, pod.metadata.name);
      if (!current || current.metadata.uid !== pod.metadata.uid) return null;
      change(current);
      try {
        return this.api.store.update(pods, current);
      } catch (err) {
        if (!(err instanceof ApiError && err.code === 409)) throw err;
      }
    }
    return null;
  }

  private async startPod(pod: KubeObject): Promise<void> {
    await new Promise((r) => setImmediate(r));
    const bound = this.writePod(pod, (p) => {
      (p.spec as Record<string, unknown>).nodeName = NODE_NAME;
      const status = p.status as PodStatus;
      status.conditions = [{ type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: now() }];
    });
    if (!bound) return;
    this.api.recordEvent(bound, "Normal", "Scheduled", `Successfully assigned ${bound.metadata.namespace}/${bound.metadata.name} to ${NODE_NAME}`, "default-scheduler");
    const problem = this.runtimeProblem(bound);
    if (problem) {
      this.api.recordEvent(bound, "Warning", "FailedCreatePodSandBox", problem, "kubelet");
      return;
    }
    let podIP: string;
    try {
      podIP = this.opts.kubelet ? (await this.opts.kubelet.startPod(bound)).podIP : this.madeUpIp();
    } catch (err) {
      this.api.recordEvent(bound, "Warning", "FailedCreatePodSandBox", `Failed to create pod sandbox: ${(err as Error).message}`, "kubelet");
      return;
    }
    this.started.set(bound.metadata.uid!, bound);
    if (this.closed) {
      await this.stopInKubelet(bound); // the cluster closed while the kubelet was starting it
      return;
    }
    const running = this.writePod(bound, (p) => {
      if (p.metadata.deletionTimestamp) return;
      const t = now();
      const containers = (p.spec as { containers: { name: string; image: string }[] }).containers;
      Object.assign(p.status as PodStatus, {
        phase: "Running",
        hostIP: NODE_IP,
        hostIPs: [{ ip: NODE_IP }],
        podIP,
        podIPs: [{ ip: podIP }],
        startTime: t,
        conditions: ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({ type, status: "True", lastProbeTime: null, lastTransitionTime: t })),
        containerStatuses: containers.map((c) => ({
          name: c.name,
          image: c.image,
          imageID: `docker.io/library/${c.image}@sha256:${"0".repeat(64)}`,
          containerID: `containerd://${p.metadata.uid!.replace(/-/g, "")}${c.name}`,
          ready: true,
          started: true,
          restartCount: 0,
          state: { running: { startedAt: t } },
        })),
      });
    });
    if (!running) {
      // Deleted while starting: the kubelet still has to let go of it.
      await this.stopInKubelet(bound);
      return;
    }
    for (const c of (running.spec as { containers: { name: string }[] }).containers) this.api.recordEvent(running, "Normal", "Started", `Started container ${c.name}`, "kubelet");
  }

  private runtimeProblem(pod: KubeObject): string | null {
    const rcName = (pod.spec as { runtimeClassName?: string }).runtimeClassName;
    if (!rcName) return null;
    const rc = this.api.store.get(this.api.def("node.k8s.io", "runtimeclasses")!, undefined, rcName);
    if (!rc) return `Failed to create pod sandbox: RuntimeClass "${rcName}" not found`;
    const handler = String(rc.handler);
    if (this.opts.runtimeHandlers && !this.opts.runtimeHandlers.includes(handler))
      return `Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for "${handler}" is configured`;
    return null;
  }

  private madeUpIp(): string {
    const n = this.nextIp++;
    return `10.244.${Math.floor(n / 250)}.${(n % 250) + 2}`;
  }

  private async stopInKubelet(pod: KubeObject): Promise<void> {
    if (!this.started.delete(pod.metadata.uid!)) return;
    await this.opts.kubelet?.stop(pod);
  }

  /** Terminating → the kubelet stops it → removed (DELETED) and its dependents collected. */
  private async terminate(pod: KubeObject): Promise<void> {
    await new Promise((r) => setImmediate(r));
    await this.stopInKubelet(pod);
    const pods = this.api.def("", "pods")!;
    const current = this.api.store.get(pods, pod.metadata.namespace, pod.metadata.name);
    if (current && current.metadata.uid === pod.metadata.uid) this.api.removeAndCollect(pods, current);
  }

  /** The kubelet for exec (null: no containers run). */
  get kubelet(): FakeKubelet | null {
    return this.opts.kubelet;
  }

  /**
   * Stop every pod the kubelet still runs (the node goes away with the cluster). Starts in
   * flight are waited for up to 10 s (a kubelet whose startPod never resolves, as a test's
   * stuck kubelet, is not waited for longer; one that resolves later is stopped then).
   */
  async close(): Promise<void> {
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.pending]), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
    for (const pod of [...this.started.values()]) await this.stopInKubelet(pod);
  }
}
