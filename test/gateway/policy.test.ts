// guardrails.network decisions, host canonicalisation and the refused address ranges.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { blockedReason, canonicalHost } from "../../src/gateway/addresses.ts";
import { decideHost } from "../../src/gateway/index.ts";
import { couldAllowName, ipLiteralAllowed, permittedDnsNames } from "../../src/gateway/policy.ts";

const design = { allow: ["api.stripe.com", "sentry.io", "github.com"], deny: ["*"], allowSources: ["runtime.yml:27", "runtime.yml:28", "runtime.yml:29"], denySources: ["runtime.yml:31"] };

void describe("decideHost", () => {
  void it("DESIGN.md policy: allowed names on 80/443, everything else denied by `*`", () => {
    assert.deepEqual(decideHost(design, "api.stripe.com", 443), { allowed: true, rule: "guardrails.network.allow[0] (runtime.yml:27)" });
    assert.equal(decideHost(design, "evil.example", 443).rule, "guardrails.network.deny[0] (runtime.yml:31)");
    assert.equal(decideHost(design, "evil.example", 443).allowed, false);
    assert.equal(decideHost(design, "api.stripe.com", 80).allowed, true);
  });
  void it("10/18: normalised names, and a port no rule names is refused", () => {
    for (const n of ["API.STRIPE.COM", "api.stripe.com.", "Api.Stripe.Com."]) assert.equal(decideHost(design, n, 443).allowed, true);
    for (const p of [22, 5432, 8443]) assert.deepEqual(decideHost(design, "api.stripe.com", p), { allowed: false, rule: "gateway.default-deny", reason: `no rule allows api.stripe.com:${p}` });
    assert.equal(decideHost({ allow: ["db.example.com:5432"], deny: [] }, "db.example.com", 5432).allowed, true);
    assert.equal(decideHost({ allow: ["db.example.com:5432"], deny: [] }, "db.example.com", 443).allowed, false);
  });
  void it("wildcards cover subdomains only; most specific wins; deny wins ties", () => {
    const p = { allow: ["*.example.com", "a.b.example.com:8080", "x.example.com"], deny: ["*.b.example.com", "x.example.com"] };
    assert.equal(decideHost(p, "example.com", 443).allowed, false);
    assert.equal(decideHost(p, "www.example.com", 443).allowed, true);
    assert.equal(decideHost(p, "a.b.example.com", 443).allowed, false); // longer deny suffix
    assert.equal(decideHost(p, "a.b.example.com", 8080).allowed, true); // exact host:port
    assert.equal(decideHost(p, "x.example.com", 443).allowed, false); // tie → deny
    assert.equal(decideHost({ allow: ["*:8080"], deny: ["*"] }, "h.io", 8080).allowed, true);
    assert.equal(decideHost({ allow: ["*"], deny: [] }, "h.io", 22).allowed, false);
    assert.equal(decideHost({ allow: [], deny: [] }, "h.io", 443).reason, "no rule allows h.io:443");
  });
  void it("9: IP literal spellings are matched on their canonical address", () => {
    const p = { allow: ["*"], deny: ["127.0.0.1", "[::1]"] };
    for (const t of ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:7f00:1]", "::ffff:127.0.0.1"]) assert.equal(decideHost(p, t, 443).allowed, false, t);
    assert.equal(decideHost(p, "[::1]", 443).allowed, false);
    assert.equal(canonicalHost("0")?.host, "0.0.0.0");
    assert.equal(decideHost({ allow: ["10.0.0.5"], deny: [] }, "10.0.0.5", 80).allowed, true);
    assert.equal(ipLiteralAllowed({ allow: ["10.0.0.5"], deny: [] }, "10.0.0.5", 443), true);
    assert.equal(ipLiteralAllowed({ allow: ["*"], deny: [] }, "10.0.0.5", 443), false);
  });
  void it("an unparseable deny entry denies everything (fail closed); bad hosts are refused", () => {
    assert.equal(decideHost({ allow: ["a.io"], deny: ["bad host!"] }, "a.io", 443).allowed, false);
    assert.equal(decideHost(design, "a b", 443).rule, "gateway.invalid-target");
    assert.equal(decideHost(design, "api.stripe.com", 0).allowed, false);
  });
  void it("DNS and name-constraint helpers", () => {
    assert.equal(couldAllowName({ allow: ["db.x.io:5432"], deny: ["*"] }, "db.x.io"), true);
    assert.equal(couldAllowName(design, "evil.example"), false);
    assert.deepEqual(permittedDnsNames({ allow: ["a.io", "*.b.io", "10.0.0.1"], deny: [] }), ["a.io", "b.io"]);
    assert.equal(permittedDnsNames({ allow: ["*"], deny: [] }), null);
  });
});

void describe("blockedReason", () => {
  void it("refuses loopback, private, link-local, metadata, CGNAT, ULA, unspecified, multicast, mapped/compatible forms", () => {
    for (const a of ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1", "::ffff:169.254.169.254", "::ffff:10.0.0.5", "::7f00:1", "2001:db8::1"]) {
      assert.notEqual(blockedReason(a), null, a);
    }
    for (const a of ["8.8.8.8", "2606:4700::1111"]) assert.equal(blockedReason(a), null, a);
    assert.equal(blockedReason("169.254.169.254"), "cloud metadata address");
  });
});
