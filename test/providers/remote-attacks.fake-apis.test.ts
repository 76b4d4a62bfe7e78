/**
 * Adversarial review of the remote providers (issue #13): each case is a defect found by review,
 * run against the provider's fake: the real Daytona SDK against test/fakes/daytona (whose
 * sandboxes are real local sandboxes), the real e2b SDK against Paddock's own E2B front end
 * (stand-in for E2B's cloud, as in e2b.paddock-as-fake-e2b.test.ts).
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { Daytona } from "@daytona/sdk";
import type { Provider, SandboxSpec } from "../../src/core/index.ts";
import { ExecSignals, PaddockError } from "../../src/core/index.ts";
import { openLayerStore, type ClosableLayerStore } from "../../src/layers/index.ts";
import { createLocalProvider } from "../../src/providers/local/index.ts";
import { daytonaDriver, parseDaytonaSettings, type DaytonaProvider } from "../../src/providers/daytona/index.ts";
import { e2bDriver, type E2bProvider } from "../../src/providers/e2b/index.ts";
import { startFakeDaytona, type FakeDaytona } from "../fakes/daytona/index.ts";
import { releaseHome, testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";
import { tempDir } from "../helpers/tmp.ts";

/** `promise`, or a failure naming what did not happen within `ms`. */
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

const isUnsupported = (e: unknown) => {
  assert.ok(e instanceof PaddockError, `expected unsupported, got ${String(e)}`);
  assert.equal(e.code, "unavailable", e.message);
  assert.equal(typeof e.details?.capability, "string", e.message);
  return true;
};

/** Words a shell would interpret if they were not quoted; each must reach the program as it is. */
const HOSTILE_ARGS = ["a'b", '"q"', "$(echo INJECTED)", "`echo INJECTED`", "x\ny", "-n", "--", "*", "$HOME", "\\", "", " lead", "a;b|c&d", "#hash"];

/** The hostile words printed one per line; a cwd full of shell syntax; a program name that starts with a dash; env values; NUL. */
async function hostileArgv(p: Provider, id: string): Promise<void> {
  const out = async (opts: Parameters<Provider["exec"]>[1]) => {
    let stdout = "";
    let stderr = "";
    const r = await p.exec(id, { ...opts, onStdout: (b) => (stdout += b.toString()), onStderr: (b) => (stderr += b.toString()) });
    return { ...r, stdout, stderr };
  };
  const printed = await out({ argv: ["printf", "[%s]\\n", ...HOSTILE_ARGS] });
  assert.equal(printed.stdout, HOSTILE_ARGS.map((a) => `[${a}]\n`).join(""), printed.stderr);
  const dir = "/tmp/it's $(x) `y`";
  assert.equal((await out({ argv: ["mkdir", "-p", dir] })).exitCode, 0);
  const cwd = await out({ argv: ["pwd"], cwd: dir });
  assert.equal(cwd.stdout, `${dir}\n`, cwd.stderr);
  // argv[0] "-a" is a program of that name (there is none: 127), never an option that makes
  // something else run (`exec -a x /bin/echo hijacked` would run echo).
  const dash = await out({ argv: ["-a", "x", "/bin/echo", "hijacked"] });
  assert.ok(!dash.stdout.includes("hijacked"), `a program other than argv[0] ran: ${dash.stdout}`);
  assert.equal(dash.exitCode, 127, dash.stderr);
  const env = await out({ argv: ["sh", "-c", 'printf %s "$WITH_QUOTE"'], env: { WITH_QUOTE: "it's $(no) `no`\n" } });
  assert.equal(env.stdout, "it's $(no) `no`\n");
  await assert.rejects(p.exec(id, { argv: ["echo", "a\0b"] }), (e: unknown) => e instanceof PaddockError);
}

let n = 0;
const specFor = (overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id: `rat-${process.pid}-${n++}`, mode: "session", base: "host", layers: [], hostname: "attacks", env: {},
  compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
  recipe: { templateId: "tpl-attacks", base: "host", steps: [] },
  ...overrides,
});

void describe("remote providers under attack: daytona against the fake Daytona API", () => {
  let home: { path: string; remove: () => Promise<void> };
  let layers: ClosableLayerStore | undefined;
  let local: Provider | undefined;
  let fake: FakeDaytona | undefined;
  let provider: DaytonaProvider | undefined;

  before(async () => {
    home = await tempDir();
    layers = await openLayerStore({ home: home.path, imageBytes: 2 * 2 ** 30 });
    local = await createLocalProvider({ home: home.path, layers });
    fake = await startFakeDaytona({ local });
    provider = (await daytonaDriver.create(
      { name: "daytona-attacks", settings: parseDaytonaSettings({ apiUrl: fake.apiUrl, pollIntervalMs: 30, createTimeoutSeconds: 120 }), credentials: { apiKey: fake.apiKey } },
      { home: home.path, log: () => undefined },
    )) as DaytonaProvider;
  });
  after(async () => {
    for (const id of (await provider?.list()) ?? []) await provider?.stop(id).catch(() => false);
    await provider?.close();
    await fake?.close();
    for (const id of (await local?.list()) ?? []) await local?.stop(id).catch(() => false);
    await layers?.close({ unmount: true });
    await releaseHome(home.path);
    await home.remove();
  });

  void it("argv, cwd and env with quotes, $(), backticks, newlines and leading dashes reach the program as they are; NUL is refused", async () => {
    const spec = specFor();
    await provider!.create(spec);
    try {
      await hostileArgv(provider!, spec.id);
    } finally {
      await provider!.stop(spec.id).catch(() => false);
    }
  });

  void it("recover only ever claims or removes this provider's own sandbox: another sandbox of the organization is left alone, running or stopped", async () => {
    const sdk = new Daytona({ apiKey: fake!.apiKey, apiUrl: fake!.apiUrl, useDeprecatedPolling: true });
    try {
      const foreign = await sdk.create({ image: "debian:12", autoStopInterval: 0, labels: { owner: "somebody-else" } }, { timeout: 120 });
      const exists = () => fake!.sandboxes().some((s) => s["id"] === foreign.id);
      assert.equal(await provider!.recover("rat-not-mine", { daytonaId: foreign.id }), "gone", "a running sandbox that is not this session's is not claimed");
      assert.ok(!(await provider!.list()).includes("rat-not-mine"));
      await foreign.stop();
      assert.equal(await provider!.recover("rat-not-mine", { daytonaId: foreign.id }), "gone");
      assert.ok(exists(), "recover deleted a stopped sandbox that was not this session's");
      await foreign.delete();
    } finally {
      await sdk[Symbol.asyncDispose]();
    }
  });

  void it("a signal sent to a running command is refused with unsupported or delivered (SIGKILL ends it), never silently dropped", async () => {
    const spec = specFor();
    await provider!.create(spec);
    try {
      const signals = new ExecSignals();
      let ready!: () => void;
      const up = new Promise<void>((r) => (ready = r));
      const running = provider!.exec(spec.id, { argv: ["sh", "-c", "echo up; exec sleep 120"], signals, timeoutMs: 110_000, onStdout: () => ready() });
      running.catch(() => undefined);
      await within(Promise.race([up, running.then(() => undefined)]), 60_000, "the command to start");
      // SIGTERM: Daytona cannot deliver it. The sender must hear so (the command may go on).
      let refused: unknown = null;
      try {
        signals.send("SIGTERM");
      } catch (err) {
        refused = err;
      }
      if (refused) isUnsupported(refused);
      else {
        const r = await within(running, 30_000, "the SIGTERMed command to end (the signal was accepted, so it must arrive)");
        assert.deepEqual([r.exitCode, r.signal], [143, "SIGTERM"]);
        return;
      }
      // SIGKILL is what Daytona can do: end the command.
      signals.send("SIGKILL");
      const r = await within(running, 30_000, "the SIGKILLed command to end");
      assert.deepEqual([r.exitCode, r.signal], [137, "SIGKILL"]);
    } finally {
      await provider!.stop(spec.id).catch(() => false);
    }
  });

  /** A second provider on the same fake with small limits, so passing them is cheap. */
  const bounded = async (limits: { maxOutputBytes?: number; maxStdinBytes?: number; stdinTimeoutMs?: number }) => {
    const p = (await daytonaDriver.create(
      { name: "daytona-bounded", settings: parseDaytonaSettings({ apiUrl: fake!.apiUrl, pollIntervalMs: 30, createTimeoutSeconds: 120, ...limits }), credentials: { apiKey: fake!.apiKey } },
      { home: home.path, log: () => undefined },
    )) as DaytonaProvider;
    const spec = specFor();
    try {
      await p.create(spec);
    } catch (err) {
      await p.close();
      throw err;
    }
    return {
      p, id: spec.id, close: async () => {
        await p.stop(spec.id).catch(() => false);
        await p.close();
      },
    };
  };

  void it("a command printing far more than maxOutputBytes is ended and its exec fails clearly; what the control plane downloads stays bounded", async () => {
    const cap = 2 ** 20;
    const { p, id, close } = await bounded({ maxOutputBytes: cap });
    try {
      // 32 MiB (32 × the cap) in 64 KiB pieces, then a sleep: without a cap the exec would download
      // the growing output on every poll and then wait out the sleep.
      const script = "i=0; while [ $i -lt 512 ]; do head -c 65536 /dev/zero | tr '\\0' y; i=$((i+1)); done; exec sleep 600";
      const servedBefore = fake!.logResponseSizes().length;
      let delivered = 0;
      const t0 = performance.now();
      await within(
        assert.rejects(p.exec(id, { argv: ["sh", "-c", script], onStdout: (b) => (delivered += b.length), onStderr: (b) => (delivered += b.length) }), (e: unknown) => {
          assert.ok(e instanceof PaddockError, String(e));
          assert.equal(e.code, "invalid_argument", e.message);
          assert.match(e.message, /output passed 1048576 bytes \(settings\.maxOutputBytes\)/);
          return true;
        }),
        60_000, "the exec over the output cap to end",
      );
      const sizes = fake!.logResponseSizes().slice(servedBefore);
      const largest = Math.max(...sizes);
      // Measured, loosely: the fake's logs answers carry the output twice (output and stdout), so
      // one answer with all 32 MiB would be 64 MiB. Each answer is at most twice the cap plus what
      // was written since the previous poll (the test's event loop runs both the fake and the
      // command's output pipe, so that stays small); the polls stop once the cap is passed.
      console.log(`# output cap ${cap}: delivered ${delivered} bytes; ${sizes.length} logs answers, largest ${largest} bytes, ${sizes.reduce((a, b) => a + b, 0)} in all; ${Math.round(performance.now() - t0)} ms`);
      assert.ok(delivered <= cap, `delivered ${delivered} bytes, over the ${cap}-byte cap`);
      assert.ok(largest < 16 * 2 ** 20, `one logs answer was ${largest} bytes for a command capped at ${cap}`);
      let left = "";
      await p.exec(id, { argv: ["sh", "-c", "pgrep -x sleep || pgrep -x head || echo none"], onStdout: (b) => (left += b.toString()) });
      assert.equal(left, "none\n", "the command over the cap was ended");
    } finally {
      await close();
    }
  });

  void it("stdin that never ends is refused within stdinTimeoutMs, stdin over maxStdinBytes is refused, and the sandbox takes commands after", async () => {
    const { p, id, close } = await bounded({ maxStdinBytes: 2 ** 20, stdinTimeoutMs: 1000 });
    try {
      const isRefusal = (what: RegExp) => (e: unknown) => {
        assert.ok(e instanceof PaddockError, String(e));
        assert.equal(e.code, "invalid_argument", e.message);
        assert.match(e.message, what);
        assert.match(e.message, /uploaded whole when it starts/);
        return true;
      };
      const silent = new Readable({ read() {} });
      await within(assert.rejects(p.exec(id, { argv: ["cat"], stdin: silent }), isRefusal(/did not end within 1000 ms \(settings\.stdinTimeoutMs\)/)), 30_000, "a never-ending, silent stdin to be refused");
      assert.ok(silent.destroyed, "the refused stream is not left open");
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const endless = new Readable({
        read() {
          setImmediate(() => this.push(chunk));
        },
      });
      await within(assert.rejects(p.exec(id, { argv: ["cat"], stdin: endless }), isRefusal(/stdin passed 1048576 bytes \(settings\.maxStdinBytes\)/)), 30_000, "a never-ending stdin to be refused");
      assert.ok(endless.destroyed);
      await assert.rejects(p.exec(id, { argv: ["cat"], stdin: Buffer.alloc(2 ** 20 + 1) }), isRefusal(/over 1048576/));
      let out = "";
      const r = await p.exec(id, { argv: ["wc", "-c"], stdin: Readable.from([Buffer.alloc(2 ** 20, 0x62)]), onStdout: (b) => (out += b.toString()) });
      assert.deepEqual([r.exitCode, out.trim()], [0, String(2 ** 20)], "stdin up to the cap is delivered whole");
    } finally {
      await close();
    }
  });
});

/**
 * An HTTP proxy in front of the E2B front end that forwards a create (`POST /sandboxes`, `/v2/sandboxes`) and, once E2B has
 * answered (the sandbox exists), drops the connection: the answer is lost, as on a network cut.
 */
async function dropCreateAnswers(upstream: string): Promise<{ url: string; dropped: () => number; close: () => Promise<void> }> {
  let dropped = 0;
  const server: Server = createServer((req, res) => {
    const target = new URL(req.url ?? "/", upstream);
    const out = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
      if (req.method === "POST" && /^(\/v\d+)?\/sandboxes$/.test(target.pathname)) {
        up.resume();
        up.on("end", () => {
          dropped++;
          res.destroy();
        });
        return;
      }
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    dropped: () => dropped,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

void describe("remote providers under attack: e2b against Paddock's E2B front end (fake E2B)", () => {
  let t: Awaited<ReturnType<typeof testServer>> | undefined;
  let proxy: Awaited<ReturnType<typeof dropCreateAnswers>> | undefined;
  const instances: E2bProvider[] = [];
  const instance = async (apiUrl: string) => {
    const p = (await e2bDriver.create(
      { name: "e2b-attacks", settings: e2bDriver.parseSettings({ apiUrl, sandboxUrl: t!.server.e2bUrl, domain: "e2b.paddock.test", defaultTemplate: "inner" }), credentials: { apiKey: t!.token } },
      { home: t!.home, log: () => undefined },
    )) as E2bProvider;
    instances.push(p);
    return p;
  };

  before(async () => {
    t = await testServer({ e2bPort: 0 });
    await t.client.environments.apply("runtime.yml", "name: inner\n");
    proxy = await dropCreateAnswers(t.server.e2bUrl!);
  });
  after(async () => {
    for (const p of instances) {
      for (const id of await p.list().catch((): string[] => [])) await p.stop(id).catch(() => false);
      await p.close();
    }
    await proxy?.close();
    await t?.cleanup();
  });

  void it("argv, cwd and env with quotes, $(), backticks, newlines and leading dashes reach the program as they are; NUL is refused", async () => {
    const p = await instance(t!.server.e2bUrl!);
    const spec = specFor();
    await p.create(spec);
    try {
      await hostileArgv(p, spec.id);
    } finally {
      await p.stop(spec.id).catch(() => false);
    }
  });

  void it("a PATH given for one exec (or by setEnv) is the PATH the command runs with (envd's login shell does not reset it)", async () => {
    const p = await instance(t!.server.e2bUrl!);
    const spec = specFor();
    await p.create(spec);
    try {
      const pathOf = async (env?: Record<string, string>) => {
        let out = "";
        await p.exec(spec.id, { argv: ["sh", "-c", 'printf %s "$PATH"'], ...(env ? { env } : {}), onStdout: (b) => (out += b.toString()) });
        return out;
      };
      assert.equal(await pathOf({ PATH: "/custom/bin:/usr/bin:/bin" }), "/custom/bin:/usr/bin:/bin");
      await p.setEnv(spec.id, { PATH: "/from/set-env:/usr/bin:/bin" });
      assert.equal(await pathOf(), "/from/set-env:/usr/bin:/bin");
    } finally {
      await p.stop(spec.id).catch(() => false);
    }
  });

  void it("a create whose answer is lost after E2B made the sandbox fails and leaves nothing running (or billed)", async () => {
    const cut = await instance(proxy!.url);
    const direct = await instance(t!.server.e2bUrl!);
    const spec = specFor();
    await assert.rejects(cut.create(spec), (e: unknown) => e instanceof PaddockError && e.code === "unavailable");
    assert.equal(proxy!.dropped(), 1, "E2B answered the create (the sandbox was made) and the answer was dropped");
    await until(async () => !(await direct.list()).includes(spec.id), 30_000, `no sandbox of session ${spec.id} left running at E2B`);
  });
});
