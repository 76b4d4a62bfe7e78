/**
 * Hostile input (issue 8): each input here once crashed the server process or answered outside
 * the API's error shape. The server runs in this process, so a crash fails the whole file.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import type { RunningServer } from "../../src/server/index.ts";
import { ExecSignals, type PaddockClient } from "../../src/client/index.ts";
import { openExec } from "../helpers/exec-ws.ts";
import { rawRequest } from "../helpers/raw-http.ts";
import { releaseHome, repoRoot, testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";

interface ErrorJson {
  error: { code: string; message: string; errorId?: string };
}

/** The answer's body as our error shape (fails the test when it is anything else). */
function errorOf(body: string): ErrorJson["error"] {
  const json = JSON.parse(body) as ErrorJson;
  assert.ok(typeof json.error?.code === "string" && typeof json.error.message === "string", `not our error shape: ${body.slice(0, 300)}`);
  return json.error;
}

const SECRET = "sk_live_hostileTestValue0123456789";

void describe("hostile input", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let url: string;
  let token: string;
  let home: string;
  let cleanup: () => Promise<void>;
  let sessionId: string;
  const logs: string[] = [];

  before(async () => {
    const t = await testServer({ log: (line) => logs.push(line) });
    ({ server, client, token, home, cleanup } = t);
    url = server.url;
    await client.secrets.set("HOSTILE_KEY", SECRET);
    await client.environments.apply("hostile.yml", "name: hostile\n");
    sessionId = (await client.sessions.start("hostile")).id;
  });
  after(async () => cleanup());

  const healthy = async () => assert.equal((await fetch(`${url}/v1/health`)).status, 200);
  const request = (head: string, body = "") => rawRequest(url, `${head}Host: x\r\nConnection: close\r\n${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ""}\r\n${body}`);
  const auth = () => `Authorization: Bearer ${token}\r\n`;

  void describe("exec WebSocket: each of these was an uncaught exception", () => {
    void it("an upgrade whose session id has bad percent-encoding is a 400 in our shape, without a token", async () => {
      const upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
      const res = await rawRequest(url, `GET /v1/sessions/%E0%A4%A/exec/stream HTTP/1.1\r\nHost: x\r\n${upgrade}\r\n`);
      assert.equal(res.status, 400, res.text);
      assert.equal(errorOf(res.body).code, "invalid_argument");
      assert.match(errorOf(res.body).message, /percent-encoding/);
      const other = await rawRequest(url, `GET /v1/nowhere HTTP/1.1\r\nHost: x\r\n${upgrade}\r\n`);
      assert.equal(other.status, 404, other.text);
      assert.equal(errorOf(other.body).code, "not_found");
      await healthy();
    });

    void it("a message over 1 MiB closes the socket with 1009 and ends the command", async () => {
      const x = await openExec(url, sessionId, token);
      x.sendJson({ argv: ["sh", "-c", "echo ready; exec cat"] });
      await x.output("ready");
      x.ws.send(Buffer.alloc((1 << 20) + 1, 0x61));
      assert.equal(await x.closed, 1009);
      await healthy();
    });

    void it("stdin after stdin-eof is refused with invalid_argument; the command runs on", async () => {
      const x = await openExec(url, sessionId, token);
      x.sendJson({ argv: ["sh", "-c", "cat; echo cat-done; read -r _ < /dev/null; echo exit-soon"] });
      x.ws.send(Buffer.from("hello\n"));
      x.sendJson({ type: "stdin-eof" });
      x.ws.send(Buffer.from("too late\n"));
      x.sendJson({ type: "stdin-eof" }); // twice is harmless
      const refusal = await x.next((m) => m.type === "error", "the refusal");
      assert.equal(refusal.code, "invalid_argument");
      assert.equal(refusal.fatal, false);
      assert.match(refusal.message ?? "", /stdin is already closed/);
      const exit = await x.next((m) => m.type === "exit", "the exit");
      assert.equal(exit.exitCode, 0);
      assert.equal(x.stdout(), "hello\ncat-done\nexit-soon\n");
      await healthy();
    });

    void it("a client resetting the connection while its upgrade is checked does not crash the server", async () => {
      // Refused (no token: the 401 is written to a reset socket) and admitted ones alike.
      for (let i = 0; i < 20; i++) {
        await new Promise<void>((resolve) => {
          const sock = net.connect(Number(new URL(url).port), "127.0.0.1", () => {
            sock.write(`GET /v1/sessions/${sessionId}/exec/stream HTTP/1.1\r\nHost: x\r\n${i % 2 ? auth() : ""}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, () => {
              sock.resetAndDestroy();
              resolve();
            });
          });
          sock.on("error", () => resolve());
        });
      }
      await healthy();
    });

    void it("a bad first message is invalid_argument (a client mistake), not internal", async () => {
      const firsts: (string | Buffer)[] = ["{not json", JSON.stringify({ argv: [] }), JSON.stringify([1, 2]), Buffer.from([0, 1, 2]), JSON.stringify({ argv: ["true"], timeoutMs: -1 })];
      for (const first of firsts) {
        const x = await openExec(url, sessionId, token);
        x.ws.send(first);
        const e = await x.next((m) => m.type === "error", "the error");
        assert.equal(e.code, "invalid_argument", `${String(first)} → ${JSON.stringify(e)}`);
        assert.notEqual(e.fatal, false);
        assert.equal(await x.closed, 1000);
      }
    });

    void it("a signal message is delivered to the command: its trap runs and its exit is reported", async () => {
      const x = await openExec(url, sessionId, token);
      x.sendJson({ argv: ["sh", "-c", "trap 'echo got INT; exit 3' INT; echo ready; while :; do sleep 0.05; done"] });
      await x.output("ready");
      x.sendJson({ type: "signal", signal: "SIGINT" });
      const exit = await x.next((m) => m.type === "exit" || m.type === "error", "the exit");
      assert.equal(exit.type, "exit", JSON.stringify(exit));
      assert.equal(exit.exitCode, 3);
      assert.match(x.stdout(), /got INT/);
    });

    void it("an unknown signal name is refused, and the command keeps running", async () => {
      const x = await openExec(url, sessionId, token);
      x.sendJson({ argv: ["sh", "-c", "echo ready; cat; echo still-here"] });
      await x.output("ready");
      x.sendJson({ type: "signal", signal: "SIGNOPE" });
      x.sendJson({ type: "signal", signal: 9 });
      x.sendJson({ type: "dance" });
      x.ws.send("not json at all");
      await x.next((m) => m.type === "error" && /unknown message "not json/.test(m.message ?? ""), "the last refusal");
      const refusals = x.control.filter((m) => m.type === "error");
      assert.equal(refusals.length, 4, JSON.stringify(refusals));
      for (const r of refusals) {
        assert.equal(r.code, "invalid_argument");
        assert.equal(r.fatal, false);
      }
      assert.match(refusals[0]?.message ?? "", /unknown signal "SIGNOPE"/);
      x.sendJson({ type: "stdin-eof" });
      const exit = await x.next((m) => m.type === "exit", "the exit");
      assert.equal(exit.exitCode, 0);
      assert.match(x.stdout(), /still-here/);
    });

    void it("closing the socket still kills the command", async () => {
      const x = await openExec(url, sessionId, token);
      x.sendJson({ argv: ["sh", "-c", "echo $$ > /tmp/hostile.pid; echo ready; exec sleep 600"] });
      await x.output("ready");
      x.ws.close();
      await x.closed;
      // The agent kills the group when its client goes; poll (bounded) until the pid is gone.
      const deadline = Date.now() + 10_000;
      let alive = true;
      while (alive && Date.now() < deadline) {
        alive = (await client.sessions.run(sessionId, { argv: ["sh", "-c", "kill -0 $(cat /tmp/hostile.pid) 2>/dev/null"] })).exitCode === 0;
      }
      assert.equal(alive, false, "the command survived its socket");
    });

    void it("a client that does not read makes the command wait: the server never buffers its output", async () => {
      const BYTES = 100_000_000;
      const x = await openExec(url, sessionId, token);
      const sock = (x.ws as unknown as { _socket: net.Socket })._socket;
      x.sendJson({ argv: ["sh", "-c", `echo $$ > /tmp/flood.pid; exec head -c ${BYTES} /dev/zero`] });
      sock.pause(); // the client stops reading
      // The real condition: the command stops making progress (the server, the agent's relay and
      // its pipe each stopped at their bounds) and stays stopped, short of its output. Without flow
      // control the server reads it all into memory and the command finishes instead.
      let last = -1;
      let still = 0;
      const state = await until(
        async () => {
          const r = await client.sessions.run(sessionId, { argv: ["sh", "-c", "p=$(cat /tmp/flood.pid); if [ -d /proc/$p ]; then sed -n 's/^wchar: //p' /proc/$p/io; else echo gone; fi"] });
          if (r.stdout.trim() === "gone") return "finished";
          const written = Number(r.stdout.trim());
          still = written === last ? still + 1 : 0;
          last = written;
          return still >= 3 ? "stalled" : null;
        },
        30_000,
        "the command to stall (or finish) while its client does not read",
      );
      assert.equal(state, "stalled", "the command wrote all its output while nobody read it: the server buffered it");
      // All it wrote is somewhere between its pipe and the client (the server's share is at most
      // its 4 MiB high-water mark plus one chunk): this bounds what anyone could have buffered.
      assert.ok(last < 64 * 2 ** 20, `the command got ${last} bytes out before it had to wait`);
      sock.resume();
      const exit = await x.next((m) => m.type === "exit", "the exit", 60_000);
      assert.equal(exit.exitCode, 0);
      assert.equal(x.stdout().length, BYTES, "every byte arrives once the client reads again");
    });

    void it("POST exec keeps at most 16 MiB of each stream and says it dropped the rest", async () => {
      const r = await client.sessions.run(sessionId, { argv: ["sh", "-c", "head -c 20000000 /dev/zero | tr '\\0' a; echo done >&2"], timeoutMs: 60_000 });
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout.length, 16 * 1024 * 1024);
      assert.equal(r.stderr, "done\n");
      assert.equal(r.truncated, true);
      assert.equal((await client.sessions.run(sessionId, { argv: ["echo", "small"] })).truncated, false);
    });

    void it("the SDK's ExecSignals and paddock exec's Ctrl-C reach the command the same way", async () => {
      const script = "trap 'echo got INT; exit 3' INT; echo ready; while :; do sleep 0.05; done";
      const signals = new ExecSignals();
      let out = "";
      const r = await client.sessions.exec(sessionId, {
        argv: ["sh", "-c", script],
        signals,
        onStdout: (b) => {
          out += b.toString();
          if (out === "ready\n") signals.send("SIGINT");
        },
      });
      assert.equal(r.exitCode, 3);
      assert.equal(out, "ready\ngot INT\n");
      // The CLI: SIGINT to `paddock exec` (what Ctrl-C does) is forwarded, and its exit is the command's.
      const proc = spawn(join(repoRoot, "bin/paddock"), ["exec", sessionId, "--", "sh", "-c", script], {
        env: { ...process.env, PADDOCK_URL: url, PADDOCK_TOKEN: token },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      proc.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<number | null>((resolve) => proc.on("close", (code) => resolve(code)));
      setTimeout(() => proc.kill("SIGKILL"), 30_000).unref(); // never outlive the test
      proc.stdout.on("data", (b: Buffer) => {
        stdout += b.toString();
        if (stdout === "ready\n") proc.kill("SIGINT");
      });
      assert.equal(await exited, 3, stderr);
      assert.equal(stdout, "ready\ngot INT\n");
    });

    void it("a handshake ws refuses is answered in our shape", async () => {
      const res = await request(`GET /v1/sessions/${sessionId}/exec/stream HTTP/1.1\r\n${auth()}Upgrade: websocket\r\nConnection: Upgrade\r\n`);
      assert.equal(res.status, 400, res.text);
      assert.match(errorOf(res.body).message, /Sec-WebSocket-Key/);
    });
  });

  void describe("HTTP errors: our shape, short messages", () => {
    void it("bad percent-encoding in a path is a 400", async () => {
      const res = await request(`GET /v1/sessions/%E0%A4%A HTTP/1.1\r\n${auth()}`);
      assert.equal(res.status, 400, res.text);
      assert.equal(errorOf(res.body).code, "invalid_argument");
    });

    void it("an overlong path parameter is a 414", async () => {
      const res = await request(`GET /v1/sessions/${"a".repeat(5000)} HTTP/1.1\r\n${auth()}`);
      assert.equal(res.status, 414, res.text);
      assert.equal(errorOf(res.body).code, "invalid_argument");
      assert.ok(res.body.length < 300, res.body);
    });

    void it("headers over the limit are a 431; garbage is a 400", async () => {
      const big = await request(`GET /v1/${"a".repeat(20_000)} HTTP/1.1\r\n`);
      assert.equal(big.status, 431, big.text);
      assert.equal(errorOf(big.body).code, "invalid_argument");
      const garbage = await rawRequest(url, "\x00\x01 GARBAGE\r\n\r\n");
      assert.equal(garbage.status, 400, garbage.text);
      errorOf(garbage.body);
      const method = await request(`FROB /v1/health HTTP/1.1\r\n`);
      assert.equal(method.status, 400, method.text);
      errorOf(method.body);
    });

    void it("malformed JSON and unsupported content types are 400s", async () => {
      const json = await request(`POST /v1/sessions HTTP/1.1\r\n${auth()}Content-Type: application/json\r\n`, "{" + "x".repeat(100_000));
      assert.equal(json.status, 400, json.text.slice(0, 300));
      assert.ok(json.body.length < 500, json.body.slice(0, 600));
      const type = await request(`POST /v1/sessions HTTP/1.1\r\n${auth()}Content-Type: text/x-${"y".repeat(5000)}\r\n`, "abc");
      assert.equal(type.status, 400, type.text.slice(0, 300));
      assert.match(errorOf(type.body).message, /unsupported Content-Type/);
      assert.ok(type.body.length < 500, type.body.slice(0, 600));
    });

    void it("a 3 MiB input gets an error of a few hundred bytes", async () => {
      const huge = "e".repeat(3 << 20);
      const cases: [string, unknown][] = [
        ["/v1/sessions", { environment: huge }],
        ["/v1/sessions/s-nope/exec", { argv: [], [huge]: 1 }],
        ["/v1/principals", { name: "x", role: "support", team: huge }],
      ];
      for (const [path, body] of cases) {
        const res = await fetch(url + path, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
        const text = await res.text();
        assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status}`);
        errorOf(text);
        assert.ok(text.length < 1000, `${path}: a ${text.length}-byte error: ${text.slice(0, 300)}`);
      }
      const notFound = await request(`GET /v1/${"b".repeat(10_000)} HTTP/1.1\r\n${auth()}`);
      assert.equal(notFound.status, 404);
      assert.ok(notFound.body.length < 500, notFound.body.slice(0, 600));
    });
  });

  void describe("internal errors", () => {
    /** The log line about `errorId`, once it is written (logging is asynchronous). */
    const logLine = async (errorId: string) => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const line = logs.find((l) => l.includes(errorId));
        if (line) return line;
        if (Date.now() > deadline) throw new Error(`no log line for ${errorId}: ${logs.join("\n")}`);
        await new Promise((r) => setImmediate(r));
      }
    };
    const hostBug = () => new Error(`ENOTEMPTY: directory not empty, rename '${home}/layers/active/scaffold-1' -> '${home}/layers/x' (token ${token}, key ${SECRET})`);

    void it("say what failed and give an error id; the log has the message and stack, without secrets", async () => {
      const sessions = server.cp.sessions;
      const list = sessions.list.bind(sessions);
      sessions.list = () => Promise.reject(hostBug());
      let res: Response;
      try {
        res = await fetch(`${url}/v1/sessions`, { headers: { authorization: `Bearer ${token}` } });
      } finally {
        sessions.list = list;
      }
      assert.equal(res.status, 500);
      const e = errorOf(await res.text());
      assert.equal(e.code, "internal");
      assert.match(e.errorId ?? "", /^e-[0-9a-f]{12}$/);
      assert.match(e.message, new RegExp(`internal error in listSessions \\(error id ${e.errorId}\\)`));
      assert.ok(!e.message.includes(home) && !e.message.includes("ENOTEMPTY"), e.message);
      const line = await logLine(e.errorId ?? "");
      assert.match(line, /ENOTEMPTY: directory not empty/);
      assert.match(line, /\n\s+at /, "the stack is logged");
      assert.ok(!line.includes(SECRET) && !line.includes(token), line);
      assert.match(line, /\[redacted secret\]/);
    });

    void it("in the exec stream too", async () => {
      const commands = server.cp.commands;
      const run = commands.run.bind(commands);
      commands.run = () => Promise.reject(hostBug());
      try {
        const x = await openExec(url, sessionId, token);
        x.sendJson({ argv: ["true"] });
        const e = await x.next((m) => m.type === "error", "the error");
        assert.equal(e.code, "internal");
        assert.match(e.message ?? "", /^internal error in execStream \(error id e-[0-9a-f]{12}\)/);
        assert.ok(!(e.message ?? "").includes(home));
        assert.match(await logLine(e.errorId ?? ""), /ENOTEMPTY/);
      } finally {
        commands.run = run;
      }
    });
  });
});

void describe("paddock up: an unforeseen crash is logged with its cause and exits non-zero", () => {
  for (const kind of ["uncaught exception", "unhandled rejection"]) {
    void it(kind, async () => {
      const dir = await tempDir();
      // Loaded into the server process: SIGUSR2 makes it fail the way a bug would.
      const inject = join(dir.path, "inject.mjs");
      const fault = kind === "uncaught exception" ? "throw new Error('injected crash')" : "void Promise.reject(new Error('injected crash'))";
      await writeFile(inject, `process.on("SIGUSR2", () => { ${fault}; });\n`);
      const proc = spawn(process.execPath, ["--import", "tsx", "--import", inject, join(repoRoot, "src/cli/main.ts"), "up", "--port", "0", "--home", join(dir.path, "home")], {
        cwd: repoRoot,
        stdio: ["ignore", "ignore", "pipe"],
      });
      const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
      const deadline = setTimeout(() => proc.kill("SIGKILL"), 60_000); // never outlive the test
      try {
        let log = "";
        await new Promise<void>((resolve, reject) => {
          createInterface({ input: proc.stderr }).on("line", (line) => {
            log += line + "\n";
            if (line.includes("listening on")) resolve();
          });
          void exited.then(() => reject(new Error(`server exited before listening:\n${log}`)));
        });
        proc.kill("SIGUSR2");
        assert.equal(await exited, 70);
        assert.match(log, new RegExp(`fatal: ${kind}: Error: injected crash\\n.*\\s+at `, "s"));
      } finally {
        if (proc.exitCode === null) proc.kill("SIGKILL");
        await exited;
        clearTimeout(deadline);
        await releaseHome(join(dir.path, "home"));
        await dir.remove();
      }
    });
  }
});
