/**
 * The checks the apiserver makes beyond the OpenAPI schema, for the kinds the fake serves
 * (k8s.io/kubernetes/pkg/apis/{core,apps,networking,node}/validation): names of containers,
 * required images, a selector that matches its template, immutable fields on update.
 * A subset: each function names what it checks; anything else the real validation rejects is
 * accepted here (see the README list in index.ts).
 */
import type { KubeObject } from "./api.ts";
import type { Cause } from "./status.ts";
import { invalidValue, nameProblem, required } from "./validate.ts";
import { canonicalJson } from "./json.ts";

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});
const asList = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);

function immutable(field: string, value: unknown): Cause {
  return { reason: "FieldValueInvalid", message: `Invalid value: ${JSON.stringify(value)}: field is immutable`, field };
}

/** A PodSpec: at least one container, container names are unique DNS labels, images set, a valid restart policy and RuntimeClass name. */
export function podSpecCauses(spec: Obj, path: string): Cause[] {
  const causes: Cause[] = [];
  const containers = asList(spec.containers);
  if (containers.length === 0) causes.push(required(`${path}.containers`));
  const seen = new Set<string>();
  for (const [list, kind] of [
    [asList(spec.initContainers), "initContainers"],
    [containers, "containers"],
  ] as const) {
    list.forEach((c, i) => {
      const at = `${path}.${kind}[${i}]`;
      const name = typeof c.name === "string" ? c.name : "";
      if (!name) causes.push(required(`${at}.name`));
      else {
        const problem = nameProblem(name, "label");
        if (problem) causes.push(invalidValue(`${at}.name`, name, problem));
        if (seen.has(name)) causes.push({ reason: "FieldValueDuplicate", message: `Duplicate value: ${JSON.stringify(name)}`, field: `${at}.name` });
        seen.add(name);
      }
      if (!c.image) causes.push(required(`${at}.image`));
    });
  }
  const restart = spec.restartPolicy;
  if (restart !== undefined && !["Always", "OnFailure", "Never"].includes(String(restart)))
    causes.push({ reason: "FieldValueNotSupported", message: `Unsupported value: ${JSON.stringify(restart)}: supported values: "Always", "OnFailure", "Never"`, field: `${path}.restartPolicy` });
  if (typeof spec.runtimeClassName === "string") {
    const problem = nameProblem(spec.runtimeClassName, "subdomain");
    if (problem) causes.push(invalidValue(`${path}.runtimeClassName`, spec.runtimeClassName, problem));
  }
  return causes;
}

/** The fields of a running pod's spec that may change (`ValidatePodUpdate`). */
function mutablePodSpecView(spec: Obj): Obj {
  const copy = structuredClone(spec);
  for (const c of [...asList(copy.containers), ...asList(copy.initContainers)]) delete c.image;
  delete copy.activeDeadlineSeconds;
  delete copy.tolerations;
  delete copy.terminationGracePeriodSeconds;
  return copy;
}

export function podCauses(obj: KubeObject, old: KubeObject | null): Cause[] {
  const spec = asObj(obj.spec);
  const causes = podSpecCauses(spec, "spec");
  if (old && canonicalJson(mutablePodSpecView(spec)) !== canonicalJson(mutablePodSpecView(asObj(old.spec)))) {
    causes.push({
      reason: "FieldValueForbidden",
      message:
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
      field: "spec",
    });
  }
  return causes;
}

function selectorMatches(selector: Obj, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(asObj(selector.matchLabels))) if (labels[k] !== v) return false;
  for (const e of asList(selector.matchExpressions)) {
    const key = String(e.key);
    const values = (e.values as string[] | undefined) ?? [];
    const has = key in labels;
    switch (e.operator) {
      case "In":
        if (!has || !values.includes(labels[key]!)) return false;
        break;
      case "NotIn":
        if (has && values.includes(labels[key]!)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

export function deploymentCauses(obj: KubeObject, old: KubeObject | null): Cause[] {
  const spec = asObj(obj.spec);
  const causes: Cause[] = [];
  const selector = asObj(spec.selector);
  const template = asObj(spec.template);
  const labels = (asObj(template.metadata).labels ?? {}) as Record<string, string>;
  if (Object.keys(asObj(selector.matchLabels)).length === 0 && asList(selector.matchExpressions).length === 0)
    causes.push(invalidValue("spec.selector", selector, "empty selector is invalid for deployment"));
  else if (!selectorMatches(selector, labels)) causes.push(invalidValue("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"));
  const podSpec = asObj(template.spec);
  causes.push(...podSpecCauses(podSpec, "spec.template.spec"));
  if (podSpec.restartPolicy !== undefined && podSpec.restartPolicy !== "Always")
    causes.push({ reason: "FieldValueNotSupported", message: `Unsupported value: ${JSON.stringify(podSpec.restartPolicy)}: supported values: "Always"`, field: "spec.template.spec.restartPolicy" });
  if (typeof spec.replicas === "number" && spec.replicas < 0) causes.push(invalidValue("spec.replicas", spec.replicas, "must be greater than or equal to 0"));
  if (old && canonicalJson(asObj(old.spec).selector) !== canonicalJson(spec.selector)) causes.push(immutable("spec.selector", spec.selector));
  return causes;
}

export function serviceCauses(obj: KubeObject, old: KubeObject | null): Cause[] {
  const spec = asObj(obj.spec);
  const causes: Cause[] = [];
  const ports = asList(spec.ports);
  const headless = spec.clusterIP === "None";
  if (ports.length === 0 && !headless && spec.type !== "ExternalName") causes.push(required("spec.ports"));
  const names = new Set<string>();
  ports.forEach((p, i) => {
    if (typeof p.port !== "number" || p.port < 1 || p.port > 65535) causes.push(invalidValue(`spec.ports[${i}].port`, p.port, "must be between 1 and 65535, inclusive"));
    if (ports.length > 1 && !p.name) causes.push(required(`spec.ports[${i}].name`));
    if (typeof p.name === "string") {
      if (names.has(p.name)) causes.push({ reason: "FieldValueDuplicate", message: `Duplicate value: ${JSON.stringify(p.name)}`, field: `spec.ports[${i}].name` });
      names.add(p.name);
    }
  });
  if (old) {
    const before = asObj(old.spec).clusterIP;
    if (spec.clusterIP !== undefined && spec.clusterIP !== "" && spec.clusterIP !== before) causes.push(immutable("spec.clusterIP", spec.clusterIP));
  }
  return causes;
}

const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const MAX_SECRET_BYTES = 1024 * 1024;

/** Secret and ConfigMap keys; secret values must be base64 (a decode error is a 400, as real) and total at most 1 MiB. */
export function dataCauses(obj: KubeObject, old: KubeObject | null): Cause[] {
  const causes: Cause[] = [];
  let total = 0;
  for (const field of ["data", "stringData", "binaryData"]) {
    for (const [key, value] of Object.entries(asObj(obj[field]))) {
      if (!CONFIG_KEY.test(key) || key.length > 253)
        causes.push(invalidValue(`${field}[${key}]`, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
      total += typeof value === "string" ? (field === "stringData" ? Buffer.byteLength(value) : Math.floor((value.length * 3) / 4)) : 0;
    }
  }
  if (total > MAX_SECRET_BYTES) causes.push({ reason: "FieldValueTooLong", message: `Too long: must have at most ${MAX_SECRET_BYTES} bytes`, field: "data" });
  if (obj.kind === "Secret" && old && (old.type ?? "Opaque") !== (obj.type ?? "Opaque")) causes.push(immutable("type", obj.type));
  if (old && old.immutable === true) {
    if (canonicalJson(old.data ?? {}) !== canonicalJson(obj.data ?? {})) causes.push({ reason: "FieldValueForbidden", message: "Forbidden: field is immutable when `immutable` is set", field: "data" });
  }
  return causes;
}

export function runtimeClassCauses(obj: KubeObject, old: KubeObject | null): Cause[] {
  const handler = obj.handler;
  if (typeof handler !== "string" || handler === "") return [required("handler")];
  const problem = nameProblem(handler, "label");
  const causes = problem ? [invalidValue("handler", handler, problem)] : [];
  if (old && old.handler !== handler) causes.push(immutable("handler", handler));
  return causes;
}

export function networkPolicyCauses(obj: KubeObject): Cause[] {
  const spec = asObj(obj.spec);
  const causes: Cause[] = [];
  asList(spec.policyTypes).forEach((t, i) => {
    if (!["Ingress", "Egress"].includes(String(t)))
      causes.push({ reason: "FieldValueNotSupported", message: `Unsupported value: ${JSON.stringify(t)}: supported values: "Ingress", "Egress"`, field: `spec.policyTypes[${i}]` });
  });
  for (const dir of ["ingress", "egress"] as const) {
    asList(spec[dir]).forEach((rule, i) => {
      asList(rule.ports).forEach((p, j) => {
        if (typeof p.port === "number" && (p.port < 1 || p.port > 65535)) causes.push(invalidValue(`spec.${dir}[${i}].ports[${j}].port`, p.port, "must be between 1 and 65535, inclusive"));
        if (p.protocol !== undefined && !["TCP", "UDP", "SCTP"].includes(String(p.protocol)))
          causes.push({ reason: "FieldValueNotSupported", message: `Unsupported value: ${JSON.stringify(p.protocol)}: supported values: "SCTP", "TCP", "UDP"`, field: `spec.${dir}[${i}].ports[${j}].protocol` });
      });
      const peers = asList(dir === "ingress" ? rule.from : rule.to);
      peers.forEach((peer, j) => {
        const block = asObj(peer.ipBlock);
        if (peer.ipBlock !== undefined && !/^[0-9a-fA-F:.]+\/\d+$/.test(String(block.cidr ?? "")))
          causes.push(invalidValue(`spec.${dir}[${i}].${dir === "ingress" ? "from" : "to"}[${j}].ipBlock.cidr`, block.cidr, "must be a valid CIDR"));
      });
    });
  }
  return causes;
}

export function pvcCauses(obj: KubeObject, old: KubeObject | null): Cause[] {
  const spec = asObj(obj.spec);
  const causes: Cause[] = [];
  if (asList(spec.accessModes).length === 0) causes.push(required("spec.accessModes"));
  if (asObj(asObj(spec.resources).requests).storage === undefined) causes.push(required("spec.resources[storage]"));
  if (old && canonicalJson(asObj(old.spec).dataSource) !== canonicalJson(spec.dataSource)) causes.push(immutable("spec.dataSource", spec.dataSource));
  return causes;
}
