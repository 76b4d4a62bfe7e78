import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import type { LayerStore, Provider, SandboxSpec } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";

export interface ProviderFixture {
  provider: Provider;
  layers: LayerStore;
  /** Resolves once the sandbox recorded in this state has no process left. */
  waitGone: (providerState: Record<string, unknown>) => Promise<void>;
  /** A second provider instance over the same machine state, as after a control-plane restart. */
  reopen: () => Promise<Provider>;
  cleanup: () => Promise<void>;
}

const spec = (id: string, over: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id,
  mode: "session",
  base: "host",
  layers: [],
  compute: { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
  hostname: "suite",
  env: { SUITE: "yes" },
  ...over,
});

const isCode = (code: string) => (e: unknown) => e instanceof PaddockError && e.code === code;

/**
 * Behaviours every Provider keeps (STYLE.md point 3), one shared fixture per implementation and a
 * fresh sandbox id per case. Each rule of the Provider doc comment is checked here.
 */
export function runProviderSuite(name: string, factory: () => Promise<ProviderFixture>): void {
  void describe(`Provider conformance: ${name}`, () => {
    let f: ProviderFixture;
    let p: Provider;
    let n = 0;
    const id = () => `suite-${process.pid}-${n++}`;
    const out = async (sid: string, argv: string[], extra: Partial<Parameters<Provider["exec"]>[1]> = {}) => {
      let s = "";
      const r = await p.exec(sid, { argv, onStdout: (b) => (s += b.toString()), ...extra });
      return { ...r, stdout: s };
    };
    before(async () => {
      f = await factory();
      p = f.provider;
    });
    after(async () => {
      for (const s of await p.list()) await p.stop(s);
      await f.cleanup();
    });

    void it("create → list → exec → stop; stopping again resolves false", async () => {
      const sid = id();
      await p.create(spec(sid));
      assert.ok((await p.list()).includes(sid));
      assert.equal((await out(sid, ["sh", "-c", "echo $SUITE $PWD"])).stdout, "yes /workspace\n");
      assert.equal(await p.stop(sid), true);
      assert.equal((await p.list()).includes(sid), false);
      assert.equal(await p.stop(sid), false);
    });

    void it("stop of an unknown id resolves false; calls on it reject not_found", async () => {
      assert.equal(await p.stop("never-was"), false);
      await assert.rejects(p.exec("never-was", { argv: ["true"] }), isCode("not_found"));
      await assert.rejects(p.readFile("never-was", "/etc/hostname"), isCode("not_found"));
      await assert.rejects(p.writeFile("never-was", "/tmp/x", Buffer.from("x")), isCode("not_found"));
      await assert.rejects(p.listDir("never-was", "/"), isCode("not_found"));
    });

    void it("create with a live id rejects conflict; with an unknown layer rejects not_found", async () => {
      const sid = id();
      await p.create(spec(sid));
      await assert.rejects(p.create(spec(sid)), isCode("conflict"));
      await p.stop(sid);
      await assert.rejects(p.create(spec(id(), { layers: ["no-such-layer"] })), isCode("not_found"));
    });

    void it("exit codes: status, 127 not found, 124 timeout, 128+N for a signal", async () => {
      const sid = id();
      await p.create(spec(sid));
      assert.equal((await p.exec(sid, { argv: ["sh", "-c", "exit 7"] })).exitCode, 7);
      assert.equal((await p.exec(sid, { argv: ["definitely-not-a-program"] })).exitCode, 127);
      const slow = await p.exec(sid, { argv: ["sleep", "30"], timeoutMs: 200 });
      assert.deepEqual([slow.exitCode, slow.timedOut], [124, true]);
      const killed = await p.exec(sid, { argv: ["sh", "-c", "kill -TERM $$"] });
      assert.deepEqual([killed.exitCode, killed.signal], [143, "SIGTERM"]);
      await p.stop(sid);
    });

    void it("stdin from bytes and from a stream; cwd and env per exec", async () => {
      const sid = id();
      await p.create(spec(sid));
      assert.equal((await out(sid, ["cat"], { stdin: Buffer.from("bytes\n") })).stdout, "bytes\n");
      assert.equal((await out(sid, ["wc", "-c"], { stdin: Readable.from([Buffer.alloc(300_000, 97)]) })).stdout.trim(), "300000");
      assert.equal((await out(sid, ["sh", "-c", "echo $PWD $X"], { cwd: "/tmp", env: { X: "x1" } })).stdout, "/tmp x1\n");
      await p.stop(sid);
    });

    void it("aborting an exec kills the command", async () => {
      const sid = id();
      await p.create(spec(sid));
      const abort = new AbortController();
      const running = p.exec(sid, { argv: ["sleep", "60"], signal: abort.signal });
      setTimeout(() => abort.abort(), 100);
      await assert.rejects(running);
      assert.equal((await out(sid, ["sh", "-c", "pgrep -x sleep || echo none"])).stdout, "none\n");
      await p.stop(sid);
    });

    void it("killProcesses: every process but init gets the signal, running execs report it, the sandbox takes commands again", async () => {
      await assert.rejects(p.killProcesses("never-was"), isCode("not_found"));
      const sid = id();
      await p.create(spec(sid));
      // Started, then proven running by its own output (not by waiting a while).
      let ready!: () => void;
      const started = new Promise<void>((r) => (ready = r));
      const trapped = p.exec(sid, {
        argv: ["sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; sleep 60 & wait"],
        onStdout: (b) => (b.toString().includes("ready") ? ready() : undefined),
      });
      await started;
      assert.equal((await out(sid, ["sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo bg"])).stdout, "bg\n");
      assert.ok((await p.killProcesses(sid, "SIGTERM")) >= 3, "the shell, its sleep and the background sleep");
      assert.equal((await trapped).exitCode, 3, "a TERM trap runs: the signal is delivered as sent");
      let spinning!: () => void;
      const spun = new Promise<void>((r) => (spinning = r));
      const stubborn = p.exec(sid, {
        argv: ["sh", "-c", "trap '' TERM INT; echo ready; while :; do :; done"],
        onStdout: () => spinning(),
      });
      await spun;
      assert.ok((await p.killProcesses(sid)) >= 1);
      assert.deepEqual([(await stubborn).exitCode, (await stubborn).signal], [137, "SIGKILL"]);
      assert.equal((await out(sid, ["sh", "-c", "pgrep -x sleep || echo none"])).stdout, "none\n");
      await p.stop(sid);
    });

    void it("files: write, read back byte for byte, list with mode and size; missing → not_found", async () => {
      const sid = id();
      await p.create(spec(sid));
      const data = Buffer.from([0, 255, 1, 2, 10, 13]);
      await p.writeFile(sid, "/workspace/bin.dat", data, { mode: 0o640 });
      assert.deepEqual(await p.readFile(sid, "bin.dat"), data);
      const e = (await p.listDir(sid, "/workspace")).find((x) => x.name === "bin.dat");
      assert.deepEqual([e?.type, e?.mode, e?.size], ["file", 0o640, 6]);
      await assert.rejects(p.readFile(sid, "/workspace/missing"), isCode("not_found"));
      await p.stop(sid);
    });

    void it("two sandboxes from the same layers do not see each other's writes", async () => {
      const [a, b] = [id(), id()];
      await p.create(spec(a));
      await p.create(spec(b));
      await p.writeFile(a, "/workspace/mine", Buffer.from("a"));
      await assert.rejects(p.readFile(b, "/workspace/mine"), isCode("not_found"));
      await p.stop(a);
      await p.stop(b);
    });

    void it("a build sandbox runs as root inside; stop with commitAs keeps its writes as a layer", async () => {
      const sid = id();
      await p.create(spec(sid, { mode: "build" }));
      const r = await out(sid, ["sh", "-c", "id -u; echo built > /workspace/b.txt; mkdir -p /opt/tool && echo t > /opt/tool/t"]);
      assert.equal(r.stdout, "0\n");
      const layer = `suite-layer-${process.pid}-${n}`;
      await p.stop(sid, { commitAs: layer });
      assert.equal(await f.layers.has(layer), true);
      const s = id();
      await p.create(spec(s, { layers: [layer] }));
      assert.equal((await out(s, ["sh", "-c", "cat /workspace/b.txt /opt/tool/t; stat -c %U /workspace/b.txt; echo more >> /workspace/b.txt && echo writable"])).stdout, "built\nt\npaddock\nwritable\n");
      await p.stop(s);
    });

    void it("guard: a denied program does not run even from a shell; guardDenials reports it, [] for unknown ids", async () => {
      assert.deepEqual(await p.guardDenials("never-was"), []);
      const sid = id();
      const message = "paddock: 'rm' denied by guardrails.commands.deny (suite)";
      await p.create(spec(sid, { guard: { deny: [{ program: "rm", message }] } }));
      let err = "";
      const r = await out(sid, ["sh", "-c", "touch f; rm f; test -e f && echo kept"], { onStderr: (b) => (err += b.toString()) });
      assert.equal(r.stdout, "kept\n");
      assert.ok(err.includes(message), err);
      const denials = await p.guardDenials(sid);
      assert.equal(denials.length, 1);
      assert.equal(denials[0]?.program, "rm");
      await p.stop(sid);
      assert.deepEqual(await p.guardDenials(sid), []);
    });

    void it("recover after a restart: a live sandbox is found again, a dead one is gone and released", async () => {
      const [live, dead] = [id(), id()];
      const hLive = await p.create(spec(live));
      const hDead = await p.create(spec(dead));
      await p.writeFile(live, "/workspace/kept", Buffer.from("still here"));
      const again = await f.reopen();
      assert.equal(await again.recover(live, hLive.providerState), "running");
      assert.equal((await again.readFile(live, "/workspace/kept")).toString(), "still here");
      process.kill(hDead.providerState.initPid as number, "SIGKILL");
      await f.waitGone(hDead.providerState);
      assert.equal(await again.recover(dead, hDead.providerState), "gone");
      await assert.rejects(again.exec(dead, { argv: ["true"] }), isCode("not_found"));
      assert.equal(await again.stop(live), true);
      await p.close();
      p = again;
    });
  });
}
