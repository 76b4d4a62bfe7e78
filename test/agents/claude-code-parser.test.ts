/**
 * The Claude Code adapter without a sandbox: its stream parser on lines recorded from the real CLI
 * (2.1.197, against the fake API in test/fakes/anthropic.ts; long fields such as the tool list
 * trimmed), and the files, variables and argv it asks for.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { claudeCode, claudeHookUrl } from "../../src/agents/claude-code.ts";
import type { AgentContext, AgentEvent } from "../../src/agents/index.ts";

const SID = "f7ca642b-f700-46f6-8e64-fe074c4d74c3";
const RECORDED = {
  init: `{"type":"system","subtype":"init","cwd":"/workspace","session_id":"${SID}","tools":["Task","Bash","Edit","Read","Write"],"mcp_servers":[],"model":"claude-opus-4-8[1m]","permissionMode":"bypassPermissions","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197","output_style":"default","uuid":"80b27e03-fc87-437c-bf76-77f86621ae42"}`,
  text: `{"type":"assistant","message":{"id":"msg_fake_qwlc9lk6vv","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{"type":"text","text":"Removing x."}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":120,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"context_management":null},"parent_tool_use_id":null,"session_id":"${SID}","uuid":"b39bc5db-29ec-4a3d-81e1-237872ea7c45","request_id":"req_fake"}`,
  toolUse: `{"type":"assistant","message":{"id":"msg_fake_qwlc9lk6vv","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{"type":"tool_use","id":"toolu_fake_0001","name":"Bash","input":{"command":"rm -rf /workspace/x","description":"remove x"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":120,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"context_management":null},"parent_tool_use_id":null,"session_id":"${SID}","uuid":"dbc80647-a1b3-460b-a560-ff3f8e5a35b4","request_id":"req_fake"}`,
  hookDenied: `{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"paddock: 'rm' denied by guardrails.commands.deny (runtime.yml:7)","is_error":true,"tool_use_id":"toolu_fake_0001"}]},"parent_tool_use_id":null,"session_id":"${SID}","uuid":"d7829512-33ee-48a0-8039-28745ef6cbed","timestamp":"2026-11-29T17:21:03.200Z","tool_use_result":"Error: paddock: 'rm' denied by guardrails.commands.deny (runtime.yml:7)"}`,
  ruleDenied: `{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"Permission to use Bash with command rm -rf x has been denied.","is_error":true,"tool_use_id":"toolu_fake_0001"}]},"parent_tool_use_id":null,"session_id":"${SID}","uuid":"9412f9b6-d552-46f7-94b1-97f4a17f2f81","timestamp":"2026-11-29T17:22:14.234Z","tool_use_result":"Error: Permission to use Bash with command rm -rf x has been denied."}`,
  guardEperm: `{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"Exit code 126\\n/workspace/sneaky.sh: 1: rm: Operation not permitted","is_error":true,"tool_use_id":"toolu_fake_0002"}]},"parent_tool_use_id":null,"session_id":"${SID}"}`,
  toolOk: `{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_fake_0003","type":"tool_result","content":"hi\\nout.txt\\nsneaky.sh\\nx","is_error":false}]},"parent_tool_use_id":null,"session_id":"${SID}","uuid":"8c168111-3924-44c6-b3c2-c8309fdb34a5","timestamp":"2026-11-29T17:22:14.323Z","tool_use_result":{"stdout":"hi\\nout.txt\\nsneaky.sh\\nx","stderr":"","interrupted":false,"isImage":false,"noOutputExpected":false}}`,
  result: `{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":774,"duration_api_ms":199,"num_turns":5,"result":"All done.","stop_reason":"end_turn","session_id":"${SID}","total_cost_usd":0.00895,"usage":{"input_tokens":980,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":162,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard"},"permission_denials":[{"tool_name":"Bash","tool_use_id":"toolu_fake_0001","tool_input":{"command":"rm -rf /workspace/x","description":"remove x"}}],"terminal_reason":"completed","uuid":"1211bbbe-e9a6-4272-8b1a-26208e8aea89"}`,
  apiRetry: `{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":551.848366208781,"error_status":null,"error":"unknown","session_id":"${SID}","uuid":"b214948a-da86-4c4e-8799-85d268235450"}`,
};

const parse = (lines: string[]): AgentEvent[] => {
  const p = claudeCode.parser();
  return [...lines.flatMap((l) => p.line(l)), ...p.end()];
};

void describe("Claude Code stream-json parser (recorded lines)", () => {
  void it("init → started with the session id and model", () => {
    assert.deepEqual(parse([RECORDED.init]), [{ type: "started", agentSessionId: SID, model: "claude-opus-4-8[1m]" }]);
  });

  void it("assistant text → message; tool_use → tool_call with the Bash command", () => {
    assert.deepEqual(parse([RECORDED.text, RECORDED.toolUse]), [
      { type: "message", role: "assistant", text: "Removing x." },
      { type: "tool_call", id: "toolu_fake_0001", tool: "Bash", input: { command: "rm -rf /workspace/x", description: "remove x" }, command: "rm -rf /workspace/x" },
    ]);
  });

  void it("a tool other than Bash has no command", () => {
    const line = JSON.stringify({ type: "assistant", message: { role: "assistant", content: [{ type: "tool_use", id: "t1", name: "Read", input: { file_path: "/x" } }] } });
    assert.deepEqual(parse([line]), [{ type: "tool_call", id: "t1", tool: "Read", input: { file_path: "/x" }, command: null }]);
  });

  void it("tool results: Paddock's hook denial and Claude Code's own deny rule are denied; EPERM and success are not", () => {
    assert.deepEqual(parse([RECORDED.hookDenied, RECORDED.ruleDenied, RECORDED.guardEperm, RECORDED.toolOk]), [
      { type: "tool_result", id: "toolu_fake_0001", output: "paddock: 'rm' denied by guardrails.commands.deny (runtime.yml:7)", isError: true, denied: true },
      { type: "tool_result", id: "toolu_fake_0001", output: "Permission to use Bash with command rm -rf x has been denied.", isError: true, denied: true },
      { type: "tool_result", id: "toolu_fake_0002", output: "Exit code 126\n/workspace/sneaky.sh: 1: rm: Operation not permitted", isError: true, denied: false },
      { type: "tool_result", id: "toolu_fake_0003", output: "hi\nout.txt\nsneaky.sh\nx", isError: false, denied: false },
    ]);
  });

  void it("the exec guard's line in a tool's output marks it denied; 'paddock:' mid-line or in a success does not", () => {
    const result = (content: unknown, isError: boolean) =>
      JSON.stringify({ type: "user", message: { role: "user", content: [{ type: "tool_result", tool_use_id: "t", content, is_error: isError }] } });
    const events = parse([
      result([{ type: "text", text: "Exit code 126\npaddock: 'rm' denied by guardrails.commands.deny (runtime.yml:5)\n" }], true),
      result("grep: no match for paddock: x", true),
      result("paddock: allowed", false),
    ]);
    assert.deepEqual(events.map((e) => e.type === "tool_result" && [e.isError, e.denied]), [[true, true], [true, false], [false, false]]);
  });

  void it("result → usage (cache tokens counted as input) and the final text", () => {
    assert.deepEqual(parse([RECORDED.result]), [
      { type: "usage", inputTokens: 980, outputTokens: 162, costUsd: 0.00895 },
      { type: "result", text: "All done.", isError: false },
    ]);
    const cached = JSON.stringify({ type: "result", subtype: "success", is_error: false, result: "ok", usage: { input_tokens: 3, cache_creation_input_tokens: 100, cache_read_input_tokens: 1000, output_tokens: 5 } });
    assert.deepEqual(parse([cached])[0], { type: "usage", inputTokens: 1103, outputTokens: 5, costUsd: null });
  });

  void it("an error result has isError and says what went wrong", () => {
    const line = JSON.stringify({ type: "result", subtype: "error_max_turns", is_error: true, session_id: SID, total_cost_usd: 0.1, usage: { input_tokens: 1, output_tokens: 2 }, errors: ["Reached maximum number of turns (3)"] });
    assert.deepEqual(parse([line]).at(-1), { type: "result", text: "Reached maximum number of turns (3)", isError: true });
  });

  void it("an API error reported as an assistant message becomes an error event", () => {
    const line = JSON.stringify({ type: "assistant", error: "authentication_failed", message: { role: "assistant", content: [{ type: "text", text: "Invalid API key · Fix external API key" }] } });
    assert.deepEqual(parse([line]), [{ type: "error", message: "authentication_failed: Invalid API key · Fix external API key" }]);
  });

  void it("thinking blocks are dropped; unknown lines and blocks are kept raw; blank lines are nothing", () => {
    const thinking = JSON.stringify({ type: "assistant", message: { role: "assistant", content: [{ type: "thinking", thinking: "hmm", signature: "s" }] } });
    const odd = JSON.stringify({ type: "assistant", message: { role: "assistant", content: [{ type: "server_tool_use", id: "x" }] } });
    assert.deepEqual(parse([thinking, RECORDED.apiRetry, "not json", odd, "", "[1,2]"]), [
      { type: "raw", line: RECORDED.apiRetry },
      { type: "raw", line: "not json" },
      { type: "raw", line: odd },
      { type: "raw", line: "[1,2]" },
    ]);
  });
});

const ctx: AgentContext = {
  bin: "/opt/paddock/agents/claude-code/node_modules/.bin/claude",
  home: "/home/paddock",
  cwd: "/workspace",
  caFile: "/etc/paddock/ca.pem",
  model: null,
  instructions: null,
  skills: [],
  mcp: {},
  commands: { allow: [], deny: ["rm", "/usr/bin/sudo"], ask: ["terraform"] },
  checkUrl: "http://paddock.internal/v1/check",
  endpoint: null,
};

void describe("Claude Code launch", () => {
  void it("headless stream-json, permissions skipped (Paddock enforces), the prompt after --", () => {
    const l = claudeCode.start("-rf everything", ctx);
    assert.deepEqual([l.env, l.files], [{}, []], "prepare() carries the files and variables of every turn");
    assert.deepEqual(l.argv, [ctx.bin, "-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions", "--", "-rf everything"]);
    const r = claudeCode.resume("more", SID, { ...ctx, model: "claude-sonnet-4-5" });
    assert.deepEqual(r.argv.slice(6), ["--model", "claude-sonnet-4-5", "--resume", SID, "--", "more"]);
  });

  void it("variables: the CA, no non-essential traffic, the real vendor host unless an endpoint is named", () => {
    const { env } = claudeCode.prepare(ctx);
    assert.equal(env.NODE_EXTRA_CA_CERTS, "/etc/paddock/ca.pem");
    assert.equal(env.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, "1");
    assert.equal(env.ANTHROPIC_BASE_URL, undefined);
    assert.equal(env.ANTHROPIC_API_KEY, undefined, "the key is the sandbox's placeholder, never set by the adapter");
    assert.equal(claudeCode.prepare({ ...ctx, endpoint: "https://llm-proxy.internal" }).env.ANTHROPIC_BASE_URL, "https://llm-proxy.internal");
    assert.deepEqual(claudeCode.vendor, { hosts: ["api.anthropic.com"], keyEnv: "ANTHROPIC_API_KEY" });
  });

  void it("settings: deny rules mirrored, a fail-closed PreToolUse hook on Bash calling paddock.internal", () => {
    const file = claudeCode.prepare(ctx).files.find((f) => f.path === "/home/paddock/.claude/settings.json");
    assert.ok(file);
    const s = JSON.parse(file.content) as { permissions: { deny: string[] }; hooks: { PreToolUse: { matcher: string; hooks: { type: string; command: string; timeout: number }[] }[] } };
    assert.deepEqual(s.permissions.deny, ["Bash(rm:*)", "Bash(rm)", "Bash(/usr/bin/sudo:*)", "Bash(/usr/bin/sudo)"]);
    const [entry] = s.hooks.PreToolUse;
    assert.equal(entry?.matcher, "Bash");
    const hook = entry?.hooks[0];
    assert.equal(hook?.type, "command");
    assert.match(hook?.command ?? "", /^curl -sf .*--data-binary @- http:\/\/paddock\.internal\/v1\/hooks\/claude-code \|\| \{ .* exit 2; \}$/);
    assert.equal(claudeHookUrl("http://paddock.internal/v1/hooks/claude-code"), "http://paddock.internal/v1/hooks/claude-code");
  });

  void it("instructions, skills and MCP servers go under ~/.claude, and --mcp-config names them", () => {
    const full = { ...ctx, instructions: "Be brief.", skills: [{ name: "deploy", description: "How we deploy", content: "Run make deploy." }], mcp: { db: { command: "db-mcp", args: ["--ro"], env: { A: "1" } } } };
    const { files } = claudeCode.prepare(full);
    const byPath = Object.fromEntries(files.map((f) => [f.path, f.content]));
    assert.equal(byPath["/home/paddock/.claude/CLAUDE.md"], "Be brief.\n");
    assert.equal(byPath["/home/paddock/.claude/skills/deploy/SKILL.md"], '---\nname: "deploy"\ndescription: "How we deploy"\n---\n\nRun make deploy.\n');
    assert.deepEqual(JSON.parse(byPath["/home/paddock/.claude/paddock-mcp.json"] ?? "{}"), { mcpServers: full.mcp });
    const argv = claudeCode.start("go", full).argv;
    assert.deepEqual(argv.slice(argv.indexOf("--mcp-config"), argv.indexOf("--mcp-config") + 2), ["--mcp-config", "/home/paddock/.claude/paddock-mcp.json"]);
  });
});
