import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { ApiException, CoreV1Api, CustomObjectsApi, KubeConfig, NetworkingV1Api } from "@kubernetes/client-node";
import { nameHash, startFakeCluster } from "./index.ts";
import type { FakeCluster, FakeKubelet } from "./index.ts";
import { until } from "../../helpers/wait.ts";

/**
 * The fake cluster's agent-sandbox support (the pinned kubernetes-sigs/agent-sandbox CRDs under
 * crds/ and the small controller in agent-sandbox.ts), driven by the real @kubernetes/client-node.
 */

const NS = "default";
const EXT = { group: "extensions.agents.x-k8s.io", version: "v1beta1", namespace: NS };
const CORE_SB = { group: "agents.x-k8s.io", version: "v1beta1", namespace: NS };
// Custom objects come back as untyped JSON.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const kubelet: FakeKubelet = {
  startPod: () => Promise.resolve({ podIP: "10.244.3.3" }),
  stop: () => Promise.resolve(),
  exec: () => Promise.resolve(0),
};

async function failure(p: Promise<unknown>): Promise<{ code: number; status: Obj }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiException, `expected an ApiException, got ${String(err)}`);
    return { code: err.code, status: JSON.parse(String(err.body)) as Obj };
  }
  assert.fail("the call succeeded");
}

const template = (name: string, spec: Obj = {}) => ({
  apiVersion: "extensions.agents.x-k8s.io/v1beta1",
  kind: "SandboxTemplate",
  metadata: { name },
  spec: { podTemplate: { spec: { containers: [{ name: "agent", image: "debian:12", env: [{ name: "FROM_TEMPLATE", value: "1" }] }] } }, ...spec },
});
const pool = (name: string, templateName: string, replicas: number) => ({ apiVersion: "extensions.agents.x-k8s.io/v1beta1", kind: "SandboxWarmPool", metadata: { name }, spec: { replicas, sandboxTemplateRef: { name: templateName } } });
const claim = (name: string, poolName: string, spec: Obj = {}) => ({ apiVersion: "extensions.agents.x-k8s.io/v1beta1", kind: "SandboxClaim", metadata: { name }, spec: { warmPoolRef: { name: poolName }, ...spec } });

void describe("k8s fake cluster: agent-sandbox CRDs and controller", () => {
  let cluster!: FakeCluster;
  let custom!: CustomObjectsApi;
  let core!: CoreV1Api;
  let net!: NetworkingV1Api;
  before(async () => {
    cluster = await startFakeCluster({ agentSandbox: true, kubelet });
    const kc = new KubeConfig();
    kc.loadFromString(cluster.kubeconfig);
    custom = kc.makeApiClient(CustomObjectsApi);
    core = kc.makeApiClient(CoreV1Api);
    net = kc.makeApiClient(NetworkingV1Api);
  });
  after(async () => cluster?.close());

  const getClaim = (name: string) => custom.getNamespacedCustomObject({ ...EXT, plural: "sandboxclaims", name }) as Promise<Obj>;
  const readyCondition = (o: Obj) => ((o.status?.conditions ?? []) as Obj[]).find((c) => c.type === "Ready");

  void it("validates against the pinned CRD schemas: 422 with field paths, defaults applied, unknown fields pruned", async () => {
    const noRef = await failure(custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxclaims", body: { ...claim("c0", "p"), spec: {} } }));
    assert.equal(noRef.code, 422);
    assert.equal(noRef.status.details.causes[0].field, "spec.warmPoolRef");
    assert.equal(noRef.status.details.causes[0].reason, "FieldValueRequired");
    const badMode = await failure(custom.createNamespacedCustomObject({ ...CORE_SB, plural: "sandboxes", body: { apiVersion: "agents.x-k8s.io/v1beta1", kind: "Sandbox", metadata: { name: "sb0" }, spec: { operatingMode: "Sleeping", podTemplate: { spec: { containers: [{ name: "a", image: "x" }] } } } } }));
    assert.equal(badMode.code, 422);
    assert.equal(badMode.status.details.causes[0].field, "spec.operatingMode");
    assert.equal(badMode.status.details.causes[0].reason, "FieldValueNotSupported");
    const negative = await failure(custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxwarmpools", body: pool("neg", "t", -1) }));
    assert.equal(negative.status.details.causes[0].field, "spec.replicas");
    const made = (await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxwarmpools", body: { ...pool("defaults", "none-yet", 0), spec: { sandboxTemplateRef: { name: "none-yet" }, bogus: true } } })) as Obj;
    assert.equal(made.spec.replicas, 1, "the CRD's default");
    assert.equal(made.spec.bogus, undefined, "pruned");
    await custom.deleteNamespacedCustomObject({ ...EXT, plural: "sandboxwarmpools", name: "defaults" });
    const badName = await failure(custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxtemplates", body: template("Bad.Name_") }));
    assert.equal(badName.status.details.causes[0].field, "metadata.name");
  });

  void it("keeps a warm pool ready, and a claim adopts one of its sandboxes (the pool refills)", async () => {
    await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxtemplates", body: template("py") });
    await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxwarmpools", body: pool("py-pool", "py", 2) });
    const ready = await until(async () => {
      const p = (await custom.getNamespacedCustomObject({ ...EXT, plural: "sandboxwarmpools", name: "py-pool" })) as Obj;
      return p.status?.readyReplicas === 2 ? p : null;
    }, 30_000, "the pool to have 2 ready sandboxes");
    assert.equal(ready.status.selector, `agents.x-k8s.io/warm-pool-sandbox=${nameHash("py-pool")}`);
    const members = cluster.objects("Sandbox", NS).map((s) => (s.metadata as Obj).name as string);
    assert.equal(members.length, 2);
    assert.ok(members.every((m) => m.startsWith("py-pool-")));

    const np = await net.readNamespacedNetworkPolicy({ namespace: NS, name: "py-network-policy" });
    assert.deepEqual(np.spec?.podSelector?.matchLabels, { "agents.x-k8s.io/sandbox-template-ref-hash": nameHash("py") });

    const made = (await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxclaims", body: claim("session-1", "py-pool") })) as Obj;
    const bound = await until(async () => {
      const c = await getClaim("session-1");
      return readyCondition(c)?.status === "True" ? c : null;
    }, 30_000, "the claim to be Ready");
    const sbName = bound.status.sandbox.name as string;
    assert.ok(members.includes(sbName), "adopted from the pool");
    assert.deepEqual(bound.status.sandbox.podIPs, ["10.244.3.3"]);
    const sb = (await custom.getNamespacedCustomObject({ ...CORE_SB, plural: "sandboxes", name: sbName })) as Obj;
    assert.equal(sb.metadata.ownerReferences[0].kind, "SandboxClaim");
    assert.equal(sb.metadata.ownerReferences[0].uid, made.metadata.uid);
    assert.equal(sb.metadata.labels["agents.x-k8s.io/warm-pool-sandbox"], undefined);
    assert.equal(sb.metadata.labels["agents.x-k8s.io/claim-uid"], made.metadata.uid);
    const pod = await core.readNamespacedPod({ namespace: NS, name: sbName });
    assert.equal(pod.status?.phase, "Running");
    assert.equal(pod.spec?.automountServiceAccountToken, false, "the controller's secure default");

    await until(async () => {
      const p = (await custom.getNamespacedCustomObject({ ...EXT, plural: "sandboxwarmpools", name: "py-pool" })) as Obj;
      return p.status?.readyReplicas === 2 && cluster.objects("Sandbox", NS).length === 3;
    }, 30_000, "the pool to refill");

    await custom.deleteNamespacedCustomObject({ ...EXT, plural: "sandboxclaims", name: "session-1" });
    await until(async () => !cluster.objects("Sandbox", NS).some((s) => (s.metadata as Obj).name === sbName) && !cluster.objects("Pod", NS).some((p) => (p.metadata as Obj).name === sbName), 30_000, "the claim's sandbox and pod to be collected");
  });

  void it("cold-starts a claim with env from the pool's template when the template allows it, and says why not otherwise", async () => {
    await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxtemplates", body: template("envy", { envVarsInjectionPolicy: "Allowed" }) });
    await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxwarmpools", body: pool("envy-pool", "envy", 0) });
    await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxclaims", body: claim("with-env", "envy-pool", { env: [{ name: "SESSION", value: "s-1" }] }) });
    await until(async () => readyCondition(await getClaim("with-env"))?.status === "True", 30_000, "the cold claim to be Ready");
    const pod = await core.readNamespacedPod({ namespace: NS, name: "with-env" });
    assert.deepEqual(pod.spec?.containers[0]?.env?.map((e) => `${e.name}=${e.value}`), ["FROM_TEMPLATE=1", "SESSION=s-1"]);
    const sb = (await custom.getNamespacedCustomObject({ ...CORE_SB, plural: "sandboxes", name: "with-env" })) as Obj;
    assert.equal(sb.metadata.labels["agents.x-k8s.io/launch-type"], "cold");

    await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxclaims", body: claim("env-refused", "py-pool", { env: [{ name: "SESSION", value: "s-2" }] }) });
    const refused = await until(async () => {
      const c = readyCondition(await getClaim("env-refused"));
      return c?.reason === "ReconcilerError" ? c : null;
    }, 30_000, "the claim to say the template refuses env");
    assert.match(refused.message, /environment variable injection is not allowed/);

    await custom.createNamespacedCustomObject({ ...EXT, plural: "sandboxclaims", body: claim("no-pool", "missing-pool") });
    const missing = await until(async () => {
      const c = readyCondition(await getClaim("no-pool"));
      return c?.reason === "WarmPoolNotFound" ? c : null;
    }, 30_000, "WarmPoolNotFound");
    assert.equal(missing.status, "False");
  });
});
