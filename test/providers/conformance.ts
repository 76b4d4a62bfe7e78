import { describe, it, before, after } from "node:test";
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { ExecOptions, IsolationTier, Provider, SandboxSpec } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";

/**
 * The provider conformance suite (issue #13): the preconditions of the Provider contract
 * (src/core/provider.ts header) and its capability declarations, run against every provider
 * (`local`, the gVisor tier, k8s, e2b, daytona, ec2). Each provider's test file calls
 * `providerConformance` with a target that builds specs for it.
 *
 * What a provider does not declare in `capabilities` is called anyway and must reject with
 * `unsupported` (PaddockError "unavailable" with `details.capability`), never do nothing; what it
 * declares gets a positive test. Sandboxes cost ~100–300 ms locally, so the exec and file cases
 * share one sandbox and only lifecycle cases start their own.
 */
export interface ConformanceTarget {
  provider: Provider;
  /** A session SandboxSpec for this provider with a fresh id; overrides merged in. */
  spec(overrides?: Partial<SandboxSpec>): SandboxSpec;
  /** Called in after(): stop everything, close servers. */
  cleanup(): Promise<void>;
}

const isCode = (code: string) => (e: unknown) => {
  assert.ok(e instanceof PaddockError, `expected a PaddockError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  return true;
};

/** `unsupported(...)` from src/core/capabilities.ts: "unavailable" naming the capability. */
const isUnsupported = (e: unknown) => {
  assert.ok(e instanceof PaddockError, `expected unsupported (a PaddockError), got ${String(e)}`);
  assert.equal(e.code, "unavailable", e.message);
  assert.equal(typeof e.details?.capability, "string", `details.capability missing in: ${e.message}`);
  return true;
};

const ALL_TIERS: IsolationTier[] = ["namespaces", "gvisor"];

/** Registers node:test tests (inside a describe named `${label}: provider conformance`). Capabilities the provider does not declare are tested to fail with `unsupported` (PaddockError "unavailable"). */
export function providerConformance(label: string, setup: () => Promise<ConformanceTarget>): void {
  void describe(`${label}: provider conformance`, () => {
    let t!: ConformanceTarget;
    let p!: Provider;
    /** One sandbox shared by the cases that only exec and touch files. */
    let shared!: string;
    /** A host directory of this test (never visible inside a sandbox), with a marker file. */
    let host!: { path: string; remove: () => Promise<void> };
    const HOST_MARKER = `host-only-${process.pid}-${Date.now()}`;

    const run = async (id: string, argv: string[], extra: Partial<ExecOptions> = {}) => {
      let stdout = "";
      let stderr = "";
      const r = await p.exec(id, {
        argv,
        ...extra,
        onStdout: (b) => {
          stdout += b.toString();
          extra.onStdout?.(b);
        },
        onStderr: (b) => {
          stderr += b.toString();
          extra.onStderr?.(b);
        },
      });
      return { ...r, stdout, stderr };
    };
    const sh = (id: string, script: string, extra: Partial<ExecOptions> = {}) => run(id, ["sh", "-c", script], extra);
    /** Starts a sandbox that the suite stops at the end even when the case fails. */
    const started = new Set<string>();
    const start = async (overrides: Partial<SandboxSpec> = {}) => {
      const spec = t.spec(overrides);
      await p.create(spec);
      started.add(spec.id);
      return spec.id;
    };
    const stop = async (id: string) => {
      started.delete(id);
      return p.stop(id);
    };

    before(async () => {
      t = await setup();
      p = t.provider;
      host = await tempDir("paddock-conformance-");
      await writeFile(join(host.path, "marker"), HOST_MARKER);
      shared = await start();
    });
    after(async () => {
      try {
        for (const id of started) await p?.stop(id).catch(() => false);
        await t?.cleanup();
      } finally {
        await host?.remove();
      }
    });

    void it("declares its capabilities; health() answers ok with a latency", async () => {
      const c = p.capabilities;
      assert.ok(["local", "k8s", "e2b", "daytona", "ec2"].includes(c.kind), c.kind);
      assert.ok(["netns", "proxy"].includes(c.network), c.network);
      for (const k of ["selfHosted", "layers", "snapshot", "execGuard", "services", "fileOps", "ports", "warmPool"] as const) {
        assert.equal(typeof c[k], "boolean", `capabilities.${k}`);
      }
      assert.ok(c.isolation.length > 0 && c.isolation.every((x) => ALL_TIERS.includes(x)), `isolation ${c.isolation.join(",")}`);
      assert.equal(c.selfHosted, ["local", "k8s", "ec2"].includes(c.kind), "third-party clouds are not self-hosted");
      const h = await p.health();
      assert.equal(h.ok, true, h.detail);
      assert.equal(typeof h.detail, "string");
      assert.ok(Number.isFinite(h.latencyMs) && h.latencyMs >= 0, `latencyMs ${h.latencyMs}`);
    });

    void it("create → list → exec → stop true, then false; list shows live ids only", async () => {
      const a = await start();
      const b = await start();
      const live = await p.list();
      assert.ok(live.includes(a) && live.includes(b), `list: ${live.join(",")}`);
      assert.equal(await stop(a), true);
      const after = await p.list();
      assert.ok(!after.includes(a), "a stopped sandbox is not listed");
      assert.ok(after.includes(b));
      assert.equal(await stop(a), false, "stopping again resolves false");
      assert.equal((await sh(b, "echo ok")).stdout, "ok\n");
      assert.equal(await stop(b), true);
    });

    void it("calls on an unknown or stopped id reject not_found; stop resolves false", async () => {
      const gone = await start();
      await stop(gone);
      for (const id of ["never-was", gone]) {
        assert.equal(await p.stop(id), false);
        await assert.rejects(p.exec(id, { argv: ["true"] }), isCode("not_found"));
        await assert.rejects(p.readFile(id, "/etc/hostname"), isCode("not_found"));
        await assert.rejects(p.writeFile(id, "/tmp/x", Buffer.from("x")), isCode("not_found"));
        await assert.rejects(p.listDir(id, "/"), isCode("not_found"));
        await assert.rejects(p.killProcesses(id), isCode("not_found"));
        assert.deepEqual(await p.guardDenials(id), []);
      }
    });

    void it("a live id cannot be created twice (conflict)", async () => {
      const spec = t.spec();
      await p.create(spec);
      started.add(spec.id);
      await assert.rejects(p.create(spec), isCode("conflict"));
      await stop(spec.id);
    });

    void it("exec: exit status, stdout and stderr apart, 127 for a missing program, 124 on timeout, 128+N for a signal", async () => {
      const r = await sh(shared, "echo out; echo err >&2; exit 7");
      assert.deepEqual([r.exitCode, r.signal, r.timedOut, r.stdout, r.stderr], [7, null, false, "out\n", "err\n"]);
      assert.ok(r.durationMs >= 0);
      assert.equal((await run(shared, ["definitely-not-a-program-here"])).exitCode, 127);
      const slow = await run(shared, ["sleep", "30"], { timeoutMs: 300 });
      assert.deepEqual([slow.exitCode, slow.timedOut], [124, true]);
      const killed = await sh(shared, "kill -TERM $$");
      assert.deepEqual([killed.exitCode, killed.signal], [143, "SIGTERM"]);
    });

    void it("exec: the spec's env, per-exec env and cwd; stdin from bytes and from a stream", async () => {
      const id = await start({ env: { CONFORMANCE_SPEC: "from-spec" } });
      assert.equal((await sh(id, "echo $CONFORMANCE_SPEC $X; pwd", { cwd: "/tmp", env: { X: "x1" } })).stdout, "from-spec x1\n/tmp\n");
      await stop(id);
      assert.equal((await run(shared, ["cat"], { stdin: Buffer.from("bytes\n") })).stdout, "bytes\n");
      assert.equal((await run(shared, ["wc", "-c"], { stdin: Readable.from([Buffer.alloc(200_000, 97)]) })).stdout.trim(), "200000");
      assert.equal((await run(shared, ["cat"])).stdout, "", "absent stdin is empty");
    });

    void it("setEnv: later commands start with the merged environment", async () => {
      const id = await start({ env: { KEEP: "k" } });
      await p.setEnv(id, { ADDED: "a" });
      assert.equal((await sh(id, "echo $KEEP $ADDED")).stdout, "k a\n");
      await stop(id);
    });

    void it("aborting an exec ends the command", async () => {
      const abort = new AbortController();
      let ready!: () => void;
      const up = new Promise<void>((r) => (ready = r));
      const running = p.exec(shared, {
        argv: ["sh", "-c", "echo $$ > /tmp/abort.pid; echo up; exec sleep 60"],
        signal: abort.signal,
        onStdout: (b) => (b.toString().includes("up") ? ready() : undefined),
      });
      running.catch(() => undefined);
      await within(Promise.race([up, running.then(() => undefined)]), 60_000, "the command to print \"up\"");
      const alive = 'kill -0 "$(cat /tmp/abort.pid)" 2>/dev/null && echo alive || echo gone';
      // Seen alive first: otherwise "gone" below would prove nothing (a pid another exec cannot see).
      assert.equal((await sh(shared, alive)).stdout, "alive\n", "the running command is visible to another exec before the abort");
      abort.abort();
      // Bounded: a provider that never ends an aborted exec fails here instead of hanging the run.
      const outcome = await within(running.then((r) => r, (e: unknown) => e), 60_000, "the aborted exec to settle");
      if (!(outcome instanceof Error)) assert.notEqual((outcome as { exitCode: number }).exitCode, 0, "an aborted command does not report success");
      await until(async () => (await sh(shared, alive)).stdout === "gone\n", 30_000, "the aborted command to end");
    });

    void it("killProcesses ends running commands (they report it) and the sandbox takes commands again", async () => {
      const id = await start();
      let ready!: () => void;
      const up = new Promise<void>((r) => (ready = r));
      const running = p.exec(id, { argv: ["sh", "-c", "echo up; sleep 60"], onStdout: () => ready() });
      running.catch(() => undefined);
      await within(Promise.race([up, running.then(() => undefined)]), 60_000, "the command to print \"up\"");
      assert.ok((await p.killProcesses(id)) >= 1);
      const r = await within(running, 60_000, "the killed exec to settle");
      assert.deepEqual([r.exitCode, r.signal], [137, "SIGKILL"]);
      assert.equal((await sh(id, "echo again")).stdout, "again\n");
      await stop(id);
    });

    void it("recover: a running sandbox is running, a stopped one is gone", async () => {
      const spec = t.spec();
      const handle = await p.create(spec);
      started.add(spec.id);
      assert.equal(await p.recover(spec.id, handle.providerState), "running");
      assert.equal((await sh(spec.id, "echo still")).stdout, "still\n");
      await stop(spec.id);
      assert.equal(await p.recover(spec.id, handle.providerState), "gone");
      await assert.rejects(p.exec(spec.id, { argv: ["true"] }), isCode("not_found"));
    });

    void it("files: binary-safe round trip, modes, listDir; exec sees written files and vice versa; missing → not_found", async () => {
      const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await p.writeFile(shared, "/tmp/conf/bin.dat", bytes, { mode: 0o640 }).catch(async (e: unknown) => {
        // Parents are not necessarily created: make it with a command and try again.
        if (!(e instanceof PaddockError)) throw e;
        await sh(shared, "mkdir -p /tmp/conf");
        await p.writeFile(shared, "/tmp/conf/bin.dat", bytes, { mode: 0o640 });
      });
      assert.deepEqual(await p.readFile(shared, "/tmp/conf/bin.dat"), bytes);
      // perl's stat, not coreutils' `stat`: runsc 2022-12 refuses statx's AT_NO_AUTOMOUNT, which coreutils passes.
      assert.equal((await sh(shared, "wc -c < /tmp/conf/bin.dat; perl -e 'printf \"%o\\n\", (stat shift)[2] & 07777' /tmp/conf/bin.dat")).stdout.replace(/ +/g, ""), "256\n640\n");
      await sh(shared, "printf 'from exec' > /tmp/conf/made.txt; mkdir /tmp/conf/sub");
      assert.equal((await p.readFile(shared, "/tmp/conf/made.txt")).toString(), "from exec");
      const entries = await p.listDir(shared, "/tmp/conf");
      const byName = new Map(entries.map((e) => [e.name, e]));
      assert.deepEqual([byName.get("bin.dat")?.type, byName.get("bin.dat")?.size, byName.get("bin.dat")?.mode], ["file", 256, 0o640]);
      assert.equal(byName.get("sub")?.type, "dir");
      assert.ok(typeof byName.get("made.txt")?.mtime === "string");
      await p.writeFile(shared, "/tmp/conf/bin.dat", Buffer.from("short"));
      assert.equal((await p.readFile(shared, "/tmp/conf/bin.dat")).toString(), "short", "a write replaces the whole file");
      await p.writeFile(shared, "/tmp/conf/empty", new Uint8Array(0));
      assert.equal((await p.readFile(shared, "/tmp/conf/empty")).length, 0);
      await assert.rejects(p.readFile(shared, "/tmp/conf/missing"), isCode("not_found"));
      await assert.rejects(p.listDir(shared, "/tmp/conf/missing"), isCode("not_found"));
    });

    void it("file paths never reach outside the sandbox (.., the test's own host directory, symlinks)", async () => {
      const marker = join(host.path, "marker");
      const escapes = [marker, `/../../..${marker}`, `/tmp/../../../..${marker}`, `../../../../../..${marker}`];
      for (const path of escapes) {
        const got = await p.readFile(shared, path).then((b) => b.toString(), () => null);
        assert.notEqual(got, HOST_MARKER, `readFile(${path}) returned the host file`);
        const listed = await p.listDir(shared, path.slice(0, -"/marker".length)).then((es) => es.map((e) => e.name), (): string[] => []);
        assert.ok(!listed.includes("marker"), `listDir near ${path} shows the host directory`);
      }
      for (const [i, path] of [join(host.path, "w0"), `/../../..${host.path}/w1`, `/tmp/../../..${host.path}/w2`].entries()) {
        await p.writeFile(shared, path, Buffer.from("escaped")).catch(() => undefined);
        assert.equal(existsSync(join(host.path, `w${i}`)), false, `writeFile(${path}) wrote on the host`);
      }
      // A symlink made inside the sandbox is resolved inside it too.
      await sh(shared, `ln -sfn ${host.path} /tmp/to-host; ln -sfn / /tmp/to-root`);
      assert.notEqual(await p.readFile(shared, "/tmp/to-host/marker").then((b) => b.toString(), () => null), HOST_MARKER);
      await p.writeFile(shared, "/tmp/to-host/w3", Buffer.from("escaped")).catch(() => undefined);
      await p.writeFile(shared, `/tmp/to-root${host.path}/w4`, Buffer.from("escaped")).catch(() => undefined);
      assert.deepEqual((await readdir(host.path)).sort(), ["marker"], "nothing was written into the host directory");
    });

    void it("isolation tiers: each declared tier runs commands; an undeclared one is refused with unsupported", async () => {
      for (const tier of ALL_TIERS) {
        if (p.capabilities.isolation.includes(tier)) {
          const id = await start({ isolation: tier });
          assert.equal((await sh(id, "echo tier")).stdout, "tier\n", tier);
          await stop(id);
        } else {
          const spec = t.spec({ isolation: tier });
          await assert.rejects(p.create(spec), isUnsupported, `isolation ${tier}`);
          assert.ok(!(await p.list()).includes(spec.id), "a refused create leaves nothing running");
        }
      }
    });

    void it("snapshot: declared → a sandbox started from it sees the files; otherwise unsupported", async () => {
      const layerId = `conf-snap-${process.pid}-${Date.now()}`;
      if (!p.capabilities.snapshot) {
        await assert.rejects(p.snapshot(shared, layerId), isUnsupported);
        await assert.rejects(p.removeSnapshot(layerId), isUnsupported);
        await assert.rejects(p.create(t.spec({ from: layerId })), isUnsupported);
        return;
      }
      const src = await start();
      await sh(src, "mkdir -p /tmp/keep; echo snap > /workspace/snap.txt");
      await p.snapshot(src, layerId);
      await stop(src);
      const copy = await start({ from: layerId });
      assert.equal((await p.readFile(copy, "/workspace/snap.txt")).toString(), "snap\n");
      await stop(copy);
      assert.equal(await p.removeSnapshot(layerId), true);
      assert.equal(await p.removeSnapshot(layerId), false);
    });

    void it("exec guard: declared → a denied program exits 126 with the message; otherwise a guard is refused with unsupported", async () => {
      const message = "paddock: 'rm' denied by guardrails.commands.deny (conformance)";
      const guard = { deny: [{ program: "rm", message }] };
      if (!p.capabilities.execGuard) {
        await assert.rejects(p.create(t.spec({ guard })), isUnsupported);
        return;
      }
      const id = await start({ guard });
      const r = await sh(id, "touch /tmp/f; rm /tmp/f; echo status=$?; test -e /tmp/f && echo kept");
      assert.equal(r.stdout, "status=126\nkept\n");
      assert.ok(r.stderr.includes(message), r.stderr);
      assert.equal((await p.guardDenials(id)).length, 1);
      await stop(id);
    });

    void it("services: declared → supervised and ready; otherwise a spec with services is refused with unsupported", async () => {
      const services = [{
        name: "conf", command: "echo up > /tmp/svc-up; exec sleep 1000", user: "1000", env: {},
        ready: { command: "test -e /tmp/svc-up" }, dataDirs: [], restartLimit: 1, dependsOn: [],
      }];
      if (!p.capabilities.services) {
        await assert.rejects(p.create(t.spec({ services })), isUnsupported);
        // A sandbox without services: the truth ([]) or unsupported, never a made-up status.
        await p.services(shared).then((s) => assert.deepEqual(s, []), (e: unknown) => isUnsupported(e));
        return;
      }
      const id = await start({ services });
      const ready = await p.waitForServices(id, 30_000);
      assert.deepEqual(ready.map((s) => [s.name, s.state]), [["conf", "ready"]]);
      await stop(id);
      await assert.rejects(p.services(id), isCode("not_found"));
    });

    void it("file operations: declared → stat/makeDir/moveFile/removeFile work; otherwise each present method rejects unsupported", async () => {
      if (!p.capabilities.fileOps) {
        const calls: [string, (() => Promise<unknown>) | undefined][] = [
          ["statFile", p.statFile && (() => p.statFile!(shared, "/tmp"))],
          ["listTree", p.listTree && (() => p.listTree!(shared, "/tmp", 1))],
          ["makeDir", p.makeDir && (() => p.makeDir!(shared, "/tmp/nope"))],
          ["moveFile", p.moveFile && (() => p.moveFile!(shared, "/tmp/a", "/tmp/b"))],
          ["removeFile", p.removeFile && (() => p.removeFile!(shared, "/tmp/a"))],
          ["watchDir", p.watchDir && (() => p.watchDir!(shared, "/tmp", { recursive: false, onEvent: () => undefined }))],
          ["readFileStream", p.readFileStream && (() => p.readFileStream!(shared, "/tmp/a"))],
          ["writeFileStream", p.writeFileStream && (() => p.writeFileStream!(shared, "/tmp/a", Readable.from([])))],
        ];
        for (const [name, call] of calls) if (call) await assert.rejects(call(), isUnsupported, name);
        return;
      }
      const { statFile, makeDir, moveFile, removeFile } = p;
      assert.ok(statFile && makeDir && moveFile && removeFile, "fileOps declared: statFile, makeDir, moveFile and removeFile exist");
      assert.equal(await makeDir.call(p, shared, "/tmp/ops/a/b"), true);
      assert.equal(await makeDir.call(p, shared, "/tmp/ops/a/b"), false, "already a directory");
      await p.writeFile(shared, "/tmp/ops/a/b/f.txt", Buffer.from("12345"), { mode: 0o600 });
      const info = await statFile.call(p, shared, "/tmp/ops/a/b/f.txt");
      assert.deepEqual([info.path, info.name, info.type, info.size, info.mode & 0o777], ["/tmp/ops/a/b/f.txt", "f.txt", "file", 5, 0o600]);
      await moveFile.call(p, shared, "/tmp/ops/a/b/f.txt", "/tmp/ops/moved/g.txt");
      assert.equal((await p.readFile(shared, "/tmp/ops/moved/g.txt")).toString(), "12345");
      await assert.rejects(statFile.call(p, shared, "/tmp/ops/a/b/f.txt"), isCode("not_found"));
      assert.equal(await removeFile.call(p, shared, "/tmp/ops"), true);
      assert.equal(await removeFile.call(p, shared, "/tmp/ops"), false, "nothing left to remove");
      await assert.rejects(p.listDir(shared, "/tmp/ops"), isCode("not_found"));
    });

    void it("ports: declared → portUrl reaches a server started in the sandbox (when the test can reach it); otherwise unsupported", async (ctx: TestContext) => {
      // In 3000–9999: the range every provider previews (Daytona allows no other).
      const port = 4000 + (process.pid % 5000);
      if (!p.capabilities.ports) {
        if (p.portUrl) await assert.rejects(p.portUrl(shared, port), isUnsupported);
        return;
      }
      assert.ok(p.portUrl, "ports declared: portUrl exists");
      await assert.rejects(p.portUrl("never-was", port), isCode("not_found"));
      const url = await p.portUrl(shared, port).catch((e: unknown) => e);
      if (url instanceof PaddockError && url.code === "unavailable" && url.details?.capability === undefined) {
        // e.g. a local sandbox without a network: nothing outside it can reach its ports.
        ctx.skip(`portUrl: ${url.message}`);
        return;
      }
      if (url instanceof Error) throw url;
      assert.equal(typeof url, "string");
      const target = new URL(url as string);
      assert.ok(["http:", "https:"].includes(target.protocol), String(url));
      if (!reachable(target)) {
        // The URL may name a host only the preview gateway's network reaches (a cloud's edge).
        ctx.skip(`portUrl answered ${target.origin}, which this test cannot reach`);
        return;
      }
      const serve = `if command -v python3 >/dev/null; then exec python3 -m http.server ${port} --bind 0.0.0.0; else exec busybox httpd -f -p ${port}; fi`;
      const server = p.exec(shared, { argv: ["sh", "-c", serve], cwd: "/tmp", timeoutMs: 60_000 });
      server.catch(() => undefined);
      try {
        await until(async () => (await fetch(url as string).catch(() => null))?.status === 200, 30_000, `a server in the sandbox at ${String(url)}`);
      } finally {
        await p.killProcesses(shared, "SIGKILL").catch(() => 0);
        await within(server.then(() => undefined, () => undefined), 90_000, "the killed preview server's exec to settle");
      }
    });
  });
}

/** `promise`, or a failure naming what did not happen within `ms` (never an unbounded wait). */
async function within<T>(promise: Promise<T>, ms: number, waitingFor: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${ms} ms waiting for ${waitingFor}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether this machine routes to the URL's host: loopback and private addresses only (a cloud's
 * public preview edge is not reachable from the test machine). */
function reachable(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return /^(127\.|10\.|172\.(1[6-9]|2\d|3[01])\.|192\.168\.|localhost$|::1$)/.test(host);
}
