// Escapes the sandbox must stop (/work/shared/attacks/sandbox.md), tried from inside as the agent
// would, in a session sandbox (uid 1000) and a build sandbox (root of its own user namespace).
// Each expects failure, with the host untouched.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import type { AddressInfo, Server } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Fixture } from "./helpers.ts";
import { ROOT_HOST_ID, USER_HOST_ID, isAlive, rootOnly, sandboxHostPids, startSandbox, statusField } from "./helpers.ts";

const SESSION_CAPS = (1n << 5n) | (1n << 6n) | (1n << 7n); // KILL, SETGID, SETUID
const BUILD_CAPS = [0, 1, 3, 4, 5, 6, 7, 10, 18, 29, 31].reduce((m, c) => m | (1n << BigInt(c)), 0n);
const capOf = (status: string, field: string): bigint => BigInt(`0x${/^.+$/m.exec(status.split(`${field}:\t`)[1] ?? "")?.[0]}`);

/** Raw syscalls with harmless arguments; prints {name: [return, errno]}. */
const SYSCALL_PROBE = `
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
calls = {"ptrace": (101, 0), "io_uring_setup": (425, 1, 0), "bpf": (321, 0, 0, 0), "keyctl": (250, 0),
         "perf_event_open": (298, 0, 0, 0, 0, 0), "userfaultfd": (323, 0), "kcmp": (312, 1, 1, 0, 0, 0),
         "open_by_handle_at": (304, 0, 0, 0), "fsopen": (430, 0, 0), "add_key": (248, 0, 0, 0, 0, 0),
         "setns": (308, 0, 0), "unshare": (272, 0x10000000), "clone3": (435, 0, 0),
         "init_module": (175, 0, 0, 0), "reboot": (169, 0, 0, 0, 0), "syslog": (103, 3, 0, 0),
         "personality_noaslr": (135, 0x0040000), "personality_query": (135, 0xffffffff),
         "clone_newns": (56, 0x00020000 | 17, 0, 0, 0, 0), "clone_newuser": (56, 0x10000000 | 17, 0, 0, 0, 0),
         "socket_packet_inet": (41, 2, 10, 0)}
out = {}
for name, (nr, *args) in calls.items():
    ctypes.set_errno(0)
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    out[name] = [r, ctypes.get_errno()]
print(json.dumps(out))
`;

/** Run `sleep` inside and find it from the host: its host pid and host uid. */
async function hostViewOfCommand(fx: Fixture): Promise<{ uid: string; pids: number[] }> {
  const ac = new AbortController();
  const running = fx.client.exec({ argv: ["sleep", "30"], signal: ac.signal }).catch(() => undefined);
  try {
    for (let i = 0; i < 200; i++) {
      // A process may exit between listing and reading (the agent's short-lived helpers): skip it.
      const comm = (p: number) => {
        try {
          return readFileSync(`/proc/${p}/comm`, "utf8");
        } catch {
          return "";
        }
      };
      const pid = sandboxHostPids(fx.sandbox.initPid).find((p) => comm(p) === "sleep\n");
      if (pid) return { uid: statusField(pid, "Uid"), pids: sandboxHostPids(fx.sandbox.initPid) };
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error("sleep not seen from the host");
  } finally {
    ac.abort();
    await running;
  }
}

for (const mode of ["session", "build"] as const) {
  void describe(`isolation (${mode} sandbox)`, rootOnly, () => {
    let fx: Fixture;
    const insideUid = mode === "build" ? 0 : 1000;
    const hostUid = mode === "build" ? ROOT_HOST_ID : USER_HOST_ID;
    before(async () => {
      fx = await startSandbox({ mode, launch: { masks: ["/var/log", "/etc/gshadow"] } });
    });
    after(() => fx?.stop());

    void it(`runs commands as uid ${insideUid} inside, host uid ${hostUid} outside; the agent is never host root`, async () => {
      assert.equal((await fx.run(["id", "-u"])).out, `${insideUid}\n`);
      const host = await hostViewOfCommand(fx);
      assert.equal(host.uid, `${hostUid}\t${hostUid}\t${hostUid}\t${hostUid}`);
      assert.match(statusField(fx.sandbox.initPid, "Uid"), new RegExp(`^${ROOT_HOST_ID}\\s`));
      for (const pid of host.pids) {
        let uid = "";
        try {
          uid = statusField(pid, "Uid").split("\t")[0] ?? "";
        } catch {
          continue; // exited meanwhile
        }
        assert.notEqual(uid, "0", `host pid ${pid} is host root`);
      }
    });

    void it("has no_new_privs, seccomp filter mode, and only its capability set", async () => {
      const status = (await fx.run(["cat", "/proc/self/status"])).out;
      assert.match(status, /^NoNewPrivs:\s+1$/m);
      assert.match(status, /^Seccomp:\s+2$/m);
      assert.equal(capOf(status, "CapBnd"), mode === "build" ? BUILD_CAPS : SESSION_CAPS);
      assert.equal(capOf(status, "CapEff"), mode === "build" ? BUILD_CAPS : 0n);
      assert.equal(capOf(status, "CapInh"), 0n);
      assert.equal(capOf(status, "CapAmb"), 0n);
    });

    void it("the seccomp filter answers EPERM itself (these would succeed or fail differently without it)", async () => {
      const r = await fx.run(["python3", "-c", SYSCALL_PROBE]);
      const got = JSON.parse(r.out) as Record<string, [number, number]>;
      const EPERM = 1;
      for (const [name, [ret, errno]] of Object.entries(got)) {
        if (name === "personality_query") assert.deepEqual([ret, errno], [0, 0], name);
        else if (name === "clone3") assert.deepEqual([ret, errno], [-1, 38], "clone3 → ENOSYS so libc falls back to clone");
        else assert.deepEqual([ret, errno], [-1, EPERM], name);
      }
      // x32 ABI (syscall number | 0x40000000): the process is killed with SIGSYS.
      const x32 = await fx.client.exec({ argv: ["python3", "-c", "import ctypes; ctypes.CDLL(None).syscall(0x40000000 + 39)"] });
      assert.equal(x32.signal, "SIGSYS");
      assert.match((await fx.run(["setarch", "x86_64", "-R", "true"])).err, /Operation not permitted/);
      assert.match((await fx.run(["python3", "-c", "import os; print(len(os.openpty()))"])).out, /^2$/m, "ptys still work");
    });

    void it("cannot read the host's /etc/shadow; masked paths are empty", async () => {
      const r = await fx.run(["cat", "/etc/shadow"]);
      assert.notEqual(r.code, 0);
      assert.match(r.err, /Permission denied/);
      assert.equal((await fx.run(["cat", "/etc/gshadow"])).out, "");
      assert.equal((await fx.run(["ls", "-A", "/var/log"])).out, "");
      assert.notEqual((await fx.run(["touch", "/var/log/x"])).code, 0);
    });

    void it("cannot mount, create user namespaces, set the hostname or write /proc/sys and /sys", async () => {
      assert.notEqual((await fx.run(["mount", "-t", "tmpfs", "x", "/mnt"])).code, 0);
      assert.match((await fx.run(["unshare", "-U", "true"])).err, /Operation not permitted/);
      assert.match((await fx.run(["unshare", "-r", "true"])).err, /Operation not permitted/);
      assert.notEqual((await fx.run(["unshare", "-m", "true"])).code, 0);
      assert.notEqual((await fx.run(["hostname", "evil"])).code, 0);
      assert.match((await fx.sh("echo evil > /proc/sys/kernel/hostname")).err, /Read-only file system/);
      assert.notEqual((await fx.sh("echo 1 > /sys/kernel/mm/ksm/run")).code, 0);
      assert.equal((await fx.run(["hostname"])).out, `paddock-${mode}\n`);
    });

    void it("cannot open raw or packet sockets", async () => {
      const py = (expr: string) => fx.run(["python3", "-c", `import socket; ${expr}`]);
      assert.match((await py("socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)")).err, /Operation not permitted/);
      assert.match((await py("socket.socket(socket.AF_INET6, socket.SOCK_RAW, 58)")).err, /Operation not permitted/);
      assert.match((await py("socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)")).err, /Operation not permitted/);
    });

    void it("has no /dev/kvm, no block devices, only the allowed device nodes", async () => {
      assert.notEqual((await fx.run(["test", "-e", "/dev/kvm"])).code, 0);
      assert.notEqual((await fx.run(["test", "-e", "/dev/vda"])).code, 0);
      const devs = (await fx.sh("ls /dev")).out.trim().split("\n").sort();
      assert.deepEqual(devs, ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]);
      assert.equal((await fx.sh("find / -xdev -type b 2>/dev/null | head -1; find /dev -type b | head -1")).out, "");
      assert.equal((await fx.run(["head", "-c", "3", "/dev/zero"])).out, "\0\0\0");
    });

    void it("cannot gain privilege through setuid binaries", async () => {
      if (mode === "session") {
        const su = await fx.sh("su -c id root </dev/null");
        assert.notEqual(su.code, 0);
        assert.doesNotMatch(su.out, /uid=0/);
        assert.match((await fx.run(["python3", "-c", "import os; os.setuid(0)"])).err, /Operation not permitted/);
        assert.notEqual((await fx.run(["passwd", "--status", "root"])).code, 0);
      } else {
        // Already root of its own namespace: su works, but only as that (host uid 100000) root.
        const su = await fx.sh("su -c 'cat /etc/shadow' root </dev/null");
        assert.notEqual(su.code, 0);
        assert.match(su.err, /Permission denied/);
      }
    });

    void it("sees only its own processes; /proc/1 is the agent and is not inspectable", async () => {
      const ps = (await fx.run(["ps", "-e", "-o", "pid=,comm="])).out.trim().split("\n");
      assert.ok(ps.length <= 8, ps.join("\n"));
      assert.ok(!ps.some((l) => /node|systemd|init/.test(l)), ps.join("\n"));
      assert.match(ps[0] ?? "", /^\s*1 paddock-agent$/);
      assert.notEqual((await fx.run(["ls", "/proc/1/root/"])).code, 0);
      assert.notEqual((await fx.run(["cat", "/proc/1/environ"])).code, 0);
      assert.notEqual((await fx.run(["readlink", "/proc/1/exe"])).code, 0);
    });

    void it("`kill -9 -1` leaves the agent alive and the host untouched", async () => {
      const canary = spawn("sleep", ["60"], { stdio: "ignore" });
      try {
        const r = await fx.sh("sleep 50 & kill -9 -1; echo survived").catch((e: Error) => ({ code: -1, out: e.message }));
        // In session mode the relay (root of the user ns) is out of reach; in build mode the
        // command is root and may take its own relay down with it, but never the agent.
        if (mode === "session") assert.equal(r.out, "survived\n");
        assert.equal((await fx.run(["true"])).code, 0, "agent still serves");
        assert.ok(isAlive(fx.sandbox.initPid));
        assert.ok(canary.pid !== undefined && isAlive(canary.pid), "host process survived");
      } finally {
        canary.kill("SIGKILL");
      }
    });

    void describe("network", () => {
      let server: Server;
      let port = 0;
      before(async () => {
        server = createServer((s) => s.end("HOST-SERVICE\n"));
        await new Promise<void>((r) => server.listen(0, "0.0.0.0", r));
        port = (server.address() as AddressInfo).port;
      });
      after(() => new Promise<void>((r) => server.close(() => r())));

      const connect = (host: string) =>
        fx.run(["python3", "-c", `import socket; s=socket.create_connection(("${host}", ${port}), 2); print(s.recv(100))`]);

      void it("has only a loopback interface, up", async () => {
        const links = (await fx.run(["ip", "-o", "link"])).out.trim().split("\n");
        assert.equal(links.length, 1);
        assert.match(links[0] ?? "", /^1: lo: <LOOPBACK,UP/);
      });

      void it("cannot reach the host's 127.0.0.1 service, the host's addresses, or the internet", async () => {
        const fromHost = await new Promise<string>((resolve) => {
          const c = createConnectionTo(port, resolve);
          c.on("error", () => resolve("error"));
        });
        assert.equal(fromHost, "HOST-SERVICE\n", "sanity: the service is up on the host");
        const local = await connect("127.0.0.1");
        assert.notEqual(local.code, 0);
        assert.match(local.err, /Connection refused/);
        for (const addr of hostAddresses()) {
          const r = await connect(addr);
          assert.notEqual(r.code, 0, `reached host address ${addr}`);
          assert.doesNotMatch(r.out, /HOST-SERVICE/);
        }
        const internet = await fx.run(["python3", "-c", 'import socket; socket.create_connection(("1.1.1.1", 80), 2)']);
        assert.match(internet.err, /Network is unreachable/);
      });
    });

    void it("writes land only in the upper dir", async () => {
      const file = mode === "build" ? "/usr/local/built-by-root.txt" : "/workspace/hello.txt";
      assert.equal((await fx.sh(`echo hi > ${file}`)).code, 0);
      const st = statSync(join(fx.upper, file));
      assert.equal(st.uid, hostUid);
      assert.equal(st.gid, hostUid);
      assert.ok(!existsSync(file), "not on the host root");
      assert.ok(!existsSync(join(fx.layer, file)), "not in the lower layer");
      // Host-owned files stay read-only, even for build-mode root (their owner is unmapped).
      assert.notEqual((await fx.sh("echo x >> /etc/hostname")).code, 0);
      assert.notEqual((await fx.sh("echo x > /usr/bin/evil")).code, 0);
    });
  });
}

function createConnectionTo(port: number, done: (s: string) => void) {
  let data = "";
  return createConnection({ port, host: "127.0.0.1" })
    .on("data", (d: Buffer) => (data += d.toString()))
    .on("end", () => done(data));
}

function hostAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((i) => i !== undefined && !i.internal && i.family === "IPv4")
    .map((i) => i?.address ?? "");
}
