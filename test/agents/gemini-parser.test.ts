/**
 * The Gemini CLI adapter without a sandbox: its stream parser on lines the real 0.61.0 CLI printed
 * (recorded from the run in gemini.test.ts), and the files, variables and argv it prepares.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { gemini, policyToml } from "../../src/agents/gemini.ts";
import type { AgentContext, AgentEvent } from "../../src/agents/index.ts";

const ctx: AgentContext = {
  bin: "/opt/paddock/agents/gemini/node_modules/.bin/gemini",
  home: "/home/paddock",
  cwd: "/workspace",
  caFile: "/etc/paddock/ca.pem",
  model: null,
  instructions: "Be brief.",
  skills: [{ name: "deploy-notes", description: "How we deploy", content: "Use the pipeline." }],
  mcp: { docs: { command: "docs-mcp", args: ["--stdio"], env: { A: "1" } } },
  commands: { allow: [], deny: ["rm", "/usr/bin/shred"], ask: ["terraform"] },
  checkUrl: "http://paddock.internal/v1/check",
  endpoint: null,
};

/** Lines as 0.61.0 prints them with `-o stream-json` (timestamps shortened). */
const RECORDED = [
  '{"type":"init","timestamp":"t","session_id":"32e2f512-9c07-4276-868f-0b66dd3851cf","model":"gemini-2.5-flash"}',
  '{"type":"message","timestamp":"t","role":"user","content":"do things"}',
  '{"type":"message","timestamp":"t","role":"assistant","content":"Remov","delta":true}',
  '{"type":"message","timestamp":"t","role":"assistant","content":"ing x.","delta":true}',
  '{"type":"tool_use","timestamp":"t","tool_name":"run_shell_command","tool_id":"run_shell_command__1","parameters":{"command":"rm /workspace/x"}}',
  `{"type":"tool_result","timestamp":"t","tool_id":"run_shell_command__1","status":"error","output":"Tool execution denied by policy. paddock: 'rm' denied by guardrails.commands.deny","error":{"type":"policy_violation","message":"Tool execution denied by policy. paddock: 'rm' denied by guardrails.commands.deny"}}`,
  '{"type":"tool_use","timestamp":"t","tool_name":"read_file","tool_id":"read_file__2","parameters":{"file_path":"/workspace/a"}}',
  '{"type":"tool_result","timestamp":"t","tool_id":"read_file__2","status":"error","output":"File not found","error":{"type":"file_not_found","message":"File not found: /workspace/a"}}',
  '{"type":"tool_use","timestamp":"t","tool_name":"run_shell_command","tool_id":"run_shell_command__3","parameters":{"command":"echo hello-from-shell"}}',
  '{"type":"tool_result","timestamp":"t","tool_id":"run_shell_command__3","status":"success","output":"hello-from-shell"}',
  '{"type":"error","timestamp":"t","severity":"warning","message":"Loop detected"}',
  '{"type":"message","timestamp":"t","role":"assistant","content":"all ","delta":true}',
  '{"type":"message","timestamp":"t","role":"assistant","content":"done","delta":true}',
  '{"type":"result","timestamp":"t","status":"success","stats":{"total_tokens":440,"input_tokens":400,"output_tokens":40,"cached":0,"input":400,"duration_ms":1271,"tool_calls":3,"models":{}}}',
];

function parse(lines: string[]): AgentEvent[] {
  const p = gemini.parser();
  return [...lines.flatMap((l) => p.line(l)), ...p.end()];
}

void describe("Gemini CLI stream parser (0.61.0 stream-json)", () => {
  void it("maps a recorded run onto Paddock's events", () => {
    assert.deepEqual(parse(RECORDED), [
      { type: "started", agentSessionId: "32e2f512-9c07-4276-868f-0b66dd3851cf", model: "gemini-2.5-flash" },
      { type: "message", role: "user", text: "do things" },
      { type: "message", role: "assistant", text: "Removing x." },
      { type: "tool_call", id: "run_shell_command__1", tool: "run_shell_command", input: { command: "rm /workspace/x" }, command: "rm /workspace/x" },
      { type: "tool_result", id: "run_shell_command__1", output: "Tool execution denied by policy. paddock: 'rm' denied by guardrails.commands.deny", isError: true, denied: true },
      { type: "tool_call", id: "read_file__2", tool: "read_file", input: { file_path: "/workspace/a" }, command: null },
      { type: "tool_result", id: "read_file__2", output: "File not found: /workspace/a", isError: true, denied: false },
      { type: "tool_call", id: "run_shell_command__3", tool: "run_shell_command", input: { command: "echo hello-from-shell" }, command: "echo hello-from-shell" },
      { type: "tool_result", id: "run_shell_command__3", output: "hello-from-shell", isError: false, denied: false },
      { type: "error", message: "warning: Loop detected" },
      { type: "message", role: "assistant", text: "all done" },
      { type: "usage", inputTokens: 400, outputTokens: 40, costUsd: null },
      { type: "result", text: "all done", isError: false },
    ]);
  });

  void it("a failed run ends with an error result carrying the API's message", () => {
    const events = parse([
      '{"type":"init","timestamp":"t","session_id":"3a1cf653-c144-4c73-93ff-be227c04acba","model":"gemini-2.5-flash"}',
      '{"type":"result","timestamp":"t","status":"error","error":{"type":"unknown","message":"[API Error: quota]"},"stats":{"input_tokens":0,"output_tokens":0}}',
    ]);
    assert.deepEqual(events.at(-1), { type: "result", text: "[API Error: quota]", isError: true });
  });

  void it("keeps what it cannot map, and flushes pending text at the end", () => {
    assert.deepEqual(parse(["not json", '{"type":"future_event","x":1}', '{"type":"message","role":"assistant","content":"cut off","delta":true}']), [
      { type: "raw", line: "not json" },
      { type: "raw", line: '{"type":"future_event","x":1}' },
      { type: "message", role: "assistant", text: "cut off" },
    ]);
  });
});

void describe("Gemini CLI adapter files and argv", () => {
  void it("headless, stream-json, yolo behind the mirrored guardrails, trusted, model when named", () => {
    const l = gemini.start("-rf everything", { ...ctx, model: "gemini-2.5-pro" });
    assert.deepEqual(l.argv, [ctx.bin, "--prompt=-rf everything", "--output-format", "stream-json", "--approval-mode", "yolo", "--skip-trust", "--model", "gemini-2.5-pro"]);
    const r = gemini.resume("again", "32e2f512-9c07-4276-868f-0b66dd3851cf", ctx);
    assert.deepEqual(r.argv.slice(-2), ["--resume", "32e2f512-9c07-4276-868f-0b66dd3851cf"]);
    assert.throws(() => gemini.resume("again", "latest", ctx), /UUIDs/);
  });

  void it("settings: API-key auth, telemetry and updates off, the hook, MCP servers; the CA by variable", () => {
    const { env, files } = gemini.prepare(ctx);
    assert.equal(env.NODE_EXTRA_CA_CERTS, "/etc/paddock/ca.pem");
    assert.equal(env.GOOGLE_GEMINI_BASE_URL, undefined);
    assert.equal(gemini.prepare({ ...ctx, endpoint: "https://proxy.example" }).env.GOOGLE_GEMINI_BASE_URL, "https://proxy.example");
    const byPath = new Map(files.map((f) => [f.path, f]));
    const settings = JSON.parse(byPath.get("/home/paddock/.gemini/settings.json")!.content) as Record<string, Record<string, unknown>>;
    assert.deepEqual(settings.security, { auth: { selectedType: "gemini-api-key" } });
    assert.deepEqual(settings.privacy, { usageStatisticsEnabled: false });
    assert.equal((settings.telemetry as { enabled: boolean }).enabled, false);
    assert.deepEqual(settings.general, { enableAutoUpdate: false, enableAutoUpdateNotification: false });
    assert.deepEqual(settings.mcpServers, ctx.mcp);
    assert.match(JSON.stringify(settings.hooks), /"matcher":"\^run_shell_command\$".*"command":"node '\/home\/paddock\/\.gemini\/paddock-before-tool\.mjs'"/);
    assert.equal(byPath.get("/home/paddock/.gemini/paddock-before-tool.mjs")?.mode, 0o755);
    assert.match(byPath.get("/home/paddock/.gemini/paddock-before-tool.mjs")!.content, /"http:\/\/paddock\.internal\/v1\/check"/);
    assert.equal(byPath.get("/home/paddock/.gemini/GEMINI.md")?.content, "Be brief.\n");
    assert.match(byPath.get("/home/paddock/.gemini/skills/deploy-notes/SKILL.md")!.content, /^---\nname: "deploy-notes"\ndescription: "How we deploy"\n---\n\nUse the pipeline\.\n$/);
    assert.ok(byPath.has("/home/paddock/.gemini/policies/paddock.toml"));
    assert.throws(() => gemini.prepare({ ...ctx, skills: [{ name: "../x", description: "", content: "" }] }), /skill name/);
  });

  void it("deny rules become policy rules on run_shell_command, by name and by path; ask and allow are left to the hook", () => {
    const toml = policyToml(ctx.commands.deny);
    assert.match(toml, /commandPrefix = \["rm", "\/usr\/local\/bin\/rm", "\/usr\/bin\/rm", "\/bin\/rm", "\/usr\/sbin\/rm", "\/sbin\/rm"\]\ndecision = "deny"/);
    assert.match(toml, /commandPrefix = \["\/usr\/bin\/shred", "shred"\]/);
    assert.ok(!toml.includes("terraform"));
    assert.equal((toml.match(/\[\[rule\]\]/g) ?? []).length, 2);
  });
});
