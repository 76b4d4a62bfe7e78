/**
 * A FAKE of Cursor's `cursor-agent` CLI, for testing Paddock's Cursor adapter where the real CLI
 * cannot run (it is not on npm and cannot be pointed at a local model endpoint). It is a Node
 * script that behaves as the documented headless interface does (see src/agents/cursor.ts for the
 * docs it follows), with the model replaced by a scenario file:
 *
 * - argv: `--print`, `--output-format stream-json`, `--force`, `--trust`, `--model M`,
 *   `--resume ID`, then `--` and the prompt; anything else is an error (exit 1), so the adapter's
 *   argv is checked too. Without `CURSOR_API_KEY` it fails like the real one (exit 1, stderr).
 * - It reads `permissions.deny` from `~/.cursor/cli-config.json` and `<cwd>/.cursor/cli.json`;
 *   a shell step whose first word a `Shell(x)` rule names is rejected without running.
 * - Other shell steps really run, through `/bin/sh -c` as the session user, so Paddock's exec
 *   guard applies to them exactly as to the real CLI's shell tool.
 * - Output: the documented stream-json events (system/init, user, assistant, tool_call
 *   started/completed with `shellToolCall`, result). `--resume` reuses the chat id and counts the
 *   turns it has seen in `~/.cursor/fake-chats/<id>.json`.
 *
 * The scenario is JSON at `$FAKE_CURSOR_SCENARIO`: `{"steps": [{"say": "text"} | {"shell": "cmd"}]}`.
 */
export const FAKE_CURSOR_AGENT_SCRIPT = String.raw`#!/usr/bin/env node
// FAKE cursor-agent for Paddock's tests (test/fakes/cursor-agent.ts). Not Cursor's CLI.
"use strict";
const { readFileSync, writeFileSync, mkdirSync } = require("node:fs");
const { spawnSync } = require("node:child_process");
const { randomUUID } = require("node:crypto");
const { homedir } = require("node:os");
const { join } = require("node:path");

const fail = (m) => { process.stderr.write("fake cursor-agent: " + m + "\n"); process.exit(1); };
const args = process.argv.slice(2);
const opts = { print: false, format: "text", force: false, trust: false, model: "fake-cursor-model", resume: null, prompt: null };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--print" || a === "-p") opts.print = true;
  else if (a === "--output-format") opts.format = args[++i];
  else if (a === "--force" || a === "-f") opts.force = true;
  else if (a === "--trust") opts.trust = true;
  else if (a === "--model") opts.model = args[++i];
  else if (a === "--resume") opts.resume = args[++i];
  else if (a === "--") { opts.prompt = args.slice(i + 1).join(" "); break; }
  else fail("unknown argument " + a);
}
if (!opts.print || opts.format !== "stream-json") fail("this fake only does --print --output-format stream-json");
if (!opts.trust) fail("workspace not trusted (pass --trust)");
if (opts.prompt === null) fail("no prompt");
if (!process.env.CURSOR_API_KEY) fail("not authenticated: set CURSOR_API_KEY or run cursor-agent login");

const readJson = (p) => { try { return JSON.parse(readFileSync(p, "utf8")); } catch { return null; } };
const deny = [readJson(join(homedir(), ".cursor/cli-config.json")), readJson(join(process.cwd(), ".cursor/cli.json"))]
  .flatMap((c) => c?.permissions?.deny ?? []);
const denied = (command) => {
  const base = command.trim().split(/\s+/)[0] ?? "";
  return deny.find((r) => r === "Shell(" + base + ")" || r === "Shell(" + base.split("/").pop() + ")") ?? null;
};

const chats = join(homedir(), ".cursor/fake-chats");
mkdirSync(chats, { recursive: true });
let id = opts.resume;
let chat = { turns: 0 };
if (id !== null) {
  chat = readJson(join(chats, id + ".json"));
  if (!chat) fail("no chat " + id);
} else id = randomUUID();
chat.turns++;
writeFileSync(join(chats, id + ".json"), JSON.stringify(chat));

const scenario = readJson(process.env.FAKE_CURSOR_SCENARIO ?? "") ?? { steps: [{ say: "(fake cursor-agent: no scenario)" }] };
const emit = (o) => process.stdout.write(JSON.stringify({ ...o, session_id: id }) + "\n");
const started = Date.now();
emit({ type: "system", subtype: "init", apiKeySource: "env", cwd: process.cwd(), model: opts.model, permissionMode: "default" });
emit({ type: "user", message: { role: "user", content: [{ type: "text", text: opts.prompt }] } });
let last = "";
let n = 0;
for (const step of scenario.steps) {
  if (typeof step.say === "string") {
    last = step.say.replace("{turn}", String(chat.turns));
    emit({ type: "assistant", message: { role: "assistant", content: [{ type: "text", text: last }] } });
    continue;
  }
  const call_id = "fake_call_" + n++;
  const shellArgs = { command: step.shell, workingDirectory: process.cwd() };
  emit({ type: "tool_call", subtype: "started", call_id, tool_call: { shellToolCall: { args: shellArgs } } });
  const rule = denied(step.shell);
  let result;
  if (rule || !opts.force) {
    result = { rejected: { command: step.shell, reason: rule ? "Denied by permissions: " + rule : "needs approval (run with --force)" } };
  } else {
    const r = spawnSync("/bin/sh", ["-c", step.shell], { encoding: "utf8" });
    const out = { stdout: r.stdout ?? "", stderr: r.stderr ?? "", exitCode: r.status ?? 128 };
    result = out.exitCode === 0 ? { success: out } : { failure: out };
  }
  emit({ type: "tool_call", subtype: "completed", call_id, tool_call: { shellToolCall: { args: shellArgs, result } } });
}
const ms = Date.now() - started;
emit({ type: "result", subtype: "success", is_error: false, duration_ms: ms, duration_api_ms: ms, result: last, request_id: "fake-request" });
`;

export interface FakeCursorScenario {
  steps: ({ say: string } | { shell: string })[];
}
