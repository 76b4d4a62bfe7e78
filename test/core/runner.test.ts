import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { mkdir } from "node:fs/promises";
import { CommandRunner, PaddockError, reclaimRunDirs, runCommand, shellQuote } from "../../src/core/index.ts";
import { tempDir } from "../helpers/tmp.ts";

const execFileP = promisify(execFile);

/** Live children of a process (the helper must not keep zombies of finished commands). */
async function children(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8")).trim().split(/\s+/).filter(Boolean);
}

void describe("CommandRunner", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let scratch: string;
  const savedTmp = process.env.TMPDIR;
  before(async () => {
    dir = await tempDir("paddock-runner-test-");
    // The helper's private directory goes under TMPDIR: here, so the test sees that close removes it.
    scratch = join(dir.path, "tmp");
    await runCommand(["mkdir", scratch]);
    process.env.TMPDIR = scratch;
  });
  after(async () => {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    await dir.remove();
  });

  void it("runs argv like runCommand: status, stdout, stderr, errors with the command and its stderr", async () => {
    const r = new CommandRunner();
    try {
      assert.deepEqual(await r.run(["sh", "-c", "echo out; echo err >&2"]), { code: 0, stdout: "out\n", stderr: "err\n" });
      assert.deepEqual(await r.run(["sh", "-c", "echo o; echo e >&2; exit 3"], { allowFailure: true }), { code: 3, stdout: "o\n", stderr: "e\n" });
      await assert.rejects(r.run(["sh", "-c", "echo why >&2; exit 2"]), (e: unknown) => e instanceof PaddockError && e.code === "internal" && e.message === "sh -c echo why >&2; exit 2 failed: why");
      await assert.rejects(r.run(["paddock-no-such-program", "x"]), /paddock-no-such-program x failed: .*not found/);
      assert.equal((await r.run(["cat"], { input: "no newline at the end" })).stdout, "no newline at the end");
      assert.equal((await r.run(["cat"])).stdout, "", "stdin is empty without input");
    } finally {
      await r.close();
    }
  });

  void it("passes every argument through as is: nothing a caller passes reaches the shell", async () => {
    const r = new CommandRunner();
    const marker = join(dir.path, "injected");
    const args = ["a b", "it's", `"dq"`, "$(touch " + marker + ")", "`touch " + marker + "`", "; touch " + marker, "*", "$HOME", "line\nbreak", "\\", "'", "''", "", "-n"];
    try {
      const { stdout } = await r.run(["printf", "[%s]\\n", ...args]);
      assert.equal(stdout, args.map((a) => `[${a}]\n`).join(""));
      assert.equal(existsSync(marker), false);
      assert.throws(() => shellQuote("nul\0byte"), /NUL/);
    } finally {
      await r.close();
    }
  });

  void it("runs commands concurrently and reaps them", async () => {
    const r = new CommandRunner();
    const fifo = join(dir.path, "fifo");
    await runCommand(["mkfifo", fifo]);
    try {
      // The reader finishes only if the writer runs while it is in flight.
      const reader = r.run(["cat", fifo]);
      const writer = r.run(["sh", "-c", 'echo through > "$1"', "sh", fifo]);
      assert.equal((await reader).stdout, "through\n");
      await writer;
      const many = await Promise.all(Array.from({ length: 40 }, (_, i) => r.run(["echo", String(i)])));
      assert.deepEqual(many.map((x) => x.stdout), Array.from({ length: 40 }, (_, i) => `${i}\n`));
      const pid = r.pid;
      assert.ok(pid);
      // A reaped job is gone from the helper's children once its `wait` ran: the next command runs after it.
      await r.run(["true"]);
      assert.ok((await children(pid)).length <= 1, "finished commands are reaped");
    } finally {
      await r.close();
    }
  });

  void it("scripts: set -e, stdout and stderr together, a broken script does not break the helper", async () => {
    const r = new CommandRunner();
    try {
      assert.equal(await r.script("echo a\necho b >&2\ncat <<'EOF'\nheredoc $HOME\nEOF\n"), "a\nb\nheredoc $HOME\n");
      await assert.rejects(r.script("echo first\nfalse\necho never\n"), /script failed \(exit 1\): first$/);
      await assert.rejects(r.script("if then fi (\n"), /script failed/);
      await assert.rejects(r.script("echo 'unterminated\n"), /script failed/);
      assert.equal(await r.script("echo still here\n"), "still here\n");
      assert.equal((await r.run(["echo", "ok"])).stdout, "ok\n");
    } finally {
      await r.close();
    }
  });

  void it("a crashed helper fails its commands in flight and is replaced", async () => {
    const r = new CommandRunner();
    const fifo = join(dir.path, "fifo-crash");
    await runCommand(["mkfifo", fifo]);
    try {
      const blocked = r.run(["cat", fifo]);
      const first = r.pid;
      assert.ok(first);
      // `$$` in the helper's subshells is the helper itself.
      const killer = r.script("kill -9 $$\n");
      await assert.rejects(blocked, (e: unknown) => e instanceof PaddockError && e.code === "unavailable" && /cat .*fifo-crash failed: the command helper exited \(SIGKILL\)/.test(e.message));
      // The killer itself may report success first (it did its job) or fail with the helper.
      await killer.catch(() => undefined);
      assert.equal(r.pending, 0);
      assert.equal((await r.run(["echo", "again"])).stdout, "again\n");
      assert.notEqual(r.pid, first);
      // The orphaned reader is still waiting: let it finish.
      await writeFile(fifo, "bye\n");
    } finally {
      await r.close();
    }
  });

  void it("close waits for commands in flight, ends the helper and removes its files; later commands are spawned", async () => {
    const r = new CommandRunner();
    const fifo = join(dir.path, "fifo-close");
    await runCommand(["mkfifo", fifo]);
    const inFlight = r.run(["cat", fifo]);
    const pid = r.pid;
    assert.ok(pid);
    assert.equal((await readdir(scratch)).length, 1);
    const closed = r.close();
    await writeFile(fifo, "late\n");
    await closed;
    assert.equal((await inFlight).stdout, "late\n");
    assert.equal(existsSync(`/proc/${pid}`) && !(await readFile(`/proc/${pid}/stat`, "utf8")).includes(") Z "), false, "helper gone");
    assert.deepEqual(await readdir(scratch), []);
    assert.equal((await r.run(["echo", "direct"])).stdout, "direct\n");
    assert.equal(await r.script("echo s; echo e >&2\n"), "s\ne\n");
    assert.equal(r.pid, undefined);
    assert.deepEqual(await readdir(scratch), []);
  });

  void it("keeps the process alive only while a command is in flight; close never hangs", async () => {
    const runner = new URL("../../src/core/runner.ts", import.meta.url).pathname;
    const program = (body: string) =>
      execFileP(process.execPath, ["--import", "tsx", "--input-type=module", "-e", `import { CommandRunner } from ${JSON.stringify(runner)};\nconst r = new CommandRunner();\n${body}`], {
        timeout: 20_000,
        env: { ...process.env, TMPDIR: scratch },
      });
    // Idle and never closed: the process ends by itself.
    assert.equal((await program(`console.log((await r.run(["echo", "idle"])).stdout.trim());`)).stdout, "idle\n");
    // Nothing but a command in flight: the process waits for it.
    assert.equal((await program(`void r.run(["sh", "-c", "sleep 0.2; echo late"]).then((x) => console.log(x.stdout.trim()));`)).stdout, "late\n");
    // close as the last thing, after the helper went idle (unreferenced): it resolves.
    assert.equal((await program(`await r.run(["true"]);\nawait r.close();\nconsole.log("closed");`)).stdout, "closed\n");
    // Each helper removed its directory when its stdin closed, closed or not (tsx keeps a cache there).
    assert.deepEqual((await readdir(scratch)).filter((n) => n.startsWith("paddock-run-")), []);
  });

  void it("a process killed with its whole group (helper included) leaves its directory; the next runner reclaims it, never a live owner's", async () => {
    const runner = new URL("../../src/core/runner.ts", import.meta.url).pathname;
    const runDirs = async (): Promise<string[]> => (await readdir(scratch)).filter((n) => n.startsWith("paddock-run-")).sort();
    const before = await runDirs();
    // A server as a container or `kill -9 -<pgid>` ends it: the helper dies too, so its EOF trap never runs.
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e",
      `import { CommandRunner } from ${JSON.stringify(runner)};\nconst r = new CommandRunner();\nawait r.run(["true"]);\nvoid r.run(["sleep", "60"]);\nconsole.log("ready");`],
    { env: { ...process.env, TMPDIR: scratch }, detached: true, stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (b: Buffer) => b.toString().includes("ready") && resolve());
        child.once("exit", (code) => reject(new Error(`the child exited (${code}) before its runner started`)));
      });
      const theirs = (await runDirs()).filter((n) => !before.includes(n));
      assert.equal(theirs.length, 1, "the child's runner made one directory");
      const dead = join(scratch, theirs[0]!);
      // Its owner is alive: nobody reclaims it.
      assert.deepEqual(await reclaimRunDirs(scratch), []);
      assert.ok(existsSync(dead));
      process.kill(-child.pid!, "SIGKILL");
      await exited;
      assert.ok(existsSync(dead), "nothing removed the dead process's directory");
      // Neither an owner-less directory (being made) nor one whose pid was reused by a live process is kept for the wrong reason.
      const unowned = join(scratch, "paddock-run-unowned");
      await mkdir(unowned);
      const reused = join(scratch, "paddock-run-reused");
      await mkdir(reused);
      await writeFile(join(reused, "owner"), `${process.pid} 1`);
      assert.deepEqual((await reclaimRunDirs(scratch)).sort(), [dead, reused].sort());
      assert.ok(!existsSync(dead) && !existsSync(reused));
      assert.ok(existsSync(unowned), "a directory without an owner file is left alone");
      await runCommand(["rmdir", unowned]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(-child.pid!, "SIGKILL");
        await exited;
      }
    }
    assert.deepEqual(await runDirs(), before);
  });
});
