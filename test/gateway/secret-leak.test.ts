// DESIGN.md invariant 4: drive every path (happy, denied, broken, echoing) and grep everything the
// gateway produced (log lines, records, responses, error messages) for any secret value or form.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { SECRETS, plainHttp, spec, startHarness, viaConnect, viaTransparent, type Harness, type Reply } from "./helpers.ts";

void describe("no secret value in anything the gateway produces", () => {
  let h: Harness;
  const captured: string[] = [];
  before(async () => {
    h = await startHarness();
  });
  after(async () => h.close());

  void it("runs every path and finds no secret in logs, records, responses or errors", async () => {
    const reg = await h.gw.register(spec("leak"));
    const ph = reg.placeholders;
    const auth = { authorization: `Bearer ${ph.STRIPE_API_KEY}`, "x-sentry-auth": `sentry_key=${new URL(ph.SENTRY_DSN!).username}` };
    const keep = (r: Reply): void => void captured.push(JSON.stringify(r));
    const P = h.gw.endpoints.proxyPort;
    const paths = ["/", "/echo-header", "/echo-body", "/echo-gzip", "/echo-chunks", "/redirect", "/reset", "/weird-encoding"];
    for (const host of ["api.stripe.com", "allowed.example", "o1.ingest.sentry.io", "evil.example"]) {
      for (const path of paths) {
        try {
          keep(await viaConnect(P, reg.caCertPem, `${host}:443`, { path: `${path}?k=${ph.QUERY_KEY}`, method: "POST", headers: auth, body: `b=${ph.QUERY_KEY}` }));
          keep(await viaTransparent(h.gw.endpoints.httpsPort, reg.caCertPem, host, { path, headers: auth }));
          keep(await plainHttp(P, `http://${host}${path}`, { host, headers: auth }));
        } catch (err) {
          captured.push(String(err), (err as Error).stack ?? "");
        }
      }
    }
    try {
      await h.gw.register(spec("leak2", { sourceIp: "127.0.0.1" }));
    } catch (err) {
      captured.push(String(err), JSON.stringify(err));
    }
    // The secrets really went upstream (so the test could fail), and the sandbox side never saw them.
    assert.ok(h.up.seen.some((s) => s.headers.authorization === `Bearer ${SECRETS.STRIPE_API_KEY}`));
    const everything = [...captured, ...h.logs, ...h.records.map((r) => JSON.stringify(r))].join("\n");
    assert.ok(h.records.length > 50);
    for (const [name, value] of Object.entries(SECRETS)) {
      const forms = [value, encodeURIComponent(value), Buffer.from(value).toString("base64")];
      const url = /:\/\/([^@]+)@/.exec(value)?.[1]?.split(":");
      if (url) forms.push(...url.filter((p) => p.includes("REAL")));
      for (const f of forms) assert.ok(!everything.includes(f), `${name} leaked as ${f.slice(0, 6)}…`);
    }
  });
});
