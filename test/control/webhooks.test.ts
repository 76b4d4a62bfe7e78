// Webhook triggers against the real SQLite store, vault and audit log, with a fake startRun that
// records calls (no sandboxes: the runs tests cover starting them). Each sender is signed here
// from its vendor's documented scheme, independently of the code under test.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { parseEnvironment } from "../../src/config/index.ts";
import { MAX_PROMPT_VALUE_CHARS, MAX_RENDERED_PROMPT_CHARS } from "../../src/config/triggers.ts";
import { Webhooks, MAX_WEBHOOK_BODY_BYTES, type TriggeredRunRequest, type WebhookAnswer, type WebhookDelivery } from "../../src/control/webhooks.ts";
import type { Principal, Run, Store } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { openVault, type Vault } from "../../src/gateway/vault.ts";
import { AuditLog } from "../../src/guard/index.ts";
import { openStore } from "../../src/store/index.ts";
import { tempDir } from "../helpers/tmp.ts";

const ENV = "shop";
const SECRETS = { PD_SECRET: "pd-signing-7f3a1c", SENTRY_SECRET: "sentry-client-secret-91b2", GH_SECRET: "gh-hook-secret-4d5e", HOOK_SECRET: "hook-secret-c0ffee" };

const FILE = `name: ${ENV}
agent: claude-code
triggers:
  - name: pd
    on: pagerduty
    events: [incident.triggered]
    secret: PD_SECRET
    agent: claude-code
    prompt: "PagerDuty: {{event.data.title}}"
    as: alice
    outcome: snapshot
  - name: sentry
    on: sentry
    events: [issue.created]
    secret: SENTRY_SECRET
    agent: claude-code
    prompt: "Sentry: {{data.issue.title}}"
    as: alice
  - name: gh
    on: github
    events: [issues.opened]
    secret: GH_SECRET
    agent: claude-code
    prompt: "GitHub: {{issue.title}}"
    as: alice
    outcome: stop
  - name: hook
    on: hook
    events: [alert]
    secret: HOOK_SECRET
    agent: claude-code
    prompt: "Hook: {{title}}"
    as: alice
  - name: echo
    on: hook
    secret: HOOK_SECRET
    agent: claude-code
    prompt: "T={{title}} M={{missing.path}} P={{__proto__}} C={{constructor.name}} END"
    as: alice
  - name: as-bob
    on: hook
    secret: HOOK_SECRET
    agent: claude-code
    prompt: "x {{title}}"
    as: bob
  - name: as-ghost
    on: hook
    secret: HOOK_SECRET
    agent: claude-code
    prompt: "x {{title}}"
    as: ghost
  - name: as-agent
    on: hook
    secret: HOOK_SECRET
    agent: claude-code
    prompt: "x {{title}}"
    as: claude-code
  - name: unset
    on: hook
    secret: NOT_SET
    agent: claude-code
    prompt: "x {{title}}"
    as: alice
`;

const hex = (key: string, ...parts: (string | Buffer)[]): string => {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return h.digest("hex");
};

/** How a test wants the signature spoiled. */
type Spoil = "missing" | "bad" | "truncated" | "wrong-secret" | undefined;

interface Send {
  title: string;
  id: string;
  /** When the delivery was signed, ms since the epoch. */
  at: number;
  event?: string;
  spoil?: Spoil;
}

interface Vendor {
  trigger: string;
  secret: string;
  /** The event the trigger wants, and one it does not. */
  event: string;
  other: string;
  /** Signs no timestamp (GitHub). */
  untimed?: true;
  make(s: Send, secret: string): { headers: Record<string, string>; body: Buffer };
  prompt(title: string): string;
}

function spoiled(sig: string, spoil: Spoil): string | undefined {
  if (spoil === "missing") return undefined;
  if (spoil === "truncated") return sig.slice(0, -2);
  if (spoil === "bad") return sig.slice(0, -1) + (sig.endsWith("0") ? "1" : "0");
  return sig;
}

function withSig(headers: Record<string, string>, name: string, value: string | undefined): Record<string, string> {
  return value === undefined ? headers : { ...headers, [name]: value };
}

const secs = (ms: number) => String(Math.floor(ms / 1000));

const VENDORS: Record<string, Vendor> = {
  // developer.pagerduty.com v3 "Verifying Signatures": v1=<hex HMAC-SHA256(body)>, comma-separated.
  pagerduty: {
    trigger: "pd", secret: SECRETS.PD_SECRET, event: "incident.triggered", other: "incident.resolved",
    make(s, secret) {
      const body = Buffer.from(JSON.stringify({ event: { id: `ev-${s.id}`, event_type: s.event ?? this.event, resource_type: "incident", occurred_at: new Date(s.at).toISOString(), data: { title: s.title } } }));
      // A rotation: an old secret's signature first, the current one second; any match counts.
      const sig = spoiled(`v1=${hex("old-secret", body)},v1=${hex(secret, body)}`, s.spoil);
      return { headers: withSig({ "content-type": "application/json", "x-webhook-id": s.id }, "x-pagerduty-signature", sig), body };
    },
    prompt: (t) => `PagerDuty: ${t}`,
  },
  // docs.sentry.io integration-platform webhooks: hex HMAC-SHA256(body) with the client secret.
  sentry: {
    trigger: "sentry", secret: SECRETS.SENTRY_SECRET, event: "issue.created", other: "issue.resolved",
    make(s, secret) {
      const [resource = "", action = ""] = (s.event ?? this.event).split(".");
      const body = Buffer.from(JSON.stringify({ action, installation: { uuid: "u-1" }, data: { issue: { id: s.id, title: s.title } } }));
      const headers = { "content-type": "application/json", "request-id": s.id, "sentry-hook-resource": resource, "sentry-hook-timestamp": secs(s.at) };
      return { headers: withSig(headers, "sentry-hook-signature", spoiled(hex(secret, body), s.spoil)), body };
    },
    prompt: (t) => `Sentry: ${t}`,
  },
  // docs.github.com "Validating webhook deliveries": sha256=<hex HMAC-SHA256(body)>.
  github: {
    trigger: "gh", secret: SECRETS.GH_SECRET, event: "issues.opened", other: "issues.closed", untimed: true,
    make(s, secret) {
      const [event = "", action = ""] = (s.event ?? this.event).split(".");
      const body = Buffer.from(JSON.stringify({ action, issue: { number: 7, title: s.title, body: `id ${s.id}` }, repository: { full_name: "acme/shop" } }));
      const headers = { "content-type": "application/json", "x-github-delivery": s.id, "x-github-event": event };
      return { headers: withSig(headers, "x-hub-signature-256", spoiled(`sha256=${hex(secret, body)}`, s.spoil)), body };
    },
    prompt: (t) => `GitHub: ${t}`,
  },
  // docs/triggers.md: X-Paddock-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256("<t>.<body>")>.
  hook: {
    trigger: "hook", secret: SECRETS.HOOK_SECRET, event: "alert", other: "deploy",
    make(s, secret) {
      const body = Buffer.from(JSON.stringify({ title: s.title, ref: s.id }));
      const t = secs(s.at);
      const sig = spoiled(`t=${t},v1=${hex(secret, `${t}.`, body)}`, s.spoil);
      return { headers: withSig({ "content-type": "application/json", "x-paddock-delivery": s.id, "x-paddock-event": s.event ?? this.event }, "x-paddock-signature", sig), body };
    },
    prompt: (t) => `Hook: ${t}`,
  },
};

interface Fixture {
  store: Store;
  vault: Vault;
  webhooks: Webhooks;
  calls: { req: TriggeredRunRequest; actor: Principal }[];
  clock: { now: number };
  /** Errors the next startRun calls throw, in order (a run that cannot start). */
  failures: Error[];
  cleanup(): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const dir = await tempDir("paddock-webhooks-");
  const home = join(dir.path, "home");
  const store = await openStore(join(dir.path, "paddock.db"));
  const vault = await openVault({ home, store, env: {}, log: () => undefined });
  const audit = new AuditLog(store, vault.deriveKey("audit-chain"), join(dir.path, "audit.head"), async () => Object.values(SECRETS));
  const { spec, issues } = parseEnvironment(FILE, "runtime.yml");
  assert.deepEqual(issues, []);
  await store.addEnvironmentVersion({ name: ENV, fileName: "runtime.yml", source: FILE, spec, sourceDigest: "d", createdBy: "admin" });
  for (const [name, value] of Object.entries(SECRETS)) await vault.set(name, value, { environment: ENV });
  const principal = (name: string, kind: Principal["kind"], disabledAt: string | null = null): Principal => ({ id: `usr_${name}`, name, kind, team: null, role: "engineering", createdAt: new Date().toISOString(), disabledAt });
  await store.createPrincipal(principal("alice", "human"));
  await store.createPrincipal(principal("bob", "human", new Date().toISOString()));
  await store.createPrincipal(principal("claude-code", "agent"));
  const calls: Fixture["calls"] = [];
  const clock = { now: Date.now() };
  const failures: Error[] = [];
  const startRun = async (req: TriggeredRunRequest, actor: Principal): Promise<Run> => {
    const failure = failures.shift();
    if (failure) throw failure;
    calls.push({ req, actor });
    const n = calls.length;
    const at = new Date(clock.now).toISOString();
    return {
      id: `run-${n}`, environment: req.environment, version: 1, sessionId: `ses-${n}`, agent: req.agent, startedBy: actor.name, trigger: req.trigger, prompt: req.prompt,
      outcome: req.outcome, state: "starting", turns: 1, agentSessionId: null, createdAt: at, updatedAt: at, endedAt: null, result: null, error: null,
    };
  };
  const webhooks = new Webhooks({ store, vault, audit, startRun, now: () => clock.now });
  return {
    store, vault, webhooks, calls, clock, failures,
    cleanup: async () => {
      await audit.flush();
      await vault.idle();
      await store.close();
      await dir.remove();
    },
  };
}

let f: Fixture;
let seq = 0;
const freshId = () => `dlv-${++seq}-${Math.random().toString(16).slice(2, 10)}`;

function delivery(v: Vendor, s: Partial<Send> & { secret?: string; trigger?: string } = {}): WebhookDelivery {
  const send: Send = { title: s.title ?? "Checkout is down", id: s.id ?? freshId(), at: s.at ?? f.clock.now, ...(s.event ? { event: s.event } : {}), ...(s.spoil ? { spoil: s.spoil } : {}) };
  const { headers, body } = v.make(send, s.spoil === "wrong-secret" ? "not-the-secret" : (s.secret ?? v.secret));
  return { environment: ENV, trigger: s.trigger ?? v.trigger, headers, rawBody: body };
}

const errorOf = (a: WebhookAnswer): string => (a.body as { error?: { message?: string } }).error?.message ?? "";

async function webhookAudit(): Promise<Record<string, unknown>[]> {
  return (await f.store.listAudit({})).filter((r) => r.action === "webhook.receive").map((r) => ({ ...r }));
}

before(async () => {
  f = await fixture();
});
after(async () => {
  await f.cleanup();
});
beforeEach(() => {
  f.calls.length = 0;
  // Whole seconds, so second-resolution timestamps (Sentry, hook) land exactly where the tests put them.
  f.clock.now = Math.floor(Date.now() / 1000) * 1000;
});

void describe("a run that cannot start", () => {
  const v = VENDORS.hook!;
  void it("for a passing reason, the sender's retry of the same delivery starts it", async () => {
    const d = delivery(v);
    f.failures.push(new PaddockError("unavailable", "no sandbox could start: out of memory"));
    await assert.rejects(f.webhooks.receive(d), /out of memory/);
    assert.equal(f.calls.length, 0);
    const retry = await f.webhooks.receive(d);
    assert.equal(retry.status, 202, JSON.stringify(retry.body));
    assert.equal(f.calls.length, 1);
    assert.equal((await f.webhooks.receive(d)).status, 200, "and then it is a duplicate");
  });
  void it("when refused, stays decided: a retry is a duplicate and starts nothing", async () => {
    const d = delivery(v);
    f.failures.push(new PaddockError("forbidden", "alice may not write"));
    await assert.rejects(f.webhooks.receive(d), /may not write/);
    const retry = await f.webhooks.receive(d);
    assert.equal(retry.status, 200);
    assert.equal(f.calls.length, 0);
  });
});

for (const [source, v] of Object.entries(VENDORS)) {
  void describe(`${source} deliveries`, () => {
    void it("a good signature starts exactly one run, with the rendered prompt and the trigger's principal", async () => {
      const d = delivery(v, { title: "Checkout 500s on /pay" });
      const a = await f.webhooks.receive(d);
      assert.equal(a.status, 202, errorOf(a));
      assert.deepEqual(a.body, { run: "run-1", session: "ses-1" });
      assert.equal(f.calls.length, 1);
      const [call] = f.calls;
      assert.equal(call?.actor.name, "alice");
      assert.equal(call?.req.prompt, v.prompt("Checkout 500s on /pay"));
      assert.equal(call?.req.environment, ENV);
      assert.equal(call?.req.agent, "claude-code");
      assert.deepEqual(call?.req.trigger, { name: v.trigger, source, deliveryId: d.headers[Object.keys(d.headers).find((k) => /delivery|webhook-id|request-id/.test(k)) ?? ""] });
    });

    for (const spoil of ["missing", "bad", "truncated", "wrong-secret"] as const) {
      void it(`refuses a ${spoil} signature (401), and starts nothing`, async () => {
        const a = await f.webhooks.receive(delivery(v, { spoil }));
        assert.equal(a.status, 401, errorOf(a));
        assert.equal(f.calls.length, 0);
      });
    }

    void it("a refused delivery does not use up its id: claims come after the signature", async () => {
      const id = freshId();
      assert.equal((await f.webhooks.receive(delivery(v, { id, spoil: "bad" }))).status, 401);
      assert.equal((await f.webhooks.receive(delivery(v, { id }))).status, 202);
      assert.equal(f.calls.length, 1);
    });

    void it("refuses a body changed after signing (401)", async () => {
      const d = delivery(v);
      const a = await f.webhooks.receive({ ...d, rawBody: Buffer.from(d.rawBody.toString().replace("Checkout", "Checkpoint")) });
      assert.equal(a.status, 401);
      assert.equal(f.calls.length, 0);
    });

    if (v.untimed) {
      void it("signs no timestamp: an old delivery is judged by its id and body only (documented)", async () => {
        const a = await f.webhooks.receive(delivery(v, { at: f.clock.now - 7 * 86_400_000 }));
        assert.equal(a.status, 202, errorOf(a));
      });
    } else {
      void it("refuses a stale timestamp beyond maxAge (401, says so)", async () => {
        const a = await f.webhooks.receive(delivery(v, { at: f.clock.now - 6 * 60_000 }));
        assert.equal(a.status, 401);
        assert.match(errorOf(a), /stale delivery: signed at .*, 360s ago, beyond the trigger's maxAge of 300s/);
        assert.equal(f.calls.length, 0);
      });

      void it("refuses a future timestamp beyond maxAge (401, says so)", async () => {
        const a = await f.webhooks.receive(delivery(v, { at: f.clock.now + 6 * 60_000 }));
        assert.equal(a.status, 401);
        assert.match(errorOf(a), /delivery from the future: .*360s ahead/);
        assert.equal(f.calls.length, 0);
      });

      void it("accepts a timestamp inside the window", async () => {
        const a = await f.webhooks.receive(delivery(v, { at: f.clock.now - 4 * 60_000 }));
        assert.equal(a.status, 202, errorOf(a));
      });
    }

    void it("the same delivery twice starts one run; the second is a 200 duplicate", async () => {
      const d = delivery(v);
      assert.equal((await f.webhooks.receive(d)).status, 202);
      assert.deepEqual(await f.webhooks.receive(d), { status: 200, body: { duplicate: true, run: null } });
      assert.equal(f.calls.length, 1);
    });

    void it("the same delivery five times at once starts exactly one run", async () => {
      const d = delivery(v);
      const answers = await Promise.all(Array.from({ length: 5 }, () => f.webhooks.receive(d)));
      assert.deepEqual(answers.map((a) => a.status).sort(), [200, 200, 200, 200, 202]);
      assert.equal(f.calls.length, 1);
    });

    void it("a new delivery id with a new event starts a new run", async () => {
      assert.equal((await f.webhooks.receive(delivery(v, { title: "first" }))).status, 202);
      assert.equal((await f.webhooks.receive(delivery(v, { title: "second" }))).status, 202);
      assert.deepEqual(f.calls.map((c) => c.req.prompt), [v.prompt("first"), v.prompt("second")]);
    });

    void it("the same signed bytes under a forged new delivery id are a duplicate (ids are not signed)", async () => {
      const d = delivery(v);
      assert.equal((await f.webhooks.receive(d)).status, 202);
      const idHeader = Object.keys(d.headers).find((k) => /delivery|webhook-id|request-id/.test(k)) ?? "";
      const replay = { ...d, headers: { ...d.headers, [idHeader]: freshId() } };
      assert.deepEqual(await f.webhooks.receive(replay), { status: 200, body: { duplicate: true, run: null } });
      // And concurrently: five forged ids of one body, one run.
      const e = delivery(v, { title: "concurrent" });
      const all = await Promise.all(Array.from({ length: 5 }, () => f.webhooks.receive({ ...e, headers: { ...e.headers, [idHeader]: freshId() } })));
      assert.equal(all.filter((a) => a.status === 202).length, 1);
      assert.equal(f.calls.length, 2);
    });

    void it("an event the trigger does not list is ignored (202), with no run", async () => {
      const a = await f.webhooks.receive(delivery(v, { event: v.other }));
      assert.equal(a.status, 202);
      assert.equal((a.body as { ignored?: boolean }).ignored, true);
      assert.equal((a.body as { run?: unknown }).run, null);
      assert.equal(f.calls.length, 0);
    });
  });
}

void describe("hook: the same body is a new event when signed at a new time", () => {
  void it("a new t and delivery id with the same body start a new run", async () => {
    const v = VENDORS.hook as Vendor;
    assert.equal((await f.webhooks.receive(delivery(v, { title: "same", id: "a-1", at: f.clock.now - 2000 }))).status, 202);
    assert.equal((await f.webhooks.receive(delivery(v, { title: "same", id: "a-2", at: f.clock.now }))).status, 202);
    assert.equal(f.calls.length, 2);
  });

  void it("needs X-Paddock-Delivery (400), checked after the signature", async () => {
    const d = delivery(VENDORS.hook as Vendor);
    const { "x-paddock-delivery": _, ...headers } = d.headers as Record<string, string>;
    const a = await f.webhooks.receive({ ...d, headers });
    assert.equal(a.status, 400);
    assert.match(errorOf(a), /x-paddock-delivery/);
  });
});

void describe("prompts from hostile payloads", () => {
  const hook = VENDORS.hook as Vendor;
  const send = (payload: unknown) => {
    const body = Buffer.from(JSON.stringify(payload));
    const t = secs(f.clock.now);
    return f.webhooks.receive({
      environment: ENV, trigger: "echo", rawBody: body,
      headers: { "x-paddock-delivery": freshId(), "x-paddock-signature": `t=${t},v1=${hex(hook.secret, `${t}.`, body)}` },
    });
  };

  void it("values are plain text: {{…}} inside a value is never expanded; prototype paths are empty", async () => {
    const a = await send({ title: "{{title}} {{secret}} {{constructor.name}}", secret: "hidden" });
    assert.equal(a.status, 202, errorOf(a));
    assert.equal(f.calls[0]?.req.prompt, "T={{title}} {{secret}} {{constructor.name}} M= P= C= END");
  });

  void it("huge values are cut, and the prompt stays bounded", async () => {
    const a = await send({ title: "A".repeat(500_000) });
    assert.equal(a.status, 202, errorOf(a));
    const prompt = f.calls[0]?.req.prompt ?? "";
    assert.ok(prompt.length <= MAX_PROMPT_VALUE_CHARS + 40 && prompt.length <= MAX_RENDERED_PROMPT_CHARS, `prompt is ${prompt.length} characters`);
    assert.match(prompt, /…\[truncated\] M= P= C= END$/);
  });

  void it("a body over the cap is refused (413) before anything is parsed", async () => {
    const a = await send({ title: "x".repeat(MAX_WEBHOOK_BODY_BYTES) });
    assert.equal(a.status, 413);
    assert.equal(f.calls.length, 0);
  });

  void it("a signed body that is not JSON is refused (400)", async () => {
    const body = Buffer.from("not json");
    const t = secs(f.clock.now);
    const a = await f.webhooks.receive({ environment: ENV, trigger: "echo", rawBody: body, headers: { "x-paddock-delivery": freshId(), "x-paddock-signature": `t=${t},v1=${hex(hook.secret, `${t}.`, body)}` } });
    assert.equal(a.status, 400);
  });
});

void describe("who the run acts for, and what is refused before a signature", () => {
  const hookTo = (trigger: string, title = "x") => delivery(VENDORS.hook as Vendor, { trigger, title, event: "anything" });

  void it("a disabled principal refuses the run (403)", async () => {
    const a = await f.webhooks.receive(hookTo("as-bob"));
    assert.equal(a.status, 403);
    assert.match(errorOf(a), /principal bob is disabled/);
    assert.equal(f.calls.length, 0);
  });

  void it("a missing principal refuses the run (403)", async () => {
    const a = await f.webhooks.receive(hookTo("as-ghost"));
    assert.equal(a.status, 403);
    assert.match(errorOf(a), /principal ghost does not exist/);
  });

  void it("an agent principal cannot be the person behind a run (403)", async () => {
    const a = await f.webhooks.receive(hookTo("as-agent"));
    assert.equal(a.status, 403);
    assert.equal(f.calls.length, 0);
  });

  void it("unknown environments and triggers are 404", async () => {
    const d = delivery(VENDORS.hook as Vendor);
    assert.equal((await f.webhooks.receive({ ...d, environment: "nope" })).status, 404);
    assert.equal((await f.webhooks.receive({ ...d, trigger: "nope" })).status, 404);
    assert.equal((await f.webhooks.receive({ ...d, environment: "../etc" })).status, 404);
    assert.equal(f.calls.length, 0);
  });

  void it("an unset signing secret is 503 and says how to set it", async () => {
    const a = await f.webhooks.receive(hookTo("unset"));
    assert.equal(a.status, 503);
    assert.match(errorOf(a), /paddock secret set NOT_SET --env shop/);
  });

  void it("a ping is ignored even by a trigger that takes every event", async () => {
    const any = delivery(VENDORS.hook as Vendor, { trigger: "echo", event: "ping" });
    assert.equal(((await f.webhooks.receive(any)).body as { ignored?: boolean }).ignored, true);
    assert.equal(f.calls.length, 0);
  });
});

void describe("audit", () => {
  void it("records every delivery with source, trigger, delivery id and outcome, never a signing secret", async () => {
    const beforeCount = (await webhookAudit()).length;
    const v = VENDORS.pagerduty as Vendor;
    const good = delivery(v, { id: "audit-good" });
    await f.webhooks.receive(good);
    await f.webhooks.receive(good);
    await f.webhooks.receive(delivery(v, { id: "audit-bad", spoil: "bad" }));
    await f.webhooks.receive(delivery(v, { id: "audit-ignored", event: v.other }));
    const records = (await webhookAudit()).slice(beforeCount);
    assert.equal(records.length, 4);
    const details = records.map((r) => r.detail as Record<string, unknown>);
    assert.deepEqual(details.map((d) => [d.source, d.trigger, d.deliveryId, d.outcome]), [
      ["pagerduty", "pd", "audit-good", "accepted"],
      ["pagerduty", "pd", "audit-good", "duplicate"],
      ["pagerduty", "pd", "audit-bad", "refused"],
      ["pagerduty", "pd", "audit-ignored", "ignored"],
    ]);
    assert.deepEqual(records.map((r) => r.decision), ["allowed", "info", "denied", "info"]);
    assert.equal(records[0]?.onBehalfOf, "alice");
    assert.equal(records[0]?.environment, ENV);
    const all = JSON.stringify(await webhookAudit());
    for (const secret of Object.values(SECRETS)) assert.ok(!all.includes(secret), "a signing secret reached the audit log");
  });
});
