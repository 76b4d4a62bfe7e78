import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cli, repoRoot, testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";

/** The user's path through the real CLI against a real server: file → template → session → exec. */
void describe("paddock CLI end to end", () => {
  let url: string;
  let cleanup: () => Promise<void>;
  let files: { path: string; remove: () => Promise<void> };
  const write = async (name: string, text: string) => {
    const p = join(files.path, name);
    await writeFile(p, text);
    return p;
  };

  before(async () => {
    const t = await testServer();
    url = t.server.url;
    cleanup = t.cleanup;
    files = await tempDir();
  });
  after(async () => {
    await cleanup();
    await files.remove();
  });

  void it("validates the DESIGN.md example unchanged", async () => {
    const r = await cli(url, ["env", "validate", join(repoRoot, "examples/runtime.yml")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /runtime\.yml: valid/);
  });

  void it("reports every problem of a bad file with file:line:column and exits 2", async () => {
    const p = await write("runtime.yml", "name: demo\ncompute:\n  memory: 8 gigs\nguardrails:\n  comands:\n    deny: [rm]\n");
    const r = await cli(url, ["env", "validate", p]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /runtime\.yml:5:3 guardrails\.comands: unknown key \(did you mean "commands"\?\)/);
    assert.match(r.stderr, /runtime\.yml:3:11 compute\.memory: /);
  });

  void it("applies an environment, building one layer per step, and reuses them when unchanged", async () => {
    const p = await write(
      "paddock.yml",
      ["name: cli-demo", "install:", "  - echo built > /workspace/built.txt", "  - mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho hi from tool\\n' > /usr/local/bin/tool && chmod +x /usr/local/bin/tool"].join("\n") + "\n",
    );
    const first = await cli(url, ["env", "apply", p]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /\[1\/2\] echo built/);
    assert.match(first.stderr, /✓ done in/);
    assert.match(first.stderr, /template \S+ ready/);
    const again = await cli(url, ["env", "apply", p]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((again.stderr.match(/cached/g) ?? []).length, 2, again.stderr);
    const history = await cli(url, ["env", "history", "cli-demo", "--json"]);
    const versions = JSON.parse(history.stdout) as { version: number; buildStatus: string }[];
    assert.deepEqual(versions.map((v) => [v.version, v.buildStatus]), [[2, "ready"], [1, "ready"]]);
  });

  void it("a failing step stops the build with its exit code and last lines; the previous template stays current", async () => {
    const p = await write("paddock.yml", "name: cli-demo\ninstall:\n  - echo built > /workspace/built.txt\n  - echo about to fail; echo oops >&2; exit 3\n");
    const r = await cli(url, ["env", "apply", p]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /exit code 3/);
    assert.match(r.stderr, /oops/);
    const show = JSON.parse((await cli(url, ["env", "show", "cli-demo", "--json"])).stdout) as { environment: { currentVersion: number; latestVersion: number } };
    assert.equal(show.environment.currentVersion, 2);
    assert.equal(show.environment.latestVersion, 3);
  });

  void it("a step refused network access fails with a message pointing at build.network", async () => {
    const p = await write("net.yml", "name: cli-net\nbuild:\n  network:\n    deny: ['*']\ninstall:\n  - curl -sS --max-time 5 https://example.org/ >/dev/null\n");
    const r = await cli(url, ["env", "apply", p]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /build\.network allows/);
  });

  void it("starts a session and runs commands in it with live output, stdin, exit codes, cwd, env and timeouts", async () => {
    const start = await cli(url, ["session", "start", "cli-demo", "--json"]);
    assert.equal(start.code, 0, start.stderr);
    const id = (JSON.parse(start.stdout) as { id: string; state: string }).id;
    const cat = await cli(url, ["exec", id, "--", "cat", "/workspace/built.txt"]);
    assert.deepEqual([cat.code, cat.stdout], [0, "built\n"]);
    const tool = await cli(url, ["exec", id, "--", "tool"]);
    assert.equal(tool.stdout, "hi from tool\n");
    const code = await cli(url, ["exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert.deepEqual([code.code, code.stdout, code.stderr], [7, "out\n", "err\n"]);
    const stdin = await cli(url, ["exec", id, "--", "tr", "a-z", "A-Z"], { input: "hello sandbox\n" });
    assert.equal(stdin.stdout, "HELLO SANDBOX\n");
    const cwdEnv = await cli(url, ["exec", "--cwd", "/tmp", "--env", "GREETING=hej", id, "--", "sh", "-c", 'echo "$PWD $GREETING $(id -un)"']);
    assert.equal(cwdEnv.stdout, "/tmp hej paddock\n");
    const slow = await cli(url, ["exec", "--timeout", "300ms", id, "--", "sleep", "30"]);
    assert.equal(slow.code, 124);
    const missing = await cli(url, ["exec", id, "--", "no-such-program"]);
    assert.equal(missing.code, 127);
    await cli(url, ["session", "stop", id]);
  });

  void it("copies files in and out and lists them", async () => {
    const id = (await cli(url, ["session", "start", "cli-demo"])).stdout.trim();
    const local = await write("in.bin", "");
    await writeFile(local, Buffer.from([0, 1, 2, 255, 10]));
    assert.equal((await cli(url, ["files", "put", "--mode", "600", id, local, "/workspace/data.bin"])).code, 0);
    const out = join(files.path, "out.bin");
    assert.equal((await cli(url, ["files", "get", id, "data.bin", out])).code, 0);
    assert.deepEqual(await readFile(out), Buffer.from([0, 1, 2, 255, 10]));
    const ls = JSON.parse((await cli(url, ["files", "ls", id, "/workspace", "--json"])).stdout) as { name: string; mode: number; size: number }[];
    const entry = ls.find((e) => e.name === "data.bin");
    assert.deepEqual([entry?.mode, entry?.size], [0o600, 5]);
    const missing = await cli(url, ["files", "get", id, "/nope"]);
    assert.equal(missing.code, 3);
    await cli(url, ["session", "rm", id]);
  });

  void it("lists, shows, stops and removes sessions", async () => {
    const id = (await cli(url, ["session", "start", "cli-demo"])).stdout.trim();
    const list = await cli(url, ["session", "list"]);
    assert.match(list.stdout, new RegExp(`${id}\\s+cli-demo@v2\\s+running\\s+local`));
    const stopped = JSON.parse((await cli(url, ["session", "stop", id, "--json"])).stdout) as { state: string; endReason: string };
    assert.deepEqual([stopped.state, stopped.endReason], ["stopped", "stopped by user"]);
    const exec = await cli(url, ["exec", id, "--", "true"]);
    assert.equal(exec.code, 4);
    assert.match(exec.stderr, /is stopped, not running/);
    assert.equal((await cli(url, ["session", "rm", id])).code, 0);
    assert.equal((await cli(url, ["session", "show", id])).code, 3);
  });

  void it("an environment naming providers that are not configured gets an error saying how to configure them", async () => {
    const p = await write("remote.yml", "name: remote-only\nproviders:\n  - e2b\n  - k8s-prod\n");
    assert.equal((await cli(url, ["env", "apply", p])).code, 0);
    const r = await cli(url, ["session", "start", "remote-only"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /asks for providers e2b, k8s-prod, but this installation has only "local" configured/);
    assert.match(r.stderr, /Configure a provider instance/);
  });

  void it("doctor reports a ready host and no leaks once sessions are stopped", async () => {
    const r = await cli(url, ["doctor", "--json"]);
    const report = JSON.parse(r.stdout) as { ok: boolean; leaks: string[]; checks: { name: string; ok: boolean }[] };
    assert.deepEqual(report.leaks, []);
    assert.ok(report.checks.find((c) => c.name === "cgroups")?.ok);
    // This kernel has both (DESIGN.md: 6.18, fanotify permission events): the guard tests rely on it.
    assert.ok(report.checks.find((c) => c.name === "exec guard")?.ok, JSON.stringify(report.checks));
    assert.equal(r.code, report.ok ? 0 : 1);
  });

  void it("--help and usage errors follow conventions", async () => {
    const help = await cli(url, ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: paddock/);
    const bad = await cli(url, ["session", "frobnicate"]);
    assert.equal(bad.code, 2);
    const down = await cli("http://127.0.0.1:9", ["env", "list"]);
    assert.equal(down.code, 69);
    assert.match(down.stderr, /cannot reach the Paddock server/);
  });
});
