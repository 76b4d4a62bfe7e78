/**
 * What the apiserver fills in on create and update (defaulting and each registry's
 * PrepareForCreate): pod status Pending, a Service's clusterIP, a Deployment's replicas, a
 * Secret's stringData folded into data. Only the fields a client is likely to read back.
 */
import type { KubeObject } from "./api.ts";
import { badRequest } from "./status.ts";

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});

function defaultPodSpec(spec: Obj): void {
  spec.restartPolicy ??= "Always";
  spec.dnsPolicy ??= "ClusterFirst";
  spec.schedulerName ??= "default-scheduler";
  spec.terminationGracePeriodSeconds ??= 30;
  spec.securityContext ??= {};
  for (const c of [...((spec.containers as Obj[] | undefined) ?? []), ...((spec.initContainers as Obj[] | undefined) ?? [])]) {
    c.terminationMessagePath ??= "/dev/termination-log";
    c.terminationMessagePolicy ??= "File";
    c.imagePullPolicy ??= typeof c.image === "string" && (c.image.endsWith(":latest") || !c.image.includes(":")) ? "Always" : "IfNotPresent";
    c.resources ??= {};
  }
}

/** The cluster's service network (10.96.0.0/12, kubeadm's default); addresses are handed out in order. */
export class ClusterIpAllocator {
  private next = 10;
  allocate(): string {
    const n = this.next++;
    return `10.96.${Math.floor(n / 256)}.${n % 256}`;
  }
}

/** Defaults for a new object of `kind` (its status already reset by the caller where the kind has a status subresource). */
export function defaultOnCreate(o: KubeObject, ips: ClusterIpAllocator): void {
  switch (o.kind) {
    case "Pod":
      o.spec = obj(o.spec);
      defaultPodSpec(o.spec as Obj);
      o.status = { phase: "Pending", qosClass: qosClass(o.spec as Obj) };
      break;
    case "Service": {
      const spec = (o.spec = obj(o.spec));
      spec.type ??= "ClusterIP";
      spec.sessionAffinity ??= "None";
      if (spec.clusterIP === undefined || spec.clusterIP === "") spec.clusterIP = ips.allocate();
      spec.clusterIPs = [spec.clusterIP];
      spec.ipFamilies = ["IPv4"];
      spec.ipFamilyPolicy ??= "SingleStack";
      for (const p of (spec.ports as Obj[] | undefined) ?? []) {
        p.protocol ??= "TCP";
        p.targetPort ??= p.port;
      }
      o.status = { loadBalancer: {} };
      break;
    }
    case "Deployment": {
      const spec = (o.spec = obj(o.spec));
      spec.replicas ??= 1;
      spec.revisionHistoryLimit ??= 10;
      spec.progressDeadlineSeconds ??= 600;
      spec.strategy ??= { type: "RollingUpdate", rollingUpdate: { maxUnavailable: "25%", maxSurge: "25%" } };
      defaultPodSpec(obj(obj(spec.template).spec));
      o.status = {};
      break;
    }
    case "Namespace":
      o.spec = { finalizers: ["kubernetes"] };
      o.status = { phase: "Active" };
      o.metadata.labels = { ...(o.metadata.labels ?? {}), "kubernetes.io/metadata.name": o.metadata.name };
      break;
    case "Secret":
      o.type ??= "Opaque";
      foldStringData(o);
      break;
    case "PersistentVolumeClaim":
      o.spec = obj(o.spec);
      (o.spec as Obj).volumeMode ??= "Filesystem";
      o.status = { phase: "Pending" };
      break;
    default:
      break;
  }
}

/** Defaults on update (a Secret's stringData; a Service keeps its clusterIP when the update leaves it out). */
export function defaultOnUpdate(o: KubeObject, old: KubeObject): void {
  if (o.kind === "Secret") foldStringData(o);
  if (o.kind === "Service") {
    const spec = (o.spec = obj(o.spec));
    const before = obj(old.spec);
    if (spec.clusterIP === undefined || spec.clusterIP === "") spec.clusterIP = before.clusterIP;
    spec.clusterIPs ??= before.clusterIPs;
    spec.type ??= before.type;
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** `stringData` is write-only: merged into `data` as base64 (and dropped), as the apiserver does. */
function foldStringData(o: KubeObject): void {
  const data = obj(o.data);
  for (const [k, v] of Object.entries(data)) {
    if (typeof v !== "string" || v.length % 4 !== 0 || !BASE64.test(v)) throw badRequest(`Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0 (data[${k}])`);
  }
  for (const [k, v] of Object.entries(obj(o.stringData))) data[k] = Buffer.from(String(v)).toString("base64");
  delete o.stringData;
  if (Object.keys(data).length > 0) o.data = data;
}

function qosClass(spec: Obj): string {
  const containers = (spec.containers as Obj[] | undefined) ?? [];
  let any = false;
  let guaranteed = containers.length > 0;
  for (const c of containers) {
    const r = obj(c.resources);
    const limits = obj(r.limits);
    const requests = obj(r.requests);
    if (Object.keys(limits).length || Object.keys(requests).length) any = true;
    for (const res of ["cpu", "memory"]) {
      if (limits[res] === undefined || (requests[res] !== undefined && requests[res] !== limits[res])) guaranteed = false;
    }
  }
  return guaranteed ? "Guaranteed" : any ? "Burstable" : "BestEffort";
}
