// `secrets[].kind` (issue 16): postgres secrets go to the database gateway, so HTTP-only keys beside them are errors, located.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseEnvironment } from "../../src/config/index.ts";
import { lines, problems } from "./fixtures.ts";

const secretsOf = (src: string) => {
  const r = parseEnvironment(src, "runtime.yml");
  assert.deepEqual(r.issues, []);
  return r.spec!.secrets;
};

void describe("secrets[].kind", () => {
  void it("is absent unless written; kind: postgres and kind: http load as written", () => {
    assert.deepEqual(secretsOf(lines("name: x", "secrets:", "  - DATABASE_URL", "  - { name: REPORTS_DB, kind: postgres }", "  - { name: ANALYTICS_DATABASE_URL, kind: http, hosts: [api.example.com] }")), [
      { name: "DATABASE_URL", hosts: null, in: ["header"] },
      { name: "REPORTS_DB", hosts: null, in: ["header"], kind: "postgres" },
      { name: "ANALYTICS_DATABASE_URL", hosts: ["api.example.com"], in: ["header"], kind: "http" },
    ]);
  });

  void it("refuses hosts, in and cleartext beside kind: postgres, each where it was written", () => {
    assert.deepEqual(problems(lines("name: x", "secrets:", "  - name: REPORTS_DB", "    kind: postgres", "    hosts: [db.example.com]", "    in: [header]", "    cleartext: true")), [
      "runtime.yml:5:12 secrets[0].hosts: contradicts kind: postgres: a kind: postgres secret is a database URL the database gateway uses itself, never swapped into HTTP requests; remove hosts:",
      "runtime.yml:6:9 secrets[0].in: contradicts kind: postgres: a kind: postgres secret is a database URL the database gateway uses itself, never swapped into HTTP requests; remove in:",
      "runtime.yml:7:16 secrets[0].cleartext: contradicts kind: postgres: a kind: postgres secret is a database URL the database gateway uses itself, never swapped into HTTP requests; remove cleartext:",
    ]);
  });

  void it("names the valid kinds for an unknown one", () => {
    assert.deepEqual(problems(lines("name: x", "secrets:", "  - { name: DB, kind: postgress }")), [
      'runtime.yml:3:23 secrets[0].kind: unknown secret kind "postgress" (did you mean "postgres"?); valid secret kinds: "http", "postgres"',
    ]);
  });
});
