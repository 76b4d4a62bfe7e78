/**
 * E2B's real SDK (both pinned releases) driving a PTY in a Paddock sandbox: `pty.create` with a
 * size and onData, `sendInput`, `resize` (seen by `stty size` inside), `connect`, `kill`. Paddock
 * runs the shell inside `script`, which makes the PTY in the sandbox (docs/e2b.md, "Commands and
 * PTY"); what onData gets are the terminal's raw bytes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sandbox as SandboxNew } from "e2b";
import { Sandbox as SandboxPrev } from "e2b-prev";
import { e2bApiKeyOf } from "../../src/server/e2b/api.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";

const SDKS = [
  { name: "e2b 2.51.0", create: (t: string) => SandboxNew.create(t) },
  // The older release's types differ in parts these tests do not use; its calls are the same.
  { name: "e2b 2.39.0", create: async (t: string) => (await SandboxPrev.create(t)) as unknown as SandboxNew },
] as const;

let cleanup: () => Promise<void>;

before(async () => {
  const t = await testServer({ e2bPort: 0 });
  cleanup = t.cleanup;
  await t.client.environments.apply("runtime.yml", "name: e2bpty\n");
  process.env.E2B_API_URL = t.server.e2bUrl;
  process.env.E2B_SANDBOX_URL = t.server.e2bUrl;
  process.env.E2B_API_KEY = e2bApiKeyOf(t.token);
});
after(async () => {
  await cleanup?.();
});

for (const sdk of SDKS) {
  void describe(`PTY with the real SDK (${sdk.name})`, () => {
    let sbx: SandboxNew;

    before(async () => {
      sbx = await sdk.create("e2bpty");
    });
    after(async () => {
      await sbx?.kill().catch(() => undefined);
    });

    void it("create, input, resize, connect, kill: raw terminal bytes and the size the shell sees", async () => {
      let screen = "";
      const decoder = new TextDecoder();
      const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d: Uint8Array) => void (screen += decoder.decode(d, { stream: true })) });
      assert.ok(pty.pid > 0);
      const type = (text: string) => sbx.pty.sendInput(pty.pid, new TextEncoder().encode(text));
      const see = (re: RegExp, what: string) => until(async () => re.test(screen), 60_000, `${what} on the PTY (screen so far: ${JSON.stringify(screen.slice(-300))})`);

      await type("stty size; echo $TERM; whoami\n");
      await see(/^24 80\r$/m, "the initial size");
      await see(/^xterm-256color\r$/m, "TERM");
      await see(/^user\r$/m, "the user");
      assert.ok(screen.includes("\r\n"), "a terminal's line endings");
      assert.ok(!screen.includes("paddock-tty"), "Paddock's PTY-name marker reached the client");

      await sbx.pty.resize(pty.pid, { cols: 120, rows: 40 });
      await type("stty size\n");
      await see(/^40 120\r$/m, "the new size");

      assert.ok((await sbx.commands.list()).some((p) => p.pid === pty.pid && p.cmd === "/bin/bash"), "the PTY is listed");

      // A second handle sees output from now on; input still works.
      let second = "";
      const other = await sbx.pty.connect(pty.pid, { onData: (d: Uint8Array) => void (second += decoder.decode(d)) });
      await type("echo con$((40+2))\n");
      await until(async () => second.includes("con42"), 60_000, "output on the connected handle");
      await other.disconnect();

      assert.equal(await sbx.pty.kill(pty.pid), true);
      const e = await pty.wait().then(() => null, (x: unknown) => x as { exitCode?: number });
      assert.equal(e?.exitCode, -1, "a killed PTY reports exit code -1, as envd does");
      assert.equal(await sbx.pty.kill(pty.pid), false, "it is gone");
    });
  });
}
