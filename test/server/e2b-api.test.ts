/**
 * The E2B sandbox table's envd authentication (`envdCaller`, the contract the process and
 * filesystem services build on): per-sandbox access tokens bound to the sandbox and to the
 * principal that got them, Paddock API tokens beside them, RBAC and audit as that principal,
 * paused sandboxes refused; and E2B's user and home only in sandboxes created through E2B.
 * Sandboxes are created over raw HTTP, as the SDK does.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { createE2bSandboxes, type E2bSandboxTable } from "../../src/server/e2b/sandboxes.ts";
import { adminToken, crashableServer, releaseHome, testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";

const ENV = `name: e2bauth
rbac:
  engineering: [read, write]
  support: [read]
  agent: [read, write]
`;
const READ = { kind: "environment", permission: "read" } as const;
const WRITE = { kind: "environment", permission: "write" } as const;

void describe("E2B sandbox table: envd access tokens", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let admin: string;
  let cleanup: () => Promise<void>;
  let table: E2bSandboxTable;
  const tokens: Record<string, string> = {};

  before(async () => {
    const t = await testServer({ e2bPort: 0 });
    ({ server, client, cleanup } = t);
    admin = t.token;
    table = createE2bSandboxes(server.cp);
    await client.environments.apply("runtime.yml", ENV);
    tokens.eng = (await client.principals.create({ name: "eng2", role: "engineering" })).token;
    tokens.sup = (await client.principals.create({ name: "sup2", role: "support" })).token;
    tokens.gone = (await client.principals.create({ name: "gone2", role: "engineering" })).token;
    tokens.bot = (await client.principals.create({ name: "bot2", role: "agent", kind: "agent" })).token;
  });
  after(async () => cleanup());

  const api = async (method: string, path: string, key: string, body?: unknown) => {
    const res = await fetch(`${server.e2bUrl}${path}`, {
      method, headers: { "x-api-key": key, ...(body !== undefined ? { "content-type": "application/json" } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> | null };
  };
  const create = async (key: string) => {
    const r = await api("POST", "/v2/sandboxes", key, { templateID: "e2bauth", timeout: 120 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return { id: String(r.body?.sandboxID), token: String(r.body?.envdAccessToken) };
  };
  const headers = (id: string, token: string) => ({ "e2b-sandbox-id": id, "x-access-token": token });
  const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;

  void it("a sandbox's access token authenticates envd calls on that sandbox only, as the principal that got it", async () => {
    const a = await create(tokens.eng ?? "");
    const b = await create(tokens.eng ?? "");
    assert.match(a.token, /^e2bat_/);
    const caller = await table.envdCaller(headers(a.id, a.token), "e2b.test.run", WRITE);
    assert.equal(caller.sandboxId, a.id);
    assert.equal(caller.principal.name, "eng2");
    assert.equal(caller.environment, "e2bauth");
    assert.equal(caller.sessionId, (await server.cp.store.getE2bSandbox(a.id))?.sessionId);
    await assert.rejects(table.envdCaller(headers(b.id, a.token), "e2b.test.run", READ), code("unauthorized"));
    await assert.rejects(table.envdCaller(headers(a.id, `${a.token}x`), "e2b.test.run", READ), code("unauthorized"));
    await assert.rejects(table.envdCaller({ "e2b-sandbox-id": a.id }, "e2b.test.run", READ), code("unauthorized"));
    await assert.rejects(table.envdCaller({ "x-access-token": a.token }, "e2b.test.run", READ), code("invalid_argument"));
    // The Host form the SDK uses without E2B_SANDBOX_URL.
    assert.equal((await table.envdCaller({ host: `49983-${a.id}.e2b.app`, "x-access-token": a.token }, "e2b.test.run", READ)).sandboxId, a.id);
    const stored = await server.cp.store.e2bAccessToken(a.token);
    assert.equal(stored, null, "only the token's hash is stored");
    // Signed file URLs: the server finds the token whose signature verifies, named sandbox or not.
    const signedBy = (token: string) => (candidate: string) => candidate === token;
    assert.equal((await table.envdSignedCaller({}, signedBy(b.token), "e2b.test.signed", READ)).sandboxId, b.id);
    assert.equal((await table.envdSignedCaller({ "e2b-sandbox-id": a.id }, signedBy(a.token), "e2b.test.signed", READ)).principal.name, "eng2");
    await assert.rejects(table.envdSignedCaller({ "e2b-sandbox-id": a.id }, signedBy(b.token), "e2b.test.signed", READ), code("unauthorized"));
    await assert.rejects(table.envdSignedCaller({}, () => false, "e2b.test.signed", READ), code("unauthorized"));
    const audit = await client.audit.list({ limit: 1000 });
    assert.ok(audit.some((r) => r.action === "api.e2b.test.run" && r.actor === "eng2" && r.decision === "allowed" && r.target === a.id));
    assert.ok(audit.some((r) => r.action === "api.e2b.test.run" && r.actor === "anonymous" && r.decision === "denied"));
    for (const s of [a, b]) assert.equal((await api("DELETE", `/sandboxes/${s.id}`, tokens.eng ?? "")).status, 204);
    await assert.rejects(table.envdCaller(headers(a.id, a.token), "e2b.test.run", READ), code("unauthorized"), "a killed sandbox's tokens are gone");
  });

  void it("RBAC applies to the token's principal: a reader's token from connect reads but cannot write; a disabled principal's token stops working", async () => {
    const s = await create(tokens.eng ?? "");
    const connected = await api("POST", `/sandboxes/${s.id}/connect`, tokens.sup ?? "", { timeout: 60 });
    assert.equal(connected.status, 200, "support may connect to a running sandbox (read)");
    const supToken = String(connected.body?.envdAccessToken);
    assert.equal((await table.envdCaller(headers(s.id, supToken), "e2b.test.read", READ)).principal.name, "sup2");
    await assert.rejects(table.envdCaller(headers(s.id, supToken), "e2b.test.write", WRITE), code("forbidden"));

    const g = await create(tokens.gone ?? "");
    await client.principals.disable("gone2");
    await assert.rejects(table.envdCaller(headers(g.id, g.token), "e2b.test.read", READ), code("unauthorized"));
    for (const id of [s.id, g.id]) assert.equal((await api("DELETE", `/sandboxes/${id}`, admin)).status, 204);
  });

  void it("a paused sandbox refuses envd calls (conflict) and support cannot resume it", async () => {
    const s = await create(tokens.eng ?? "");
    assert.equal((await api("POST", `/sandboxes/${s.id}/pause`, tokens.sup ?? "", {})).status, 403);
    assert.equal((await api("POST", `/sandboxes/${s.id}/pause`, tokens.eng ?? "", {})).status, 204);
    await assert.rejects(table.envdCaller(headers(s.id, s.token), "e2b.test.read", READ), code("conflict"));
    const snapshotId = (await server.cp.store.getE2bSandbox(s.id))?.snapshotId ?? "";
    await assert.rejects(client.snapshots.remove(snapshotId), /paused E2B sandbox/, "a paused sandbox's snapshot cannot be removed under it");
    assert.equal((await api("POST", `/sandboxes/${s.id}/connect`, tokens.sup ?? "", { timeout: 60 })).status, 403, "resuming starts a session: write");
    const resumed = await api("POST", `/sandboxes/${s.id}/resume`, tokens.eng ?? "", { timeout: 60 });
    assert.equal(resumed.status, 201);
    assert.equal((await api("POST", `/sandboxes/${s.id}/resume`, tokens.eng ?? "", { timeout: 60 })).status, 409, "resuming a running one conflicts");
    assert.equal((await table.envdCaller(headers(s.id, s.token), "e2b.test.read", READ)).sandboxId, s.id, "the first token works again after resume");
    assert.equal((await api("DELETE", `/sandboxes/${s.id}`, tokens.eng ?? "")).status, 204);
  });

  void it("an agent creates a sandbox on behalf of a person (X-Paddock-On-Behalf-Of), as with the native API", async () => {
    const refused = await api("POST", "/v2/sandboxes", tokens.bot ?? "", { templateID: "e2bauth" });
    assert.equal(refused.status, 403);
    assert.match(String(refused.body?.message), /on behalf of a person/);
    const res = await fetch(`${server.e2bUrl}/v2/sandboxes`, {
      method: "POST", headers: { "x-api-key": tokens.bot ?? "", "x-paddock-on-behalf-of": "eng2", "content-type": "application/json" }, body: JSON.stringify({ templateID: "e2bauth" }),
    });
    assert.equal(res.status, 201);
    const { sandboxID } = (await res.json()) as { sandboxID: string };
    const session = await server.cp.sessions.get((await server.cp.store.getE2bSandbox(sandboxID))?.sessionId ?? "");
    assert.equal(session.startedBy, "eng2");
    assert.equal(session.agent, "bot2");
    assert.equal((await api("DELETE", `/sandboxes/${sandboxID}`, tokens.bot ?? "")).status, 204);
  });

  void it("a Paddock API token works as the access token, with a sandbox id or a session id", async () => {
    const s = await create(admin);
    assert.equal((await table.envdCaller(headers(s.id, admin), "e2b.test.read", READ)).principal.name, "admin");
    const native = await client.sessions.start("e2bauth");
    const caller = await table.envdCaller(headers(native.id, admin), "e2b.test.read", READ);
    assert.equal(caller.sessionId, native.id);
    await assert.rejects(table.envdCaller(headers("s-0000000000000000", admin), "e2b.test.read", READ), code("not_found"));
    await assert.rejects(table.envdCaller(headers(native.id, tokens.sup ?? ""), "e2b.test.write", WRITE), code("forbidden"));
    assert.equal((await api("DELETE", `/sandboxes/${s.id}`, admin)).status, 204);
    await client.sessions.stop(native.id);
  });

  void it("native sessions keep the paddock user; E2B sandboxes get user and /home/user", async () => {
    const native = await client.sessions.start("e2bauth");
    const n = await client.sessions.run(native.id, { argv: ["sh", "-c", "whoami; echo $HOME; id -u"] });
    assert.equal(n.stdout.trim(), "paddock\n/home/paddock\n1000");
    await client.sessions.stop(native.id);
    const s = await create(admin);
    const session = (await server.cp.store.getE2bSandbox(s.id))?.sessionId ?? "";
    const e = await client.sessions.run(session, { argv: ["sh", "-c", "whoami; echo $HOME; id -u; ls -ld /home/user | cut -d' ' -f3; getent passwd user | cut -d: -f6,7"] });
    assert.equal(e.stdout.trim(), "user\n/home/user\n1000\nuser\n/home/user:/bin/bash");
    assert.equal((await api("DELETE", `/sandboxes/${s.id}`, admin)).status, 204);
  });
});

void describe("paddock up serves the E2B API; sandboxes outlive a control-plane crash", () => {
  let home: { path: string; remove: () => Promise<void> };
  const server = crashableServer(() => home.path);
  const kill9 = server.kill9;
  const start = async () => {
    const s = await server.start();
    const url = await until(async () => /E2B-compatible API on (http:\/\/\S+):/.exec(s.stderr())?.[1], 30_000, "the E2B address in the start-up log");
    return { ...s, e2bUrl: url };
  };

  before(async () => {
    home = await tempDir();
  });
  after(async () => {
    const s = await start().catch(() => null);
    if (s) for (const x of await s.client.sessions.list()) await s.client.sessions.stop(x.id).catch(() => undefined);
    await kill9();
    await releaseHome(home.path);
    await home.remove();
  });

  void it("prints the address and the variables to set; a running sandbox is found again after kill -9", async () => {
    const first = await start();
    assert.match(first.stderr(), /set E2B_API_URL=http:\/\/127\.0\.0\.1:\d+ E2B_SANDBOX_URL=http:\/\/127\.0\.0\.1:\d+ and E2B_API_KEY=<a Paddock token>/);
    const key = await adminToken(home.path);
    await first.client.environments.apply("runtime.yml", ENV);
    const created = await fetch(`${first.e2bUrl}/v2/sandboxes`, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: JSON.stringify({ templateID: "e2bauth", metadata: { keep: "me" } }) });
    assert.equal(created.status, 201);
    const { sandboxID } = (await created.json()) as { sandboxID: string };
    const again = await start();
    const info = await fetch(`${again.e2bUrl}/sandboxes/${sandboxID}`, { headers: { "x-api-key": key } });
    assert.equal(info.status, 200);
    const body = (await info.json()) as { state: string; metadata: Record<string, string> };
    assert.equal(body.state, "running");
    assert.deepEqual(body.metadata, { keep: "me" });
    assert.equal((await fetch(`${again.e2bUrl}/sandboxes/${sandboxID}`, { method: "DELETE", headers: { "x-api-key": key } })).status, 204);
  });
});
