/**
 * The ec2 provider against the FAKE EC2 API (test/fakes/ec2: the Query API subset, SigV4 checked,
 * EC2's errors) with REAL nodes: each "instance" the fake launches runs its user data, which
 * starts a real `paddock node` process on this machine, reached over mutual TLS. Conformance,
 * then host placement, reuse, idle termination, recovery after a control-plane restart, boot
 * failures and EC2's errors.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ec2Driver, createNodeCa, type Ec2Provider, type NodeCa } from "../../src/providers/ec2/index.ts";
import { PaddockError, type Provider, type SandboxSpec } from "../../src/core/index.ts";
import { startFakeEc2, bootLog, type FakeEc2 } from "../fakes/ec2/index.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";
import { freeNodeHome, repoRoot } from "../node/helpers.ts";
import { providerConformance } from "./conformance.ts";

const KEY_ID = "AKIAFAKEPADDOCK00001";
const SECRET = "fake-secret-access-key-for-tests-only";
const TEMPLATE = { id: "lt-0a1b2c3d4e5f60718", name: "paddock-node" };

interface Rig {
  fake: FakeEc2;
  ca: NodeCa;
  home: string;
  logs: string[];
  /** An ec2 provider instance; instances of one name share hosts (found by tag), another name starts with none. */
  provider(settings?: Record<string, unknown>, credentials?: Partial<Record<string, string>>, name?: string): Promise<Ec2Provider>;
  cleanup(): Promise<void>;
}

/** A fake EC2 whose instances boot real nodes, and a factory for ec2 providers against it. */
async function rig(capacity = 8): Promise<Rig> {
  const dir = await tempDir("paddock-ec2-test-");
  const ca = await createNodeCa("test installation node CA");
  const fake = await startFakeEc2({
    keys: { [KEY_ID]: SECRET },
    launchTemplates: [TEMPLATE],
    capacity,
    dir: join(dir.path, "instances"),
    bootEnv: { ...process.env, PATH: `${join(repoRoot, "bin")}:${process.env.PATH ?? ""}`, PADDOCK_FROM_SOURCE: "1" },
    onTerminate: (i) => freeNodeHome(join(i.dir, "home")),
  });
  const logs: string[] = [];
  const made: Provider[] = [];
  return {
    fake, ca, home: join(dir.path, "control"), logs,
    async provider(settings = {}, credentials = {}, name = "ec2-test") {
      const p = (await ec2Driver.create(
        {
          name,
          settings: ec2Driver.parseSettings({ region: "us-east-1", launchTemplateName: TEMPLATE.name, endpoint: fake.url, bootTimeoutMs: 120_000, ...settings }),
          credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET, nodeCa: ca.bundle(), ...credentials } as Record<string, string>,
        },
        { home: join(dir.path, "control"), log: (l) => logs.push(l) },
      )) as Ec2Provider;
      made.push(p);
      return p;
    },
    async cleanup() {
      for (const p of made) {
        for (const id of await p.list().catch(() => [] as string[])) await p.stop(id).catch(() => false);
        await p.close();
      }
      await fake.close();
      await dir.remove();
    },
  };
}

let n = 0;
const spec = (over: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id: `ec2-${process.pid}-${n++}`,
  mode: "session",
  base: "host",
  layers: [],
  compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
  hostname: "ec2-test",
  env: {},
  recipe: { templateId: "t-ec2-test", base: "host", steps: ["echo built-on-node > /etc/paddock-recipe"] },
  ...over,
});

const failsWith = (code: string, pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof PaddockError, String(e));
  assert.equal(e.code, code, e.message);
  assert.match(e.message, pattern);
  return true;
};

providerConformance("ec2 provider against the fake EC2 API (real node processes)", async () => {
  const r = await rig();
  const provider = await r.provider({ maxHosts: 1, sessionsPerHost: 100 });
  return { provider, spec, cleanup: () => r.cleanup() };
});

void describe("ec2 provider against the fake EC2 API: hosts, reuse, idle termination, restart, errors", () => {
  let r: Rig;
  before(async () => {
    r = await rig(4);
  });
  after(async () => {
    await r?.cleanup();
  });

  const runs = () => r.fake.calls.filter((c) => c.action === "RunInstances" && !c.error).length;

  void it("launches a host per sessionsPerHost, reuses one with room, refuses past maxHosts, terminates idle hosts", async () => {
    const p = await r.provider({ maxHosts: 2, sessionsPerHost: 1, idleGraceMs: 1500 });
    const a = spec();
    const ha = await p.create(a);
    assert.equal(runs(), 1);
    let out = "";
    await p.exec(a.id, { argv: ["cat", "/etc/paddock-recipe"], onStdout: (b) => (out += b.toString()) });
    assert.equal(out, "built-on-node\n", "the template came from the recipe, built on the node");
    const b = spec();
    const hb = await p.create(b);
    assert.equal(runs(), 2, "host 1 is full: a second host");
    assert.notEqual(ha.providerState["instanceId"], hb.providerState["instanceId"]);
    await assert.rejects(p.create(spec()), failsWith("unavailable", /all 2 hosts are full/));
    assert.equal(runs(), 2, "nothing launched past maxHosts");

    // b's host has room again: the next create reuses it (before its idle grace ends).
    assert.equal(await p.stop(b.id), true);
    const c = spec();
    const hc = await p.create(c);
    assert.equal(hc.providerState["instanceId"], hb.providerState["instanceId"]);
    assert.equal(runs(), 2, "reused, not launched");

    // a's host is idle once a stops: terminated after the grace period.
    const idleHost = String(ha.providerState["instanceId"]);
    assert.equal(await p.stop(a.id), true);
    await until(async () => r.fake.instances.get(idleHost)?.state === "terminated", 60_000, `idle host ${idleHost} to be terminated`);
    assert.ok(r.fake.calls.some((x) => x.action === "TerminateInstances" && !x.error));
    assert.equal(r.fake.instances.get(String(hc.providerState["instanceId"]))?.state, "running", "the busy host stays");
    assert.equal(await p.stop(c.id), true);
  });

  void it("a restarted control plane finds its hosts by tag and recovers their sandboxes", async () => {
    const first = await r.provider({ maxHosts: 2, sessionsPerHost: 4, idleGraceMs: 600_000 });
    const s = spec();
    const handle = await first.create(s);
    await first.writeFile(s.id, "/workspace/kept.txt", Buffer.from("survives"));
    await first.close();
    const second = await r.provider({ maxHosts: 2, sessionsPerHost: 4, idleGraceMs: 600_000 });
    assert.equal(await second.recover(s.id, handle.providerState), "running");
    assert.equal((await second.readFile(s.id, "/workspace/kept.txt")).toString(), "survives");
    assert.ok((await second.list()).includes(s.id));
    assert.equal(await second.recover("never-was", { ...handle.providerState, instanceId: "i-00000000000000000" }), "gone");
    assert.equal(await second.stop(s.id), true);
  });

  void it("the user data carries the node's own certificate, never the CA key or AWS credentials", async () => {
    const instance = [...r.fake.instances.values()][0];
    assert.ok(instance, "a host was launched");
    const caKey = r.ca.bundle().slice(r.ca.certPem.length);
    const body = (pem: string) => pem.replace(/-----[^-]+-----|\s/g, "");
    assert.ok(!instance.userData.replace(/\s/g, "").includes(body(caKey)), "the CA's private key is not in the user data");
    assert.ok(!instance.userData.includes(SECRET) && !instance.userData.includes(KEY_ID), "no AWS credentials in the user data");
    assert.match(instance.userData, /exec paddock node --listen/);
    assert.equal(instance.tags.get("paddock:provider"), "ec2-test");
    assert.match(instance.tags.get("paddock:node-name") ?? "", /^n-[0-9a-f]{20}\.node\.paddock\.internal$/);
  });

  void it("a host whose node never answers is terminated and the create fails unavailable", async () => {
    const p = await r.provider({ bootTimeoutMs: 3000, nodeCommand: "paddock-missing-on-this-image" }, {}, "ec2-noboot");
    const before = new Set(r.fake.instances.keys());
    await assert.rejects(p.create(spec()), failsWith("unavailable", /gave up waiting for node .* to answer over mTLS/));
    const launched = [...r.fake.instances.values()].filter((i) => !before.has(i.id));
    assert.equal(launched.length, 1);
    assert.equal(launched[0]?.state, "terminated", "the failed host is not left running");
    assert.match(await bootLog(launched[0]!), /paddock-missing-on-this-image/);
  });

  void it("EC2's errors come back as PaddockErrors naming the action and code", async () => {
    const wrongTemplate = await r.provider({ launchTemplateName: "no-such-template" }, {}, "ec2-no-template");
    await assert.rejects(wrongTemplate.create(spec()), failsWith("invalid_argument", /RunInstances failed: InvalidLaunchTemplateName\.NotFoundException/));
    assert.equal((await wrongTemplate.health()).ok, false);

    const badKey = await r.provider({}, { secretAccessKey: "not-the-secret" });
    const h = await badKey.health();
    assert.equal(h.ok, false);
    assert.match(h.detail, /SignatureDoesNotMatch/);
    assert.ok(!h.detail.includes("not-the-secret"));

    // A provider instance with no hosts yet needs one, and IAM refuses the launch.
    const denied = await r.provider({}, {}, "ec2-denied");
    r.fake.deny.add("RunInstances");
    try {
      await assert.rejects(denied.create(spec()), failsWith("unavailable", /RunInstances failed: UnauthorizedOperation/));
    } finally {
      r.fake.deny.delete("RunInstances");
    }
    assert.equal((await denied.health()).ok, true, "other calls are still allowed");
  });

  void it("the region out of capacity: InsufficientInstanceCapacity, unavailable", async () => {
    const small = await rig(0);
    try {
      const p = await small.provider();
      await assert.rejects(p.create(spec()), failsWith("unavailable", /InsufficientInstanceCapacity/));
    } finally {
      await small.cleanup();
    }
  });

  void it("settings are validated with the key that is wrong", () => {
    assert.throws(() => ec2Driver.parseSettings({ region: "us-east-1" }), failsWith("invalid_argument", /settings\.launchTemplateId: name exactly one/));
    assert.throws(() => ec2Driver.parseSettings({ region: "us-east-1", launchTemplateName: "x-y", maxHosts: 0 }), failsWith("invalid_argument", /settings\.maxHosts/));
    assert.throws(() => ec2Driver.parseSettings({ region: "us-east-1", launchTemplateName: "x-y", sessionPerHost: 2 }), failsWith("invalid_argument", /sessionPerHost/));
  });

  void it("a bad nodeCa credential is refused without quoting it", async () => {
    await assert.rejects(r.provider({}, { nodeCa: "-----BEGIN CERTIFICATE-----\nnot-base64-secret-ish\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" }),
      (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument" && !e.message.includes("not-base64"));
  });
});

