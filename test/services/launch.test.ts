// The launcher checks a services file before anything starts (exit 125 with the reason), so a bad
// file never reaches the agent. Run (root): node --import tsx --test test/services/launch.test.ts
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { launchSandbox } from "../../src/providers/local/launcher.ts";
import { buildNative, prepareSandbox, rootOnly, teardown } from "../native/helpers.ts";

void describe("launch --services", rootOnly, () => {
  const refused = async (text: string, message: string) => {
    const p = await prepareSandbox({ mode: "session" });
    try {
      const file = join(p.record.dir, "services");
      await writeFile(file, text, { mode: 0o600 });
      await assert.rejects(launchSandbox(buildNative(), { ...p.opts, services: file }, join(p.record.dir, "log")), (e: unknown) => {
        assert.equal((e as Error).message, `sandbox did not start: error --services ${file}: ${message}`);
        return true;
      });
    } finally {
      await teardown(p.record);
    }
  };

  void it("refuses a file it cannot use, saying which line and why", async () => {
    await refused("services 1\n", 'services file line 1: expected "paddock-services 1"');
    await refused("paddock-services 1\nservice\tdb\ncommand\tx\nuser\tpostgres\nready-port\t5432\ndepends-on\tweb\nend\n", "services file line 6: db depends on web, which is not an earlier service");
    await refused("paddock-services 1\nservice\tdb\ncommand\tx\\qy\nend\n", "services file line 3: bad escape or control character in command");
    await refused("paddock-services 1\nservice\tdb\ncommand\tx\nuser\tpostgres\nend\n", "services file line 5: service db has no ready check");
    await refused("paddock-services 1\nservice\tdb\ndata-dir\t/a/../b\n", "services file line 3: data-dir must be an absolute path without . or ..");
  });
});
