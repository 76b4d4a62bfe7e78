/**
 * envd's filesystem service, `/files` and `/health` on the E2B front end, spoken raw (Connect JSON
 * and plain HTTP, as the SDK sends them) against a real server and a real sandbox whose
 * guardrails deny `rm` and `mv`: the file API still works (it runs no program) while commands
 * still cannot run them. Signed URLs are checked through the real routes with a sandbox table
 * that can verify signatures (see E2bSandboxes.envdSignedCaller). Then what the SDK never sends:
 * broken envelopes, bad JSON, unknown sandboxes, paths too long, no token, another user.
 * The SDK's own view is in test/e2b-sdk/files.test.ts.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import type { PaddockClient } from "../../src/client/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { ErrorReporter } from "../../src/server/errors.ts";
import type { E2bSandboxes } from "../../src/server/e2b/context.ts";
import { registerFilesystemService } from "../../src/server/e2b/envd-filesystem.ts";
import { envdSignature } from "../../src/server/e2b/fs-signature.ts";
import { createE2bSandboxes } from "../../src/server/e2b/sandboxes.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";
import { envelope, envelopes, type Json } from "../helpers/connect.ts";

const ENV = `name: e2bfs
guardrails:
  commands:
    deny: [rm, mv]
`;

void describe("E2B envd filesystem service (raw requests, real sandbox)", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let token: string;
  let home: string;
  let cleanup: () => Promise<void>;
  let sandbox: string;
  let signing: FastifyInstance | undefined;
  let signingUrl = "";

  const auth = (extra: Record<string, string> = {}): Record<string, string> => ({ "e2b-sandbox-id": sandbox, "x-access-token": token, ...extra });
  const rpc = async (method: string, msg: unknown, headers: Record<string, string> = auth()): Promise<{ status: number; body: Json }> => {
    const res = await fetch(`${server.e2bUrl}/filesystem.Filesystem/${method}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(msg) });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const entry = (r: { body: Json }): Json => r.body.entry as Json;

  before(async () => {
    const t = await testServer({ e2bPort: 0 });
    ({ server, client, token, home, cleanup } = t);
    await client.environments.apply("runtime.yml", ENV);
    sandbox = (await client.sessions.start("e2bfs")).id;
    // The real routes with a sandbox table that can verify signatures: this one knows the one
    // token it accepts (a Paddock API token stands for the sandbox's envd access token).
    const table = createE2bSandboxes(server.cp);
    const sandboxes: E2bSandboxes = {
      envdCaller: (h, op, req, target) => table.envdCaller(h, op, req, target),
      envdSignedCaller: async (h, verify, op, req) => {
        if (!verify(token)) throw new PaddockError("unauthorized", "no sandbox's token verifies");
        return table.envdCaller({ ...h, "e2b-sandbox-id": sandbox, "x-access-token": token }, op, req);
      },
    };
    signing = Fastify();
    const errors = new ErrorReporter({ home, log: () => undefined, secretValues: async () => [] });
    await signing.register(async (scope) => registerFilesystemService(scope, { cp: server.cp, errors, log: () => undefined, sandboxes }));
    signingUrl = await signing.listen({ host: "127.0.0.1", port: 0 });
  });
  after(async () => {
    await signing?.close();
    await cleanup?.();
  });

  void it("/health answers 204 without a token; /init, /envs, /metrics are refused plainly", async () => {
    const res = await fetch(`${server.e2bUrl}/health`);
    assert.equal(res.status, 204);
    // envd's routes the SDKs never call are refused plainly.
    for (const [method, path] of [["POST", "/init"], ["GET", "/envs"], ["GET", "/metrics"]]) {
      const r = await fetch(`${server.e2bUrl}${path}`, { method });
      assert.equal(r.status, 501, path);
      assert.match(String(((await r.json()) as Json).message), /not offered by Paddock/);
    }
  });

  void it("MakeDir (then already_exists), Stat, ListDir with depth, Move, Remove: as envd answers them", async () => {
    const made = await rpc("MakeDir", { path: "/workspace/p/q" });
    assert.equal(made.status, 200);
    assert.deepEqual({ ...entry(made), modifiedTime: undefined }, {
      name: "q", type: "FILE_TYPE_DIRECTORY", path: "/workspace/p/q", size: entry(made).size, mode: 0o755, permissions: "drwxr-xr-x",
      owner: entry(made).owner, group: entry(made).group, modifiedTime: undefined,
    });
    assert.match(String(entry(made).modifiedTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{9})?Z$/);
    const again = await rpc("MakeDir", { path: "/workspace/p/q" });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, "already_exists");

    await client.files.write(sandbox, "/workspace/p/q/f.txt", Buffer.from("hello"));
    const st = await rpc("Stat", { path: "/workspace/p/q/f.txt" });
    assert.equal(entry(st).type, "FILE_TYPE_FILE");
    assert.equal(entry(st).size, "5");
    assert.equal(entry(st).permissions, "-rw-r--r--");

    const one = await rpc("ListDir", { path: "/workspace/p", depth: 1 });
    assert.deepEqual((one.body.entries as Json[]).map((e) => e.path), ["/workspace/p/q"]);
    const two = await rpc("ListDir", { path: "/workspace/p", depth: 2 });
    assert.deepEqual((two.body.entries as Json[]).map((e) => e.path), ["/workspace/p/q", "/workspace/p/q/f.txt"]);
    assert.equal((await rpc("ListDir", { path: "/workspace/p/q/f.txt" })).body.code, "invalid_argument");

    const moved = await rpc("Move", { source: "/workspace/p/q/f.txt", destination: "/workspace/p/new/g.txt" });
    assert.equal(entry(moved).path, "/workspace/p/new/g.txt");
    assert.equal((await rpc("Stat", { path: "/workspace/p/q/f.txt" })).body.code, "not_found");
    assert.equal((await rpc("Remove", { path: "/workspace/p" })).status, 200);
    assert.equal((await rpc("Stat", { path: "/workspace/p" })).status, 404);
    assert.equal((await rpc("Remove", { path: "/workspace/p" })).status, 200, "removing nothing is fine (envd: RemoveAll)");
  });

  void it("rm and mv are denied as commands, yet Move and Remove work (they run no program)", async () => {
    await client.files.write(sandbox, "/workspace/g1", Buffer.from("x"));
    for (const [program, argv] of [["rm", ["rm", "/workspace/g1"]], ["mv", ["mv", "/workspace/g1", "/workspace/g2"]]] as const) {
      const r = await client.sessions.run(sandbox, { argv: [...argv] });
      assert.equal(r.exitCode, 126);
      assert.match(r.stderr, new RegExp(`'${program}' denied by guardrails\\.commands\\.deny`));
    }
    assert.equal((await rpc("Stat", { path: "/workspace/g1" })).status, 200);
    assert.equal((await rpc("Move", { source: "/workspace/g1", destination: "/workspace/g2" })).status, 200);
    assert.equal((await rpc("Remove", { path: "/workspace/g2" })).status, 200);
    assert.equal((await rpc("Stat", { path: "/workspace/g2" })).status, 404);
  });

  void it("uploads (multipart with several files, octet-stream, gzip) and downloads; each call audited", async () => {
    const form = new FormData();
    form.append("file", new Blob(["one"]), "/workspace/up/a.txt");
    form.append("file", new Blob([Buffer.from([0, 1, 2, 255])]), "/workspace/up/deep/b.bin");
    const res = await fetch(`${server.e2bUrl}/files`, { method: "POST", headers: auth(), body: form });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), [
      { name: "a.txt", type: "file", path: "/workspace/up/a.txt" },
      { name: "b.bin", type: "file", path: "/workspace/up/deep/b.bin" },
    ]);
    const raw = await fetch(`${server.e2bUrl}/files?path=/workspace/up/raw.txt`, { method: "POST", headers: auth({ "content-type": "application/octet-stream", "content-encoding": "gzip" }), body: gzipSync("zipped") });
    assert.equal(raw.status, 200);
    const get = async (path: string) => fetch(`${server.e2bUrl}/files?${new URLSearchParams({ path })}`, { headers: auth() });
    assert.equal(await (await get("/workspace/up/a.txt")).text(), "one");
    assert.deepEqual([...new Uint8Array(await (await get("/workspace/up/deep/b.bin")).arrayBuffer())], [0, 1, 2, 255]);
    assert.equal(await (await get("/workspace/up/raw.txt")).text(), "zipped");
    const missing = await get("/workspace/up/nope");
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as Json).code, 404);
    assert.equal((await get("/workspace/up")).status, 400, "a directory is not downloadable");
    // A big file streams both ways.
    const big = Buffer.alloc(8 << 20, 7);
    assert.equal((await fetch(`${server.e2bUrl}/files?path=/workspace/big`, { method: "POST", headers: auth({ "content-type": "application/octet-stream" }), body: big })).status, 200);
    assert.ok(Buffer.from(await (await get("/workspace/big")).arrayBuffer()).equals(big));
    const audit = await server.cp.store.listAudit({ sessionId: sandbox, limit: 1000 });
    for (const op of ["e2b.files.upload", "e2b.files.download", "e2b.files.make_dir", "e2b.files.move", "e2b.files.remove", "e2b.files.stat", "e2b.files.list"]) {
      assert.ok(audit.some((a) => a.action === `api.${op}` && a.decision === "allowed"), `no audit record for ${op}`);
    }
  });

  void it("refuses a call without a token (401), with a bad one, for another user, for an unknown sandbox", async () => {
    const noToken = await fetch(`${server.e2bUrl}/files?path=/workspace/big`, { headers: { "e2b-sandbox-id": sandbox } });
    assert.equal(noToken.status, 401);
    assert.equal(((await noToken.json()) as Json).code, 401);
    const bad = await rpc("Stat", { path: "/" }, auth({ "x-access-token": "pdk_nope" }));
    assert.equal(bad.status, 401);
    assert.equal(bad.body.code, "unauthenticated");
    const root = await rpc("Stat", { path: "/" }, auth({ authorization: `Basic ${Buffer.from("root:").toString("base64")}` }));
    assert.equal(root.body.code, "permission_denied");
    assert.match(String(root.body.message), /"root" is not available/);
    const asRoot = await fetch(`${server.e2bUrl}/files?path=/etc/hostname&username=root`, { headers: auth() });
    assert.equal(asRoot.status, 403);
    const unknown = await rpc("Stat", { path: "/" }, auth({ "e2b-sandbox-id": "nosuchsandbox0000000" }));
    assert.equal(unknown.status, 404);
  });

  void it("signed URLs: a valid one works without a token; tampered, for another operation or expired ones are refused", async () => {
    await client.files.write(sandbox, "/workspace/signed.txt", Buffer.from("signed"));
    const url = (path: string, operation: "read" | "write", expiration: number | null, over: Record<string, string> = {}): string => {
      const signature = envdSignature({ path, username: "user", expiration }, operation, token);
      const q = new URLSearchParams({ path, username: "user", signature, ...(expiration === null ? {} : { signature_expiration: String(expiration) }), ...over });
      return `${signingUrl}/files?${q}`;
    };
    const future = Math.floor(Date.now() / 1000) + 600;
    assert.equal(await (await fetch(url("/workspace/signed.txt", "read", null))).text(), "signed");
    assert.equal(await (await fetch(url("/workspace/signed.txt", "read", future))).text(), "signed");
    const form = new FormData();
    form.append("file", new Blob(["via signed url"]), "ignored-name");
    const up = await fetch(url("/workspace/signed-up.txt", "write", future), { method: "POST", body: form });
    assert.equal(up.status, 200);
    assert.equal((await client.files.read(sandbox, "/workspace/signed-up.txt")).toString(), "via signed url");

    const refused = async (u: string, init?: RequestInit): Promise<string> => {
      const res = await fetch(u, init);
      assert.equal(res.status, 401, u);
      return String(((await res.json()) as Json).message);
    };
    assert.match(await refused(url("/workspace/signed.txt", "read", null, { path: "/etc/shadow" })), /invalid signature/);
    assert.match(await refused(url("/workspace/signed.txt", "read", null, { username: "other" })), /invalid signature/);
    assert.match(await refused(url("/workspace/signed.txt", "read", future, { signature_expiration: String(future + 1) })), /invalid signature/);
    assert.match(await refused(url("/workspace/signed.txt", "write", null)), /invalid signature/, "a write signature does not read");
    assert.match(await refused(url("/workspace/x", "read", null), { method: "POST", body: "x", headers: { "content-type": "application/octet-stream" } }), /invalid signature/);
    assert.match(await refused(url("/workspace/signed.txt", "read", Math.floor(Date.now() / 1000) - 5)), /expired/);
    assert.match(await refused(url("/workspace/signed.txt", "read", null, { signature: "v1_garbage" })), /invalid signature/);
    // A wrong token in the header is refused even with a valid signature (as envd does).
    const res = await fetch(url("/workspace/signed.txt", "read", null), { headers: { "x-access-token": "pdk_wrong", "e2b-sandbox-id": sandbox } });
    assert.equal(res.status, 401);
    // On the front end proper, a URL signed with a Paddock API token (not an envd access token the
    // sandbox table issued) verifies against no sandbox.
    const plain = await fetch(url("/workspace/signed.txt", "read", null).replace(signingUrl, server.e2bUrl ?? ""));
    assert.equal(plain.status, 401);
  });

  void it("WatchDir streams start, then recursive events with names relative to the directory, and keepalives", async () => {
    await rpc("MakeDir", { path: "/workspace/w/sub" });
    const ac = new AbortController();
    const res = await fetch(`${server.e2bUrl}/filesystem.Filesystem/WatchDir`, {
      method: "POST",
      headers: auth({ "content-type": "application/connect+json", "keepalive-ping-interval": "1" }),
      body: envelope(0, { path: "/workspace/w", recursive: true }),
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    const it = envelopes(res.body!);
    assert.deepEqual((await it.next()).value?.msg, { start: {} });
    await client.files.write(sandbox, "/workspace/w/sub/new.txt", Buffer.from("n"));
    const seen: Json[] = [];
    let keepalive = false;
    await until(async () => {
      const m = (await it.next()).value?.msg;
      if (m?.keepalive) keepalive = true;
      if (m?.filesystem) seen.push(m.filesystem as Json);
      return seen.some((e) => e.name === "sub/new.txt" && e.type === "EVENT_TYPE_CREATE") && keepalive;
    }, 30_000, "a create event for sub/new.txt and a keepalive");
    ac.abort();
  });

  void it("a sandbox holds at most 64 watches at once; closing one frees its place", async () => {
    const open = async (): Promise<{ ac: AbortController; first: Json }> => {
      const ac = new AbortController();
      const res = await fetch(`${server.e2bUrl}/filesystem.Filesystem/WatchDir`, {
        method: "POST",
        headers: auth({ "content-type": "application/connect+json" }),
        body: envelope(0, { path: "/workspace" }),
        signal: ac.signal,
      });
      const first = (await envelopes(res.body!).next()).value?.msg ?? {};
      return { ac, first };
    };
    const watches: AbortController[] = [];
    try {
      for (let i = 0; i < 64; i++) {
        const w = await open();
        watches.push(w.ac);
        assert.deepEqual(w.first, { start: {} });
      }
      const over = await open();
      watches.push(over.ac);
      assert.equal((over.first.error as Json | undefined)?.code, "resource_exhausted");
      watches.shift()?.abort();
      await until(async () => {
        const w = await open();
        watches.push(w.ac);
        return "start" in w.first;
      }, 30_000, "a watch place freed by closing one");
    } finally {
      for (const ac of watches) ac.abort();
    }
  });

  void it("bad input gets Connect errors and the server stays up", async () => {
    const post = (path: string, body: string | Uint8Array, type = "application/json") =>
      fetch(`${server.e2bUrl}${path}`, { method: "POST", headers: auth({ "content-type": type }), body });
    const badJson = await post("/filesystem.Filesystem/Stat", "{nope");
    assert.equal(badJson.status, 400);
    assert.equal(((await badJson.json()) as Json).code, "invalid_argument");
    const notObject = await post("/filesystem.Filesystem/Stat", "[1]");
    assert.equal(((await notObject.json()) as Json).code, "invalid_argument");
    const wrongType = await post("/filesystem.Filesystem/Stat", JSON.stringify({ path: 7 }));
    assert.equal(((await wrongType.json()) as Json).code, "invalid_argument");
    const long = await rpc("Stat", { path: "/" + "a".repeat(5000) });
    assert.equal(long.body.code, "invalid_argument");
    assert.match(String(long.body.message), /limit is 4096/);
    const nul = await rpc("MakeDir", { path: "/workspace/a\u0000b" });
    assert.equal(nul.body.code, "invalid_argument");
    const brokenFrame = await post("/filesystem.Filesystem/WatchDir", Buffer.from([0, 0, 0, 0, 99, 1]), "application/connect+json");
    assert.equal(brokenFrame.status, 400);
    const unimplemented = await rpc("CreateWatcher", { path: "/workspace" });
    assert.equal(unimplemented.body.code, "unimplemented");
    const badMultipart = await post("/files?path=/workspace/x", "--nope\r\n", "multipart/form-data; boundary=zzz");
    assert.equal(badMultipart.status, 400);
    const noBoundary = await post("/files?path=/workspace/x", "x", "multipart/form-data");
    assert.equal(noBoundary.status, 400);
    const rawNoPath = await post("/files", "x", "application/octet-stream");
    assert.equal(rawNoPath.status, 400);
    assert.equal((await fetch(`${server.e2bUrl}/health`)).status, 204);
    assert.equal((await rpc("Stat", { path: "/workspace" })).status, 200);
  });
});
