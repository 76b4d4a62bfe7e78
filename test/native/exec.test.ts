// The agent protocol end to end, through AgentClient, in a real session-mode sandbox:
// exec semantics (streams, status mapping, stdin, env, cwd, timeout, abort, background jobs) and
// the file API, including `../` and planted-symlink attempts to reach host files.
import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { PaddockError } from "../../src/core/errors.ts";
import { AgentClient } from "../../src/providers/local/agent-client.ts";
import type { Fixture } from "./helpers.ts";
import { LAYER_PASSWD_MARK, USER_HOST_ID, rootOnly, startSandbox } from "./helpers.ts";

const isCode = (code: string) => (err: unknown) => err instanceof PaddockError && err.code === code;

void describe("agent exec (session sandbox)", rootOnly, () => {
  let fx: Fixture;
  before(async () => {
    fx = await startSandbox({ mode: "session" });
  });
  after(() => fx?.stop());

  void it("relays stdout, stderr and the exit code", async () => {
    const r = await fx.sh("echo out; echo err >&2; exit 3");
    assert.deepEqual(r, { code: 3, out: "out\n", err: "err\n", timedOut: false });
  });

  void it("passes stdin through (bytes and a stream), and EOF", async () => {
    const bytes = await fx.run(["cat"], { stdin: Buffer.from("hello\n") });
    assert.equal(bytes.out, "hello\n");
    const stream = await fx.run(["wc", "-c"], { stdin: Readable.from([Buffer.alloc(3 << 20, 0x61)]) });
    assert.equal(stream.out.trim(), String(3 << 20));
    const none = await fx.run(["cat"]);
    assert.equal(none.code, 0);
  });

  void it("streams large output intact", async () => {
    const r = await fx.sh("head -c 5000000 /dev/zero | tr '\\0' x");
    assert.equal(r.out.length, 5_000_000);
  });

  void it("uses the given env (PATH included) and cwd; default cwd is /workspace", async () => {
    const r = await fx.sh('echo "$FOO|$PATH|$(pwd)"', { env: { FOO: "bar baz", PATH: "/usr/bin:/bin" }, cwd: "/home/paddock" });
    assert.equal(r.out, "bar baz|/usr/bin:/bin|/home/paddock\n");
    assert.equal((await fx.run(["pwd"])).out, "/workspace\n");
  });

  void it("kills on timeout → 124", async () => {
    const t0 = Date.now();
    const r = await fx.run(["sleep", "30"], { timeoutMs: 300 });
    assert.equal(r.code, 124);
    assert.equal(r.timedOut, true);
    assert.ok(Date.now() - t0 < 5000);
  });

  void it("program not found → 127; bad cwd → 126 with a paddock: message", async () => {
    const nf = await fx.run(["no-such-program-xyz"]);
    assert.equal(nf.code, 127);
    assert.match(nf.err, /^paddock: exec: No such file or directory\n$/);
    const cwd = await fx.run(["true"], { cwd: "/nope" });
    assert.equal(cwd.code, 126);
    assert.equal(cwd.err, "paddock: chdir /nope: No such file or directory\n");
  });

  void it("a cwd outside the sandbox does not exist inside it", async () => {
    const r = await fx.run(["pwd"], { cwd: fx.dir });
    assert.equal(r.code, 126);
    assert.match(r.err, /chdir .*No such file or directory/);
    assert.equal((await fx.run(["pwd"], { cwd: "/../../.." })).out, "/\n");
  });

  void it("reports death by signal as 128+N with the name", async () => {
    const r = await fx.client.exec({ argv: ["sh", "-c", "kill -TERM $$"] });
    assert.equal(r.exitCode, 128 + 15);
    assert.equal(r.signal, "SIGTERM");
  });

  void it("does not wait for background children that keep the pipes open", async () => {
    const t0 = Date.now();
    const r = await fx.sh("sleep 100 & echo started");
    assert.equal(r.out, "started\n");
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    // ...and the background job keeps running in the session (dev servers).
    assert.match((await fx.run(["ps", "-e", "-o", "args="])).out, /sleep 100/);
  });

  void it("abort kills the command's process group", async () => {
    const ac = new AbortController();
    const p = fx.client.exec({ argv: ["sh", "-c", "sleep 61 & sleep 62"], signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    await assert.rejects(p);
    for (let i = 0; i < 50; i++) {
      const ps = (await fx.run(["ps", "-e", "-o", "args="])).out;
      if (!/sleep 6[12]/.test(ps)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.fail("aborted command still running");
  });

  void it("survives malformed requests", async () => {
    const { connect } = await import("node:net");
    const raw = (bytes: Buffer): Promise<string> =>
      new Promise((resolve) => {
        const s = connect(join(fx.dir, "agent.sock"));
        let got = Buffer.alloc(0);
        s.on("data", (d: Buffer) => (got = Buffer.concat([got, d])));
        s.on("error", () => undefined);
        s.on("close", () => resolve(got.subarray(5).toString()));
        s.end(bytes);
      });
    const f = (type: string, payload: string): Buffer => {
      const p = Buffer.from(payload, "latin1");
      const h = Buffer.alloc(5);
      h.write(type, 0, "latin1");
      h.writeUInt32BE(p.length, 1);
      return Buffer.concat([h, p]);
    };
    assert.match(await raw(Buffer.from([0x52, 0xff, 0xff, 0xff, 0xff])), /^error bad request: frame of/);
    assert.match(await raw(Buffer.from([0x52, 0, 0, 0, 9, 1])), /^error bad request: truncated frame/);
    assert.match(await raw(f("R", "nope")), /^error bad request: missing op/);
    assert.match(await raw(f("R", "nope\0")), /^error bad request: unknown op "nope"/);
    assert.match(await raw(f("R", "exec\0/\0")), /^error bad request: exec: missing fields/);
    assert.match(await raw(f("R", "exec\0/\0" + "0\0" + "9\0")), /^error bad request: exec: missing argv/);
    assert.match(await raw(f("R", "exec\0/\0" + "x\0" + "1\0true\0" + "0\0")), /^error bad request: exec: bad timeout_ms/);
    assert.match(await raw(f("R", "exec\0/\0" + "0\0" + "1\0true\0" + "1\0NOEQUALS\0")), /^error bad request: exec: bad env/);
    assert.match(await raw(f("R", "put\0/workspace/x\0" + "99\0")), /^error bad request: put: bad mode/);
    assert.match(await raw(f("R", "get\0")), /^error bad request: get: missing path/);
    assert.match(await raw(f("X", "")), /^error bad request: expected an R frame/);
    assert.equal((await fx.run(["true"])).code, 0, "agent still serves");
  });

  void it("maps a missing socket to unavailable", async () => {
    await assert.rejects(new AgentClient(join(fx.dir, "missing.sock")).exec({ argv: ["true"] }), isCode("unavailable"));
  });
});

void describe("agent files (session sandbox)", rootOnly, () => {
  let fx: Fixture;
  const hostSecret = (): string => join(fx.dir, "host-secret.txt");
  before(async () => {
    fx = await startSandbox({ mode: "session" });
    writeFileSync(hostSecret(), "HOST-SECRET\n", { mode: 0o644 });
  });
  after(() => fx?.stop());

  void it("put / get / ls round trip; files land in the upper dir as the session user", async () => {
    await fx.client.put("/workspace/a.txt", Buffer.from("alpha"), 0o600);
    assert.equal((await fx.client.get("/workspace/a.txt")).toString(), "alpha");
    await fx.client.put("/workspace/a.txt", Buffer.from("beta"));
    assert.equal((await fx.client.get("/workspace/a.txt")).toString(), "beta");
    const big = Buffer.alloc(3_000_000, 7);
    await fx.client.put("/workspace/big.bin", big);
    assert.ok((await fx.client.get("/workspace/big.bin")).equals(big));
    const st = statSync(join(fx.upper, "workspace/a.txt"));
    assert.equal(st.uid, USER_HOST_ID);
    assert.equal(st.mode & 0o777, 0o644);
    await fx.sh("mkdir /workspace/sub && ln -s a.txt /workspace/link");
    const names = (await fx.client.ls("/workspace")).map((e) => [e.name, e.type]);
    assert.deepEqual(names, [["a.txt", "file"], ["big.bin", "file"], ["link", "symlink"], ["sub", "dir"]]);
    const a = (await fx.client.ls("/workspace")).find((e) => e.name === "a.txt");
    assert.equal(a?.size, 4);
    assert.ok(Math.abs(Date.parse(a?.mtime ?? "") - Date.now()) < 60_000);
  });

  void it("maps errors: not_found, forbidden, invalid_argument", async () => {
    await assert.rejects(fx.client.get("/workspace/nope"), isCode("not_found"));
    await assert.rejects(fx.client.put("/nope/dir/x", Buffer.from("x")), isCode("not_found"));
    await assert.rejects(fx.client.put("/etc/x", Buffer.from("x")), isCode("forbidden"));
    await assert.rejects(fx.client.get("/dev/zero"), isCode("invalid_argument"));
    await assert.rejects(fx.client.ls("/workspace/nope"), isCode("not_found"));
  });

  void it("`../` stays inside the sandbox", async () => {
    const passwd = (await fx.client.get("/workspace/../../../../etc/passwd")).toString();
    assert.ok(passwd.includes(LAYER_PASSWD_MARK), "read the sandbox's /etc/passwd (from the layer), not the host's");
    assert.ok(!readFileSync("/etc/passwd", "utf8").includes(LAYER_PASSWD_MARK));
    const before = readFileSync("/etc/passwd");
    await assert.rejects(fx.client.put("/workspace/../../etc/passwd", Buffer.from("pwned")), isCode("forbidden"));
    assert.ok(readFileSync("/etc/passwd").equals(before));
    await assert.rejects(fx.client.get(`/workspace/../../..${hostSecret()}`), isCode("not_found"));
    await assert.rejects(fx.client.get("/workspace/../../etc/shadow"), isCode("forbidden"));
  });

  void it("planted symlinks to host paths are refused or resolve inside", async () => {
    await fx.sh(`ln -s /etc/shadow /workspace/shadow; ln -s ${hostSecret()} /workspace/secret; ln -s ${fx.dir} /workspace/hostdir`);
    await assert.rejects(fx.client.get("/workspace/shadow"), isCode("invalid_argument")); // O_NOFOLLOW
    await assert.rejects(fx.client.get("/workspace/secret"), isCode("invalid_argument"));
    await assert.rejects(fx.client.get("/workspace/hostdir/host-secret.txt"), isCode("not_found"));
    await assert.rejects(fx.client.ls("/workspace/hostdir"), isCode("not_found"));
    await assert.rejects(fx.client.put("/workspace/secret", Buffer.from("pwned")), isCode("invalid_argument"));
    await assert.rejects(fx.client.put("/workspace/hostdir/host-secret.txt", Buffer.from("pwned")), isCode("not_found"));
    await assert.rejects(fx.client.put("/workspace/shadow", Buffer.from("pwned")), isCode("invalid_argument"));
    assert.equal(readFileSync(hostSecret(), "utf8"), "HOST-SECRET\n");
    // Through exec as well: the host file is simply not there.
    const r = await fx.run(["cat", "/workspace/secret"]);
    assert.notEqual(r.code, 0);
    assert.ok(!r.out.includes("HOST-SECRET"));
  });
});
