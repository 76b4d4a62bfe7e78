import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { PaddockClient } from "../../src/client/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";
import { detectCgroupLayout, installationScope, pidsUsage, sandboxCgroups } from "../../src/providers/local/index.ts";

/**
 * ../shared/attacks/sandbox.md, from inside real sessions through the real API: every escape must
 * fail, with the host and the other session untouched.
 */
void describe("sandbox isolation (attacks/sandbox.md)", () => {
  let client: PaddockClient;
  let home: string;
  let cleanup: () => Promise<void>;
  let a: string;
  let b: string;
  let hostListener: Server;
  let hostPort: number;
  /** A shell line in a session; a time-out fails with the line it was waiting for, not as a bare assertion. */
  const sh = async (id: string, script: string, timeoutMs = 20_000) => {
    const r = await client.sessions.run(id, { argv: ["sh", "-c", script], timeoutMs });
    assert.equal(r.timedOut, false, `timed out after ${timeoutMs} ms waiting for: ${script}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  };
  /** The session's work cgroup (where every command runs): its pids count is the real condition to wait on. */
  const workPids = async (id: string) => sandboxCgroups(await detectCgroupLayout(installationScope(home)), id).workPids;

  before(async () => {
    const t = await testServer();
    ({ client, home, cleanup } = t);
    const env = [
      "name: isolation",
      "compute:",
      "  cpu: 0.5",
      "  memory: 128MiB",
      "  disk: 64MiB",
      "  pids: 64",
      "  timeout: 10m",
    ].join("\n");
    await client.environments.apply("paddock.yml", env + "\n");
    a = (await client.sessions.start("isolation")).id;
    b = (await client.sessions.start("isolation")).id;
    hostListener = createServer((s) => s.end("host secret service\n"));
    await new Promise<void>((r) => hostListener.listen(0, "127.0.0.1", r));
    hostPort = (hostListener.address() as { port: number }).port;
  });
  after(async () => {
    hostListener?.close();
    await cleanup();
  });

  void it("runs as the unprivileged session user with no_new_privs and a seccomp filter", async () => {
    const r = await sh(a, "id -u; id -g; grep -E '^(NoNewPrivs|Seccomp|CapEff|CapPrm|CapBnd):' /proc/self/status | sort");
    // The bounding set keeps only KILL, SETGID, SETUID (the agent's needs); with no_new_privs no
    // process can gain even those back.
    assert.match(r.stdout, /^1000\n1000\nCapBnd:\s+0+e0\nCapEff:\s+0+\nCapPrm:\s+0+\nNoNewPrivs:\s+1\nSeccomp:\s+2\n$/);
  });

  void it("cannot read host secrets: /etc/shadow, the data directory, /proc/1/root", async () => {
    await writeFile(join(home, "canary.txt"), "control-plane-canary");
    const r = await sh(a, `cat /etc/shadow; ls ${home}; cat ${home}/canary.txt; cat ${home}/paddock.db; ls /proc/1/root/; echo done`);
    assert.doesNotMatch(r.stdout + r.stderr, /root:[^:]*:\d+:|control-plane-canary|SQLite format/);
    assert.match(r.stdout, /done/);
  });

  void it("does not see the host's shared temporary files (/var/tmp) nor write to the host's", async () => {
    const dir = await mkdtemp("/var/tmp/paddock-test-host-tmp-");
    try {
      await writeFile(join(dir, "host-private.txt"), "host-tmp-canary", { mode: 0o644 });
      await chmod(dir, 0o755);
      const r = await sh(a, `ls -A /var/tmp; cat ${dir}/host-private.txt; echo sandbox > /var/tmp/from-sandbox && echo wrote; echo done`);
      assert.doesNotMatch(r.stdout, /host-tmp-canary|paddock-test-host-tmp/, "neither listed nor read");
      assert.match(r.stderr, /No such file or directory/);
      assert.match(r.stdout, /wrote\ndone/);
      assert.equal(existsSync("/var/tmp/from-sandbox"), false, "the sandbox's /var/tmp is its own");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it("cannot see or touch another session's files", async () => {
    await client.files.write(b, "/workspace/b-only.txt", Buffer.from("session b private"));
    const r = await sh(a, "cat /workspace/b-only.txt; find / -xdev -name b-only.txt 2>/dev/null; echo done");
    assert.doesNotMatch(r.stdout, /session b private|b-only/);
  });

  void it("sees only its own processes, and kill -9 -1 hurts nobody else", async () => {
    const ps = await sh(a, "ls /proc | grep -E '^[0-9]+$' | wc -l");
    assert.ok(Number(ps.stdout.trim()) < 10, `saw ${ps.stdout.trim()} pids`);
    await sh(a, "kill -9 -1; true");
    assert.equal((await client.sessions.run(a, { argv: ["echo", "still here"] })).stdout, "still here\n");
    assert.equal((await client.sessions.run(b, { argv: ["echo", "b fine"] })).stdout, "b fine\n");
  });

  void it("cannot mount, create user namespaces, load modules, ptrace or write /proc/sys and /sys", async () => {
    const r = await sh(
      a,
      [
        "mount -t tmpfs x /tmp 2>/dev/null && echo MOUNTED",
        "unshare -Ur true 2>/dev/null && echo USERNS",
        "unshare -m true 2>/dev/null && echo MNTNS",
        "python3 -c 'import ctypes,os; l=ctypes.CDLL(None); print(\"INIT_MODULE\" if l.syscall(175,0,0,0)==0 else \"\")' 2>/dev/null",
        "echo evil > /proc/sys/kernel/hostname 2>/dev/null && echo PROCSYS",
        "echo 1 > /sys/kernel/mm/ksm/run 2>/dev/null && echo SYSFS",
        "python3 -c 'import ctypes; l=ctypes.CDLL(None); print(\"PTRACE\" if l.ptrace(16,1,0,0)==0 else \"\")' 2>/dev/null",
        "echo done",
      ].join("; "),
    );
    assert.doesNotMatch(r.stdout, /MOUNTED|USERNS|MNTNS|INIT_MODULE|PROCSYS|SYSFS|PTRACE/);
    assert.match(r.stdout, /done/);
  });

  void it("cannot use raw sockets, /dev/kvm or the host's block devices", async () => {
    const r = await sh(a, "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1); print(\"RAW\")' 2>/dev/null; ls /dev; cat /dev/vda 2>/dev/null | head -c1 | wc -c");
    assert.doesNotMatch(r.stdout, /RAW|kvm|vda|sda|nvme/);
  });

  void it("cannot gain privilege through setuid binaries", async () => {
    const r = await sh(a, "ls -l /usr/bin/su /usr/bin/passwd 2>/dev/null; su -c id root </dev/null 2>&1; sudo -n id 2>&1; /usr/bin/newgrp 2>&1; id -u");
    assert.doesNotMatch(r.stdout, /uid=0/);
    assert.match(r.stdout, /1000\n$/);
  });

  void it("cannot reach the host's services, the control plane or the metadata address", async () => {
    const port = new URL(client.url).port;
    const r = await sh(
      a,
      `for t in 127.0.0.1:${hostPort} 127.0.0.1:${port} 169.254.169.254:80 10.0.0.1:80 1.1.1.1:443; do ` +
        `h=\${t%:*}; p=\${t#*:}; timeout 3 bash -c "exec 3<>/dev/tcp/$h/$p && echo CONNECTED $t" 2>/dev/null; done; ip -o link | awk '{print $2}'; echo done`,
    );
    // Port 80/443 connections are redirected to the egress gateway (and judged there); nothing
    // else connects. The only links are loopback and the one to the gateway.
    assert.doesNotMatch(r.stdout, /CONNECTED 127\.0\.0\.1/);
    assert.doesNotMatch(r.stdout, new RegExp(`CONNECTED 127.0.0.1:${port}|CONNECTED 127.0.0.1:${hostPort}`));
    assert.match(r.stdout, /\nlo:\neth0@if\d+:\ndone\n$/);
    for (const line of r.stdout.split("\n").filter((l) => l.startsWith("CONNECTED"))) assert.match(line, /:(80|443)$/, `${line}: only 80/443 reach anything (the gateway)`);
  });

  void it("a fork bomb fills compute.pids of its session only; session kill ends it without a new process inside, and the session works again", async () => {
    const work = await workPids(a);
    // Every process forks forever and retries when refused, so the limit stays full until killed
    // (a shell bomb collapses by itself once forks fail, which proves nothing). Detached from the
    // exec (own output, background): the bomb outlives the command that lit it.
    const bomb = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.005)\n";
    const lit = await sh(a, `python3 -c '${bomb}' </dev/null >/dev/null 2>&1 & echo lit`);
    assert.equal(lit.stdout, "lit\n");
    // Wait on the real condition: the work group's pid count at its limit (never a sleep).
    const full = await until(async () => {
      const u = await pidsUsage(work);
      return u && u.current >= 64 ? u : null;
    }, 20_000, "the fork bomb to fill the work cgroup's pids.max (64)");
    assert.equal(full.max, 64, "the work group's limit is compute.pids");

    // While it is full: an exec is refused with the limit and the way out, and file operations work.
    const refused = await client.sessions.run(a, { argv: ["echo", "hello"] });
    assert.equal(refused.exitCode, 126);
    assert.equal(refused.stdout, "");
    assert.equal(refused.stderr, `paddock: session ${a} has reached compute.pids (64); 'paddock session kill ${a}' ends its processes\n`);
    await client.files.write(a, "/workspace/during-bomb.txt", Buffer.from("written while full"));
    assert.equal((await client.files.read(a, "/workspace/during-bomb.txt")).toString(), "written while full");
    assert.ok((await client.files.list(a, "/workspace")).some((e) => e.name === "during-bomb.txt"));
    // The other session is untouched.
    assert.equal((await client.sessions.run(b, { argv: ["echo", "ok"] })).stdout, "ok\n");

    const killed = await client.sessions.killProcesses(a);
    assert.ok(killed.signalled >= 60, `signalled ${killed.signalled} processes`);
    // It answers once they are gone: nothing is left in the work group, and its limit is back.
    assert.deepEqual(await pidsUsage(work), { current: 0, max: 64 });
    const again = await sh(a, "echo alive; cat /workspace/during-bomb.txt");
    assert.equal(again.stdout, "alive\nwritten while full");
    assert.equal((await client.sessions.get(a)).state, "running");
  });

  void it("memory past the limit is OOM-killed inside the session; the session lives on", async () => {
    const r = await sh(a, "python3 -c 'x = bytearray(512 * 1024 * 1024); print(\"ALLOCATED\")'; echo exit=$?");
    assert.doesNotMatch(r.stdout, /ALLOCATED/);
    assert.match(r.stdout, /exit=(137|1)/);
    assert.equal((await client.sessions.run(a, { argv: ["echo", "alive"] })).stdout, "alive\n");
  });

  void it("disk writes past compute.disk fail inside the sandbox and never fill the host", async () => {
    const r = await sh(a, "dd if=/dev/zero of=/workspace/fill bs=1M count=256 conv=fsync 2>&1; echo exit=$?");
    assert.match(r.stdout, /quota exceeded|No space left/i);
    assert.match(r.stdout, /exit=1\n$/);
    await sh(a, "rm -f /workspace/fill");
  });

  void it("file API paths cannot escape: ../ traversal and planted symlinks stay inside the sandbox", async () => {
    await writeFile(join(home, "host-only.txt"), "host file");
    const traversal = await client.files.read(a, "../../../../etc/passwd");
    assert.match(traversal.toString(), /^paddock:x:1000:1000:/m);
    await sh(a, `ln -sf ${home}/host-only.txt /workspace/link; ln -sf /etc/shadow /workspace/shadow`);
    await assert.rejects(client.files.read(a, "/workspace/link"), PaddockError);
    const shadow = await client.files.read(a, "/workspace/shadow").catch(() => Buffer.from(""));
    assert.doesNotMatch(shadow.toString(), /root:/);
    await assert.rejects(client.files.write(a, "/workspace/link", Buffer.from("overwrite")), PaddockError);
    assert.equal(await readFile(join(home, "host-only.txt"), "utf8"), "host file");
    const hostTmp = await readdir("/tmp");
    await client.files.write(a, "/tmp/../../tmp/written-by-session", Buffer.from("x"));
    assert.deepEqual((await readdir("/tmp")).filter((f) => f === "written-by-session"), []);
    assert.ok(hostTmp.length >= 0);
  });

  void it("exec with a cwd outside the sandbox stays inside it", async () => {
    const r = await client.sessions.run(a, { argv: ["sh", "-c", "pwd; ls"], cwd: `/../../..${home}` });
    assert.notEqual(r.exitCode, 0);
    const up = await client.sessions.run(a, { argv: ["sh", "-c", "cd /../../..; pwd; ls /run"], cwd: "/" });
    assert.doesNotMatch(up.stdout, /paddock|agent\.sock/);
  });
});
