/**
 * A k8s provider instance's settings (installation config, `kind: k8s`). The schema is the type
 * and the documentation (STYLE.md point 5); `parseSettings` turns every problem into one
 * `invalid_argument` naming the field (`settings.namespace: …`).
 */
import { z } from "zod";
import { PaddockError } from "../../core/index.ts";

/** DNS-1123 label: namespaces, container and Service names. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** DNS-1123 subdomain: RuntimeClass, StorageClass and VolumeSnapshotClass names. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
/** A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters. */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

const label = z.string().regex(DNS_LABEL, "must be a DNS-1123 label (lower case letters, digits and '-', at most 63)");
const subdomain = z.string().max(253).regex(DNS_SUBDOMAIN, "must be a DNS-1123 subdomain");
/** An image reference: no whitespace, no shell metacharacters (it is never run through a shell, but it is logged). */
const image = z.string().min(1).max(512).regex(/^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/, "must be an image reference such as debian:12-slim");
const port = z.number().int().min(1).max(65535);
const cidr = z.string().regex(/^[0-9a-fA-F.:]+\/\d{1,3}$/, "must be a CIDR such as 10.0.0.0/8");

export const k8sSettingsSchema = z.strictObject({
  inCluster: z.boolean().default(false)
    .describe("Use the pod's service account (in-cluster config) instead of the `kubeconfig` credential from the vault."),
  namespace: label.default("paddock").describe("Namespace every object of this instance lives in; it must exist."),
  runtimeClassName: subdomain.default("gvisor")
    .describe("RuntimeClass of every session pod: the cluster's isolation tier (`gvisor` for gVisor, `kata` for Kata Containers). It must exist in the cluster; a missing one is a clear error at create."),
  image: image.default("debian:12-slim").describe("Image of a session for a template without its own image (base `debian-12`/`host`)."),
  images: z.record(z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/), image).default({})
    .describe("Template id → a prebuilt image that already holds the template's install steps; such a template's steps are not run at create."),
  useAgentSandbox: z.enum(["auto", "always", "never"]).default("auto")
    .describe("kubernetes-sigs/agent-sandbox: `auto` uses it when discovery shows extensions.agents.x-k8s.io/v1beta1, `always` requires it, `never` uses plain Pods."),
  warmPool: z.number().int().min(0).max(100).default(0)
    .describe("Ready sandboxes agent-sandbox keeps per template (SandboxWarmPool replicas); 0: none (claims cold-start)."),
  readyTimeoutMs: z.number().int().min(1000).max(3_600_000).default(180_000)
    .describe("How long a session pod may take to become Ready (image pull, recipe steps) before create fails naming its last condition or event."),
  storageClassName: subdomain.optional()
    .describe("StorageClass of the per-session workspace PVC (only used when the cluster serves VolumeSnapshots: snapshots need a PVC); absent: the cluster's default."),
  volumeSnapshotClassName: subdomain.optional().describe("VolumeSnapshotClass for snapshots; absent: the cluster's default."),
  gateway: z.strictObject({
    proxy: z.strictObject({ host: z.string().min(1).max(253), port }).optional()
      .describe("Where session pods reach Paddock's gateway proxy, when it is not what the control plane's remote egress names (e.g. an address only the cluster sees)."),
    deploy: z.boolean().default(false)
      .describe("Create the egress gateway as its own Deployment + Service in `namespace` (never a sidecar: a sidecar would put secrets in the tenant pod)."),
    image: image.optional().describe("The gateway's image (required with deploy)."),
    port: port.default(3128).describe("The deployed gateway's proxy port."),
    replicas: z.number().int().min(1).max(20).default(2),
    secretName: label.default("paddock-gateway").describe("Secret holding the deployed gateway's configuration and secret values (made by the operator; never read by this provider)."),
  }).default({ deploy: false, port: 3128, replicas: 2, secretName: "paddock-gateway" }),
  dns: z.strictObject({
    allow: z.boolean().default(false)
      .describe("Opt in to let session pods query the cluster DNS (UDP/TCP 53). Off by default: a DNS query can carry data out (a tunnel through the cluster's resolvers), against \"no network path but the gateway\". Pods do not need it to find the gateway: its names are resolved by the control plane and pinned in the pod's hostAliases."),
    namespace: label.default("kube-system"),
    podLabels: z.record(z.string().regex(LABEL_KEY, "must be a label key"), z.string().regex(LABEL_VALUE, "must be a label value")).default({ "k8s-app": "kube-dns" }),
  }).default({ allow: false, namespace: "kube-system", podLabels: { "k8s-app": "kube-dns" } }),
  preview: z.strictObject({
    from: z.array(cidr).max(32).default([])
      .describe("Addresses the preview gateway connects from: the only ingress a session pod accepts. Empty: no ingress at all."),
  }).default({ from: [] }),
});

export type K8sSettings = z.infer<typeof k8sSettingsSchema>;

/** Validate raw settings; every problem in one `invalid_argument`, each prefixed with its field path. */
export function parseK8sSettings(raw: unknown): K8sSettings {
  const r = k8sSettingsSchema.safeParse(raw ?? {});
  if (!r.success) {
    const problems = r.error.issues.map((i) => `settings${i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("")}: ${i.message}`);
    throw new PaddockError("invalid_argument", `k8s provider: ${problems.join("; ")}`, { problems });
  }
  const s = r.data;
  if (s.gateway.deploy && !s.gateway.image) {
    throw new PaddockError("invalid_argument", "k8s provider: settings.gateway.image: required when settings.gateway.deploy is true");
  }
  return s;
}
