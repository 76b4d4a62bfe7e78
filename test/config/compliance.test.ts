// compliance.selfHostedOnly (extension, docs/routing.md): default, accepted forms, located errors.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatIssue, parseEnvironment } from "../../src/config/index.ts";

const parse = (text: string) => parseEnvironment(text, "runtime.yml");

void describe("compliance", () => {
  void it("defaults to no restriction, so files without it keep working", () => {
    const { spec } = parse("name: web\n");
    assert.deepEqual(spec?.compliance, { selfHostedOnly: false });
    assert.deepEqual(parse("name: web\ncompliance: {}\n").spec?.compliance, { selfHostedOnly: false });
  });

  void it("reads selfHostedOnly", () => {
    const { spec } = parse("name: web\nproviders: [k8s-prod, e2b]\ncompliance:\n  selfHostedOnly: true\n");
    assert.deepEqual(spec?.compliance, { selfHostedOnly: true });
    assert.deepEqual(spec?.locations["compliance.selfHostedOnly"], { line: 4, column: 3 });
  });

  void it("refuses what is not a boolean or not a known key, located", () => {
    const bad = parse("name: web\ncompliance:\n  selfHostedOnly: yes-please\n  region: eu\n");
    assert.equal(bad.spec, null);
    const lines = bad.issues.map(formatIssue);
    assert.ok(lines.some((l) => l.startsWith("runtime.yml:3:19 compliance.selfHostedOnly: ") && l.includes("true or false")), lines.join("\n"));
    assert.ok(lines.some((l) => l.startsWith("runtime.yml:4:3 compliance.region: ")), lines.join("\n"));
    const notMap = parse("name: web\ncompliance: strict\n");
    assert.ok(notMap.issues.map(formatIssue).some((l) => l.startsWith("runtime.yml:2:13 compliance: ") && l.includes("selfHostedOnly")), notMap.issues.map(formatIssue).join("\n"));
  });
});
