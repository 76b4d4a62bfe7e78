/**
 * Pure builders of every object the k8s provider creates (no I/O, so they are unit-tested alone).
 * References: Pod https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/,
 * NetworkPolicy https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/,
 * agent-sandbox's CRDs (kubernetes-sigs/agent-sandbox, extensions/api/v1beta1: SandboxTemplate,
 * SandboxWarmPool, SandboxClaim), CSI snapshots https://kubernetes.io/docs/concepts/storage/volume-snapshots/.
 */
import { createHash } from "node:crypto";
import type { ComputeLimits, TemplateRecipe } from "../../core/index.ts";
import type { K8sSettings } from "./settings.ts";

export type KubeManifest = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } };

export const AGENT_SANDBOX_GROUP = "extensions.agents.x-k8s.io";
export const AGENT_SANDBOX_VERSION = "v1beta1";
export const SNAPSHOT_GROUP = "snapshot.storage.k8s.io";
/** The session user inside every pod (as on the local provider). */
export const SESSION_UID = 1000;
export const SESSION_HOME = "/home/paddock";
export const WORKSPACE = "/workspace";
export const CONTAINER = "session";

export const LABEL_MANAGED = "app.kubernetes.io/managed-by";
export const LABEL_PROVIDER = "paddock.dev/provider";
export const LABEL_SESSION = "paddock.dev/session";
export const ANNOTATION_SESSION_ID = "paddock.dev/session-id";

const hash = (s: string, n: number) => createHash("sha256").update(s).digest("hex").slice(0, n);

/** A label value (≤ 63, alphanumeric at both ends): the text itself when it already is one, else a readable prefix + hash. */
export function labelValue(text: string): string {
  if (/^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$/i.test(text)) return text;
  const clean = text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
  return `${clean ? `${clean}-` : ""}${hash(text, 12)}`;
}

/** The name of a session's objects (pod, claim, NetworkPolicy, Secret, PVC): DNS-1123, unique per id and instance. */
export function sessionObjectName(instance: string, id: string): string {
  const clean = id.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 30);
  return `paddock-${clean ? `${clean}-` : ""}${hash(`${instance}\n${id}`, 10)}`;
}

export function instanceLabels(instance: string): Record<string, string> {
  return { [LABEL_MANAGED]: "paddock", [LABEL_PROVIDER]: labelValue(instance) };
}

export function sessionLabels(instance: string, id: string): Record<string, string> {
  return { ...instanceLabels(instance), [LABEL_SESSION]: labelValue(id) };
}

/** Kubernetes quantities from `compute`: CPU in millicores, memory and disk in bytes. Requests equal limits (Guaranteed QoS). */
export function resourcesFor(compute: ComputeLimits): Record<string, Record<string, string>> {
  const q = {
    cpu: `${Math.max(1, Math.round(compute.cpu * 1000))}m`,
    memory: String(Math.max(4 * 2 ** 20, Math.floor(compute.memoryBytes))),
    "ephemeral-storage": String(Math.max(2 ** 20, Math.floor(compute.diskBytes))),
  };
  return { requests: { ...q }, limits: { ...q } };
}

/** The hardening every session container gets: non-root uid 1000, no privilege escalation, no capabilities, RuntimeDefault seccomp, read-only root. */
export function sessionSecurityContext(): Record<string, unknown> {
  return {
    runAsNonRoot: true,
    runAsUser: SESSION_UID,
    runAsGroup: SESSION_UID,
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}

export interface PodSpecInput {
  settings: K8sSettings;
  image: string;
  compute: ComputeLimits;
  hostname?: string;
  /** Install steps run once, as root, in an init container (absent when the image is prebuilt). */
  recipe?: TemplateRecipe;
  /** Plain pods: the egress files from a per-session Secret (`secretName`), mounted read-only file by file. */
  fileSecret?: { secretName: string; paths: string[] };
  /** agent-sandbox pods: directories (emptyDir) the egress files are written into after the claim. */
  fileDirs?: string[];
  /** The workspace on this PVC (snapshots) instead of an emptyDir. */
  workspaceClaim?: string;
  /** /etc/hosts entries (the gateway's names, resolved by the control plane): the pod needs no DNS to find its proxy. */
  hostAliases?: { ip: string; hostnames: string[] }[];
}

/** The secret keys of the egress files: `f0`, `f1`, … in the order given. */
export const fileKey = (i: number) => `f${i}`;

/** The pod spec of a session (plain Pod, or the pod template of an agent-sandbox SandboxTemplate). */
export function sessionPodSpec(input: PodSpecInput): Record<string, unknown> {
  const { settings, compute } = input;
  const disk = String(Math.max(2 ** 20, Math.floor(compute.diskBytes)));
  const volumes: Record<string, unknown>[] = [
    input.workspaceClaim
      ? { name: "workspace", persistentVolumeClaim: { claimName: input.workspaceClaim } }
      : { name: "workspace", emptyDir: { sizeLimit: disk } },
    { name: "home", emptyDir: { sizeLimit: disk } },
    { name: "tmp", emptyDir: { sizeLimit: disk } },
  ];
  const mounts: Record<string, unknown>[] = [
    { name: "workspace", mountPath: WORKSPACE },
    { name: "home", mountPath: SESSION_HOME },
    { name: "tmp", mountPath: "/tmp" },
  ];
  if (input.fileSecret) {
    volumes.push({ name: "egress-files", secret: { secretName: input.fileSecret.secretName, defaultMode: 0o444 } });
    input.fileSecret.paths.forEach((path, i) => mounts.push({ name: "egress-files", mountPath: path, subPath: fileKey(i), readOnly: true }));
  }
  (input.fileDirs ?? []).forEach((dir, i) => {
    volumes.push({ name: `egress-dir-${i}`, emptyDir: { sizeLimit: "1Mi" } });
    mounts.push({ name: `egress-dir-${i}`, mountPath: dir });
  });
  const hostname = input.hostname ? podHostname(input.hostname) : undefined;
  return {
    ...(settings.runtimeClassName ? { runtimeClassName: settings.runtimeClassName } : {}),
    ...(hostname ? { hostname } : {}),
    ...(input.hostAliases?.length ? { hostAliases: input.hostAliases } : {}),
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    restartPolicy: "Never",
    terminationGracePeriodSeconds: 0,
    securityContext: { runAsNonRoot: true, runAsUser: SESSION_UID, runAsGroup: SESSION_UID, fsGroup: SESSION_UID, seccompProfile: { type: "RuntimeDefault" } },
    ...(input.recipe && input.recipe.steps.length > 0 ? { initContainers: [recipeContainer(input.image, input.recipe, mounts, compute)] } : {}),
    containers: [{
      name: CONTAINER,
      image: input.image,
      // The container only has to stay up (every command comes in through exec); as pid 1 it also
      // reaps the orphans of killed commands (dash's wait collects any child).
      command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"],
      workingDir: WORKSPACE,
      // Only HOME: the session's variables (its proxy credential among them) are never in the Pod
      // object; every command reads them from a file in the pod (commands.ts SESSION_ENV_FILE).
      env: [{ name: "HOME", value: SESSION_HOME }],
      resources: resourcesFor(compute),
      securityContext: sessionSecurityContext(),
      volumeMounts: mounts,
    }],
    volumes,
  };
}

/**
 * The template's install steps, once per pod, as root, before the session container starts.
 * Steps are arguments of a fixed script, never spliced into it. Only what they write under
 * /workspace and the session's home reaches the session (the init container's own root
 * filesystem is discarded): a template that installs system packages needs a prebuilt image
 * (`settings.images`). Ownership is handed to the session user at the end.
 */
function recipeContainer(image: string, recipe: TemplateRecipe, mounts: Record<string, unknown>[], compute: ComputeLimits): Record<string, unknown> {
  const script = `set -e; cd /; for step in "$@"; do /bin/sh -c "$step"; done; chown -R ${SESSION_UID}:${SESSION_UID} ${WORKSPACE} ${SESSION_HOME}`;
  return {
    name: "recipe",
    image,
    command: ["/bin/sh", "-c", script, "paddock-recipe", ...recipe.steps],
    workingDir: "/",
    env: [{ name: "HOME", value: SESSION_HOME }],
    // The steps are the environment file's: held to the session's compute, never only to the node's.
    resources: resourcesFor(compute),
    securityContext: {
      runAsNonRoot: false,
      runAsUser: 0,
      runAsGroup: 0,
      allowPrivilegeEscalation: false,
      privileged: false,
      // What package managers need as root (own files, drop to their own users), nothing more.
      capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
    volumeMounts: mounts.filter((m) => m.name === "workspace" || m.name === "home" || m.name === "tmp"),
  };
}

function podHostname(name: string): string | undefined {
  const h = name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63).replace(/-+$/, "");
  return h || undefined;
}

export function sessionPod(input: PodSpecInput & { name: string; namespace: string; labels: Record<string, string>; id: string }): KubeManifest {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: input.name, namespace: input.namespace, labels: input.labels, annotations: { [ANNOTATION_SESSION_ID]: input.id } },
    spec: sessionPodSpec(input),
  };
}

/** The egress files as a Secret (the CA is not a secret, but a Secret keeps it out of ConfigMap listings and is what kubelet mounts read-only). */
export function filesSecret(name: string, namespace: string, labels: Record<string, string>, files: { path: string; content: string }[]): KubeManifest {
  const data: Record<string, string> = {};
  files.forEach((f, i) => (data[fileKey(i)] = Buffer.from(f.content).toString("base64")));
  return { apiVersion: "v1", kind: "Secret", type: "Opaque", metadata: { name, namespace, labels }, data };
}

export interface NetworkRules {
  /** The gateway's proxy listener(s), as addresses (host names resolved by the caller) and ports. */
  gateway: { ip: string; port: number }[];
  /** Pods of the deployed gateway (settings.gateway.deploy), reachable on its port. */
  deployedGateway?: { labels: Record<string, string>; port: number };
  /**
   * The gateway's host names pinned to the addresses resolved for `gateway` (the pod's hostAliases):
   * with them a pod finds its proxy without DNS, so DNS stays closed (`dns.allow` is an opt-in).
   */
  hostAliases?: { ip: string; hostnames: string[] }[];
  dns: K8sSettings["dns"];
  previewFrom: string[];
}

const cidrOf = (ip: string) => (ip.includes(":") ? `${ip}/128` : `${ip}/32`);

/** Egress: only the gateway (and DNS only when `dns.allow` opts in). Ingress: only the preview gateway's addresses. */
export function networkRules(r: NetworkRules): { ingress: Record<string, unknown>[]; egress: Record<string, unknown>[] } {
  const egress: Record<string, unknown>[] = r.gateway.map((g) => ({ to: [{ ipBlock: { cidr: cidrOf(g.ip) } }], ports: [{ protocol: "TCP", port: g.port }] }));
  if (r.deployedGateway) egress.push({ to: [{ podSelector: { matchLabels: r.deployedGateway.labels } }], ports: [{ protocol: "TCP", port: r.deployedGateway.port }] });
  if (r.dns.allow) {
    egress.push({
      to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": r.dns.namespace } }, podSelector: { matchLabels: r.dns.podLabels } }],
      ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }],
    });
  }
  const ingress = r.previewFrom.length ? [{ from: r.previewFrom.map((cidr) => ({ ipBlock: { cidr } })) }] : [];
  return { ingress, egress };
}

/** A plain pod's NetworkPolicy: selects exactly the session's pod, both directions default-deny except `networkRules`. */
export function sessionNetworkPolicy(name: string, namespace: string, labels: Record<string, string>, rules: NetworkRules): KubeManifest {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, namespace, labels },
    spec: { podSelector: { matchLabels: labels }, policyTypes: ["Ingress", "Egress"], ...networkRules(rules) },
  };
}

/**
 * An agent-sandbox SandboxTemplate. Its NetworkPolicy is Managed with Paddock's rules: agent-sandbox's
 * default when `networkPolicy` is omitted allows the public internet, which would break invariant 3,
 * and warm pods exist before any session, so the rules must be the template's.
 */
export function sandboxTemplate(name: string, namespace: string, labels: Record<string, string>, podSpec: Record<string, unknown>, rules: NetworkRules): KubeManifest {
  return {
    apiVersion: `${AGENT_SANDBOX_GROUP}/${AGENT_SANDBOX_VERSION}`,
    kind: "SandboxTemplate",
    metadata: { name, namespace, labels },
    spec: {
      podTemplate: { metadata: { labels }, spec: podSpec },
      networkPolicyManagement: "Managed",
      networkPolicy: networkRules(rules),
      envVarsInjectionPolicy: "Disallowed",
    },
  };
}

export function sandboxWarmPool(name: string, namespace: string, labels: Record<string, string>, template: string, replicas: number): KubeManifest {
  return {
    apiVersion: `${AGENT_SANDBOX_GROUP}/${AGENT_SANDBOX_VERSION}`,
    kind: "SandboxWarmPool",
    metadata: { name, namespace, labels },
    spec: { replicas, sandboxTemplateRef: { name: template } },
  };
}

/** A claim on the template's warm pool; the session label reaches the adopted pod through additionalPodMetadata. */
export function sandboxClaim(name: string, namespace: string, labels: Record<string, string>, pool: string, id: string): KubeManifest {
  return {
    apiVersion: `${AGENT_SANDBOX_GROUP}/${AGENT_SANDBOX_VERSION}`,
    kind: "SandboxClaim",
    metadata: { name, namespace, labels, annotations: { [ANNOTATION_SESSION_ID]: id } },
    spec: { warmPoolRef: { name: pool }, additionalPodMetadata: { labels: { [LABEL_SESSION]: labels[LABEL_SESSION] ?? labelValue(id) } } },
  };
}

/** The SandboxTemplate/SandboxWarmPool name for a pod template: a content hash, so any change makes a new template. */
export function templateObjectName(podSpec: Record<string, unknown>, rules: unknown): string {
  return `paddock-tpl-${hash(JSON.stringify({ podSpec, rules }), 16)}`;
}

export function workspaceClaim(name: string, namespace: string, labels: Record<string, string>, bytes: number, settings: K8sSettings, fromSnapshot?: string): KubeManifest {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, namespace, labels },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: String(Math.max(2 ** 20, Math.floor(bytes))) } },
      ...(settings.storageClassName ? { storageClassName: settings.storageClassName } : {}),
      ...(fromSnapshot ? { dataSource: { apiGroup: SNAPSHOT_GROUP, kind: "VolumeSnapshot", name: fromSnapshot } } : {}),
    },
  };
}

export function volumeSnapshot(name: string, namespace: string, labels: Record<string, string>, pvc: string, settings: K8sSettings): KubeManifest {
  return {
    apiVersion: `${SNAPSHOT_GROUP}/v1`,
    kind: "VolumeSnapshot",
    metadata: { name, namespace, labels },
    spec: {
      source: { persistentVolumeClaimName: pvc },
      ...(settings.volumeSnapshotClassName ? { volumeSnapshotClassName: settings.volumeSnapshotClassName } : {}),
    },
  };
}

export const GATEWAY_NAME = "paddock-gateway";
export const gatewayLabels = (instance: string) => ({ ...instanceLabels(instance), "app.kubernetes.io/name": GATEWAY_NAME });

/**
 * The egress gateway as its own Deployment + Service (DESIGN.md: never a sidecar, which would put
 * secret values in the tenant's pod). Its configuration and secret values come from the Secret
 * `settings.gateway.secretName`, which only this Deployment mounts.
 */
export function gatewayManifests(instance: string, settings: K8sSettings): [KubeManifest, KubeManifest] {
  const g = settings.gateway;
  const labels = gatewayLabels(instance);
  const deployment: KubeManifest = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: GATEWAY_NAME, namespace: settings.namespace, labels },
    spec: {
      replicas: g.replicas,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } },
          containers: [{
            name: "gateway",
            image: g.image ?? "",
            args: ["gateway", "--listen", `0.0.0.0:${g.port}`, "--config", "/etc/paddock-gateway/config.json"],
            ports: [{ name: "proxy", containerPort: g.port, protocol: "TCP" }],
            readinessProbe: { tcpSocket: { port: g.port }, periodSeconds: 5 },
            resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { cpu: "1", memory: "512Mi" } },
            securityContext: { ...sessionSecurityContext(), runAsUser: 10001, runAsGroup: 10001 },
            volumeMounts: [{ name: "config", mountPath: "/etc/paddock-gateway", readOnly: true }],
          }],
          volumes: [{ name: "config", secret: { secretName: g.secretName, defaultMode: 0o400 } }],
        },
      },
    },
  };
  const service: KubeManifest = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: GATEWAY_NAME, namespace: settings.namespace, labels },
    spec: { type: "ClusterIP", selector: labels, ports: [{ name: "proxy", port: g.port, targetPort: g.port, protocol: "TCP" }] },
  };
  return [deployment, service];
}
