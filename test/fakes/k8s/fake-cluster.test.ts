import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:https";
import { PassThrough, Writable } from "node:stream";
import { ApiException, AppsV1Api, CoreV1Api, CustomObjectsApi, Exec, KubeConfig, NodeV1Api, PatchStrategy, Watch, makeInformer, setHeaderOptions } from "@kubernetes/client-node";
import type { V1ConfigMap, V1Pod, V1Status } from "@kubernetes/client-node";
import { startFakeCluster } from "./index.ts";
import type { FakeCluster, FakeKubelet } from "./index.ts";
import { until } from "../../helpers/wait.ts";

/**
 * The fake Kubernetes cluster itself (test/fakes/k8s), driven by the real @kubernetes/client-node:
 * the API semantics a provider relies on, and that it rejects what a real apiserver rejects.
 * The kubelet here is an in-process one (exec answers from a tiny command table); the local
 * kubelet that runs pods as real sandboxes has its own file (kubelet-local.fake-cluster.test.ts).
 */

const NS = "default";

/** A Status answer (and the bits of list answers the raw requests read). */
type Status = { reason: string; message: string; code?: number; details: { causes: { field: string; reason: string; message: string }[] }; groups: { name: string }[]; resources: { name: string }[] };

function clients(cluster: FakeCluster) {
  const kc = new KubeConfig();
  kc.loadFromString(cluster.kubeconfig);
  return { kc, core: kc.makeApiClient(CoreV1Api), apps: kc.makeApiClient(AppsV1Api), node: kc.makeApiClient(NodeV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
}

/** The Status body of a failed client-node call. */
async function failure(p: Promise<unknown>): Promise<{ code: number; status: Status }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiException, `expected an ApiException, got ${String(err)}`);
    return { code: err.code, status: JSON.parse(String(err.body)) as Status };
  }
  assert.fail("the call succeeded");
}

/** A raw HTTPS request to the fake (for what client-node never sends: bad JSON, no token). */
function raw(cluster: FakeCluster, method: string, path: string, body: string | null, token: boolean): Promise<{ status: number; json: Status }> {
  const ca = Buffer.from(/certificate-authority-data: (\S+)/.exec(cluster.kubeconfig)![1]!, "base64").toString();
  const bearer = /token: (\S+)/.exec(cluster.kubeconfig)![1]!;
  return new Promise((resolve, reject) => {
    const req = request(`${cluster.url}${path}`, { method, ca, headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${bearer}` } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) as Status }));
    });
    req.on("error", reject);
    req.end(body ?? undefined);
  });
}

/**
 * An in-process kubelet: `sh -c 'exit N'`, `cat` (stdin to stdout), `burst` (200 lines at once),
 * `big N CODE SEED` / `big-then-fail …` (a large output, then exit CODE / a kubelet error),
 * `echo-err X` (to stderr).
 */
const tableKubelet: FakeKubelet = {
  startPod: () => Promise.resolve({ podIP: "10.244.9.9" }),
  stop: () => Promise.resolve(),
  async exec(_pod, _container, argv, streams) {
    if (argv[0] === "sh" && argv[1] === "-c" && /^exit \d+$/.test(argv[2] ?? "")) return Number(argv[2]!.slice(5));
    if (argv[0] === "cat" && streams.stdin) {
      for await (const chunk of streams.stdin) streams.stdout.write(chunk as Buffer);
      return 0;
    }
    if (argv[0] === "burst") {
      for (let i = 0; i < 200; i++) streams.stdout.write(`${i}\n`);
      return 0;
    }
    if (argv[0] === "big" || argv[0] === "big-then-fail") {
      // A known large output (`big N CODE SEED`: N lines of 100 bytes, numbered), written as a process's
      // pipe would deliver it: chunks of odd sizes across event-loop turns, with backpressure; the
      // last chunk right before the exit.
      const text = bigOutput(Number(argv[1]));
      const seed = Number(argv[3] ?? 0);
      const last = text.lastIndexOf("\n", text.length - 2) + 1;
      let at = 0;
      for (let i = 0; at < last; i++) {
        const n = Math.min(last - at, 1 + (((i + seed) * 7919) % 40_000));
        const ok = streams.stdout.write(text.slice(at, at + n));
        at += n;
        if (!ok) await new Promise((r) => streams.stdout.once("drain", r));
        else if ((i + seed) % 3 === 0) await new Promise((r) => setImmediate(r));
      }
      // The last line, and the exit at once: nothing waits for it to be sent.
      streams.stdout.write(text.slice(last));
      if (argv[0] === "big-then-fail") throw new Error("the container runtime lost the process");
      return Number(argv[2]);
    }
    if (argv[0] === "echo-err") {
      streams.stderr.write(`${argv.slice(1).join(" ")}\n`);
      return 0;
    }
    return 127;
  },
};

function bigOutput(lines: number): string {
  return Array.from({ length: lines }, (_, i) => `${String(i).padStart(8, "0")} ${"x".repeat(90)}\n`).join("");
}

function collect(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(c: Buffer, _e, done) {
      chunks.push(c);
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

void describe("k8s fake cluster: API semantics through client-node", () => {
  let cluster!: FakeCluster;
  let c!: ReturnType<typeof clients>;
  before(async () => {
    cluster = await startFakeCluster({ kubelet: tableKubelet });
    c = clients(cluster);
  });
  after(async () => cluster?.close());

  void it("creates, gets, lists with selectors and pages, and deletes", async () => {
    for (const [name, tier] of [["cm-a", "web"], ["cm-b", "db"], ["cm-c", "web"]]) {
      const made = await c.core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name, labels: { tier: tier!, app: "x" } }, data: { k: name! } } });
      assert.ok(made.metadata?.uid && made.metadata.resourceVersion && made.metadata.creationTimestamp);
    }
    assert.equal((await c.core.readNamespacedConfigMap({ namespace: NS, name: "cm-b" })).data?.k, "cm-b");
    const web = await c.core.listNamespacedConfigMap({ namespace: NS, labelSelector: "tier=web,app" });
    assert.deepEqual(web.items.map((i) => i.metadata?.name), ["cm-a", "cm-c"]);
    assert.deepEqual((await c.core.listNamespacedConfigMap({ namespace: NS, labelSelector: "tier notin (web)" })).items.map((i) => i.metadata?.name), ["cm-b"]);
    assert.deepEqual((await c.core.listNamespacedConfigMap({ namespace: NS, fieldSelector: "metadata.name=cm-c" })).items.map((i) => i.metadata?.name), ["cm-c"]);
    const page1 = await c.core.listNamespacedConfigMap({ namespace: NS, labelSelector: "app=x", limit: 2 });
    assert.equal(page1.items.length, 2);
    assert.equal(page1.metadata?.remainingItemCount, 1);
    const page2 = await c.core.listNamespacedConfigMap({ namespace: NS, labelSelector: "app=x", limit: 2, _continue: page1.metadata!._continue! });
    assert.deepEqual(page2.items.map((i) => i.metadata?.name), ["cm-c"]);
    assert.equal(page2.metadata?._continue, undefined);
    await c.core.deleteNamespacedConfigMap({ namespace: NS, name: "cm-b" });
    const gone = await failure(c.core.readNamespacedConfigMap({ namespace: NS, name: "cm-b" }));
    assert.equal(gone.code, 404);
    assert.equal(gone.status.reason, "NotFound");
    assert.equal(gone.status.message, 'configmaps "cm-b" not found');
    const unknownField = await failure(c.core.listNamespacedConfigMap({ namespace: NS, fieldSelector: "data.k=x" }));
    assert.equal(unknownField.code, 400);
    assert.match(unknownField.status.message, /field label not supported: data.k/);
  });

  void it("answers 422 Invalid with field paths, 409 AlreadyExists, 400 for bad JSON and 401 without the token", async () => {
    const bad = await failure(c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "Not_DNS" }, spec: { containers: [{ name: "main" } as never] } } }));
    assert.equal(bad.code, 422);
    assert.equal(bad.status.reason, "Invalid");
    const fields = (bad.status.details.causes as { field: string; reason: string }[]).map((x) => `${x.field}:${x.reason}`);
    assert.ok(fields.includes("metadata.name:FieldValueInvalid"), fields.join());
    assert.ok(fields.includes("spec.containers[0].image:FieldValueRequired"), fields.join());
    const schema = await failure(c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "q" }, spec: { restartPolicy: "Sometimes", containers: [{ image: "x" } as never] } } }));
    assert.equal(schema.code, 422);
    assert.deepEqual(
      (schema.status.details.causes as { field: string; reason: string }[]).map((x) => `${x.field}:${x.reason}`).sort(),
      ["spec.containers[0].name:FieldValueRequired", "spec.restartPolicy:FieldValueNotSupported"],
    );
    // A value the apiserver cannot even decode (a quantity that is not one) is a 400, as real.
    const undecodable = await failure(c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "q" }, spec: { containers: [{ name: "main", image: "x", resources: { limits: { cpu: "lots" } } }] } } }));
    assert.equal(undecodable.code, 400);
    assert.match(undecodable.status.message, /cannot be handled as a Pod: spec.containers\[0\].resources.limits.cpu/);
    await c.core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: "s1" }, stringData: { token: "t" } } });
    const dup = await failure(c.core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: "s1" } } }));
    assert.equal(dup.code, 409);
    assert.equal(dup.status.reason, "AlreadyExists");
    const s1 = await c.core.readNamespacedSecret({ namespace: NS, name: "s1" });
    assert.equal(s1.data?.token, Buffer.from("t").toString("base64"), "stringData is folded into data");
    const json = await raw(cluster, "POST", `/api/v1/namespaces/${NS}/configmaps`, "{not json", true);
    assert.equal(json.status, 400);
    assert.equal(json.json.reason, "BadRequest");
    const noToken = await raw(cluster, "GET", "/api/v1/namespaces", null, false);
    assert.equal(noToken.status, 401);
    assert.equal(noToken.json.reason, "Unauthorized");
    const noNs = await failure(c.core.createNamespacedConfigMap({ namespace: "nowhere", body: { metadata: { name: "x" } } }));
    assert.equal(noNs.code, 404);
    assert.equal(noNs.status.message, 'namespaces "nowhere" not found');
  });

  void it("rejects an update from a stale resourceVersion with 409 Conflict", async () => {
    const first = await c.core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "cas" }, data: { v: "1" } } });
    const second = await c.core.replaceNamespacedConfigMap({ namespace: NS, name: "cas", body: { ...first, data: { v: "2" } } });
    assert.notEqual(second.metadata?.resourceVersion, first.metadata?.resourceVersion);
    const stale = await failure(c.core.replaceNamespacedConfigMap({ namespace: NS, name: "cas", body: { ...first, data: { v: "3" } } }));
    assert.equal(stale.code, 409);
    assert.equal(stale.status.reason, "Conflict");
    assert.match(stale.status.message, /the object has been modified/);
    assert.equal((await c.core.readNamespacedConfigMap({ namespace: NS, name: "cas" })).data?.v, "2");
  });

  void it("serves discovery for the groups it has, and only those", async () => {
    const groups = (await raw(cluster, "GET", "/apis", null, true)).json.groups.map((g: { name: string }) => g.name);
    assert.deepEqual(groups.sort(), ["apps", "networking.k8s.io", "node.k8s.io"]);
    const core = (await raw(cluster, "GET", "/api/v1", null, true)).json.resources.map((r: { name: string }) => r.name);
    for (const r of ["pods", "pods/exec", "pods/log", "services", "secrets", "configmaps", "namespaces", "events"]) assert.ok(core.includes(r), r);
    assert.equal((await raw(cluster, "GET", "/apis/agents.x-k8s.io/v1beta1", null, true)).status, 404);
  });

  void it("streams a watch from a resourceVersion: ADDED, MODIFIED, DELETED after it", async () => {
    const start = (await c.core.listNamespacedConfigMap({ namespace: NS })).metadata!.resourceVersion!;
    await c.core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "w1" }, data: { v: "1" } } });
    await c.core.patchNamespacedConfigMap({ namespace: NS, name: "w1", body: [{ op: "replace", path: "/data/v", value: "2" }] });
    await c.core.deleteNamespacedConfigMap({ namespace: NS, name: "w1" });
    const seen: string[] = [];
    const controller = await new Watch(c.kc).watch(`/api/v1/namespaces/${NS}/configmaps`, { resourceVersion: start, fieldSelector: "metadata.name=w1" }, (type, obj: V1ConfigMap) => seen.push(`${type}:${obj.data?.v}`), () => undefined);
    try {
      await until(async () => seen.length >= 3, 30_000, "three watch events");
      assert.deepEqual(seen, ["ADDED:1", "MODIFIED:2", "DELETED:2"]);
    } finally {
      controller.abort();
    }
  });

  void it("answers a watch from an expired version with a 410 Expired ERROR event, and client-node's informer relists", async () => {
    const informer = makeInformer(c.kc, `/api/v1/namespaces/${NS}/configmaps`, () => c.core.listNamespacedConfigMap({ namespace: NS, labelSelector: "inf=1" }), "inf=1");
    const added: string[] = [];
    informer.on("add", (o) => added.push(o.metadata!.name!));
    informer.on("error", () => undefined);
    await informer.start();
    await c.core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "inf-a", labels: { inf: "1" } } } });
    await until(async () => added.includes("inf-a"), 30_000, "the informer to see inf-a");
    await informer.stop();
    const old = (await c.core.listNamespacedConfigMap({ namespace: NS })).metadata!.resourceVersion!;
    // Push the history past its 200 changes, with a change the informer missed among them.
    await c.core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "inf-b", labels: { inf: "1" } } } });
    for (let i = 0; i < 105; i++) {
      await c.core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: `churn-${i}` } } });
      await c.core.deleteNamespacedConfigMap({ namespace: NS, name: `churn-${i}` });
    }
    const events: { type: string; obj: V1Status }[] = [];
    let ended = false;
    await new Watch(c.kc).watch(`/api/v1/namespaces/${NS}/configmaps`, { resourceVersion: old }, (type, obj: V1Status) => events.push({ type, obj }), () => (ended = true));
    await until(async () => ended, 30_000, "the expired watch to end");
    assert.equal(events.length, 1);
    assert.equal(events[0]!.type, "ERROR");
    assert.equal(events[0]!.obj.code, 410);
    assert.equal(events[0]!.obj.reason, "Expired");
    const listsBefore = cluster.requests.filter((r) => r.method === "GET" && r.path.startsWith(`/api/v1/namespaces/${NS}/configmaps?labelSelector=inf`)).length;
    await informer.start(); // resumes from its last version: 410, then a fresh list
    try {
      await until(async () => added.includes("inf-b"), 30_000, "the informer to relist and see inf-b");
      const listsAfter = cluster.requests.filter((r) => r.method === "GET" && r.path.startsWith(`/api/v1/namespaces/${NS}/configmaps?labelSelector=inf`)).length;
      assert.ok(listsAfter > listsBefore, "the informer listed again");
      assert.deepEqual(informer.list(NS).map((o) => o.metadata!.name).sort(), ["inf-a", "inf-b"]);
    } finally {
      await informer.stop();
    }
  });

  void it("runs pods Pending → Running with an IP, and deletes them gracefully (Terminating, then gone)", async () => {
    const pod = await c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "p1" }, spec: { containers: [{ name: "main", image: "debian:12" }] } } });
    assert.equal(pod.status?.phase, "Pending");
    const running = await until(async () => {
      const p = await c.core.readNamespacedPod({ namespace: NS, name: "p1" });
      return p.status?.phase === "Running" ? p : null;
    }, 30_000, "p1 Running");
    assert.equal(running.status?.podIP, "10.244.9.9");
    assert.ok(running.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True"));
    const from = running.metadata!.resourceVersion!;
    const seen: string[] = [];
    const controller = await new Watch(c.kc).watch(`/api/v1/namespaces/${NS}/pods`, { resourceVersion: from, fieldSelector: "metadata.name=p1" }, (type, obj: V1Pod) => seen.push(`${type}${obj.metadata?.deletionTimestamp ? "+terminating" : ""}`), () => undefined);
    try {
      const deleted = await c.core.deleteNamespacedPod({ namespace: NS, name: "p1" });
      assert.ok(deleted.metadata?.deletionTimestamp, "the delete answers the pod, Terminating");
      await until(async () => seen.includes("DELETED+terminating"), 30_000, "p1 DELETED");
      assert.deepEqual(seen, ["MODIFIED+terminating", "DELETED+terminating"]);
    } finally {
      controller.abort();
    }
  });

  void it("refuses a pod naming a missing RuntimeClass at admission (403), as the RuntimeClass plugin does", async () => {
    const refused = await failure(c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "rc1" }, spec: { runtimeClassName: "gvisor", containers: [{ name: "main", image: "x" }] } } }));
    assert.equal(refused.code, 403);
    assert.match(refused.status.message, /pod rejected: RuntimeClass "gvisor" not found/);
    await c.node.createRuntimeClass({ body: { metadata: { name: "gvisor" }, handler: "runsc" } });
    await c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "rc1" }, spec: { runtimeClassName: "gvisor", containers: [{ name: "main", image: "x" }] } } });
    await until(async () => (await c.core.readNamespacedPod({ namespace: NS, name: "rc1" })).status?.phase === "Running", 30_000, "rc1 Running");
    const badHandler = await failure(c.node.createRuntimeClass({ body: { metadata: { name: "kata" }, handler: "Kata_Bad" } }));
    assert.equal(badHandler.code, 422);
    assert.equal(badHandler.status.details.causes[0]?.field, "handler");
  });

  void it("execs over the v5 channel protocol: stdout, stderr, stdin and exit codes", async () => {
    await c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "ex" }, spec: { containers: [{ name: "main", image: "x" }] } } });
    await until(async () => (await c.core.readNamespacedPod({ namespace: NS, name: "ex" })).status?.phase === "Running", 30_000, "ex Running");
    const run = async (argv: string[], stdin: string | null) => {
      const out = collect();
      const err = collect();
      const input = stdin === null ? null : new PassThrough();
      let status: V1Status | null = null;
      const ws = await new Exec(c.kc).exec(NS, "ex", "main", argv, out.stream, err.stream, input, false, (s) => (status = s));
      assert.equal(ws.protocol, "v5.channel.k8s.io");
      if (input) input.end(stdin);
      await until(async () => status, 30_000, `the status of ${argv.join(" ")}`);
      await until(async () => ws.readyState === ws.CLOSED, 30_000, "the exec socket to close");
      return { status: status! as V1Status, out: out.text(), err: err.text() };
    };
    const ok = await run(["cat"], "hello through stdin");
    assert.equal(ok.status.status, "Success");
    assert.equal(ok.out, "hello through stdin");
    const three = await run(["sh", "-c", "exit 3"], null);
    assert.equal(three.status.status, "Failure");
    assert.equal(three.status.reason, "NonZeroExitCode");
    assert.equal(three.status.details?.causes?.[0]?.reason, "ExitCode");
    assert.equal(three.status.details?.causes?.[0]?.message, "3");
    const burst = await run(["burst"], null);
    assert.equal(burst.out, Array.from({ length: 200 }, (_, i) => `${i}\n`).join(""), "all output arrives before the status");
    const stderr = await run(["echo-err", "to", "stderr"], null);
    assert.equal(stderr.err, "to stderr\n");
    assert.equal(stderr.out, "");
    const wrong = await failure(c.core.readNamespacedPod({ namespace: NS, name: "nope" }));
    assert.equal(wrong.code, 404);
    await assert.rejects(new Exec(c.kc).exec(NS, "ex", "sidecar", ["true"], null, null, null, false), (e: Error) => /Unexpected server response: 400/.test(e.message));
    assert.ok(cluster.requests.some((r) => r.status === 400 && r.path.startsWith(`/api/v1/namespaces/${NS}/pods/ex/exec?`) && r.path.includes("container=sidecar")));
  });

  void it("exec output is always complete before the exit status: many runs of a large output then a non-zero exit", async () => {
    await c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "big" }, spec: { containers: [{ name: "main", image: "x" }] } } });
    await until(async () => (await c.core.readNamespacedPod({ namespace: NS, name: "big" })).status?.phase === "Running", 30_000, "big Running");
    const want = bigOutput(3000);
    for (let run = 0; run < 40; run++) {
      // One run in four: the kubelet fails after the output (an InternalError status, output still whole).
      const fails = run % 4 === 3;
      const out = collect();
      let atStatus: string | null = null;
      let status: V1Status | null = null;
      const ws = await new Exec(c.kc).exec(NS, "big", "main", [fails ? "big-then-fail" : "big", "3000", "3", String(run)], out.stream, null, null, false, (s) => {
        // What had arrived when the status did: the status must come after every byte of output.
        atStatus = out.text();
        status = s;
      });
      await until(async () => status, 30_000, `the status of run ${run}`);
      await until(async () => ws.readyState === ws.CLOSED, 30_000, "the exec socket to close");
      const s = status as V1Status | null;
      if (fails) assert.equal(s?.reason, "InternalError", `run ${run}: the kubelet's failure`);
      else assert.equal(s?.details?.causes?.[0]?.message, "3", `run ${run}: exit code`);
      assert.equal((atStatus as string | null)?.length, want.length, `run ${run}: all output before the status`);
      assert.ok(atStatus === want, `run ${run}: the output is the same bytes, in order`);
    }
  });

  void it("stores Deployments with a ready status and Services with a cluster IP", async () => {
    const labels = { app: "gw" };
    await c.apps.createNamespacedDeployment({ namespace: NS, body: { metadata: { name: "gw" }, spec: { replicas: 2, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: "gw", image: "gw:1" }] } } } } });
    const ready = await until(async () => {
      const d = await c.apps.readNamespacedDeployment({ namespace: NS, name: "gw" });
      return d.status?.readyReplicas === 2 ? d : null;
    }, 30_000, "the deployment's status");
    assert.equal(ready.status?.observedGeneration, ready.metadata?.generation);
    const mismatch = await failure(c.apps.createNamespacedDeployment({ namespace: NS, body: { metadata: { name: "gw2" }, spec: { selector: { matchLabels: labels }, template: { metadata: { labels: { app: "other" } }, spec: { containers: [{ name: "gw", image: "gw:1" }] } } } } }));
    assert.equal(mismatch.code, 422);
    assert.equal(mismatch.status.details.causes[0]?.field, "spec.template.metadata.labels");
    const svc = await c.core.createNamespacedService({ namespace: NS, body: { metadata: { name: "gw" }, spec: { selector: labels, ports: [{ port: 8443 }] } } });
    assert.match(svc.spec?.clusterIP ?? "", /^10\.96\.\d+\.\d+$/);
    const badSvc = await failure(c.core.createNamespacedService({ namespace: NS, body: { metadata: { name: "9gw" }, spec: { ports: [{ port: 1 }] } } }));
    assert.equal(badSvc.status.details.causes[0]?.field, "metadata.name");
  });
});

void describe("k8s fake cluster: a node without the RuntimeClass's handler, and namespace deletion", () => {
  let cluster!: FakeCluster;
  let c!: ReturnType<typeof clients>;
  before(async () => {
    cluster = await startFakeCluster({ kubelet: tableKubelet, runtimeHandlers: ["runc"] });
    c = clients(cluster);
  });
  after(async () => cluster?.close());

  void it("leaves a pod whose RuntimeClass handler the node lacks Pending, with a FailedCreatePodSandBox event", async () => {
    await c.node.createRuntimeClass({ body: { metadata: { name: "gvisor" }, handler: "runsc" } });
    await c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "gv" }, spec: { runtimeClassName: "gvisor", containers: [{ name: "main", image: "x" }] } } });
    const event = await until(async () => (await c.core.listNamespacedEvent({ namespace: NS, fieldSelector: "involvedObject.name=gv,reason=FailedCreatePodSandBox" })).items[0], 30_000, "the FailedCreatePodSandBox event");
    assert.match(event.message ?? "", /no runtime for "runsc" is configured/);
    const pod = await c.core.readNamespacedPod({ namespace: NS, name: "gv" });
    assert.equal(pod.status?.phase, "Pending");
    assert.equal(pod.spec?.nodeName, "paddock-fake-node");
  });

  void it("deletes a namespace with everything in it (Terminating first, then gone)", async () => {
    await c.core.createNamespace({ body: { metadata: { name: "team" } } });
    await c.core.createNamespacedConfigMap({ namespace: "team", body: { metadata: { name: "a" } } });
    await c.core.createNamespacedPod({ namespace: "team", body: { metadata: { name: "p" }, spec: { containers: [{ name: "main", image: "x" }] } } });
    await until(async () => (await c.core.readNamespacedPod({ namespace: "team", name: "p" })).status?.phase === "Running", 30_000, "p Running");
    const ns = await c.core.deleteNamespace({ name: "team" });
    assert.equal((ns as { status?: { phase?: string } }).status?.phase, "Terminating");
    await until(async () => cluster.objects("Namespace").every((o) => (o.metadata as { name: string }).name !== "team"), 30_000, "namespace team gone");
    assert.deepEqual(cluster.objects("ConfigMap", "team"), []);
    assert.deepEqual(cluster.objects("Pod", "team"), []);
  });

  void it("applies JSON merge patches and keeps status out of a main-resource write", async () => {
    await c.core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "m", labels: { a: "1", b: "2" } }, data: { x: "1" } } });
    const patched = await c.core.patchNamespacedConfigMap({ namespace: NS, name: "m", body: { metadata: { labels: { a: null, c: "3" } }, data: { y: "2" } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    assert.deepEqual(patched.metadata?.labels, { b: "2", c: "3" });
    assert.deepEqual(patched.data, { x: "1", y: "2" });
    await c.core.createNamespacedPod({ namespace: NS, body: { metadata: { name: "st" }, spec: { containers: [{ name: "main", image: "x" }] } } });
    const running = await until(async () => {
      const p = await c.core.readNamespacedPod({ namespace: NS, name: "st" });
      return p.status?.phase === "Running" ? p : null;
    }, 30_000, "st Running");
    const replaced = await c.core.replaceNamespacedPod({ namespace: NS, name: "st", body: { ...running, status: { phase: "Failed" } } }).catch((e: ApiException<string>) => assert.fail(e.body));
    assert.equal(replaced.status?.phase, "Running", "a write to the pod leaves its status alone");
    const immutable = await failure(c.core.replaceNamespacedPod({ namespace: NS, name: "st", body: { ...replaced, spec: { ...replaced.spec!, restartPolicy: "Never" } } }));
    assert.equal(immutable.code, 422);
    assert.equal(immutable.status.details.causes[0]?.field, "spec");
  });
});

void describe("k8s fake cluster: CSI VolumeSnapshots (pinned external-snapshotter CRD)", () => {
  let cluster!: FakeCluster;
  let c!: ReturnType<typeof clients>;
  before(async () => {
    cluster = await startFakeCluster({ volumeSnapshots: true });
    c = clients(cluster);
  });
  after(async () => cluster?.close());

  void it("serves PVCs and VolumeSnapshots, validated against their schemas", async () => {
    const groups = (await raw(cluster, "GET", "/apis", null, true)).json.groups.map((g) => g.name);
    assert.ok(groups.includes("snapshot.storage.k8s.io"));
    const noSize = await failure(c.core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: { metadata: { name: "data" }, spec: { accessModes: ["ReadWriteOnce"] } } }));
    assert.equal(noSize.status.details.causes[0]?.field, "spec.resources[storage]");
    await c.core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: { metadata: { name: "data" }, spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } } } });
    const snap = { group: "snapshot.storage.k8s.io", version: "v1", namespace: NS, plural: "volumesnapshots" };
    const both = await failure(c.custom.createNamespacedCustomObject({ ...snap, body: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", metadata: { name: "s1" }, spec: { source: { persistentVolumeClaimName: "data", volumeSnapshotContentName: "c" } } } }));
    assert.equal(both.code, 422, "the source is one of a PVC or an existing content (a CEL rule)");
    assert.equal(both.status.details.causes[0]?.field, "spec.source");
    assert.match(both.status.details.causes[0]?.message ?? "", /exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set/);
    const made = (await c.custom.createNamespacedCustomObject({ ...snap, body: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", metadata: { name: "s1" }, spec: { source: { persistentVolumeClaimName: "data" } } } })) as { metadata: { name: string; resourceVersion: string } };
    const unconditional = await failure(c.custom.replaceNamespacedCustomObject({ ...snap, name: "s1", body: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", metadata: { name: "s1" }, spec: { source: { persistentVolumeClaimName: "data" } } } }));
    assert.equal(unconditional.code, 422, "a custom resource update must name its resourceVersion");
    assert.equal(unconditional.status.details.causes[0]?.field, "metadata.resourceVersion");
    const moved = await failure(c.custom.replaceNamespacedCustomObject({ ...snap, name: "s1", body: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", metadata: made.metadata, spec: { source: { persistentVolumeClaimName: "other" } } } }));
    assert.equal(moved.code, 422, "the source is immutable (a CEL transition rule)");
    assert.equal(moved.status.details.causes[0]?.field, "spec.source.persistentVolumeClaimName");
  });
});
