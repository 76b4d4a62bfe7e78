/**
 * envd's process service on the E2B front end, spoken as raw Connect (JSON codec) over HTTP/1.1
 * against a real server and real sandboxes: what the SDK sends, byte for byte, plus what it never
 * sends (broken envelopes, bad JSON, wrong content types, unknown pids and sandboxes). The SDK's
 * own view is in test/e2b-sdk/commands.test.ts and pty.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";
import { envelope, type Json } from "../helpers/connect.ts";

const ENV = `name: e2bproc
guardrails:
  commands:
    deny: [rm]
    ask: [tar]
    askTimeout: 60s
`;

/** Messages of a server stream as they arrive, then its end-of-stream message. */
interface StreamCall {
  next(): Promise<Json | null>;
  end: Promise<Json>;
  status: number;
  close(): void;
}

/** A raw HTTP/1.1 POST; resolves once headers arrive, with the body as a stream of envelopes. */
function post(base: string, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; messages: StreamCall; text: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, base), { method: "POST", headers: { ...headers, "content-length": String(body.length) } }, (res) => {
      const queue: Json[] = [];
      const waiters: ((m: Json | null) => void)[] = [];
      let buf = Buffer.alloc(0);
      let all = Buffer.alloc(0);
      let endResolve!: (m: Json) => void;
      const end = new Promise<Json>((r) => (endResolve = r));
      let finished = false;
      const deliver = (m: Json | null): void => {
        const w = waiters.shift();
        if (w) w(m);
        else if (m) queue.push(m);
      };
      res.on("data", (chunk: Buffer) => {
        all = Buffer.concat([all, chunk]);
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
          const len = buf.readUInt32BE(1);
          const flags = buf.readUInt8(0);
          const msg = JSON.parse(buf.subarray(5, 5 + len).toString("utf8")) as Json;
          buf = buf.subarray(5 + len);
          if (flags & 0x02) {
            finished = true;
            endResolve(msg);
          } else deliver(msg);
        }
      });
      res.on("end", () => {
        if (!finished) endResolve({ error: { code: "no end-of-stream" } });
        while (waiters.length) deliver(null);
      });
      res.on("error", () => undefined);
      const text = new Promise<string>((r) => res.on("end", () => r(all.toString("utf8"))));
      resolve({
        status: res.statusCode ?? 0,
        text,
        messages: {
          status: res.statusCode ?? 0,
          end,
          next: () => (queue.length ? Promise.resolve(queue.shift()!) : res.readableEnded ? Promise.resolve(null) : new Promise((r) => waiters.push(r))),
          close: () => req.destroy(),
        },
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

void describe("E2B envd process service (raw Connect, real sandboxes)", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let token: string;
  let cleanup: () => Promise<void>;
  let sandbox: string;
  const open: StreamCall[] = [];

  const headers = (extra: Record<string, string> = {}): Record<string, string> => ({ "e2b-sandbox-id": sandbox, "x-access-token": token, ...extra });
  const unary = async (method: string, msg: unknown, extra: Record<string, string> = {}): Promise<{ status: number; body: Json }> => {
    const r = await post(server.e2bUrl!, `/process.Process/${method}`, headers({ "content-type": "application/json", ...extra }), Buffer.from(JSON.stringify(msg)));
    return { status: r.status, body: JSON.parse(await r.text) as Json };
  };
  const stream = async (method: string, msg: unknown, extra: Record<string, string> = {}): Promise<StreamCall> => {
    const r = await post(server.e2bUrl!, `/process.Process/${method}`, headers({ "content-type": "application/connect+json", "keepalive-ping-interval": "50", ...extra }), envelope(0, msg));
    open.push(r.messages);
    return r.messages;
  };
  const start = (cmd: string, opts: Json = {}, extra: Record<string, string> = {}) =>
    stream("Start", { process: { cmd: "/bin/bash", args: ["-l", "-c", cmd], envs: {} }, stdin: false, ...opts }, extra);
  /** Read events until the end; stdout/stderr/pty decoded. */
  const collect = async (s: StreamCall): Promise<{ pid: number; stdout: string; stderr: string; pty: string; end: Json | null; trailer: Json; keepalives: number }> => {
    const out = { pid: -1, stdout: "", stderr: "", pty: "", end: null as Json | null, trailer: {} as Json, keepalives: 0 };
    for (let m = await s.next(); m; m = await s.next()) {
      const e = (m.event ?? {}) as Json;
      if (e.start) out.pid = (e.start as Json).pid as number;
      const d = e.data as Record<string, string> | undefined;
      if (d?.stdout) out.stdout += Buffer.from(d.stdout, "base64").toString();
      if (d?.stderr) out.stderr += Buffer.from(d.stderr, "base64").toString();
      if (d?.pty) out.pty += Buffer.from(d.pty, "base64").toString();
      if (e.end) out.end = e.end as Json;
      if (e.keepalive) out.keepalives++;
    }
    out.trailer = await s.end;
    return out;
  };
  const firstPid = async (s: StreamCall): Promise<number> => {
    const m = await s.next();
    const pid = ((m?.event as Json | undefined)?.start as Json | undefined)?.pid;
    assert.equal(typeof pid, "number", `expected a start event first, got ${JSON.stringify(m)}`);
    return pid as number;
  };

  before(async () => {
    const t = await testServer({ e2bPort: 0 });
    ({ server, client, token, cleanup } = t);
    await client.environments.apply("runtime.yml", ENV);
    sandbox = (await client.sessions.start("e2bproc")).id;
  });
  after(async () => {
    for (const s of open) s.close();
    await cleanup?.();
  });

  void it("Start streams start, stdout and stderr (base64), then end with the exit code, as the session's user", async () => {
    const r = await collect(await start("echo out; echo err >&2; echo \"$HOME $USER $(pwd)\"; exit 3"));
    assert.ok(r.pid >= 1);
    // E2B's account where the sandbox has it (E2B sandboxes do); else the session user's own.
    const e2bHome = (await client.files.list(sandbox, "/home")).some((f) => f.name === "user");
    assert.equal(r.stdout, e2bHome ? "out\n/home/user user /home/user\n" : "out\n/home/paddock paddock /workspace\n");
    assert.equal(r.stderr, "err\n");
    assert.deepEqual(r.end, { exitCode: 3, exited: true, status: "exit status 3", error: "exit status 3" });
    assert.deepEqual(r.trailer, {});
    const ok = await collect(await start("true"));
    assert.deepEqual(ok.end, { exitCode: 0, exited: true, status: "exit status 0" });
  });

  void it("a command the guardrails deny ends with exit 126 and the reason on stderr, and is audited", async () => {
    const r = await collect(await start("rm -f /tmp/nothing"));
    assert.equal(r.end?.exitCode, 126);
    assert.match(r.stderr, /paddock: 'rm' denied by guardrails\.commands\.deny \(runtime\.yml:4\)/);
    const audit = await client.audit.list({ session: sandbox });
    assert.ok(audit.some((a) => a.action === "exec" && a.decision === "denied" && JSON.stringify(a.detail).includes("rm -f /tmp/nothing")), "no denied exec record");
    assert.ok(audit.some((a) => a.action === "api.e2b.process.start" && a.decision === "allowed"), "the Start call itself is not audited");
  });

  void it("a background process: List, Connect (from now on), SendInput, CloseStdin, SendSignal; gone once ended", async () => {
    const s = await stream("Start", { process: { cmd: "/bin/bash", args: ["-c", "echo ready; cat; echo closed; sleep 600"], envs: { A: "1" }, cwd: "/tmp" }, tag: "bg", stdin: true });
    const pid = await firstPid(s);
    assert.match(Buffer.from(((await s.next())?.event as { data: { stdout: string } }).data.stdout, "base64").toString(), /ready/);
    s.close(); // the Start stream going away leaves the process running
    const list = await unary("List", {});
    assert.equal(list.status, 200);
    const listed = (list.body.processes as Json[]).find((p) => p.pid === pid);
    assert.deepEqual(listed, { config: { cmd: "/bin/bash", args: ["-c", "echo ready; cat; echo closed; sleep 600"], envs: { A: "1" }, cwd: "/tmp" }, pid, tag: "bg" });
    const c = await stream("Connect", { process: { tag: "bg" } });
    assert.equal(await firstPid(c), pid);
    assert.equal((await unary("SendInput", { process: { pid }, input: { stdin: Buffer.from("hello\n").toString("base64") } })).status, 200);
    assert.equal(Buffer.from(((await c.next())?.event as { data: { stdout: string } }).data.stdout, "base64").toString(), "hello\n");
    assert.equal((await unary("CloseStdin", { process: { pid } })).status, 200);
    assert.equal(Buffer.from(((await c.next())?.event as { data: { stdout: string } }).data.stdout, "base64").toString(), "closed\n");
    assert.equal((await unary("SendSignal", { process: { pid }, signal: "SIGNAL_SIGKILL" })).status, 200);
    const rest = await collect(c);
    assert.deepEqual(rest.end, { exitCode: -1, exited: false, status: "signal: killed", error: "signal: killed" });
    const after = await unary("List", {});
    assert.ok(!(after.body.processes as Json[]).some((p) => p.pid === pid));
    const gone = await unary("SendSignal", { process: { pid }, signal: 9 });
    assert.equal(gone.status, 404);
    assert.equal(gone.body.code, "not_found");
  });

  void it("a PTY: raw terminal bytes, input, resize seen by stty size, kill", async () => {
    const s = await stream("Start", { process: { cmd: "/bin/bash", args: ["-i", "-l"], envs: { TERM: "xterm-256color" } }, pty: { size: { cols: 80, rows: 24 } } });
    const pid = await firstPid(s);
    let screen = "";
    const read = async (re: RegExp): Promise<void> => {
      await until(async () => {
        const m = await s.next();
        const d = ((m?.event as Json | undefined)?.data as Record<string, string> | undefined)?.pty;
        if (d) screen += Buffer.from(d, "base64").toString();
        return re.test(screen) || m === null;
      }, 60_000, `${re} on the PTY`);
      assert.match(screen, re);
    };
    const type = async (text: string) => assert.equal((await unary("SendInput", { process: { pid }, input: { pty: Buffer.from(text).toString("base64") } })).status, 200);
    await type("stty size; tty\n");
    await read(/^24 80\r?$/m);
    await read(/\/dev\/pts\/\d+/);
    assert.ok(!screen.includes("paddock-tty"), "the PTY's name marker reached the client");
    const up = await unary("Update", { process: { pid }, pty: { size: { cols: 100, rows: 30 } } });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    await type("stty size\n");
    await read(/^30 100\r?$/m);
    const stdin = await unary("SendInput", { process: { pid }, input: { stdin: "aGkK" } });
    assert.equal(stdin.body.code, "failed_precondition");
    assert.equal((await unary("SendSignal", { process: { pid }, signal: "SIGNAL_SIGKILL" })).status, 200);
    const end = await collect(s);
    assert.equal(end.end?.exited, false);
  });

  void it("keepalive events on a quiet stream, at the interval the client asked for", async () => {
    const r = await collect(await start("sleep 3; echo done", {}, { "keepalive-ping-interval": "1" }));
    assert.equal(r.stdout, "done\n");
    assert.ok(r.keepalives >= 1, `no keepalive in 3 s at a 1 s interval (${r.keepalives})`);
  });

  void it("Connect-Timeout-Ms is the process's deadline: it is killed when it passes", async () => {
    const r = await collect(await start("sleep 600", {}, { "connect-timeout-ms": "1500" }));
    assert.deepEqual(r.end, { exitCode: -1, exited: false, status: "signal: killed", error: "signal: killed" });
  });

  void it("large output arrives whole and in order", async () => {
    const r = await collect(await start("seq 1 400000"));
    assert.equal(r.end?.exitCode, 0);
    const lines = r.stdout.split("\n");
    assert.equal(lines.length, 400_001);
    assert.equal(lines[399_999], "400000");
  });

  void it("stdin: large input to a process that is not reading yet waits for it, and arrives whole and in order", async () => {
    const s = await stream("Start", { process: { cmd: "/bin/bash", args: ["-c", "sleep 2; sha256sum"], envs: {} }, stdin: true });
    const pid = await firstPid(s);
    const chunks = Array.from({ length: 6 }, (_, i) => Buffer.alloc(1 << 20, 65 + i));
    for (const c of chunks) {
      const r = await unary("SendInput", { process: { pid }, input: { stdin: c.toString("base64") } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    assert.equal((await unary("CloseStdin", { process: { pid } })).status, 200);
    const r = await collect(s);
    assert.equal(r.stdout.split(" ")[0], createHash("sha256").update(Buffer.concat(chunks)).digest("hex"));
  });

  void it("ask: the process waits for a person's approval, then runs", async () => {
    const approver = await client.principals.create({ name: "approver", role: "admin", kind: "human" });
    const other = new PaddockClient({ url: server.url, token: approver.token });
    const s = await start("tar --version | head -1");
    const pid = await firstPid(s);
    const approval = await until(async () => (await client.approvals.list({ state: "pending", session: sandbox }))[0], 30_000, "the pending approval");
    assert.deepEqual(approval.argv, ["/bin/bash", "-l", "-c", "tar --version | head -1"]);
    assert.ok((await unary("List", {})).body.processes && ((await unary("List", {})).body.processes as Json[]).some((p) => p.pid === pid), "a waiting process is listed");
    await other.approvals.approve(approval.id, "fine");
    const r = await collect(s);
    assert.equal(r.end?.exitCode, 0, r.stderr);
    assert.match(r.stdout, /tar/);
  });

  void it("a process ends when its session stops", async () => {
    const id = (await client.sessions.start("e2bproc")).id;
    const s = await stream("Start", { process: { cmd: "/bin/bash", args: ["-c", "echo up; sleep 600"], envs: {} }, stdin: false }, { "e2b-sandbox-id": id });
    await firstPid(s);
    await s.next(); // "up": it runs
    await client.sessions.stop(id);
    const r = await collect(s);
    assert.ok(r.end !== null || r.trailer.error !== undefined, "the stream did not end");
  });

  void it("refuses what the SDK never sends: bad envelopes, bad JSON, wrong content types, unknown pids, sandboxes and tokens, root", async () => {
    const base = server.e2bUrl!;
    const raw = async (body: Buffer, type: string, path = "/process.Process/Start", extra: Record<string, string> = {}) => {
      const r = await post(base, path, headers({ "content-type": type, ...extra }), body);
      return { status: r.status, body: JSON.parse((await r.text) || "{}") as Json };
    };
    const short = await raw(Buffer.from([0, 0, 0]), "application/connect+json");
    assert.equal(short.body.code, "invalid_argument");
    const lying = Buffer.concat([Buffer.from([0, 0, 0, 0, 99]), Buffer.from("{}")]);
    assert.match(String((await raw(lying, "application/connect+json")).body.message), /length field says 99/);
    const notJson = Buffer.concat([Buffer.from([0, 0, 0, 0, 3]), Buffer.from("{x}")]);
    assert.equal((await raw(notJson, "application/connect+json")).body.code, "invalid_argument");
    assert.equal((await raw(envelope(0, {}), "text/plain")).status, 400);
    assert.equal((await raw(Buffer.from("{"), "application/json", "/process.Process/List")).body.code, "invalid_argument");
    assert.equal((await raw(Buffer.from("{}"), "application/connect+json", "/process.Process/List")).body.code, "invalid_argument");
    const noCmd = await collect(await stream("Start", { process: { args: ["x"] } }));
    assert.equal((noCmd.trailer.error as Json).code, "invalid_argument");
    const badBytes = await unary("SendInput", { process: { pid: 1 }, input: { stdin: "%%%" } });
    assert.equal(badBytes.body.code, "not_found"); // the process is looked up first
    assert.equal((await unary("SendInput", { process: { pid: 999_999 }, input: { stdin: "aGkK" } })).body.code, "not_found");
    assert.equal((await unary("SendSignal", { process: { pid: 1 }, signal: "SIGNAL_UNSPECIFIED" })).status, 404);
    assert.equal((await unary("Update", { process: {} })).body.code, "invalid_argument");
    const connect = await collect(await stream("Connect", { process: { pid: 424242 } }));
    assert.equal((connect.trailer.error as Json).code, "not_found");
    const ghost = await unary("List", {}, { "e2b-sandbox-id": "no-such-sandbox" });
    assert.equal(ghost.body.code, "not_found");
    const anon = await unary("List", {}, { "x-access-token": "wrong" });
    assert.equal(anon.body.code, "unauthenticated");
    const root = await collect(await start("id", {}, { authorization: `Basic ${Buffer.from("root:").toString("base64")}` }));
    assert.equal((root.trailer.error as Json).code, "permission_denied");
    assert.match(String((root.trailer.error as Json).message), /no root/);
    const asUser = await collect(await start("id -u", {}, { authorization: `Basic ${Buffer.from("user:").toString("base64")}` }));
    assert.equal(asUser.end?.exitCode, 0);
    // A working directory that is not there: refused before anything starts, as envd does.
    const nowhere = await collect(await start("true", { process: { cmd: "/bin/true", args: [], envs: {}, cwd: "/no/such/dir" } }));
    assert.equal(nowhere.pid, -1);
    assert.deepEqual(nowhere.trailer.error, { code: "invalid_argument", message: "cwd '/no/such/dir' does not exist (or is not a directory)" });
    // Still serving.
    assert.equal((await unary("List", {})).status, 200);
  });
});
