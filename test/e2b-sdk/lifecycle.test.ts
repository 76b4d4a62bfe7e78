/**
 * The E2B control API driven by the REAL `e2b` SDK, both pinned releases (2.51.0 and 2.39.0: they
 * use different paths), against a real server and real sandboxes: create with metadata, getInfo,
 * list with filters and paging, setTimeout, pause → connect (resume) with a file kept, kill, and a
 * sandbox whose timeout passes is gone. Then what the SDK never sends (bad keys, unknown ids,
 * malformed JSON, refused options), RBAC (a read-only user can neither create nor kill) and audit.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as current from "e2b";
import * as previous from "e2b-prev";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { e2bApiKeyOf } from "../../src/server/e2b/api.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";

const ENV = `name: e2blife
rbac:
  engineering: [read, write]
  support: [read]
`;

type Sdk = typeof current;
const SDKS: [string, Sdk][] = [
  ["2.51.0", current],
  ["2.39.0", previous as unknown as Sdk],
];

void describe("E2B control API through the real SDK", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let token: string;
  let cleanup: () => Promise<void>;
  let url: string;
  const tokens: Record<string, string> = {};

  before(async () => {
    const t = await testServer({ e2bPort: 0 });
    server = t.server;
    client = t.client;
    token = t.token;
    cleanup = t.cleanup;
    url = server.e2bUrl ?? "";
    await client.environments.apply("runtime.yml", ENV);
    tokens.eng = (await client.principals.create({ name: "eng", role: "engineering" })).token;
    tokens.sup = (await client.principals.create({ name: "sup", role: "support" })).token;
    tokens.nobody = (await client.principals.create({ name: "nobody", role: "marketing" })).token;
  });
  after(async () => cleanup());

  /** SDK options; the key in E2B's shape (`e2b_` + hex), which SDK 2.39 insists on, unless `raw`. */
  const opts = (apiKey = token, raw = false) => ({ apiKey: raw ? apiKey : e2bApiKeyOf(apiKey), apiUrl: url, sandboxUrl: url, requestTimeoutMs: 120_000 });
  const sessionOf = async (sandboxId: string) => (await server.cp.store.getE2bSandbox(sandboxId))?.sessionId ?? "";
  const sh = async (sandboxId: string, script: string) => {
    const r = await client.sessions.run(await sessionOf(sandboxId), { argv: ["bash", "-c", script], cwd: "/home/user" });
    return { ...r, stdout: r.stdout.trim() };
  };

  for (const [version, sdk] of SDKS) {
    void describe(`e2b ${version}`, () => {
      void it("create with metadata, getInfo, E2B's user and home inside, list with filters and paging, setTimeout", async () => {
        const tag = `lc-${version}`;
        const a = await sdk.Sandbox.create("e2blife", { ...opts(), metadata: { suite: tag, n: "1" }, timeoutMs: 120_000 });
        const b = await sdk.Sandbox.create("e2blife", { ...opts(), metadata: { suite: tag, n: "2" }, timeoutMs: 120_000 });
        try {
          assert.match(a.sandboxId, /^[a-z0-9]{20}$/);
          const info = await sdk.Sandbox.getInfo(a.sandboxId, opts());
          assert.equal(info.sandboxId, a.sandboxId);
          assert.equal(info.templateId, "e2blife");
          assert.deepEqual(info.metadata, { suite: tag, n: "1" });
          assert.equal(info.state, "running");
          const left = info.endAt.getTime() - Date.now();
          assert.ok(left > 60_000 && left <= 121_000, `endAt ${info.endAt.toISOString()} is about two minutes away`);

          const inside = await sh(a.sandboxId, "whoami; echo $HOME; touch $HOME/w && pwd && echo $SHELL");
          assert.equal(inside.exitCode, 0, inside.stderr);
          assert.equal(inside.stdout, "user\n/home/user\n/home/user\n/bin/bash");

          const pages: string[][] = [];
          const paginator = sdk.Sandbox.list({ ...opts(), query: { metadata: { suite: tag } }, limit: 1 });
          while (paginator.hasNext) pages.push((await paginator.nextItems()).map((s) => s.sandboxId));
          assert.deepEqual(pages.map((p) => p.length), [1, 1]);
          assert.deepEqual(pages.flat().sort(), [a.sandboxId, b.sandboxId].sort());
          const one = await sdk.Sandbox.list({ ...opts(), query: { metadata: { suite: tag, n: "2" } } }).nextItems();
          assert.deepEqual(one.map((s) => s.sandboxId), [b.sandboxId]);
          const paused = await sdk.Sandbox.list({ ...opts(), query: { metadata: { suite: tag }, state: ["paused"] } }).nextItems();
          assert.deepEqual(paused, []);

          await sdk.Sandbox.setTimeout(a.sandboxId, 30_000, opts());
          const after = await sdk.Sandbox.getInfo(a.sandboxId, opts());
          assert.ok(after.endAt.getTime() - Date.now() <= 31_000, "setTimeout moved the end closer");
          const session = await server.cp.sessions.get(await sessionOf(a.sandboxId));
          assert.equal(session.expiresAt, after.endAt.toISOString(), "the session's own timeout is the sandbox's end");
        } finally {
          await a.kill();
          await b.kill();
        }
      });

      void it("pause keeps the files, connect resumes the same sandbox id; kill of a paused one removes its snapshot", async () => {
        const sbx = await sdk.Sandbox.create("e2blife", { ...opts(), timeoutMs: 120_000 });
        const first = await sessionOf(sbx.sandboxId);
        const wrote = await sbx.commands.run("echo kept > kept.txt && whoami && pwd");
        assert.equal(wrote.stdout, "user\n/home/user\n", "commands run as user in /home/user");
        assert.equal(await sdk.Sandbox.pause(sbx.sandboxId, opts()), true);
        assert.equal(await sdk.Sandbox.pause(sbx.sandboxId, opts()), false, "pausing a paused sandbox answers false (409)");
        const info = await sdk.Sandbox.getInfo(sbx.sandboxId, opts());
        assert.equal(info.state, "paused");
        assert.equal((await server.cp.sessions.get(first)).state, "stopped");
        const listed = await sdk.Sandbox.list({ ...opts(), query: { state: ["paused"] } }).nextItems();
        assert.ok(listed.some((s) => s.sandboxId === sbx.sandboxId));

        const resumed = await sdk.Sandbox.connect(sbx.sandboxId, { ...opts(), timeoutMs: 60_000 });
        assert.equal(resumed.sandboxId, sbx.sandboxId);
        assert.notEqual(await sessionOf(sbx.sandboxId), first, "a new session backs it");
        assert.equal((await sdk.Sandbox.getInfo(sbx.sandboxId, opts())).state, "running");
        const read = await resumed.commands.run("cat kept.txt; whoami");
        assert.equal(read.stdout, "kept\nuser\n");
        // Connecting to a running sandbox answers the same sandbox.
        assert.equal((await sdk.Sandbox.connect(sbx.sandboxId, opts())).sandboxId, sbx.sandboxId);

        await resumed.pause();
        const snapshotId = (await server.cp.store.getE2bSandbox(sbx.sandboxId))?.snapshotId ?? "";
        assert.ok(await server.cp.store.getSnapshot(snapshotId));
        assert.equal(await sdk.Sandbox.kill(sbx.sandboxId, opts()), true);
        assert.equal(await sdk.Sandbox.kill(sbx.sandboxId, opts()), false, "a killed sandbox is gone");
        assert.equal(await server.cp.store.getSnapshot(snapshotId), null, "the paused sandbox's snapshot went with it");
        await assert.rejects(sdk.Sandbox.getInfo(sbx.sandboxId, opts()), (e: Error) => e.name === "SandboxNotFoundError");
      });

      void it("a sandbox whose timeout passes, or whose session is stopped natively, is gone", async () => {
        const short = await sdk.Sandbox.create("e2blife", { ...opts(), timeoutMs: 2_000 });
        const other = await sdk.Sandbox.create("e2blife", { ...opts(), timeoutMs: 120_000 });
        await server.cp.sessions.stop(await sessionOf(other.sandboxId));
        await assert.rejects(sdk.Sandbox.getInfo(other.sandboxId, opts()), (e: Error) => e.name === "SandboxNotFoundError");
        await until(
          async () => sdk.Sandbox.getInfo(short.sandboxId, opts()).then(() => false, (e: Error) => e.name === "SandboxNotFoundError"),
          60_000,
          "the 2 s sandbox to be gone",
        );
        const all = await sdk.Sandbox.list(opts()).nextItems();
        assert.ok(!all.some((s) => s.sandboxId === short.sandboxId || s.sandboxId === other.sandboxId));
      });
    });
  }

  void describe("bad input, in E2B's error shape, and the server stays up", () => {
    const call = async (method: string, path: string, body?: string, headers: Record<string, string> = { "x-api-key": token }) => {
      const res = await fetch(`${url}${path}`, { method, headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers }, ...(body !== undefined ? { body } : {}) });
      return { status: res.status, body: (await res.json().catch(() => null)) as { code: number; message: string } | null };
    };
    const stillUp = async () => assert.equal((await call("GET", "/v2/sandboxes")).status, 200);

    void it("bad or missing key: 401 {code, message}; the SDK raises AuthenticationError", async () => {
      for (const headers of [{ "x-api-key": "e2b_not_a_paddock_token" }, {}, { authorization: "Bearer nope" }] as Record<string, string>[]) {
        const r = await call("GET", "/v2/sandboxes", undefined, headers);
        assert.equal(r.status, 401);
        assert.equal(r.body?.code, 401);
        assert.match(r.body?.message ?? "", /token/);
      }
      await assert.rejects(current.Sandbox.create("e2blife", opts("e2b_bad", true)), (e: Error) => e.name === "AuthenticationError");
      assert.equal((await current.Sandbox.list(opts(token, true)).nextItems()).length >= 0, true, "the Paddock token as it is works with SDK 2.51");
      assert.equal((await call("GET", "/v2/sandboxes", undefined, { authorization: `Bearer ${token}` })).status, 200, "Authorization: Bearer works too");
      await stillUp();
    });

    void it("unknown sandbox ids: 404 on every route", async () => {
      for (const [method, path, body] of [
        ["GET", "/sandboxes/aaaaaaaaaaaaaaaaaaaa"], ["DELETE", "/sandboxes/aaaaaaaaaaaaaaaaaaaa"], ["POST", "/sandboxes/aaaaaaaaaaaaaaaaaaaa/timeout", '{"timeout":5}'],
        ["POST", "/sandboxes/aaaaaaaaaaaaaaaaaaaa/pause", "{}"], ["POST", "/v2/sandboxes/aaaaaaaaaaaaaaaaaaaa/connect", "{}"], ["GET", "/sandboxes/..%2F..%2Fetc"],
      ] as [string, string, string?][]) {
        const r = await call(method, path, body);
        assert.equal(r.status, 404, `${method} ${path}`);
        assert.equal(r.body?.code, 404);
      }
      await stillUp();
    });

    void it("malformed and refused bodies: 400; unsupported routes: 501", async () => {
      for (const body of ["{", "[]", "null", '{"templateID": 5}', '{"templateID":"e2blife","timeout":-1}', '{"templateID":"e2blife","envVars":{"PADDOCK_SESSION":"x"}}', '{"templateID":"e2blife","envVars":{"A":"\\u0000"}}']) {
        const r = await call("POST", "/v2/sandboxes", body);
        assert.equal(r.status, 400, body);
        assert.equal(r.body?.code, 400);
      }
      for (const field of ['"secure":false', '"autoPause":true', '"mcp":{"x":{}}', '"network":{"denyOut":["1.1.1.1"]}', '"network":{"egressProxy":{"address":"p.example:1080"}}']) {
        const r = await call("POST", "/sandboxes", `{"templateID":"e2blife",${field}}`);
        assert.equal(r.status, 400, field);
        assert.match(r.body?.message ?? "", /not supported/);
      }
      assert.equal((await call("POST", "/sandboxes/aaaaaaaaaaaaaaaaaaaa/pause", "{")).status, 400, "malformed JSON on any route");
      const unknownTemplate = await call("POST", "/sandboxes", '{"templateID":"no-such-env"}');
      assert.equal(unknownTemplate.status, 404);
      for (const [method, path] of [["GET", "/templates"], ["POST", "/v3/templates"], ["GET", "/volumes"], ["GET", "/sandboxes/abc/metrics"], ["POST", "/sandboxes/abc/fork"]]) {
        const r = await call(method ?? "GET", path ?? "/", method === "POST" ? "{}" : undefined);
        assert.equal(r.status, 501, path);
        assert.equal(r.body?.code, 501);
      }
      for (const q of ["?limit=0", "?limit=101", "?state=dead", "?nextToken=zzz", "?order=up"]) assert.equal((await call("GET", `/v2/sandboxes${q}`)).status, 400, q);
      await stillUp();
    });

    void it("RBAC: read-only users cannot create or kill; listings show only what the caller may read; audit records E2B actions", async () => {
      await assert.rejects(current.Sandbox.create("e2blife", opts(tokens.sup)), /403|forbidden|permission|not allowed/i);
      const sbx = await current.Sandbox.create("e2blife", { ...opts(tokens.eng), metadata: { rbac: "1" } });
      try {
        assert.equal((await call("DELETE", `/sandboxes/${sbx.sandboxId}`, undefined, { "x-api-key": tokens.sup ?? "" })).status, 403);
        assert.equal((await current.Sandbox.getInfo(sbx.sandboxId, opts(tokens.sup))).sandboxId, sbx.sandboxId, "support may read it");
        const seenBySup = await current.Sandbox.list({ ...opts(tokens.sup), query: { metadata: { rbac: "1" } } }).nextItems();
        assert.deepEqual(seenBySup.map((s) => s.sandboxId), [sbx.sandboxId]);
        const seenByNobody = await current.Sandbox.list({ ...opts(tokens.nobody), query: { metadata: { rbac: "1" } } }).nextItems();
        assert.deepEqual(seenByNobody, []);
        // One who may not read the environment is told no more than for an unknown id (docs/e2b.md).
        assert.equal((await call("GET", `/sandboxes/${sbx.sandboxId}`, undefined, { "x-api-key": tokens.nobody ?? "" })).status, 404);
      } finally {
        assert.equal(await current.Sandbox.kill(sbx.sandboxId, opts(tokens.eng)), true);
      }
      const records = await client.audit.list({ limit: 1000 });
      const has = (action: string, actor: string, decision: string) => records.some((r) => r.action === action && r.actor === actor && r.decision === decision);
      assert.ok(has("api.e2b.createSandbox", "eng", "allowed"), "create by eng audited");
      assert.ok(has("api.e2b.createSandbox", "sup", "denied"), "create refused to sup audited");
      assert.ok(has("api.e2b.killSandbox", "sup", "denied"), "kill refused to sup audited");
      assert.ok(has("api.e2b.killSandbox", "eng", "allowed"), "kill by eng audited");
      assert.ok(has("api.e2b.listSandboxes", "anonymous", "denied") || records.some((r) => r.actor === "anonymous" && r.decision === "denied"), "bad keys audited");
      await stillUp();
    });
  });
});
