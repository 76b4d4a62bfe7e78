/**
 * Sessions as Kubernetes pods (docs/providers.md, "k8s"). With kubernetes-sigs/agent-sandbox in
 * the cluster: a SandboxTemplate (+ SandboxWarmPool) per template and a SandboxClaim per session;
 * without it: a plain Pod, its NetworkPolicy and a Secret of egress files per session. Either way
 * the pod runs the cluster's RuntimeClass (gVisor or Kata), as uid 1000 without capabilities, and
 * reaches only Paddock's gateway (and DNS). Commands and files go over the exec WebSocket
 * (exec.ts, files.ts). The provider keeps each live session's pod in memory and in
 * `providerState`, so `recover` after a restart needs one GET. The session's environment (its
 * proxy credential among it) is kept in neither: it is a file in the pod every command reads
 * (commands.ts), so it survives a restart of the control plane without being stored by it.
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { posix } from "node:path";
import type {
  ExecOptions, ExecResult, FileEntry, GuardDenial, Provider, ProviderCapabilities, ProviderHealth,
  RemoteEgressAttachment, SandboxHandle, SandboxSpec, ServiceStatus, StopOptions,
} from "../../core/index.ts";
import { PaddockError, unsupported } from "../../core/index.ts";
import type { Discovery, KubeClients } from "./kube.ts";
import { createIfMissing, discover, kubeError } from "./kube.ts";
import type { K8sSettings } from "./settings.ts";
import type { NetworkRules } from "./manifests.ts";
import { CONTAINER, WORKSPACE, gatewayLabels, gatewayManifests, sessionObjectName } from "./manifests.ts";
import type { PodRef } from "./exec.ts";
import { rawExec, signalGroup } from "./exec.ts";
import { SESSION_ENV_FILE, newPidFile, signalOfExit, wrappedArgv } from "./commands.ts";
import { listPodDir, readPodFile, writePodFile, writeSessionEnv } from "./files.ts";
import type { LiveSession, SessionPlan } from "./sessions.ts";
import { createClaimSession, createPodSession, findSessionPod, listSessionIds, removeSession, removeSnapshot, takeSnapshot } from "./sessions.ts";

export interface K8sProviderOptions {
  /** The instance's name (`k8s-prod`): labels and messages. */
  name: string;
  settings: K8sSettings;
  clients: KubeClients;
  log: (line: string) => void;
}

export class K8sProvider implements Provider {
  readonly name: string;
  private readonly settings: K8sSettings;
  private readonly c: KubeClients;
  private readonly log: (line: string) => void;
  private readonly live = new Map<string, LiveSession>();
  private discovered: Discovery | null = null;
  private runtimeClassSeen = false;
  private gatewayDeployed = false;

  constructor(opts: K8sProviderOptions) {
    this.name = opts.name;
    this.settings = opts.settings;
    this.c = opts.clients;
    this.log = opts.log;
  }

  /** What this instance can do; agent-sandbox and snapshots follow discovery (`refresh`), so read it after `create`/`health`. */
  get capabilities(): ProviderCapabilities {
    const d = this.discovered;
    const claims = d !== null && this.usesAgentSandbox(d);
    return {
      kind: "k8s", selfHosted: true, layers: false, network: "proxy",
      snapshot: d !== null && d.volumeSnapshots && !claims,
      execGuard: false, services: false, fileOps: false, ports: true,
      warmPool: claims && this.settings.warmPool > 0,
      isolation: ["namespaces"],
    };
  }

  /** Ask the API server which optional groups it serves (agent-sandbox, VolumeSnapshots). */
  async refresh(): Promise<Discovery> {
    const d = await discover(this.c).catch((e: unknown) => {
      throw kubeError(`k8s provider ${this.name}: discovery (GET /apis)`, e);
    });
    if (this.settings.useAgentSandbox === "always" && !d.agentSandbox) {
      throw new PaddockError("unavailable", `k8s provider ${this.name}: settings.useAgentSandbox is "always" but the cluster does not serve extensions.agents.x-k8s.io/v1beta1 (install kubernetes-sigs/agent-sandbox, or set "auto")`);
    }
    this.discovered = d;
    return d;
  }

  private usesAgentSandbox(d: Discovery): boolean {
    return this.settings.useAgentSandbox === "always" || (this.settings.useAgentSandbox === "auto" && d.agentSandbox);
  }

  async health(): Promise<ProviderHealth> {
    const t0 = performance.now();
    try {
      const v = await this.c.version.getCode();
      const d = await this.refresh();
      const mode = this.usesAgentSandbox(d) ? "agent-sandbox" : "plain pods";
      return { ok: true, detail: `Kubernetes ${v.gitVersion}, ${mode}, ${this.live.size} session${this.live.size === 1 ? "" : "s"}`, latencyMs: performance.now() - t0 };
    } catch (e) {
      return { ok: false, detail: e instanceof Error ? e.message : String(e), latencyMs: performance.now() - t0 };
    }
  }

  async create(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    this.refuseUnsupported(spec);
    if (this.live.has(spec.id)) throw new PaddockError("conflict", `sandbox ${spec.id} already exists`);
    const d = this.discovered ?? (await this.refresh());
    await this.ensureRuntimeClass();
    await this.ensureGateway();
    const egress = spec.remoteEgress ? await spec.remoteEgress() : undefined;
    const plan: SessionPlan = {
      id: spec.id,
      instance: this.name,
      name: sessionObjectName(this.name, spec.id),
      settings: this.settings,
      spec,
      image: (spec.recipe && this.settings.images[spec.recipe.templateId]) || this.settings.image,
      recipe: spec.recipe && !this.settings.images[spec.recipe.templateId] ? spec.recipe : undefined,
      env: { ...spec.env, ...(egress?.env ?? {}) },
      files: egress?.files ?? [],
      rules: await this.networkRules(egress),
      signal,
    };
    if (plan.recipe) this.log(`k8s ${this.name}: session ${spec.id} runs ${plan.recipe.steps.length} install step(s) of template ${plan.recipe.templateId} at start (map it to a prebuilt image in settings.images to skip them)`);
    const session = this.usesAgentSandbox(d)
      ? await createClaimSession(this.c, plan)
      : await createPodSession(this.c, plan, d.volumeSnapshots);
    this.live.set(spec.id, session);
    return { id: spec.id, ...(session.podIP ? { sandboxIp: session.podIP } : {}), providerState: stateOf(session) };
  }

  /** Everything this tier does not do is refused by name, never silently dropped. */
  private refuseUnsupported(spec: SandboxSpec): void {
    if (spec.isolation && !this.capabilities.isolation.includes(spec.isolation)) {
      throw unsupported(this, `run isolation tier ${spec.isolation}`, `its isolation is the cluster's RuntimeClass (${this.settings.runtimeClassName}); ask for "namespaces"`);
    }
    if (spec.mode === "build") throw unsupported(this, "run template build sandboxes", "it builds a template from SandboxSpec.recipe at session start, or uses settings.images");
    if (spec.guard && spec.guard.deny.length > 0) throw unsupported(this, "enforce guardrails.commands.deny inside the sandbox (exec guard)", "commands are checked by the control plane when submitted; run the environment on local for the in-sandbox guard");
    if (spec.services && spec.services.length > 0) throw unsupported(this, "supervise services inside the sandbox");
    if (spec.mounts && spec.mounts.length > 0) throw unsupported(this, "bind host directories into a sandbox");
    if (spec.from !== undefined && !this.capabilities.snapshot) throw unsupported(this, "start a sandbox from a snapshot", "the cluster serves no snapshot.storage.k8s.io/v1 VolumeSnapshots (or sessions use agent-sandbox claims)");
    if (spec.egress && !spec.remoteEgress) throw unsupported(this, "attach a sandbox to the local gateway's network (netns egress)", "give SandboxSpec.remoteEgress");
  }

  private async ensureRuntimeClass(): Promise<void> {
    if (this.runtimeClassSeen) return;
    const rc = this.settings.runtimeClassName;
    try {
      await this.c.node.readRuntimeClass({ name: rc });
      this.runtimeClassSeen = true;
    } catch (e) {
      const err = kubeError(`k8s provider ${this.name}: RuntimeClass ${rc}`, e);
      if (err.code === "not_found") {
        throw new PaddockError("unavailable", `k8s provider ${this.name}: the cluster has no RuntimeClass "${rc}" (settings.runtimeClassName); install its runtime (gVisor: runsc, Kata: kata-runtime) and RuntimeClass, or name one that exists`, { runtimeClassName: rc });
      }
      throw err;
    }
  }

  private async ensureGateway(): Promise<void> {
    if (!this.settings.gateway.deploy || this.gatewayDeployed) return;
    const [deployment, service] = gatewayManifests(this.name, this.settings);
    const ns = this.settings.namespace;
    await createIfMissing("creating the gateway Deployment", () => this.c.apps.createNamespacedDeployment({ namespace: ns, body: deployment as never }));
    await createIfMissing("creating the gateway Service", () => this.c.core.createNamespacedService({ namespace: ns, body: service as never }));
    this.gatewayDeployed = true;
  }

  /**
   * The NetworkPolicy rules: the gateway's proxy as addresses (names resolved here, since policies
   * take IPs), and the same names pinned in the pod's /etc/hosts (hostAliases) so the pod needs no
   * DNS: cluster DNS is a way out (a tunnel through the resolvers), closed unless `dns.allow`.
   */
  private async networkRules(egress: RemoteEgressAttachment | undefined): Promise<NetworkRules> {
    const targets = this.settings.gateway.proxy ? [this.settings.gateway.proxy] : (egress?.allow ?? []);
    const gateway: { ip: string; port: number }[] = [];
    const named = new Map<string, Set<string>>();
    for (const t of targets) {
      const host = t.host.replace(/^\[|\]$/g, "");
      const ips = isIP(host) ? [host] : (await lookup(host, { all: true }).catch(() => {
        throw new PaddockError("unavailable", `k8s provider ${this.name}: cannot resolve the gateway proxy host ${JSON.stringify(host)} for the session's NetworkPolicy`);
      })).map((a) => a.address);
      for (const ip of ips) {
        gateway.push({ ip, port: t.port });
        if (!isIP(host)) named.set(ip, (named.get(ip) ?? new Set()).add(host.toLowerCase()));
      }
    }
    // Sorted: the same resolution gives the same pod template (agent-sandbox templates are named by a hash of it).
    const hostAliases = [...named].map(([ip, names]) => ({ ip, hostnames: [...names].sort() })).sort((a, b) => a.ip.localeCompare(b.ip));
    return {
      gateway,
      hostAliases,
      ...(this.settings.gateway.deploy ? { deployedGateway: { labels: gatewayLabels(this.name), port: this.settings.gateway.port } } : {}),
      // No egress at all: not even DNS.
      dns: { ...this.settings.dns, allow: this.settings.dns.allow && egress !== undefined },
      previewFrom: this.settings.preview.from,
    };
  }

  async recover(id: string, providerState: Record<string, unknown>): Promise<"running" | "gone"> {
    const state = providerState as unknown as LiveSession;
    if (typeof state?.pod !== "string" || typeof state?.name !== "string") return "gone";
    const pod = await findSessionPod(this.c, this.settings.namespace, state.pod);
    if (pod && pod.status?.phase === "Running" && !pod.metadata?.deletionTimestamp) {
      // Only the known fields: whatever else the stored state holds is not carried on.
      const podIP = pod.status.podIP ?? state.podIP;
      this.live.set(id, { kind: state.kind === "claim" ? "claim" : "pod", name: state.name, pod: state.pod, ...(podIP ? { podIP } : {}), ...(typeof state.pvc === "string" ? { pvc: state.pvc } : {}) });
      return "running";
    }
    await removeSession(this.c, this.settings.namespace, state).catch((e: unknown) => this.log(`k8s ${this.name}: cleaning up ${id}: ${String(e)}`));
    this.live.delete(id);
    return "gone";
  }

  private session(id: string): LiveSession {
    const s = this.live.get(id);
    if (!s) throw new PaddockError("not_found", `sandbox ${id} not found`);
    return s;
  }

  private ref(s: LiveSession): PodRef {
    return { namespace: this.settings.namespace, pod: s.pod, container: CONTAINER };
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    const s = this.session(id);
    if (opts.signal?.aborted) throw new PaddockError("unavailable", "exec aborted before it started");
    const ref = this.ref(s);
    const cwd = posix.resolve(WORKSPACE, opts.cwd ?? WORKSPACE);
    const pidFile = newPidFile();
    // Defaults and the session's variables come from the wrapper and the pod's environment file.
    const argv = wrappedArgv(pidFile, cwd, SESSION_ENV_FILE, opts.env ?? {}, opts.argv);
    const t0 = performance.now();
    const stream = new AbortController();
    let timedOut = false;
    let aborted = false;
    const kill = (sig: NodeJS.Signals) => signalGroup(this.c, ref, pidFile, sig);
    // After a kill, the status channel normally reports the exit; if the stream hangs, it is closed.
    const closeLater = () => setTimeout(() => stream.abort(), 15_000).unref();
    const timer = opts.timeoutMs ? setTimeout(() => {
      timedOut = true;
      void kill("SIGKILL").then(closeLater);
    }, opts.timeoutMs) : undefined;
    const onAbort = () => {
      aborted = true;
      void kill("SIGKILL").then(closeLater);
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    // Best effort: a signal sent before the wrapper has written its pid file is lost.
    const unlisten = opts.signals?.listen((name) => void kill(name));
    try {
      const code = await rawExec(this.c, ref, argv, { stdin: opts.stdin, onStdout: opts.onStdout, onStderr: opts.onStderr }, stream.signal)
        .catch((e: unknown) => {
          if (timedOut) return 124;
          if (aborted) throw new PaddockError("unavailable", "exec aborted");
          if (e instanceof PaddockError && e.code === "not_found") throw new PaddockError("not_found", `sandbox ${id} not found (its pod is gone)`);
          throw e;
        });
      if (aborted) throw new PaddockError("unavailable", "exec aborted; the command was killed");
      const durationMs = performance.now() - t0;
      if (timedOut) return { exitCode: 124, signal: null, timedOut: true, durationMs };
      return { exitCode: code, signal: signalOfExit(code), timedOut: false, durationMs };
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      unlisten?.();
    }
  }

  async writeFile(id: string, path: string, data: Uint8Array, opts?: { mode?: number }): Promise<void> {
    await writePodFile(this.c, this.ref(this.session(id)), path, data, opts?.mode);
  }

  async readFile(id: string, path: string): Promise<Buffer> {
    return readPodFile(this.c, this.ref(this.session(id)), path);
  }

  async listDir(id: string, path: string): Promise<FileEntry[]> {
    return listPodDir(this.c, this.ref(this.session(id)), path);
  }

  /** Delete the pod (or claim) and what it held, with gracePeriodSeconds 0; false when it was not live here. */
  async stop(id: string, opts?: StopOptions): Promise<boolean> {
    if (opts?.commitAs) throw unsupported(this, "commit a sandbox's writes as a layer", "templates are built from SandboxSpec.recipe");
    const s = this.live.get(id);
    if (!s) return false;
    this.live.delete(id);
    await removeSession(this.c, this.settings.namespace, s);
    return true;
  }

  /**
   * Signals every process the session user may signal in the container (everything but its init
   * and processes of other users), one by one from /proc, from a process that is not one of them;
   * with SIGKILL, waits (bounded) until they are gone. Counts the processes signalled.
   */
  async killProcesses(id: string, signal: NodeJS.Signals = "SIGKILL"): Promise<number> {
    const s = this.session(id);
    const script = [
      'n=0; hit=""',
      'for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = 1 ] || [ "$p" = $$ ] || { kill -s "$1" "$p" 2>/dev/null && n=$((n+1)) && hit="$hit $p"; }; done',
      'if [ "$1" = KILL ]; then i=0; while [ $i -lt 100 ]; do left=0; for p in $hit; do [ -d "/proc/$p" ] && ! grep -q "^State:.*Z" "/proc/$p/status" 2>/dev/null && left=1; done; [ $left = 0 ] && break; i=$((i+1)); sleep 0.1; done; fi',
      'echo $n',
    ].join("\n");
    let out = "";
    const code = await rawExec(this.c, this.ref(s), ["/bin/sh", "-c", script, "paddock-kill", signal.replace(/^SIG/, "")], { onStdout: (b) => (out += b.toString()) });
    if (code !== 0) throw new PaddockError("unavailable", `killing the processes of ${id} failed (exit ${code})`);
    return Math.max(0, Number(out.trim()) || 0);
  }

  async guardDenials(_id: string): Promise<GuardDenial[]> {
    return [];
  }

  async snapshot(id: string, layerId: string): Promise<{ frozenMs: number }> {
    if (!this.capabilities.snapshot) throw unsupported(this, "snapshot a sandbox", "the cluster serves no CSI VolumeSnapshots (snapshot.storage.k8s.io/v1), or sessions use agent-sandbox claims");
    const s = this.session(id);
    await takeSnapshot(this.c, this.settings, s, layerId);
    // The CSI driver's point-in-time copy of the workspace volume; processes are not frozen.
    return { frozenMs: 0 };
  }

  async removeSnapshot(layerId: string): Promise<boolean> {
    if (!this.capabilities.snapshot) throw unsupported(this, "remove a snapshot", "this k8s instance takes no snapshots");
    return removeSnapshot(this.c, this.settings, layerId);
  }

  /** Added to the pod's environment file (never to the returned provider state, which the control plane stores). */
  async setEnv(id: string, env: Record<string, string>): Promise<Record<string, unknown>> {
    const s = this.session(id);
    if (Object.keys(env).length) await writeSessionEnv(this.c, this.ref(s), env, { add: true });
    return stateOf(s);
  }

  async services(id: string): Promise<ServiceStatus[]> {
    this.session(id);
    return [];
  }

  async waitForServices(id: string, _timeoutMs: number): Promise<ServiceStatus[]> {
    this.session(id);
    return [];
  }

  async portUrl(id: string, port: number): Promise<string> {
    const s = this.session(id);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new PaddockError("invalid_argument", `port ${port} is not a TCP port`);
    if (!s.podIP) throw new PaddockError("unavailable", `sandbox ${id} has no pod IP yet`);
    const host = s.podIP.includes(":") ? `[${s.podIP}]` : s.podIP;
    return `http://${host}:${port}`;
  }

  async list(): Promise<string[]> {
    // The cluster's truth for this instance (sessions not recovered yet included), not only this process's map.
    return (await listSessionIds(this.c, this.settings.namespace, this.name)).sort();
  }

  async close(): Promise<void> {
    // Sessions outlive the control plane (invariant 9): pods stay; recover() finds them again.
    this.live.clear();
  }
}

/** A live session as its `providerState`: the fields of LiveSession, which hold no environment. */
function stateOf(s: LiveSession): Record<string, unknown> {
  return { kind: s.kind, name: s.name, pod: s.pod, ...(s.podIP ? { podIP: s.podIP } : {}), ...(s.pvc ? { pvc: s.pvc } : {}) };
}
