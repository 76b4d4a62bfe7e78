/** A build log stays bounded whatever sizes its output arrives in: the head and the tail are kept. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BUILD_LOG_HEAD, BUILD_LOG_TAIL, BuildLog } from "../../src/control/environments.ts";

const output = (data: string) => ({ type: "output" as const, index: 0, stream: "stdout" as const, data });

void describe("build log bounds", () => {
  for (const chunk of [16, 1000, 64 * 1024, 1024 * 1024]) {
    void it(`output in chunks of ${chunk} characters: at most head + tail, with the start and the end kept`, () => {
      const log = new BuildLog();
      log.add({ type: "version", name: "big", version: 1 });
      const total = 3 * 1024 * 1024;
      let sent = 0;
      let first = true;
      while (sent < total) {
        const n = Math.min(chunk, total - sent);
        log.add(output((first ? "START" : "") + "x".repeat(n - (first ? 5 : 0))));
        first = false;
        sent += n;
      }
      log.add(output("THE-END\n"));
      const text = log.text();
      assert.ok(text.length <= BUILD_LOG_HEAD + BUILD_LOG_TAIL + 100, `${text.length} characters`);
      assert.match(text, /^== big version 1, .*\nSTARTx/);
      assert.match(text, /… \d+ characters of output left out …/);
      assert.ok(text.endsWith("THE-END\n"));
    });
  }
  void it("a short log is kept whole", () => {
    const log = new BuildLog();
    log.add(output("hello\n"));
    assert.equal(log.text(), "hello\n");
  });
});
