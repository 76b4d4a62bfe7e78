/**
 * A fake Kubernetes cluster for tests, driven by the real `@kubernetes/client-node`: an HTTPS API
 * server (its own CA in the kubeconfig, bearer-token auth, 401 otherwise) with the apiserver's
 * semantics for the subset Paddock uses, and a pluggable fake kubelet that runs the pods.
 *
 * API reference followed: https://kubernetes.io/docs/reference/using-api/api-concepts/
 * (resourceVersion, watch, 410 Gone, list chunking), https://kubernetes.io/docs/reference/kubernetes-api/
 * (objects), the pinned CRDs under crds/ (kubernetes-sigs/agent-sandbox and
 * kubernetes-csi/external-snapshotter; repo, path and commit in each file's header).
 *
 * Served: discovery (/api, /apis, /api/v1, /apis/<group>/<version>, /version); core v1 pods
 * (+ exec over WebSocket, log, status), services, secrets, configmaps, namespaces, events;
 * apps/v1 deployments; networking.k8s.io/v1 networkpolicies; node.k8s.io/v1 runtimeclasses;
 * with `volumeSnapshots`: persistentvolumeclaims and snapshot.storage.k8s.io/v1 volumesnapshots;
 * with `agentSandbox`: agents.x-k8s.io/v1beta1 sandboxes and extensions.agents.x-k8s.io/v1beta1
 * sandboxtemplates, sandboxclaims, sandboxwarmpools (their storage versions; no conversion webhook,
 * so the deprecated v1alpha1 is not served).
 *
 * Rejected as real: invalid objects (422 Invalid with details.causes field paths: the Kubernetes
 * OpenAPI schemas via `kubernetes-models`, CRD schemas via ajv with defaulting and pruning, plus
 * the apiserver's own checks in semantics.ts), names that are not DNS-1123, undecodable JSON and
 * wrong types (400), existing names (409 AlreadyExists), stale resourceVersions (409 Conflict),
 * unknown objects and namespaces (404), pods naming a missing RuntimeClass (403, admission),
 * watches from a version older than the last 200 changes (200 + ERROR event with a 410 Expired
 * Status), exec into a pod that is not running (400).
 *
 * Not done, on purpose or for lack of time (a test must not rely on them):
 * - NetworkPolicies are stored and validated, never enforced (the kubelet's pods are not on a
 *   pod network the fake controls).
 * - Deployments get a status saying every replica is ready, but no ReplicaSets or Pods.
 * - No Endpoints/EndpointSlices, no Service routing, no nodes API, no RBAC (one all-powerful token),
 *   no server-side apply, no protobuf, no OpenAPI documents, no aggregated discovery.
 * - A strategic merge patch is applied as a JSON merge patch (lists replaced, not merged by key).
 * - CRD CEL rules (`x-kubernetes-validations`) are evaluated by hand translations (cel.ts) of the
 *   pinned CRDs' rules; a re-pinned CRD with a rule the table lacks fails to load.
 * - A pod's container command is not run: a pod is "Running" while its kubelet sandbox exists;
 *   `pods/log` answers an empty log. Probes, restarts and container exits are not modelled.
 * - Pods: one fake node (`paddock-fake-node`); no scheduling constraints, quotas or limit ranges.
 * - VolumeSnapshots are stored and validated; no snapshot controller makes them ready.
 *
 * Kubelets: pass `kubelet` (the `FakeKubelet` interface in api.ts; kubelet-local.ts runs each pod
 * as a real local Paddock sandbox) and optionally `runtimeHandlers` (the node's RuntimeClass
 * handlers). Without a kubelet, pods still go Running with a made-up IP but exec fails.
 */

export type { FakeCluster, FakeClusterOptions, FakeKubelet, ExecStreams, KubeObject } from "./api.ts";
export { startFakeCluster } from "./server.ts";
export { nameHash } from "./agent-sandbox.ts";
export { localKubelet } from "./kubelet-local.ts";
