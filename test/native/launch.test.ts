// The launcher itself: strict CLI (exit 125 with a clear message), readiness and start errors
// through launchSandbox, no mount or process leaks, cgroup accounting and limits, teardown by
// SIGTERM, and sandboxes outliving the control plane that started them (invariant 9).
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { Server } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PaddockError } from "../../src/core/errors.ts";
import { AgentClient } from "../../src/providers/local/agent-client.ts";
import { launchSandbox } from "../../src/providers/local/launcher.ts";
import type { Fixture, FixtureRecord } from "./helpers.ts";
import { buildNative, isAlive, mountsMentioning, rootOnly, startSandbox, teardown, waitGone } from "./helpers.ts";

void describe("launch CLI", rootOnly, () => {
  let bin = "";
  let dir = "";
  before(async () => {
    bin = buildNative();
    dir = await mkdtemp("/tmp/paddock-cli-");
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const base = (): string[] => ["--rootfs", join(dir, "r"), "--listen", join(dir, "s"), "--user", "1000:1000", "--lower-abs", "/"];
  const rw = ["--upper", "/u", "--work", "/w"];
  const launch = (...args: string[]) => spawnSync(bin, ["launch", ...args], { encoding: "utf8" });

  const cases: [string, string[], RegExp][] = [
    ["a read-only root with one lower", [], /needs at least two lower dirs/],
    ["unknown option", ["--bogus"], /^error unknown option --bogus$/],
    ["missing value", ["--rootfs"], /^error option --rootfs needs a value$/],
    ["map to host root", ["--uid-map", "0 0 65536"], /mapping to host id 0 is not allowed/],
    ["map not at inside 0", ["--uid-map", "1 100000 10"], /must start at inside id 0/],
    ["unmapped user", ["--user", "70000:70000"], /is not mapped/],
    ["tmpfs option injection", ["--tmpfs", "/tmp", "1g,exec"], /expected a number/],
    ["lower with ':'", ["--layers-dir", "/l", "--lower", "a:b"], /not allowed/],
    ["lower escaping the layers dir", ["--layers-dir", "/l", "--lower", "../etc"], /'\.\.' is not allowed/],
    ["relative mask", ["--mask", "etc"], /must be an absolute path inside/],
    ["bad caps", ["--caps", "root"], /expected build or session/],
  ];
  for (const [name, extra, re] of cases) {
    void it(`rejects ${name} with exit 125`, () => {
      const r = launch(...base(), ...(extra.length ? rw : []), ...extra);
      assert.equal(r.status, 125);
      assert.match(r.stderr.trim(), re);
    });
  }

  void it("rejects a missing --user with exit 125", () => {
    const r = launch("--rootfs", "/x", "--listen", "/y", "--lower-abs", "/");
    assert.equal(r.status, 125);
    assert.equal(r.stderr, "error --user is required\n");
  });

  void it("never deletes a non-socket at --listen", () => {
    const file = join(dir, "precious");
    writeFileSync(file, "keep");
    const r = launch("--rootfs", join(dir, "r"), "--listen", file, "--user", "0:0", "--lower-abs", "/", "--upper", "/u", "--work", "/w");
    assert.equal(r.status, 125);
    assert.match(r.stderr, /exists and is not a socket/);
    assert.equal(readFileSync(file, "utf8"), "keep");
  });

  void it("agent mode refuses to run outside a sandbox", () => {
    const r = spawnSync(bin, ["agent", "--listen-fd", "0", "--user", "0:0"], { encoding: "utf8" });
    assert.equal(r.status, 125);
    assert.match(r.stderr, /only runs inside a sandbox/);
  });
});

void describe("launchSandbox", rootOnly, () => {
  void it("rejects with the launcher's error line and leaves nothing behind", async () => {
    const bin = buildNative();
    const dir = await mkdtemp("/tmp/paddock-fail-");
    try {
      mkdirSync(join(dir, "upper"));
      mkdirSync(join(dir, "work"));
      const opts = {
        lowerAbs: ["/"],
        upper: join(dir, "upper"),
        work: join(dir, "work"),
        rootfs: join(dir, "missing-rootfs"),
        user: { uid: 1000, gid: 1000 },
        listen: join(dir, "agent.sock"),
        caps: "session" as const,
      };
      await assert.rejects(launchSandbox(bin, opts, join(dir, "log")), (err: unknown) => {
        assert.ok(err instanceof PaddockError && err.code === "unavailable");
        assert.match(err.message, /error mount overlay on .*missing-rootfs: No such file or directory/);
        return true;
      });
      // A layer inside another lower on the same filesystem: overlayfs says ELOOP; we say why.
      mkdirSync(join(dir, "rootfs"));
      mkdirSync(join(dir, "layer"));
      const overlap = { ...opts, rootfs: join(dir, "rootfs"), layersDir: dir, lowers: ["layer"] };
      await assert.rejects(launchSandbox(bin, overlap, join(dir, "log")), /overlapping layers/);
      assert.deepEqual(mountsMentioning(dir), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

void describe("sandbox lifecycle", rootOnly, () => {
  let fx: Fixture;
  before(async () => {
    fx = await startSandbox({ mode: "session", cgroupLimits: { "pids.max": "48", "memory.limit_in_bytes": String(128 << 20) } });
  });
  after(() => fx?.stop());

  void it("mounts nothing on the host: the overlay exists only in the sandbox's mount namespace", async () => {
    assert.deepEqual(
      mountsMentioning(fx.dir).filter((l) => !l.includes(fx.layers)),
      [],
      "only the fixture's own layer tmpfs may appear",
    );
    const inside = (await fx.run(["cat", "/proc/self/mountinfo"])).out;
    assert.equal(inside.split("\n").filter((l) => l.split(" ")[4] === "/").length, 1, "one root mount");
    assert.ok(!inside.includes(fx.dir), "no host path in the sandbox's mount table");
  });

  void it("joins the given cgroups before creating namespaces (supervisor and sandbox)", async () => {
    for (const pid of [fx.sandbox.supervisorPid, fx.sandbox.initPid]) {
      const cg = readFileSync(`/proc/${pid}/cgroup`, "utf8");
      for (const dir of fx.cgroups) {
        const [controller, name] = dir.replace("/sys/fs/cgroup/", "").split("/");
        assert.match(cg, new RegExp(`:${controller}:/${name}$`, "m"), `pid ${pid} not in ${dir}`);
      }
    }
    // Inside, its own cgroup is the root of a private cgroup namespace.
    assert.match((await fx.run(["cat", "/proc/self/cgroup"])).out, /^\d+:pids:\/$/m);
  });

  void it("the pids limit stops a fork bomb inside; the host is unaffected", async () => {
    const r = await fx.sh("i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done 2>&1 | head -1; echo done", {
      timeoutMs: 10_000,
    });
    assert.match(r.out + r.err, /fork|Resource temporarily unavailable|Cannot fork/i);
    assert.ok(Number(readFileSync(join(fx.cgroups[0] ?? "", "pids.current"), "utf8")) <= 48);
    await fx.run(["pkill", "sleep"]);
    assert.equal(spawnSync("true").status, 0);
  });

  void it("the memory limit OOM-kills inside the sandbox only", async () => {
    const r = await fx.client.exec({ argv: ["python3", "-c", "b = bytearray(512 << 20); b[::4096] = b'x' * len(b[::4096])"] });
    assert.equal(r.signal, "SIGKILL");
    assert.equal(r.exitCode, 137);
    assert.ok(isAlive(fx.sandbox.initPid), "the agent survived");
    assert.equal((await fx.run(["true"])).code, 0);
  });

  void it("SIGTERM to the supervisor kills the whole sandbox and unmounts everything", async () => {
    await fx.sh("sleep 300 & sleep 301 &");
    const { supervisorPid, initPid } = fx.sandbox;
    process.kill(supervisorPid, "SIGTERM");
    assert.ok(await waitGone(supervisorPid), "supervisor exited");
    assert.ok(!isAlive(initPid), "sandbox init is gone");
    assert.equal(readFileSync(join(fx.cgroups[0] ?? "", "cgroup.procs"), "utf8"), "", "no process left in the cgroup");
    await fx.stop();
    assert.deepEqual(mountsMentioning(fx.dir), []);
    assert.ok(!existsSync(fx.dir));
  });
});

void describe("control-plane crash", rootOnly, () => {
  void it("the sandbox outlives the process that launched it", async () => {
    const script = new URL("./fixtures/launch-and-exit.ts", import.meta.url).pathname;
    const out = execFileSync(process.execPath, ["--import", "tsx", script], { encoding: "utf8" });
    const rec = JSON.parse(out.trim().split("\n").pop() ?? "{}") as FixtureRecord & { supervisorPid: number };
    try {
      assert.ok(isAlive(rec.supervisorPid));
      const r = await new AgentClient(join(rec.dir, "agent.sock")).exec({ argv: ["true"] });
      assert.equal(r.exitCode, 0);
    } finally {
      await teardown(rec);
    }
    assert.deepEqual(mountsMentioning(rec.dir), []);
  });

  void it("the supervisor exits 128+9 when its sandbox is killed", async () => {
    const fx = await startSandbox({ mode: "session" });
    try {
      // Watch a second supervisor we spawn ourselves, to read its exit status.
      const bin = buildNative();
      const sock = join(fx.dir, "second.sock");
      mkdirSync(join(fx.dir, "u2"));
      mkdirSync(join(fx.dir, "w2"));
      const args = ["launch", "--lower-abs", "/", "--upper", join(fx.dir, "u2"), "--work", join(fx.dir, "w2")];
      args.push("--rootfs", join(fx.dir, "rootfs"), "--user", "0:0", "--listen", sock, "--ready-fd", "3");
      const child = spawn(bin, args, { stdio: ["ignore", "ignore", "inherit", "pipe"] });
      let text = "";
      await new Promise<void>((resolve, reject) => {
        child.stdio[3]?.on("data", (d: Buffer) => (text += d.toString()).includes("ready") && resolve());
        child.stdio[3]?.on("close", () => reject(new Error(`no ready: ${text}`)));
      });
      const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      assert.equal(await exit, 137);
    } finally {
      await fx.stop();
    }
  });
});

void describe("mount and network options", rootOnly, () => {
  let fx: Fixture;
  let host = "";
  const netns = `paddock-test-${process.pid}`;
  let unixServer: Server;
  before(async () => {
    host = await mkdtemp("/tmp/paddock-binds-");
    chmodSync(host, 0o755); // mkdtemp makes it 0700: the sandbox user could not even look
    for (const d of ["ro", "rw", "hidden"]) mkdirSync(join(host, d));
    writeFileSync(join(host, "ro/data.txt"), "read-only data\n");
    writeFileSync(join(host, "hidden/secret.txt"), "HIDDEN\n");
    writeFileSync(join(host, "visible.txt"), "visible\n");
    unixServer = createServer((s) => s.end("HOST-UNIX\n"));
    await new Promise<void>((r) => unixServer.listen(join(host, "host.sock"), r));
    chmodSync(join(host, "host.sock"), 0o777);
    execFileSync("ip", ["netns", "add", netns]);
    execFileSync("ip", ["-n", netns, "link", "add", "paddock0", "type", "veth", "peer", "name", "paddock1"]);
    fx = await startSandbox({
      mode: "session",
      launch: {
        tmpfs: [{ dst: "/scratch", size: "1m" }], // and no tmpfs on /tmp: the host's /tmp shows through `/`
        roBinds: [{ src: join(host, "ro"), dst: "/mnt/ro" }],
        binds: [{ src: join(host, "rw"), dst: "/mnt/rw" }],
        masks: [join(host, "hidden")],
        netns: `/run/netns/${netns}`,
      },
    });
  });
  after(async () => {
    await fx?.stop();
    unixServer?.close();
    execFileSync("ip", ["netns", "del", netns]);
    await rm(host, { recursive: true, force: true });
  });

  void it("--ro-bind is readable, not writable; --bind writes through as the mapped user", async () => {
    assert.equal((await fx.run(["cat", "/mnt/ro/data.txt"])).out, "read-only data\n");
    assert.match((await fx.run(["touch", "/mnt/ro/x"])).err, /Read-only file system|Permission denied/);
    chmodSync(join(host, "rw"), 0o777);
    assert.equal((await fx.sh("echo hi > /mnt/rw/out.txt")).code, 0);
    assert.equal(statSync(join(host, "rw/out.txt")).uid, 101000);
  });

  void it("--tmpfs gives a sized, sandbox-owned temp dir", async () => {
    assert.equal((await fx.run(["stat", "-c", "%U %a", "/scratch"])).out, "root 1777\n");
    assert.notEqual((await fx.sh("head -c 2000000 /dev/zero > /scratch/big")).code, 0, "size limit");
  });

  void it("host paths show read-only through a `/` lower unless masked; host sockets are not connectable", async () => {
    assert.equal((await fx.run(["cat", join(host, "visible.txt")])).out, "visible\n");
    assert.notEqual((await fx.sh(`echo x > ${join(host, "visible.txt")}`)).code, 0);
    assert.equal((await fx.run(["ls", "-A", join(host, "hidden")])).out, "");
    const r = await fx.run(["python3", "-c", `import socket; s=socket.socket(socket.AF_UNIX); s.connect("${join(host, "host.sock")}")`]);
    assert.match(r.err, /Connection refused/);
    assert.match((await fx.run(["cat", join(fx.dir, "agent.sock")])).err, /No such device|Permission denied/);
  });

  void it("--netns joins the given network namespace", async () => {
    const links = (await fx.run(["ip", "-o", "link"])).out;
    assert.match(links, /paddock0/);
    assert.notEqual((await fx.run(["ip", "link", "set", "paddock0", "up"])).code, 0, "no CAP_NET_ADMIN over it");
  });
});
