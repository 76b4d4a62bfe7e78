import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { ConfigMap, Pod } from "kubernetes-models/v1";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { PaddockError } from "../../src/core/index.ts";
import { kubeClients } from "../../src/providers/k8s/kube.ts";
import { parseK8sSettings } from "../../src/providers/k8s/settings.ts";
import { sessionLabels, sessionPod } from "../../src/providers/k8s/manifests.ts";
import { watchUntil } from "../../src/providers/k8s/wait.ts";
import { startFakeCluster } from "../fakes/k8s/index.ts";
import type { FakeCluster } from "../fakes/k8s/index.ts";

/** Manifests as loose JSON, for assertions on their fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

/**
 * Adversarial review of the k8s provider (issue 13, round 2): what a hostile environment-file
 * author (install steps run in the pod) or a misbehaving API server can make the provider do.
 */
const settings = parseK8sSettings({ namespace: "sessions" });
const compute = { cpu: 0.5, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 2 ** 30 };

void describe("k8s provider under attack: the session pod (manifests)", () => {
  void it("the recipe's init container, which runs the environment file's install steps as root, is held to compute like the session container", () => {
    const steps = [":(){ :|:& };:", "head -c 100G /dev/zero > /big", "python3 -c 'b = bytearray(1 << 40)'"];
    // (`env` only for builds where the pod still takes the session's variables; elsewhere ignored.)
    const input = { name: "paddock-x", namespace: "sessions", labels: sessionLabels("k8s-prod", "s1"), id: "s1", settings, image: "debian:12-slim", compute, env: {}, recipe: { templateId: "tpl", base: "debian-12" as const, steps } };
    const pod = sessionPod(input) as Loose;
    new Pod(pod).validate();
    const session = pod.spec.containers[0];
    const [recipe] = pod.spec.initContainers;
    assert.equal(recipe.name, "recipe");
    // Without limits the init container is bounded only by the node: a fork bomb or a memory hog
    // in an install step would take the node's resources (and a ResourceQuota namespace would refuse the pod).
    assert.deepEqual(recipe.resources, session.resources);
    assert.deepEqual(recipe.resources.limits, { cpu: "500m", memory: String(256 * 2 ** 20), "ephemeral-storage": String(2 ** 30) });
  });
});

void describe("k8s provider under attack: a misbehaving API server (fake cluster)", () => {
  let cluster: FakeCluster;
  let kc: KubeConfig;
  before(async () => {
    cluster = await startFakeCluster({});
    kc = new KubeConfig();
    kc.loadFromString(cluster.kubeconfig);
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: "paddock" } } });
  });
  after(async () => {
    await cluster?.close();
  });

  void it("a list whose version is always too old for a watch (410 at every round) is relisted with a backoff, not in a hot loop, until the deadline", async () => {
    const c = kubeClients({ kubeconfig: cluster.kubeconfig, inCluster: false, instance: "t" });
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({ namespace: "paddock", body: new ConfigMap({ metadata: { name: "marker" }, data: { v: "0" } }) as never });
    const oldVersion = (await core.readNamespacedConfigMap({ namespace: "paddock", name: "marker" })).metadata!.resourceVersion!;
    // More changes than the fake keeps (200 events), so oldVersion has expired for good.
    for (let i = 1; i <= 210; i++) await core.replaceNamespacedConfigMap({ namespace: "paddock", name: "marker", body: { ...(await core.readNamespacedConfigMap({ namespace: "paddock", name: "marker" })), data: { v: String(i) } } });
    let lists = 0;
    const timeoutMs = 4000;
    const started = Date.now();
    await assert.rejects(
      watchUntil(c, {
        what: "configmap marker at a version it never reaches",
        path: "/api/v1/namespaces/paddock/configmaps",
        name: "marker",
        timeoutMs,
        list: async () => {
          lists++;
          return { item: undefined, resourceVersion: oldVersion };
        },
        check: () => undefined,
        explain: async () => "",
      }),
      (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && /timed out after 4000 ms/.test(e.message),
    );
    assert.ok(Date.now() - started >= timeoutMs);
    // A hot loop makes hundreds of list+watch pairs in 4 s; a backoff (doubling to 1 s) about a dozen.
    assert.ok(lists <= 20, `${lists} lists in ${timeoutMs} ms`);
    assert.ok(lists >= 3, `${lists} lists: it did keep trying`);
  });
});
