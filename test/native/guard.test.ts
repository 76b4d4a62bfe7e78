// The exec guard (invariant 6): with deny [rm, sudo], no process in the sandbox runs a denied
// program, whatever starts it (commands from ../shared/attacks/commands.md). Each bypass asserts
// that the target file still exists, the exit status or error, the rule's line on stderr and the
// guard-log record. Then: allowed programs still run, memfds cannot be executed, setuid gains
// nothing, killing the supervisor kills the sandbox, launch refusals, and the latency it costs.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { GuardDenial } from "../../src/core/provider.ts";
import { PaddockError } from "../../src/core/errors.ts";
import { AgentClient } from "../../src/providers/local/agent-client.ts";
import type { LaunchedSandbox } from "../../src/providers/local/launcher.ts";
import { guardFileText, launchSandbox, readGuardLog } from "../../src/providers/local/launcher.ts";
import type { Prepared } from "./helpers.ts";
import { USER_HOST_ID, buildNative, isAlive, mountsMentioning, prepareSandbox, rootOnly, sandboxHostPids, statusField, teardown, waitGone } from "./helpers.ts";
import { until } from "../helpers/wait.ts";

const RM = "paddock: 'rm' denied by guardrails.commands.deny (runtime.yml:18)";
const SUDO = "paddock: 'sudo' denied by guardrails.commands.deny (runtime.yml:19)";
const DENY = [
  { program: "rm", message: RM },
  { program: "sudo", message: SUDO },
];
const LOADER = "/lib64/ld-linux-x86-64.so.2";

interface Guarded {
  prep: Prepared;
  sandbox?: LaunchedSandbox;
  log: string;
  client: AgentClient;
  run(argv: string[], cwd?: string): Promise<{ code: number; out: string; err: string }>;
  stop(): Promise<void>;
}

/** A session sandbox (host as base, test layer on a tmpfs) with extra layer files and, unless `guard` is false, the guard. */
async function startGuarded(guard = true, layerFiles: (layer: string) => void = () => undefined): Promise<Guarded> {
  const bin = buildNative();
  const prep = await prepareSandbox({ mode: "session" });
  const dir = prep.record.dir;
  const log = join(dir, "guard.log");
  let sandbox: LaunchedSandbox | undefined;
  const stop = () => teardown({ ...prep.record, ...sandbox });
  try {
    layerFiles(prep.layer);
    // A second tmpfs (as sessions have): exec from every writable mount must be watched.
    const base = { ...prep.opts, tmpfs: [...(prep.opts.tmpfs ?? []), { dst: "/run", size: "16m" }] };
    const opts = guard ? { ...base, guard: { deny: DENY, file: join(dir, "guard"), log } } : base;
    sandbox = await launchSandbox(bin, opts, join(dir, "launcher.log"));
  } catch (err) {
    await stop();
    throw err;
  }
  const client = new AgentClient(prep.opts.listen);
  const run: Guarded["run"] = async (argv, cwd = "/workspace") => {
    let out = "";
    let err = "";
    const r = await client.exec({ argv, cwd, env: { HOME: "/home/paddock" }, onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()) });
    return { code: r.exitCode, out, err };
  };
  return { prep, sandbox, log, client, run, stop };
}

/** Files the bypasses need, written into the test layer before launch. */
function layerFixtures(layer: string): void {
  // rm's bytes in a file that is not rm: only the content rule can recognise it.
  mkdirSync(join(layer, "opt/tools"), { recursive: true });
  copyFileSync("/usr/bin/rm", join(layer, "opt/tools/remover"));
  chmodSync(join(layer, "opt/tools/remover"), 0o755);
  // A sudo in the PATH (Debian's is not installed here): the guard must find and deny it.
  mkdirSync(join(layer, "usr/local/bin"), { recursive: true });
  writeFileSync(join(layer, "usr/local/bin/sudo"), "#!/bin/sh\necho sudo ran\n", { mode: 0o755 });
  const proj = join(layer, "workspace/proj");
  mkdirSync(join(proj, "dist"), { recursive: true });
  writeFileSync(join(proj, "dist/out.js"), "built\n");
  writeFileSync(join(proj, "package.json"), JSON.stringify({ name: "proj", version: "1.0.0", scripts: { clean: "rm -rf dist" } }));
  writeFileSync(join(proj, "Makefile"), "clean:\n\trm -rf dist\n");
  for (const p of [proj, join(proj, "dist"), join(proj, "dist/out.js"), join(proj, "package.json"), join(proj, "Makefile")])
    chownSync(p, USER_HOST_ID, USER_HOST_ID);
}

void describe("exec guard: every bypass ends with the denied program not running", rootOnly, () => {
  let g: Guarded;
  before(async () => {
    g = await startGuarded(true, layerFixtures);
  });
  after(() => g?.stop());

  let n = 0;
  /**
   * Run SCRIPT with bash in a fresh dir holding a file `x`; `x` must survive, stderr must carry
   * MESSAGE, and the log must have gained a record for PROGRAM whose reason matches REASON.
   */
  const attempt = async (script: string, want: { program?: string; reason: RegExp; message?: string; code?: number; argv?: string[] }) => {
    const dir = `/workspace/t${n++}`;
    assert.equal((await g.run(["sh", "-c", `mkdir -p ${dir} && touch ${dir}/x`])).code, 0);
    const before = (await readGuardLog(g.log)).length;
    const r = await g.run(want.argv ?? ["bash", "-c", script], dir);
    assert.equal((await g.run(["test", "-e", `${dir}/x`])).code, 0, `x was removed by: ${script}\n${r.err}`);
    if (want.code !== undefined) assert.equal(r.code, want.code, `exit status of ${script}: ${r.err}`);
    else assert.notEqual(r.code, 0, `${script} succeeded: ${r.err}`);
    assert.ok(r.err.includes(want.message ?? RM), `stderr of ${script} lacks the rule's line: ${JSON.stringify(r.err)}`);
    const added: GuardDenial[] = (await readGuardLog(g.log)).slice(before);
    const hit = added.find((d) => d.program === (want.program ?? "rm") && want.reason.test(d.reason));
    assert.ok(hit, `no log record for ${script}: ${JSON.stringify(added)}`);
    assert.match(hit.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(hit.pid > 1);
    return { ...r, added };
  };

  void it("the exec API itself: rm x → 126, the rule's line, then the kernel's error", async () => {
    const r = await attempt("", { argv: ["rm", "x"], code: 126, reason: /^same file$/ });
    assert.equal(r.err, `${RM}\npaddock: exec: Operation not permitted\n`);
    assert.deepEqual(
      r.added.map((d) => [d.program, d.path, d.reason]),
      [["rm", "/usr/bin/rm", "same file"]],
    );
  });

  // Spellings, wrappers and shells: all end in one execve of /usr/bin/rm.
  const direct = [
    "rm x", "/bin/rm x", "/usr/bin/rm x", "\\rm x", "'r''m' x", "r\\m x", '"rm" x', "command rm x", "env rm x", "env -i rm x",
    "nice rm x", "timeout 5 rm x", "nohup rm x", "setsid -w rm x", "stdbuf -o0 rm x", "ls; rm x", "ls && rm x", "false || rm x",
    "ls | rm x", "ls\nrm x", "(rm x)", "{ rm x; }", "ls & rm x", 'bash -c "rm x"', "sh -c 'rm x'", "eval rm x",
    "$(echo rm) x", "`echo rm` x", "a=rm; $a x", "$'\\x72\\x6d' x",
  ];
  for (const script of direct) {
    void it(`bash: ${JSON.stringify(script)}`, async () => {
      await attempt(script, { reason: /^same file$/ });
    });
  }

  void it("bash and dash report 126 themselves", async () => {
    assert.match((await attempt("rm x", { code: 126, reason: /^same file$/ })).err, /bash: line 1: \/usr\/bin\/rm: Operation not permitted/);
    const sh = await attempt("", { argv: ["sh", "-c", "rm x"], code: 126, reason: /^same file$/ });
    assert.match(sh.err, /sh: 1: rm: Operation not permitted/);
  });

  void it("xargs rm, find -exec rm, find -exec sh -c 'rm x'", async () => {
    assert.match((await attempt("echo x | xargs rm", { code: 126, reason: /^same file$/ })).err, /xargs: rm: Operation not permitted/);
    assert.match((await attempt("find . -name x -exec rm {} \\; ; ls x", { code: 0, reason: /^same file$/ })).err, /find: .rm.: Operation not permitted/);
    await attempt("find . -name x -exec sh -c 'rm x' \\; ; test -e x && exit 3", { code: 3, reason: /^same file$/ });
  });

  void it("python subprocess, node child_process, perl system", async () => {
    const py = await attempt(`python3 -c 'import subprocess; subprocess.run(["rm","x"])'`, { code: 1, reason: /^same file$/ });
    assert.match(py.err, /PermissionError: \[Errno 1\] Operation not permitted: 'rm'/);
    const node = await attempt(`node -e 'require("child_process").execSync("rm x")'`, { code: 1, reason: /^same file$/ });
    assert.match(node.err, /Command failed: rm x/);
    const perl = await attempt(`perl -e 'system("rm", "x"); print "status $? $!\\n"'`, { code: 0, reason: /^same file$/ });
    assert.match(perl.out, /^status -1 Operation not permitted$/m);
    await attempt(`perl -e 'system("rm x; true")'`, { code: 0, reason: /^same file$/ });
  });

  void it("allowed programs that run rm: npm run clean (rm -rf dist) and make clean", async () => {
    const env = "export npm_config_update_notifier=false npm_config_cache=/tmp/npm-cache;";
    const npm = await g.run(["bash", "-c", `${env} cd /workspace/proj && npm run clean`]);
    assert.notEqual(npm.code, 0);
    assert.ok(npm.err.includes(RM), npm.err);
    const make = await g.run(["bash", "-c", "cd /workspace/proj && make clean"]);
    assert.notEqual(make.code, 0);
    assert.ok(make.err.includes(RM), make.err);
    assert.match(make.err, /make: rm: Operation not permitted|make: \*\*\*/);
    assert.equal((await g.run(["cat", "/workspace/proj/dist/out.js"])).out, "built\n");
    const log = await readGuardLog(g.log);
    assert.ok(log.filter((d) => d.program === "rm").length >= 2);
  });

  void it("a symlink to rm, and a script whose interpreter is rm", async () => {
    await attempt("ln -s /bin/rm /tmp/d1; /tmp/d1 x", { code: 126, reason: /^same file$/ });
    await attempt("printf '#!/bin/rm\\n' > /tmp/s1; chmod +x /tmp/s1; /tmp/s1 x", { code: 126, reason: /^same file$/ });
  });

  void it("rm cannot be read, so it cannot be copied (nor mapped, nor fed to the loader)", async () => {
    const r = await attempt("cp /bin/rm /tmp/e1; s=$?; /tmp/e1 x; exit $s", { code: 1, reason: /^same file$/ });
    assert.match(r.err, /cp: cannot open '\/bin\/rm' for reading: Operation not permitted/);
    assert.match((await g.run(["python3", "-c", "open('/usr/bin/rm','rb')"])).err, /PermissionError/);
    assert.notEqual((await g.run(["sh", "-c", "test -e /tmp/e1"])).code, 0);
  });

  void it("a copy of rm's bytes from elsewhere: denied by content, wherever it is copied to", async () => {
    await attempt("/opt/tools/remover x", { code: 126, reason: /^same content as \/usr\/bin\/rm$/ });
    await attempt("cp /opt/tools/remover /tmp/r2 && /tmp/r2 x", { code: 126, reason: /^same content as \/usr\/bin\/rm$/ });
    const r = await attempt('d=$PWD; cp /opt/tools/remover /run/r3 && cd /run && ./r3 "$d/x"', { code: 126, reason: /^same content/ });
    assert.ok(r.added.some((d) => d.path === "/run/r3"));
  });

  void it("any file named rm is denied by name", async () => {
    const r = await attempt("mkdir -p /tmp/bin; printf '#!/bin/sh\\necho ran\\n' > /tmp/bin/rm; chmod +x /tmp/bin/rm; PATH=/tmp/bin:$PATH rm x", {
      code: 126,
      reason: /^name$/,
    });
    assert.doesNotMatch(r.out, /ran/);
    assert.ok(r.added.some((d) => d.path === "/tmp/bin/rm"));
  });

  void it("busybox rm x: a multi-call binary is denied as a whole", async () => {
    const r = await attempt("busybox rm x", { program: "busybox", code: 126, reason: /^multi-call binary$/, message: "paddock: 'busybox' denied" });
    assert.match(r.err, /a multi-call binary can run any program in guardrails.commands.deny/);
    await attempt("cp /bin/busybox /tmp/bb && /tmp/bb rm x", { program: "busybox", code: 1, reason: /^multi-call binary$/, message: "paddock: 'busybox' denied" });
  });

  void it("the dynamic loader run directly (on rm, on a copy of rm, and as a copy itself)", async () => {
    const msg = "paddock: running programs through the dynamic loader (ld-linux-x86-64.so.2) directly is denied";
    const want = { program: "ld-linux-x86-64.so.2", code: 126, reason: /^direct loader$/, message: msg };
    await attempt(`${LOADER} /bin/rm x`, want);
    await attempt(`${LOADER} /opt/tools/remover x`, want);
    await attempt(`cp ${LOADER} /tmp/myld && /tmp/myld /opt/tools/remover x`, want);
  });

  void it("memfd: no memfd can be executed (vm.memfd_noexec = 2 in the sandbox's pid namespace)", async () => {
    assert.equal((await g.run(["cat", "/proc/sys/vm/memfd_noexec"])).out, "2\n");
    const script = [
      "import os",
      "data = open('/bin/true', 'rb').read()",
      "def tryit(name, f):",
      "    try: f(); print(name, 'ok')",
      "    except OSError as e: print(name, 'failed', e.errno)",
      "tryit('mfd_exec', lambda: os.memfd_create('a', 0x10))",
      "fd = os.memfd_create('b', 0)",
      "os.write(fd, data)",
      "tryit('fchmod', lambda: os.fchmod(fd, 0o755))",
      "tryit('execve', lambda: os.execve(f'/proc/self/fd/{fd}', ['x'], {}))",
      "tryit('execveat', lambda: os.execve(fd, ['x'], {}))",
    ].join("\n");
    const r = await g.run(["python3", "-c", script]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^mfd_exec failed 13$/m); // EACCES
    assert.match(r.out, /^fchmod failed 1$/m); // EPERM: sealed non-executable
    assert.match(r.out, /^execve failed 13$/m);
    assert.match(r.out, /^execveat failed 13$/m);
  });

  void it("sudo (in the PATH) is denied; su and setuid programs gain nothing (no_new_privs)", async () => {
    const r = await attempt("sudo ls", { program: "sudo", code: 126, reason: /^same file$/, message: SUDO });
    assert.doesNotMatch(r.out, /sudo ran/);
    const su = await g.run(["bash", "-c", "su -c 'id -u' root </dev/null"]);
    assert.notEqual(su.code, 0);
    assert.doesNotMatch(su.out, /^0$/m);
    assert.match((await g.run(["grep", "NoNewPrivs", "/proc/self/status"])).out, /^NoNewPrivs:\s+1$/m);
    assert.equal(statusField(g.sandbox?.initPid ?? 0, "NoNewPrivs"), "1");
  });

  void it("allowed programs still run: ls, cat, sh, bash, node, python3, perl, a dynamic ELF copied to /tmp, a script in /run", async () => {
    const ok = async (argv: string[], out: RegExp) => {
      const r = await g.run(argv);
      assert.equal(r.code, 0, `${argv.join(" ")}: ${r.err}`);
      assert.match(r.out, out);
    };
    await ok(["ls", "/opt/tools"], /^remover$/m);
    await ok(["cat", "/workspace/proj/package.json"], /"clean"/);
    await ok(["sh", "-c", "echo sh"], /^sh$/m);
    await ok(["bash", "-c", "echo bash"], /^bash$/m);
    await ok(["node", "-e", "console.log(require('child_process').execSync('echo child').toString().trim())"], /^child$/m);
    await ok(["python3", "-c", "import subprocess; print(subprocess.run(['echo','py'], capture_output=True, text=True).stdout.strip())"], /^py$/m);
    await ok(["perl", "-e", "system('echo perl')"], /^perl$/m);
    await ok(["sh", "-c", "cp /bin/ls /tmp/myls && /tmp/myls /opt/tools"], /^remover$/m);
    await ok(["sh", "-c", "printf '#!/bin/sh\\necho script\\n' > /run/s.sh && chmod +x /run/s.sh && /run/s.sh"], /^script$/m);
    await ok(["sh", "-c", "ls -l /usr/bin/rm >/dev/null && command -v rm"], /^\/usr\/bin\/rm$/m);
  });
});

void describe("exec guard: supervisor, launch refusals, cost", rootOnly, () => {
  void it("killing the supervisor with SIGKILL kills the whole sandbox", async () => {
    const g = await startGuarded();
    try {
      const sb = g.sandbox as LaunchedSandbox;
      void g.run(["sleep", "60"]).catch(() => undefined);
      // Readiness: the sleep exists (the agent, its handler and the command), not a fixed wait.
      const pids = await until(async () => {
        const now = sandboxHostPids(sb.initPid);
        return now.length >= 3 ? now : null;
      }, 20_000, "the sleep to start in the sandbox");
      process.kill(sb.supervisorPid, "SIGKILL");
      for (const pid of pids) assert.ok(await waitGone(pid), `sandbox process ${pid} survived its supervisor`);
      assert.equal(isAlive(sb.initPid), false);
    } finally {
      await g.stop();
    }
  });

  void it("refuses bad guard options and files with exit 125, before doing anything", async () => {
    const bin = buildNative();
    const dir = await mkdtemp("/tmp/paddock-guard-cli-");
    try {
      const base = ["--rootfs", join(dir, "r"), "--listen", join(dir, "s"), "--user", "1000:1000", "--lower-abs", "/", "--upper", "/u", "--work", "/w"];
      const launch = (...args: string[]) => spawnSync(bin, ["launch", ...base, ...args], { encoding: "utf8" });
      let files = 0;
      const file = (text: string) => {
        const path = join(dir, `g${files++}`);
        writeFileSync(path, text);
        return path;
      };
      const log = join(dir, "log");
      const cases: [string[], RegExp][] = [
        [["--guard", join(dir, "g")], /--guard and --guard-log go together/],
        [["--guard", "rel", "--guard-log", log], /--guard must be an absolute path/],
        [["--guard", file("deny\trm\n"), "--guard-log", log], /line 1: expected deny<TAB>NAME<TAB>MESSAGE/],
        [["--guard", file("allow\trm\tm\n"), "--guard-log", log], /line 1: expected/],
        [["--guard", file("deny\ta/b\tm\n"), "--guard-log", log], /line 1: bad program name/],
        [["--guard", file("deny\t/usr/../bin/rm\tm\n"), "--guard-log", log], /bad program name/],
        [["--guard", file("deny\trm\tbad\u0001msg\n"), "--guard-log", log], /one printable line/],
        [["--guard", file(""), "--guard-log", log], /no deny rules/],
        [["--guard", join(dir, "missing"), "--guard-log", log], /--guard .*missing: No such file/],
        [["--guard", file("deny\trm\tm\n"), "--guard-log", join(dir, "no/such/dir/log")], /--guard-log .*: No such file/],
      ];
      for (const [args, re] of cases) {
        const r = launch(...args);
        assert.equal(r.status, 125, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, re);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it("launchSandbox: a guard log that cannot be opened fails the launch and leaves nothing", async () => {
    const bin = buildNative();
    const prep = await prepareSandbox({ mode: "session" });
    try {
      const dir = prep.record.dir;
      const opts = { ...prep.opts, guard: { deny: DENY, file: join(dir, "guard"), log: join(dir, "missing/guard.log") } };
      await assert.rejects(launchSandbox(bin, opts, join(dir, "launcher.log")), (err: unknown) => {
        assert.ok(err instanceof PaddockError && err.code === "unavailable");
        assert.match(err.message, /--guard-log .*missing\/guard.log: No such file/);
        return true;
      });
    } finally {
      await teardown(prep.record);
    }
    assert.deepEqual(mountsMentioning(prep.record.dir), []);
  });

  void it("guardFileText validates rules the way the launcher does", () => {
    assert.equal(guardFileText({ deny: DENY }), `deny\trm\t${RM}\ndeny\tsudo\t${SUDO}\n`);
    assert.equal(guardFileText({ deny: [{ program: "/usr/bin/rm", message: "m" }] }), "deny\t/usr/bin/rm\tm\n");
    for (const program of ["", "a/b", ".", "..", "r\tm", "r\nm", "/", "/usr/../bin/rm", "x".repeat(256)])
      assert.throws(() => guardFileText({ deny: [{ program, message: "m" }] }), /invalid|not a program name/i, program);
    for (const message of ["", "two\nlines", "tab\there", "x".repeat(1025)])
      assert.throws(() => guardFileText({ deny: [{ program: "rm", message }] }), /printable line/);
  });

  void it("exec latency with and without the guard (printed, not asserted)", async () => {
    const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)] ?? NaN;
    for (const guard of [false, true]) {
      const g = await startGuarded(guard);
      try {
        const xs: number[] = [];
        for (let i = 0; i < 200; i++) {
          const t0 = performance.now();
          await g.client.exec({ argv: ["true"] });
          xs.push(performance.now() - t0);
        }
        // 1000 fork+execs of a dynamic ELF inside (each passes two events: the program and its loader).
        const loop = await g.run(["bash", "-c", "s=$(date +%s%N); for i in $(seq 1000); do /bin/true; done; echo $(( ($(date +%s%N) - s) / 1000 ))"]);
        const perExecUs = Number(loop.out.trim()) / 1000;
        console.log(
          `perf guard=${guard}: exec API \`true\` round trip p50 ${pct(xs, 0.5).toFixed(2)} ms, p90 ${pct(xs, 0.9).toFixed(2)} ms (n=200); ` +
            `fork+exec of /bin/true inside ${perExecUs.toFixed(0)} µs each (n=1000)`,
        );
      } finally {
        await g.stop();
      }
    }
  });
});
