/**
 * ../shared/attacks/commands.md through the API, in real sandboxes: every line is submitted with
 * the exec API (as `sh -c LINE`, the way an agent's shell tool runs it) against `deny: [rm, sudo]`,
 * and must end with rm not having run, exit 126, and one line naming the rule and its file:line —
 * whichever layer stops it (the submission check, or the kernel's exec guard inside the sandbox).
 * Then ask/approve/deny/expire, deploy permission, agents, and the audit trail of all of it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PaddockClient } from "../../src/client/index.ts";
import { testServer } from "../helpers/server.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { until } from "../helpers/wait.ts";

// Line numbers matter: messages must point at them.
const GUARDED = `name: guarded
guardrails:
  commands:
    deny:
      - rm
      - sudo
    ask: [tar]
    askTimeout: 2s
rbac:
  engineering: [read, write, deploy]
  support: [read]
  agent: [read, write, deploy]
`;
const RM_RULE = /paddock: '(\/usr)?(\/bin\/)?rm' denied by guardrails\.commands\.deny \(runtime\.yml:5\)/;

const ALLOW_LISTED = `name: allowlisted
guardrails:
  commands:
    allow: [npm, git, docker, pytest]
    deny: [rm, sudo]
rbac:
  engineering: [read, write]
`;

/** Every line of attacks/commands.md with deny [rm, sudo]; `x` is the file rm must not remove. */
const ATTACKS: string[] = [
  "rm x", "/bin/rm x", "/usr/bin/rm x", "\\rm x", "'r''m' x", "r\\m x", '"rm" x',
  "command rm x", "env rm x", "env -i rm x", "nice rm x", "timeout 5 rm x", "nohup rm x", "setsid rm x", "stdbuf -o0 rm x",
  "ls; rm x", "ls && rm x", "false || rm x", "ls | rm x", "ls\nrm x", "(rm x)", "{ rm x; }", "ls & rm x",
  'bash -c "rm x"', "sh -c 'rm x'", "eval rm x", "$(echo rm) x", "`echo rm` x", "a=rm; $a x", "$'\\x72\\x6d' x",
  "echo x > list; xargs rm < list", "find . -name x -exec rm {} \\;", "find . -name x -exec sh -c 'rm x' \\;",
  "ln -s /bin/rm /tmp/d; /tmp/d x", "cp /bin/rm /tmp/d; /tmp/d x", "busybox rm x",
  `python3 -c 'import subprocess; subprocess.run(["rm","x"])'`, `node -e 'require("child_process").execSync("rm x")'`, `perl -e 'system("rm x")'`,
  "npm run clean", "make clean",
];

void describe("command guardrails end to end (real sandboxes, exec API)", () => {
  let server: RunningServer;
  let cleanup: () => Promise<void>;
  let admin: PaddockClient;
  const as: Record<string, PaddockClient> = {};
  let session: string;

  before(async () => {
    const t = await testServer();
    server = t.server;
    cleanup = t.cleanup;
    admin = t.client;
    for (const [name, role, kind] of [["eng", "engineering", "human"], ["eng2", "engineering", "human"], ["sup", "support", "human"], ["bot", "agent", "agent"]] as const) {
      as[name] = new PaddockClient({ url: server.url, token: (await admin.principals.create({ name, role, kind })).token });
    }
    await admin.environments.apply("runtime.yml", GUARDED);
    await admin.environments.apply("runtime.yml", ALLOW_LISTED);
    session = (await as.eng!.sessions.start("guarded")).id;
    await admin.files.write(session, "/workspace/package.json", Buffer.from(JSON.stringify({ name: "p", scripts: { clean: "rm -rf dist x" } })));
    await admin.files.write(session, "/workspace/Makefile", Buffer.from("clean:\n\trm -f x\n"));
  });
  after(async () => cleanup());

  const fresh = async () => {
    await admin.files.write(session, "/workspace/x", Buffer.from("precious"));
  };
  const xExists = async () => (await admin.files.list(session, "/workspace")).some((f) => f.name === "x");

  for (const line of ATTACKS) {
    void it(`denies: ${line.replace(/\n/g, "⏎")}`, async () => {
      await fresh();
      const r = await as.eng!.sessions.run(session, { argv: ["sh", "-c", line] });
      assert.ok(await xExists(), `x was removed by: ${line}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, RM_RULE, `stderr of ${line}: ${r.stderr}`);
      assert.notEqual(r.exitCode, 0, `exit of ${line}`);
    });
  }

  // The same lines from inside the sandbox, where the submission check cannot see them: written to
  // a script that bash runs. Only the kernel's exec guard stands between them and rm.
  for (const line of ATTACKS) {
    void it(`denies from inside the sandbox: ${line.replace(/\n/g, "⏎")}`, async () => {
      await fresh();
      await admin.files.write(session, "/workspace/attack.sh", Buffer.from(line + "\n"));
      const r = await as.eng!.sessions.run(session, { argv: ["bash", "attack.sh"] });
      assert.ok(await xExists(), `x was removed by: ${line}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /paddock: '(rm|busybox)' denied\b.*guardrails\.commands\.deny/, `stderr of ${line}: ${r.stderr}`);
      // The exit status is the starting program's own: a shell reports 126, but find -exec and
      // perl's system() note the failure and carry on, so only "rm did not run" is universal.
      if (/^(rm|\/|\\|'|"|command|env|nice|timeout|nohup|setsid|stdbuf|\(|\{|bash|sh|eval)/.test(line)) assert.equal(r.exitCode, 126, line);
    });
  }

  void it("denies sudo and su; setuid programs gain nothing", async () => {
    const sudo = await as.eng!.sessions.run(session, { argv: ["sh", "-c", "sudo ls"] });
    assert.equal(sudo.exitCode, 126);
    assert.match(sudo.stderr, /'sudo' denied by guardrails\.commands\.deny \(runtime\.yml:6\)/);
    const su = await as.eng!.sessions.run(session, { argv: ["sh", "-c", "su -c id root; id -u"] });
    assert.match(su.stdout, /^1000\n?$|\n1000\n?$/m, su.stdout + su.stderr);
    assert.doesNotMatch(su.stdout, /uid=0/);
  });

  void it("lets allowed commands run, including ones that only mention rm", async () => {
    const r = await as.eng!.sessions.run(session, { argv: ["sh", "-c", "echo rm; ls / >/dev/null; grep -c rm /workspace/Makefile"] });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, "rm\n1\n");
  });

  void it("an allow list governs what may be started; basic read-only tools stay available", async () => {
    const s = (await as.eng!.sessions.start("allowlisted")).id;
    const curl = await as.eng!.sessions.run(s, { argv: ["sh", "-c", "python3 -c 'print(1)'"] });
    assert.equal(curl.exitCode, 126);
    assert.match(curl.stderr, /'(sh|python3)' is not in guardrails\.commands\.allow \(runtime\.yml:\d+\)/);
    const ls = await as.eng!.sessions.run(s, { argv: ["ls", "/"] });
    assert.equal(ls.exitCode, 0, ls.stderr);
    const git = await as.eng!.sessions.run(s, { argv: ["git", "--version"] });
    assert.equal(git.exitCode, 0, git.stderr);
  });

  void it("ask: the command waits; the requester cannot approve it; another engineer can, and it runs", async () => {
    const pending = as.eng!.sessions.run(session, { argv: ["tar", "--version"] });
    const approval = await waitForPending(admin, session);
    assert.deepEqual(approval.argv, ["tar", "--version"]);
    await assert.rejects(as.eng!.approvals.approve(approval.id), /another person/);
    await assert.rejects(as.sup!.approvals.approve(approval.id), /write on environment "guarded" is needed/);
    await assert.rejects(as.bot!.approvals.approve(approval.id), /only a person/);
    await as.eng2!.approvals.approve(approval.id, "looks fine");
    const r = await pending;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /tar/);
  });

  void it("ask: a denial exits 126 with who denied it and why; silence expires as a denial", async () => {
    const pending = as.eng!.sessions.run(session, { argv: ["tar", "--version"] });
    const approval = await waitForPending(admin, session);
    await as.eng2!.approvals.deny(approval.id, "not today");
    const denied = await pending;
    assert.equal(denied.exitCode, 126);
    assert.match(denied.stderr, /'tar' was not approved \(denied by eng2: not today/);
    const expired = await as.eng!.sessions.run(session, { argv: ["tar", "--version"] });
    assert.equal(expired.exitCode, 126);
    assert.match(expired.stderr, /expired: no answer within 2s \(guardrails\.commands\.askTimeout\)/);
  });

  void it("deploying needs the deploy permission, and agents may not deploy unless the environment says so", async () => {
    const eng = await as.eng!.sessions.run(session, { argv: ["git", "push", "origin", "main"] });
    assert.notEqual(eng.exitCode, 126, "an engineer may push to main (git itself then fails: no repository)");
    assert.doesNotMatch(eng.stderr, /paddock:/);
    const bot = await as.bot!.sessions.run(session, { argv: ["git", "push", "origin", "main"] });
    assert.equal(bot.exitCode, 126);
    assert.match(bot.stderr, /agents may not deploy in this environment \(guardrails\.commands\.agentsMayDeploy is false\)/);
    const feature = await as.bot!.sessions.run(session, { argv: ["git", "push", "origin", "feature/x"] });
    assert.notEqual(feature.exitCode, 126, "a feature branch is not a deploy");
    await assert.rejects(as.sup!.sessions.run(session, { argv: ["true"] }), /write on environment "guarded" is needed/);
  });

  void it("agent tool calls: paddock.internal checks them from inside the sandbox, through the proxy or directly", async () => {
    const s = (await as.bot!.sessions.start("guarded", { onBehalfOf: "eng" })).id;
    const curl = async (path: string, body?: unknown, direct = false) => {
      const data = body === undefined ? "" : `-H 'content-type: application/json' --data-binary @- `;
      const r = await as.bot!.sessions.run(s, {
        argv: ["sh", "-c", `curl -sS ${direct ? "--noproxy '*' " : ""}${data}http://paddock.internal${path}`],
        ...(body === undefined ? {} : { stdin: Buffer.from(JSON.stringify(body)) }),
      });
      assert.equal(r.exitCode, 0, r.stderr);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    assert.deepEqual(await curl("/v1/whoami"), { session: s, environment: "guarded", principal: "bot", kind: "agent", onBehalfOf: "eng" });
    assert.deepEqual(await curl("/v1/whoami", undefined, true), await curl("/v1/whoami"), "the same answer without the proxy (DNS → gateway)");
    assert.deepEqual(await curl("/v1/check", { command: "ls -la" }), { allowed: true });
    const rm = await curl("/v1/check", { command: "ls; \\rm x" });
    assert.equal(rm.allowed, false);
    assert.match(String(rm.message), RM_RULE);
    const hook = await curl("/v1/hooks/claude-code", { tool_name: "Bash", tool_input: { command: "git push origin main" } });
    assert.deepEqual(Object.keys(hook), ["hookSpecificOutput"]);
    const out = hook.hookSpecificOutput as { hookEventName: string; permissionDecision: string; permissionDecisionReason: string };
    assert.equal(out.hookEventName, "PreToolUse");
    assert.equal(out.permissionDecision, "deny");
    assert.match(out.permissionDecisionReason, /agents may not deploy in this environment/);
    assert.deepEqual(await curl("/v1/hooks/claude-code", { tool_name: "Read", tool_input: { file_path: "/etc/passwd" } }), {});
    const allowed = await curl("/v1/hooks/claude-code", { tool_name: "Bash", tool_input: { command: "npm test" } });
    assert.equal((allowed.hookSpecificOutput as { permissionDecision: string }).permissionDecision, "allow");
    // ask: the tool call waits for a person, like an exec does.
    const waiting = curl("/v1/check", { command: "tar --version" });
    const approval = await waitForPending(admin, s);
    assert.equal(approval.requestedBy, "bot");
    await as.eng!.approvals.approve(approval.id);
    assert.deepEqual(await waiting, { allowed: true }, "eng may approve what her agent asked for");
    const tls = await as.bot!.sessions.run(s, { argv: ["sh", "-c", "curl -sS -o /dev/null -w '%{http_code}' https://paddock.internal/v1/whoami"] });
    assert.notEqual(tls.stdout, "200", "paddock.internal is plain HTTP only");
    const calls = (await admin.audit.list({ session: s, limit: 5000 })).filter((r) => r.action === "toolcall");
    assert.ok(calls.some((r) => r.decision === "denied" && r.actor === "bot" && r.onBehalfOf === "eng"));
    assert.ok(calls.some((r) => r.decision === "allowed"));
    await admin.sessions.remove(s);
  });

  void it("every decision is in the audit log, and the chain verifies", async () => {
    const records = await admin.audit.list({ session, limit: 5000 });
    const execs = records.filter((r) => r.action === "exec");
    assert.ok(execs.some((r) => r.decision === "denied" && r.rule?.startsWith("guardrails.commands.deny[0] (runtime.yml:5)")));
    assert.ok(execs.some((r) => r.decision === "allowed" && r.actor === "eng"));
    assert.ok(execs.some((r) => r.decision === "denied" && r.actor === "bot" && r.onBehalfOf === "eng" && r.rule === "rbac: deploy"));
    assert.ok(records.some((r) => r.action === "guard.exec" && r.decision === "denied"), "in-sandbox denials are audited");
    for (const a of ["approval.request", "approval.approve", "approval.deny", "approval.expire"]) assert.ok(records.some((r) => r.action === a), a);
    const v = await admin.audit.verify();
    assert.equal(v.ok, true, JSON.stringify(v.problems));
  });
});

async function waitForPending(c: PaddockClient, session: string) {
  // Readiness, not a sleep: poll the API until the request is recorded.
  return until(async () => (await c.approvals.list({ state: "pending", session }))[0] ?? null, 30_000, `a pending approval for session ${session}`);
}
