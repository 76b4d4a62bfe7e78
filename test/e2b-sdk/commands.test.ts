/**
 * E2B's real SDK (the newest pinned release and one about two months older) running commands in
 * a Paddock sandbox through the E2B front end: output callbacks, exit codes, background commands,
 * stdin, list, connect, kill; a command the guardrails deny; and egress, where a command's `curl`
 * carries the real secret upstream while the sandbox sees only its placeholder. The upstream is a
 * local HTTPS stand-in for api.stripe.com (test/helpers/upstream.ts): nothing leaves this machine.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CommandExitError as CommandExitErrorNew, Sandbox as SandboxNew } from "e2b";
import { CommandExitError as CommandExitErrorPrev, Sandbox as SandboxPrev } from "e2b-prev";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { e2bApiKeyOf } from "../../src/server/e2b/api.ts";
import { testServer } from "../helpers/server.ts";
import { startUpstream, UPSTREAM_NAMES, type Upstream } from "../helpers/upstream.ts";
import { until } from "../helpers/wait.ts";

/** A loopback address of our own for the fake upstream (others are taken by other test files). */
const UPSTREAM_IP = "127.0.71.9";
const STRIPE = "sk_live_51E2bCommandsSecretValue0123456789";

const ENV = `name: e2bcmd
secrets:
  - STRIPE_API_KEY
guardrails:
  commands:
    deny: [rm]
  network:
    allow: [api.stripe.com]
    deny: ["*"]
`;
const RM_RULE = /paddock: '(\/usr)?(\/bin\/)?rm' denied by guardrails\.commands\.deny \(runtime\.yml:6\)/;

const SDKS = [
  { name: "e2b 2.51.0", create: (t: string) => SandboxNew.create(t), CommandExitError: CommandExitErrorNew },
  // The older release's types differ in parts these tests do not use; its calls are the same.
  { name: "e2b 2.39.0", create: async (t: string) => (await SandboxPrev.create(t)) as unknown as SandboxNew, CommandExitError: CommandExitErrorPrev },
] as const;

let server: RunningServer;
let client: PaddockClient;
let up: Upstream;
let cleanup: () => Promise<void>;

before(async () => {
  up = await startUpstream(UPSTREAM_IP, { gitToken: "unused" });
  const t = await testServer({
    e2bPort: 0,
    gateway: { upstream: { extraCaPem: [up.caPem], hosts: Object.fromEntries(UPSTREAM_NAMES.map((n) => [n, [UPSTREAM_IP]])), trustedAddresses: [UPSTREAM_IP] } },
  });
  ({ server, client, cleanup } = t);
  await client.secrets.set("STRIPE_API_KEY", STRIPE);
  await client.environments.apply("runtime.yml", ENV);
  // The SDK reads these (E2B_SANDBOX_URL: envd calls go to the same port, the sandbox named in a header).
  process.env.E2B_API_URL = server.e2bUrl;
  process.env.E2B_SANDBOX_URL = server.e2bUrl;
  process.env.E2B_API_KEY = e2bApiKeyOf(t.token); // 2.39 accepts only keys shaped e2b_<hex>
});
after(async () => {
  await cleanup?.();
  await up?.close();
});

for (const sdk of SDKS) {
  void describe(`commands with the real SDK (${sdk.name})`, () => {
    let sbx: SandboxNew;

    before(async () => {
      sbx = await sdk.create("e2bcmd");
    });
    after(async () => {
      await sbx?.kill().catch(() => undefined);
    });

    void it("run: stdout and stderr callbacks, the result, E2B's user and home", async () => {
      const out: string[] = [];
      const err: string[] = [];
      const r = await sbx.commands.run('echo hello; echo oops >&2; echo "$(whoami) $HOME $(pwd)"', { onStdout: (d) => void out.push(d), onStderr: (d) => void err.push(d) });
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout, `hello\nuser /home/user /home/user\n`);
      assert.equal(r.stderr, "oops\n");
      assert.equal(out.join(""), r.stdout);
      assert.equal(err.join(""), "oops\n");
      const cwd = await sbx.commands.run("pwd", { cwd: "/tmp", envs: { GREETING: "hi" } });
      assert.equal(cwd.stdout, "/tmp\n");
    });

    void it("user: 'user' is the sandbox's account; root does not exist here and is refused", async () => {
      assert.equal((await sbx.commands.run("whoami", { user: "user" })).stdout, "user\n");
      await assert.rejects(sbx.commands.run("id", { user: "root" }), /permission_denied\]? Paddock sandboxes have no root/);
    });

    void it("a failing command throws CommandExitError with its exit code and output", async () => {
      const e = await sbx.commands.run("echo partial; echo bad >&2; exit 7").then(() => null, (x: unknown) => x);
      assert.ok(e instanceof sdk.CommandExitError, `expected CommandExitError, got ${String(e)}`);
      assert.equal(e.exitCode, 7);
      assert.equal(e.stdout, "partial\n");
      assert.equal(e.stderr, "bad\n");
      assert.equal(e.error, "exit status 7");
    });

    void it("a background command: list shows it, kill ends it, wait reports the kill", async () => {
      const h = await sbx.commands.run("sleep 600", { background: true });
      assert.ok(h.pid > 0);
      const listed = (await sbx.commands.list()).find((p) => p.pid === h.pid);
      assert.deepEqual(listed && { cmd: listed.cmd, args: listed.args }, { cmd: "/bin/bash", args: ["-l", "-c", "sleep 600"] });
      assert.equal(await h.kill(), true);
      const e = await h.wait().then(() => null, (x: unknown) => x);
      assert.ok(e instanceof sdk.CommandExitError);
      assert.equal(e.exitCode, -1);
      assert.equal(e.error, "signal: killed");
      assert.ok(!(await sbx.commands.list()).some((p) => p.pid === h.pid));
      assert.equal(await sbx.commands.kill(h.pid), false, "killing a process that is gone is false");
    });

    void it("stdin: sendStdin and closeStdin reach the command", async () => {
      const h = await sbx.commands.run("cat; echo eof", { background: true, stdin: true });
      await h.sendStdin("line one\n");
      await sbx.commands.sendStdin(h.pid, "line two\n");
      await h.closeStdin();
      const r = await h.wait();
      assert.equal(r.stdout, "line one\nline two\neof\n");
    });

    void it("connect: a second handle to a running command streams from then on and waits for its end", async () => {
      const h = await sbx.commands.run("echo before; read line; echo \"got $line\"; exit 4", { background: true, stdin: true });
      await until(async () => h.stdout.includes("before"), 30_000, "the command's first line");
      await h.disconnect();
      const seen: string[] = [];
      const again = await sbx.commands.connect(h.pid, { onStdout: (d) => void seen.push(d) });
      assert.equal(again.pid, h.pid);
      await again.sendStdin("x\n");
      const e = await again.wait().then(() => null, (x: unknown) => x);
      assert.ok(e instanceof sdk.CommandExitError);
      assert.equal(e.exitCode, 4);
      assert.equal(seen.join(""), "got x\n", "connect replays nothing from before it");
    });

    void it("a command the guardrails deny fails as Paddock denies it (exit 126 and the rule) and is audited", async () => {
      const line = `rm -rf /tmp/keep-${sdk.name.replace(/\W/g, "")}`;
      const e = await sbx.commands.run(line).then(() => null, (x: unknown) => x);
      assert.ok(e instanceof sdk.CommandExitError);
      assert.equal(e.exitCode, 126);
      assert.match(e.stderr, RM_RULE);
      const audit = (await client.audit.list({ environment: "e2bcmd" })).filter((a) => a.action === "exec");
      assert.ok(audit.some((a) => a.decision === "denied" && JSON.stringify(a.detail).includes(line)), "the denial is not in the audit log");
    });

    void it("egress: curl carries the real secret upstream; the sandbox sees only the placeholder", async () => {
      const env = await sbx.commands.run("echo $STRIPE_API_KEY");
      assert.match(env.stdout, /^paddock-ph-[0-9a-f]{32}\n$/);
      const r = await sbx.commands.run('curl -sS https://api.stripe.com/v1/e2b -H "Authorization: Bearer $STRIPE_API_KEY"');
      const got = [...up.received].reverse().find((x) => x.url === "/v1/e2b");
      assert.equal(got?.headers.authorization, `Bearer ${STRIPE}`);
      assert.ok(!r.stdout.includes(STRIPE), "the echoed secret reached the sandbox");
      assert.match(r.stdout, /"authorization":"Bearer paddock-ph-[0-9a-f]{32}"/);
      const denied = await sbx.commands.run("curl -sS -o /dev/null -w '%{http_code}' https://evil.example/x").then((x) => x.stdout, (x: unknown) => (x as { stdout: string }).stdout);
      assert.ok(!up.received.some((x) => x.host.startsWith("evil.example")), `evil.example was reached (${denied})`);
    });
  });
}
