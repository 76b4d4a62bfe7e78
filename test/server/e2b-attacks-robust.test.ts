/**
 * Hostile input to the E2B front end, against a real server and real sandboxes: corrupt gzip and
 * gzip bombs, hostile multipart bodies, malformed JSON and envelopes, wrong content types, bodies
 * too large or that never end, thousands of concurrent calls and watches, a download of a huge
 * file behind a small symlink. Each time the server must refuse cleanly (4xx, or 507 for a full
 * disk; never a 5xx with internals), stay up and go on answering others, with no uncaught
 * exception and no unhandled rejection.
 */
import assert from "node:assert/strict";
import { Agent, request } from "node:http";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { MAX_WATCHES_PER_SANDBOX } from "../../src/server/e2b/fs-watch.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";
import { envelope, type Json } from "../helpers/connect.ts";

const ENV = `name: rob
compute:
  disk: 48MiB
`;

/** A request whose body is sent in chunks and never ended, until `abort()`. */
function endlessRequest(url: string, headers: Record<string, string>): { abort: () => void; answered: Promise<number | null> } {
  const req = request(url, { method: "POST", headers: { ...headers, "transfer-encoding": "chunked" } });
  const answered = new Promise<number | null>((resolve) => {
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode ?? null);
    });
    req.on("error", () => resolve(null));
    req.on("close", () => resolve(null));
  });
  req.write("{");
  return { abort: () => req.destroy(), answered };
}

void describe("E2B front end under hostile input", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let admin: string;
  let cleanup: () => Promise<void>;
  let sandbox: { id: string; token: string; session: string };
  const problems: unknown[] = [];
  const onProblem = (err: unknown): void => void problems.push(err);

  before(async () => {
    process.on("unhandledRejection", onProblem);
    process.on("uncaughtException", onProblem);
    const t = await testServer({ e2bPort: 0 });
    ({ server, client, cleanup } = t);
    admin = t.token;
    await client.environments.apply("runtime.yml", ENV);
    const res = await fetch(`${server.e2bUrl}/v2/sandboxes`, { method: "POST", headers: { "x-api-key": admin, "content-type": "application/json" }, body: JSON.stringify({ templateID: "rob", timeout: 600 }) });
    const body = (await res.json()) as Json;
    assert.equal(res.status, 201, JSON.stringify(body));
    const id = String(body.sandboxID);
    sandbox = { id, token: String(body.envdAccessToken), session: (await server.cp.store.getE2bSandbox(id))?.sessionId ?? "" };
  });
  after(async () => {
    process.off("unhandledRejection", onProblem);
    process.off("uncaughtException", onProblem);
    await cleanup?.();
  });

  const auth = (extra: Record<string, string> = {}): Record<string, string> => ({ "e2b-sandbox-id": sandbox.id, "x-access-token": sandbox.token, ...extra });
  const fsCall = async (method: string, msg: unknown, headers = auth()) => {
    const res = await fetch(`${server.e2bUrl}/filesystem.Filesystem/${method}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(msg) });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const filesUrl = (path: string) => `${server.e2bUrl}/files?${new URLSearchParams({ path })}`;
  const inside = async (line: string) => {
    const r = await client.sessions.run(sandbox.session, { argv: ["bash", "-c", line] });
    assert.equal(r.exitCode, 0, `${line}: ${r.stderr}`);
    return r.stdout;
  };
  /** The server answers others, and nothing went uncaught. */
  const stillUp = async () => {
    assert.equal((await fetch(`${server.e2bUrl}/health`)).status, 204);
    assert.equal((await fsCall("Stat", { path: "~" })).status, 200);
    assert.deepEqual(problems, [], "no uncaught exception or unhandled rejection");
  };
  /** A refusal in E2B's or Connect's shape that tells no internals. */
  const clean = async (res: Response, statuses: number[], what: string) => {
    const text = await res.text();
    assert.ok(statuses.includes(res.status), `${what}: ${res.status} ${text}`);
    assert.doesNotMatch(text, /at [\w.<>]+ \(|node:internal|\/work\/|stack/i, `${what}: no internals in ${text}`);
    return text;
  };

  void it("gzip uploads: a corrupt body is 400 (to home or to a directory the user cannot write), a bomb stops at the sandbox's disk (507)", async () => {
    const garbage = { "content-type": "application/octet-stream", "content-encoding": "gzip" };
    for (const path of ["~/corrupt.txt", "/etc/corrupt.txt", "/proc/corrupt"]) {
      const res = await fetch(filesUrl(path), { method: "POST", headers: auth(garbage), body: Buffer.alloc(200_000, 7) });
      // Whichever comes first: the body found corrupt, or the path refused by the sandbox.
      assert.match(await clean(res, [400, 403, 404], path), /not valid gzip|permission denied|no such file/);
    }
    // Truncated gzip: valid header, then the stream stops.
    const truncated = gzipSync(Buffer.alloc(1 << 20, 1)).subarray(0, 200);
    assert.match(await clean(await fetch(filesUrl("~/truncated.txt"), { method: "POST", headers: auth(garbage), body: truncated }), [400], "truncated"), /not valid gzip|unexpected end/i);
    // 512 MiB of zeros in about half a MiB: inflated as it is written, it stops at the sandbox's disk.
    const bomb = gzipSync(Buffer.alloc(512 << 20), { level: 9 });
    assert.ok(bomb.length < 1 << 20);
    const started = Date.now();
    const res = await fetch(filesUrl("~/bomb.bin"), { method: "POST", headers: auth(garbage), body: bomb });
    await clean(res, [507], "gzip bomb");
    console.log(`gzip bomb (${bomb.length} bytes → 512 MiB) refused with 507 after ${Date.now() - started} ms`);
    assert.equal((await fsCall("Stat", { path: "~/bomb.bin" })).status, 404, "nothing half-written left in place");
    assert.equal((await inside("ls -A ~ | grep -c paddock-put || true")).trim(), "0", "no temporary file left");
    assert.equal((await fetch(filesUrl("~/after.txt"), { method: "POST", headers: auth({ "content-type": "application/octet-stream" }), body: "ok" })).status, 200, "the disk is usable again");
    await stillUp();
  });

  void it("multipart: file names that climb or are absolute land where the sandbox user may write, or are refused; broken bodies are 400", async () => {
    const post = async (body: string | Buffer, boundary = "XyZ", query = "") =>
      fetch(`${server.e2bUrl}/files${query}`, { method: "POST", headers: auth({ "content-type": `multipart/form-data; boundary=${boundary}` }), body });
    const part = (filename: string, data = "x", name = "file") => `--XyZ\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\n\r\n${data}\r\n`;
    // `../../x` resolves from the home to /x: the kernel refuses it to `user`.
    await clean(await post(`${part("../../climb.txt")}--XyZ--\r\n`), [403], "../../");
    await clean(await post(`${part("/etc/abs.txt")}--XyZ--\r\n`), [403], "absolute");
    await clean(await post(`${part("a\u0000b")}--XyZ--\r\n`), [400], "NUL in a file name");
    await clean(await post(`${part("~root/x")}--XyZ--\r\n`), [400], "another user's home");
    await clean(await post(`${part("~/same")}${part("~/same")}--XyZ--\r\n`), [400], "two parts to one path");
    await clean(await post(`${part("~/ok.txt")}--XyZ--\r\n`, "B".repeat(71)), [400], "boundary too long");
    await clean(await post("no boundary anywhere in this body"), [400], "boundary never appears");
    await clean(await post(`${part("~/open.txt", "no closing delimiter")}`), [400], "no closing delimiter");
    await clean(await post(`--XyZ\r\nContent-Disposition: form-data; name="file"; filename="~/h"\r\nX-Pad: ${"p".repeat(20_000)}\r\n\r\nx\r\n--XyZ--\r\n`), [400], "headers too long");
    await clean(await post(`${Array.from({ length: 1001 }, () => part("x", "x", "other")).join("")}--XyZ--\r\n`), [400], "too many parts");
    await clean(await post(`--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--\r\n`), [400], "no Content-Disposition");
    // The boundary is data to look for, not a pattern.
    const odd = "a.*+?^$(){}|[]\\-=_";
    assert.equal((await post(`--${odd}\r\nContent-Disposition: form-data; name="file"; filename="~/odd.txt"\r\n\r\nodd\r\n--${odd}--\r\n`, `"${odd}"`)).status, 200);
    assert.equal((await inside("cat ~/odd.txt; test ! -e /climb.txt && test ! -e /etc/abs.txt && echo -n clean")).trim(), "oddclean");
    await stillUp();
  });

  void it("an upload refused before its body is read does not wedge the connection for the next request", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const send = (method: string, path: string, headers: Record<string, string>, body?: Buffer) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = request(`${server.e2bUrl}${path}`, { method, agent, headers, timeout: 30_000 }, (res) => {
          let text = "";
          res.setEncoding("utf8").on("data", (c: string) => (text += c)).on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in 30 s (a wedged connection)`)));
        req.on("error", reject);
        req.end(body);
      });
    try {
      const octet = auth({ "content-type": "application/octet-stream" });
      for (const [path, headers] of [["/etc/wedge", octet], ["/proc/wedge", octet], ["/proc/sys/wedge", auth({ "content-type": "application/octet-stream", "content-encoding": "gzip" })]] as const) {
        const refused = await send("POST", `/files?${new URLSearchParams({ path })}`, headers, Buffer.alloc(4 << 20, 1));
        assert.ok([400, 403, 404].includes(refused.status), `${path}: ${refused.status} ${refused.text}`);
        assert.equal((await send("GET", "/health", {})).status, 204, `after ${path}`);
      }
      // A multipart body with an epilogue after its closing delimiter.
      const body = Buffer.from(`--E\r\nContent-Disposition: form-data; name="file"; filename="~/epi.txt"\r\n\r\nepi\r\n--E--\r\n${"epilogue ".repeat(200_000)}`);
      assert.equal((await send("POST", "/files", auth({ "content-type": "multipart/form-data; boundary=E" }), body)).status, 200);
      assert.equal((await send("GET", "/health", {})).status, 204, "after an epilogue");
    } finally {
      agent.destroy();
    }
    await stillUp();
  });

  void it("malformed control and Connect requests: E2B and Connect errors, nothing internal, the server stays up", async () => {
    const control = (body: string | Buffer, type = "application/json") => fetch(`${server.e2bUrl}/v2/sandboxes`, { method: "POST", headers: { "x-api-key": admin, "content-type": type }, body });
    const shaped = async (res: Response, status: number, what: string) => {
      const text = await clean(res, [status], what);
      const body = JSON.parse(text) as Json;
      assert.equal(body.code, status, `${what}: E2B's {code, message}`);
      assert.equal(typeof body.message, "string");
    };
    await shaped(await control("{"), 400, "malformed JSON");
    await shaped(await control("[]"), 400, "an array");
    await shaped(await control('{"templateID": 5}'), 400, "a number for a string");
    await shaped(await control(JSON.stringify({ templateID: "x".repeat(10_000) })), 400, "a huge template id");
    // text/plain is parsed as a string (then refused as not an object); others are 415.
    await shaped(await control("templateID=rob", "text/plain"), 400, "text/plain");
    await shaped(await control("templateID=rob", "application/x-www-form-urlencoded"), 415, "another content type");
    await shaped(await control(Buffer.alloc(2 << 20, 0x20)), 413, "a body too large");
    // What any route buffers before authentication is small: 2 MiB sent anonymously is refused.
    for (const [method, path] of [["POST", "/templates"], ["DELETE", "/sandboxes/abc"], ["POST", "/sandboxes/abc/pause"], ["POST", "/process.Process/List"], ["POST", "/filesystem.Filesystem/Stat"]] as const) {
      const res = await fetch(`${server.e2bUrl}${path}`, { method, headers: { "content-type": "text/plain" }, body: Buffer.alloc(2 << 20, 0x61) });
      await clean(res, [413], `2 MiB of text/plain to ${method} ${path}`);
    }
    await shaped(await fetch(`${server.e2bUrl}/sandboxes/${"a".repeat(90)}`, { headers: { "x-api-key": admin } }), 404, "a long id");
    await clean(await fetch(`${server.e2bUrl}/sandboxes/${"a".repeat(5000)}`, { headers: { "x-api-key": admin } }), [414], "a huge id (Fastify's router refuses it)");

    const unary = (body: string | Buffer, type = "application/json") => fetch(`${server.e2bUrl}/filesystem.Filesystem/Stat`, { method: "POST", headers: auth({ "content-type": type }), body });
    const connectErr = async (res: Response, code: string, what: string) => {
      const text = await clean(res, [400, 401, 403, 404, 413, 415, 501], what);
      if (code !== "") assert.equal((JSON.parse(text) as Json).code, code, what);
    };
    await connectErr(await unary("{"), "invalid_argument", "bad JSON");
    await connectErr(await unary('"just a string"'), "invalid_argument", "not an object");
    await connectErr(await unary('{"path": 7}'), "invalid_argument", "a number for the path");
    await connectErr(await unary('{"path": "~"}', "text/plain"), "invalid_argument", "unary with another content type");
    await connectErr(await unary(Buffer.alloc(17 << 20, 0x20)), "", "a body over the Connect limit");
    const stream = (body: Buffer, type = "application/connect+json") => fetch(`${server.e2bUrl}/filesystem.Filesystem/WatchDir`, { method: "POST", headers: auth({ "content-type": type }), body });
    const lying = envelope(0, { path: "~" });
    lying.writeUInt32BE(1 << 30, 1);
    await connectErr(await stream(lying), "invalid_argument", "an envelope whose length lies");
    await connectErr(await stream(Buffer.from([0, 0])), "invalid_argument", "a short envelope");
    await connectErr(await stream(Buffer.concat([Buffer.from([1, 0, 0, 0, 2]), Buffer.from("{}")])), "unimplemented", "a compressed envelope");
    await connectErr(await stream(envelope(0, { path: "~" }), "application/json"), "invalid_argument", "a stream sent as unary");
    // Once a stream has started, the error is its end-of-stream message (HTTP 200), as Connect has it.
    const badStart = await fetch(`${server.e2bUrl}/process.Process/Start`, { method: "POST", headers: auth({ "content-type": "application/connect+json" }), body: envelope(0, { process: { cmd: 5 } }) });
    assert.match(await clean(badStart, [200], "a bad Start"), /"error":\{"code":"invalid_argument"/);
    await stillUp();
  });

  void it("bodies that never end hold only their own request: others are answered meanwhile, and the aborted upload leaves nothing", async () => {
    const pending = [
      ...Array.from({ length: 20 }, () => endlessRequest(`${server.e2bUrl}/filesystem.Filesystem/ListDir`, auth({ "content-type": "application/json" }))),
      ...Array.from({ length: 5 }, () => endlessRequest(`${server.e2bUrl}/v2/sandboxes`, { "x-api-key": admin, "content-type": "application/json" })),
      ...Array.from({ length: 5 }, (_, i) => endlessRequest(filesUrl(`~/endless-${i}.bin`), auth({ "content-type": "application/octet-stream" }))),
    ];
    // The uploads have reached the sandbox (the agent writes them to a temporary file).
    await until(async () => Number((await inside("ls -A ~ | grep -c '^.paddock-put' || true")).trim()) === 5, 30_000, "the endless uploads to reach the sandbox");
    await stillUp();
    assert.equal((await fsCall("ListDir", { path: "~" })).status, 200);
    for (const p of pending) p.abort();
    await Promise.all(pending.map((p) => p.answered));
    await until(async () => (await inside("ls -A ~ | grep -c '^.paddock-put\\|^endless' || true")).trim() === "0", 30_000, "the aborted uploads to leave nothing behind");
    await stillUp();
  });

  void it("a thousand concurrent calls and watches: each answered or refused cleanly, at most the watch limit open, the slots freed after", async () => {
    const lists = await Promise.all(Array.from({ length: 1000 }, async () => (await fsCall("ListDir", { path: "~" })).status));
    const byStatus = lists.reduce<Record<number, number>>((m, s) => ({ ...m, [s]: (m[s] ?? 0) + 1 }), {});
    console.log(`1000 concurrent ListDir: ${JSON.stringify(byStatus)}`);
    assert.ok(lists.every((s) => s === 200 || s === 429 || s === 503), JSON.stringify(byStatus));
    assert.ok((byStatus[200] ?? 0) > 0);

    const ac = new AbortController();
    const outcomes = await Promise.all(
      Array.from({ length: 1000 }, async () => {
        const res = await fetch(`${server.e2bUrl}/filesystem.Filesystem/WatchDir`, { method: "POST", headers: auth({ "content-type": "application/connect+json" }), body: envelope(0, { path: "~" }), signal: ac.signal });
        const reader = (res.body as ReadableStream<Uint8Array>).getReader();
        let buf = Buffer.alloc(0);
        while (buf.length < 5 || buf.length < 5 + buf.readUInt32BE(1)) {
          const { done, value } = await reader.read();
          if (done) return "closed";
          buf = Buffer.concat([buf, Buffer.from(value)]);
        }
        const first = JSON.parse(buf.subarray(5, 5 + buf.readUInt32BE(1)).toString("utf8")) as Json;
        if (first.start !== undefined) return "started";
        return String((first.error as Json | undefined)?.code);
      }),
    );
    const started = outcomes.filter((o) => o === "started").length;
    assert.equal(started, MAX_WATCHES_PER_SANDBOX, JSON.stringify(outcomes));
    assert.equal(outcomes.filter((o) => o === "resource_exhausted").length, 1000 - MAX_WATCHES_PER_SANDBOX);
    ac.abort();
    // The slots come back once the clients are gone: a new watch starts.
    await until(async () => {
      const one = new AbortController();
      const res = await fetch(`${server.e2bUrl}/filesystem.Filesystem/WatchDir`, { method: "POST", headers: auth({ "content-type": "application/connect+json" }), body: envelope(0, { path: "~" }), signal: one.signal });
      const { value } = await (res.body as ReadableStream<Uint8Array>).getReader().read();
      one.abort();
      return value !== undefined && Buffer.from(value).toString("utf8").includes('"start"');
    }, 30_000, "a watch slot to be free again");
    await stillUp();
  });

  void it("a download of a huge file behind a small symlink (or grown after the stat) streams: the server never holds it whole", async () => {
    await inside("truncate -s 400M ~/huge.bin && ln -s ~/huge.bin ~/small-link");
    let peak = 0;
    const base = process.memoryUsage().arrayBuffers;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers - base)), 5);
    let bytes = 0;
    try {
      const res = await fetch(filesUrl("~/small-link"), { headers: auth() });
      assert.equal(res.status, 200);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.length;
    } finally {
      clearInterval(sampler);
    }
    assert.equal(bytes, 400 << 20);
    console.log(`400 MiB through a symlink: peak extra array-buffer memory ${(peak / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(peak < 128 << 20, `the server held ${(peak / 2 ** 20).toFixed(0)} MiB at once`);
    // A client that goes away mid-download stops the read in the sandbox; nothing goes uncaught.
    const ac = new AbortController();
    const partial = await fetch(filesUrl("~/small-link"), { headers: auth(), signal: ac.signal });
    await (partial.body as ReadableStream<Uint8Array>).getReader().read();
    ac.abort();
    // A small file still comes whole, with its length.
    await inside("echo -n tiny > ~/tiny.txt");
    const tiny = await fetch(filesUrl("~/tiny.txt"), { headers: auth() });
    assert.equal(tiny.headers.get("content-length"), "4");
    assert.equal(await tiny.text(), "tiny");
    await stillUp();
  });
});
