/**
 * `agent:` installs the pinned agent CLI into the template as its own first layer: from the npm
 * registry through the egress gateway (the default; this test reaches the real registry, which
 * this machine can), and from a local mirror (`--agent-packages`). The layer is keyed by base and
 * package only, so a second environment on the same base reuses it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { lookup } from "node:dns/promises";
import type { PaddockClient } from "../../src/client/index.ts";
import { AGENT_PACKAGES } from "../../src/agents/index.ts";
import { testServer } from "../helpers/server.ts";

type Step = { type: string; command?: string; status?: string; index?: number };

void describe("agent install into templates (npm registry through the gateway, and the local mirror)", () => {
  let registry: { client: PaddockClient; cleanup: () => Promise<void> };
  let mirror: { client: PaddockClient; cleanup: () => Promise<void> };
  const gemini = AGENT_PACKAGES.gemini!;

  before(async () => {
    registry = await testServer({ agentPackages: "/nonexistent-agent-mirror" });
    mirror = await testServer();
  });
  after(async () => {
    await registry?.cleanup();
    await mirror?.cleanup();
  });

  const apply = async (client: PaddockClient, name: string, source: string): Promise<Step[]> => {
    const events: Step[] = [];
    await client.environments.apply(`${name}.yml`, source, { onEvent: (e) => events.push(e as Step) });
    return events;
  };

  void it("from the npm registry, through the gateway like any install step", async () => {
    // Where the registry resolves to a reserved address (a machine whose npm traffic goes through
    // an inspecting proxy), the gateway refuses it unless an allow rule names the address.
    const addresses = (await lookup("registry.npmjs.org", { all: true })).map((a) => a.address).filter((a) => !a.includes(":"));
    const allow = ["registry.npmjs.org", ...addresses].map((a) => JSON.stringify(a)).join(", ");
    const events = await apply(registry.client, "from-registry", `name: from-registry\nagent: gemini\nbuild:\n  network:\n    allow: [${allow}]\n    deny: ["*"]\n`);
    const step = events.find((e) => e.type === "step" && e.index === 0);
    assert.equal(step?.command, `agent gemini: ${gemini.npm}@${gemini.version}`);
    const s = await registry.client.sessions.start("from-registry");
    const r = await registry.client.sessions.run(s.id, { argv: ["sh", "-c", "gemini --version; command -v gemini; readlink -f $(command -v gemini)"] });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${gemini.version.replace(/\./g, "\\.")}\n/usr/local/bin/gemini\n/opt/paddock/agents/gemini/`, "m"));
    const egress = await registry.client.sessions.egress(s.id);
    assert.equal(egress.length, 0, "the session itself reached nothing: the install happened at build time");
  });

  void it("from the local mirror, with the layer shared by every environment on the base", async () => {
    const first = await apply(mirror.client, "one", "name: one\nagent: [claude-code, codex]\ninstall:\n  - echo one > /workspace/one\n");
    assert.deepEqual(first.filter((e) => e.type === "step").map((e) => [e.command, e.status]), [
      [`agent claude-code: ${AGENT_PACKAGES["claude-code"]!.npm}@${AGENT_PACKAGES["claude-code"]!.version}`, "running"],
      [`agent codex: ${AGENT_PACKAGES.codex!.npm}@${AGENT_PACKAGES.codex!.version}`, "running"],
      ["echo one > /workspace/one", "running"],
    ]);
    const second = await apply(mirror.client, "two", "name: two\nagent: claude-code\ninstall:\n  - echo two > /workspace/two\n");
    assert.deepEqual(second.filter((e) => e.type === "step").map((e) => e.status), ["cached", "running"], "the agent layer is shared");
    const s = await mirror.client.sessions.start("one");
    const r = await mirror.client.sessions.run(s.id, { argv: ["sh", "-c", "claude --version && codex --version && test ! -e /run/paddock/agent-package && echo clean"] });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${AGENT_PACKAGES["claude-code"]!.version.replace(/\./g, "\\.")} \\(Claude Code\\)\ncodex-cli ${AGENT_PACKAGES.codex!.version.replace(/\./g, "\\.")}\nclean`));
    // The sandbox cannot change the agent it runs: its files belong to the template's root.
    const w = await mirror.client.sessions.run(s.id, { argv: ["sh", "-c", "echo x >> /opt/paddock/agents/claude-code/node_modules/.bin/claude"] });
    assert.notEqual(w.exitCode, 0);
  });
});
