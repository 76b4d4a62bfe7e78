import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { PassThrough, Writable } from "node:stream";
import { CoreV1Api, Exec, KubeConfig } from "@kubernetes/client-node";
import type { V1Status } from "@kubernetes/client-node";
import type { Provider } from "../../../src/core/index.ts";
import { openLayerStore } from "../../../src/layers/index.ts";
import { createLocalProvider } from "../../../src/providers/local/index.ts";
import { releaseHome } from "../../helpers/server.ts";
import { tempDir } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { startFakeCluster } from "./index.ts";
import type { FakeCluster } from "./index.ts";
import { localKubelet } from "./kubelet-local.ts";

/**
 * The fake cluster with its local kubelet: every pod is a real Paddock sandbox (local provider,
 * base "host"), so exec through client-node runs real commands, isolated per pod.
 */

const NS = "default";

void describe("k8s fake cluster: the local kubelet runs pods as real sandboxes", () => {
  let home!: Awaited<ReturnType<typeof tempDir>>;
  let layers!: Awaited<ReturnType<typeof openLayerStore>>;
  let provider!: Provider;
  let cluster!: FakeCluster;
  let kc!: KubeConfig;
  let core!: CoreV1Api;

  before(async () => {
    home = await tempDir();
    layers = await openLayerStore({ home: home.path });
    provider = await createLocalProvider({ home: home.path, layers });
    cluster = await startFakeCluster({ kubelet: localKubelet(provider) });
    kc = new KubeConfig();
    kc.loadFromString(cluster.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
  });
  after(async () => {
    await cluster?.close();
    if (provider) {
      for (const id of await provider.list()) await provider.stop(id).catch(() => false);
      await provider.close();
    }
    await layers?.close({ unmount: true });
    if (home) {
      await releaseHome(home.path);
      await home.remove();
    }
  });

  async function exec(pod: string, argv: string[], stdin: string | null): Promise<{ code: number; out: string; err: string }> {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const sink = (into: Buffer[]) =>
      new Writable({
        write(c: Buffer, _e, done) {
          into.push(c);
          done();
        },
      });
    const input = stdin === null ? null : new PassThrough();
    let status: V1Status | null = null;
    await new Exec(kc).exec(NS, pod, "main", argv, sink(out), sink(err), input, false, (s) => (status = s));
    if (input) input.end(stdin);
    const s = await until(async () => status as V1Status | null, 60_000, `exec ${argv.join(" ")} in ${pod}`);
    const code = s.status === "Success" ? 0 : Number(s.details?.causes?.find((x) => x.reason === "ExitCode")?.message ?? -1);
    return { code, out: Buffer.concat(out).toString(), err: Buffer.concat(err).toString() };
  }

  const running = (name: string) => until(async () => (await core.readNamespacedPod({ namespace: NS, name })).status?.phase === "Running", 60_000, `${name} Running`);

  void it("runs real commands per pod: exit codes, stdin, stderr, and one pod's files are not another's", async () => {
    for (const name of ["pod-a", "pod-b"]) {
      await core.createNamespacedPod({ namespace: NS, body: { metadata: { name }, spec: { containers: [{ name: "main", image: "debian:12", env: [{ name: "WHO", value: name }], resources: { limits: { cpu: "500m", memory: "256Mi" } } }] } } });
    }
    await running("pod-a");
    await running("pod-b");
    assert.equal((await provider.list()).length, 2);
    const a = await exec("pod-a", ["sh", "-c", 'echo "$WHO" > /tmp/marker; cat /tmp/marker; echo oops >&2; exit 7'], null);
    assert.deepEqual(a, { code: 7, out: "pod-a\n", err: "oops\n" });
    const b = await exec("pod-b", ["sh", "-c", "cat /tmp/marker"], null);
    assert.notEqual(b.code, 0, "pod-b does not see pod-a's file");
    const echoed = await exec("pod-b", ["cat"], "through stdin\n");
    assert.deepEqual(echoed, { code: 0, out: "through stdin\n", err: "" });
    const missing = await exec("pod-b", ["no-such-program-here"], null);
    assert.equal(missing.code, 127);
  });

  void it("stops a pod's sandbox when the pod is deleted", async () => {
    const before = await provider.list();
    await core.deleteNamespacedPod({ namespace: NS, name: "pod-a" });
    await until(async () => cluster.objects("Pod", NS).every((p) => (p.metadata as { name: string }).name !== "pod-a"), 60_000, "pod-a gone");
    const after = await provider.list();
    assert.equal(after.length, before.length - 1);
  });
});
