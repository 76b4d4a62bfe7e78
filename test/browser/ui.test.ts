/**
 * The web UI and previews in a real browser: Debian's Chromium driven by playwright-core against a
 * real server, real sandboxes, and the real Claude Code CLI talking to the scripted FAKE Anthropic
 * API (test/fakes/anthropic.ts) behind the egress gateway.
 *
 * One person per role, each in a browser of their own: sam (support: read, write) starts an agent
 * with the keyboard, watches its transcript and opens previews of what the session serves (plain
 * HTTP and a WebSocket app); vic (viewer: read) is offered nothing that starts work and is refused
 * when he tries anyway; ann (approver) approves a command an `ask` rule held. Then a stopped
 * session's preview wakes it, expired and revoked preview URLs are refused, and a preview's page
 * can neither read the UI's cookie nor act on the API as its visitor.
 *
 * Screenshots of the steps: test-artifacts/screenshots/<case>-<step>.png. The UI and the API are
 * reached at 127.0.0.1 (previews are on *.preview.localhost, another site).
 */
import { after, before, describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { until } from "../helpers/wait.ts";
import { INDEX_HTML, WS_ECHO_PY, startApp } from "./apps.ts";
import { accessibilityProblems, assertAccessible, checkAccessibility, clearScreenshots, ensureLoggedIn, login, openBrowser, screenshot, startBrowserTestServer, tabTo, withFailureScreenshots, type BrowserTestServer, type UserBrowser } from "./helpers.ts";
import { createPreview, getPreview, revokePreview, withoutToken } from "./previews.ts";

const ENV = `name: webapp
agent:
  cli: claude-code
secrets:
  - name: ANTHROPIC_API_KEY
    hosts: [api.anthropic.com]
guardrails:
  commands:
    ask: [tar]
    askTimeout: 90s
  network:
    allow: [api.anthropic.com]
    deny: ["*"]
rbac:
  support: [read, write]
  viewer: [read]
  approver: [read, write]
  agent: [read, write]
`;

const PROMPT = "Write hello to out.txt";
const FINAL_TEXT = "Wrote hello to /workspace/out.txt.";
const HELLO = "Hello from the session";
const ABOUT = "About this app";

/** Each case's screenshot prefix. */
const CASES = ["1-agent", "2-preview", "3-websocket", "4-read-only", "5-approval", "6-wake", "7-refused", "8-isolation"];

/** What a fetch in the page got back. */
interface Answer {
  status: number;
  text: string;
}

void describe("the web UI and previews in Chromium (real sessions, real Claude Code vs a fake Anthropic API)", () => {
  let t: BrowserTestServer;
  const browsers: UserBrowser[] = [];
  const openFor = async () => {
    const b = await openBrowser();
    browsers.push(b);
    return b;
  };
  /** sam, the support user: cases 1–3 and 6–8 happen in his browser. */
  let sam: UserBrowser;
  let runId = "";
  let sessionId = "";
  /** The preview of the run's http.server (port 8000) that sam created in the UI, with its token. */
  let appPreviewUrl = "";
  let appSessionId = "";
  /**
   * The session whose http.server serves /workspace/index.html on port 8000 for cases 2, 3, 5, 7
   * and 8: the run's session of case 1, or, when case 1 failed, one sam starts through the API
   * (so a broken start page does not hide what the preview cases find).
   */
  const appSession = async (): Promise<string> => {
    if (appSessionId) return appSessionId;
    const sup = t.users.support.client;
    const id = sessionId || (await sup.sessions.start("webapp")).id;
    await sup.files.write(id, "/workspace/index.html", Buffer.from(INDEX_HTML(HELLO)));
    await sup.files.write(id, "/workspace/about.html", Buffer.from(INDEX_HTML(ABOUT)));
    // Pages an hour old, as an app's usually are: browsers may cache them (heuristic freshness
    // from Last-Modified, which http.server sends) unless the answer says otherwise.
    const touched = await sup.sessions.run(id, { argv: ["touch", "-d", "1 hour ago", "/workspace/index.html", "/workspace/about.html"] });
    assert.equal(touched.exitCode, 0, touched.stderr);
    await startApp(sup, id, "python3 -m http.server 8000", 8000);
    appSessionId = id;
    return id;
  };

  before(async () => {
    await clearScreenshots(CASES);
    t = await startBrowserTestServer(ENV);
    sam = await openFor();
  });

  after(async () => {
    for (const b of browsers) await b.close();
    await t?.close();
  });

  /** One case; its open pages are screenshotted when it fails. */
  const browserCase = (name: string, shots: string, timeoutMs: number, fn: (ctx: TestContext) => Promise<void>) =>
    void it(name, { timeout: timeoutMs }, (ctx) => withFailureScreenshots(shots, browsers, () => fn(ctx)));

  /** A new tab in sam's browser (his cookies: the UI's and the previews'). */
  const samTab = async (): Promise<Page> => sam.context.newPage();

  browserCase("1. a support user logs in and starts an agent with the keyboard, and watches its transcript", "1-agent", 150_000, async () => {
    t.fake.script([
      () => ({ text: "I'll write the file.", tools: [{ name: "Bash", input: { command: "echo hello > /workspace/out.txt", description: "write out.txt" } }] }),
      () => ({ text: FINAL_TEXT }),
    ]);
    const page = sam.page;
    await login(page, t.url, t.users.support.token, {
      keyboard: true,
      onLoginPage: async () => {
        await checkAccessibility(page, "login");
        await screenshot(page, "1-agent", "1-login");
      },
    });

    // The start page, with the keyboard only: Tab to each field, type, Enter on Start.
    const environment = page.getByLabel("Environment", { exact: true });
    await tabTo(page, environment);
    assert.equal(await environment.inputValue(), "webapp");
    await checkAccessibility(page, "start");
    const agent = page.getByLabel("Agent", { exact: true });
    await tabTo(page, agent);
    assert.equal(await agent.inputValue(), "claude-code");
    await tabTo(page, page.getByLabel("Prompt", { exact: true }));
    await page.keyboard.type(PROMPT);
    await screenshot(page, "1-agent", "2-start");
    await tabTo(page, page.getByRole("button", { name: "Start", exact: true }));
    await page.keyboard.press("Enter");

    await page.waitForURL(/\/ui\/runs\/run-[0-9a-f]{16}$/);
    runId = new URL(page.url()).pathname.split("/").at(-1) ?? "";
    await page.getByRole("heading", { name: "Transcript", exact: true }).waitFor();
    const transcript = page.getByTestId("transcript");
    await transcript.getByText("echo hello > /workspace/out.txt").first().waitFor({ timeout: 120_000 });
    await transcript.getByText(FINAL_TEXT).first().waitFor({ timeout: 120_000 });
    await screenshot(page, "1-agent", "3-transcript");

    const run = await t.users.support.client.runs.wait(runId);
    // The page follows the run to its end: its state reads idle (the outcome keep's).
    await page.getByText("idle", { exact: true }).first().waitFor();
    await screenshot(page, "1-agent", "4-idle");
    assert.equal(run.state, "idle", JSON.stringify(run));
    assert.equal(run.startedBy, "sam");
    assert.equal(run.prompt, PROMPT);
    assert.equal(run.result?.summary, FINAL_TEXT);
    sessionId = run.sessionId ?? "";
    assert.equal((await t.users.support.client.files.read(sessionId, "/workspace/out.txt")).toString(), "hello\n");
    await checkAccessibility(page, "run");
  });

  browserCase("2. they open the preview of the app the session serves; the token leaves the address bar", "2-preview", 60_000, async () => {
    const session = await appSession();
    const page = sam.page;
    // The run's page when case 1 got that far, else the session's page.
    if (!runId) {
      await ensureLoggedIn(sam, t.url, t.users.support.token);
      await page.goto(`${t.url}/ui/sessions/${session}`);
    }
    await page.getByRole("heading", { name: "Previews", exact: true }).waitFor();
    await page.getByLabel("Port", { exact: true }).fill("8000");
    await page.getByRole("button", { name: "Create preview", exact: true }).click();
    const link = page.locator('a[href*=".preview.localhost"]').first();
    await link.waitFor();
    appPreviewUrl = (await link.getAttribute("href")) ?? "";
    assert.match(appPreviewUrl, /^http:\/\/8000-[a-z0-9-]+\.preview\.localhost:\d+\/\?paddock_preview=[^&]+$/);
    await screenshot(page, "2-preview", "1-created");

    const preview = await samTab();
    const res = await preview.goto(appPreviewUrl);
    await preview.getByRole("heading", { name: HELLO }).waitFor();
    assert.equal(res?.status(), 200);
    assert.equal(preview.url(), withoutToken(appPreviewUrl), "the token was exchanged for a cookie and left the address bar");
    assert.doesNotMatch(preview.url(), /paddock_preview/);
    await screenshot(preview, "2-preview", "2-app");
    // The cookie works without the token: a reload of the clean URL still shows the app.
    await preview.reload();
    await preview.getByRole("heading", { name: HELLO }).waitFor();
    await preview.close();
  });

  browserCase("3. a WebSocket app works through its preview", "3-websocket", 60_000, async () => {
    const session = await appSession();
    const sup = t.users.support.client;
    await sup.files.write(session, "/workspace/ws_echo.py", Buffer.from(WS_ECHO_PY));
    await startApp(sup, session, "python3 /workspace/ws_echo.py 8001", 8001);
    const pv = await createPreview(t.url, t.users.support, { session, port: 8001 });

    const page = await samTab();
    await page.goto(pv.url);
    const host = new URL(pv.url).host;
    const out = page.locator("#out");
    await out.filter({ hasText: "echo:" }).waitFor();
    assert.equal(await out.textContent(), `echo: ping from ${host}`, "the page's WebSocket to its own origin reached the app and came back");
    await screenshot(page, "3-websocket", "1-echo");
    await page.close();
  });

  browserCase("4. a read-only user is offered no way to start work, and a direct POST with their cookie is refused", "4-read-only", 60_000, async () => {
    const vic = await openFor();
    const page = vic.page;
    await login(page, t.url, t.users.viewer.token);
    // The start page has loaded everything it will show (its heading, and no request in flight).
    await page.getByRole("heading", { level: 1 }).first().waitFor();
    await page.waitForLoadState("networkidle");
    await screenshot(page, "4-read-only", "1-start");
    assert.equal(await page.getByRole("button", { name: "Start", exact: true }).count(), 0, "no Start button");
    assert.equal(await page.getByLabel("Prompt", { exact: true }).count(), 0, "no Prompt field");

    // The run sam started: vic may read it, but is offered nothing that acts on it.
    if (runId) {
      await page.goto(`${t.url}/ui/runs/${runId}`);
      await page.getByTestId("transcript").getByText(FINAL_TEXT).first().waitFor();
      await page.waitForLoadState("networkidle");
      await screenshot(page, "4-read-only", "2-run");
      assert.equal(await page.getByLabel("Follow-up", { exact: true }).count(), 0, "no Follow-up field");
      for (const button of ["Send", "Stop", "Create preview", "Snapshot"]) assert.equal(await page.getByRole("button", { name: button, exact: true }).count(), 0, `no ${button} button`);
      assert.equal(await page.getByLabel("Port", { exact: true }).count(), 0, "no Port field");
    }

    // Asking anyway, from the UI's own origin with its cookie and CSRF header, is refused by RBAC.
    const cookies = await vic.context.cookies(t.url);
    assert.ok(cookies.some((c) => c.name === "paddock_session"), "vic's browser holds the UI cookie");
    const refused = await page.evaluate<{ run: Answer; session: Answer }>(`(async () => {
      const post = async (path, body) => {
        const r = await fetch(path, { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json", "x-paddock-csrf": "1" }, body: JSON.stringify(body) });
        return { status: r.status, text: await r.text() };
      };
      return { run: await post("/v1/runs", { environment: "webapp", prompt: "let me in" }), session: await post("/v1/sessions", { environment: "webapp" }) };
    })()`);
    assert.equal(refused.run.status, 403, refused.run.text);
    assert.match((JSON.parse(refused.run.text) as { error: { message: string } }).error.message, /^write on environment "webapp" is needed; vic \(role "viewer"\) has read there/);
    assert.equal(refused.session.status, 403, refused.session.text);
    assert.equal((await t.admin.runs.list()).filter((r) => r.startedBy === "vic").length, 0);
    assert.equal((await t.admin.sessions.list({ all: true })).filter((s) => s.startedBy === "vic").length, 0);
  });

  browserCase("5. an approver approves an ask command in the UI, and it then runs", "5-approval", 60_000, async () => {
    const session = await appSession();
    const waiting = t.users.support.client.sessions.run(session, { argv: ["tar", "--version"] });
    waiting.catch(() => undefined); // awaited below; a failure before that must not be unhandled
    const approval = await until(async () => (await t.admin.approvals.list({ state: "pending", session }))[0], 20_000, "tar --version to wait for approval");
    let a11y: { name: string; problems: string[] } | undefined;
    try {
      a11y = await approveInTheUi(approval.id);
    } finally {
      // A case that failed before its click must not leave the exec waiting (the server's close would wait for it).
      if ((await t.admin.approvals.get(approval.id)).state === "pending") await t.admin.approvals.deny(approval.id, "the test failed before approving");
    }
    const r = await waiting;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /tar/);
    const decided = await t.admin.approvals.get(approval.id);
    assert.equal(decided.state, "approved");
    assert.equal(decided.decidedBy, "ann");
    assertAccessible(a11y);
  });

  /** Ann, the approver, opens Approvals from the nav, sees sam's waiting command and approves it. */
  const approveInTheUi = async (id: string) => {
    const approval = await t.admin.approvals.get(id);
    assert.deepEqual(approval.argv, ["tar", "--version"]);
    assert.equal(approval.requestedBy, "sam");
    const ann = await openFor();
    const page = ann.page;
    await login(page, t.url, t.users.approver.token);
    await page.getByRole("link", { name: "Approvals", exact: true }).click();
    await page.getByText("tar --version").first().waitFor();
    // Checked with the command waiting, asserted once the approval went through (so a failing
    // check still lets the case show whether approving works).
    const a11y = await accessibilityProblems(page, "approvals");
    await screenshot(page, "5-approval", "1-pending");
    const approve = page.getByRole("button", { name: "Approve", exact: true });
    assert.equal(await approve.count(), 1, "one pending approval, one Approve button");
    await approve.click();
    await approve.waitFor({ state: "detached" });
    await screenshot(page, "5-approval", "2-approved");
    return a11y;
  };

  browserCase("6. a visit to a stopped session's preview wakes it: the starting page, then the app", "6-wake", 90_000, async () => {
    const sup = t.users.support.client;
    const session = await sup.sessions.start("webapp");
    await sup.files.write(session.id, "/workspace/index.html", Buffer.from(INDEX_HTML("Woken from a snapshot")));
    const serve = "python3 -m http.server 8000 --directory /workspace";
    await startApp(sup, session.id, serve, 8000);
    const pv = await createPreview(t.url, t.users.support, { session: session.id, port: 8000, command: serve });

    const page = await samTab();
    await page.goto(pv.url);
    await page.getByRole("heading", { name: "Woken from a snapshot" }).waitFor();
    await screenshot(page, "6-wake", "1-running");

    const stopped = await sup.sessions.stop(session.id);
    assert.equal(stopped.state, "stopped");
    const snapshot = (await getPreview(t.url, t.users.support, pv.id)).snapshotId;
    assert.ok(snapshot, "the stop snapshotted the session for its preview");
    const first = await page.goto(pv.url);
    assert.ok(first, "the visit got an answer");
    const firstBody = await first.text();
    assert.match(firstBody, /starting/i, `the first answer of a stopped session's preview is the starting page, got ${first.status()}: ${firstBody.slice(0, 300)}`);
    await screenshot(page, "6-wake", "2-starting");
    await page.getByRole("heading", { name: "Woken from a snapshot" }).waitFor({ timeout: 60_000 });
    assert.doesNotMatch(page.url(), /paddock_preview/);
    await screenshot(page, "6-wake", "3-woken");

    // The preview now serves a session started from the snapshot its session's stop took.
    const now = await getPreview(t.url, t.users.support, pv.id);
    assert.notEqual(now.sessionId, session.id);
    assert.equal(now.snapshotId, snapshot);
    const woken = await sup.sessions.get(now.sessionId);
    assert.equal(woken.state, "running");
    assert.equal(woken.snapshot, snapshot);
    await page.close();
  });

  browserCase("7. an expired or revoked preview URL is refused", "7-refused", 60_000, async () => {
    const session = await appSession();
    const page = await samTab();

    const expiring = await createPreview(t.url, t.users.support, { session, port: 8000, ttl: "1s" });
    await until(async () => Date.now() > Date.parse(expiring.expiresAt) + 50, 10_000, `preview ${expiring.id} to pass its expiry ${expiring.expiresAt}`);
    const expired = await page.goto(expiring.url);
    assert.ok(expired && expired.status() >= 400 && expired.status() < 500, `an expired preview is refused, got ${expired?.status()}`);
    assert.equal(await page.getByRole("heading", { name: HELLO }).count(), 0);
    await screenshot(page, "7-refused", "1-expired");

    const revoking = await createPreview(t.url, t.users.support, { session, port: 8000 });
    const about = `${withoutToken(revoking.url)}about.html`;
    assert.equal((await page.goto(revoking.url))?.status(), 200);
    await page.getByRole("heading", { name: HELLO }).waitFor();
    assert.equal((await page.goto(about))?.status(), 200);
    await page.getByRole("heading", { name: ABOUT }).waitFor();
    assert.equal((await page.goto(withoutToken(revoking.url)))?.status(), 200);
    await page.getByRole("heading", { name: HELLO }).waitFor();
    await revokePreview(t.url, t.users.support, revoking.id);
    // The browser holds the preview's cookie and is on its page: a reload (which revalidates
    // anything cached) and a page it never fetched are both refused by the gateway.
    assert.equal(page.url(), withoutToken(revoking.url));
    const reloaded = await page.reload();
    assert.ok(reloaded && reloaded.status() >= 400 && reloaded.status() < 500, `a reload of a revoked preview is refused, got ${reloaded?.status()}`);
    const withCookie = await page.goto(`${withoutToken(revoking.url)}never-fetched.html`);
    assert.ok(withCookie && withCookie.status() >= 400 && withCookie.status() < 500, `a revoked preview is refused to a browser holding its cookie, got ${withCookie?.status()}`);
    assert.equal(await page.getByRole("heading", { name: HELLO }).count(), 0);
    await screenshot(page, "7-refused", "2-revoked");
    const withToken = await page.goto(revoking.url);
    assert.ok(withToken && withToken.status() >= 400 && withToken.status() < 500, `a revoked preview's token is refused, got ${withToken?.status()}`);
    assert.equal(await page.getByRole("heading", { name: HELLO }).count(), 0);
    // Following a link to a page of it the browser already fetched must not show it either: a
    // revocation is only real if the browser asks again (the app's own answers allowed caching).
    const cached = await page.goto(about);
    assert.ok(
      cached && cached.status() >= 400 && cached.status() < 500,
      `a page of a revoked preview that the browser fetched before is not shown again, got ${cached?.status()} (cache-control: ${await cached?.headerValue("cache-control")})`,
    );
    assert.equal(await page.getByRole("heading", { name: ABOUT }).count(), 0);
    await page.close();
  });

  browserCase("8. a preview's page cannot read the UI's cookie nor call the API as its visitor", "8-isolation", 60_000, async (ctx) => {
    // The preview sam created in the UI in case 2 (or, when that failed, one made through the API).
    const previewUrl = appPreviewUrl || (await createPreview(t.url, t.users.support, { session: await appSession(), port: 8000 })).url;
    await ensureLoggedIn(sam, t.url, t.users.support.token);
    const ui = (await sam.context.cookies(t.url)).find((c) => c.name === "paddock_session");
    assert.ok(ui, "sam is logged in to the UI in this browser");
    assert.equal(ui.httpOnly, true, "the UI cookie is HttpOnly");

    const page = await samTab();
    await page.goto(previewUrl);
    await page.getByRole("heading", { name: HELLO }).waitFor();
    assert.notEqual(new URL(page.url()).hostname, new URL(t.url).hostname);
    const cookie = await page.evaluate<string>("document.cookie");
    assert.doesNotMatch(cookie, /paddock_session/, "the preview's page sees no UI cookie");

    const runsBefore = (await t.admin.runs.list()).length;
    const api = t.url;
    // In-page code is plain JavaScript (strings): functions compiled by tsx carry helpers the page lacks.
    const attempts = await page.evaluate<{ json: string; simple: string; read: string }>(`(async (apiUrl) => {
      const attempt = async (url, init) => {
        try {
          const r = await fetch(url, init);
          return "status " + r.status + " " + r.type;
        } catch (err) {
          return "error " + String(err);
        }
      };
      const body = JSON.stringify({ environment: "webapp", prompt: "sent by a preview's page" });
      return {
        json: await attempt(apiUrl + "/v1/runs", { method: "POST", credentials: "include", headers: { "content-type": "application/json", "x-paddock-csrf": "1" }, body }),
        simple: await attempt(apiUrl + "/v1/runs", { method: "POST", credentials: "include", mode: "no-cors", headers: { "content-type": "text/plain" }, body }),
        read: await attempt(apiUrl + "/v1/whoami", { credentials: "include" }),
      };
    })(${JSON.stringify(api)})`);
    ctx.diagnostic(`the preview page's requests to the API: ${JSON.stringify(attempts)}`);
    // A request with the UI's CSRF header needs a CORS preflight the server never approves.
    assert.match(attempts.json, /^(error|status 40[13] )/, attempts.json);
    // A simple request goes out but its answer is opaque (status 0) to the page.
    assert.match(attempts.simple, /^(error|status 0 opaque)/, attempts.simple);
    assert.match(attempts.read, /^(error|status 401 )/, attempts.read);

    // A form POST (text/plain shaped as JSON, the classic cross-site request) is refused too.
    const [formAnswer] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${api}/v1/runs`),
      page.evaluate(`(() => {
        const form = document.createElement("form");
        form.method = "POST";
        form.action = ${JSON.stringify(`${api}/v1/runs`)};
        form.enctype = "text/plain";
        const field = document.createElement("input");
        field.name = '{"environment":"webapp","prompt":"sent by a form","x":"';
        field.value = '"}';
        form.appendChild(field);
        document.body.appendChild(form);
        form.submit();
      })()`),
    ]);
    ctx.diagnostic(`the form POST from the preview's page was answered ${formAnswer.status()}`);
    assert.ok([401, 403].includes(formAnswer.status()), `a cross-site form POST to the API is refused, got ${formAnswer.status()}: ${await formAnswer.text()}`);
    await page.waitForLoadState();
    await screenshot(page, "8-isolation", "1-form-refused");
    assert.equal((await t.admin.runs.list()).length, runsBefore, "no run was created by the preview's page");
    await page.close();
  });
});
