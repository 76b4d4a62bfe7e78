// Bindings, placeholders, swapping rules and redaction, as units.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { defaultBinding, isSecretBound } from "../../src/gateway/index.ts";
import { makePlaceholder } from "../../src/gateway/placeholders.ts";
import { RedactStream, replaceAll, replacementsFor } from "../../src/gateway/redact.ts";
import { SecretMaterial } from "../../src/gateway/sessions.ts";
import { hostBound, swapRequest } from "../../src/gateway/swap.ts";
import { inspect } from "node:util";

void describe("defaultBinding / isSecretBound", () => {
  void it("knows the well-known names", () => {
    assert.deepEqual(defaultBinding("STRIPE_SECRET_KEY"), { name: "STRIPE_SECRET_KEY", hosts: ["api.stripe.com"], in: ["header"], kind: "http" });
    assert.deepEqual(defaultBinding("GH_TOKEN")?.hosts, ["github.com", "api.github.com"]);
    assert.deepEqual(defaultBinding("ANTHROPIC_API_KEY")?.hosts, ["api.anthropic.com"]);
    assert.deepEqual(defaultBinding("OPENAI_API_KEY")?.hosts, ["api.openai.com"]);
    assert.deepEqual(defaultBinding("SENTRY_DSN", "https://k@o1.ingest.sentry.io/42")?.hosts, ["o1.ingest.sentry.io"]);
    assert.equal(defaultBinding("SENTRY_DSN"), null);
    assert.deepEqual(defaultBinding("ANALYTICS_DATABASE_URL"), { name: "ANALYTICS_DATABASE_URL", hosts: [], in: ["header"], kind: "database" });
    assert.equal(defaultBinding("MY_THING"), null);
    assert.equal(isSecretBound("DATABASE_URL"), true);
    assert.equal(isSecretBound("SENTRY_DSN"), true);
    assert.equal(isSecretBound("MY_THING"), false);
  });
});

void describe("placeholders", () => {
  void it("are unguessable tokens; URL-shaped secrets keep their shape", () => {
    const a = makePlaceholder("sk_live_x").text;
    assert.match(a, /^paddock-ph-[0-9a-f]{32}$/);
    assert.notEqual(a, makePlaceholder("sk_live_x").text);
    const dsn = makePlaceholder("https://KEY@o1.ingest.sentry.io/42");
    assert.equal(new URL(dsn.text).host, "o1.ingest.sentry.io");
    assert.equal(new URL(dsn.text).pathname, "/42");
    const db = makePlaceholder("postgres://user:pass@db:5432/app");
    assert.equal(db.tokens.length, 2);
    assert.match(db.text, /@db:5432\/app$/);
  });
});

void describe("swapRequest", () => {
  const ph = makePlaceholder("REAL");
  const m = [new SecretMaterial({ name: "K", hosts: ["api.x.io", "*.y.io"], in: ["header"], kind: "http" }, ph, "REAL")];
  const req = { headers: [["authorization", `Bearer ${ph.text}`]] as [string, string][], path: `/p?k=${ph.text}`, body: Buffer.from(ph.text) };
  const tls = { tls: true };
  void it("swaps headers for bound hosts only, never in disallowed locations", () => {
    const out = swapRequest(req, "api.x.io", m, tls);
    assert.deepEqual(out.headers, [["authorization", "Bearer REAL"]]);
    assert.equal(out.path, req.path);
    assert.equal(out.body?.toString(), ph.text);
    assert.deepEqual(out.swapped, ["K"]);
    assert.deepEqual(swapRequest(req, "evil.example", m, tls).headers, req.headers);
    assert.equal(swapRequest(req, "a.y.io", m, tls).swapped.length, 1);
    assert.equal(swapRequest(req, "y.io", m, tls).swapped.length, 0);
  });
  void it("over plain HTTP withholds (never swaps) unless the binding allows cleartext", () => {
    const plain = swapRequest(req, "api.x.io", m, { tls: false });
    assert.deepEqual(plain.headers, req.headers);
    assert.deepEqual(plain.swapped, []);
    assert.deepEqual(plain.withheld, ["K"]);
    // Not bound to the host: not withheld either (it goes out unchanged, as over TLS).
    assert.deepEqual(swapRequest(req, "evil.example", m, { tls: false }).withheld, []);
    const open = [new SecretMaterial({ ...m[0]!.binding, cleartext: true }, ph, "REAL")];
    const out = swapRequest(req, "api.x.io", open, { tls: false });
    assert.deepEqual(out.headers, [["authorization", "Bearer REAL"]]);
    assert.deepEqual([out.swapped, out.withheld], [["K"], []]);
  });
  void it("swaps in bodies byte for byte, every occurrence", () => {
    const body = [new SecretMaterial({ name: "B", hosts: ["api.x.io"], in: ["body"], kind: "http" }, ph, "RÉAL")];
    const out = swapRequest({ headers: [], path: "/", body: Buffer.from(`\u00ff${ph.text}-${ph.text}`) }, "api.x.io", body, tls);
    assert.equal(out.body?.toString(), "\u00ffRÉAL-RÉAL");
    assert.equal(swapRequest({ headers: [], path: "/", body: null }, "api.x.io", body, tls).body, null);
  });
  void it("hostBound never accepts `*`", () => {
    assert.equal(hostBound(["*"], "a.io"), false);
  });
  void it("secret material redacts itself when inspected or serialised", () => {
    assert.ok(!inspect(m[0]).includes("REAL"));
    assert.ok(!JSON.stringify(m).includes("REAL"));
    assert.ok(!String(m[0]).includes("REAL"));
  });
});

void describe("redaction", () => {
  const secret = "s3cr3t-VALUE-0123456789";
  const reps = replacementsFor([{ secret, placeholder: "PH" }]);
  void it("replaces raw, URL-encoded and base64 forms (any alignment)", () => {
    assert.equal(replaceAll(Buffer.from(`a${secret}b`), reps).toString(), "aPHb");
    for (const prefix of ["", "u:", "ab:"]) {
      const b64 = Buffer.from(prefix + secret).toString("base64");
      assert.ok(!Buffer.from(replaceAll(Buffer.from(b64), reps).toString(), "base64").toString().includes(secret), prefix);
    }
    const tricky = "a/b c+d=e&f0123456789";
    const r2 = replacementsFor([{ secret: tricky, placeholder: "PH" }]);
    assert.equal(replaceAll(Buffer.from(encodeURIComponent(tricky)), r2).toString(), "PH");
  });
  void it("catches a secret split across every possible chunk boundary", async () => {
    const text = `xx${secret}yy${secret}`;
    for (let size = 1; size <= text.length; size++) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < text.length; i += size) chunks.push(Buffer.from(text.slice(i, i + size)));
      const out: Buffer[] = [];
      for await (const c of Readable.from(chunks).pipe(new RedactStream(reps))) out.push(c as Buffer);
      assert.equal(Buffer.concat(out).toString(), "xxPHyyPH", `chunk size ${size}`);
    }
  });
});
