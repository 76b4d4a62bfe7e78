// Services supervised inside real local sandboxes (native/supervise.c through the local provider):
// readiness by port and by command, dependency order, restarts and their limit, ready deadlines,
// `session kill`, a clean stop before a commit, and nothing left once the sandbox is gone. Run
// (root): node --import tsx --test --test-concurrency=1 test/services/provider.test.ts
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { LayerStore, Provider, SandboxSpec, ServiceSpec, ServiceStatus } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { openLayerStore } from "../../src/layers/index.ts";
import { createLocalProvider } from "../../src/providers/local/index.ts";
import { releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";

const rootOnly = { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, overlayfs, cgroups)" };

const svc = (name: string, over: Partial<ServiceSpec> = {}): ServiceSpec => ({
  name,
  command: "exec sleep 100000",
  user: "paddock",
  env: {},
  ready: { command: "true" },
  dataDirs: [],
  restartLimit: 3,
  dependsOn: [],
  ...over,
});

/** Host pids of every process in the sandbox whose pid 1 has host pid `initPid`. */
async function sandboxPids(initPid: number): Promise<number[]> {
  const { readlink } = await import("node:fs/promises");
  const ns = await readlink(`/proc/${initPid}/ns/pid`);
  const pids: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    if ((await readlink(`/proc/${name}/ns/pid`).catch(() => "")) === ns) pids.push(Number(name));
  }
  return pids;
}

const alive = async (pid: number): Promise<boolean> =>
  stat(`/proc/${pid}`).then(
    async () => !(await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "x) Z")).split(") ")[1]?.startsWith("Z"),
    () => false,
  );

void describe("services in a local sandbox", rootOnly, () => {
  let home: { path: string; remove: () => Promise<void> };
  let layers: LayerStore & { close(o?: { unmount?: boolean }): Promise<void> };
  let p: Provider;
  let n = 0;
  const id = () => `svc-${process.pid}-${n++}`;

  const create = async (services: ServiceSpec[], over: Partial<SandboxSpec> = {}) => {
    const sid = over.id ?? id();
    const handle = await p.create({
      id: sid,
      mode: "session",
      base: "host",
      layers: [],
      compute: { cpu: 1, memoryBytes: 512 * 2 ** 20, pids: 256, diskBytes: 512 * 2 ** 20 },
      hostname: "services",
      env: { FROM_SANDBOX: "yes" },
      services,
      ...over,
    });
    return { sid, state: handle.providerState };
  };
  const sh = async (sid: string, script: string) => {
    let out = "";
    let err = "";
    const r = await p.exec(sid, { argv: ["sh", "-c", script], onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()) });
    return { code: r.exitCode, out, err };
  };
  const byName = (all: ServiceStatus[], name: string): ServiceStatus => {
    const s = all.find((x) => x.name === name);
    assert.ok(s, `no status for ${name}`);
    return s;
  };
  /** Polls services() until `check` holds for the named service (a real condition, bounded). */
  const untilService = (sid: string, name: string, check: (s: ServiceStatus) => boolean, what: string) =>
    until(async () => {
      const s = byName(await p.services(sid), name);
      return check(s) ? s : null;
    }, 20_000, `${name} ${what}`);

  before(async () => {
    home = await tempDir();
    layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 2 * 2 ** 30 });
    p = await createLocalProvider({ home: home.path, layers });
  });
  after(async () => {
    for (const s of await p.list()) await p.stop(s).catch(() => undefined);
    await layers.close({ unmount: true });
    await releaseHome(home.path);
    await home.remove();
  });

  void it("starts redis-server, ready by port: the session reaches it; it runs as its user, in the session's work cgroup", async () => {
    const { sid, state } = await create([
      svc("redis", { command: "exec redis-server --port 6390 --save '' --appendonly no --daemonize no", ready: { port: 6390 } }),
      svc("plain", { env: { OWN: "1" } }),
    ]);
    const ready = await p.waitForServices(sid, 20_000);
    assert.deepEqual(ready.map((s) => [s.name, s.state, s.restarts, s.message]), [["redis", "ready", 0, null], ["plain", "ready", 0, null]]);
    const redis = byName(ready, "redis");
    assert.ok(typeof redis.pid === "number" && redis.pid > 1);
    assert.match(redis.logTail, /\[paddock\] starting \(as paddock, uid 1000\): exec redis-server/);
    // The supervisor's line once, after the start; the service may go on logging after it (redis
    // accepts connections a moment before it prints "Ready to accept connections").
    assert.equal(redis.logTail.split("\n").filter((l) => l === "[paddock] ready").length, 1, redis.logTail);
    assert.ok(redis.logTail.indexOf("[paddock] ready\n") > redis.logTail.indexOf("[paddock] starting"), redis.logTail);
    assert.ok(!Number.isNaN(Date.parse(redis.since)));
    const r = await sh(sid, "redis-cli -p 6390 set k v >/dev/null && redis-cli -p 6390 get k && ps -o user=,comm= -p " + String(redis.pid));
    assert.deepEqual([r.code, r.out], [0, "v\npaddock  redis-server\n"]);
    // The service's environment: the sandbox's, its own, and HOME/USER from its user's passwd entry.
    // (redis-server writes its process title over its environment: read another service's.)
    const env = await sh(sid, `tr '\\0' '\\n' < /proc/${byName(ready, "plain").pid}/environ | grep -E '^(FROM_SANDBOX|OWN|HOME|USER)=' | sort`);
    assert.equal(env.out, "FROM_SANDBOX=yes\nHOME=/home/paddock\nOWN=1\nUSER=paddock\n");
    // Counted with the session's processes (compute.pids), not in the agent's reserve.
    const work = await readFile(join(state.workPids as string, "cgroup.procs"), "utf8");
    const comms = await Promise.all(work.split("\n").filter(Boolean).map((pid) => readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")));
    assert.ok(comms.includes("redis-server\n"), `work cgroup holds: ${comms.join("")}`);
    // Readable inside the sandbox too.
    const inside = await sh(sid, "cat /run/paddock/services/status; stat -c '%U %a' /run/paddock/services/redis.log");
    assert.match(inside.out, /^paddock-services 1\nredis\tready\t0\t\d+\t\d+\t\nplain\tready\t0\t\d+\t\d+\t\nroot 644\n$/);
  });

  void it("starts a service only once the services it depends on are ready", async () => {
    const { sid } = await create([
      svc("first", { ready: { command: "test -f /tmp/go" } }),
      // Exits (and, with no restarts, fails) if it is started before `first` is ready.
      svc("second", { command: "test -f /tmp/go || exit 9; exec sleep 100000", dependsOn: ["first"], restartLimit: 0 }),
    ]);
    const waiting = await untilService(sid, "first", (s) => s.pid !== null, "running");
    assert.equal(waiting.state, "starting");
    const second = byName(await p.services(sid), "second");
    assert.deepEqual([second.state, second.pid, second.logTail], ["starting", null, ""]);
    assert.equal((await sh(sid, "touch /tmp/go")).code, 0);
    const ready = await p.waitForServices(sid, 20_000);
    assert.deepEqual(ready.map((s) => [s.name, s.state, s.restarts]), [["first", "ready"], ["second", "ready"]].map(([a, b]) => [a, b, 0]));
    assert.ok(Date.parse(byName(ready, "second").since) >= Date.parse(byName(ready, "first").since));
  });

  void it("restarts a service that was killed, and gives up past restart.limit with the reason", async () => {
    const { sid } = await create([svc("worker", { restartLimit: 2 })]);
    let s = byName(await p.waitForServices(sid, 20_000), "worker");
    for (const round of [1, 2]) {
      const before = s.pid;
      assert.equal((await sh(sid, `kill -KILL ${before}`)).code, 0);
      s = await untilService(sid, "worker", (x) => x.state === "ready" && x.pid !== before, `ready again after kill ${round}`);
      assert.equal(s.restarts, round);
    }
    assert.match(s.logTail, /\[paddock\] killed by SIGKILL\n\[paddock\] restarting in 200 ms \(restart 2 of 2 in a row\)\n/);
    await sh(sid, `kill -KILL ${s.pid}`);
    s = await untilService(sid, "worker", (x) => x.state === "failed", "failed");
    assert.deepEqual([s.restarts, s.pid, s.message], [2, null, "killed by SIGKILL; gave up after 2 restarts in a row (restart.limit 2)"]);
    await assert.rejects(p.waitForServices(sid, 5000), (e: unknown) => {
      assert.ok(e instanceof PaddockError && e.code === "unavailable");
      assert.match(e.message, /^service worker failed: killed by SIGKILL; gave up after 2 restarts in a row \(restart\.limit 2\)\nlast lines of its log \(\/run\/paddock\/services\/worker\.log\):\n/);
      assert.match(e.message, /\[paddock\] failed: killed by SIGKILL; gave up/);
      return true;
    });
  });

  void it("a crash-looping service fails; waitForServices rejects naming it with the end of its log; its dependents fail too", async () => {
    const { sid } = await create([
      // Never ready (so `user` cannot start in a moment between its start and its exit).
      svc("crash", { command: "echo 'boom: cannot open config' >&2; exit 3", ready: { command: "false" }, restartLimit: 1 }),
      svc("user", { dependsOn: ["crash"] }),
    ]);
    await assert.rejects(p.waitForServices(sid, 20_000), (e: unknown) => {
      assert.ok(e instanceof PaddockError && e.code === "unavailable");
      assert.match(e.message, /^service crash failed: exited with status 3; gave up after 1 restart in a row \(restart\.limit 1\)\n/);
      assert.match(e.message, /\n {2}boom: cannot open config\n/);
      assert.deepEqual([e.details?.service, e.details?.state], ["crash", "failed"]);
      return true;
    });
    const user = await untilService(sid, "user", (x) => x.state === "failed", "failed");
    assert.equal(user.message, "not started: it depends on crash, which failed");
  });

  void it("a start that misses its ready timeout is killed and counted; waitForServices' own timeout names the service", async () => {
    const { sid } = await create([
      svc("deaf", { command: "echo listening soon; exec sleep 100000", ready: { port: 9 }, readyTimeoutMs: 300, restartLimit: 0 }),
      svc("slow", { ready: { command: "test -f /tmp/never" } }),
    ]);
    const deaf = await untilService(sid, "deaf", (x) => x.state === "failed", "failed");
    assert.equal(deaf.message, "not ready within 300 ms (nothing accepted connections on port 9) (restart.limit is 0: not restarted)");
    assert.match(deaf.logTail, /listening soon\n\[paddock\] not ready within 300 ms: killing it\n/);
    const { sid: sid2 } = await create([svc("slow", { ready: { command: "test -f /tmp/never" } })]);
    const t0 = Date.now();
    await assert.rejects(p.waitForServices(sid2, 400), (e: unknown) => {
      assert.ok(e instanceof PaddockError && e.code === "unavailable");
      assert.match(e.message, /^service slow is not ready after 400 ms: it is starting\nlast lines of its log \(\/run\/paddock\/services\/slow\.log\):\n {2}\[paddock\] starting/);
      return true;
    });
    assert.ok(Date.now() - t0 < 5000);
    await p.stop(sid);
    await p.stop(sid2);
  });

  void it("session kill ends services too; the supervisor (spared) restarts them, counting the restart", async () => {
    const { sid } = await create([svc("keep", { restartLimit: 3 })]);
    const first = byName(await p.waitForServices(sid, 20_000), "keep");
    const signalled = await p.killProcesses(sid);
    assert.equal(signalled, 1); // `exec sleep`: the service is one process
    const again = await untilService(sid, "keep", (x) => x.state === "ready" && x.pid !== first.pid, "ready again");
    assert.equal(again.restarts, 1);
    assert.equal((await sh(sid, "echo still serving")).out, "still serving\n");
  });

  void it("a user that does not exist fails at once, without restarts", async () => {
    const { sid } = await create([svc("ghost", { user: "nosuchuser" })]);
    await assert.rejects(p.waitForServices(sid, 20_000), /service ghost failed: user "nosuchuser" does not exist in the sandbox's \/etc\/passwd \(create it in an install step\)/);
    assert.equal(byName(await p.services(sid), "ghost").restarts, 0);
  });

  void it("creates missing data dirs owned by the service's user (in a session, as the user itself)", async () => {
    const { sid } = await create([svc("data", { dataDirs: ["/home/paddock/data/db", "/tmp/cache"] })]);
    await p.waitForServices(sid, 20_000);
    assert.equal((await sh(sid, "stat -c '%U %a %n' /home/paddock/data/db /tmp/cache")).out, "paddock 700 /home/paddock/data/db\npaddock 700 /tmp/cache\n");
    // A parent the user cannot write: a clear failure, not a root-owned directory.
    const { sid: sid2 } = await create([svc("nodata", { dataDirs: ["/var/lib/svc-data"] })]);
    await assert.rejects(p.waitForServices(sid2, 20_000), /service nodata failed: cannot create data directory \/var\/lib\/svc-data as user paddock: Permission denied/);
  });

  void it("a build sandbox stops its services cleanly, in reverse order, before its layer is committed", async () => {
    const trap = (name: string) =>
      `trap 'echo ${name} stopped >> /var/lib/order/log; exit 0' TERM; echo ${name} up >> /var/lib/order/log; while :; do sleep 1 & wait $!; done`;
    const { sid, state } = await create(
      [
        svc("db", { command: trap("db"), dataDirs: ["/var/lib/order"], ready: { command: "grep -q 'db up' /var/lib/order/log" } }),
        svc("app", { command: trap("app"), dataDirs: ["/var/lib/order"], dependsOn: ["db"], ready: { command: "grep -q 'app up' /var/lib/order/log" } }),
      ],
      { mode: "build" },
    );
    await p.waitForServices(sid, 20_000);
    // Built as root, the data dir belongs to the service's user.
    assert.equal((await sh(sid, "stat -c '%U %a' /var/lib/order")).out, "paddock 700\n");
    const layer = `svc-commit-${process.pid}`;
    assert.equal(await p.stop(sid, { commitAs: layer }), true);
    try {
      const log = await readFile(join(layers.layerPath(layer), "var/lib/order/log"), "utf8");
      assert.equal(log, "db up\napp up\napp stopped\ndb stopped\n");
      assert.equal((await stat(join(layers.layerPath(layer), "var/lib/order"))).uid, 101000);
      // Stopped, not killed: the launcher's exit status is the agent's clean 0.
      assert.equal(await alive(state.initPid as number), false);
    } finally {
      await layers.remove(layer);
    }
  });

  void it("services die with the sandbox: nothing of it is left after stop", async () => {
    const { sid, state } = await create([svc("a"), svc("b", { dependsOn: ["a"] })]);
    await p.waitForServices(sid, 20_000);
    const pids = await sandboxPids(state.initPid as number);
    assert.ok(pids.length >= 4, `pids ${pids.join(",")}`); // agent, supervisor, 2 × `exec sleep` (and handlers in flight)
    await p.stop(sid);
    for (const pid of pids) assert.equal(await alive(pid), false, `pid ${pid} outlived its sandbox`);
    await assert.rejects(p.services(sid), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
  });

  void it("survives a control-plane restart: a second provider reads the same services", async () => {
    const { sid, state } = await create([svc("lasting")]);
    await p.waitForServices(sid, 20_000);
    const again = await createLocalProvider({ home: home.path, layers });
    assert.equal(await again.recover(sid, state), "running");
    assert.deepEqual((await again.waitForServices(sid, 5000)).map((s) => [s.name, s.state]), [["lasting", "ready"]]);
    await again.close();
  });

  void it("if the supervisor itself dies, its services are killed and marked failed (nobody waits on a stale ready)", async () => {
    const { sid, state } = await create([svc("orphan")]);
    const before = byName(await p.waitForServices(sid, 20_000), "orphan");
    const pids = await sandboxPids(state.initPid as number);
    const comm = async (pid: number) => (await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim();
    const supervisor = (await Promise.all(pids.map(async (pid) => ((await comm(pid)) === "paddock-svc" ? pid : 0)))).find((x) => x > 0);
    const sleeper = (await Promise.all(pids.map(async (pid) => ((await comm(pid)) === "sleep" ? pid : 0)))).find((x) => x > 0);
    assert.ok(supervisor && sleeper);
    process.kill(supervisor, "SIGKILL"); // as the OOM killer would
    const s = await untilService(sid, "orphan", (x) => x.state === "failed", "failed");
    assert.deepEqual([s.pid, s.restarts, s.message], [null, before.restarts, "the service supervisor died (killed by SIGKILL)"]);
    await until(async () => !(await alive(sleeper)), 5000, "the service's process to be gone");
    assert.equal((await sh(sid, "echo the sandbox goes on")).out, "the sandbox goes on\n");
  });

  void it("caps a service's log: past 1 MiB it moves to NAME.log.1; logTail is the last 64 KiB, from a line start", async () => {
    const { sid } = await create([svc("chatty", { command: "yes 0123456789abcdef | head -c 1500012; echo done; exec sleep 100000", ready: { command: "grep -qx done /run/paddock/services/chatty.log" } })]);
    const [s] = (await p.waitForServices(sid, 20_000)) as [ServiceStatus];
    const sizes = (await sh(sid, "stat -c '%n %s' /run/paddock/services/chatty.log /run/paddock/services/chatty.log.1")).out;
    const [current, rotated] = sizes.trim().split("\n").map((l) => Number(l.split(" ")[1]));
    assert.ok(rotated !== undefined && rotated <= 2 ** 20 && rotated > 2 ** 20 - 70_000, sizes);
    assert.ok(current !== undefined && current + rotated >= 1_500_000, sizes);
    assert.ok(s.logTail.length <= 64 * 1024);
    // Whole lines: the tail starts at a line start.
    const lines = s.logTail.split("\n");
    assert.deepEqual(lines.slice(-3), ["done", "[paddock] ready", ""]);
    assert.deepEqual(lines.slice(0, -3).filter((l) => l !== "0123456789abcdef"), []);
  });

  void it("a sandbox started from a snapshot starts its services again, on the snapshot's data", async () => {
    const boots = svc("counter", {
      command: "echo boot >> /home/paddock/counter/boots; exec sleep 100000",
      ready: { command: "test -s /home/paddock/counter/boots" },
      dataDirs: ["/home/paddock/counter"],
    });
    const { sid } = await create([boots]);
    await p.waitForServices(sid, 20_000);
    const snap = `svc-snap-${process.pid}`;
    await p.snapshot(sid, snap);
    try {
      const { sid: forked } = await create([boots], { from: snap });
      await p.waitForServices(forked, 20_000);
      assert.equal((await sh(forked, "cat /home/paddock/counter/boots")).out, "boot\nboot\n");
      assert.equal((await sh(sid, "cat /home/paddock/counter/boots")).out, "boot\n");
      await p.stop(forked);
    } finally {
      await p.removeSnapshot(snap);
    }
  });

  void it("without services: services() is [] and waitForServices resolves at once", async () => {
    const { sid } = await create([]);
    assert.deepEqual(await p.services(sid), []);
    assert.deepEqual(await p.waitForServices(sid, 1), []);
    await assert.rejects(p.services("never-was"), (e: unknown) => e instanceof PaddockError && e.code === "not_found");
  });
});
