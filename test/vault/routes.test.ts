/** The secret and egress routes through fastify and the SDK: values go in, never come out. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { EgressRecordInput } from "../../src/core/store.ts";
import { PaddockClient } from "../../src/client/index.ts";
import { secretRoutes, secretRoutesWith } from "../../src/server/routes-secrets.ts";
import { openApiDocument } from "../../src/server/openapi.ts";
import { rejectsWith, session } from "../store/suite-fixtures.ts";
import { serveRoutes } from "./api-harness.ts";
import { distinctiveValue, fixture, type Fixture } from "./helpers.ts";


const egress = (n: number, over: Partial<EgressRecordInput> = {}): EgressRecordInput => ({
  sessionId: "s1",
  time: `2026-11-02T10:00:0${n}.000Z`,
  method: "POST",
  host: "api.stripe.com",
  port: 443,
  path: "/v1/charges?amount=",
  status: 200,
  bytesOut: 12,
  bytesIn: 340,
  durationMs: 25,
  swapped: ["STRIPE_API_KEY"],
  decision: "allowed",
  rule: "guardrails.network.allow[0] (runtime.yml:27)",
  ...over,
});

void describe("secret and egress routes", () => {
  let f: Fixture;
  let server: { url: string; close: () => Promise<void> };
  let client: PaddockClient;
  const raw = async (method: string, path: string, body?: string) => {
    const res = await fetch(server.url + path, { method, ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } }) });
    return { status: res.status, text: await res.text() };
  };

  before(async () => {
    f = await fixture();
    await f.store.createSession(session("s1"));
    server = await serveRoutes(secretRoutes, f);
    client = new PaddockClient({ url: server.url });
  });
  after(async () => {
    await server.close();
    await f.cleanup();
  });

  void it("PUT sets, GET lists without values, DELETE removes one scope (204, then 404)", async () => {
    const value = distinctiveValue();
    await client.secrets.set("STRIPE_API_KEY", value, { environment: "runtime" });
    await client.secrets.set("STRIPE_API_KEY", value);
    assert.equal(await f.vault.resolve("STRIPE_API_KEY", { environment: "runtime" }), value);
    const listed = await raw("GET", "/v1/secrets");
    assert.equal(listed.status, 200);
    assert.ok(!listed.text.includes(value));
    const list = await client.secrets.list();
    assert.deepEqual(list.map((s) => [s.name, s.scope, s.lastUsedAt]), [["STRIPE_API_KEY", {}, null], ["STRIPE_API_KEY", { environment: "runtime" }, null]]);
    assert.ok(list.every((s) => s.hosts === undefined), "no default hosts unless hostsOf is given");
    await client.secrets.remove("STRIPE_API_KEY", { environment: "runtime" });
    await rejectsWith(client.secrets.remove("STRIPE_API_KEY", { environment: "runtime" }), "not_found", /STRIPE_API_KEY has no value in scope environment=runtime/);
    assert.equal((await raw("DELETE", "/v1/secrets/STRIPE_API_KEY")).status, 204);
    assert.deepEqual(await client.secrets.list(), []);
  });

  void it("bad input is a 400 that never echoes the value", async () => {
    const value = distinctiveValue();
    const attempts = [
      ["/v1/secrets/lower", JSON.stringify({ value })],
      ["/v1/secrets/A", JSON.stringify({ value: `${value}\u0000` })],
      ["/v1/secrets/A", JSON.stringify({ value, environment: "a", team: "b" })],
      ["/v1/secrets/A", JSON.stringify({ value, extra: value })],
      ["/v1/secrets/A", JSON.stringify({ value: value.repeat(3000) })],
      ["/v1/secrets/A", `{"value": ${value}}`],
      ["/v1/secrets/A", JSON.stringify({ value: [value] })],
    ] as const;
    for (const [path, body] of attempts) {
      const res = await raw("PUT", path, body);
      assert.equal(res.status, 400, res.text);
      assert.match(res.text, /"code":"invalid_argument"/);
      assert.ok(!res.text.includes(value), res.text);
    }
    assert.deepEqual(await f.vault.list(), []);
  });

  void it("a value moved to another row fails closed, and the error names no value", async () => {
    const value = distinctiveValue();
    await client.secrets.set("A_TOKEN", value);
    f.raw((db) => db.prepare("UPDATE secrets SET name = 'B_TOKEN' WHERE name = 'A_TOKEN'").run());
    await rejectsWith(f.vault.resolve("B_TOKEN", { environment: "runtime" }), "internal", /does not authenticate/);
    const list = await raw("GET", "/v1/secrets");
    assert.ok(!list.text.includes(value));
    await client.secrets.remove("B_TOKEN");
  });

  void it("GET /v1/sessions/:id/egress returns records oldest first, tail by limit, follow by after", async () => {
    await f.store.addEgressRecords([1, 2, 3, 4].map((n) => egress(n)));
    await f.store.addEgressRecords([egress(5, { decision: "denied", status: 403, swapped: [], rule: "guardrails.network.deny[0]", reason: "host not allowed" })]);
    const all = await client.sessions.egress("s1");
    assert.equal(all.length, 5);
    assert.deepEqual(all.at(-1)?.reason, "host not allowed");
    assert.deepEqual((await client.sessions.egress("s1", { limit: 2 })).map((r) => r.time), [egress(4).time, egress(5).time]);
    assert.deepEqual((await client.sessions.egress("s1", { after: all[2]!.id })).map((r) => r.id), [all[3]!.id, all[4]!.id]);
    await rejectsWith(client.sessions.egress("nope"), "not_found", /session "nope"/);
    assert.equal((await raw("GET", "/v1/sessions/s1/egress?limit=-3")).status, 400);
  });

  void it("lists default hosts when given hostsOf; without a vault the routes are unavailable", async () => {
    const withHosts = await serveRoutes(secretRoutesWith({ hostsOf: (n) => (n.startsWith("STRIPE_") ? ["api.stripe.com"] : null) }), f);
    const noVault = await serveRoutes(secretRoutes, { store: f.store });
    try {
      await f.vault.set("STRIPE_API_KEY", "x");
      await f.vault.set("MY_TOKEN", "y");
      const list = await new PaddockClient({ url: withHosts.url }).secrets.list();
      assert.deepEqual(list.map((s) => [s.name, s.hosts]), [["MY_TOKEN", undefined], ["STRIPE_API_KEY", ["api.stripe.com"]]]);
      await rejectsWith(new PaddockClient({ url: noVault.url }).secrets.list(), "unavailable", /no secret vault/);
    } finally {
      await withHosts.close();
      await noVault.close();
    }
  });

  void it("the routes document themselves in OpenAPI with one operationId each", () => {
    const doc = openApiDocument(secretRoutes) as { paths: Record<string, Record<string, { operationId: string }>> };
    assert.deepEqual(Object.keys(doc.paths).sort(), ["/v1/secrets", "/v1/secrets/{name}", "/v1/sessions/{id}/egress"]);
    assert.deepEqual(secretRoutes.map((r) => r.operationId), ["setSecret", "listSecrets", "deleteSecret", "listEgress"]);
    assert.equal(doc.paths["/v1/secrets/{name}"]?.put?.operationId, "setSecret");
  });
});
