import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { allRoutes as routes } from "../../src/server/index.ts";
import { testServer } from "../helpers/server.ts";

/** The HTTP API's contract: the OpenAPI document matches the route table, errors have one shape. */
void describe("HTTP API", () => {
  let url: string;
  let token: string;
  let cleanup: () => Promise<void>;
  const req = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined && typeof body !== "string" ? { "content-type": "application/json" } : {}), ...headers },
      ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* binary or empty */
    }
    return { status: res.status, json: json as { error?: { code: string; message: string } } & Record<string, unknown>, text };
  };

  before(async () => {
    const t = await testServer();
    url = t.server.url;
    token = t.token;
    cleanup = t.cleanup;
  });
  after(async () => cleanup());

  void it("serves an OpenAPI 3.1 document with every route of the table, each operationId once", async () => {
    const { status, json } = await req("GET", "/v1/openapi.json");
    assert.equal(status, 200);
    const doc = json as unknown as { openapi: string; paths: Record<string, Record<string, { operationId: string; parameters?: { name: string; in: string }[] }>> };
    assert.equal(doc.openapi, "3.1.0");
    const ids = new Set<string>();
    for (const r of routes) {
      const path = r.path.replace(/:([A-Za-z]+)/g, "{$1}");
      const op = doc.paths[path]?.[r.method.toLowerCase()];
      assert.ok(op, `${r.method} ${path} missing from the document`);
      assert.equal(op.operationId, r.operationId);
      assert.ok(!ids.has(op.operationId), `duplicate operationId ${op.operationId}`);
      ids.add(op.operationId);
      for (const m of path.matchAll(/\{(\w+)\}/g)) assert.ok(op.parameters?.some((p) => p.name === m[1] && p.in === "path"), `${path}: path parameter ${m[1]} undeclared`);
    }
  });

  void it("every route answers through our error format, none through the framework's", async () => {
    for (const r of routes) {
      const path = r.path.replace(/:id/, "s-doesnotexist").replace(/:name/, "no-such-env");
      const body = r.body === "binary" ? "x" : r.body ? {} : undefined;
      const res = await req(r.method, path, body, r.body === "binary" ? { "content-type": "application/octet-stream" } : {});
      if (res.status < 400) continue;
      assert.ok(res.json?.error?.code && res.json.error.message, `${r.method} ${path} → ${res.status} ${res.text}`);
    }
  });

  void it("bad input is a 400 that says what is wrong and where", async () => {
    const missing = await req("POST", "/v1/sessions", {});
    assert.equal(missing.status, 400);
    assert.match(missing.json.error?.message ?? "", /body: .*environment/i);
    const badJson = await req("POST", "/v1/sessions", "{not json", { "content-type": "application/json" });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.json.error?.code, "invalid_argument");
    const badExec = await req("POST", "/v1/sessions/s-x/exec", { argv: [] });
    assert.equal(badExec.status, 400);
    assert.match(badExec.json.error?.message ?? "", /argv/);
    const badFile = await req("POST", "/v1/environments", { fileName: "runtime.yml", source: "name: x\ncompute:\n  cpu: lots\n" });
    assert.equal(badFile.status, 400);
    assert.match(badFile.json.error?.message ?? "", /runtime\.yml:3:\d+ compute\.cpu/);
    const issues = (badFile.json.error as unknown as { details: { issues: unknown[] } }).details.issues;
    assert.equal(issues.length, 1);
  });

  void it("unknown ids are 404, wrong states 409, unknown routes 404", async () => {
    assert.equal((await req("GET", "/v1/sessions/s-nope")).status, 404);
    assert.equal((await req("GET", "/v1/environments/nope")).status, 404);
    assert.equal((await req("GET", "/v1/nothing-here")).json.error?.code, "not_found");
    await req("POST", "/v1/environments", { fileName: "p.yml", source: "name: api-env\n" });
    const s = (await req("POST", "/v1/sessions", { environment: "api-env" })).json as unknown as { id: string };
    await req("POST", `/v1/sessions/${s.id}/stop`);
    const exec = await req("POST", `/v1/sessions/${s.id}/exec`, { argv: ["true"] });
    assert.equal(exec.status, 409);
    assert.match(exec.json.error?.message ?? "", /stopped, not running/);
  });

  void it("sessions as served never show the provider's private handle", async () => {
    const s = (await req("POST", "/v1/sessions", { environment: "api-env" })).json;
    assert.equal(s.providerState, undefined);
    assert.doesNotMatch(JSON.stringify(s), /initPid|agent\.sock|supervisorPid/);
    await req("DELETE", `/v1/sessions/${String(s.id)}`);
  });

  void it("the exec stream route refuses a plain GET with a clear message", async () => {
    const s = (await req("POST", "/v1/sessions", { environment: "api-env" })).json;
    const r = await req("GET", `/v1/sessions/${String(s.id)}/exec/stream`);
    assert.equal(r.status, 400);
    assert.match(r.json.error?.message ?? "", /WebSocket/);
    await req("DELETE", `/v1/sessions/${String(s.id)}`);
  });
});
