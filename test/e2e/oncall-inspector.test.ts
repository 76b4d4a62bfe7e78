/**
 * The on-call inspector (examples/oncall-inspector) end to end, with its runtime.yml applied
 * unchanged: a signed PagerDuty v3 webhook starts the REAL Claude Code CLI in a real session,
 * driven by a SCRIPTED fake model (test/fakes/anthropic.ts) whose Bash tool calls the CLI really
 * executes, against local FAKES of PagerDuty, Sentry and GitHub with a real git smart-HTTP server
 * (test/fakes/oncall.ts), all behind the egress gateway. The agent finds the Sentry issue from the
 * incident's alert, reads the stack trace, clones the repository, runs its tests, writes a failing
 * test, pushes a branch, opens a pull request and notes it on the incident; its push to main and
 * its deploy command are refused, and no real token ever reaches the sandbox or the transcript.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { PaddockClient } from "../../src/client/index.ts";
import type { Run, RunEvent } from "../../src/core/index.ts";
import { runCommand } from "../../src/core/index.ts";
import { installationScope } from "../../src/providers/local/index.ts";
import { repoRoot, testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { FAKE_ANTHROPIC_ADDRESS, FAKE_ANTHROPIC_NAMES, fakeToolResults, startFakeAnthropic, type FakeAnthropic, type FakeReply, type FakeRequest, type FakeTurn } from "../fakes/anthropic.ts";
import { FAKE_ONCALL_ADDRESS, FAKE_ONCALL_NAMES, fakeOncallGet, shopCheckoutScenario, startFakeOncall, type FakeOncall, type FakeOncallScenario } from "../fakes/oncall.ts";

const EXAMPLE = join(repoRoot, "examples", "oncall-inspector");
const ENV = "oncall-inspector";
const TRIGGER = "pagerduty-incident";
const TOKENS = {
  anthropic: "sk-ant-api03-OncallRealKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP-CCCCCCCC",
  github: "ghp_OncallRealGithubToken0123456789abcdefXY",
  sentry: "sntrys_OncallRealSentryAuthToken0123456789abcdef",
  pagerduty: "u+OncallRealPdKey0123456789",
};
const REAL = Object.values(TOKENS);
const WEBHOOK_SECRET = "pd_whsec_OncallRealSigningSecret0123456789abcdef";
const BRANCH = "oncall/incident-1042";
const TEST_FILE = "test/oncall-incident-1042.test.js";
const TEST_SOURCE = `import { test } from "node:test";
import assert from "node:assert/strict";
import { cartTotal } from "../src/cart.js";

// PagerDuty incident #1042, Sentry issue 4711: POST /api/checkout with a discount code that was
// never published threw TypeError in discountFor (src/discounts.js), called from cartTotal.
test("an unknown discount code is ignored, not a crash (incident #1042)", () => {
  assert.equal(cartTotal([{ price: 1999, qty: 2 }], "SPRING24"), 3998);
});
`;

const bash = (command: string, description: string): FakeReply => ({ tools: [{ name: "Bash", input: { command, description, timeout: 120_000 } }] });
/** The previous tool call's output, as the model sees it. */
const lastOutput = (req: FakeRequest): string => fakeToolResults(req).map((r) => r.text).join("\n");
/** A scripted turn that only goes on when the previous result is what it expects; otherwise the model stops, saying why. */
const expecting = (what: RegExp, next: (req: FakeRequest, m: RegExpExecArray) => FakeReply): FakeTurn => (req) => {
  const out = lastOutput(req);
  const m = what.exec(out);
  return m ? next(req, m) : { text: `STOP: expected ${what} in the last tool result, got: ${out.slice(0, 2000)}` };
};

/** What the on-call inspector does, turn by turn: every command really runs in the sandbox. */
function inspectorScript(): FakeTurn[] {
  let incident = "";
  let prUrl = "";
  return [
    (req) => {
      const m = /incident #(\d+) \(id ([A-Z0-9]+)\)/.exec(JSON.stringify(req.json?.messages ?? []));
      if (!m?.[2]) return { text: "STOP: no incident in the prompt" };
      incident = m[2];
      return bash(`curl -sS https://api.pagerduty.com/incidents/${incident}/alerts -H "Authorization: Token token=$PAGERDUTY_API_KEY" -H "Accept: application/vnd.pagerduty+json;version=2"`, "List the incident's alerts");
    },
    expecting(/sentry\.io\/issues\/(\d+)\//, (_req, m) =>
      bash(`curl -sS https://sentry.io/api/0/issues/${m[1]}/ -H "Authorization: Bearer $SENTRY_AUTH_TOKEN"; echo; curl -sS https://sentry.io/api/0/issues/${m[1]}/events/latest/ -H "Authorization: Bearer $SENTRY_AUTH_TOKEN"`, "Read the Sentry issue and its latest event")),
    expecting(/"function":"discountFor"/, () =>
      bash('git clone -q "https://x-access-token:$GITHUB_TOKEN@github.com/acme/shop-checkout.git" /workspace/repo && cd /workspace/repo && git log --oneline -1 && node --test 2>&1 | tail -8', "Clone the repository and run its tests")),
    expecting(/# pass 2\n# fail 0/, () =>
      bash(`cd /workspace/repo && cat > ${TEST_FILE} <<'EOF'\n${TEST_SOURCE}EOF\nnode --test ${TEST_FILE} 2>&1 | head -30`, "Write the reproduction and run it")),
    expecting(/not ok 1 - an unknown discount code[\s\S]*Cannot read properties of undefined \(reading 'rate'\)/, () =>
      bash(
        `cd /workspace/repo && git checkout -q -b ${BRANCH} && git add ${TEST_FILE} && ` +
          `git -c user.name="Paddock on-call inspector" -c user.email=oncall-inspector@example.com commit -q -m "test: reproduce incident #1042 (an unknown discount code crashes checkout)" && ` +
          `git push origin ${BRANCH} 2>&1`,
        "Commit the failing test on a branch and push it",
      )),
    expecting(/\* \[new branch\]\s+oncall\/incident-1042 -> oncall\/incident-1042/, () => {
      const pr = {
        title: "Reproduce incident #1042: an unknown discount code crashes checkout",
        head: BRANCH,
        base: "main",
        draft: true,
        body: `PagerDuty incident #1042 / Sentry issue 4711: \`TypeError: Cannot read properties of undefined (reading 'rate')\` in \`discountFor\` (src/discounts.js), from \`cartTotal\`.\n\nAdds a failing test: \`node --test ${TEST_FILE}\`. No fix yet.`,
      };
      return bash(`cat > /tmp/pr.json <<'EOF'\n${JSON.stringify(pr)}\nEOF\ncurl -sS -X POST https://api.github.com/repos/acme/shop-checkout/pulls -H "Authorization: Bearer $GITHUB_TOKEN" -H "Accept: application/vnd.github+json" -H "X-GitHub-Api-Version: 2022-11-28" -d @/tmp/pr.json`, "Open a draft pull request");
    }),
    expecting(/"html_url":"(https:\/\/github\.com\/acme\/shop-checkout\/pull\/\d+)"/, (_req, m) => {
      prUrl = m[1] ?? "";
      const note = JSON.stringify({ note: { content: `Reproduced: an unpublished discount code (SPRING24) makes discountFor (src/discounts.js) read .rate of undefined. Failing test in draft PR ${prUrl} (branch ${BRANCH}). Nothing deployed.` } });
      return bash(`curl -sS -X POST https://api.pagerduty.com/incidents/${incident}/notes -H "Authorization: Token token=$PAGERDUTY_API_KEY" -H "From: oncall-inspector@example.com" -H "Content-Type: application/json" -H "Accept: application/vnd.pagerduty+json;version=2" -d '${note}'`, "Note the PR on the incident");
    }),
    // What an over-eager agent might try next: both refused when submitted (the hook asks Paddock).
    expecting(/"note":\{"id":"PNOTE1"/, () => bash("cd /workspace/repo && git push origin HEAD:main", "Ship the branch to main")),
    () => bash("kubectl apply -f k8s/checkout.yaml", "Deploy checkout"),
    // The same push hidden in a script the submission check cannot read: the gateway refuses it.
    () => bash("cd /workspace/repo && printf 'git push origin HEAD:main\\n' > /tmp/ship.sh && sh /tmp/ship.sh", "Ship via a script"),
    () => ({ text: `Incident #1042: an unknown discount code crashes checkout in discountFor. Failing test ${TEST_FILE} on ${BRANCH}, draft PR ${prUrl}, noted on the incident. Pushing to main and deploying were refused.`, usage: { input_tokens: 900, output_tokens: 60 } }),
  ];
}

/** PagerDuty v3 webhook: the incident.triggered payload, signed as PagerDuty signs it. */
function pagerdutyDelivery(s: FakeOncallScenario, secret: string): { body: string; headers: Record<string, string> } {
  const inc = s.incident;
  const service = { id: inc.serviceId, type: "service_reference", summary: inc.serviceName, self: `https://api.pagerduty.com/services/${inc.serviceId}`, html_url: `https://acme.pagerduty.com/service-directory/${inc.serviceId}` };
  const body = JSON.stringify({
    event: {
      id: "01DEN3GSF0RIO7VLSP2TQNOHZQ", event_type: "incident.triggered", resource_type: "incident", occurred_at: new Date().toISOString(),
      agent: service, client: { name: "Sentry" },
      data: {
        id: inc.id, type: "incident", self: `https://api.pagerduty.com/incidents/${inc.id}`, html_url: `https://acme.pagerduty.com/incidents/${inc.id}`,
        number: inc.number, status: "triggered", incident_key: String(s.sentryIssue.shortId), created_at: new Date().toISOString(), title: inc.title,
        service, assignees: [{ id: "PONCALL", type: "user_reference", summary: "On-call engineer" }], escalation_policy: { id: "PESC", type: "escalation_policy_reference", summary: "Checkout" },
        teams: [], priority: null, urgency: "high", conference_bridge: null, resolve_reason: null,
      },
    },
  });
  const sig = createHmac("sha256", secret).update(body).digest("hex");
  return { body, headers: { "content-type": "application/json", "x-pagerduty-signature": `v1=${sig}`, "x-webhook-id": randomUUID(), "user-agent": "PagerDuty-Webhook/V3.0" } };
}

void describe("on-call inspector example: PagerDuty → Claude Code → Sentry, git, GitHub PR, PagerDuty note (local fakes)", () => {
  let anthropic: FakeAnthropic | undefined;
  let fakes: FakeOncall | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  let client: PaddockClient;
  let url: string;
  let home: string;
  let scenario: FakeOncallScenario;
  let mainBefore: string;
  let delivery: { body: string; headers: Record<string, string> };
  let run: Run;
  let transcript: RunEvent[];
  let live: RunEvent[];
  const hook = (d: { body: string; headers: Record<string, string> }) => fetch(`${url}/v1/hooks/${ENV}/${TRIGGER}`, { method: "POST", headers: d.headers, body: d.body });

  before(async () => {
    scenario = await shopCheckoutScenario(join(EXAMPLE, "fixture-repo"));
    fakes = await startFakeOncall({ scenario, tokens: TOKENS });
    anthropic = await startFakeAnthropic({ address: FAKE_ANTHROPIC_ADDRESS, port: 443 });
    const names = [...FAKE_ANTHROPIC_NAMES.map((n): [string, string[]] => [n, [FAKE_ANTHROPIC_ADDRESS]]), ...FAKE_ONCALL_NAMES.map((n): [string, string[]] => [n, [FAKE_ONCALL_ADDRESS]])];
    const t = await testServer({
      gateway: { upstream: { extraCaPem: [anthropic.caPem, fakes.caPem], hosts: Object.fromEntries(names), trustedAddresses: [FAKE_ANTHROPIC_ADDRESS, FAKE_ONCALL_ADDRESS] } },
    });
    ({ client, cleanup, home } = t);
    url = t.server.url;
    mainBefore = (await runCommand(["git", "-C", fakes.bareRepo, "rev-parse", "refs/heads/main"])).stdout.trim();
    await client.secrets.set("ANTHROPIC_API_KEY", TOKENS.anthropic);
    await client.secrets.set("GITHUB_TOKEN", TOKENS.github);
    await client.secrets.set("SENTRY_AUTH_TOKEN", TOKENS.sentry);
    await client.secrets.set("PAGERDUTY_API_KEY", TOKENS.pagerduty);
    await client.secrets.set("PAGERDUTY_WEBHOOK_SECRET", WEBHOOK_SECRET, { environment: ENV });
    await client.principals.create({ name: "oncall", role: "oncall" });
    // The example's file as shipped: nothing substituted.
    await client.environments.apply("runtime.yml", await readFile(join(EXAMPLE, "runtime.yml"), "utf8"));
    anthropic.script(inspectorScript());

    delivery = pagerdutyDelivery(scenario, WEBHOOK_SECRET);
    const res = await hook(delivery);
    const answer = (await res.json()) as { run?: string; error?: unknown };
    assert.equal(res.status, 202, JSON.stringify(answer));
    assert.ok(answer.run);
    // Follow the run live until its turn is over (bounded: a stuck agent fails the file, it does not hang it).
    live = [];
    for await (const e of client.runs.follow(answer.run, 0, AbortSignal.timeout(150_000))) live.push(e);
    run = await client.runs.get(answer.run);
    transcript = await client.runs.events(run.id);
  });

  after(async () => {
    await cleanup?.();
    await anthropic?.close();
    await fakes?.close();
  });

  const toolResultOf = (command: RegExp) => {
    const call = transcript.find((e) => e.event.type === "tool_call" && command.test(String(e.event.command)));
    assert.ok(call, `a tool call matching ${command} in ${JSON.stringify(transcript.filter((e) => e.event.type === "tool_call").map((e) => e.event.command))}`);
    const result = transcript.find((e) => e.event.type === "tool_result" && e.event.id === call.event.id);
    assert.ok(result, `the result of ${command}`);
    return result.event as unknown as { output: string; isError: boolean; denied: boolean };
  };

  void it("the signed incident.triggered webhook starts exactly one run, acting for oncall; replays start none", async () => {
    assert.equal(run.state, "idle", `${JSON.stringify(run)}\n${transcript.map((e) => JSON.stringify(e.event)).join("\n").slice(-6000)}`);
    assert.deepEqual(live.map((e) => e.seq), transcript.map((e) => e.seq), "the live stream is the stored transcript");
    assert.equal(run.startedBy, "oncall");
    assert.equal(run.agent, "claude-code");
    assert.equal(run.trigger?.name, TRIGGER);
    assert.equal(run.trigger?.source, "pagerduty");
    assert.match(run.prompt, /PagerDuty incident #1042 \(id Q2K7HV8M4ZC1XP\) on service "Shop checkout", urgency high:\n"TypeError: Cannot read properties of undefined \(reading 'rate'\)"/);
    const again = await hook(delivery);
    assert.equal(again.status, 200);
    assert.deepEqual(await again.json(), { duplicate: true, run: null });
    const underNewId = await hook({ body: delivery.body, headers: { ...delivery.headers, "x-webhook-id": randomUUID() } });
    assert.equal(underNewId.status, 200, "the same signed bytes under another delivery id are a replay");
    const forged = await hook({ body: delivery.body.replace("incident.triggered", "incident.triggered "), headers: { ...delivery.headers, "x-webhook-id": randomUUID() } });
    assert.equal(forged.status, 401);
    const runs = await client.runs.list({ environment: ENV });
    assert.deepEqual(runs.map((r) => r.id), [run.id]);
    const audit = await client.audit.list({ environment: ENV });
    assert.ok(audit.some((r) => r.action === "run.start" && r.onBehalfOf === null && r.actor === "oncall"), JSON.stringify(audit.filter((r) => r.action === "run.start")));
    assert.equal(audit.filter((r) => r.action === "webhook.receive" && (r.detail as { outcome?: string }).outcome === "duplicate").length, 2);
  });

  void it("the agent read the stack trace from the fake Sentry and the alert from the fake PagerDuty, with the real tokens", () => {
    const got = fakes?.received ?? [];
    const to = (host: string) => got.filter((r) => r.host === host);
    assert.deepEqual(to("sentry.io").map((r) => [r.url, r.status, r.headers.authorization]), [
      ["/api/0/issues/4711/", 200, `Bearer ${TOKENS.sentry}`],
      ["/api/0/issues/4711/events/latest/", 200, `Bearer ${TOKENS.sentry}`],
    ]);
    assert.ok(to("api.pagerduty.com").every((r) => r.headers.authorization === `Token token=${TOKENS.pagerduty}`));
    assert.deepEqual(fakes?.unauthorized.map((r) => `${r.host}${r.url} ${r.status}`), [], "no request reached a fake with a placeholder or without its token");
    // What the model saw: the stack trace with its frames, and placeholders, never a token.
    assert.match(toolResultOf(/events\/latest/).output, /"function":"discountFor","lineNo":11/);
  });

  void it("the branch holds a failing test that reproduces the production error; main is unchanged", async () => {
    assert.ok(fakes);
    const bare = fakes.bareRepo;
    assert.equal((await runCommand(["git", "-C", bare, "rev-parse", "refs/heads/main"])).stdout.trim(), mainBefore, "main did not move");
    const files = await runCommand(["git", "-C", bare, "diff", "--name-only", "main", BRANCH]);
    assert.equal(files.stdout, `${TEST_FILE}\n`, "the branch adds the test and nothing else");
    assert.equal((await runCommand(["git", "-C", bare, "show", `${BRANCH}:${TEST_FILE}`])).stdout, TEST_SOURCE);
    const dir = await tempDir("paddock-oncall-checkout-");
    try {
      await runCommand(["git", "clone", "-q", "-b", BRANCH, bare, dir.path]);
      // A clean environment: inside node:test, a child `node --test` would see NODE_TEST_CONTEXT and skip its files.
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NODE_TEST_CONTEXT"));
      const failing = await runCommand(["node", "--test", TEST_FILE], { cwd: dir.path, env, allowFailure: true });
      assert.equal(failing.code, 1, failing.stdout + failing.stderr);
      assert.match(failing.stdout, /not ok 1 - an unknown discount code is ignored, not a crash/);
      assert.match(failing.stdout, /error: "Cannot read properties of undefined \(reading 'rate'\)"\n\s+code: 'ERR_TEST_FAILURE'\n\s+name: 'TypeError'\n\s+stack: \|-\n\s+discountFor \(\S+\/src\/discounts\.js:11:19\)/);
      await runCommand(["git", "checkout", "-q", "main"], { cwd: dir.path });
      const suite = await runCommand(["node", "--test"], { cwd: dir.path, env, allowFailure: true });
      assert.equal(suite.code, 0, `main's own suite still passes: ${suite.stdout}`);
    } finally {
      await dir.remove();
    }
    // The environment's checks judged the same: committed on a branch, and the new test fails.
    assert.deepEqual(run.result?.checks.map((c) => [c.name, c.passed]), [["reproduction committed on a branch", true], ["the new test reproduces the bug", true]]);
  });

  void it("the pull request is open on the fake GitHub from the branch, and the incident has a note linking it, posted with the real key", async () => {
    assert.equal(fakes?.pulls.length, 1);
    const pr = fakes?.pulls[0];
    assert.equal(pr?.head, BRANCH);
    assert.equal(pr?.base, "main");
    assert.equal(pr?.draft, true);
    assert.equal(pr?.authorization, `Bearer ${TOKENS.github}`);
    assert.ok(fakes);
    const got = await fakeOncallGet(fakes, "api.github.com", "/repos/acme/shop-checkout/pulls/1", { authorization: `Bearer ${TOKENS.github}`, accept: "application/vnd.github+json" });
    assert.equal(got.status, 200);
    const shown = got.json as { state: string; head: { ref: string; sha: string }; base: { ref: string }; html_url: string };
    assert.deepEqual([shown.state, shown.head.ref, shown.base.ref, shown.html_url], ["open", BRANCH, "main", pr?.htmlUrl]);
    assert.equal(shown.head.sha, (await runCommand(["git", "-C", fakes.bareRepo, "rev-parse", `refs/heads/${BRANCH}`])).stdout.trim());
    assert.equal(fakes?.notes.length, 1);
    const note = fakes?.notes[0];
    assert.equal(note?.incident, scenario.incident.id);
    assert.equal(note?.authorization, `Token token=${TOKENS.pagerduty}`);
    assert.equal(note?.from, "oncall-inspector@example.com");
    assert.ok(note?.content.includes(pr?.htmlUrl ?? "?"), note?.content);
    assert.match(run.result?.summary ?? "", /draft PR https:\/\/github\.com\/acme\/shop-checkout\/pull\/1/);
  });

  void it("the push to main and the deploy command are refused: denied tool results, denied audit records, and the gateway holds a hidden push", async () => {
    // Claude Code drops a leading `cd <its working directory> &&` from the commands it reports.
    const push = toolResultOf(/^(cd \/workspace\/repo && )?git push origin HEAD:main$/);
    assert.equal(push.denied, true, JSON.stringify(push));
    assert.match(push.output, /paddock: 'git push' deploys, and agents may not deploy in this environment/);
    const deploy = toolResultOf(/^kubectl apply/);
    assert.equal(deploy.denied, true, JSON.stringify(deploy));
    assert.match(deploy.output, /paddock: 'kubectl apply' deploys, and agents may not deploy/);
    // The model saw both refusals as tool errors.
    const errors = (anthropic?.turns ?? []).flatMap((r) => fakeToolResults(r)).filter((r) => r.isError).map((r) => r.text);
    assert.equal(errors.filter((t) => /paddock: '.*' deploys/.test(t)).length, 2, errors.join("\n---\n"));
    const audit = await client.audit.list({ session: run.sessionId ?? "" });
    const refused = audit.filter((r) => r.action === "toolcall" && r.decision === "denied");
    const summary = refused.map((r) => [r.rule, r.actor, r.onBehalfOf, (r.detail as { argv?: string[] }).argv?.[2] ?? ""]);
    assert.equal(summary.length, 2, JSON.stringify(summary));
    assert.deepEqual(summary.map((r) => r.slice(0, 3)), [["rbac: deploy", "claude-code", "oncall"], ["rbac: deploy", "claude-code", "oncall"]]);
    assert.match(summary[0]?.[3] ?? "", /^(cd \/workspace\/repo && )?git push origin HEAD:main$/);
    assert.equal(summary[1]?.[3], "kubectl apply -f k8s/checkout.yaml");
    // Three denied tool results: the push and the deploy refused at submission, and the push hidden
    // in a script, refused by the gateway in git's protocol (`remote: paddock: …`).
    assert.equal(audit.filter((r) => r.action === "agent.toolresult" && r.decision === "denied").length, 3);
    const hidden = toolResultOf(/sh \/tmp\/ship\.sh/);
    assert.match(hidden.output, /remote: paddock: git push to refs\/heads\/main is a deploy/);
    assert.equal(hidden.denied, true);
    const egress = await client.sessions.egress(run.sessionId ?? "", { limit: 1000 });
    assert.ok(egress.some((e) => e.decision === "denied" && e.rule === "rbac: deploy" && e.path.endsWith("/git-receive-pack")), JSON.stringify(egress.filter((e) => e.decision === "denied")));
    assert.ok(egress.some((e) => e.decision === "allowed" && e.host === "github.com" && e.path.endsWith("/git-receive-pack") && e.swapped.includes("GITHUB_TOKEN")), "the branch push went through with the token swapped in");
  });

  void it("no real token in the transcript, what the model saw, the sandbox's files, Paddock's data or its API answers", async () => {
    const found = (what: string, text: string) => REAL.filter((v) => text.includes(v)).map(() => what);
    const hits = [
      ...found("transcript", JSON.stringify(transcript)),
      ...found("run", JSON.stringify(run)),
      ...found("a model request", (anthropic?.turns ?? []).map((r) => r.body).join("\n")),
      ...found("audit", JSON.stringify(await client.audit.list({ limit: 100_000 }))),
      ...found("egress records", JSON.stringify(await client.sessions.egress(run.sessionId ?? "", { limit: 1000 }))),
    ];
    // Every file the sandbox can write or Paddock put there (tmpfs ones included), read out of the
    // kept session through the files API and searched here: the real values never go in.
    const sessionId = run.sessionId ?? "";
    const listing = await client.sessions.run(sessionId, {
      // /var/tmp on `base: host` also shows the host's own /var/tmp (files of unmapped owners, seen as
      // nobody): only what the sandbox wrote there counts.
      argv: ["sh", "-c", "{ find /workspace /home /tmp /run /etc/paddock /etc/resolv.conf /etc/hosts -type f; find /var/tmp -type f \\( -user paddock -o -user root \\); } 2>/dev/null; echo END"],
      timeoutMs: 60_000,
    });
    assert.ok(!listing.truncated && listing.stdout.endsWith("END\n"), `the listing is complete (${listing.stdout.length} bytes)`);
    const files = listing.stdout.split("\n").slice(0, -2);
    const readPaths = new Set<string>();
    for (const path of files) {
      const content = await client.files.read(sessionId, path).catch(() => null);
      if (content === null) continue;
      readPaths.add(path);
      hits.push(...found(`${path} in the sandbox`, content.toString("latin1")));
    }
    assert.ok(readPaths.size >= files.length - 2, `read ${readPaths.size} of ${files.length} files`);
    assert.ok(readPaths.has(`/workspace/repo/${TEST_FILE}`) && readPaths.has("/workspace/repo/.git/config"), "the clone was read");
    assert.ok([...readPaths].filter((p) => p.startsWith("/home/paddock/.claude")).length >= 3, "the agent's own files were read");
    // What the clone used: the placeholder, which only the gateway turns into the token.
    const gitConfig = (await client.files.read(sessionId, "/workspace/repo/.git/config")).toString();
    assert.match(gitConfig, /url = https:\/\/x-access-token:paddock-ph-[0-9a-f]{32}@github\.com\/acme\/shop-checkout\.git/);
    // From the host: the template's and the session's layers and the run directory.
    const scope = installationScope(home);
    const grep = await runCommand(["grep", "-rl", ...REAL.flatMap((v) => ["-e", v]), join(home, "layers"), join("/run/paddock", scope)], { allowFailure: true });
    assert.equal(grep.code, 1, `found in: ${grep.stdout}${grep.stderr}`);
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const p = join(dir, e.name);
        if (e.isDirectory() && e.name !== "layers") await walk(p);
        else if (e.isFile()) hits.push(...found(p, (await readFile(p).catch(() => Buffer.alloc(0))).toString("latin1")));
      }
    };
    await walk(home);
    assert.deepEqual(hits, []);
  });
});
