// Remote egress end to end (issue 13): the control plane's Egress.forRemoteSession registers a
// session with the real gateway process and hands back what a remote provider gives its sandbox.
// The "remote sandbox" is real clients on this host (curl, python requests, node) run with exactly
// that environment and those files (paths moved under a temp dir) and nothing else. Real store and
// vault; local upstreams on random ports; the control plane is "restarted" by opening the store,
// vault and gateway process again on the same data.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { RemoteEgressAttachment, Store } from "../../src/core/index.ts";
import { parseEnvironment, type EnvironmentSpec } from "../../src/config/index.ts";
import { Egress, loadGatewayCa } from "../../src/control/egress.ts";
import { startGatewayProcess, type EgressRecord, type GatewayProcess } from "../../src/gateway/index.ts";
import { openVault, type Vault } from "../../src/gateway/vault.ts";
import { openStore } from "../../src/store/index.ts";
import { SECRETS, startUpstreams, type Upstreams } from "../gateway/helpers.ts";
import { tempDir } from "../helpers/tmp.ts";

const ENV = "remote-env";
const NAMES = ["api.stripe.com", "allowed.example", "github.com"];
const GUARD = { timeout: 90_000 };

interface Plane {
  store: Store;
  vault: Vault;
  gateway: GatewayProcess;
  egress: Egress;
  records: EgressRecord[];
  close(): Promise<void>;
}

/** What a remote provider would do with the attachment: write its files, set its env (paths moved under `root`). */
async function sandboxOf(root: string, att: RemoteEgressAttachment): Promise<Record<string, string>> {
  for (const f of att.files) {
    await mkdir(dirname(join(root, f.path)), { recursive: true });
    await writeFile(join(root, f.path), f.content);
  }
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: root };
  for (const [k, v] of Object.entries(att.env)) env[k] = v.startsWith("/etc/") ? join(root, v) : v;
  return env;
}

/**
 * curl 7.88 reads CURL_CA_BUNDLE for the sites but not for an HTTPS proxy: that one it verifies
 * against its built-in default, /etc/ssl/certs/ca-certificates.crt, which in a remote sandbox IS
 * the bundle the attachment writes. This host's own file cannot be replaced, so the test names it.
 */
function run(argv: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  if (argv[0] === "curl") argv = ["curl", "--proxy-cacert", env["CURL_CA_BUNDLE"] ?? "", ...argv.slice(1)];
  return new Promise((resolve) => {
    execFile(argv[0] ?? "", argv.slice(1), { env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

void describe("remote egress: a remote sandbox reaches the gateway as an HTTPS proxy with its session's credential", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let up: Upstreams;
  let plane: Plane;
  let spec: EnvironmentSpec;
  let remotePort = 0;
  let att: RemoteEgressAttachment;
  let env: Record<string, string>;

  const open = async (): Promise<Plane> => {
    const store = await openStore(join(dir.path, "paddock.db"));
    const vault = await openVault({ home: dir.path, store, env: {}, log: () => undefined });
    const ca = await loadGatewayCa(vault, "localhost");
    const records: EgressRecord[] = [];
    const gateway = await startGatewayProcess({
      init: {
        address: "127.0.0.1",
        ports: { proxyPort: 0, httpPort: 0, httpsPort: 0, dnsPort: 0, postgresPort: 0 },
        upstream: { extraCaPem: [up.ca.certPem], hosts: Object.fromEntries(NAMES.map((n) => [n, ["127.0.0.1"]])), trustedAddresses: ["127.0.0.1"] },
        remoteProxy: { host: "127.0.0.1", port: remotePort, publicHost: "localhost", ca },
      },
      secrets: vault,
      onRecord: (r) => void records.push(r),
    });
    remotePort = gateway.remoteProxy?.port ?? 0;
    const egress = new Egress({ gateway, vault, store, gatewayCaPem: ca.certPem });
    return { store, vault, gateway, egress, records, close: async () => void (await gateway.close(), await vault.idle(), await store.close()) };
  };

  before(async () => {
    dir = await tempDir("paddock-remote-egress-");
    up = await startUpstreams();
    const file = `name: ${ENV}\nsecrets: [STRIPE_API_KEY]\nguardrails:\n  network:\n    allow: ["api.stripe.com:${up.httpsPort}", "allowed.example:${up.httpsPort}"]\n    deny: ["*"]\n`;
    const parsed = parseEnvironment(file, "paddock.yml");
    assert.deepEqual(parsed.issues, []);
    spec = parsed.spec as EnvironmentSpec;
    plane = await open();
    await plane.vault.set("STRIPE_API_KEY", SECRETS["STRIPE_API_KEY"] ?? "", { environment: ENV });
    att = await plane.egress.forRemoteSession("s-remote1", ENV, 1, spec, "paddock.yml")();
    env = await sandboxOf(join(dir.path, "sandbox1"), att);
  });
  after(async () => {
    await plane?.close();
    await up?.close();
    await dir?.remove();
  });

  void it("hands the sandbox proxy variables, both CAs and one allowed destination; never a secret or a key", GUARD, async () => {
    assert.match(att.proxyUrl, new RegExp(`^https://pdk[0-9a-f]{16}:[A-Za-z0-9_-]{43}@localhost:${remotePort}$`));
    for (const k of ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"]) assert.equal(att.env[k], att.proxyUrl, k);
    assert.match(att.env["NO_PROXY"] ?? "", /^localhost,127\.0\.0\.1/);
    for (const k of ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "GIT_PROXY_SSL_CAINFO", "CURL_CA_BUNDLE"]) assert.ok(att.files.some((f) => f.path === att.env[k]), `${k} names a file the sandbox gets`);
    assert.deepEqual(att.allow, [{ host: "localhost", port: remotePort }]);
    assert.match(att.env["STRIPE_API_KEY"] ?? "", /^paddock-ph-[0-9a-f]{32}$/);
    const everything = JSON.stringify(att);
    assert.ok(!everything.includes(SECRETS["STRIPE_API_KEY"] ?? "?"), "no secret value");
    assert.ok(!everything.includes("PRIVATE KEY"), "no key: the gateway CA's and the session CA's stay on the host");
    const bundle = att.files[0]?.content ?? "";
    assert.equal(bundle.match(/BEGIN CERTIFICATE/g)?.length, 2, "the gateway CA and the session CA");
    // Persisted: the credential's hash only.
    const password = new URL(att.proxyUrl).password;
    const sealed = (await plane.vault.unseal("gateway-registration:s-remote1")) ?? "";
    assert.match(sealed, /"passwordSha256":"[0-9a-f]{64}"/);
    assert.ok(!sealed.includes(password), "the password is not kept");
    const row = await plane.store.getSealed("gateway-registration:s-remote1");
    assert.ok(row && !JSON.stringify(row).includes("PRIVATE KEY"), "sealed at rest");
  });

  void it("curl with the sandbox's environment (and its bundle for the proxy): the secret is swapped only towards its bound host", GUARD, async () => {
    const ok = await run(["curl", "-sS", "-m", "30", `https://api.stripe.com:${up.httpsPort}/echo-header`, "-D", "-", "-H", `Authorization: Bearer ${env["STRIPE_API_KEY"]}`], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /HTTP\/1\.1 200/);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`);
    assert.ok(!ok.stdout.includes(SECRETS["STRIPE_API_KEY"] ?? "?"), "redacted on the way back");
    const other = await run(["curl", "-sS", "-m", "30", `https://allowed.example:${up.httpsPort}/`, "-H", `Authorization: Bearer ${env["STRIPE_API_KEY"]}`], env);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${env["STRIPE_API_KEY"]}`, "placeholder unchanged towards a host it is not bound to");
    const denied = await run(["curl", "-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_connect}", `https://github.com:${up.httpsPort}/`], env);
    assert.equal(denied.stdout, "403", "the environment's policy applies");
  });

  void it("python requests and node, with nothing but the sandbox's environment", GUARD, async () => {
    const py = await run(["python3", "-c", `import os, requests\nr = requests.get("https://api.stripe.com:${up.httpsPort}/echo-header", headers={"Authorization": "Bearer " + os.environ["STRIPE_API_KEY"]}, timeout=30)\nprint(r.status_code, r.headers.get("x-echo-back"))`], env);
    assert.equal(py.code, 0, py.stderr);
    assert.equal(py.stdout.trim(), `200 ${env["STRIPE_API_KEY"]}`);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`);
    // Node has no proxy support of its own: the script does what a proxy agent does, trusting only NODE_EXTRA_CA_CERTS.
    const script = `
      const tls = require("node:tls"), http = require("node:http");
      const p = new URL(process.env.HTTPS_PROXY);
      const target = "api.stripe.com:${up.httpsPort}";
      const t = tls.connect({ host: p.hostname, port: Number(p.port), servername: p.hostname }, () => {
        const auth = Buffer.from(decodeURIComponent(p.username) + ":" + decodeURIComponent(p.password)).toString("base64");
        t.write("CONNECT " + target + " HTTP/1.1\\r\\nHost: " + target + "\\r\\nProxy-Authorization: Basic " + auth + "\\r\\n\\r\\n");
        t.once("data", (d) => {
          if (!/^HTTP\\/1\\.1 200/.test(d.toString())) { console.log("proxy said " + d.toString().split("\\r\\n")[0]); process.exit(3); }
          const inner = tls.connect({ socket: t, servername: "api.stripe.com" });
          http.get({ createConnection: () => inner, path: "/echo-header", headers: { host: target, authorization: "Bearer " + process.env.STRIPE_API_KEY } }, (res) => {
            console.log(res.statusCode, res.headers["x-echo-back"]); process.exit(0);
          }).on("error", (e) => { console.log(String(e)); process.exit(4); });
        });
      });
      t.on("error", (e) => { console.log(String(e)); process.exit(2); });`;
    const node = await run([process.execPath, "-e", script], env);
    assert.equal(node.code, 0, node.stdout + node.stderr);
    assert.equal(node.stdout.trim(), `200 ${env["STRIPE_API_KEY"]}`);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`);
    assert.ok(up.seen.every((s) => s.headers["proxy-authorization"] === undefined), "the proxy credential never reaches an upstream");
  });

  void it("another session's credential acts as that session only", GUARD, async () => {
    const other = await plane.egress.forRemoteSession("s-remote-other", ENV, 1, spec, "paddock.yml")();
    assert.notEqual(other.proxyUrl, att.proxyUrl);
    assert.notEqual(other.env["STRIPE_API_KEY"], att.env["STRIPE_API_KEY"]);
    // The other session's placeholder through this session's proxy credential: not swapped.
    const cross = await run(["curl", "-sS", "-m", "30", `https://api.stripe.com:${up.httpsPort}/`, "-H", `Authorization: Bearer ${other.env["STRIPE_API_KEY"]}`], env);
    assert.equal(cross.code, 0, cross.stderr);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${other.env["STRIPE_API_KEY"]}`);
    await plane.egress.detach("s-remote-other");
  });

  void it("a control-plane restart serves the remote registration again: same credential, placeholders and CAs", GUARD, async () => {
    const att2 = await plane.egress.forRemoteSession("s-remote2", ENV, 1, spec, "paddock.yml")();
    const env2 = await sandboxOf(join(dir.path, "sandbox2"), att2);
    await plane.close();
    plane = await open();
    const down = await run(["curl", "-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_connect}", `https://api.stripe.com:${up.httpsPort}/`], env2);
    assert.equal(down.stdout, "407", "a new gateway knows nobody until the control plane restores them");
    assert.equal(await plane.egress.restoreRemote("s-remote2", ENV, spec, "paddock.yml"), true);
    assert.equal(await plane.egress.restoreRemote("s-never-started", ENV, spec, "paddock.yml"), false, "nothing stored: nothing served");
    const again = await run(["curl", "-sS", "-m", "30", `https://api.stripe.com:${up.httpsPort}/echo-header`, "-H", `Authorization: Bearer ${env2["STRIPE_API_KEY"]}`], env2);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(up.seen.at(-1)?.headers.authorization, `Bearer ${SECRETS["STRIPE_API_KEY"]}`, "same placeholder, swapped again");
    // s-remote1 was not restored: its credential opens nothing.
    const stale = await run(["curl", "-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_connect}", `https://allowed.example:${up.httpsPort}/`], env);
    assert.equal(stale.stdout, "407");
  });

  void it("detach revokes the credential", GUARD, async () => {
    await plane.egress.restoreRemote("s-remote1", ENV, spec, "paddock.yml");
    const ok = await run(["curl", "-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_code}", `https://allowed.example:${up.httpsPort}/`], env);
    assert.equal(ok.stdout, "200", ok.stderr);
    await plane.egress.detach("s-remote1");
    const gone = await run(["curl", "-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_connect}", `https://allowed.example:${up.httpsPort}/`], env);
    assert.equal(gone.stdout, "407");
    assert.equal(await plane.vault.unseal("gateway-registration:s-remote1"), null, "nothing kept after detach");
  });
});
