/** `paddock secret` and `paddock logs --egress` as a user runs them: a real process, stdin piped. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { applyKeys, emptyPrompt, scopeLabel } from "../../src/cli/secret.ts";
import { cli } from "../helpers/server.ts";
import { session } from "../store/suite-fixtures.ts";
import { secretRoutes } from "../../src/server/routes-secrets.ts";
import type { Route } from "../../src/server/routes.ts";
import { z } from "zod";
import { serveRoutes } from "./api-harness.ts";
import { distinctiveValue, fixture, type Fixture } from "./helpers.ts";

/** The real `paddock` program against the route harness (which checks no token). */
const paddock = (url: string, args: string[], input = "") => cli(url, args, { input, token: "" });

void describe("paddock secret and paddock logs", () => {
  let f: Fixture;
  let server: { url: string; close: () => Promise<void> };
  before(async () => {
    f = await fixture();
    await f.store.createSession(session("s1", { state: "stopped" }));
    // `logs --follow` asks whether the session has ended; the real table serves this route.
    const getSession: Route = {
      method: "GET",
      path: "/v1/sessions/:id",
      operationId: "getSession",
      summary: "stand-in",
      access: { kind: "public" },
      response: { status: 200, schema: z.unknown() },
      handler: async ({ cp, params }) => cp.store.getSession(params.id ?? ""),
    };
    server = await serveRoutes([...secretRoutes, getSession], f);
  });
  after(async () => {
    await server.close();
    await f.cleanup();
  });

  void it("secret set reads the value from stdin, dropping one trailing newline", async () => {
    const value = distinctiveValue();
    const r = await paddock(server.url, ["secret", "set", "STRIPE_API_KEY", "--env", "runtime"], `${value}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /secret STRIPE_API_KEY set \(env:runtime\)/);
    assert.ok(!(r.stdout + r.stderr).includes(value));
    assert.equal(await f.vault.resolve("STRIPE_API_KEY", { environment: "runtime" }), value);
    const multi = await paddock(server.url, ["secret", "set", "PEM_KEY"], "line1\nline2\n");
    assert.equal(multi.code, 0, multi.stderr);
    assert.equal(await f.vault.resolve("PEM_KEY", { environment: "x" }), "line1\nline2");
  });

  void it("secret set refuses a value on the command line, without repeating it", async () => {
    const value = distinctiveValue();
    for (const args of [["secret", "set", "GH_TOKEN", value], ["secret", "set", "GH_TOKEN", `--value=${value}`], ["secret", "set", "GH_TOKEN", "--value", value]]) {
      const r = await paddock(server.url, args, "from-stdin\n");
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /never taken from the command line.*Pipe it instead: printf %s "\$VALUE" \| paddock secret set GH_TOKEN/);
      assert.ok(!(r.stdout + r.stderr).includes(value), r.stderr);
    }
    assert.equal(await f.vault.resolve("GH_TOKEN", { environment: "runtime" }), null);
  });

  void it("secret set refuses empty stdin, a bad name and two scopes (exit 2)", async () => {
    for (const [args, input, message] of [
      [["secret", "set", "EMPTY"], "", /no value on stdin/],
      [["secret", "set", "lower"], "x", /not valid/],
      [["secret", "set", "A", "--env", "e", "--team", "t"], "x", /at most one of --env, --team, --agent/],
    ] as const) {
      const r = await paddock(server.url, [...args], input);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
  });

  void it("secret list shows names and scopes (never values); rm removes; rm again exits 3", async () => {
    const value = distinctiveValue();
    await f.vault.set("LIST_ME", value, { team: "eng" });
    const table = await paddock(server.url, ["secret", "list"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+SCOPE\s+UPDATED\s+LAST USED\n/);
    assert.match(table.stdout, /LIST_ME\s+team:eng\s+\S+\s+never/);
    const json = await paddock(server.url, ["secret", "list", "--json"]);
    assert.ok(JSON.parse(json.stdout).some((s: { name: string }) => s.name === "LIST_ME"));
    assert.ok(!(table.stdout + json.stdout).includes(value));
    assert.equal((await paddock(server.url, ["secret", "rm", "LIST_ME", "--team", "eng"])).code, 0);
    const again = await paddock(server.url, ["secret", "rm", "LIST_ME", "--team", "eng"]);
    assert.equal(again.code, 3);
    assert.match(again.stderr, /LIST_ME has no value in scope team=eng/);
  });

  void it("logs --egress prints a table, --json, and --follow stops once the session has ended", async () => {
    const base = { sessionId: "s1", method: "GET", port: 443, bytesOut: 1, bytesIn: 2, durationMs: 3 };
    await f.store.addEgressRecords([
      { ...base, time: "2026-11-02T10:00:00.000Z", host: "api.stripe.com", path: "/v1/charges?limit=", status: 200, swapped: ["STRIPE_API_KEY"], decision: "allowed", rule: "guardrails.network.allow[0] (runtime.yml:27)" },
      { ...base, time: "2026-11-02T10:00:01.000Z", host: "evil.example", port: 8443, path: "/", status: 403, swapped: [], decision: "denied", rule: "guardrails.network.deny[0]", reason: "host not allowed" },
    ]);
    const table = await paddock(server.url, ["logs", "--egress", "s1"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^TIME\s+METHOD\s+HOST\s+PATH\s+STATUS\s+DECISION\s+RULE\s+SWAPPED\n/);
    assert.match(table.stdout, /api\.stripe\.com\s+\/v1\/charges\?limit=\s+200\s+allowed\s+guardrails\.network\.allow\[0\] \(runtime\.yml:27\)\s+STRIPE_API_KEY/);
    assert.match(table.stdout, /evil\.example:8443\s+\/\s+403\s+denied\s+guardrails\.network\.deny\[0\]: host not allowed\s+-/);
    const json = await paddock(server.url, ["logs", "--egress", "s1", "--json"]);
    assert.equal(JSON.parse(json.stdout).length, 2);
    const followed = await paddock(server.url, ["logs", "--egress", "s1", "--follow", "--json", "--interval-ms", "20"]);
    assert.equal(followed.code, 0, followed.stderr);
    assert.equal(followed.stdout.trim().split("\n").length, 2);
    const missing = await paddock(server.url, ["logs", "--egress", "nope"]);
    assert.equal(missing.code, 3);
  });
});

void describe("hidden prompt keys", () => {
  const typed = (...chunks: string[]) => chunks.reduce(applyKeys, emptyPrompt());
  void it("Enter ends; Backspace and Delete erase; Ctrl-U clears; escape sequences are ignored", () => {
    assert.equal(typed("abc\r").chars.join(""), "abc");
    assert.equal(typed("ab", "\u007f", "c\n").chars.join(""), "ac");
    assert.equal(typed("ab\bc\r").chars.join(""), "ac");
    assert.equal(typed("junk\u0015ok\r").chars.join(""), "ok");
    assert.equal(typed("a\u001b[D\u001b[3~b\r").chars.join(""), "ab");
    assert.equal(typed("\u007f\u007fx\r").chars.join(""), "x");
    assert.equal(typed("p€ss✓\r").chars.join(""), "p€ss✓");
    const pasted = typed("secret\rtrailing");
    assert.ok(pasted.done);
    assert.equal(pasted.chars.join(""), "secret");
  });
  void it("Ctrl-C cancels; Ctrl-D ends; other control keys are dropped", () => {
    const c = typed("abc\u0003def");
    assert.ok(c.cancelled && !c.done);
    assert.ok(typed("abc\u0004").done);
    assert.equal(typed("a\tb\u0001c\r").chars.join(""), "abc");
    assert.ok(!typed("abc").done);
  });
  void it("scope labels", () => {
    assert.deepEqual([{}, { environment: "e" }, { team: "t" }, { agent: "a" }].map(scopeLabel), ["global", "env:e", "team:t", "agent:a"]);
  });
});
