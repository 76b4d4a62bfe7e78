/**
 * The adapters as a set: every agent the environment file may name has one, CLIs from npm carry the
 * pinned package the template installs, and hosted agents are told apart.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AGENT_NAMES, AGENT_PACKAGES, cliAgent, hostedAgent, requireAgent } from "../../src/agents/index.ts";

void describe("agent adapters", () => {
  for (const name of AGENT_NAMES) {
    void it(`${name}: one adapter, with its vendor's hosts and key, and the pinned package`, () => {
      const cli = cliAgent(name);
      const hosted = hostedAgent(name);
      assert.ok((cli === null) !== (hosted === null), "exactly one of CLI or hosted");
      const a = cli ?? hosted;
      assert.equal(a?.name, name);
      assert.ok(a && a.vendor.hosts.length > 0 && /^[A-Z_][A-Z0-9_]*$/.test(a.vendor.keyEnv));
      if (cli) assert.deepEqual(cli.package, AGENT_PACKAGES[name] ?? null, "the adapter is written against the package the template installs");
    });
  }
  void it("refuses an unknown agent, naming those that exist", () => {
    assert.throws(() => requireAgent("clippy"), /no agent "clippy": this installation runs claude-code, codex, gemini, copilot, opencode, cursor, devin/);
  });
});
