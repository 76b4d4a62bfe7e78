// The agent's file operations for E2B's filesystem service (stat, lsx, mkdir, mv, rm, watch) in
// a real session-mode sandbox, as the session user: what they report, that none of them acts
// through a planted symlink, and that they work where the guard denies `rm` and `mv` (they are
// syscalls in the agent, not programs) while commands still cannot run those programs.
import assert from "node:assert/strict";
import { existsSync, lstatSync, readFileSync, readlinkSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PaddockError } from "../../src/core/errors.ts";
import type { FileEvent } from "../../src/core/provider.ts";
import { AgentClient } from "../../src/providers/local/agent-client.ts";
import { launchSandbox, type LaunchedSandbox } from "../../src/providers/local/launcher.ts";
import { until } from "../helpers/wait.ts";
import type { Fixture, Prepared } from "./helpers.ts";
import { buildNative, prepareSandbox, rootOnly, startSandbox, teardown } from "./helpers.ts";

const isCode = (code: string, errno?: string) => (err: unknown) =>
  err instanceof PaddockError && err.code === code && (errno === undefined || err.details?.errno === errno);

void describe("agent file operations (session sandbox)", rootOnly, () => {
  let fx: Fixture;
  before(async () => {
    fx = await startSandbox({ mode: "session" });
  });
  after(() => fx?.stop());

  void it("stat reports type, mode, size, time, owner names; a symlink as the link plus its target", async () => {
    await fx.client.put("/workspace/s.txt", Buffer.from("12345"), 0o640);
    const file = await fx.client.stat("/workspace/s.txt");
    assert.equal(file.type, "file");
    assert.equal(file.name, "s.txt");
    assert.equal(file.path, "/workspace/s.txt");
    assert.equal(file.size, 5);
    assert.equal(file.mode, 0o640);
    assert.equal(file.owner, "paddock");
    assert.ok(Math.abs(file.mtime.seconds - Date.now() / 1000) < 300);
    const dir = await fx.client.stat("/workspace");
    assert.equal(dir.type, "dir");
    assert.match((await fx.client.stat("/etc/passwd")).owner, /^(nobody|65534)$/); // host-owned: the overflow id, named if the layer names it
    assert.equal((await fx.sh("ln -s /workspace/s.txt /workspace/ln && ln -s /nowhere /workspace/dangling")).code, 0);
    const link = await fx.client.stat("/workspace/ln");
    assert.equal(link.type, "symlink");
    assert.deepEqual(link.symlink, { target: "/workspace/s.txt", type: "file", mode: 0o640 });
    const dangling = await fx.client.stat("/workspace/dangling");
    assert.equal(dangling.symlink?.type, null);
    await assert.rejects(fx.client.stat("/workspace/nope"), isCode("not_found", "ENOENT"));
  });

  void it("lsx lists a tree to a depth, sorted, without entering symlinked directories", async () => {
    assert.equal((await fx.sh("mkdir -p /workspace/t/a/b/c && touch /workspace/t/a/b/c/deep /workspace/t/a/x && ln -s /etc /workspace/t/etc")).code, 0);
    const one = await fx.client.listTree("/workspace/t", 1);
    assert.deepEqual(one.map((e) => [e.path, e.type]), [["/workspace/t/a", "dir"], ["/workspace/t/etc", "symlink"]]);
    const all = await fx.client.listTree("/workspace/t", 10);
    assert.deepEqual(all.map((e) => e.path), ["/workspace/t/a", "/workspace/t/a/b", "/workspace/t/a/b/c", "/workspace/t/a/b/c/deep", "/workspace/t/a/x", "/workspace/t/etc"]);
    assert.equal(all.find((e) => e.name === "deep")?.path, "/workspace/t/a/b/c/deep");
    await assert.rejects(fx.client.listTree("/workspace/nope", 1), isCode("not_found"));
    await assert.rejects(fx.client.listTree("/workspace/s.txt", 1), isCode("invalid_argument", "ENOTDIR"));
  });

  void it("mkdir creates parents, says false for an existing directory, refuses a file in the way", async () => {
    assert.equal(await fx.client.mkdir("/workspace/m/n/o"), true);
    assert.equal((await fx.client.stat("/workspace/m/n/o")).type, "dir");
    assert.equal(await fx.client.mkdir("/workspace/m/n/o"), false);
    assert.equal(await fx.client.mkdir("/workspace/m"), false);
    await assert.rejects(fx.client.mkdir("/workspace/s.txt/sub"), isCode("invalid_argument", "ENOTDIR"));
    await assert.rejects(fx.client.mkdir("/etc/paddock-x"), isCode("forbidden", "EACCES"));
  });

  void it("mv renames, creates the destination's parents, and replaces a symlink rather than writing through it", async () => {
    await fx.client.put("/workspace/mv1", Buffer.from("one"));
    await fx.client.move("/workspace/mv1", "/workspace/deep/er/mv2");
    assert.equal((await fx.client.get("/workspace/deep/er/mv2")).toString(), "one");
    await assert.rejects(fx.client.stat("/workspace/mv1"), isCode("not_found"));
    // A link at the destination pointing at a file of the user's: the link is replaced, the file untouched.
    await fx.client.put("/workspace/victim", Buffer.from("keep"));
    assert.equal((await fx.sh("ln -s /workspace/victim /workspace/trap")).code, 0);
    await fx.client.put("/workspace/mv3", Buffer.from("new"));
    await fx.client.move("/workspace/mv3", "/workspace/trap");
    assert.equal((await fx.client.get("/workspace/victim")).toString(), "keep");
    assert.equal((await fx.client.stat("/workspace/trap")).type, "file");
    // Moving a link moves the link.
    assert.equal((await fx.sh("ln -s /etc/passwd /workspace/pl")).code, 0);
    await fx.client.move("/workspace/pl", "/workspace/pl2");
    assert.equal((await fx.client.stat("/workspace/pl2")).type, "symlink");
    await assert.rejects(fx.client.move("/workspace/none", "/workspace/x"), isCode("not_found"));
  });

  void it("rm removes trees, unlinks symlinks without following them, says false for nothing", async () => {
    assert.equal((await fx.sh("mkdir -p /workspace/keepdir && touch /workspace/keepdir/k && mkdir -p /workspace/r/s && touch /workspace/r/s/f && ln -s /workspace/keepdir /workspace/r/link")).code, 0);
    assert.equal(await fx.client.remove("/workspace/r"), true);
    await assert.rejects(fx.client.stat("/workspace/r"), isCode("not_found"));
    assert.equal((await fx.client.stat("/workspace/keepdir/k")).type, "file");
    // rm of a symlink to a directory: the link goes, the directory stays.
    assert.equal((await fx.sh("ln -s /workspace/keepdir /workspace/dl")).code, 0);
    assert.equal(await fx.client.remove("/workspace/dl"), true);
    assert.equal((await fx.client.stat("/workspace/keepdir/k")).type, "file");
    assert.equal(await fx.client.remove("/workspace/r"), false);
  });

  void it("a symlink in the path to /etc or out of the sandbox gets no write anywhere it should not", async () => {
    const before = readFileSync("/etc/passwd");
    assert.equal((await fx.sh("ln -s /etc /workspace/etc && ln -s ../../../../../../etc /workspace/up")).code, 0);
    await assert.rejects(fx.client.remove("/workspace/etc/passwd"), isCode("forbidden"));
    await assert.rejects(fx.client.mkdir("/workspace/etc/evil"), isCode("forbidden"));
    await fx.client.put("/workspace/payload", Buffer.from("x"));
    await assert.rejects(fx.client.move("/workspace/payload", "/workspace/up/passwd"), isCode("forbidden"));
    await assert.rejects(fx.client.move("/workspace/up/hostname", "/workspace/stolen"), isCode("forbidden"));
    assert.ok(readFileSync("/etc/passwd").equals(before));
    assert.ok(!existsSync("/etc/evil"));
    // The sandbox's /etc is still whole from the inside too.
    assert.match((await fx.client.get("/etc/passwd")).toString(), /paddock/);
    assert.equal(lstatSync(join(fx.upper, "workspace/etc")).isSymbolicLink(), true);
    assert.equal(readlinkSync(join(fx.upper, "workspace/etc")), "/etc");
  });

  void it("watch: recursive sees a file written in a subdirectory (also one created after the start); non-recursive does not", async () => {
    await fx.client.mkdir("/workspace/w/sub");
    const events: FileEvent[] = [];
    const flat: FileEvent[] = [];
    const w = await fx.client.watch("/workspace/w", { recursive: true, onEvent: (e) => events.push(e) });
    const f = await fx.client.watch("/workspace/w", { recursive: false, onEvent: (e) => flat.push(e) });
    try {
      await fx.client.put("/workspace/w/sub/a.txt", Buffer.from("a"));
      await fx.client.mkdir("/workspace/w/later");
      await until(async () => events.some((e) => e.name === "later" && e.type === "create"), 30_000, "watch event");
      await fx.client.put("/workspace/w/later/b.txt", Buffer.from("b"));
      // A directory tree made and filled at once: what landed before its watch existed is announced.
      assert.equal((await fx.sh("mkdir -p /workspace/w/fast/x && echo hi > /workspace/w/fast/x/f")).code, 0);
      await until(async () => events.some((e) => e.name === "fast/x/f" && e.type === "create"), 30_000, "create of fast/x/f");
      await fx.client.put("/workspace/w/top.txt", Buffer.from("t"));
      await fx.client.remove("/workspace/w/top.txt");
      await until(async () => events.some((e) => e.name === "top.txt" && e.type === "remove"), 30_000, "watch event");
      // put writes a temporary file and renames it: the final name arrives as a create (moved in).
      assert.ok(events.some((e) => e.name === "sub/a.txt" && e.type === "create"), JSON.stringify(events));
      assert.ok(events.some((e) => e.name === "later/b.txt" && e.type === "create"), JSON.stringify(events));
      await until(async () => flat.some((e) => e.name === "top.txt" && e.type === "remove"), 30_000, "watch event");
      assert.ok(!flat.some((e) => e.name.includes("/")), JSON.stringify(flat));
    } finally {
      w.close();
      f.close();
    }
    await w.done;
    await assert.rejects(fx.client.watch("/workspace/nope", { recursive: true, onEvent: () => undefined }), isCode("not_found"));
    await assert.rejects(fx.client.watch("/workspace/s.txt", { recursive: false, onEvent: () => undefined }), isCode("invalid_argument", "ENOTDIR"));
  });

  void it("a watch ends when its directory is removed", async () => {
    await fx.client.mkdir("/workspace/gone");
    const w = await fx.client.watch("/workspace/gone", { recursive: false, onEvent: () => undefined });
    await fx.client.remove("/workspace/gone");
    await w.done;
  });

  void it("refuses malformed requests and stays up", async () => {
    const raw = (payload: string): Promise<string> =>
      new Promise((resolve) => {
        const s = connect(join(fx.dir, "agent.sock"));
        const p = Buffer.from(payload, "latin1");
        const h = Buffer.alloc(5);
        h.write("R", 0, "latin1");
        h.writeUInt32BE(p.length, 1);
        let got = Buffer.alloc(0);
        s.on("data", (d: Buffer) => (got = Buffer.concat([got, d])));
        s.on("error", () => undefined);
        s.on("close", () => resolve(got.subarray(5).toString()));
        s.end(Buffer.concat([h, p]));
      });
    assert.match(await raw("stat\0"), /^error bad request: stat: missing path/);
    assert.match(await raw("lsx\0/workspace\0" + "0\0"), /^error bad request: lsx: depth/);
    assert.match(await raw("lsx\0/workspace\0" + "999\0"), /^error bad request: lsx: depth/);
    assert.match(await raw("watch\0/workspace\0" + "yes\0"), /^error bad request: watch: recursive/);
    assert.match(await raw("mv\0/workspace/a\0"), /^error bad request: mv: missing path/);
    assert.match(await raw("mkdir\0relative/x\0"), /\[EINVAL\]$/);
    assert.match(await raw(`stat\0/workspace/${"x".repeat(5000)}\0`), /\[ENAMETOOLONG\]$/);
    assert.equal((await fx.client.stat("/workspace")).type, "dir");
  });
});

void describe("agent file operations where the guard denies rm and mv", rootOnly, () => {
  let prep: Prepared;
  let sandbox: LaunchedSandbox | undefined;
  let client: AgentClient;
  before(async () => {
    const bin = buildNative();
    prep = await prepareSandbox({ mode: "session" });
    const dir = prep.record.dir;
    const deny = ["rm", "mv", "mkdir"].map((program) => ({ program, message: `paddock: '${program}' denied by guardrails.commands.deny (test)` }));
    sandbox = await launchSandbox(bin, { ...prep.opts, guard: { deny, file: join(dir, "guard"), log: join(dir, "guard.log") } }, join(dir, "launcher.log"));
    client = new AgentClient(prep.opts.listen);
  });
  after(() => teardown({ ...prep.record, ...sandbox }));

  void it("the file operations work; the programs still cannot run", async () => {
    assert.equal(await client.mkdir("/workspace/g/h"), true);
    await client.put("/workspace/g/h/f", Buffer.from("x"));
    await client.move("/workspace/g/h/f", "/workspace/g/f2");
    assert.equal(await client.remove("/workspace/g"), true);
    await assert.rejects(client.stat("/workspace/g"), isCode("not_found"));
    await client.put("/workspace/still", Buffer.from("x"));
    for (const argv of [["rm", "/workspace/still"], ["mv", "/workspace/still", "/workspace/moved"], ["mkdir", "/workspace/d"]]) {
      let err = "";
      const r = await client.exec({ argv, cwd: "/workspace", onStderr: (b) => (err += b.toString()) });
      assert.notEqual(r.exitCode, 0, argv.join(" "));
      assert.match(err, /denied by guardrails\.commands\.deny/);
    }
    assert.equal((await client.stat("/workspace/still")).type, "file");
  });
});
