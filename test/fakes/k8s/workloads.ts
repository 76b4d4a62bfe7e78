/**
 * The Deployment controller, reduced: a Deployment is stored and its status says every replica
 * is updated, ready and available (observedGeneration, replicas, conditions Available and
 * Progressing). It creates no ReplicaSets and no Pods: nothing in a Deployment's pods runs in
 * the fake (say so in any test that relies on one).
 */
import type { KubeObject } from "./api.ts";
import type { ApiServer } from "./apiserver.ts";
import { ApiError } from "./status.ts";

const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

export function runDeploymentController(api: ApiServer): void {
  const deployments = api.def("apps", "deployments")!;
  api.store.onChange((type, def, obj) => {
    if (def !== deployments || type === "DELETED") return;
    setImmediate(() => reconcile(api, obj));
  });
}

function reconcile(api: ApiServer, seen: KubeObject): void {
  const def = api.def("apps", "deployments")!;
  const current = api.store.get(def, seen.metadata.namespace, seen.metadata.name);
  if (!current || current.metadata.uid !== seen.metadata.uid || current.metadata.deletionTimestamp) return;
  const replicas = Number((current.spec as { replicas?: number }).replicas ?? 1);
  const status = (current.status ?? {}) as Record<string, unknown>;
  if (status.observedGeneration === current.metadata.generation && status.replicas === replicas) return;
  const t = now();
  current.status = {
    observedGeneration: current.metadata.generation,
    replicas,
    updatedReplicas: replicas,
    readyReplicas: replicas,
    availableReplicas: replicas,
    conditions: [
      { type: "Available", status: "True", lastUpdateTime: t, lastTransitionTime: t, reason: "MinimumReplicasAvailable", message: "Deployment has minimum availability." },
      { type: "Progressing", status: "True", lastUpdateTime: t, lastTransitionTime: t, reason: "NewReplicaSetAvailable", message: `ReplicaSet "${current.metadata.name}-fake" has successfully progressed.` },
    ],
  };
  try {
    api.store.update(def, current);
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 409)) throw err;
    setImmediate(() => reconcile(api, seen)); // raced a client write: look again
  }
}
