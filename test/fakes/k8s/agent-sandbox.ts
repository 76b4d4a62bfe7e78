/**
 * A small controller for the pinned kubernetes-sigs/agent-sandbox CRDs (commit in crds/*.yaml),
 * following its controllers at that commit (controllers/sandbox_controller.go,
 * extensions/controllers/sandbox{claim,warmpool,template}_controller.go):
 * - Sandbox: one Pod named after it (or its `agents.x-k8s.io/pod-name` annotation) from
 *   `spec.podTemplate`, labelled `agents.x-k8s.io/sandbox-name-hash`; a headless Service when
 *   `spec.service` is true; status `podIPs`, `selector`, `service`/`serviceFQDN` and the Ready
 *   condition (DependenciesReady once the pod is Ready with an IP). `operatingMode: Suspended`
 *   deletes the pod.
 * - SandboxWarmPool: keeps `spec.replicas` Sandboxes (generateName `<pool>-`, owned by the pool,
 *   labelled `agents.x-k8s.io/warm-pool-sandbox=<hash>`) from its template; status replicas,
 *   readyReplicas, selector.
 * - SandboxClaim (v1beta1: `spec.warmPoolRef`): adopts a Ready pool Sandbox (ownership moves to
 *   the claim, pool labels removed, `agents.x-k8s.io/claim-uid` added; the pool then refills) or,
 *   with none ready or when the claim sets `env`/`volumeClaimTemplates`, creates a Sandbox named
 *   after the claim from the pool's template (env injected per `envVarsInjectionPolicy`). Status
 *   `sandbox.name`, `sandbox.podIPs` and the Sandbox's Ready condition.
 * - SandboxTemplate: labels itself with its ref hash and manages `<template>-network-policy`
 *   (Managed, the default: the template's `networkPolicy`, or the project's secure default
 *   allowing the public internet and no private ranges; Unmanaged: none).
 * Not done: lifecycle expiry (shutdownTime, ttlSecondsAfterFinished), PVCs from
 * volumeClaimTemplates, pool update strategies, the waiting for warm
 * candidates that are not Ready yet (the claim cold-starts at once).
 */
import type { KubeObject } from "./api.ts";
import type { ApiServer } from "./apiserver.ts";
import type { ResourceDef } from "./resources.ts";
import { ApiError } from "./status.ts";
import { canonicalJson } from "./json.ts";

type Obj = Record<string, unknown>;
type Condition = { type: string; status: string; reason: string; message: string; lastTransitionTime: string; observedGeneration?: number };

const SANDBOX_NAME_HASH = "agents.x-k8s.io/sandbox-name-hash";
const WARM_POOL_LABEL = "agents.x-k8s.io/warm-pool-sandbox";
const TEMPLATE_REF_HASH = "agents.x-k8s.io/sandbox-template-ref-hash";
const CLAIM_UID = "agents.x-k8s.io/claim-uid";
const LAUNCH_TYPE = "agents.x-k8s.io/launch-type";
const POD_NAME_ANNOTATION = "agents.x-k8s.io/pod-name";
const TEMPLATE_REF_ANNOTATION = "agents.x-k8s.io/sandbox-template-ref";
const ASSIGNED_SANDBOX_ANNOTATION = "agents.x-k8s.io/sandbox-name";

const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");
const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});

/** The project's NameHash: FNV-1a 32-bit as 8 hex digits. */
export function nameHash(name: string): string {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(name)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

function controllerRef(owner: KubeObject): NonNullable<KubeObject["metadata"]["ownerReferences"]>[number] & { blockOwnerDeletion: boolean } {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid!, controller: true, blockOwnerDeletion: true };
}

function controllerOf(o: KubeObject): { kind: string; name: string; uid: string } | undefined {
  return o.metadata.ownerReferences?.find((r) => r.controller);
}

/** meta.SetStatusCondition: the transition time moves only when the status does. */
function setCondition(list: Condition[] | undefined, next: Condition): Condition[] {
  const out = (list ?? []).filter((c) => c.type !== next.type);
  const before = (list ?? []).find((c) => c.type === next.type);
  out.push(before && before.status === next.status ? { ...next, lastTransitionTime: before.lastTransitionTime } : next);
  return out;
}

export class AgentSandboxController {
  private readonly queue = new Map<string, () => void>();
  private scheduled = false;
  private closed = false;
  private readonly d: Record<"sandbox" | "claim" | "pool" | "template" | "pod" | "service" | "netpol", ResourceDef>;

  constructor(private readonly api: ApiServer) {
    this.d = {
      sandbox: api.def("agents.x-k8s.io", "sandboxes")!,
      claim: api.def("extensions.agents.x-k8s.io", "sandboxclaims")!,
      pool: api.def("extensions.agents.x-k8s.io", "sandboxwarmpools")!,
      template: api.def("extensions.agents.x-k8s.io", "sandboxtemplates")!,
      pod: api.def("", "pods")!,
      service: api.def("", "services")!,
      netpol: api.def("networking.k8s.io", "networkpolicies")!,
    };
    api.store.onChange((_type, def, o, old) => {
      this.observe(def, o);
      // An adopted sandbox leaves its pool: the pool must see that too.
      if (old && controllerOf(old)?.uid !== controllerOf(o)?.uid) this.observe(def, old);
    });
  }

  close(): void {
    this.closed = true;
    this.queue.clear();
  }

  private observe(def: ResourceDef, o: KubeObject): void {
    const ns = o.metadata.namespace!;
    const owner = controllerOf(o);
    if (def === this.d.sandbox) {
      this.enqueue(this.d.sandbox, ns, o.metadata.name);
      if (owner?.kind === "SandboxWarmPool") this.enqueue(this.d.pool, ns, owner.name);
      if (owner?.kind === "SandboxClaim") this.enqueue(this.d.claim, ns, owner.name);
    } else if ((def === this.d.pod || def === this.d.service) && owner?.kind === "Sandbox") this.enqueue(this.d.sandbox, ns, owner.name);
    else if (def === this.d.claim) this.enqueue(this.d.claim, ns, o.metadata.name);
    else if (def === this.d.pool) {
      this.enqueue(this.d.pool, ns, o.metadata.name);
      for (const c of this.api.store.list(this.d.claim, ns)) if (!obj(c.status).sandbox) this.enqueue(this.d.claim, ns, c.metadata.name);
    } else if (def === this.d.template) {
      this.enqueue(this.d.template, ns, o.metadata.name);
      for (const p of this.api.store.list(this.d.pool, ns)) this.enqueue(this.d.pool, ns, p.metadata.name);
    }
  }

  private enqueue(def: ResourceDef, ns: string, name: string): void {
    if (this.closed) return;
    const run = () => {
      const o = this.api.store.get(def, ns, name);
      if (!o || o.metadata.deletionTimestamp) return;
      try {
        if (def === this.d.sandbox) this.reconcileSandbox(o);
        else if (def === this.d.pool) this.reconcilePool(o);
        else if (def === this.d.claim) this.reconcileClaim(o);
        else this.reconcileTemplate(o);
      } catch (err) {
        // A write raced another one (409) or an object vanished (404): the change that caused it
        // requeues the key. Anything else the API refused is reported as the real controller's
        // event recorder would.
        if (!(err instanceof ApiError)) throw err;
        if (err.code !== 409 && err.code !== 404) this.api.recordEvent(o, "Warning", "ReconcileError", err.message, "agent-sandbox-controller");
      }
    };
    this.queue.set(`${def.resource}/${ns}/${name}`, run);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.scheduled = false;
    const work = [...this.queue.values()];
    this.queue.clear();
    for (const run of work) run();
  }

  /** Update status only when it changed (reconcile: observe, compute, write on change). */
  private writeStatus(def: ResourceDef, o: KubeObject, status: Obj): void {
    if (canonicalJson(o.status ?? {}) === canonicalJson(status)) return;
    this.api.update(def, o.metadata.namespace, o.metadata.name, { ...o, status }, "status");
  }

  private reconcileSandbox(sb: KubeObject): void {
    const ns = sb.metadata.namespace!;
    const spec = obj(sb.spec);
    const hash = nameHash(sb.metadata.name);
    const podName = sb.metadata.annotations?.[POD_NAME_ANNOTATION] || sb.metadata.name;
    let pod = this.api.store.get(this.d.pod, ns, podName) ?? null;
    let error: string | null = null;
    const suspended = spec.operatingMode === "Suspended";
    if (suspended && pod && !pod.metadata.deletionTimestamp) this.api.delete(this.d.pod, ns, podName);
    if (!suspended && !pod) {
      const template = obj(spec.podTemplate);
      const meta = obj(template.metadata);
      try {
        pod = this.api.create(this.d.pod, ns, {
          metadata: {
            name: podName,
            labels: { ...(meta.labels as Obj | undefined), [SANDBOX_NAME_HASH]: hash },
            ...(meta.annotations ? { annotations: meta.annotations } : {}),
            ownerReferences: [controllerRef(sb)],
          },
          spec: template.spec,
        });
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        error = err.message;
      }
    }
    let service: KubeObject | null = this.api.store.get(this.d.service, ns, sb.metadata.name) ?? null;
    if (spec.service === true && !service) {
      const ports = ((obj(obj(spec.podTemplate).spec).containers as Obj[] | undefined) ?? []).flatMap((c) => (c.ports as Obj[] | undefined) ?? []);
      service = this.api.create(this.d.service, ns, {
        metadata: { name: sb.metadata.name, labels: { [SANDBOX_NAME_HASH]: hash }, ownerReferences: [controllerRef(sb)] },
        spec: { clusterIP: "None", selector: { [SANDBOX_NAME_HASH]: hash }, ports: ports.map((p, i) => ({ name: p.name ?? `port-${i}`, port: p.containerPort, protocol: p.protocol ?? "TCP" })) },
      });
    }
    const podStatus = obj(pod?.status);
    const podReady = podStatus.phase === "Running" && ((podStatus.conditions as Condition[] | undefined) ?? []).some((c) => c.type === "Ready" && c.status === "True");
    const podIPs = ((podStatus.podIPs as { ip: string }[] | undefined) ?? []).map((p) => p.ip);
    const svcReady = spec.service === true ? service !== null : true;
    const ready: Condition = {
      type: "Ready",
      observedGeneration: sb.metadata.generation,
      status: !error && !suspended && podReady && podIPs.length > 0 && svcReady ? "True" : "False",
      reason: error ? "ReconcilerError" : suspended ? "SandboxSuspended" : podReady && podIPs.length > 0 && svcReady ? "DependenciesReady" : "DependenciesNotReady",
      message: error ? `Error seen: ${error}` : suspended ? (pod ? "Sandbox is suspending" : "Sandbox is suspended") : !pod ? "Pod does not exist" : podReady ? (podIPs.length ? "Pod is Ready" : "Pod is Ready but has no podIPs yet") : `Pod exists with phase: ${String(podStatus.phase)}`,
      lastTransitionTime: now(),
    };
    const status: Obj = { ...obj(sb.status) };
    status.conditions = setCondition(status.conditions as Condition[] | undefined, ready);
    if (pod) {
      status.selector = `${SANDBOX_NAME_HASH}=${hash}`;
      status.podIPs = podIPs.length ? podIPs : undefined;
      status.nodeName = (pod.spec as { nodeName?: string }).nodeName;
    } else {
      delete status.podIPs;
      delete status.nodeName;
    }
    if (service) {
      status.service = service.metadata.name;
      status.serviceFQDN = `${service.metadata.name}.${ns}.svc.cluster.local`;
    }
    this.writeStatus(this.d.sandbox, sb, JSON.parse(JSON.stringify(status)) as Obj);
  }

  private template(ns: string, name: string): KubeObject | null {
    return this.api.store.get(this.d.template, ns, name) ?? null;
  }

  /** A Sandbox spec from a template: its blueprint (podTemplate, volumeClaimTemplates, service), with the secure pod defaults the claim controller applies. */
  private blueprint(template: KubeObject): Obj {
    const spec = structuredClone(obj(template.spec));
    const podTemplate = obj(spec.podTemplate);
    const podSpec = obj(podTemplate.spec);
    podSpec.automountServiceAccountToken ??= false;
    const managed = spec.networkPolicyManagement === undefined || spec.networkPolicyManagement === "Managed";
    if (managed && spec.networkPolicy === undefined && podSpec.dnsPolicy === undefined) {
      podSpec.dnsPolicy = "None";
      podSpec.dnsConfig = { nameservers: ["8.8.8.8", "1.1.1.1"] };
    }
    const out: Obj = { podTemplate: { ...podTemplate, spec: podSpec } };
    if (spec.volumeClaimTemplates !== undefined) out.volumeClaimTemplates = spec.volumeClaimTemplates;
    if (spec.service !== undefined) out.service = spec.service;
    return out;
  }

  private poolMembers(pool: KubeObject): KubeObject[] {
    const hash = nameHash(pool.metadata.name);
    return this.api.store.list(this.d.sandbox, pool.metadata.namespace!).filter((s) => s.metadata.labels?.[WARM_POOL_LABEL] === hash && controllerOf(s)?.uid === pool.metadata.uid && !s.metadata.deletionTimestamp);
  }

  private reconcilePool(pool: KubeObject): void {
    const ns = pool.metadata.namespace!;
    const spec = obj(pool.spec);
    const templateName = String(obj(spec.sandboxTemplateRef).name);
    const template = this.template(ns, templateName);
    const hash = nameHash(pool.metadata.name);
    let members = this.poolMembers(pool);
    const want = Number(spec.replicas ?? 1);
    if (template && members.length < want) {
      const blueprint = this.blueprint(template);
      const podTemplate = obj(blueprint.podTemplate);
      const meta = obj(podTemplate.metadata);
      podTemplate.metadata = {
        ...meta,
        labels: { ...(meta.labels as Obj | undefined), [WARM_POOL_LABEL]: hash, [TEMPLATE_REF_HASH]: nameHash(templateName) },
        annotations: { "cluster-autoscaler.kubernetes.io/safe-to-evict": "true", ...(meta.annotations as Obj | undefined) },
      };
      for (let i = members.length; i < want; i++) {
        this.api.create(this.d.sandbox, ns, {
          metadata: {
            generateName: `${pool.metadata.name}-`,
            labels: { [WARM_POOL_LABEL]: hash, [TEMPLATE_REF_HASH]: nameHash(templateName), [LAUNCH_TYPE]: "warm", "agents.x-k8s.io/created-by": "controller" },
            annotations: { [TEMPLATE_REF_ANNOTATION]: templateName },
            ownerReferences: [controllerRef(pool)],
          },
          spec: blueprint,
        });
      }
    }
    if (members.length > want) {
      const surplus = [...members].sort((a, b) => Number(isReady(a)) - Number(isReady(b))).slice(0, members.length - want);
      for (const s of surplus) this.api.delete(this.d.sandbox, ns, s.metadata.name);
    }
    members = this.poolMembers(pool);
    this.writeStatus(this.d.pool, pool, { observedGeneration: pool.metadata.generation, replicas: members.length, readyReplicas: members.filter(isReady).length, selector: `${WARM_POOL_LABEL}=${hash}` });
  }

  private reconcileClaim(claim: KubeObject): void {
    const ns = claim.metadata.namespace!;
    const spec = obj(claim.spec);
    const status = obj(claim.status);
    let sandbox: KubeObject | null = null;
    let failure: { reason: string; message: string } | null = null;
    const boundName = String(obj(status.sandbox).name ?? claim.metadata.annotations?.[ASSIGNED_SANDBOX_ANNOTATION] ?? claim.metadata.name);
    const existing = this.api.store.get(this.d.sandbox, ns, boundName);
    if (existing && controllerOf(existing)?.uid === claim.metadata.uid) sandbox = existing;
    else if (existing && boundName === claim.metadata.name)
      failure = { reason: "ReconcilerError", message: `sandbox "${existing.metadata.name}" is not controlled by claim "${claim.metadata.name}". Please use a different claim name or delete the sandbox manually` };
    else {
      const pool = this.api.store.get(this.d.pool, ns, String(obj(spec.warmPoolRef).name));
      const template = pool ? this.template(ns, String(obj(obj(pool.spec).sandboxTemplateRef).name)) : null;
      if (!pool) failure = { reason: "WarmPoolNotFound", message: `SandboxWarmPool "${String(obj(spec.warmPoolRef).name)}" not found` };
      else if (!template) failure = { reason: "TemplateNotFound", message: `SandboxTemplate "${String(obj(obj(pool.spec).sandboxTemplateRef).name)}" not found` };
      else {
        const coldOnly = (spec.env as unknown[] | undefined)?.length || (spec.volumeClaimTemplates as unknown[] | undefined)?.length;
        const candidate = coldOnly ? undefined : this.poolMembers(pool).filter(isReady).sort((a, b) => String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)))[0];
        try {
          sandbox = candidate ? this.adopt(claim, candidate, template) : this.coldStart(claim, template);
        } catch (err) {
          if (!(err instanceof ApiError) || err.code === 409) throw err;
          failure = { reason: "ReconcilerError", message: err.message };
        }
      }
    }
    const sbReady = ((obj(sandbox?.status).conditions as Condition[] | undefined) ?? []).find((c) => c.type === "Ready");
    const ready: Condition = failure
      ? { type: "Ready", status: "False", ...failure, lastTransitionTime: now(), observedGeneration: claim.metadata.generation }
      : sbReady
        ? { ...sbReady, observedGeneration: claim.metadata.generation }
        : { type: "Ready", status: "False", reason: "SandboxNotReady", message: "Sandbox is not ready", lastTransitionTime: now(), observedGeneration: claim.metadata.generation };
    const next: Obj = { conditions: setCondition(status.conditions as Condition[] | undefined, ready) };
    if (sandbox) next.sandbox = { name: sandbox.metadata.name, ...((obj(sandbox.status).podIPs as string[] | undefined)?.length ? { podIPs: obj(sandbox.status).podIPs } : {}) };
    this.writeStatus(this.d.claim, claim, next);
  }

  /** completeAdoption: ownership moves from the pool to the claim (an optimistic-locked update). */
  private adopt(claim: KubeObject, sb: KubeObject, template: KubeObject): KubeObject {
    const labels = { ...(sb.metadata.labels ?? {}) };
    delete labels[WARM_POOL_LABEL];
    delete labels["agents.x-k8s.io/sandbox-template-hash"];
    delete labels["agents.x-k8s.io/sandbox-pod-template-hash"];
    delete labels["agents.x-k8s.io/created-by"];
    labels[LAUNCH_TYPE] = "warm";
    labels[CLAIM_UID] = claim.metadata.uid!;
    labels[TEMPLATE_REF_HASH] = nameHash(template.metadata.name);
    const spec = obj(sb.spec);
    const podTemplate = obj(spec.podTemplate);
    const podMeta = obj(podTemplate.metadata);
    const annotations = { ...(podMeta.annotations as Obj | undefined) };
    if (annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] === "true") delete annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"];
    podTemplate.metadata = { ...podMeta, annotations, labels: { ...(podMeta.labels as Obj | undefined), [CLAIM_UID]: claim.metadata.uid } };
    const adopted = this.api.update(this.d.sandbox, sb.metadata.namespace, sb.metadata.name, {
      ...sb,
      metadata: { ...sb.metadata, labels, ownerReferences: [controllerRef(claim)], annotations: { ...(sb.metadata.annotations ?? {}), [POD_NAME_ANNOTATION]: sb.metadata.name } },
      spec: { ...spec, podTemplate },
    });
    this.api.update(this.d.claim, claim.metadata.namespace, claim.metadata.name, {
      ...claim,
      metadata: { ...claim.metadata, annotations: { ...(claim.metadata.annotations ?? {}), [ASSIGNED_SANDBOX_ANNOTATION]: sb.metadata.name } },
    });
    return adopted;
  }

  /** createSandbox: a Sandbox named after the claim from the pool's template, env injected per the template's policy. */
  private coldStart(claim: KubeObject, template: KubeObject): KubeObject {
    const blueprint = this.blueprint(template);
    const podTemplate = obj(blueprint.podTemplate);
    const podMeta = obj(podTemplate.metadata);
    podTemplate.metadata = { ...podMeta, labels: { ...(podMeta.labels as Obj | undefined), [CLAIM_UID]: claim.metadata.uid, [TEMPLATE_REF_HASH]: nameHash(template.metadata.name) } };
    const env = (obj(claim.spec).env as { name: string; value: string; containerName?: string }[] | undefined) ?? [];
    if (env.length) {
      const policy = obj(template.spec).envVarsInjectionPolicy;
      if (policy !== "Allowed" && policy !== "Overrides") throw new ApiError(422, "Invalid", "environment variable injection is not allowed by the template policy");
      const containers = (obj(podTemplate.spec).containers as Obj[] | undefined) ?? [];
      for (const e of env) {
        const target = e.containerName ? containers.find((c) => c.name === e.containerName) : containers[0];
        if (!target) throw new ApiError(422, "Invalid", `target container "${String(e.containerName)}" not found in template for environment variable "${e.name}"`);
        const list = ((target.env as { name: string; value?: string }[] | undefined) ?? []).slice();
        const at = list.findIndex((x) => x.name === e.name);
        if (at >= 0 && policy !== "Overrides") throw new ApiError(422, "Invalid", `environment variable "${e.name}" already set by the template and the policy does not allow overrides`);
        if (at >= 0) list[at] = { name: e.name, value: e.value };
        else list.push({ name: e.name, value: e.value });
        target.env = list;
      }
    }
    return this.api.create(this.d.sandbox, claim.metadata.namespace, {
      metadata: {
        name: claim.metadata.name,
        labels: { [CLAIM_UID]: claim.metadata.uid!, [LAUNCH_TYPE]: "cold", [TEMPLATE_REF_HASH]: nameHash(template.metadata.name) },
        annotations: { [TEMPLATE_REF_ANNOTATION]: template.metadata.name },
        ownerReferences: [controllerRef(claim)],
      },
      spec: blueprint,
    });
  }

  private reconcileTemplate(template: KubeObject): void {
    const ns = template.metadata.namespace!;
    const hash = nameHash(template.metadata.name);
    if (template.metadata.labels?.[TEMPLATE_REF_HASH] !== hash) {
      this.api.update(this.d.template, ns, template.metadata.name, { ...template, metadata: { ...template.metadata, labels: { ...(template.metadata.labels ?? {}), [TEMPLATE_REF_HASH]: hash } } });
      return; // the update requeues the template
    }
    const spec = obj(template.spec);
    const npName = `${template.metadata.name}-network-policy`;
    const existing = this.api.store.get(this.d.netpol, ns, npName);
    const owned = existing && controllerOf(existing)?.uid === template.metadata.uid;
    if (spec.networkPolicyManagement === "Unmanaged") {
      if (owned) this.api.delete(this.d.netpol, ns, npName);
      return;
    }
    const custom = spec.networkPolicy as Obj | undefined;
    const desired: Obj = {
      podSelector: { matchLabels: { [TEMPLATE_REF_HASH]: hash } },
      policyTypes: ["Ingress", "Egress"],
      ...(custom
        ? { ...(custom.ingress ? { ingress: custom.ingress } : {}), ...(custom.egress ? { egress: custom.egress } : {}) }
        : {
            ingress: [{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "agent-sandbox-system" } }, podSelector: { matchLabels: { app: "sandbox-router" } } }] }],
            egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"] } }, { ipBlock: { cidr: "::/0", except: ["fc00::/7", "fe80::/10"] } }] }],
          }),
    };
    if (!existing) {
      this.api.create(this.d.netpol, ns, { metadata: { name: npName, ownerReferences: [controllerRef(template)] }, spec: desired });
    } else if (owned && canonicalJson(existing.spec) !== canonicalJson(desired)) {
      this.api.update(this.d.netpol, ns, npName, { ...existing, spec: desired });
    }
  }
}

function isReady(sb: KubeObject): boolean {
  return ((obj(sb.status).conditions as Condition[] | undefined) ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

