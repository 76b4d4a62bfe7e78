/**
 * The e2b provider (src/providers/e2b) driven by the real e2b SDK 2.51 against Paddock's own
 * E2B-compatible front end (src/server/e2b, docs/e2b.md): a stand-in for E2B's cloud, which this
 * machine cannot reach. It implements E2B's control API (https://e2b.dev/docs/api-reference,
 * spec/openapi.yml in e2b-dev/E2B) and envd's process and filesystem services as the SDK calls
 * them, and rejects what it cannot honour. In one test server, environment "inner" runs on the
 * local provider; the provider instance points at the same server's E2B port with a Paddock token
 * as its API key and maps templates to "inner".
 *
 * What the stand-in cannot show: memory kept across pause (Paddock keeps files only), root inside
 * the sandbox (Paddock has none, so recipe steps without a prebuilt template are refused there),
 * and E2B's own enforcement of allowOut/denyOut (Paddock's gateway holds egress; the front end
 * records what was asked and refuses what it could not honour, which is what is asserted).
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RemoteEgressAttachment, SandboxSpec } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { e2bDriver, type E2bProvider } from "../../src/providers/e2b/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";
import { providerConformance } from "./conformance.ts";

const DOMAIN = "e2b.paddock.test";
const COMPUTE = { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 };
const CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake-gateway-ca\n-----END CERTIFICATE-----\n";

let n = 0;
const spec = (overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id: `e2bp-${process.pid}-${n++}`, mode: "session", base: "host", layers: [], compute: COMPUTE, hostname: "e2b", env: {},
  recipe: { templateId: "tpl-plain", base: "host", steps: [] }, ...overrides,
});

const isCode = (code: string, also?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof PaddockError, `expected a PaddockError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (also) assert.match(e.message, also);
  return true;
};

void describe("e2b provider against Paddock's E2B front end (stand-in for E2B's cloud)", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let home: string;
  let token: string;
  let cleanup: () => Promise<void>;
  let provider: E2bProvider;
  const extra: E2bProvider[] = [];

  /** A provider instance on the test server's E2B port (settings merged over the defaults here). */
  const instance = async (name: string, settings: Record<string, unknown> = {}, apiKey = token) => {
    const p = (await e2bDriver.create(
      { name, settings: e2bDriver.parseSettings({ apiUrl: server.e2bUrl, sandboxUrl: server.e2bUrl, domain: DOMAIN, defaultTemplate: "inner", ...settings }), credentials: { apiKey } },
      { home, log: () => undefined },
    )) as E2bProvider;
    if (p !== provider) extra.push(p);
    return p;
  };
  const out = async (p: E2bProvider, id: string, script: string) => {
    let s = "";
    const r = await p.exec(id, { argv: ["sh", "-c", script], onStdout: (b) => (s += b.toString()) });
    return { ...r, stdout: s };
  };
  const createAudit = async (sandboxId: string) => {
    const records = await client.audit.list({ limit: 1000 });
    return records.find((r) => r.action === "api.e2b.createSandbox" && r.target === sandboxId && r.decision === "allowed");
  };

  before(async () => {
    const t = await testServer({ e2bPort: 0 });
    ({ server, client, home, token, cleanup } = t);
    await client.environments.apply("runtime.yml", "name: inner\n");
    await client.environments.apply("runtime.yml", "name: wide\nguardrails:\n  network:\n    allow: [api.stripe.com]\n");
    provider = await instance("e2b-test");
  });
  after(async () => {
    for (const p of [provider, ...extra]) {
      for (const id of await p.list().catch((): string[] => [])) await p.stop(id).catch(() => false);
      await p.close();
    }
    await cleanup();
  });

  providerConformance("e2b on Paddock's E2B front end (fake E2B)", async () => ({
    provider,
    spec,
    cleanup: async () => {
      for (const id of await provider.list()) await provider.stop(id).catch(() => false);
    },
  }));

  void describe("e2b specifics", () => {
    void it("E2B's network controls: only the gateway's hosts allowed and all other traffic denied (as the front end received them); the attachment's env and files are in place before any command", async () => {
      const attachment: RemoteEgressAttachment = {
        proxyUrl: "https://s1:pw@203.0.113.10:8443",
        allow: [{ host: "203.0.113.10", port: 8443 }, { host: "203.0.113.10", port: 8444 }, { host: "GW.paddock.test", port: 443 }],
        env: { HTTPS_PROXY: "https://s1:pw@203.0.113.10:8443", SSL_CERT_FILE: "/home/user/.paddock/ca.pem", GATEWAY_MARK: "g1" },
        files: [{ path: "/home/user/.paddock/ca.pem", content: CA_PEM }],
      };
      const s = spec({ env: { FROM_SPEC: "1" }, remoteEgress: () => Promise.resolve(attachment) });
      const h = await provider.create(s);
      const sandboxId = String(h.providerState.sandboxId);
      assert.deepEqual((await createAudit(sandboxId))?.detail?.egress, { allowInternetAccess: null, allowOut: ["203.0.113.10", "gw.paddock.test"], denyOut: ["0.0.0.0/0"], restricted: true });
      // The sandbox's variables as the front end received them (E2B's envVars)...
      assert.deepEqual((await server.cp.store.getE2bSandbox(sandboxId))?.envVars, { FROM_SPEC: "1", ...attachment.env });
      // ...and inside. The stand-in's own session keeps its gateway's proxy and CA variables over
      // these (a nested sandbox still leaves through Paddock's gateway), so the proxy variables
      // themselves are checked above, not here.
      const r = await out(provider, s.id, 'cat /home/user/.paddock/ca.pem; echo "$GATEWAY_MARK $FROM_SPEC"');
      assert.equal(r.stdout, `${CA_PEM}g1 1\n`);
      assert.equal(await provider.stop(s.id), true);

      // No remoteEgress: no way out at all.
      const closed = spec();
      const h2 = await provider.create(closed);
      assert.deepEqual((await createAudit(String(h2.providerState.sandboxId)))?.detail?.egress, { allowInternetAccess: false, allowOut: [], denyOut: [], restricted: true });
      await provider.stop(closed.id);

      // E2B matches names only on ports 443 and 80, and has no IPv6 rules: such a gateway could never be reached.
      for (const host of ["gw.paddock.test", "2001:db8::1"]) {
        const s3 = spec({ remoteEgress: () => Promise.resolve({ ...attachment, allow: [{ host, port: 8443 }] }) });
        await assert.rejects(provider.create(s3), isCode("invalid_argument", /provider "e2b-test" \(e2b\): the gateway/));
        assert.ok(!(await provider.list()).includes(s3.id));
      }
    });

    void it("an attachment file outside the user's home (the CA bundle) is written as root, which Paddock's front end refuses: create fails naming the provider and the file, nothing is left running", async () => {
      const attachment: RemoteEgressAttachment = { proxyUrl: "https://a:b@203.0.113.10:1", allow: [{ host: "203.0.113.10", port: 1 }], env: {}, files: [{ path: "/etc/ssl/certs/paddock-e2b-test.pem", content: CA_PEM }] };
      const s = spec({ remoteEgress: () => Promise.resolve(attachment) });
      await assert.rejects(provider.create(s), isCode("forbidden", /provider "e2b-test" \(e2b\): write \/etc\/ssl\/certs\/paddock-e2b-test\.pem \(egress attachment\) as root/));
      assert.ok(!(await provider.list()).includes(s.id));
      assert.ok(!(await server.cp.sessions.list()).some((x) => x.state === "running" && x.environment === "inner" && x.id === s.id));
    });

    void it("Paddock as E2B refuses a deny-all create when the environment allows more than allowOut (it cannot narrow egress), and accepts it once allowOut covers the policy", async () => {
      const wide = await instance("e2b-wide", { defaultTemplate: "wide" });
      const gatewayOnly = spec({ remoteEgress: () => Promise.resolve({ proxyUrl: "https://a:b@gw:1", allow: [{ host: "gw.paddock.test", port: 443 }], env: {}, files: [] }) });
      await assert.rejects(wide.create(gatewayOnly), isCode("invalid_argument", /provider "e2b-wide" \(e2b\).*allows api\.stripe\.com/));
      assert.deepEqual(await wide.list(), []);
      const covered = spec({ remoteEgress: () => Promise.resolve({ proxyUrl: "https://a:b@gw:1", allow: [{ host: "gw.paddock.test", port: 443 }, { host: "api.stripe.com", port: 443 }], env: {}, files: [] }) });
      await wide.create(covered);
      assert.equal((await out(wide, covered.id, "echo up")).stdout, "up\n");
      assert.equal(await wide.stop(covered.id), true);
      // What the front end still refuses (400, nothing started): E2B settings it could not honour.
      for (const network of [{ denyOut: ["1.1.1.1"] }, { egressProxy: { address: "p.example:1080" } }, { rules: { "api.stripe.com": [] } }, { allowOut: "gw" }, { allowOut: ["x\u0000"] }]) {
        const res = await fetch(`${server.e2bUrl}/v2/sandboxes`, { method: "POST", headers: { "x-api-key": token, "content-type": "application/json" }, body: JSON.stringify({ templateID: "inner", network }) });
        assert.equal(res.status, 400, JSON.stringify(network));
      }
    });

    void it("pause and resume (E2B's pause, files kept); calls on a paused sandbox conflict", async () => {
      const s = spec();
      await provider.create(s);
      await provider.writeFile(s.id, "/workspace/keep.txt", Buffer.from("kept across pause"));
      assert.equal(await provider.pause(s.id), true);
      await assert.rejects(provider.exec(s.id, { argv: ["true"] }), isCode("conflict", /paused/));
      assert.ok(!(await provider.list()).includes(s.id), "a paused sandbox is not running");
      await provider.resume(s.id);
      assert.equal((await provider.readFile(s.id, "/workspace/keep.txt")).toString(), "kept across pause");
      assert.equal((await out(provider, s.id, "cat /workspace/keep.txt")).stdout, "kept across pause");
      assert.equal(await provider.stop(s.id), true);
    });

    void it("snapshots are E2B's createSnapshot/deleteSnapshot (Paddock snapshots behind the front end): a taken name conflicts, an unknown one is not_found, a copy keeps its files after the source is gone", async () => {
      const src = spec();
      await provider.create(src);
      await provider.writeFile(src.id, "/workspace/snap.txt", Buffer.from("v1"));
      const layerId = `e2bp-snap-${process.pid}`;
      const { frozenMs } = await provider.snapshot(src.id, layerId);
      assert.ok(frozenMs >= 0);
      await assert.rejects(provider.snapshot(src.id, layerId), isCode("conflict", /provider "e2b-test" \(e2b\)/));
      await assert.rejects(provider.snapshot(src.id, "Bad Id"), isCode("invalid_argument"));
      await provider.writeFile(src.id, "/workspace/snap.txt", Buffer.from("v2"));
      assert.equal(await provider.stop(src.id), true);
      const copy = spec({ from: layerId });
      await provider.create(copy);
      assert.equal((await provider.readFile(copy.id, "/workspace/snap.txt")).toString(), "v1");
      assert.equal(await provider.stop(copy.id), true);
      await assert.rejects(provider.create(spec({ from: "never-taken" })), isCode("not_found"));
      assert.equal(await provider.removeSnapshot(layerId), true);
      assert.equal(await provider.removeSnapshot(layerId), false);
      assert.equal((await fetch(`${server.e2bUrl}/templates/inner`, { method: "DELETE", headers: { "x-api-key": token } })).status, 400, "environments are not deleted through E2B's API");
    });

    void it("file operations beyond the conformance suite: listTree parents first and by name, symlinks described not followed, watchDir events", async () => {
      const s = spec();
      await provider.create(s);
      await out(provider, s.id, "mkdir -p /workspace/t/b /workspace/t/a && echo x > /workspace/t/b/f && ln -s /etc /workspace/t/link");
      const tree = await provider.listTree!(s.id, "/workspace/t", 2);
      assert.deepEqual(tree.map((e) => [e.path, e.type]), [
        ["/workspace/t/a", "dir"], ["/workspace/t/b", "dir"], ["/workspace/t/b/f", "file"], ["/workspace/t/link", "symlink"],
      ]);
      const link = await provider.statFile!(s.id, "/workspace/t/link");
      assert.deepEqual([link.type, link.mode, link.symlink?.target, link.symlink?.type], ["symlink", 0o777, "/etc", "dir"]);
      const events: string[] = [];
      const watch = await provider.watchDir!(s.id, "/workspace/t", { recursive: true, onEvent: (e) => events.push(`${e.type} ${e.name}`) });
      await provider.writeFile(s.id, "/workspace/t/a/new.txt", Buffer.from("n"));
      await until(async () => events.some((e) => e.endsWith("a/new.txt")), 30_000, `a watch event for a/new.txt (got ${events.join(", ")})`);
      watch.close();
      await watch.done;
      await provider.stop(s.id);
    });

    void it("portUrl is https://PORT-ID.DOMAIN, E2B's getHost; a bad port is refused", async () => {
      const s = spec();
      const h = await provider.create(s);
      assert.equal(await provider.portUrl(s.id, 3000), `https://3000-${String(h.providerState.sandboxId)}.${DOMAIN}`);
      await assert.rejects(provider.portUrl(s.id, 0), isCode("invalid_argument"));
      await provider.stop(s.id);
    });

    void it("a bad API key: health says so, create is unavailable naming the provider and the vault secret; an empty key is refused at configuration", async () => {
      const bad = await instance("e2b-badkey", {}, "not-a-paddock-token");
      const health = await bad.health();
      assert.equal(health.ok, false);
      assert.match(health.detail, /provider "e2b-badkey" \(e2b\).*API key.*provider\/e2b-badkey\/apiKey/);
      await assert.rejects(bad.create(spec()), (e: unknown) => isCode("unavailable", /provider "e2b-badkey"/)(e) && (e as PaddockError).details?.status === 401);
      await assert.rejects(e2bDriver.create({ name: "nokey", settings: e2bDriver.parseSettings({}), credentials: {} }, { home, log: () => undefined }), isCode("invalid_argument", /provider\/nokey\/apiKey/));
      assert.throws(() => e2bDriver.parseSettings({ domain: "not a domain", timeoutMs: 5 }), isCode("invalid_argument", /settings\.domain: .*settings\.timeoutMs/));
      assert.throws(() => e2bDriver.parseSettings({ templats: {} }), isCode("invalid_argument", /templats/));
    });

    void it("E2B's 4xx and 5xx become PaddockErrors naming the provider: unknown template 404 → not_found; 400 → invalid_argument; 403, 500, 503 → unavailable", async () => {
      const unknown = await instance("e2b-notemplate", { defaultTemplate: "no-such-env" });
      await assert.rejects(unknown.create(spec()), (e: unknown) => isCode("not_found", /provider "e2b-notemplate" \(e2b\): create a sandbox from template "no-such-env"/)(e) && (e as PaddockError).details?.status === 404);
      // A server that answers every request with one status, in E2B's error shape.
      let status = 500;
      const failing: Server = createServer((_req, res) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ code: status, message: `failing with ${status}` })));
      await new Promise<void>((r) => failing.listen(0, "127.0.0.1", r));
      try {
        const url = `http://127.0.0.1:${(failing.address() as AddressInfo).port}`;
        const p = await instance("e2b-failing", { apiUrl: url, sandboxUrl: url });
        for (const [s, code] of [[400, "invalid_argument"], [403, "unavailable"], [409, "conflict"], [500, "unavailable"], [503, "unavailable"]] as const) {
          status = s;
          await assert.rejects(p.create(spec()), (e: unknown) => isCode(code, new RegExp(`provider "e2b-failing" \\(e2b\\).*failing with ${s}`))(e) && (e as PaddockError).details?.provider === "e2b-failing", String(s));
          assert.equal((await p.health()).ok, false);
        }
      } finally {
        failing.closeAllConnections();
        await new Promise((r) => failing.close(r));
      }
    });

    void it("recover after a restart: a second instance finds the running sandbox (with setEnv's variables), a killed one is gone, another instance's sandbox is left alone", async () => {
      const s = spec();
      await provider.create(s);
      const state = await provider.setEnv(s.id, { PLACEHOLDER: "paddock-ph-1" });
      const restarted = await instance("e2b-test");
      assert.equal(await restarted.recover(s.id, state), "running");
      assert.equal((await out(restarted, s.id, "echo $PLACEHOLDER")).stdout, "paddock-ph-1\n");
      const other = await instance("e2b-other");
      assert.equal(await other.recover(s.id, state), "gone", "not its sandbox");
      assert.equal((await out(provider, s.id, "echo alive")).stdout, "alive\n", "and it was not touched");
      assert.equal(await restarted.stop(s.id), true);
      assert.equal(await provider.recover(s.id, state), "gone");
      assert.equal(await provider.recover(s.id, {}), "gone");
    });

    void it("templates: a recipe mapped to a prebuilt template runs no steps; an unmapped one runs them as root at create, which Paddock's front end refuses (no root), leaving nothing", async () => {
      const mapped = await instance("e2b-mapped", { defaultTemplate: "no-such-env", templates: { "tpl-built": "inner" } });
      const ok = spec({ recipe: { templateId: "tpl-built", base: "host", steps: ["exit 1"] } });
      await mapped.create(ok);
      assert.equal((await out(mapped, ok.id, "whoami")).stdout, "user\n");
      await mapped.stop(ok.id);
      const steps = spec({ recipe: { templateId: "tpl-steps", base: "host", steps: ["touch /installed"] } });
      await assert.rejects(provider.create(steps), isCode("forbidden", /provider "e2b-test" \(e2b\): install step 1 of 1 \(template inner\)/));
      assert.ok(!(await provider.list()).includes(steps.id));
    });

    void it("what E2B cannot do is refused with unsupported before anything is created", async () => {
      const cases: Partial<SandboxSpec>[] = [
        { mode: "build" }, { recipe: undefined, layers: ["l1"] }, { mounts: [{ source: "/tmp", target: "/run/x" }] },
        { egress: () => Promise.resolve({ env: {}, files: [] }) }, { sessionUser: { name: "paddock", home: "/home/paddock" } },
      ];
      for (const c of cases) {
        const s = spec(c);
        await assert.rejects(provider.create(s), (e: unknown) => isCode("unavailable")(e) && typeof (e as PaddockError).details?.capability === "string", JSON.stringify(Object.keys(c)));
        assert.ok(!(await provider.list()).includes(s.id));
      }
      const s = spec();
      await provider.create(s);
      await assert.rejects(provider.killProcesses(s.id, "SIGTERM"), isCode("unavailable", /SIGKILL only/));
      await assert.rejects(provider.stop(s.id, { commitAs: "layer-x" }), isCode("unavailable"));
      assert.equal(await provider.stop(s.id), true);
    });
  });
});
