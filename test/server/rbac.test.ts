/**
 * The route × permission table (docs/rbac.md), tested route by route from the OpenAPI document:
 * every operation is called without a token, with a forged one, and as each kind of principal; the
 * answer must be 401 / 403 exactly when the table says so, and every call leaves an audit record
 * naming the caller and the decision.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { PaddockClient } from "../../src/client/index.ts";
import { parseToken } from "../../src/guard/index.ts";
import { repoRoot, testServer } from "../helpers/server.ts";
import type { RunningServer } from "../../src/server/index.ts";

const ENV = `name: web
rbac:
  engineering: [read, write, deploy]
  support: [read]
  agent: [read, write]
`;

type Who = "none" | "forged" | "admin" | "eng" | "sup" | "nobody" | "agent";
const WHO: Who[] = ["none", "forged", "admin", "eng", "sup", "nobody", "agent"];
/** Permissions on "web" per principal (the agent's in a session eng started: its role ∩ eng's). */
const PERMS: Record<Who, string[]> = { none: [], forged: [], admin: ["read", "write", "deploy"], eng: ["read", "write", "deploy"], sup: ["read"], nobody: [], agent: ["read", "write"] };

interface Op { method: string; path: string; operationId: string; access: string; filtered: boolean }

void describe("RBAC: every route × every kind of principal", () => {
  let server: RunningServer;
  let cleanup: () => Promise<void>;
  const tokens: Partial<Record<Who, string>> = {};
  let ops: Op[] = [];
  let admin: PaddockClient;
  let counter = 0;

  before(async () => {
    const t = await testServer();
    server = t.server;
    cleanup = t.cleanup;
    admin = t.client;
    tokens.admin = t.token;
    tokens.forged = `pdk_${"0".repeat(16)}_${"A".repeat(43)}`;
    tokens.eng = (await admin.principals.create({ name: "eng", role: "engineering", team: "eng" })).token;
    tokens.sup = (await admin.principals.create({ name: "sup", role: "support" })).token;
    tokens.nobody = (await admin.principals.create({ name: "nobody", role: "marketing" })).token;
    tokens.agent = (await admin.principals.create({ name: "bot", role: "agent", kind: "agent" })).token;
    await admin.environments.apply("runtime.yml", ENV);
    const doc = (await (await fetch(`${server.url}/v1/openapi.json`, { headers: { authorization: `Bearer ${t.token}` } })).json()) as { paths: Record<string, Record<string, { operationId: string; "x-paddock-access": string; "x-paddock-filtered"?: boolean }>> };
    ops = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([m, op]) => ({ method: m.toUpperCase(), path, operationId: op.operationId, access: op["x-paddock-access"], filtered: op["x-paddock-filtered"] === true })),
    );
  });
  after(async () => cleanup());

  const as = (who: Who) => new PaddockClient({ url: server.url, ...(tokens[who] ? { token: tokens[who] } : {}) });
  /** A fresh session eng started: destructive calls never share one. */
  const freshSession = async () => (await as("eng").sessions.start("web")).id;
  const freshApproval = async (sessionId: string) => {
    const id = `apr-test${++counter}`;
    await server.cp.store.createApproval({
      id, sessionId, environment: "web", argv: ["terraform", "apply"], program: "terraform", rule: "guardrails.commands.ask[0]", deploying: false,
      requestedBy: "bot", requestedByKind: "agent", onBehalfOf: "eng", state: "pending", decidedBy: null, decidedAt: null, reason: null,
      createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 60_000).toISOString(),
    });
    return id;
  };

  const freshRun = async () => {
    const id = `run-${(++counter).toString(16).padStart(16, "0")}`;
    const now = new Date().toISOString();
    await server.cp.store.createRun({
      id, environment: "web", version: 1, sessionId: null, agent: "claude-code", startedBy: "eng", trigger: null, prompt: "p", outcome: "keep",
      state: "idle", turns: 1, agentSessionId: null, createdAt: now, updatedAt: now, endedAt: null, result: null, error: null,
    });
    return id;
  };

  // A session eng started that preview calls share (they never stop it), and a preview record of it.
  let previewSession: Promise<string> | null = null;
  const sharedPreviewSession = () => (previewSession ??= freshSession());
  const freshPreview = async () => {
    const id = `pv-${(++counter).toString(16).padStart(10, "0")}`;
    const now = Date.now();
    await server.cp.store.createPreview({
      id, sessionId: await sharedPreviewSession(), environment: "web", port: 3000, public: false, command: null, createdBy: "eng",
      createdAt: new Date(now).toISOString(), expiresAt: new Date(now + 3600_000).toISOString(), revokedAt: null, snapshotId: null,
    }, "0".repeat(64));
    return id;
  };

  /** The concrete request for an operation: real targets so allowed calls can succeed. */
  async function requestFor(op: Op): Promise<{ path: string; body?: unknown; binary?: Buffer }> {
    const session = op.path.includes("/sessions/{id}") ? await freshSession() : null;
    const approval = op.path.includes("/approvals/{id}") ? await freshApproval(await freshSession()) : null;
    // A snapshot of a fresh session eng started, so a removal never takes another call's.
    const snapshot = op.path.includes("/snapshots/{id}") ? (await admin.snapshots.create(await freshSession())).id : null;
    // Principals a call may disable are made for it, so no other kind of caller loses its token.
    // A run record of "web" (no agent process behind it: these calls test who may reach it).
    const run = op.path.includes("/runs/{id}") ? await freshRun() : null;
    const preview = op.path.includes("/previews/{id}") ? await freshPreview() : null;
    const made = op.path.includes("/principals/{name}") ? await admin.principals.create({ name: `tmp${++counter}`, role: "support" }) : null;
    let path = op.path.replace("{id}", session ?? approval ?? snapshot ?? run ?? preview ?? "").replace("{name}", made?.principal.name ?? nameFor(op)).replace("{token}", made ? (parseToken(made.token)?.id ?? "") : "").replace("{version}", "1");
    if (op.operationId === "readFile" || op.operationId === "listFiles") path += "?path=/workspace";
    if (op.operationId === "writeFile") return { path: path + "?path=/workspace/w.txt", binary: Buffer.from("x") };
    if (op.operationId === "readFile") {
      await admin.files.write(session ?? "", "/workspace/r.txt", Buffer.from("r"));
      path = path.replace("?path=/workspace", "?path=/workspace/r.txt");
    }
    const bodies: Record<string, unknown> = {
      validateEnvironment: { fileName: "runtime.yml", source: ENV },
      applyEnvironment: { fileName: "runtime.yml", source: ENV },
      startSession: { environment: "web", onBehalfOf: "eng" },
      exec: { argv: ["true"] },
      setSecret: { value: "s3cr3t-value-123", environment: "web" },
      createPrincipal: { name: `p${++counter}`, role: "support" },
      createToken: {},
      approve: {},
      deny: {},
      createSnapshot: { session: op.operationId === "createSnapshot" ? await freshSession() : "" },
      forkSession: { count: 1 },
      setPool: { min: 0 },
      startRun: { environment: "web", prompt: "say hello" },
      followUpRun: { prompt: "and again" },
      createPreview: op.operationId === "createPreview" ? { session: await sharedPreviewSession(), port: 3000 } : undefined,
      addProvider: { name: `pv${++counter}`, kind: "e2b" },
    };
    return { path, ...(bodies[op.operationId] !== undefined ? { body: bodies[op.operationId] } : {}) };
  }
  function nameFor(op: Op): string {
    if (op.path.startsWith("/v1/environments") || op.path.startsWith("/v1/pools")) return "web";
    if (op.path.startsWith("/v1/secrets")) return "RBAC_SECRET";
    return "x";
  }

  async function call(op: Op, who: Who): Promise<number> {
    const r = await requestFor(op);
    if (op.operationId === "execStream") return wsStatus(server.url.replace(/^http/, "ws") + r.path, tokens[who]);
    const res = await fetch(server.url + r.path, {
      method: op.method,
      headers: {
        ...(tokens[who] ? { authorization: `Bearer ${tokens[who]}` } : {}),
        ...(r.binary ? { "content-type": "application/octet-stream" } : r.body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(r.binary ? { body: r.binary } : r.body !== undefined ? { body: JSON.stringify(r.body) } : {}),
    });
    await res.arrayBuffer();
    return res.status;
  }

  function expected(op: Op, who: Who): "unauthorized" | "forbidden" | "allowed" {
    if (op.access === "public") return "allowed";
    if (who === "none" || who === "forged") return "unauthorized";
    if (op.access === "any principal") return "allowed";
    if (op.access === "admin") return who === "admin" ? "allowed" : "forbidden";
    if (who === "agent") {
      // Routes scoped by an environment name (not a session) give an agent nothing: it has no human there.
      if (op.path.startsWith("/v1/environments/")) return "forbidden";
      // Runs are people's: an agent starts none, and has no human behind a run whose session it is not in.
      if (op.path.startsWith("/v1/runs")) return "forbidden";
      // Approvals are answered by people only.
      if (op.operationId === "approve" || op.operationId === "deny") return "forbidden";
    }
    return PERMS[who].includes(op.access) ? "allowed" : "forbidden";
  }

  void it("docs/rbac.md's table is exactly the OpenAPI document's x-paddock-access", async () => {
    const doc = await readFile(join(repoRoot, "docs/rbac.md"), "utf8");
    const rows = [...doc.matchAll(/^\| (GET|POST|PUT|DELETE) \| (\S+) \| (\w+) \| ([^|]+) \|$/gm)].map((m) => `${m[1]} ${m[2]} ${m[3]} ${m[4]?.trim()}`);
    const fromApi = ops.map((o) => `${o.method} ${o.path} ${o.operationId} ${o.access}${o.filtered ? " (filtered)" : ""}`);
    assert.deepEqual([...rows].sort(), [...fromApi].sort());
    assert.ok(ops.length >= 30, `found ${ops.length} operations`);
  });

  void it("each operation answers 401/403 exactly as the table says, and audits the decision", async () => {
    const failures: string[] = [];
    for (const op of ops) {
      for (const who of WHO) {
        const before = (await server.cp.store.lastAudit())?.seq ?? 0;
        const status = await call(op, who);
        const want = expected(op, who);
        const got = status === 401 ? "unauthorized" : status === 403 ? "forbidden" : "allowed";
        if (got !== want) failures.push(`${op.method} ${op.path} as ${who}: ${status}, expected ${want}`);
        if (op.access === "public") continue;
        const records = await server.cp.store.listAudit({ afterSeq: before });
        // The last word: a refusal inside the handler (e.g. an agent answering an approval) follows the route's decision.
        const mine = records.filter((r) => r.action === `api.${op.operationId}`).at(-1);
        if (!mine) failures.push(`${op.operationId} as ${who}: no audit record`);
        else {
          const actor = who === "none" || who === "forged" ? "anonymous" : who === "agent" ? "bot" : who;
          if (mine.actor !== actor) failures.push(`${op.operationId} as ${who}: audited as ${mine.actor}`);
          const decision = got === "allowed" ? "allowed" : "denied";
          if (got !== "allowed" && mine.decision !== "denied") failures.push(`${op.operationId} as ${who}: audited ${mine.decision}, answered ${status}`);
          if (got === "allowed" && status < 400 && mine.decision !== decision) failures.push(`${op.operationId} as ${who}: audited ${mine.decision}`);
        }
      }
    }
    assert.deepEqual(failures, []);
  });

  void it("a token counts only as a Bearer header: not in the query, not as Basic auth, not twice, not padded", async () => {
    const good = tokens.admin!;
    const status = async (path: string, headers: Record<string, string> = {}) => (await fetch(server.url + path, { headers })).status;
    assert.equal(await status("/v1/whoami", { authorization: `Bearer ${good}` }), 200);
    assert.equal(await status("/v1/whoami", { authorization: `bearer ${good}` }), 200, "the scheme is case-insensitive (RFC 9110)");
    assert.equal(await status(`/v1/whoami?token=${good}`), 401);
    assert.equal(await status(`/v1/whoami?access_token=${good}`), 401);
    assert.equal(await status("/v1/whoami", { authorization: `Basic ${Buffer.from(`admin:${good}`).toString("base64")}` }), 401);
    assert.equal(await status("/v1/whoami", { authorization: `Bearer ${good} ${good}` }), 401);
    assert.equal(await status("/v1/whoami", { authorization: `Bearer ${good}x` }), 401);
    assert.equal(await status("/v1/whoami", { authorization: `Bearer ${good.slice(0, -1)}` }), 401);
    assert.equal(await status("/v1/whoami", { cookie: `token=${good}` }), 401);
    const malformed = await fetch(`${server.url}/v1/sessions`, { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
    assert.equal(malformed.status, 401, "the body of an unauthenticated request is never read");
    const anonymous = (await server.cp.store.listAudit({ actor: "anonymous", limit: 5000 })).filter((r) => r.action === "api.whoami");
    assert.ok(anonymous.length >= 6 && anonymous.every((r) => r.decision === "denied" && !JSON.stringify(r).includes(good)), "refusals are audited, never with the token");
  });

  void it("listings show only what the caller may read", async () => {
    const s = await as("eng").sessions.start("web");
    assert.ok((await as("sup").sessions.list()).some((x) => x.id === s.id));
    assert.deepEqual(await as("nobody").sessions.list(), []);
    assert.deepEqual(await as("nobody").environments.list(), []);
    assert.deepEqual((await as("sup").environments.list()).map((e) => e.name), ["web"]);
    const audit = await as("nobody").audit.list({ limit: 5000 });
    assert.ok(audit.every((r) => r.environment === null && r.actor === "nobody"), "nobody sees only their own records without an environment");
    const supAudit = await as("sup").audit.list({ environment: "web", limit: 5000 });
    assert.ok(supAudit.length > 0 && supAudit.every((r) => r.environment === "web"));
  });
});

function wsStatus(url: string, token: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    ws.on("open", () => {
      ws.close();
      resolve(101);
    });
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("error", reject);
  });
}
