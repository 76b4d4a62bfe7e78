/** Principals, tokens and the permission rules, against a real SQLite store. */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { effectivePermissions, Identities, mintToken, parseToken, rolePermissions } from "../../src/guard/index.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import type { Principal } from "../../src/core/index.ts";
import { parseEnvironment } from "../../src/config/index.ts";

const dir = await mkdtemp(join(tmpdir(), "paddock-identity-"));
after(() => rm(dir, { recursive: true, force: true }));

const spec = (extra = "") => {
  const { spec: s } = parseEnvironment(`name: web\nrbac:\n  engineering: [read, write, deploy]\n  support: [read]\n  agent: [read, write, deploy]\n${extra}`, "runtime.yml");
  assert.ok(s);
  return s;
};
const p = (name: string, role: string, kind: Principal["kind"] = "human", disabledAt: string | null = null): Principal => ({ id: name, name, kind, role, team: null, createdAt: "", disabledAt });
const list = (s: Set<string>) => [...s].sort();

void describe("identities", () => {
  void it("the first start creates admin and writes its token 0600; later starts do nothing", async () => {
    const store = await openSqliteStore(":memory:");
    const ids = new Identities(store);
    const file = await ids.bootstrap(dir);
    assert.equal(file, join(dir, "admin.token"));
    assert.equal((await stat(file!)).mode & 0o777, 0o600);
    const token = (await readFile(file!, "utf8")).trim();
    assert.equal((await ids.authenticate(token)).name, "admin");
    assert.equal(await ids.bootstrap(dir), null);
    assert.equal((await store.listPrincipals()).length, 1);
    await store.close();
  });

  void it("tokens are stored as digests only, and every wrong token gets the same refusal", async () => {
    const store = await openSqliteStore(":memory:");
    const ids = new Identities(store);
    const { principal, token } = await ids.add({ name: "alice", kind: "human", role: "engineering", team: "eng" });
    const parts = parseToken(token);
    assert.ok(parts);
    const row = await store.getToken(parts.id);
    assert.ok(row && !JSON.stringify(row).includes(parts.secret), "the secret part is not stored");
    assert.equal((await ids.authenticate(token)).id, principal.id);
    const wrong = [undefined, "", "nonsense", `pdk_${parts.id}_${"A".repeat(43)}`, mintToken().token, token + "x", token.replace(/.$/, (c) => (c === "a" ? "b" : "a"))];
    for (const t of wrong) await assert.rejects(ids.authenticate(t), (e: Error & { code?: string }) => e.code === "unauthorized" && /valid API token is required/.test(e.message), String(t));
    await ids.disable("alice");
    await assert.rejects(ids.authenticate(token), /valid API token/, "a disabled principal's token stops working");
    await store.close();
  });

  void it("names, roles and agent-admins are checked", async () => {
    const store = await openSqliteStore(":memory:");
    const ids = new Identities(store);
    await assert.rejects(ids.add({ name: "Alice!", kind: "human", role: "x" }), /not a valid name/);
    await assert.rejects(ids.add({ name: "bot", kind: "agent", role: "admin" }), /agent cannot have the admin role/);
    await ids.add({ name: "alice", kind: "human", role: "support" });
    await assert.rejects(ids.add({ name: "alice", kind: "human", role: "support" }), /already exists/);
    await store.close();
  });
});

void describe("permissions", () => {
  void it("roles map through the environment's rbac:; unknown roles and environments grant nothing; admin gets all", () => {
    assert.deepEqual(list(rolePermissions(p("e", "engineering"), spec())), ["deploy", "read", "write"]);
    assert.deepEqual(list(rolePermissions(p("s", "support"), spec())), ["read"]);
    assert.deepEqual(list(rolePermissions(p("x", "marketing"), spec())), []);
    assert.deepEqual(list(rolePermissions(p("e", "engineering"), null)), []);
    assert.deepEqual(list(rolePermissions(p("a", "admin"), null)), ["deploy", "read", "write"]);
  });

  void it("an agent gets the intersection with its human, and never deploy unless the environment allows agents to", () => {
    const agent = p("bot", "agent", "agent");
    assert.deepEqual(list(effectivePermissions(agent, p("s", "support"), spec())), ["read"]);
    assert.deepEqual(list(effectivePermissions(agent, p("e", "engineering"), spec())), ["read", "write"]);
    const permissive = spec("guardrails:\n  commands:\n    agentsMayDeploy: true\n");
    assert.deepEqual(list(effectivePermissions(agent, p("e", "engineering"), permissive)), ["deploy", "read", "write"]);
    assert.deepEqual(list(effectivePermissions(agent, null, spec())), [], "no human behind it: nothing");
    assert.deepEqual(list(effectivePermissions(agent, p("e", "engineering", "human", "2026-01-01"), spec())), [], "a disabled human lends nothing");
    assert.deepEqual(list(effectivePermissions(agent, p("other", "agent", "agent"), spec())), [], "an agent cannot borrow from an agent");
    assert.deepEqual(list(effectivePermissions(agent, p("a", "admin"), spec())), ["read", "write"], "even an admin's agent is held to its own role");
  });
});
