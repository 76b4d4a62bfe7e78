/** git push over smart HTTP as the gateway reads it: ref updates, protected branches, the rejection report. */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { describe, it } from "node:test";
import { isProtectedRef, isReceivePack, pushedRefs, pushProblem, rejectionReport } from "../../src/gateway/push.ts";

const Z = "0".repeat(40);
const A = "a".repeat(40);
const pkt = (s: string) => (s.length + 4).toString(16).padStart(4, "0") + s;
const body = (refs: string[], caps = "report-status side-band-64k agent=git/2.39") =>
  Buffer.from(refs.map((r, i) => pkt(`${Z} ${A} ${r}${i === 0 ? `\0${caps}` : ""}\n`)).join("") + "0000" + "PACK....binary");

void describe("git push through the gateway", () => {
  void it("recognises receive-pack requests only", () => {
    assert.equal(isReceivePack("POST", "/org/repo.git/git-receive-pack"), true);
    assert.equal(isReceivePack("POST", "/org/repo.git/git-upload-pack"), false);
    assert.equal(isReceivePack("GET", "/org/repo.git/info/refs?service=git-receive-pack"), false);
  });

  void it("reads every ref update, plain or gzip, after shallow lines; anything else is unreadable (null)", () => {
    assert.deepEqual(pushedRefs(body(["refs/heads/main", "refs/tags/v1"]), ""), ["refs/heads/main", "refs/tags/v1"]);
    assert.deepEqual(pushedRefs(gzipSync(body(["refs/heads/x"])), "gzip"), ["refs/heads/x"]);
    assert.deepEqual(pushedRefs(Buffer.from(pkt(`shallow ${A}\n`) + pkt(`${Z} ${A} refs/heads/y\0report-status\n`) + "0000"), ""), ["refs/heads/y"]);
    assert.equal(pushedRefs(Buffer.from("garbage"), ""), null);
    assert.equal(pushedRefs(body(["refs/heads/main"]).subarray(0, 30), ""), null, "cut before the flush");
    assert.equal(pushedRefs(body(["refs/heads/main"]), "br"), null, "an encoding it cannot read");
    assert.equal(pushedRefs(Buffer.from(pkt("hello world\n") + "0000"), ""), null);
  });

  void it("protected patterns match branches only, with * over any text", () => {
    const p = ["main", "release/*"];
    assert.equal(isProtectedRef("refs/heads/main", p), true);
    assert.equal(isProtectedRef("refs/heads/release/2026.11", p), true);
    assert.equal(isProtectedRef("refs/heads/mainline", p), false);
    assert.equal(isProtectedRef("refs/heads/feature/main", p), false);
    assert.equal(isProtectedRef("refs/tags/main", p), false);
  });

  void it("refuses a push that touches any protected branch, and any push it cannot read", () => {
    assert.match(pushProblem(body(["refs/heads/feature", "refs/heads/main"]), "", ["main"]) ?? "", /git push to refs\/heads\/main is a deploy/);
    assert.equal(pushProblem(body(["refs/heads/feature"]), "", ["main"]), null);
    assert.match(pushProblem(Buffer.from("junk"), "", ["main"]) ?? "", /cannot read is refused/);
  });

  void it("answers in git's protocol: report-status in side-band 1, the reason in side-band 2", () => {
    const r = rejectionReport(body(["refs/heads/main"]), "", "no deploy")?.toString("latin1") ?? "";
    assert.ok(r.includes("\u0002paddock: no deploy\n"), "the reason on side-band 2 (git prints it as remote: …)");
    const report = r.indexOf("\u0001");
    assert.ok(report > 0 && r.indexOf("unpack ok\n", report) > report && r.includes("ng refs/heads/main no deploy\n"), "the report on side-band 1");
    assert.ok(r.endsWith("0000"));
    const plain = rejectionReport(body(["refs/heads/main"], "report-status"), "", "no")?.toString("latin1");
    assert.equal(plain, `${pkt("unpack ok\n")}${pkt("ng refs/heads/main no\n")}0000`);
    assert.equal(rejectionReport(Buffer.from("junk"), "", "x"), null);
  });
});
