/**
 * A session's objects in the cluster: making them (plain Pod, or agent-sandbox claim), waiting
 * for the pod to be Ready, finding it again, and deleting everything it held.
 */
import { posix } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { PaddockError } from "../../core/index.ts";
import type { SandboxSpec, TemplateRecipe } from "../../core/index.ts";
import type { KubeClients } from "./kube.ts";
import { createIfMissing, deleteIfPresent, isStatus, kubeError } from "./kube.ts";
import type { K8sSettings } from "./settings.ts";
import type { KubeManifest, NetworkRules } from "./manifests.ts";
import {
  AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION, ANNOTATION_SESSION_ID, CONTAINER, LABEL_MANAGED, LABEL_PROVIDER, SNAPSHOT_GROUP,
  filesSecret, instanceLabels, labelValue, sandboxClaim, sandboxTemplate, sandboxWarmPool, sessionLabels, sessionNetworkPolicy,
  sessionPod, sessionPodSpec, templateObjectName, volumeSnapshot, workspaceClaim,
} from "./manifests.ts";
import type { Observed } from "./wait.ts";
import { describePod, lastEvent, watchUntil } from "./wait.ts";
import { writePodFile, writeSessionEnv } from "./files.ts";
import { rawExec } from "./exec.ts";

/**
 * What the provider keeps of a live session (also its `providerState`: plain JSON, stored by the
 * control plane). Never the session's environment: it holds the proxy credential, and lives only
 * in the pod (commands.ts SESSION_ENV_FILE).
 */
export interface LiveSession {
  kind: "pod" | "claim";
  /** The session's object name (pod or claim, NetworkPolicy, Secret, PVC). */
  name: string;
  /** The pod the session runs in (for a claim: the adopted sandbox's pod). */
  pod: string;
  podIP?: string;
  /** The workspace PVC, when the instance takes snapshots. */
  pvc?: string;
}

export interface SessionPlan {
  id: string;
  instance: string;
  name: string;
  settings: K8sSettings;
  spec: SandboxSpec;
  image: string;
  recipe?: TemplateRecipe;
  env: Record<string, string>;
  files: { path: string; content: string }[];
  rules: NetworkRules;
  signal?: AbortSignal;
}

const CUSTOM = { group: AGENT_SANDBOX_GROUP, version: AGENT_SANDBOX_VERSION };

/** A plain Pod with its NetworkPolicy (made first: the pod never runs unfenced), Secret of egress files and, for snapshots, a workspace PVC. */
export async function createPodSession(c: KubeClients, plan: SessionPlan, snapshots: boolean): Promise<LiveSession> {
  const ns = plan.settings.namespace;
  const labels = sessionLabels(plan.instance, plan.id);
  const made: LiveSession = { kind: "pod", name: plan.name, pod: plan.name, ...(snapshots ? { pvc: plan.name } : {}) };
  try {
    await create(`creating NetworkPolicy ${plan.name}`, () => c.net.createNamespacedNetworkPolicy({ namespace: ns, body: sessionNetworkPolicy(plan.name, ns, labels, plan.rules) as never }));
    if (plan.files.length) {
      await create(`creating Secret ${plan.name}`, () => c.core.createNamespacedSecret({ namespace: ns, body: filesSecret(plan.name, ns, labels, plan.files) as never }));
    }
    if (snapshots) {
      const from = plan.spec.from !== undefined ? snapshotName(plan.spec.from) : undefined;
      await create(`creating PersistentVolumeClaim ${plan.name}`, () => c.core.createNamespacedPersistentVolumeClaim({ namespace: ns, body: workspaceClaim(plan.name, ns, labels, plan.spec.compute.diskBytes, plan.settings, from) as never }));
    }
    const pod = sessionPod({
      name: plan.name, namespace: ns, labels, id: plan.id, settings: plan.settings, image: plan.image, compute: plan.spec.compute,
      hostname: plan.spec.hostname, recipe: plan.recipe, hostAliases: plan.rules.hostAliases,
      ...(plan.files.length ? { fileSecret: { secretName: plan.name, paths: plan.files.map((f) => f.path) } } : {}),
      ...(snapshots ? { workspaceClaim: plan.name } : {}),
    });
    await create(`creating Pod ${plan.name}`, () => c.core.createNamespacedPod({ namespace: ns, body: pod as never }));
    made.podIP = await waitForPod(c, ns, plan.name, plan.settings.readyTimeoutMs, plan.signal);
    if (Object.keys(plan.env).length) await writeSessionEnv(c, { namespace: ns, pod: plan.name, container: CONTAINER }, plan.env);
    return made;
  } catch (e) {
    // A create that failed leaves nothing behind (the conformance suite checks list()).
    await removeSession(c, ns, made).catch(() => undefined);
    throw e;
  }
}

/**
 * agent-sandbox: the template (pod template + Managed NetworkPolicy with Paddock's rules) and its
 * warm pool are shared by every session of the same template; the claim is the session's. Egress
 * files are written into the template's per-directory emptyDirs once the pod is Ready (a warm pod
 * existed before the session, so nothing of the session can be mounted into it).
 */
export async function createClaimSession(c: KubeClients, plan: SessionPlan): Promise<LiveSession> {
  const ns = plan.settings.namespace;
  const shared = instanceLabels(plan.instance);
  const fileDirs = [...new Set(plan.files.map((f) => posix.dirname(f.path)))].sort();
  // Nothing session-specific in the template (env is written into the pod once claimed), so sessions share its warm pool.
  // The gateway's hostAliases are the instance's (every session has the same proxy host), like the NetworkPolicy's rules.
  const podSpec = sessionPodSpec({ settings: plan.settings, image: plan.image, compute: plan.spec.compute, recipe: plan.recipe, fileDirs, hostAliases: plan.rules.hostAliases });
  const template = templateObjectName(podSpec, plan.rules);
  await createIfMissing(`creating SandboxTemplate ${template}`, () => c.custom.createNamespacedCustomObject({ ...CUSTOM, namespace: ns, plural: "sandboxtemplates", body: sandboxTemplate(template, ns, shared, podSpec, plan.rules) }));
  await createIfMissing(`creating SandboxWarmPool ${template}`, () => c.custom.createNamespacedCustomObject({ ...CUSTOM, namespace: ns, plural: "sandboxwarmpools", body: sandboxWarmPool(template, ns, shared, template, plan.settings.warmPool) }));
  const labels = sessionLabels(plan.instance, plan.id);
  const made: LiveSession = { kind: "claim", name: plan.name, pod: "" };
  try {
    await create(`creating SandboxClaim ${plan.name}`, () => c.custom.createNamespacedCustomObject({ ...CUSTOM, namespace: ns, plural: "sandboxclaims", body: sandboxClaim(plan.name, ns, labels, template, plan.id) }));
    made.pod = await waitForClaim(c, ns, plan.name, plan.settings.readyTimeoutMs, plan.signal);
    made.podIP = await waitForPod(c, ns, made.pod, plan.settings.readyTimeoutMs, plan.signal);
    const ref = { namespace: ns, pod: made.pod, container: CONTAINER };
    // The directories are the template's emptyDirs; made here too in case a runtime mounted none.
    if (fileDirs.length) await rawExec(c, ref, ["mkdir", "-p", "--", ...fileDirs], {}).catch(() => undefined);
    for (const f of plan.files) await writePodFile(c, ref, f.path, Buffer.from(f.content), 0o444);
    if (Object.keys(plan.env).length) await writeSessionEnv(c, ref, plan.env);
    return made;
  } catch (e) {
    await removeSession(c, ns, made).catch(() => undefined);
    throw e;
  }
}

async function create(what: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    throw kubeError(what, e);
  }
}

/** Ready and Running → its IP. A pod that Failed, or was deleted, fails at once; a slow one at the deadline, naming its state and last event. */
export async function waitForPod(c: KubeClients, namespace: string, name: string, timeoutMs: number, signal?: AbortSignal, onRelist?: () => void): Promise<string> {
  return watchUntil(c, {
    what: `pod ${name} to be Ready`,
    path: `/api/v1/namespaces/${namespace}/pods`,
    name,
    timeoutMs,
    signal,
    onRelist,
    list: async () => {
      const l = await c.core.listNamespacedPod({ namespace, fieldSelector: `metadata.name=${name}` });
      return { item: l.items.find((p) => p.metadata?.name === name) as Observed | undefined, resourceVersion: l.metadata?.resourceVersion ?? "0" };
    },
    check: (p) => {
      if (!p) throw new PaddockError("unavailable", `pod ${name} does not exist (deleted before it became Ready, or never made)`);
      if (p.status?.phase === "Failed" || p.status?.phase === "Succeeded") throw new PaddockError("unavailable", `pod ${name} ended before it became Ready: ${describePod(p)}`);
      const ready = p.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True");
      return p.status?.phase === "Running" && ready ? (p.status.podIP ?? "") : undefined;
    },
    explain: async (p) => `${describePod(p)}; ${await lastEvent(c, namespace, name)}`,
  });
}

/** The claim's Ready condition → the name of its pod (the Sandbox's pod-name annotation, else the Sandbox's own name). */
async function waitForClaim(c: KubeClients, namespace: string, name: string, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  const sandbox = await watchUntil(c, {
    what: `SandboxClaim ${name} to be Ready`,
    path: `/apis/${AGENT_SANDBOX_GROUP}/${AGENT_SANDBOX_VERSION}/namespaces/${namespace}/sandboxclaims`,
    name,
    timeoutMs,
    signal,
    list: async () => {
      const l = await c.custom.listNamespacedCustomObject({ ...CUSTOM, namespace, plural: "sandboxclaims", fieldSelector: `metadata.name=${name}` }) as { items?: Observed[]; metadata?: { resourceVersion?: string } };
      return { item: (l.items ?? []).find((x) => x.metadata?.name === name), resourceVersion: l.metadata?.resourceVersion ?? "0" };
    },
    check: (o) => {
      if (!o) throw new PaddockError("unavailable", `SandboxClaim ${name} was deleted before it became Ready`);
      const ready = o.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True");
      const sb = (o.status as { sandbox?: { name?: string } } | undefined)?.sandbox?.name;
      return ready && sb ? sb : undefined;
    },
    explain: async (o) => {
      const conds = (o?.status?.conditions ?? []).map((x) => `${x.type}=${x.status}${x.reason ? ` (${x.reason}${x.message ? `: ${x.message}` : ""})` : ""}`);
      return `${conds.length ? `conditions ${conds.join(", ")}` : "no conditions yet"}; ${await lastEvent(c, namespace, name)}`;
    },
  });
  try {
    const sb = await c.custom.getNamespacedCustomObject({ group: "agents.x-k8s.io", version: "v1beta1", namespace, plural: "sandboxes", name: sandbox }) as { metadata?: { annotations?: Record<string, string> } };
    return sb.metadata?.annotations?.["agents.x-k8s.io/pod-name"] ?? sandbox;
  } catch (e) {
    throw kubeError(`reading Sandbox ${sandbox} of claim ${name}`, e);
  }
}

export async function findSessionPod(c: KubeClients, namespace: string, pod: string): Promise<V1Pod | null> {
  try {
    return await c.core.readNamespacedPod({ namespace, name: pod });
  } catch (e) {
    if (isStatus(e, 404)) return null;
    throw kubeError(`reading pod ${pod}`, e);
  }
}

/** Delete the session's objects, gracePeriodSeconds 0. For a claim, agent-sandbox deletes its Sandbox and pod. */
export async function removeSession(c: KubeClients, namespace: string, s: LiveSession): Promise<boolean> {
  const now = { gracePeriodSeconds: 0 };
  let any = false;
  if (s.kind === "claim") {
    any = await deleteIfPresent(`deleting SandboxClaim ${s.name}`, () => c.custom.deleteNamespacedCustomObject({ ...CUSTOM, namespace, plural: "sandboxclaims", name: s.name, ...now }));
  } else {
    any = await deleteIfPresent(`deleting Pod ${s.pod}`, () => c.core.deleteNamespacedPod({ namespace, name: s.pod, ...now }));
    await deleteIfPresent(`deleting NetworkPolicy ${s.name}`, () => c.net.deleteNamespacedNetworkPolicy({ namespace, name: s.name, ...now }));
    await deleteIfPresent(`deleting Secret ${s.name}`, () => c.core.deleteNamespacedSecret({ namespace, name: s.name, ...now }));
    if (s.pvc) await deleteIfPresent(`deleting PersistentVolumeClaim ${s.pvc}`, () => c.core.deleteNamespacedPersistentVolumeClaim({ namespace, name: s.pvc!, ...now }));
  }
  return any;
}

/** Session ids of this instance's pods that are not being deleted (label selector, then the id annotation). */
export async function listSessionIds(c: KubeClients, namespace: string, instance: string): Promise<string[]> {
  const selector = `${LABEL_MANAGED}=paddock,${LABEL_PROVIDER}=${labelValue(instance)}`;
  try {
    const pods = await c.core.listNamespacedPod({ namespace, labelSelector: selector });
    const claims = await c.custom.listNamespacedCustomObject({ ...CUSTOM, namespace, plural: "sandboxclaims", labelSelector: selector })
      .then((l) => ((l as { items?: KubeManifest[] }).items ?? []), () => [] as KubeManifest[]);
    const ids = new Set<string>();
    for (const p of pods.items) {
      const id = p.metadata?.annotations?.[ANNOTATION_SESSION_ID];
      if (id && !p.metadata?.deletionTimestamp) ids.add(id);
    }
    for (const cl of claims) {
      const id = cl.metadata.annotations?.[ANNOTATION_SESSION_ID];
      if (id && !(cl.metadata as { deletionTimestamp?: string }).deletionTimestamp) ids.add(id);
    }
    return [...ids];
  } catch (e) {
    throw kubeError(`listing the sessions of ${instance}`, e);
  }
}

/** A snapshot's VolumeSnapshot name: a layer id as a DNS-1123 name. */
export function snapshotName(layerId: string): string {
  return `paddock-snap-${labelValue(layerId).toLowerCase().replace(/[^a-z0-9-]/g, "-")}`.slice(0, 253).replace(/-+$/, "");
}

export async function takeSnapshot(c: KubeClients, settings: K8sSettings, s: LiveSession, layerId: string): Promise<void> {
  if (!s.pvc) throw new PaddockError("unavailable", `sandbox ${s.name} has no workspace volume to snapshot (it started before snapshots were available)`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(layerId)) throw new PaddockError("invalid_argument", `bad snapshot id ${JSON.stringify(layerId.slice(0, 64))}`);
  const ns = settings.namespace;
  const name = snapshotName(layerId);
  const body = volumeSnapshot(name, ns, { [LABEL_MANAGED]: "paddock", "paddock.dev/layer": labelValue(layerId) }, s.pvc, settings);
  try {
    await c.custom.createNamespacedCustomObject({ group: SNAPSHOT_GROUP, version: "v1", namespace: ns, plural: "volumesnapshots", body });
  } catch (e) {
    if (isStatus(e, 409)) throw new PaddockError("conflict", `snapshot ${layerId} already exists`);
    throw kubeError(`creating VolumeSnapshot ${name}`, e);
  }
  await watchUntil(c, {
    what: `VolumeSnapshot ${name} to be readyToUse`,
    path: `/apis/${SNAPSHOT_GROUP}/v1/namespaces/${ns}/volumesnapshots`,
    name,
    timeoutMs: settings.readyTimeoutMs,
    list: async () => {
      const l = await c.custom.listNamespacedCustomObject({ group: SNAPSHOT_GROUP, version: "v1", namespace: ns, plural: "volumesnapshots", fieldSelector: `metadata.name=${name}` }) as { items?: Observed[]; metadata?: { resourceVersion?: string } };
      return { item: (l.items ?? []).find((x) => x.metadata?.name === name), resourceVersion: l.metadata?.resourceVersion ?? "0" };
    },
    check: (o) => {
      if (!o) throw new PaddockError("unavailable", `VolumeSnapshot ${name} was deleted`);
      const st = o.status as { readyToUse?: boolean; error?: { message?: string } } | undefined;
      if (st?.error?.message) throw new PaddockError("unavailable", `VolumeSnapshot ${name} failed: ${st.error.message}`);
      return st?.readyToUse ? true : undefined;
    },
    explain: async () => lastEvent(c, ns, name),
  });
}

export async function removeSnapshot(c: KubeClients, settings: K8sSettings, layerId: string): Promise<boolean> {
  const name = snapshotName(layerId);
  return deleteIfPresent(`deleting VolumeSnapshot ${name}`, () => c.custom.deleteNamespacedCustomObject({ group: SNAPSHOT_GROUP, version: "v1", namespace: settings.namespace, plural: "volumesnapshots", name }));
}
