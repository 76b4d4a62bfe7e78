import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Pod, PersistentVolumeClaim, Secret, Service } from "kubernetes-models/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { PaddockError } from "../../src/core/index.ts";
import { parseK8sSettings } from "../../src/providers/k8s/settings.ts";
import {
  filesSecret, gatewayManifests, labelValue, sandboxClaim, sandboxTemplate, sandboxWarmPool, sessionLabels,
  sessionNetworkPolicy, sessionObjectName, sessionPod, sessionPodSpec, templateObjectName, workspaceClaim,
} from "../../src/providers/k8s/manifests.ts";
import type { NetworkRules } from "../../src/providers/k8s/manifests.ts";
import { SESSION_ENV_FILE, WRAPPER, exitCodeOf, parseListing, sandboxPath, sessionEnvLines, signalOfExit, wrappedArgv } from "../../src/providers/k8s/commands.ts";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Manifests and stored objects as loose JSON, for assertions on their fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

/**
 * The k8s provider's pure parts: every manifest it builds is valid for the Kubernetes schemas
 * (kubernetes-models' validators, generated from the API's OpenAPI), and holds what the provider
 * promises: hardening, resources, the NetworkPolicy's only ways out, no user text in shell code.
 */
const settings = parseK8sSettings({ namespace: "sessions" });
const compute = { cpu: 1.5, memoryBytes: 512 * 2 ** 20, pids: 256, diskBytes: 2 * 2 ** 30 };
const rules: NetworkRules = {
  gateway: [{ ip: "203.0.113.7", port: 8443 }, { ip: "2001:db8::7", port: 8443 }],
  dns: settings.dns,
  previewFrom: ["10.9.0.0/16"],
};
const labels = sessionLabels("k8s-prod", "sess-1");

void describe("k8s provider: settings", () => {
  void it("defaults: namespace paddock, RuntimeClass gvisor, debian:12-slim, agent-sandbox auto, no warm pool", () => {
    const s = parseK8sSettings(undefined);
    assert.deepEqual([s.namespace, s.runtimeClassName, s.image, s.useAgentSandbox, s.warmPool, s.inCluster], ["paddock", "gvisor", "debian:12-slim", "auto", 0, false]);
  });

  void it("an invalid setting is an invalid_argument naming the field", () => {
    const bad: [unknown, RegExp][] = [
      [{ namespace: "Not_A_Label" }, /settings\.namespace: must be a DNS-1123 label/],
      [{ runtimeClassName: "kata containers" }, /settings\.runtimeClassName/],
      [{ useAgentSandbox: "sometimes" }, /settings\.useAgentSandbox/],
      [{ warmPool: -1 }, /settings\.warmPool/],
      [{ image: "debian; rm -rf /" }, /settings\.image/],
      [{ nameSpace: "x" }, /nameSpace/],
      [{ gateway: { deploy: true } }, /settings\.gateway\.image: required/],
      [{ preview: { from: ["not a cidr"] } }, /settings\.preview\.from\[0\]/],
      [{ dns: { podLabels: { "bad key!": "x" } } }, /settings\.dns\.podLabels\.bad key!: /],
    ];
    for (const [raw, re] of bad) {
      assert.throws(() => parseK8sSettings(raw), (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument" && re.test(e.message), JSON.stringify(raw));
    }
  });
});

void describe("k8s provider: manifests", () => {
  void it("names: DNS-1123, distinct per instance and id; labels are label values", () => {
    const a = sessionObjectName("k8s-prod", "Sess_ION/1");
    assert.match(a, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    assert.ok(a.length <= 63);
    assert.notEqual(a, sessionObjectName("k8s-dev", "Sess_ION/1"));
    assert.notEqual(a, sessionObjectName("k8s-prod", "sess-ion-1"));
    assert.equal(labelValue("conf-1"), "conf-1");
    assert.match(labelValue("a/b c".repeat(30)), /^[a-z0-9][-a-z0-9]*[a-z0-9]$/);
  });

  void it("a session Pod: valid, RuntimeClass, hardened, resources from compute, no service account token, no session env, egress files", () => {
    const pod = sessionPod({
      name: "paddock-s1", namespace: "sessions", labels, id: "sess-1", settings, image: "debian:12-slim", compute, hostname: "My Host",
      fileSecret: { secretName: "paddock-s1", paths: ["/etc/paddock/ca.pem", "/etc/ssl/certs/ca-certificates.crt"] },
    });
    new Pod(pod as never).validate();
    const spec = pod.spec as Loose;
    assert.equal(spec.runtimeClassName, "gvisor");
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(spec.hostname, "my-host");
    assert.deepEqual(spec.securityContext, { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: "RuntimeDefault" } });
    const c = spec.containers[0];
    assert.deepEqual(c.securityContext.capabilities, { drop: ["ALL"] });
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(c.resources.limits, { cpu: "1500m", memory: String(512 * 2 ** 20), "ephemeral-storage": String(2 * 2 ** 30) });
    assert.deepEqual(c.resources.requests, c.resources.limits);
    assert.deepEqual(c.env, [{ name: "HOME", value: "/home/paddock" }], "the session's variables are never in the Pod object");
    const fileMounts = c.volumeMounts.filter((m: { name: string }) => m.name === "egress-files");
    assert.deepEqual(fileMounts.map((m: Record<string, unknown>) => [m.mountPath, m.subPath, m.readOnly]), [["/etc/paddock/ca.pem", "f0", true], ["/etc/ssl/certs/ca-certificates.crt", "f1", true]]);
    assert.ok(spec.volumes.some((v: Loose) => v.name === "workspace" && v.emptyDir?.sizeLimit === String(2 * 2 ** 30)));
    new Secret(filesSecret("paddock-s1", "sessions", labels, [{ path: "/etc/paddock/ca.pem", content: "PEM" }]) as never).validate();
  });

  void it("recipe steps run in a root init container as arguments of a fixed script, never spliced into it", () => {
    const steps = ["npm install", "echo '$(touch /pwned)'; x=1"];
    const spec = sessionPodSpec({ settings, image: "node:20", compute, recipe: { templateId: "t1", base: "debian-12", steps } }) as Loose;
    new Pod({ metadata: { name: "x" }, spec } as never).validate();
    const init = spec.initContainers[0];
    assert.equal(init.securityContext.runAsUser, 0);
    assert.equal(init.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(init.command.slice(3), ["paddock-recipe", ...steps]);
    for (const step of steps) assert.ok(!init.command[2].includes(step));
    assert.equal(sessionPodSpec({ settings, image: "x", compute, recipe: { templateId: "t", base: "host", steps: [] } }).initContainers, undefined);
  });

  void it("the NetworkPolicy selects the session's pod and allows egress only to the gateway (no DNS by default), ingress only from the preview path", () => {
    const np = sessionNetworkPolicy("paddock-s1", "sessions", labels, rules);
    new NetworkPolicy(np as never).validate();
    const spec = np.spec as Loose;
    assert.deepEqual(spec.podSelector, { matchLabels: labels });
    assert.deepEqual(spec.policyTypes, ["Ingress", "Egress"]);
    assert.deepEqual(spec.egress, [
      { to: [{ ipBlock: { cidr: "203.0.113.7/32" } }], ports: [{ protocol: "TCP", port: 8443 }] },
      { to: [{ ipBlock: { cidr: "2001:db8::7/128" } }], ports: [{ protocol: "TCP", port: 8443 }] },
    ]);
    assert.equal(settings.dns.allow, false, "DNS is an opt-in");
    const optIn = sessionNetworkPolicy("paddock-s1", "sessions", labels, { ...rules, dns: parseK8sSettings({ dns: { allow: true } }).dns });
    new NetworkPolicy(optIn as never).validate();
    assert.deepEqual((optIn.spec as Loose).egress[2], { to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } }, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }], ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] });
    assert.deepEqual(spec.ingress, [{ from: [{ ipBlock: { cidr: "10.9.0.0/16" } }] }]);
    const closed = sessionNetworkPolicy("x", "sessions", labels, { gateway: [], dns: { ...settings.dns, allow: false }, previewFrom: [] }).spec as Loose;
    assert.deepEqual([closed.egress, closed.ingress], [[], []], "no egress attachment: nothing in or out");
  });

  void it("the gateway's names are pinned in the pod's hostAliases (valid for the Pod schema); none given, none set", () => {
    const hostAliases = [{ ip: "203.0.113.7", hostnames: ["gw.example.net"] }, { ip: "2001:db8::7", hostnames: ["gw.example.net"] }];
    const spec = sessionPodSpec({ settings, image: "debian:12-slim", compute, hostAliases }) as Loose;
    assert.deepEqual(spec.hostAliases, hostAliases);
    new Pod({ metadata: { name: "x" }, spec } as never).validate();
    assert.equal((sessionPodSpec({ settings, image: "debian:12-slim", compute }) as Loose).hostAliases, undefined);
    assert.notEqual(templateObjectName(spec, rules), templateObjectName(sessionPodSpec({ settings, image: "debian:12-slim", compute }), rules), "another resolution, another template");
  });

  void it("agent-sandbox objects: template with Managed policy holding Paddock's rules, warm pool, claim on the pool", () => {
    const podSpec = sessionPodSpec({ settings, image: "debian:12-slim", compute, fileDirs: ["/etc/paddock", "/etc/ssl/certs"] });
    const name = templateObjectName(podSpec, rules);
    assert.equal(name, templateObjectName(podSpec, rules), "a content hash");
    assert.notEqual(name, templateObjectName(podSpec, { ...rules, previewFrom: [] }));
    const tpl = sandboxTemplate(name, "sessions", labels, podSpec, rules) as Loose;
    assert.equal(tpl.apiVersion, "extensions.agents.x-k8s.io/v1beta1");
    assert.equal(tpl.spec.networkPolicyManagement, "Managed");
    assert.equal(tpl.spec.envVarsInjectionPolicy, "Disallowed");
    assert.deepEqual(tpl.spec.networkPolicy.egress[0], { to: [{ ipBlock: { cidr: "203.0.113.7/32" } }], ports: [{ protocol: "TCP", port: 8443 }] });
    new Pod({ metadata: { name: "x" }, spec: tpl.spec.podTemplate.spec } as never).validate();
    assert.deepEqual(sandboxWarmPool(name, "sessions", labels, name, 3).spec, { replicas: 3, sandboxTemplateRef: { name } });
    const claim = sandboxClaim("paddock-s1", "sessions", labels, name, "sess-1") as Loose;
    assert.deepEqual(claim.spec, { warmPoolRef: { name }, additionalPodMetadata: { labels: { "paddock.dev/session": "sess-1" } } });
  });

  void it("workspace PVC (from a snapshot) and the gateway Deployment + Service are valid", () => {
    const pvc = workspaceClaim("paddock-s1", "sessions", labels, 2 ** 30, { ...settings, storageClassName: "csi-fast" }, "paddock-snap-x") as Loose;
    new PersistentVolumeClaim(pvc as never).validate();
    assert.deepEqual(pvc.spec.dataSource, { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "paddock-snap-x" });
    const [dep, svc] = gatewayManifests("k8s-prod", parseK8sSettings({ gateway: { deploy: true, image: "paddock/gateway:1" } }));
    new Deployment(dep as never).validate();
    new Service(svc as never).validate();
    const c = (dep.spec as Loose).template.spec.containers[0];
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual((svc.spec as Loose).selector, (dep.spec as Loose).selector.matchLabels);
  });
});

void describe("k8s provider: exec and file helpers", () => {
  void it("the exec wrapper takes cwd, the env file, env and argv as arguments; bad names and argv[0] with '=' are refused", () => {
    const argv = wrappedArgv("/tmp/.paddock-exec/p", "/work space", SESSION_ENV_FILE, { A: "$(x)" }, ["echo", "; rm -rf /"]);
    assert.deepEqual(argv, ["/bin/sh", "-c", WRAPPER, "paddock-exec", "/tmp/.paddock-exec/p", "/work space", SESSION_ENV_FILE, "A=$(x)", "echo", "; rm -rf /"]);
    assert.throws(() => wrappedArgv("p", "/", "e", { "BAD-NAME": "x" }, ["true"]), /not valid/);
    assert.throws(() => wrappedArgv("p", "/", "e", {}, ["X=1"]), /without '='/);
  });

  void it("the session env file: every value single-quoted, so a shell reading it runs nothing of it", async () => {
    const env = { A: "it's $(touch pwned) `touch pwned` \\ \"q\"\nline2 '", HTTPS_PROXY: "https://u:p@gw:8443" };
    const text = sessionEnvLines(env);
    assert.equal(text.split("\n").filter((l) => l.startsWith("export ")).length, 2);
    assert.throws(() => sessionEnvLines({ "A B": "x" }), /not valid/);
    const dir = await mkdtemp(join(tmpdir(), "k8s-env-"));
    try {
      await writeFile(join(dir, "env"), text);
      const r = spawnSync("/bin/sh", ["-c", '. "$1"; printf "%s\\0%s" "$A" "$HTTPS_PROXY"; [ ! -e pwned ]', "sh", join(dir, "env")], { encoding: "utf8", cwd: dir });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.stdout.split("\0"), [env.A, env.HTTPS_PROXY]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it("exit codes from the status channel; 128+N names the signal", () => {
    assert.equal(exitCodeOf({ status: "Success" }), 0);
    assert.equal(exitCodeOf({ status: "Failure", reason: "NonZeroExitCode", details: { causes: [{ reason: "ExitCode", message: "7" }] } }), 7);
    assert.throws(() => exitCodeOf({ status: "Failure", message: "container not found" }), /container not found/);
    assert.equal(signalOfExit(143), "SIGTERM");
    assert.equal(signalOfExit(137), "SIGKILL");
    assert.equal(signalOfExit(7), null);
  });

  void it("paths resolve under /workspace; listings parse names with spaces", () => {
    assert.equal(sandboxPath("a/b"), "/workspace/a/b");
    assert.equal(sandboxPath("/../../etc"), "/etc");
    assert.throws(() => sandboxPath("a\0b"));
    const entries = parseListing("f 640 6 1700000000.5 bin.dat\0d 755 4096 1700000000 a dir\0l 777 3 1 link\0");
    assert.deepEqual(entries.map((e) => [e.name, e.type, e.mode, e.size]), [["a dir", "dir", 0o755, 4096], ["bin.dat", "file", 0o640, 6], ["link", "symlink", 0o777, 3]]);
  });
});
