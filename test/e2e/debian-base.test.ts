import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { testServer } from "../helpers/server.ts";
import type { PaddockClient } from "../../src/client/index.ts";

/**
 * `base: debian-12`: a minimal Debian built with mmdebstrap from Debian's packages (reachable
 * here), independent of the host; root inside a build step owns the system directories.
 */
void describe("base: debian-12", () => {
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  before(async () => {
    ({ client, cleanup } = await testServer());
  });
  after(async () => cleanup());

  void it("builds once, lets install steps change system files as root, and shows nothing of the host", { timeout: 600_000 }, async () => {
    const events: string[] = [];
    await client.environments.apply(
      "paddock.yml",
      "name: deb\nbase: debian-12\ninstall:\n  - echo 'built on debian' > /etc/paddock-motd && chmod 644 /etc/paddock-motd\n  - \"dpkg -s coreutils | grep -q 'Status: install ok installed'\"\n",
      { onEvent: (e) => events.push(String(e.type)) },
    );
    assert.ok(events.includes("done"), events.join(","));
    const s = await client.sessions.start("deb");
    const r = await client.sessions.run(s.id, {
      argv: ["sh", "-c", "cat /etc/debian_version; cat /etc/paddock-motd; ls -ld /etc/paddock-motd | cut -d' ' -f3; id -un; test -e /work/main && echo HOST-VISIBLE; echo ok"],
    });
    assert.match(r.stdout, /^12\.\d+\nbuilt on debian\nroot\npaddock\nok\n$/);
    await client.sessions.stop(s.id);
  });
});
