// The remoteEgress wiring in Sessions.create (issue 13): a session on a provider whose network is
// "proxy" gets `remoteEgress`, never the local `egress` hook, and its stop revokes the credential.
// The provider is a fake that stands in for a remote one: its "sandbox" is a directory on this
// host, holding the attachment's files, and its commands run here with the attachment's
// environment only. Everything else (server, API, store, vault, gateway process) is real.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import { PaddockError, type ExecOptions, type ExecResult, type Provider, type ProviderCapabilities, type SandboxHandle, type SandboxSpec } from "../../src/core/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { SECRETS, startUpstreams, type Upstreams } from "../gateway/helpers.ts";
import { testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";

const CAPABILITIES: ProviderCapabilities = {
  kind: "k8s", selfHosted: true, layers: false, network: "proxy", snapshot: false, execGuard: false,
  services: false, fileOps: false, ports: false, warmPool: false, isolation: ["namespaces"],
};

interface FakeSandbox {
  root: string;
  env: Record<string, string>;
}

/** A provider whose sandboxes are directories on this host; it only knows what the remoteEgress hook gave it. */
function fakeRemoteProvider(base: string): Provider & { specs: SandboxSpec[]; sandboxes: Map<string, FakeSandbox> } {
  const sandboxes = new Map<string, FakeSandbox>();
  const specs: SandboxSpec[] = [];
  const nope = (what: string) => () => Promise.reject(new PaddockError("unavailable", `the fake remote provider cannot ${what}`));
  const sandbox = (id: string): FakeSandbox => {
    const s = sandboxes.get(id);
    if (!s) throw new PaddockError("not_found", `no fake sandbox ${id}`);
    return s;
  };
  const provider = {
    name: "remote-fake",
    capabilities: CAPABILITIES,
    specs,
    sandboxes,
    health: async () => ({ ok: true, detail: "fake", latencyMs: 0 }),
    async create(spec: SandboxSpec): Promise<SandboxHandle> {
      specs.push(spec);
      if (!spec.remoteEgress) throw new PaddockError("invalid_argument", "a proxy-network provider needs remoteEgress");
      const att = await spec.remoteEgress();
      const root = join(base, spec.id);
      for (const f of att.files) {
        await mkdir(dirname(join(root, f.path)), { recursive: true });
        await writeFile(join(root, f.path), f.content);
      }
      const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: root, ...spec.env };
      for (const [k, v] of Object.entries(att.env)) env[k] = v.startsWith("/etc/") ? join(root, v) : v;
      sandboxes.set(spec.id, { root, env });
      return { id: spec.id, providerState: { root } };
    },
    recover: async (id: string) => (sandboxes.has(id) ? "running" : "gone"),
    exec(id: string, opts: ExecOptions): Promise<ExecResult> {
      const s = sandbox(id);
      const started = Date.now();
      return new Promise((resolve, reject) => {
        const child = spawn(opts.argv[0] ?? "", opts.argv.slice(1), { env: { ...s.env, ...opts.env }, cwd: s.root });
        child.stdout.on("data", (c: Buffer) => opts.onStdout?.(c));
        child.stderr.on("data", (c: Buffer) => opts.onStderr?.(c));
        child.once("error", reject);
        child.once("close", (code, signal) => resolve({ exitCode: code ?? 1, signal, timedOut: false, durationMs: Date.now() - started }));
      });
    },
    async stop(id: string): Promise<boolean> {
      const s = sandboxes.get(id);
      if (!s) return false;
      sandboxes.delete(id);
      await rm(s.root, { recursive: true, force: true });
      return true;
    },
    list: async () => [...sandboxes.keys()],
    close: async () => undefined,
    writeFile: nope("write files"), readFile: nope("read files"), listDir: nope("list directories"), killProcesses: nope("kill processes"),
    guardDenials: async () => [], snapshot: nope("snapshot"), removeSnapshot: nope("remove snapshots"), setEnv: nope("set the environment"),
    services: async () => [], waitForServices: async () => [],
  };
  return provider as unknown as Provider & { specs: SandboxSpec[]; sandboxes: Map<string, FakeSandbox> };
}

void describe("remote egress through Sessions with a fake proxy-network provider", () => {
  let client: PaddockClient;
  let server: RunningServer;
  let cleanup: () => Promise<void>;
  let up: Upstreams;
  let dir: { path: string; remove: () => Promise<void> };
  let fake: ReturnType<typeof fakeRemoteProvider>;

  before(async () => {
    up = await startUpstreams();
    dir = await tempDir("paddock-remote-fake-");
    ({ client, server, cleanup } = await testServer({
      gateway: {
        upstream: { extraCaPem: [up.ca.certPem], hosts: { "api.stripe.com": ["127.0.0.1"], "allowed.example": ["127.0.0.1"] }, trustedAddresses: ["127.0.0.1"] },
        remoteProxy: { host: "127.0.0.1", port: 0, publicHost: "localhost" },
      },
    }));
    fake = fakeRemoteProvider(dir.path);
    server.cp.providers.set("remote-fake", fake);
    await client.secrets.set("STRIPE_API_KEY", SECRETS["STRIPE_API_KEY"] ?? "");
    await client.environments.apply("paddock.yml", `name: rf\nproviders: [remote-fake]\nsecrets: [STRIPE_API_KEY]\nguardrails:\n  network:\n    allow: ["api.stripe.com:${up.httpsPort}", "allowed.example:${up.httpsPort}"]\n    deny: ["*"]\n`);
  });
  after(async () => {
    await cleanup?.();
    await up?.close();
    await dir?.remove();
  });

  void it("a session on it gets remoteEgress only; its commands reach upstreams through the TLS proxy; reconcile serves it again; stop revokes", { timeout: 120_000 }, async () => {
    const session = await client.sessions.start("rf");
    assert.equal(session.provider, "remote-fake");
    const spec = fake.specs.at(-1);
    assert.ok(spec?.remoteEgress, "remoteEgress was given");
    assert.equal(spec?.egress, undefined, "the local egress hook was not");
    const env = fake.sandboxes.get(session.id)?.env ?? {};
    assert.match(env["HTTPS_PROXY"] ?? "", /^https:\/\/pdk[0-9a-f]{16}:[^@]+@localhost:\d+$/);
    // curl reads CURL_CA_BUNDLE for sites, but the proxy's CA only from its default path (which the
    // bundle replaces in a real sandbox) or --proxy-cacert; see remote-egress.test.ts.
    const curl = `curl -sS -m 30 --proxy-cacert "$CURL_CA_BUNDLE"`;
    const r = await client.sessions.run(session.id, { argv: ["sh", "-c", `${curl} https://api.stripe.com:${up.httpsPort}/echo-header -D - -H "Authorization: Bearer $STRIPE_API_KEY"`], timeoutMs: 60_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /x-echo-back: paddock-ph-[0-9a-f]{32}/);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`);
    await until(async () => (await server.cp.store.listEgressRecords({ sessionId: session.id })).some((l) => l.host === "api.stripe.com"), 30_000, "the request in the session's egress log");

    // As after a restart: the gateway has forgotten the session; reconciling finds the sandbox
    // running on its provider and serves it again from the sealed registration (credential hash).
    await server.cp.gateway.unregister(session.id);
    const forgotten = await client.sessions.run(session.id, { argv: ["sh", "-c", `${curl} -o /dev/null -w '%{http_connect}' https://allowed.example:${up.httpsPort}/`], timeoutMs: 60_000 });
    assert.equal(forgotten.stdout, "407");
    const { recovered } = await server.cp.sessions.reconcile();
    assert.ok(recovered.includes(session.id));
    const again = await client.sessions.run(session.id, { argv: ["sh", "-c", `${curl} https://api.stripe.com:${up.httpsPort}/ -H "Authorization: Bearer $STRIPE_API_KEY"`], timeoutMs: 60_000 });
    assert.equal(again.exitCode, 0, again.stderr);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`, "same credential and placeholder, served again");
    // Keep the bundle: the stop removes the sandbox, and with it the file.
    await writeFile(join(dir.path, "bundle-after.pem"), await readFile(env["CURL_CA_BUNDLE"] ?? ""));
    await client.sessions.stop(session.id);
    const after = await new Promise<string>((resolve) => {
      const child = spawn("sh", ["-c", `${curl} -o /dev/null -w '%{http_connect}' https://allowed.example:${up.httpsPort}/`], { env: { ...env, CURL_CA_BUNDLE: join(dir.path, "bundle-after.pem") } });
      let out = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.once("close", () => resolve(out));
    });
    assert.equal(after, "407", "the stopped session's credential opens nothing");
  });
});
