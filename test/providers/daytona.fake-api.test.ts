import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import type { Provider, SandboxSpec } from "../../src/core/index.ts";
import { Daytona, DaytonaError } from "@daytona/sdk";
import { PaddockError } from "../../src/core/index.ts";
import { openLayerStore, type ClosableLayerStore } from "../../src/layers/index.ts";
import { createLocalProvider, installationScope, openNetworkManager, type NetworkManager } from "../../src/providers/local/index.ts";
import { daytonaDriver, DaytonaProvider, parseDaytonaSettings } from "../../src/providers/daytona/index.ts";
import { startFakeDaytona, type FakeDaytona } from "../fakes/daytona/index.ts";
import { releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { freePorts } from "../network/helpers.ts";
import { providerConformance } from "./conformance.ts";

/**
 * The daytona provider (real `@daytona/sdk`) against the fake Daytona API (test/fakes/daytona),
 * whose sandboxes are real local Paddock sandboxes: commands and files are real, the Daytona
 * service is not.
 */
interface World {
  fake: FakeDaytona;
  local: Provider;
  provider: DaytonaProvider;
  cleanup: () => Promise<void>;
}

const RECIPE_FILE = "/etc/paddock-recipe";
const CA = "-----BEGIN CERTIFICATE-----\nfake session bundle\n-----END CERTIFICATE-----\n";

async function world(): Promise<World> {
  const home = await tempDir();
  let layers: ClosableLayerStore | undefined;
  let network: NetworkManager | undefined;
  let fake: FakeDaytona | undefined;
  let local: Provider | undefined;
  let provider: DaytonaProvider | undefined;
  const cleanup = async () => {
    for (const id of (await provider?.list()) ?? []) await provider?.stop(id).catch(() => false);
    await provider?.close();
    await fake?.close();
    for (const id of (await local?.list()) ?? []) await local?.stop(id).catch(() => false);
    await layers?.close({ unmount: true });
    await network?.close({ removeHostObjects: true });
    await releaseHome(home.path);
    await home.remove();
  };
  try {
    layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * 2 ** 30 });
    const [proxyPort, httpPort, httpsPort, dnsPort] = (await freePorts(4)) as [number, number, number, number];
    network = await openNetworkManager({ scope: installationScope(home.path), ports: { proxyPort, httpPort, httpsPort, dnsPort }, poolSize: 4 });
    local = await createLocalProvider({ home: home.path, layers, network });
    fake = await startFakeDaytona({ local, network: true });
    provider = (await daytonaDriver.create(
      { name: "daytona-test", settings: parseDaytonaSettings({ apiUrl: fake.apiUrl, pollIntervalMs: 30, createTimeoutSeconds: 120 }), credentials: { apiKey: fake.apiKey } },
      { home: home.path, log: () => undefined },
    )) as DaytonaProvider;
    return { fake, local, provider, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

let n = 0;
const specFor = (overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id: `dt-${process.pid}-${n++}`,
  mode: "session",
  base: "debian-12",
  layers: [],
  compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
  hostname: "daytona",
  env: {},
  recipe: { templateId: "tpl-conformance", base: "debian-12", steps: [`echo recipe > ${RECIPE_FILE}`] },
  ...overrides,
});

providerConformance("daytona against the fake Daytona API", async () => {
  const w = await world();
  return { provider: w.provider, spec: specFor, cleanup: w.cleanup };
});

const isCode = (code: string) => (e: unknown) => {
  assert.ok(e instanceof PaddockError, String(e));
  assert.equal(e.code, code, e.message);
  return true;
};
const isUnsupported = (e: unknown) => {
  assert.ok(e instanceof PaddockError, String(e));
  assert.equal(e.code, "unavailable", e.message);
  assert.equal(typeof e.details?.capability, "string", e.message);
  return true;
};

void describe("daytona provider against the fake Daytona API: what it asks Daytona for", () => {
  let w: World;
  const started: string[] = [];
  const start = async (overrides: Partial<SandboxSpec> = {}) => {
    const spec = specFor(overrides);
    await w.provider.create(spec);
    started.push(spec.id);
    return spec.id;
  };
  const createBodies = () => w.fake.requests.filter((r) => r.method === "POST" && r.path === "/api/sandbox").map((r) => r.json as Record<string, unknown>);
  const output = async (id: string, script: string) => {
    let out = "";
    const r = await w.provider.exec(id, { argv: ["sh", "-c", script], onStdout: (b) => (out += b.toString()) });
    return { code: r.exitCode, out };
  };

  before(async () => {
    w = await world();
  });
  after(async () => {
    for (const id of started) await w?.provider.stop(id).catch(() => false);
    await w?.cleanup();
  });

  void it("create: an image from the recipe (built once per recipe), resources from compute, no idle stop, no network without remoteEgress", async () => {
    const builds = w.fake.imageBuilds();
    const a = await start({ compute: { cpu: 1.5, memoryBytes: 1536 * 2 ** 20, pids: 256, diskBytes: 2 * 2 ** 30 } });
    const body = createBodies().at(-1)!;
    const dockerfile = (body["buildInfo"] as { dockerfileContent: string }).dockerfileContent;
    assert.match(dockerfile, /^FROM debian:12\n/);
    assert.ok(dockerfile.includes(Buffer.from(`echo recipe > ${RECIPE_FILE}`).toString("base64")), dockerfile);
    assert.deepEqual([body["cpu"], body["memory"], body["disk"]], [2, 2, 2], "rounded up to whole vCPUs and GiB");
    assert.deepEqual([body["autoStopInterval"], body["networkBlockAll"], body["networkAllowList"], body["secrets"], body["public"]], [0, true, undefined, undefined, false]);
    assert.equal((await w.provider.readFile(a, RECIPE_FILE)).toString(), "recipe\n", "the recipe's step ran in the image");
    const b = await start();
    assert.equal(w.fake.imageBuilds(), builds + 1, "the second sandbox of the recipe reuses the image");
    await start({ recipe: { templateId: "tpl-other", base: "debian-12", steps: ["echo other > /etc/other", "printf 'two\\nlines' > /etc/multi"] } });
    assert.equal(w.fake.imageBuilds(), builds + 2);
    assert.equal((await output(b, "cat /etc/paddock-recipe")).out, "recipe\n");
  });

  void it("remoteEgress: the allow list names only the gateway, its variables reach commands, its files are in place before the first command", async () => {
    const proxyUrl = "https://sess-1:proxy-pass@127.0.0.1:4443";
    let calls = 0;
    const id = await start({
      env: { FROM_SPEC: "yes" },
      remoteEgress: () => {
        calls++;
        return Promise.resolve({
          proxyUrl,
          allow: [{ host: "127.0.0.1", port: 4443 }, { host: "localhost", port: 4443 }],
          env: { HTTPS_PROXY: proxyUrl, NO_PROXY: "" },
          // Where the gateway puts them (docs/gateway.md, "Remote sandboxes"): root's directories.
          files: ["/etc/paddock/ca.pem", "/etc/paddock/certs/bundle.crt"].map((path) => ({ path, content: CA })),
        });
      },
    });
    assert.equal(calls, 1);
    const body = createBodies().at(-1)!;
    assert.equal(body["networkAllowList"], "127.0.0.1/32", "both names of the gateway are one /32");
    assert.equal(body["networkBlockAll"], undefined);
    assert.deepEqual(body["env"], { FROM_SPEC: "yes", HTTPS_PROXY: proxyUrl, NO_PROXY: "" });
    assert.equal((await output(id, "echo $HTTPS_PROXY $FROM_SPEC")).out, `${proxyUrl} yes\n`);
    // (Programs read them through the image's links; the fake's file API, like the local provider's, does not follow a final symlink.)
    assert.equal((await output(id, "cat /etc/paddock/ca.pem /etc/paddock/certs/bundle.crt")).out, CA + CA);
    const before = createBodies().length;
    const many = Array.from({ length: 6 }, (_, i) => ({ host: `10.9.0.${i + 1}`, port: 4443 }));
    await assert.rejects(
      w.provider.create(specFor({ remoteEgress: () => Promise.resolve({ proxyUrl, allow: many, env: {}, files: [] }) })),
      (e: unknown) => e instanceof PaddockError && /at most 5/.test(e.message),
    );
    assert.equal(createBodies().length, before, "refused before Daytona is asked");
  });

  void it("what Daytona refuses comes back as a PaddockError naming the cause; a failing recipe step fails the create", async () => {
    await assert.rejects(w.provider.create(specFor({ compute: { cpu: 8, memoryBytes: 2 ** 30, pids: 256, diskBytes: 2 ** 30 } })), (e: unknown) => isCode("invalid_argument")(e) && /CPU request 8 exceeds/.test((e as Error).message));
    const bad = specFor({ recipe: { templateId: "tpl-bad", base: "debian-12", steps: ["echo about to fail; exit 3"] } });
    await assert.rejects(w.provider.create(bad), (e: unknown) => e instanceof PaddockError && /build_failed/.test(e.message) && /exited with 3/.test(e.message));
    assert.ok(!(await w.provider.list()).includes(bad.id));
    assert.ok(!w.fake.sandboxes().some((s) => s["name"] === bad.id), "the failed sandbox is not left in the organization");
    const dup = await start();
    const other = new DaytonaProvider({ name: "other", settings: parseDaytonaSettings({ apiUrl: w.fake.apiUrl }), apiKey: w.fake.apiKey, deps: { home: "/", log: () => undefined } });
    await assert.rejects(other.create(specFor({ id: dup })), isCode("conflict"), "Daytona's name is the sandbox id: taken");
    assert.equal((await output(dup, "echo still")).out, "still\n", "the refused create did not touch the sandbox that has the name");
    await other.close();
  });

  void it("what a Daytona sandbox cannot honour is refused with unsupported, before Daytona is asked", async () => {
    const before = createBodies().length;
    for (const over of [{ mode: "build" as const }, { sessionUser: { name: "user", home: "/home/user" } }, { mounts: [{ source: "/tmp", target: "/run/x" }] }, { egress: () => Promise.resolve({ env: {}, files: [] }) }, { from: "snap" }]) {
      await assert.rejects(w.provider.create(specFor(over)), isUnsupported, JSON.stringify(Object.keys(over)));
    }
    await assert.rejects(w.provider.create(specFor({ recipe: undefined })), isCode("invalid_argument"));
    assert.equal(createBodies().length, before);
  });

  void it("killProcesses ends the commands running in a sandbox (137) and it takes commands again", async () => {
    const id = await start();
    let ready!: () => void;
    const up = new Promise<void>((r) => (ready = r));
    const running = w.provider.exec(id, { argv: ["sh", "-c", "echo up; sleep 60"], onStdout: () => ready() });
    await up;
    assert.equal(await w.provider.killProcesses(id), 1);
    assert.deepEqual([(await running).exitCode, (await running).signal], [137, "SIGKILL"]);
    assert.equal((await output(id, "pgrep -x sleep || echo none")).out, "none\n");
  });

  void it("recover after a control-plane restart: a running sandbox is found with its environment, a deleted one is gone", async () => {
    const id = await start();
    const state = await w.provider.setEnv(id, { CLAIMED: "by-session" });
    const again = await daytonaDriver.create({ name: "daytona-test", settings: parseDaytonaSettings({ apiUrl: w.fake.apiUrl, pollIntervalMs: 30 }), credentials: { apiKey: w.fake.apiKey } }, { home: "/", log: () => undefined });
    assert.equal(await again.recover(id, state), "running");
    let out = "";
    await again.exec(id, { argv: ["sh", "-c", "echo $CLAIMED"], onStdout: (b) => (out += b.toString()) });
    assert.equal(out, "by-session\n");
    assert.equal(await again.stop(id), true);
    assert.equal(await again.recover(id, state), "gone");
    await assert.rejects(w.provider.exec(id, { argv: ["true"] }), isCode("not_found"), "the first instance's handle is for a deleted sandbox");
    await w.provider.stop(id);
    await again.close();
  });

  void it("health: a wrong API key is unhealthy and says why without echoing the key", async () => {
    const wrong = "dtn_not-the-key-0123456789";
    const p = new DaytonaProvider({ name: "bad-key", settings: parseDaytonaSettings({ apiUrl: w.fake.apiUrl }), apiKey: wrong, deps: { home: "/", log: () => undefined } });
    const h = await p.health();
    assert.equal(h.ok, false);
    assert.match(h.detail, /Invalid credentials/);
    assert.ok(!h.detail.includes(wrong));
    await p.close();
  });

  void it("the fake refuses what Daytona refuses (the real SDK's errors)", async () => {
    const sdk = new Daytona({ apiKey: w.fake.apiKey, apiUrl: w.fake.apiUrl, useDeprecatedPolling: true });
    const status = (p: Promise<unknown>) => p.then(() => 0, (e: unknown) => (e instanceof DaytonaError ? (e.statusCode ?? -1) : -2));
    assert.equal(await status(sdk.create({ snapshot: "daytona-small", resources: { cpu: 2 } } as never)), 400, "resources with a snapshot");
    assert.equal(await status(sdk.create({ image: "debian:12", networkAllowList: "1.1.1.1/32,1.1.1.2/32,1.1.1.3/32,1.1.1.4/32,1.1.1.5/32,1.1.1.6/32" })), 400, "six CIDRs");
    assert.equal(await status(sdk.create({ image: "debian:12", networkAllowList: "gateway.example/32" })), 400, "not an IPv4 CIDR");
    assert.equal(await status(sdk.create({ image: "debian:12", resources: { memory: 9 } })), 400, "beyond the per-sandbox maximum");
    assert.equal(await status(sdk.get("no-such-sandbox")), 404);
    const bad = new Daytona({ apiKey: "dtn_wrong", apiUrl: w.fake.apiUrl, useDeprecatedPolling: true });
    assert.equal(await status(bad.get("no-such-sandbox")), 401);
    const id = await start();
    const sandbox = await sdk.get(id);
    assert.equal(await status(sandbox.getSignedPreviewUrl(80, 60)), 400, "preview ports are 3000-9999");
    assert.equal(await status(sandbox.process.getSessionCommand("no-session", "no-command")), 404);
    await sdk[Symbol.asyncDispose]();
    await bad[Symbol.asyncDispose]();
  });

  void it("the fake keeps a stopped sandbox's files across the SDK's stop and start, not its processes", async () => {
    const sdk = new Daytona({ apiKey: w.fake.apiKey, apiUrl: w.fake.apiUrl, useDeprecatedPolling: true });
    const sandbox = await sdk.create({ image: "debian:12", autoStopInterval: 0 }, { timeout: 120 });
    await sandbox.fs.uploadFile(Buffer.from("kept"), "/home/daytona/kept.txt");
    await sandbox.process.executeCommand("sh -c 'sleep 600 >/dev/null 2>&1 &'");
    await sandbox.stop();
    assert.equal(sandbox.state, "stopped");
    await sandbox.start();
    assert.equal((await sandbox.fs.downloadFile("/home/daytona/kept.txt")).toString(), "kept");
    assert.equal((await sandbox.process.executeCommand("sh -c 'pgrep -x sleep || echo none'")).result.trim(), "none");
    await sandbox.delete();
    assert.equal(w.fake.sandboxes().some((s) => s["id"] === sandbox.id), false);
    await sdk[Symbol.asyncDispose]();
  });

  void it("settings: bad values and unknown keys are refused with located messages", () => {
    assert.throws(() => parseDaytonaSettings({ apiUrl: "ftp://x", pollIntervalMs: 1, extra: true }), (e: unknown) => {
      assert.ok(e instanceof PaddockError && e.code === "invalid_argument");
      for (const where of ["settings.apiUrl", "settings.pollIntervalMs", "extra"]) assert.ok(e.message.includes(where), e.message);
      return true;
    });
    assert.deepEqual(parseDaytonaSettings(undefined).image, "debian:12");
  });
});
