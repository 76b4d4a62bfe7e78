import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { PaddockClient } from "../../src/client/index.ts";
import { testServer } from "../helpers/server.ts";
import { runCommand } from "../../src/core/index.ts";
import { installationScope } from "../../src/providers/local/index.ts";
import { startUpstream, UPSTREAM_NAMES, type Upstream } from "../helpers/upstream.ts";

/**
 * The egress gateway end to end: real sandboxes, real clients (curl, git, Node fetch, python3
 * urllib) and local stand-ins for Stripe, GitHub and Sentry that record what they receive. The
 * upstreams are HTTPS servers on a loopback address of this machine with their own CA ("fake"
 * services in the sense of DESIGN.md: the real ones are unreachable from here).
 */
const UPSTREAM_IP = "127.0.55.1";
const STRIPE = "sk_live_51RealStripeSecretValue0123456789";
const GITHUB = "ghp_RealGithubTokenValue0123456789abcdef";
const SENTRY_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const SENTRY_DSN = `https://${SENTRY_KEY}@o1.ingest.sentry.io/42`;
const QUERY_SECRET = "qk_RealQueryKeyValue99887766";
const VALUES = [STRIPE, GITHUB, SENTRY_KEY, QUERY_SECRET];

const ENV = `name: egress
secrets:
  - STRIPE_API_KEY
  - DATABASE_URL
  - SENTRY_DSN
  - GITHUB_TOKEN
  - name: QUERY_KEY
    hosts: [api.stripe.com]
    in: [header, query]
guardrails:
  network:
    allow: [api.stripe.com, github.com, "*.ingest.sentry.io", registry.example]
    deny: ["*"]
build:
  network:
    allow: [registry.example]
    deny: ["*"]
install:
  - curl -sS https://registry.example/build-fetch > /workspace/fetched.json
rbac:
  agent: [read, write, deploy]
`;

void describe("egress gateway with real clients in real sandboxes, against local fake Stripe, GitHub and Sentry upstreams", () => {
  let client: PaddockClient;
  let home: string;
  let cleanup: () => Promise<void>;
  let up: Upstream;
  let a: string;
  let b: string;
  const serverLog: string[] = [];
  const sh = async (id: string, script: string) => client.sessions.run(id, { argv: ["sh", "-c", script], timeoutMs: 30_000 });
  const lastTo = (host: string) => [...up.received].reverse().find((r) => r.host.split(":")[0] === host);

  before(async () => {
    up = await startUpstream(UPSTREAM_IP, { gitToken: GITHUB });
    const t = await testServer({
      log: (line) => serverLog.push(line),
      gateway: {
        upstream: {
          extraCaPem: [up.caPem],
          hosts: Object.fromEntries(UPSTREAM_NAMES.map((n) => [n, [UPSTREAM_IP]])),
          trustedAddresses: [UPSTREAM_IP],
        },
      },
    });
    ({ client, home, cleanup } = t);
    await client.secrets.set("STRIPE_API_KEY", STRIPE);
    await client.secrets.set("GITHUB_TOKEN", GITHUB);
    await client.secrets.set("SENTRY_DSN", SENTRY_DSN);
    await client.secrets.set("QUERY_KEY", QUERY_SECRET);
    await client.secrets.set("DATABASE_URL", "postgres://app:RealDbPassword77@db.internal:5432/app");
    await client.environments.apply("runtime.yml", ENV);
    a = (await client.sessions.start("egress")).id;
    b = (await client.sessions.start("egress")).id;
  });
  after(async () => {
    await cleanup?.();
    await up?.close();
  });

  void it("builds get egress through the gateway (build.network), without secrets", async () => {
    const fetched = await client.files.read(a, "/workspace/fetched.json");
    assert.match(fetched.toString(), /"url":"\/build-fetch"/);
    assert.equal(lastTo("registry.example")?.headers.authorization, undefined);
  });

  void it("the sandbox sees placeholders, never values: environment, files, processes", async () => {
    const r = await sh(a, "env; cat /proc/self/environ | tr '\\0' '\\n'; cat /etc/resolv.conf /etc/paddock/ca.pem; ls /run /tmp /workspace");
    for (const v of VALUES) assert.ok(!r.stdout.includes(v), "a secret value is visible in the sandbox");
    assert.match(r.stdout, /^STRIPE_API_KEY=paddock-ph-[0-9a-f]{32}$/m);
    assert.match(r.stdout, /^SENTRY_DSN=https:\/\/paddock-ph-[0-9a-f]{32}@o1\.ingest\.sentry\.io\/42$/m);
    // The database URL names the gateway's address (docs/database.md), never the real host.
    assert.match(r.stdout, /^DATABASE_URL=postgres:\/\/paddock-ph-[0-9a-f]+:paddock-ph-[0-9a-f]+@10\.\d+\.0\.1:5432\/app$/m);
    // Everywhere the sandbox can write or Paddock puts files. Inside: the files Paddock mounts and
    // the writable places, tmpfs ones included (the rest is the read-only host OS, whose size is
    // the host's business: grepping a host's /opt can take minutes).
    const grep = await sh(a, `grep -rl -e '${STRIPE}' -e '${GITHUB}' -e '${SENTRY_KEY}' /etc/resolv.conf /etc/hosts /etc/paddock /workspace /home /tmp /run /var/tmp; echo "done $?"`);
    assert.equal(grep.stdout, "done 1\n", `grep found a secret value or failed (2): ${grep.stderr}`);
    // From the host: every layer of this installation (template layers, the sessions' writable
    // layers) and every file Paddock wrote for its sandboxes.
    const scope = installationScope(home);
    const hostGrep = await runCommand(["grep", "-rl", "-e", STRIPE, "-e", GITHUB, "-e", SENTRY_KEY, join(home, "layers"), join("/run/paddock", scope)], { allowFailure: true });
    assert.equal(hostGrep.code, 1, `found in: ${hostGrep.stdout}${hostGrep.stderr}`);
  });

  void it("curl through the explicit proxy: the upstream gets the real key, the sandbox gets the placeholder back", async () => {
    const r = await sh(a, 'curl -sS -D - https://api.stripe.com/v1/charges -H "Authorization: Bearer $STRIPE_API_KEY"');
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${STRIPE}`);
    assert.ok(!r.stdout.includes(STRIPE), "the echoed secret reached the sandbox");
    assert.match(r.stdout, /"authorization":"Bearer paddock-ph-[0-9a-f]{32}"/);
    assert.match(r.stdout, /x-echo-base64: /i);
    assert.ok(!r.stdout.includes(Buffer.from(`Bearer ${STRIPE}`).toString("base64")));
  });

  void it("transparent interception: curl without proxy variables, Node fetch and python urllib", async () => {
    const curl = await sh(a, 'env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy curl -sS https://api.stripe.com/t1 -H "Authorization: Bearer $STRIPE_API_KEY"');
    assert.match(curl.stdout, /"url":"\/t1"/);
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${STRIPE}`);
    const node = await sh(a, `node -e 'fetch("https://api.stripe.com/t2",{headers:{authorization:"Bearer "+process.env.STRIPE_API_KEY}}).then(r=>r.text()).then(t=>console.log(t))'`);
    assert.match(node.stdout, /"url":"\/t2"/, node.stderr);
    assert.equal(lastTo("api.stripe.com")?.url, "/t2");
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${STRIPE}`);
    const py = await sh(
      a,
      `python3 -c 'import os,urllib.request as u; q=u.Request("https://api.stripe.com/t3", headers={"Authorization":"Bearer "+os.environ["STRIPE_API_KEY"]}); print(u.urlopen(q).read().decode())'`,
    );
    assert.match(py.stdout, /"url":"\/t3"/, py.stderr);
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${STRIPE}`);
  });

  void it("git clone and push over HTTPS with a token the sandbox never sees", async () => {
    const r = await sh(
      a,
      'cd /workspace && git clone -q "https://x-access-token:$GITHUB_TOKEN@github.com/org/repo.git" repo && cd repo && cat README.md && ' +
        'echo change >> README.md && git -c user.name=agent -c user.email=a@b commit -qam "agent change" && git push -q origin main && echo pushed',
    );
    assert.match(r.stdout, /hello from the test git server\npushed\n/, r.stderr);
    const log = await readFile(join(up.gitRoot, "org/repo.git/refs/heads/main"), "utf8").catch(() => "");
    assert.ok(log.length > 0);
    const config = await sh(a, "cat /workspace/repo/.git/config");
    assert.ok(!config.stdout.includes(GITHUB));
  });

  void it("an agent's session cannot push to a protected branch, whatever runs git; other branches push", async () => {
    const bot = new PaddockClient({ url: client.url, token: (await client.principals.create({ name: "pusher", role: "agent", kind: "agent" })).token });
    const s = (await bot.sessions.start("egress", { onBehalfOf: "admin" })).id;
    // A script, so the submission check never sees `git push`: only the gateway stands in the way.
    await client.files.write(s, "/workspace/release.sh", Buffer.from(
      'cd /workspace && git clone -q "https://x-access-token:$GITHUB_TOKEN@github.com/org/repo.git" r && cd r && ' +
        'echo agent >> README.md && git -c user.name=agent -c user.email=a@b commit -qam "agent" && ' +
        "git push -q origin HEAD:main; echo main=$?; git push -q origin HEAD:feature/agent; echo feature=$?\n",
    ));
    const before = await readFile(join(up.gitRoot, "org/repo.git/refs/heads/main"), "utf8");
    const r = await bot.sessions.run(s, { argv: ["sh", "release.sh"] });
    assert.match(r.stdout, /main=1\nfeature=0\n/, r.stdout + r.stderr);
    assert.match(r.stderr, /remote: paddock: git push to refs\/heads\/main is a deploy/);
    assert.match(r.stderr, /! \[remote rejected\] HEAD -> main \(git push to refs\/heads\/main is a deploy/);
    assert.equal(await readFile(join(up.gitRoot, "org/repo.git/refs/heads/main"), "utf8"), before, "main did not move");
    assert.ok((await readFile(join(up.gitRoot, "org/repo.git/refs/heads/feature/agent"), "utf8")).length > 0);
    const denied = (await client.sessions.egress(s, { limit: 1000 })).filter((e) => e.decision === "denied");
    assert.ok(denied.some((e) => e.rule === "rbac: deploy" && e.path.endsWith("/git-receive-pack")));
    await client.sessions.remove(s);
  });

  void it("a placeholder sent to an allowed host it is not bound to arrives unchanged (attack 1)", async () => {
    await sh(a, 'curl -sS https://registry.example/x -H "Authorization: Bearer $STRIPE_API_KEY"');
    assert.match(String(lastTo("registry.example")?.headers.authorization), /^Bearer paddock-ph-[0-9a-f]{32}$/);
  });

  void it("the Sentry DSN placeholder works as a DSN and is swapped only towards its host", async () => {
    await sh(a, 'key=$(echo "$SENTRY_DSN" | sed -E "s#https://([^@]+)@.*#\\1#"); curl -sS https://o1.ingest.sentry.io/api/42/envelope/ -H "X-Sentry-Auth: Sentry sentry_key=$key, sentry_version=7" -d "{}"');
    assert.equal(lastTo("o1.ingest.sentry.io")?.headers["x-sentry-auth"], `Sentry sentry_key=${SENTRY_KEY}, sentry_version=7`);
  });

  void it("query swapping only where the binding allows it (attack 12)", async () => {
    await sh(a, 'curl -sS "https://api.stripe.com/q?key=$QUERY_KEY&k2=$STRIPE_API_KEY"');
    const url = lastTo("api.stripe.com")?.url ?? "";
    assert.ok(url.includes(`key=${QUERY_SECRET}`), url);
    assert.match(url, /k2=paddock-ph-/);
  });

  void it("a placeholder of session A used from session B is not swapped (attack 19)", async () => {
    const placeholder = (await sh(a, "printf %s $STRIPE_API_KEY")).stdout;
    await sh(b, `curl -sS https://api.stripe.com/cross -H "Authorization: Bearer ${placeholder}"`);
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${placeholder}`);
  });

  void it("denied hosts, redirects and DNS for unknown names (attacks 11, 15)", async () => {
    const denied = await sh(a, "curl -sS -o /dev/null -w '%{http_code}' https://evil.example/ 2>&1; echo; curl -sS -o /dev/null -w '%{http_code}' http://evil.example/ ; echo");
    assert.match(denied.stdout, /403/);
    const metadata = await sh(a, "curl -sS -o /dev/null -w '%{http_code}' http://169.254.169.254/latest/meta-data/; echo; env -u http_proxy -u HTTP_PROXY curl -sS -o /dev/null -w '%{http_code}' http://169.254.169.254/latest/meta-data/");
    assert.equal(metadata.stdout, "403\n403");
    const redirect = await sh(a, "curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' https://api.stripe.com/redirect");
    assert.equal(redirect.stdout, "302 https://evil.example/landing");
    const dns = await sh(a, "getent hosts attacker-exfil.example.com; echo rc=$?; getent hosts api.stripe.com");
    assert.match(dns.stdout, /^rc=2\n\S+\s+api\.stripe\.com/);
  });

  void it("raw TCP to a public IP on 443 with no proxy is judged by SNI; other ports have no route (attack 16)", async () => {
    const r = await sh(
      a,
      'env -u HTTPS_PROXY -u https_proxy curl -sS --resolve api.stripe.com:443:203.0.113.9 https://api.stripe.com/raw -H "Authorization: Bearer $STRIPE_API_KEY"; echo; ' +
        "env -u HTTP_PROXY -u http_proxy curl -sS -m 3 http://203.0.113.9:8080/ >/dev/null 2>&1; echo other=$?; " +
        "curl -sS -o /dev/null -w 'proxied=%{http_code}' http://203.0.113.9:8080/",
    );
    assert.match(r.stdout, /"url":"\/raw"/);
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${STRIPE}`);
    assert.match(r.stdout, /other=(7|28)\n/);
    // Through the explicit proxy the same request is judged by policy, and refused.
    assert.match(r.stdout, /proxied=403$/);
  });

  void it("the control plane, the host's services and the other sandbox are unreachable (attack 17)", async () => {
    const port = new URL(client.url).port;
    const gw = (await sh(a, "printf %s $PADDOCK_GATEWAY")).stdout;
    const r = await sh(a, `for t in 127.0.0.1:${port} ${gw}:${port} ${gw}:22; do h=\${t%:*}; p=\${t#*:}; timeout 3 bash -c "exec 3<>/dev/tcp/$h/$p" 2>/dev/null && echo OPEN $t; done; echo done`);
    assert.equal(r.stdout, "done\n");
  });

  void it("every request is recorded, with swapped names and no values", async () => {
    const records = await client.sessions.egress(a, { limit: 1000 });
    assert.ok(records.some((r) => r.host === "api.stripe.com" && r.swapped.includes("STRIPE_API_KEY") && r.decision === "allowed"));
    assert.ok(records.some((r) => r.host === "evil.example" && r.decision === "denied"));
    const json = JSON.stringify(records);
    for (const v of VALUES) assert.ok(!json.includes(v));
  });

  void it("no secret value appears in anything Paddock wrote: data directory, records, API answers", async () => {
    const hits: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const p = join(dir, e.name);
        if (e.isDirectory()) {
          if (e.name !== "layers") await walk(p);
        } else if (e.isFile()) {
          const content = await readFile(p).catch(() => Buffer.alloc(0));
          for (const v of VALUES) if (content.includes(v)) hits.push(`${p} contains a secret`);
        }
      }
    };
    await walk(home);
    const api = JSON.stringify([await client.secrets.list(), await client.sessions.list({ all: true }), await client.sessions.egress(a, { limit: 1000 })]);
    for (const v of VALUES) if (api.includes(v)) hits.push("an API answer contains a secret");
    for (const line of serverLog) for (const v of VALUES) if (line.includes(v)) hits.push("a log line contains a secret");
    assert.deepEqual(hits, []);
  });
});
