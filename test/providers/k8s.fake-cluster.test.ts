import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { ConfigMap } from "kubernetes-models/v1";
import { CoreV1Api, KubeConfig, NodeV1Api } from "@kubernetes/client-node";
import type { RemoteEgressAttachment, SandboxSpec } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { k8sDriver } from "../../src/providers/k8s/index.ts";
import type { K8sProvider } from "../../src/providers/k8s/index.ts";
import { kubeClients } from "../../src/providers/k8s/kube.ts";
import { waitForPod } from "../../src/providers/k8s/sessions.ts";
import { watchUntil } from "../../src/providers/k8s/wait.ts";
import { startFakeCluster } from "../fakes/k8s/index.ts";
import type { FakeCluster, FakeClusterOptions, FakeKubelet } from "../fakes/k8s/index.ts";
import { localKubelet } from "../fakes/k8s/kubelet-local.ts";
import { openLayerStore } from "../../src/layers/index.ts";
import { createLocalProvider, installationScope, openNetworkManager } from "../../src/providers/local/index.ts";
import type { Provider } from "../../src/core/index.ts";
import { freePorts } from "../network/helpers.ts";
import { releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { providerConformance } from "./conformance.ts";
import { until } from "../helpers/wait.ts";

/** Manifests and stored objects as loose JSON, for assertions on their fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

/**
 * The k8s provider against the fake cluster (test/fakes/k8s: the documented API subset, driven by
 * the real @kubernetes/client-node, validating every object against the Kubernetes schemas and
 * agent-sandbox's pinned CRDs). The shared conformance suite runs twice on the fake's local
 * kubelet (every pod a real local sandbox): with plain Pods and with agent-sandbox claims; then the
 * provider-specific cases.
 */
const NS = "paddock";
let n = 0;

/** The session's proxy password in `egress()`: it must never be in a stored or listed object. */
const PROXY_PASSWORD = "pdk-pass-5b1f0c9e7a";
const PROXY_URL = `https://pdk-s1:${PROXY_PASSWORD}@127.0.0.1:9443`;

const egress = (caPath = "/etc/paddock/ca.pem"): RemoteEgressAttachment => ({
  env: { HTTPS_PROXY: PROXY_URL, HTTP_PROXY: PROXY_URL, NO_PROXY: "localhost,127.0.0.1" },
  files: [{ path: caPath, content: "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n" }],
  proxyUrl: PROXY_URL,
  allow: [{ host: "127.0.0.1", port: 9443 }],
});

function k8sSpec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return {
    id: `k8s-${process.pid}-${n++}`,
    mode: "session",
    base: "debian-12",
    layers: [],
    compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
    hostname: "k8s-session",
    env: {},
    recipe: { templateId: "tpl-test", base: "debian-12", steps: [] },
    ...overrides,
  };
}

interface RecordedExec {
  pod: string;
  argv: string[];
  stdin: string;
}

/**
 * A kubelet that runs nothing: pods get a made-up IP; every exec succeeds with no output and is
 * recorded with its stdin (so a test sees which files the provider wrote into which pod).
 */
function recordingKubelet(): FakeKubelet & { execs: RecordedExec[] } {
  const execs: RecordedExec[] = [];
  let ip = 2;
  return {
    execs,
    startPod: async () => ({ podIP: `10.244.7.${ip++}` }),
    async exec(pod, _container, argv, streams) {
      let stdin = "";
      if (streams.stdin) for await (const chunk of streams.stdin) stdin += (chunk as Buffer).toString();
      execs.push({ pod: pod.metadata.name!, argv, stdin });
      return 0;
    },
    stop: async () => undefined,
  };
}

/** A fake cluster with the namespace and (unless told otherwise) the gvisor RuntimeClass, and a provider on it; without a kubelet, a recording one. */
async function clusterWithProvider(opts: FakeClusterOptions & { runtimeClass?: boolean; settings?: Record<string, unknown> } = {}): Promise<{ cluster: FakeCluster; provider: K8sProvider; kc: KubeConfig; kubelet: FakeKubelet; close: () => Promise<void> }> {
  const kubelet = opts.kubelet ?? recordingKubelet();
  const cluster = await startFakeCluster({ ...opts, kubelet });
  const kc = new KubeConfig();
  kc.loadFromString(cluster.kubeconfig);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
  if (opts.runtimeClass !== false) await kc.makeApiClient(NodeV1Api).createRuntimeClass({ body: { metadata: { name: "gvisor" }, handler: "runsc" } });
  const settings = k8sDriver.parseSettings({ namespace: NS, readyTimeoutMs: 60_000, ...opts.settings });
  const provider = (await k8sDriver.create({ name: "k8s-test", settings, credentials: { kubeconfig: cluster.kubeconfig } }, { home: "/nonexistent", log: () => undefined })) as K8sProvider;
  return {
    cluster, provider, kc, kubelet,
    close: async () => {
      for (const id of await provider.list().catch(() => [])) await provider.stop(id).catch(() => false);
      await provider.close();
      await cluster.close();
    },
  };
}

const isCode = (code: string, re?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof PaddockError, `expected a PaddockError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

/**
 * The fake cluster whose kubelet runs each pod as a real local sandbox, and the k8s provider on it.
 * The local sandboxes get a network of their own (as local.conformance does), so a pod's IP is a
 * real address on this machine and `portUrl` can be fetched.
 */
async function withLocalKubelet(opts: { agentSandbox: boolean }) {
  const home = await tempDir();
  const layers = await openLayerStore({ home: home.path });
  const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
  const network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 2 });
  const local = await createLocalProvider({ home: home.path, layers, network });
  const networked = new Proxy(local, {
    get: (target, key: keyof Provider) =>
      key === "create"
        ? (spec: SandboxSpec, signal?: AbortSignal) => target.create({ ...spec, egress: () => Promise.resolve({ env: {}, files: [] }) }, signal)
        : typeof target[key] === "function" ? (target[key] as (...a: unknown[]) => unknown).bind(target) : target[key],
  });
  const env = await clusterWithProvider({ kubelet: localKubelet(networked), agentSandbox: opts.agentSandbox, settings: { useAgentSandbox: opts.agentSandbox ? "always" : "never", warmPool: opts.agentSandbox ? 1 : 0 } });
  return {
    env,
    cleanup: async () => {
      await env.close();
      for (const id of await local.list()) await local.stop(id).catch(() => false);
      await local.close();
      await layers.close({ unmount: true });
      await network.close({ removeHostObjects: true });
      await releaseHome(home.path);
      await home.remove();
    },
  };
}

providerConformance("k8s provider against the fake cluster (plain pods)", async () => {
  const { env, cleanup } = await withLocalKubelet({ agentSandbox: false });
  return { provider: env.provider, spec: (o) => k8sSpec({ remoteEgress: async () => egress(), ...o }), cleanup };
});

// agent-sandbox pods get their egress files written after the claim, into the template's
// emptyDirs; the fake kubelet mounts no volumes, so the files go where the session user can write.
providerConformance("k8s provider against the fake cluster (agent-sandbox)", async () => {
  const { env, cleanup } = await withLocalKubelet({ agentSandbox: true });
  return { provider: env.provider, spec: (o) => k8sSpec({ remoteEgress: async () => egress("/tmp/paddock-egress/ca.pem"), ...o }), cleanup };
});

void describe("k8s provider against the fake cluster (the session's environment lives in the pod, not in the stored state)", () => {
  for (const agentSandbox of [false, true]) {
    void it(`${agentSandbox ? "agent-sandbox" : "plain pods"}: providerState holds no env value or proxy password; exec after a restart (new provider + recover) still has the env; setEnv adds to it`, async () => {
      const { env, cleanup } = await withLocalKubelet({ agentSandbox });
      try {
        const spec = k8sSpec({ env: { FROM_SPEC: "it's $HOME" }, remoteEgress: async () => egress(agentSandbox ? "/tmp/paddock-egress/ca.pem" : undefined) });
        const h = await env.provider.create(spec);
        const stored = JSON.stringify(h.providerState);
        for (const value of [PROXY_PASSWORD, "it's $HOME", "FROM_SPEC", "HTTPS_PROXY", "localhost,127.0.0.1"]) assert.ok(!stored.includes(value), `providerState holds no ${value}: ${stored}`);
        const printenv = async (p: Provider, extra?: Record<string, string>) => {
          let out = "";
          const r = await p.exec(spec.id, { argv: ["/bin/sh", "-c", 'printf "%s|%s|%s|%s" "$FROM_SPEC" "$HTTPS_PROXY" "$LATER" "$PATH"'], onStdout: (b) => (out += b.toString()), ...(extra ? { env: extra } : {}) });
          assert.equal(r.exitCode, 0, out);
          return out;
        };
        const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        assert.equal(await printenv(env.provider), `it's $HOME|${PROXY_URL}||${PATH}`);
        // The restarted control plane's provider knows only what was stored.
        const settings = k8sDriver.parseSettings({ namespace: NS, readyTimeoutMs: 60_000, useAgentSandbox: agentSandbox ? "always" : "never", warmPool: agentSandbox ? 1 : 0 });
        const restarted = await k8sDriver.create({ name: "k8s-test", settings, credentials: { kubeconfig: env.cluster.kubeconfig } }, { home: "/nonexistent", log: () => undefined });
        try {
          assert.equal(await restarted.recover(spec.id, JSON.parse(stored) as Record<string, unknown>), "running");
          assert.equal(await printenv(restarted), `it's $HOME|${PROXY_URL}||${PATH}`);
          const state = await restarted.setEnv(spec.id, { LATER: "paddock-ph-later" });
          assert.ok(!JSON.stringify(state).includes("paddock-ph-later") && !JSON.stringify(state).includes(PROXY_PASSWORD), "setEnv's state holds no env");
          assert.equal(await printenv(restarted), `it's $HOME|${PROXY_URL}|paddock-ph-later|${PATH}`);
          assert.equal(await printenv(restarted, { LATER: "per-exec", PATH: "/bin" }), `it's $HOME|${PROXY_URL}|per-exec|/bin`, "a command's own variables win");
          assert.equal(await printenv(env.provider), `it's $HOME|${PROXY_URL}|paddock-ph-later|${PATH}`, "the old instance sees the same file");
        } finally {
          await restarted.close();
        }
      } finally {
        await cleanup();
      }
    });
  }
});

void describe("k8s provider against the fake cluster (plain pods, a recording kubelet)", () => {
  let env!: Awaited<ReturnType<typeof clusterWithProvider>>;
  before(async () => {
    env = await clusterWithProvider({});
  });
  after(async () => env?.close());

  void it("health answers from /version; capabilities are honest (plain pods: no warm pool, no snapshots)", async () => {
    const h = await env.provider.health();
    assert.equal(h.ok, true, h.detail);
    assert.match(h.detail, /plain pods/);
    const c = env.provider.capabilities;
    assert.deepEqual(
      [c.kind, c.selfHosted, c.layers, c.network, c.snapshot, c.execGuard, c.services, c.fileOps, c.ports, c.warmPool, c.isolation],
      ["k8s", true, false, "proxy", false, false, false, false, true, false, ["namespaces"]],
    );
  });

  void it("create makes the NetworkPolicy (the gateway only: no DNS), the Secret of egress files and a hardened Pod; stop removes them", async () => {
    const spec = k8sSpec({ env: { FROM_SPEC: "1" }, remoteEgress: async () => egress() });
    const h = await env.provider.create(spec);
    const name = h.providerState.name as string;
    const np = env.cluster.objects("NetworkPolicy", NS).find((o) => (o.metadata as { name: string }).name === name) as Loose;
    assert.ok(np, "NetworkPolicy stored");
    assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
    assert.deepEqual(np.spec.egress[0], { to: [{ ipBlock: { cidr: "127.0.0.1/32" } }], ports: [{ protocol: "TCP", port: 9443 }] });
    assert.equal(np.spec.egress.length, 1, "nothing else goes out: not even DNS (dns.allow is an opt-in)");
    assert.ok(!JSON.stringify(np.spec.egress).includes('"port":53'), "no port 53 by default");
    assert.deepEqual(np.spec.ingress ?? [], [], "no preview path configured: no ingress");
    const pod = env.cluster.objects("Pod", NS).find((o) => (o.metadata as { name: string }).name === name) as Loose;
    assert.deepEqual(np.spec.podSelector.matchLabels, Object.fromEntries(Object.entries(pod.metadata.labels as Record<string, string>).filter(([k]) => k in np.spec.podSelector.matchLabels)));
    assert.equal(pod.spec.runtimeClassName, "gvisor");
    assert.equal(pod.spec.automountServiceAccountToken, false);
    assert.deepEqual(pod.spec.containers[0].securityContext.capabilities, { drop: ["ALL"] });
    assert.deepEqual(pod.spec.containers[0].env, [{ name: "HOME", value: "/home/paddock" }], "the session's variables are not in the Pod object");
    assert.ok(!JSON.stringify(env.cluster.objects("Pod", NS)).includes(PROXY_PASSWORD), "nor the proxy password anywhere in it");
    for (const value of [PROXY_PASSWORD, "FROM_SPEC", "HTTPS_PROXY", "127.0.0.1:9443"]) {
      assert.ok(!JSON.stringify(h.providerState).includes(value), `providerState (stored by the control plane) holds no ${value}`);
    }
    const written = (env.kubelet as ReturnType<typeof recordingKubelet>).execs.filter((x) => x.pod === name && x.argv.includes("/tmp/.paddock-session/env"));
    assert.equal(written.length, 1, "the environment is written once, into the pod");
    assert.ok(written[0]!.argv.includes("600"), "mode 0600");
    assert.match(written[0]!.stdin, /^export FROM_SPEC='1'$/m);
    assert.ok(written[0]!.stdin.includes(`export HTTPS_PROXY='${PROXY_URL}'`));
    const again = await env.provider.setEnv(spec.id, { PLACEHOLDER: "paddock-ph-x" });
    assert.ok(!JSON.stringify(again).includes("paddock-ph-x") && !JSON.stringify(again).includes(PROXY_PASSWORD), "setEnv's state holds no env either");
    const secret = env.cluster.objects("Secret", NS).find((o) => (o.metadata as { name: string }).name === name) as Loose;
    assert.equal(Buffer.from(secret.data.f0, "base64").toString(), egress().files[0]!.content);
    assert.ok((await env.provider.list()).includes(spec.id));
    assert.equal(await env.provider.stop(spec.id), true);
    assert.ok(!(await env.provider.list()).includes(spec.id));
    assert.equal(env.cluster.objects("NetworkPolicy", NS).some((o) => (o.metadata as { name: string }).name === name), false);
    assert.equal(env.cluster.objects("Secret", NS).some((o) => (o.metadata as { name: string }).name === name), false);
    const deletes = env.cluster.requests.filter((r) => r.method === "DELETE" && r.path.includes(name));
    assert.ok(deletes.length >= 3, JSON.stringify(deletes));
  });

  void it("a gateway named by a host name: resolved by the control plane into the policy's ipBlocks and pinned in the pod's hostAliases; still no DNS", async () => {
    const named: RemoteEgressAttachment = { ...egress(), allow: [{ host: "localhost", port: 9443 }] };
    const h = await env.provider.create(k8sSpec({ remoteEgress: async () => named }));
    const name = h.providerState.name as string;
    const np = env.cluster.objects("NetworkPolicy", NS).find((o) => (o.metadata as { name: string }).name === name) as Loose;
    const pod = env.cluster.objects("Pod", NS).find((o) => (o.metadata as { name: string }).name === name) as Loose;
    const cidrs = (np.spec.egress as Loose[]).map((r) => r.to[0].ipBlock?.cidr);
    assert.ok(cidrs.includes("127.0.0.1/32"), JSON.stringify(np.spec.egress));
    assert.ok(!JSON.stringify(np.spec.egress).includes('"port":53'), "no DNS egress");
    const aliases = pod.spec.hostAliases as { ip: string; hostnames: string[] }[];
    assert.ok(aliases?.length, "hostAliases set on the pod");
    for (const a of aliases) assert.deepEqual(a.hostnames, ["localhost"]);
    assert.deepEqual(aliases.map((a) => `${a.ip}/${a.ip.includes(":") ? 128 : 32}`).sort(), [...cidrs].sort(), "every alias is an address the policy lets through, and only those");
    await env.provider.stop(h.id);
    const ipOnly = await env.provider.create(k8sSpec({ remoteEgress: async () => egress() }));
    const ipPod = env.cluster.objects("Pod", NS).find((o) => (o.metadata as { name: string }).name === ipOnly.providerState.name) as Loose;
    assert.equal(ipPod.spec.hostAliases, undefined, "an IP-addressed gateway needs no alias");
    await env.provider.stop(ipOnly.id);
  });

  void it("no remote egress: the policy lets nothing out, not even DNS", async () => {
    const h = await env.provider.create(k8sSpec());
    const np = env.cluster.objects("NetworkPolicy", NS).find((o) => (o.metadata as { name: string }).name === h.providerState.name) as Loose;
    assert.deepEqual(np.spec.egress ?? [], []);
    await env.provider.stop(h.id);
  });

  void it("a value the API server rejects is a clear invalid_argument at create naming the field, and leaves nothing behind", async () => {
    const spec = k8sSpec({ compute: { cpu: Number.NaN, memoryBytes: 2 ** 28, pids: 64, diskBytes: 2 ** 28 }, remoteEgress: async () => egress() });
    await assert.rejects(env.provider.create(spec), isCode("invalid_argument", /creating Pod \S+: the Kubernetes API answered (400|422) .*spec\.containers\[0\]\.resources\.(limits|requests)\.cpu/));
    const name = (o: Record<string, unknown>) => (o.metadata as { name: string }).name;
    assert.ok(!env.cluster.objects("Pod", NS).some((o) => name(o).includes(spec.id)));
    assert.ok(!env.cluster.objects("NetworkPolicy", NS).some((o) => name(o).includes(spec.id)), "the NetworkPolicy made before the Pod is removed");
    assert.ok(!(await env.provider.list()).includes(spec.id));
  });

  void it("a missing RuntimeClass is a clear error naming it, before any object is made", async () => {
    const noRc = await clusterWithProvider({ runtimeClass: false });
    try {
      await assert.rejects(noRc.provider.create(k8sSpec()), isCode("unavailable", /no RuntimeClass "gvisor".*settings\.runtimeClassName/));
      assert.deepEqual(noRc.cluster.objects("Pod", NS), []);
      assert.deepEqual(noRc.cluster.objects("NetworkPolicy", NS), []);
    } finally {
      await noRc.close();
    }
  });

  void it("what this tier cannot do is refused with unsupported: builds, exec guard, services, other isolation tiers", async () => {
    const unsupported = (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && typeof e.details?.capability === "string";
    await assert.rejects(env.provider.create(k8sSpec({ mode: "build" })), unsupported);
    await assert.rejects(env.provider.create(k8sSpec({ guard: { deny: [{ program: "rm", message: "no" }] } })), unsupported);
    await assert.rejects(env.provider.create(k8sSpec({ isolation: "gvisor" })), unsupported);
    await assert.rejects(env.provider.snapshot("x", "y"), unsupported);
  });

  void it("a watch from a version older than the server's history gets 410 Gone and is relisted", async () => {
    const c = kubeClients({ kubeconfig: env.cluster.kubeconfig, inCluster: false, instance: "t" });
    const core = env.kc.makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({ namespace: NS, body: new ConfigMap({ metadata: { name: "marker" }, data: { v: "0" } }) as never });
    const first = await core.readNamespacedConfigMap({ namespace: NS, name: "marker" });
    const oldVersion = first.metadata!.resourceVersion!;
    // More changes than the fake keeps (200 events), so oldVersion has expired.
    for (let i = 1; i <= 210; i++) await core.replaceNamespacedConfigMap({ namespace: NS, name: "marker", body: { ...(await core.readNamespacedConfigMap({ namespace: NS, name: "marker" })), data: { v: String(i) } } });
    let lists = 0;
    let relists = 0;
    const v = await watchUntil(c, {
      what: "configmap marker at v=210",
      path: `/api/v1/namespaces/${NS}/configmaps`,
      name: "marker",
      timeoutMs: 30_000,
      onRelist: () => relists++,
      // The first list pretends to be old (as after a long disconnect); later ones are real.
      list: async () => {
        lists++;
        const l = await core.listNamespacedConfigMap({ namespace: NS, fieldSelector: "metadata.name=marker" });
        return lists === 1 ? { item: undefined, resourceVersion: oldVersion } : { item: l.items[0] as never, resourceVersion: l.metadata!.resourceVersion! };
      },
      check: (o) => ((o as { data?: { v?: string } } | undefined)?.data?.v === "210" ? "seen" : undefined),
      explain: async () => "",
    });
    assert.equal(v, "seen");
    assert.equal(relists, 1, "one 410, one relist");
    assert.ok(lists >= 2);
  });
});

/** A kubelet whose pods never start (as an image that never pulls): they stay Pending. */
const stuckKubelet: FakeKubelet = {
  startPod: () => new Promise(() => undefined),
  exec: () => Promise.resolve(1),
  stop: () => Promise.resolve(),
};

void describe("k8s provider against the fake cluster (a pod that never becomes ready)", () => {
  let env!: Awaited<ReturnType<typeof clusterWithProvider>>;
  before(async () => {
    env = await clusterWithProvider({ kubelet: stuckKubelet, settings: { readyTimeoutMs: 1500 } });
  });
  after(async () => env?.close());

  void it("create times out with an error naming the pod's phase, conditions and last event, and cleans up", async () => {
    const spec = k8sSpec();
    await assert.rejects(env.provider.create(spec), isCode("unavailable", /timed out after 1500 ms waiting for pod \S+ to be Ready: phase Pending.*(Ready|last event: Normal Scheduled)/));
    assert.ok(!(await env.provider.list()).includes(spec.id));
  });

  void it("waitForPod on its own: the same message, from the watch", async () => {
    const c = kubeClients({ kubeconfig: env.cluster.kubeconfig, inCluster: false, instance: "t" });
    await assert.rejects(waitForPod(c, NS, "no-such-pod", 1000), isCode("unavailable", /phase|does not exist/));
  });
});


void describe("k8s provider against the fake cluster (CSI VolumeSnapshots served)", () => {
  let env!: Awaited<ReturnType<typeof clusterWithProvider>>;
  before(async () => {
    env = await clusterWithProvider({ volumeSnapshots: true, settings: { readyTimeoutMs: 2000, storageClassName: "csi-fast" } });
  });
  after(async () => env?.close());

  void it("snapshot capability follows discovery; the workspace is a PVC; a snapshot is a VolumeSnapshot of it; a session from it gets the PVC's dataSource", async () => {
    assert.equal(env.provider.capabilities.snapshot, true);
    const h = await env.provider.create(k8sSpec());
    const name = h.providerState.name as string;
    const pvc = env.cluster.objects("PersistentVolumeClaim", NS).find((o) => (o.metadata as { name: string }).name === name) as Loose;
    assert.equal(pvc.spec.storageClassName, "csi-fast");
    const pod = env.cluster.objects("Pod", NS).find((o) => (o.metadata as { name: string }).name === name) as Loose;
    assert.deepEqual(pod.spec.volumes.find((v: Loose) => v.name === "workspace"), { name: "workspace", persistentVolumeClaim: { claimName: name } });
    // The fake has no snapshot controller: the VolumeSnapshot is stored and validated but never readyToUse.
    await assert.rejects(env.provider.snapshot(h.id, "snap-1"), isCode("unavailable", /timed out .*VolumeSnapshot \S+ to be readyToUse/));
    const snap = env.cluster.objects("VolumeSnapshot", NS).find((o) => ((o.spec as Loose).source.persistentVolumeClaimName === name)) as Loose;
    assert.ok(snap, "VolumeSnapshot stored");
    await assert.rejects(env.provider.snapshot(h.id, "snap-1"), isCode("conflict"));
    const from = await env.provider.create(k8sSpec({ from: "snap-1" }));
    const fromPvc = env.cluster.objects("PersistentVolumeClaim", NS).find((o) => (o.metadata as { name: string }).name === from.providerState.name) as Loose;
    assert.deepEqual(fromPvc.spec.dataSource, { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: snap.metadata.name });
    assert.equal(await env.provider.removeSnapshot("snap-1"), true);
    assert.equal(await env.provider.removeSnapshot("snap-1"), false);
    await env.provider.stop(from.id);
    await env.provider.stop(h.id);
    assert.ok(!env.cluster.objects("PersistentVolumeClaim", NS).some((o) => (o.metadata as { name: string }).name === name), "stop removes the PVC");
  });
});

void describe("k8s provider against the fake cluster (dns.allow opt-in)", () => {
  let env!: Awaited<ReturnType<typeof clusterWithProvider>>;
  before(async () => {
    env = await clusterWithProvider({ settings: { dns: { allow: true } } });
  });
  after(async () => env?.close());

  void it("dns.allow: true restores egress to the cluster DNS (UDP/TCP 53 to kube-dns), and only that besides the gateway", async () => {
    const h = await env.provider.create(k8sSpec({ remoteEgress: async () => egress() }));
    const np = env.cluster.objects("NetworkPolicy", NS).find((o) => (o.metadata as { name: string }).name === h.providerState.name) as Loose;
    assert.equal(np.spec.egress.length, 2);
    assert.deepEqual(np.spec.egress[1], {
      to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } }, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
      ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }],
    });
    await env.provider.stop(h.id);
  });
});

void describe("k8s provider against the fake cluster (agent-sandbox objects)", () => {
  let env!: Awaited<ReturnType<typeof clusterWithProvider>>;
  before(async () => {
    env = await clusterWithProvider({ agentSandbox: true, kubelet: undefined, settings: { warmPool: 2 } });
  });
  after(async () => env?.close());

  void it("discovery picks agent-sandbox; the template holds Paddock's NetworkPolicy and no session data; one pool per template; a claim per session", async () => {
    await env.provider.health();
    assert.equal(env.provider.capabilities.warmPool, true);
    assert.equal(env.provider.capabilities.snapshot, false);
    const tpl = () => env.cluster.objects("SandboxTemplate", NS) as Loose[];
    // No kubelet: the claim's pod never runs commands, so these sessions have no egress files to write.
    const spec = k8sSpec({ env: { SESSION_ONLY: "x" } });
    const pending = env.provider.create(spec).catch((e: unknown) => e);
    await until(async () => tpl().length === 1, 30_000, "the SandboxTemplate");
    const t = tpl()[0];
    assert.equal(t.spec.networkPolicyManagement, "Managed");
    assert.deepEqual(t.spec.networkPolicy.egress ?? [], [], "no remote egress: nothing out");
    assert.ok(!JSON.stringify(t).includes("SESSION_ONLY"), "session env is not in the shared template");
    const pools = await until(async () => { const l = env.cluster.objects("SandboxWarmPool", NS) as Loose[]; return l.length ? l : null; }, 30_000, "the SandboxWarmPool");
    assert.deepEqual(pools.map((p) => [p.spec.replicas, p.spec.sandboxTemplateRef.name]), [[2, t.metadata.name]]);
    await until(async () => env.cluster.objects("SandboxClaim", NS).length === 1, 30_000, "the SandboxClaim");
    const claim = env.cluster.objects("SandboxClaim", NS)[0] as Loose;
    assert.deepEqual(claim.spec.warmPoolRef, { name: t.metadata.name });
    assert.equal(claim.metadata.annotations["paddock.dev/session-id"], spec.id);
    const outcome = await pending;
    if (!(outcome instanceof Error)) {
      assert.ok((await env.provider.list()).includes(spec.id));
      assert.equal(await env.provider.stop(spec.id), true);
      await until(async () => env.cluster.objects("SandboxClaim", NS).length === 0, 30_000, "the claim deleted");
    }
  });

  void it("a named gateway: the SandboxTemplate's pod template carries its hostAliases (the instance's, like the policy's rules) and its policy no DNS", async () => {
    const named: RemoteEgressAttachment = { ...egress("/tmp/paddock-egress/ca.pem"), allow: [{ host: "localhost", port: 9443 }] };
    const before = new Set((env.cluster.objects("SandboxTemplate", NS) as Loose[]).map((t) => t.metadata.name as string));
    const spec = k8sSpec({ remoteEgress: async () => named });
    const pending = env.provider.create(spec).catch((e: unknown) => e);
    const t = await until(async () => (env.cluster.objects("SandboxTemplate", NS) as Loose[]).find((x) => !before.has(x.metadata.name)), 30_000, "the new SandboxTemplate");
    const aliases = t.spec.podTemplate.spec.hostAliases as { ip: string; hostnames: string[] }[];
    assert.ok(aliases.some((a) => a.ip === "127.0.0.1" && a.hostnames.includes("localhost")), JSON.stringify(aliases));
    assert.ok(!JSON.stringify(t.spec.networkPolicy).includes('"port":53'), "no DNS egress in the template's policy");
    if (!((await pending) instanceof Error)) await env.provider.stop(spec.id);
  });
});

void describe("k8s provider against the fake cluster (gateway.deploy)", () => {
  let env!: Awaited<ReturnType<typeof clusterWithProvider>>;
  before(async () => {
    env = await clusterWithProvider({ settings: { gateway: { deploy: true, image: "registry.example/paddock-gateway:1", port: 3128 } } });
  });
  after(async () => env?.close());

  void it("the egress gateway is its own Deployment + Service (accepted by the API server); session pods may reach its pods on its port", async () => {
    const h = await env.provider.create(k8sSpec({ remoteEgress: async () => egress() }));
    const [dep] = env.cluster.objects("Deployment", NS) as Loose[];
    const [svc] = env.cluster.objects("Service", NS) as Loose[];
    assert.equal(dep.metadata.name, "paddock-gateway");
    assert.deepEqual(svc.spec.selector, dep.spec.selector.matchLabels);
    assert.equal(dep.spec.template.spec.containers.length, 1, "the gateway alone: no sidecar, and no session pod holds it");
    const np = env.cluster.objects("NetworkPolicy", NS).find((o) => (o.metadata as { name: string }).name === h.providerState.name) as Loose;
    const toGateway = (np.spec.egress as Loose[]).find((r) => r.to[0].podSelector);
    assert.deepEqual(toGateway, { to: [{ podSelector: { matchLabels: dep.spec.selector.matchLabels } }], ports: [{ protocol: "TCP", port: 3128 }] });
    await env.provider.stop(h.id);
  });
});
