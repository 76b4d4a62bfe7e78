// The shapes of guardrail entries and secret hosts: what is accepted (and how it is normalised)
// and what is refused. Rules only judge shape; enforcement is tested in the guard and gateway.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkCommandRule, checkNetworkRule } from "../../src/config/rules.ts";

void describe("network rules", () => {
  const accepted: [string, string][] = [
    ["api.stripe.com", "api.stripe.com"],
    ["API.STRIPE.COM", "api.stripe.com"],
    ["api.stripe.com.", "api.stripe.com"],
    ["api.stripe.com:443", "api.stripe.com:443"],
    ["*.example.com", "*.example.com"],
    ["*", "*"],
    ["*:443", "*:443"],
    ["localhost", "localhost"],
    ["10.0.0.5", "10.0.0.5"],
    ["169.254.169.254:80", "169.254.169.254:80"],
    ["[::1]", "[::1]"],
    ["[::ffff:7f00:1]:5432", "[::ffff:7f00:1]:5432"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example"],
  ];
  for (const [raw, value] of accepted) {
    void it(`accepts ${JSON.stringify(raw)} as ${JSON.stringify(value)}`, () => assert.deepEqual(checkNetworkRule(raw), { ok: true, value }));
  }

  const refused: [string, RegExp][] = [
    ["", /^empty entry/],
    ["https://api.stripe.com/v1", /is a URL: write the host only, e\.g\. "api\.stripe\.com"/],
    ["api.stripe.com/v1", /has a path/],
    ["a b.com", /contains whitespace/],
    ["*.com", /covers a whole top-level domain/],
    ["api.*.com", /a wildcard may only be "\*" or a leading "\*\."/],
    ["*foo.com", /a wildcard may only be/],
    ["127.1", /neither a host name nor a dotted IPv4 address/],
    ["0177.0.0.1", /neither a host name nor a dotted IPv4 address/],
    ["2130706433", /neither a host name nor a dotted IPv4 address/],
    ["0x7f000001", /neither a host name nor a dotted IPv4 address/],
    ["256.1.1.1", /neither a host name nor a dotted IPv4 address/],
    ["::1", /write IPv6 addresses in brackets, e\.g\. "\[::1\]"/],
    ["[nope]", /not a valid bracketed IPv6 address/],
    ["a.com:0", /bad port "0": use 1 to 65535/],
    ["a.com:65536", /bad port "65536"/],
    ["a.com:http", /bad port "http"/],
    ["-a.com", /is not a host name/],
    ["a_b.com", /is not a host name/],
    [`${"a".repeat(64)}.com`, /is not a host name/],
    [`${"a.".repeat(127)}com`, /longer than a host name can be/],
  ];
  for (const [raw, message] of refused) {
    void it(`refuses ${JSON.stringify(raw.slice(0, 40))}`, () => {
      const r = checkNetworkRule(raw);
      assert.equal(r.ok, false);
      assert.match(r.ok ? "" : r.message, message);
    });
  }

  void it("refuses '*' as a secret host, but not '*.stripe.com'", () => {
    assert.deepEqual(checkNetworkRule("*", { allowAny: false }), {
      ok: false,
      message: '"*" would send the secret to any host: name the hosts it belongs to, e.g. "api.stripe.com"',
    });
    assert.deepEqual(checkNetworkRule("*:443", { allowAny: false }).ok, false);
    assert.deepEqual(checkNetworkRule("*.stripe.com", { allowAny: false }), { ok: true, value: "*.stripe.com" });
  });
});

void describe("command rules", () => {
  for (const raw of ["rm", "npm", "/usr/bin/rm", "python3.11", "docker-compose", "g++"]) {
    void it(`accepts ${JSON.stringify(raw)} unchanged`, () => assert.deepEqual(checkCommandRule(raw), { ok: true, value: raw }));
  }
  const refused: [string, string][] = [
    ["rm -rf", '"rm -rf" contains whitespace: rules name a program, not a command line (write "rm")'],
    ["", 'empty entry: write a program name such as "npm" or a path such as "/usr/bin/npm"'],
    ["  ", 'empty entry: write a program name such as "npm" or a path such as "/usr/bin/npm"'],
    ["./bin/x", '"./bin/x" is a relative path: write a program name ("rm") or an absolute path ("/usr/bin/rm")'],
    ["/usr/bin/", '"/usr/bin/" ends with "/": a rule names a program, not a directory'],
    ["r\u0000m", '"r\\u0000m" contains a control character'],
  ];
  for (const [raw, message] of refused) {
    void it(`refuses ${JSON.stringify(raw)}`, () => assert.deepEqual(checkCommandRule(raw), { ok: false, message }));
  }
});
