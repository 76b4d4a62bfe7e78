/**
 * Fuzzing the API's edge (issue 8), against the real server process (`paddock up`), for a bounded
 * time: random methods, paths (bad percent-encoding, huge ones), headers and JSON bodies to every
 * route of the route table, with and without a valid token; then exec WebSockets fed random,
 * garbage and oversized messages. Meanwhile a worker thread measures `/v1/health`.
 *
 * Invariants: no 5xx; every error in our shape; the server stays up and its health answers fast
 * (p99 < 100 ms); no answer shows the data directory or the admin token; the audit chain verifies
 * afterwards; the server log shows no token either.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { Worker } from "node:worker_threads";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import WebSocket from "ws";
import { z } from "zod";
import { allRoutes } from "../../src/server/index.ts";
import type { PaddockClient } from "../../src/client/index.ts";
import { rawRequest } from "../helpers/raw-http.ts";
import { adminToken, releaseHome, spawnServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";

/** Time budgets: the whole file stays well under a minute on a 2-core machine. */
const HTTP_BUDGET_MS = 16_000;
const WS_BUDGET_MS = 9_000;
const HEALTH_P99_MS = 100;

const FORGED = `pdk_${"0".repeat(16)}_${"A".repeat(43)}`;

/** Measures /v1/health from its own thread (its own event loop: the fuzzer's load does not skew it). */
function healthProbe(url: string): { stop: () => Promise<{ samples: number[]; failures: string[] }> } {
  const worker = new Worker(
    `
    const { parentPort, workerData } = require("node:worker_threads");
    const http = require("node:http");
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const samples = [], failures = [];
    let stopped = false;
    parentPort.on("message", () => { stopped = true; });
    const next = () => (stopped ? parentPort.postMessage({ samples, failures }) : setTimeout(once, 10));
    function once() {
      const t0 = performance.now();
      const req = http.get(workerData.url + "/v1/health", { agent, timeout: 5000 }, (res) => {
        res.resume();
        res.on("end", () => { samples.push(performance.now() - t0); if (res.statusCode !== 200) failures.push("HTTP " + res.statusCode); next(); });
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (e) => { samples.push(performance.now() - t0); failures.push(e.message); next(); });
    }
    once();
    `,
    { eval: true, workerData: { url } },
  );
  return {
    stop: () =>
      new Promise((resolve, reject) => {
        worker.once("message", (m: { samples: number[]; failures: string[] }) => {
          void worker.terminate();
          resolve(m);
        });
        worker.once("error", reject);
        worker.postMessage("stop");
      }),
  };
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};

// ---- arbitraries ------------------------------------------------------------------------------

const param = fc.oneof(
  fc.constantFrom("s-doesnotexist", "%E0%A4%A", "%", "%%41", "..", "%2e%2e", "%2F", "%00", "%FF%FE", "ü", "%F0%9F%98%80", "a".repeat(300), "nope"),
  fc.string({ maxLength: 24 }).map(encodeURIComponent),
  fc.stringMatching(/^[A-Za-z0-9%._~-]{0,40}$/),
);

const routeOf = (operationId: string | null) => allRoutes.find((r) => r.operationId === operationId) ?? null;
const routePath = fc.tuple(fc.constantFrom(...allRoutes.map((r) => r.operationId)), param).map(([op, p]) => ({ operationId: op as string | null, path: routeOf(op)!.path.replace(/:[A-Za-z]+/g, p) }));
const randomPath = fc.oneof(
  fc.array(param, { maxLength: 6 }).map((segs) => "/v1/" + segs.join("/")),
  fc.string({ maxLength: 60 }).map((s) => "/" + s.replace(/[\r\n ]/g, "")),
  fc.integer({ min: 1_000, max: 30_000 }).map((n) => "/v1/sessions/" + "x".repeat(n)),
  fc.constantFrom("*", "/", "//", "/v1", "/v1/sessions/%E0%A4%A/exec/stream", "http://evil/v1/health", "/v1/health?%zz", "/v1/../v1/health"),
);
const query = fc.option(fc.array(fc.tuple(fc.constantFrom("path", "limit", "after", "all", "environment", "mode", "x"), fc.oneof(param, fc.string({ maxLength: 10 }))), { maxLength: 3 }).map((kv) => "?" + kv.map(([k, v]) => `${k}=${v}`).join("&")), { nil: "" });

const auth = fc.constantFrom<"none" | "valid" | "forged" | "junk">("none", "valid", "valid", "forged", "junk");
const contentType = fc.option(
  fc.oneof(
    fc.constantFrom("application/json", "application/json", "application/octet-stream", "text/plain", "application/json; charset=utf-16", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "*/*"),
    fc.stringMatching(/^[a-z]{1,10}\/[a-z+.-]{1,30}$/),
  ),
  { nil: undefined },
);
const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/).filter((n) => !/^(host|connection|content-length|transfer-encoding|expect|upgrade|authorization|content-type|te|trailer)$/i.test(n));
const headerValue = fc.oneof(fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, "")), fc.integer({ min: 1, max: 20_000 }).map((n) => "v".repeat(n)));
const extraHeaders = fc.array(fc.tuple(headerName, headerValue), { maxLength: 4 });

/** A body aimed at the route: its own keys with random values, any JSON, garbage, or a large one. */
function bodyFor(operationId: string | null) {
  const route = routeOf(operationId);
  const keys = route && route.body && route.body !== "binary" && route.body instanceof z.ZodObject ? Object.keys(route.body.shape as object) : [];
  const shaped = keys.length ? fc.dictionary(fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 8 })), fc.jsonValue({ maxDepth: 3 }), { maxKeys: keys.length + 2 }).map((o) => JSON.stringify(o)) : fc.constant("{}");
  return fc.option(
    fc.oneof(
      { weight: 4, arbitrary: shaped },
      { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? "null") },
      { weight: 2, arbitrary: fc.string({ maxLength: 200 }) },
      { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 3 << 20 }).map((n) => JSON.stringify({ argv: ["x"], environment: "e".repeat(n) })) },
      { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 100_000 }).map((n) => "[".repeat(n)) },
    ),
    { nil: undefined },
  );
}

const httpRequest = fc
  .record({
    method: fc.constantFrom("GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FROB", "get"),
    target: fc.oneof({ weight: 3, arbitrary: routePath }, { weight: 1, arbitrary: randomPath.map((path) => ({ operationId: null as string | null, path })) }),
    query,
    auth,
    contentType,
    headers: extraHeaders,
    upgrade: fc.oneof(fc.constant(null), fc.constant(null), fc.constantFrom("valid", "nokey", "h2c")),
  })
  .chain((r) => bodyFor(r.target.operationId).map((body) => ({ ...r, body })));

type HttpCase = typeof httpRequest extends fc.Arbitrary<infer T> ? T : never;

/** A failing case, short enough to read: long strings are cut and say their length. */
function brief(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === "string" && v.length > 120) return `${v.slice(0, 120)}… (${v.length} chars)`;
    if (Buffer.isBuffer(v)) return `<${v.length} bytes>`;
    if (v && typeof v === "object" && (v as { type?: unknown }).type === "Buffer") return "<bytes>";
    return v;
  });
}

/** fast-check's report, with the counterexample shortened (a 3 MiB body would flood the output). */
function shortReport<T>(d: fc.RunDetails<T>): void {
  if (!d.failed) return;
  const cause = d.errorInstance instanceof Error ? d.errorInstance.message : String(d.errorInstance);
  throw new Error(`property failed after ${d.numRuns} runs (seed ${d.seed}, path "${d.counterexamplePath}"): ${cause.slice(0, 2000)}\ncounterexample: ${brief(d.counterexample).slice(0, 4000)}`);
}

/** The request's bytes, exactly framed (every request is complete: a hang is the server's fault). */
function render(c: HttpCase, token: string): string {
  const lines = [`${c.method} ${c.target.path}${c.query} HTTP/1.1`, "Host: 127.0.0.1"];
  const bearer = { none: null, valid: `Bearer ${token}`, forged: `Bearer ${FORGED}`, junk: "Basic Zm9vOmJhcg==" }[c.auth];
  if (bearer) lines.push(`Authorization: ${bearer}`);
  if (c.contentType) lines.push(`Content-Type: ${c.contentType}`);
  for (const [k, v] of c.headers) lines.push(`${k}: ${v}`);
  if (c.upgrade) {
    lines.push("Connection: Upgrade", `Upgrade: ${c.upgrade === "h2c" ? "h2c" : "websocket"}`, "Sec-WebSocket-Version: 13");
    if (c.upgrade === "valid") lines.push("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
  } else lines.push("Connection: close");
  if (c.body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(c.body)}`);
  return lines.join("\r\n") + "\r\n\r\n" + (c.body ?? "");
}

// ---- WebSocket scripts --------------------------------------------------------------------------

const SAFE_SIGNALS = ["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGUSR1", "SIGCONT", "SIGQUIT", "SIGPIPE", "SIGALRM"];
const wsAction = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }).map((b) => ({ kind: "stdin" as const, data: Buffer.from(b) })),
  fc.constant({ kind: "text" as const, data: JSON.stringify({ type: "stdin-eof" }) }),
  fc.oneof(fc.constantFrom(...SAFE_SIGNALS), fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 1 })).map((signal) => ({ kind: "text" as const, data: JSON.stringify({ type: "signal", signal }) })),
  fc.oneof(fc.string({ maxLength: 100 }), fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null")).map((data) => ({ kind: "text" as const, data })),
  fc.constantFrom({ kind: "huge-binary" as const, data: Buffer.alloc(0) }, { kind: "huge-text" as const, data: Buffer.alloc(0) }),
);
const firstMessage = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(["cat"], ["sh", "-c", "cat >/dev/null; echo done"], ["true"], ["head", "-c", "5"], ["sh", "-c", "echo out; echo err >&2; cat"]).map((argv) => ({ kind: "text" as const, data: JSON.stringify({ argv }) })) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => ({ kind: "text" as const, data: JSON.stringify(v) ?? "null" })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 50 }).map((data) => ({ kind: "text" as const, data })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 50 }).map((b) => ({ kind: "stdin" as const, data: Buffer.from(b) })) },
);
const wsScript = fc.record({ first: firstMessage, actions: fc.array(wsAction, { maxLength: 8 }) });

interface Msg {
  kind: "stdin" | "text" | "huge-binary" | "huge-text";
  data: string | Buffer;
}

interface WsOutcome {
  texts: string[];
  badFrames: number;
  closeCode: number;
}

async function runScript(url: string, sessionId: string, token: string, script: { first: Msg; actions: Msg[] }): Promise<WsOutcome> {
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/sessions/${sessionId}/exec/stream`, { headers: { authorization: `Bearer ${token}` } });
  ws.on("error", () => undefined); // the close code says what happened
  const texts: string[] = [];
  let badFrames = 0;
  let onFinal = () => {};
  const final = new Promise<"final">((resolve) => (onFinal = () => resolve("final")));
  ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (isBinary) {
      if (buf[0] !== 1 && buf[0] !== 2) badFrames++;
      return;
    }
    const text = buf.toString("utf8");
    texts.push(text);
    let m: { type?: string; fatal?: boolean } = {};
    try {
      m = JSON.parse(text) as typeof m;
    } catch {
      /* reported by the caller's checks */
    }
    if (m.type === "exit" || (m.type === "error" && m.fatal !== false)) onFinal();
  });
  const closed = new Promise<number>((resolve) => ws.on("close", (code: number) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("unexpected-response", (_r, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
  });
  const send = (a: Msg) =>
    new Promise<void>((resolve) => {
      if (ws.readyState !== ws.OPEN) return resolve();
      const data = a.kind === "huge-binary" ? Buffer.alloc((1 << 20) + 1) : a.kind === "huge-text" ? "x".repeat((1 << 20) + 1) : a.data;
      ws.send(data, { binary: a.kind === "stdin" || a.kind === "huge-binary" }, () => resolve());
    });
  await send(script.first);
  for (const a of script.actions) await send(a);
  await send({ kind: "text", data: JSON.stringify({ type: "stdin-eof" }) });
  // Every command of the scripts ends once its stdin is closed: a final message or a close must come.
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<"hang">((resolve) => (timer = setTimeout(() => resolve("hang"), 10_000)));
  const first = await Promise.race([final, closed.then(() => "closed" as const), hang]);
  clearTimeout(timer);
  if (first === "hang") ws.terminate();
  else if (first === "final") ws.close();
  const closeCode = await closed;
  assert.notEqual(first, "hang", `the stream neither ended nor closed in 10 s; messages: ${texts.join(" | ")}`);
  return { texts, badFrames, closeCode };
}

// ---- the test -----------------------------------------------------------------------------------

void describe("fuzzing the HTTP API and the exec WebSocket", () => {
  let home: { path: string; remove: () => Promise<void> };
  let proc: ChildProcess | undefined;
  let url: string;
  let client: PaddockClient;
  let token: string;
  let serverLog: () => string;

  before(async () => {
    home = await tempDir();
    const s = await spawnServer(home.path);
    ({ url, proc, client } = s);
    serverLog = s.stderr;
    token = await adminToken(home.path);
  });
  after(async () => {
    let stuck = false;
    if (proc && proc.exitCode === null) {
      for (const x of await client.sessions.list().catch(() => [])) await client.sessions.stop(x.id).catch(() => undefined);
      const p = proc;
      await new Promise<void>((resolve) => {
        p.once("exit", () => resolve());
        p.kill("SIGTERM");
        // A server that cannot shut down (a connection it never lets go) is a failure, and killed.
        setTimeout(() => {
          if (p.exitCode !== null) return;
          stuck = true;
          p.kill("SIGKILL");
        }, 10_000).unref();
      });
    }
    await releaseHome(home.path);
    await home.remove();
    assert.equal(stuck, false, `the server did not stop within 10 s of SIGTERM:\n${serverLog()}`);
  });

  /** No answer may show where the host keeps its data, or the admin token. */
  const leakFree = (text: string, where: string) => {
    assert.ok(!text.includes(home.path), `${where}: shows the data directory: ${text.slice(0, 500)}`);
    // The secret part is everything after `pdk_<id>_`; it may itself contain `_` (base64url).
    const secretPart = /^pdk_[a-z0-9]+_(.+)$/.exec(token)?.[1] ?? token;
    assert.ok(!text.includes(token) && !text.includes(secretPart), `${where}: shows the admin token`);
  };
  const alive = () => assert.equal(proc?.exitCode, null, `the server exited:\n${serverLog()}`);
  /** Health answered every time, and fast, while the fuzzer ran. */
  const checkHealth = (samples: number[], failures: string[]) => {
    alive();
    assert.deepEqual(failures, [], "health failed while fuzzing");
    assert.ok(samples.length > 50, `only ${samples.length} health samples`);
    const p99 = percentile(samples, 99);
    assert.ok(p99 < HEALTH_P99_MS, `health p99 ${p99.toFixed(1)} ms while fuzzing`);
  };

  void it("HTTP: no 5xx, our error shape, no leaks; health stays fast", async () => {
    const probe = healthProbe(url);
    let cases = 0;
    const failure = await fc
      .assert(
        fc.asyncProperty(fc.array(httpRequest, { minLength: 1, maxLength: 3 }), async (batch) => {
          await Promise.all(
            batch.map(async (c) => {
              cases++;
              const res = await rawRequest(url, render(c, token), 15_000);
              const what = `${c.method} ${c.target.path.slice(0, 120)} → ${res.text.slice(0, 300)}`;
              assert.ok(res.status > 0, `no answer: ${what}`);
              assert.ok(res.status < 500, what);
              if (res.status >= 400 && c.method !== "HEAD") {
                const e = (JSON.parse(res.body) as { error?: { code?: unknown; message?: unknown } }).error;
                assert.ok(typeof e?.code === "string" && typeof e.message === "string", `not our error shape: ${what}`);
                assert.ok(res.body.length < 8192, `a ${res.body.length}-byte error: ${what}`);
              }
              // doctor's job is to tell an admin about the host (paths included).
              if (c.target.operationId !== "doctor" || res.status >= 400) leakFree(res.text, what);
            }),
          );
        }),
        { numRuns: 1_000_000, interruptAfterTimeLimit: HTTP_BUDGET_MS, markInterruptAsFailure: false, endOnFailure: true, reporter: shortReport },
      )
      .then(() => null, (err: unknown) => err);
    const { samples, failures } = await probe.stop();
    process.stderr.write(`# http fuzz: ${cases} requests; health: ${samples.length} samples, p50 ${percentile(samples, 50).toFixed(1)} ms, p99 ${percentile(samples, 99).toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms\n`);
    if (failure) throw failure;
    checkHealth(samples, failures);
  });

  void it("exec WebSocket: random, garbage and oversized messages; no crash, no internal errors", async () => {
    await client.environments.apply("fuzz.yml", "name: fuzz-ws\n");
    const session = await client.sessions.start("fuzz-ws");
    const probe = healthProbe(url);
    let scripts = 0;
    const failure = await fc
      .assert(
        fc.asyncProperty(wsScript, async (script) => {
          scripts++;
          const out = await runScript(url, session.id, token, script);
          assert.equal(out.badFrames, 0, "binary messages start with 1 (stdout) or 2 (stderr)");
          for (const t of out.texts) {
            const m = JSON.parse(t) as { type?: string; code?: string };
            assert.ok(m.type === "exit" || m.type === "error", `unknown message ${t}`);
            assert.notEqual(m.code, "internal", `an internal error: ${t}`);
            leakFree(t, "exec stream");
          }
          assert.ok([1000, 1005, 1009].includes(out.closeCode), `close code ${out.closeCode}; messages: ${out.texts.join(" | ")}`);
        }),
        { numRuns: 1_000_000, interruptAfterTimeLimit: WS_BUDGET_MS, markInterruptAsFailure: false, endOnFailure: true, reporter: shortReport },
      )
      .then(() => null, (err: unknown) => err);
    const { samples, failures } = await probe.stop();
    process.stderr.write(`# ws fuzz: ${scripts} scripts; health: ${samples.length} samples, p50 ${percentile(samples, 50).toFixed(1)} ms, p99 ${percentile(samples, 99).toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms\n`);
    if (failure) throw failure;
    checkHealth(samples, failures);
    // The session still works after all that.
    const r = await client.sessions.run(session.id, { argv: ["echo", "ok"] });
    assert.equal(r.stdout, "ok\n");
  });

  void it("afterwards: the audit chain verifies and the server log shows no token", async () => {
    alive();
    const v = await client.audit.verify();
    assert.equal(v.ok, true, JSON.stringify(v.problems.slice(0, 5)));
    assert.ok(v.records > 100, `only ${v.records} audit records`);
    assert.ok(!serverLog().includes(token), "the server log shows the admin token");
  });
});
