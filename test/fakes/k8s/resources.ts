/**
 * The resources the fake serves: what discovery lists and how each kind is checked. Built-in
 * kinds use the `kubernetes-models` validators plus `semantics.ts`; custom resources use the
 * pinned CRDs under crds/ (only their storage version, `served: true, storage: true`: the fake
 * runs no conversion webhook, so older served versions such as agent-sandbox's deprecated
 * v1alpha1 are not offered).
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { ConfigMap, Event, Namespace, PersistentVolumeClaim, Pod, Secret, Service } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { RuntimeClass } from "kubernetes-models/node.k8s.io/v1";
import type { KubeObject } from "./api.ts";
import type { Cause } from "./status.ts";
import { compileCrdSchema, validateBuiltin, type CrdSchema, type NameRule } from "./validate.ts";
import { collectRules } from "./cel.ts";
import { dataCauses, deploymentCauses, networkPolicyCauses, podCauses, pvcCauses, runtimeClassCauses, serviceCauses } from "./semantics.ts";

export interface ResourceDef {
  /** "" for the core group. */
  group: string;
  version: string;
  /** The plural, as in the URL. */
  resource: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames: string[];
  /** Has a `/status` subresource: writes to the object keep its status, writes to `/status` keep the rest. */
  status: boolean;
  /** Other subresources discovery lists (`exec`, `log`). */
  subresources: string[];
  nameRule: NameRule;
  /** A PUT without metadata.resourceVersion is allowed (built-in kinds); custom resources require one (422), as their registry strategy does. */
  unconditionalUpdate: boolean;
  /** Schema and semantic checks; `old` on update. Returns 422 causes, or throws an ApiError (400). */
  validate(obj: KubeObject, old: KubeObject | null): Cause[];
}

export function apiVersionOf(def: ResourceDef): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

type ModelCtor = new (data: never) => { validate(): void };

function builtin(
  group: string,
  resource: string,
  kind: string,
  model: ModelCtor,
  opts: { namespaced?: boolean; status?: boolean; subresources?: string[]; shortNames?: string[]; nameRule?: NameRule; version?: string; semantics?: (o: KubeObject, old: KubeObject | null) => Cause[] },
): ResourceDef {
  return {
    group,
    version: opts.version ?? "v1",
    resource,
    singular: kind.toLowerCase(),
    kind,
    namespaced: opts.namespaced ?? true,
    shortNames: opts.shortNames ?? [],
    status: opts.status ?? false,
    subresources: opts.subresources ?? [],
    nameRule: opts.nameRule ?? "subdomain",
    unconditionalUpdate: true,
    validate(obj, old) {
      return [...validateBuiltin(model, obj), ...(opts.semantics?.(obj, old) ?? [])];
    },
  };
}

const CRD_DIR = join(dirname(fileURLToPath(import.meta.url)), "crds");

interface CrdDoc {
  spec: {
    group: string;
    names: { kind: string; plural: string; singular: string; shortNames?: string[] };
    scope: "Namespaced" | "Cluster";
    versions: { name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: Record<string, unknown> }; subresources?: { status?: unknown } }[];
  };
}

/** A resource from a pinned CRD file (its storage version), validated against its schema (compiled on first use). */
function fromCrd(file: string): ResourceDef {
  const doc = parseYaml(readFileSync(join(CRD_DIR, file), "utf8")) as CrdDoc;
  const version = doc.spec.versions.find((v) => v.served && v.storage);
  if (!version) throw new Error(`${file}: no served storage version`);
  // Known CEL rules only (cel.ts): checked now, so a CRD the fake cannot fully validate fails at start.
  collectRules(version.schema.openAPIV3Schema);
  let schema: CrdSchema | null = null;
  return {
    group: doc.spec.group,
    version: version.name,
    resource: doc.spec.names.plural,
    singular: doc.spec.names.singular,
    kind: doc.spec.names.kind,
    namespaced: doc.spec.scope === "Namespaced",
    shortNames: doc.spec.names.shortNames ?? [],
    status: version.subresources?.status !== undefined,
    subresources: [],
    nameRule: "subdomain",
    unconditionalUpdate: false,
    validate(obj, old) {
      schema ??= compileCrdSchema(version.schema.openAPIV3Schema);
      return schema.check(obj, old);
    },
  };
}

/** Every resource this cluster serves, given its options. */
export function servedResources(opts: { agentSandbox?: boolean; volumeSnapshots?: boolean }): ResourceDef[] {
  const defs: ResourceDef[] = [
    builtin("", "pods", "Pod", Pod, { status: true, subresources: ["exec", "log"], shortNames: ["po"], semantics: podCauses }),
    builtin("", "services", "Service", Service, { status: true, shortNames: ["svc"], nameRule: "dns1035", semantics: serviceCauses }),
    builtin("", "secrets", "Secret", Secret, { semantics: dataCauses }),
    builtin("", "configmaps", "ConfigMap", ConfigMap, { shortNames: ["cm"], semantics: dataCauses }),
    builtin("", "namespaces", "Namespace", Namespace, { namespaced: false, status: true, shortNames: ["ns"], nameRule: "label" }),
    builtin("", "events", "Event", Event, { shortNames: ["ev"] }),
    builtin("apps", "deployments", "Deployment", Deployment, { status: true, shortNames: ["deploy"], semantics: deploymentCauses }),
    builtin("networking.k8s.io", "networkpolicies", "NetworkPolicy", NetworkPolicy, { shortNames: ["netpol"], semantics: (o) => networkPolicyCauses(o) }),
    builtin("node.k8s.io", "runtimeclasses", "RuntimeClass", RuntimeClass, { namespaced: false, semantics: runtimeClassCauses }),
  ];
  if (opts.volumeSnapshots) {
    defs.push(builtin("", "persistentvolumeclaims", "PersistentVolumeClaim", PersistentVolumeClaim, { status: true, shortNames: ["pvc"], semantics: pvcCauses }));
    defs.push(fromCrd("snapshot.storage.k8s.io_volumesnapshots.yaml"));
  }
  if (opts.agentSandbox) {
    defs.push(fromCrd("agents.x-k8s.io_sandboxes.yaml"));
    defs.push(fromCrd("extensions.agents.x-k8s.io_sandboxtemplates.yaml"));
    defs.push(fromCrd("extensions.agents.x-k8s.io_sandboxclaims.yaml"));
    defs.push(fromCrd("extensions.agents.x-k8s.io_sandboxwarmpools.yaml"));
  }
  return defs;
}
