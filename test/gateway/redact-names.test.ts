// Header names that hold a secret (issue 9): Node lower-cases response header names, so the
// gateway compares them without case and drops a header whose name holds any form of a secret.
// The same through the proxy is in redact-proxy.test.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Redactor, replacementsFor } from "../../src/gateway/redact.ts";

void describe("header names", () => {
  const secret = "ghp_REALgithubTOKENvalue00000000000002";
  const r = new Redactor(replacementsFor([{ secret, placeholder: "paddock-ph-0123456789abcdef0123456789abcdef" }]));
  void it("holding a form of a secret, in any case", () => {
    const forms = [secret.toLowerCase(), secret.toUpperCase(), Buffer.from(secret).toString("hex"), Buffer.from(`u:${secret}`).toString("base64url").toLowerCase(), "ghp%5frealgithubtokenvalue00000000000002"];
    for (const form of forms) assert.ok(r.nameLeaks(`x-${form}-y`), form);
  });
  void it("holding none", () => {
    for (const name of ["content-type", "x-request-id", "access-control-allow-credentials", "x-ghp_realgithubtokenvalue0000000000000", "strict-transport-security"]) assert.ok(!r.nameLeaks(name), name);
  });
});
