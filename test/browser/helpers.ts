/**
 * What the browser tests share: Debian's Chromium driven by playwright-core (a fresh profile per
 * browser, removed after), a real server with the scripted fake Anthropic API wired in as in
 * test/e2e/runs.test.ts, one principal per role, login through the UI's page, screenshots to
 * test-artifacts/screenshots/, and an axe-core check that fails on serious or critical violations.
 *
 * Everything here hands back a `close()`, and the suites call them in `after()`, so a failed test
 * still ends the browsers and the server.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Locator, type Page } from "playwright-core";
import type { AxeResults } from "axe-core";
import { PaddockClient } from "../../src/client/index.ts";
import { FAKE_ANTHROPIC_NAMES, startFakeAnthropic, type FakeAnthropic } from "../fakes/anthropic.ts";
import { repoRoot, testServer } from "../helpers/server.ts";

/** Debian's chromium package (scripts/setup.sh installs it); playwright's own browser downloads are unreachable here. */
export const CHROMIUM = "/usr/bin/chromium";
/**
 * Headless, as root (no sandbox), and quiet: without the background-networking flags Chromium
 * keeps trying to reach Google's services, which this machine refuses.
 */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--headless",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export const SCREENSHOTS_DIR = join(repoRoot, "test-artifacts", "screenshots");

/** One person's browser: its own Chromium with a fresh profile, so cookies never cross between users. */
export interface UserBrowser {
  context: BrowserContext;
  page: Page;
  /** Close Chromium and remove its profile; safe to call twice. */
  close(): Promise<void>;
}

/** Launch Chromium with a fresh temporary user-data-dir (removed by `close`). */
export async function openBrowser(): Promise<UserBrowser> {
  const profile = await mkdtemp(join(tmpdir(), "paddock-browser-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
  } catch (err) {
    await rm(profile, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(20_000);
  const page = context.pages()[0] ?? (await context.newPage());
  let closed = false;
  return {
    context,
    page,
    close: async () => {
      if (closed) return;
      closed = true;
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The Paddock principals the tests act as: one per role of the test environment. */
export interface User {
  name: string;
  token: string;
  client: PaddockClient;
}

export interface BrowserTestServer {
  /** `http://127.0.0.1:<port>`: the UI and the API (never `localhost`, which previews' site shares). */
  url: string;
  port: number;
  admin: PaddockClient;
  fake: FakeAnthropic;
  /** `support` (read, write), `viewer` (read), `approver` (read, write: may answer approvals). */
  users: { support: User; viewer: User; approver: User };
  close(): Promise<void>;
}

/**
 * The fake Anthropic API's address for these tests: its own loopback address (not the agent tests'
 * 127.0.60.1), so this file can run beside test/e2e/runs.test.ts.
 */
export const FAKE_ANTHROPIC_ADDRESS = "127.0.64.1";

export const FAKE_KEY = "sk-ant-api03-BrowserTestRealKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH-CCCCCCCC";

/**
 * A real server (fresh data directory) with the fake Anthropic API behind its gateway, the
 * vendor key in the vault, `envFile` applied (its agent layer built from the local mirror) and a
 * principal for each role. `close` stops the server (every session) and the fake.
 */
export async function startBrowserTestServer(envFile: string): Promise<BrowserTestServer> {
  await buildWebUi();
  const fake = await startFakeAnthropic({ address: FAKE_ANTHROPIC_ADDRESS, port: 443 });
  let cleanup: (() => Promise<void>) | undefined;
  const close = async () => {
    await cleanup?.().catch((err: unknown) => console.error("browser tests: server cleanup failed:", err));
    await fake.close();
  };
  try {
    const t = await testServer({
      gateway: { upstream: { extraCaPem: [fake.caPem], hosts: Object.fromEntries(FAKE_ANTHROPIC_NAMES.map((n) => [n, [FAKE_ANTHROPIC_ADDRESS]])), trustedAddresses: [FAKE_ANTHROPIC_ADDRESS] } },
    });
    cleanup = t.cleanup;
    const admin = t.client;
    await admin.secrets.set("ANTHROPIC_API_KEY", FAKE_KEY);
    await admin.environments.apply("webapp.yml", envFile);
    const user = async (name: string, role: string): Promise<User> => {
      const { token } = await admin.principals.create({ name, role });
      return { name, token, client: new PaddockClient({ url: t.server.url, token }) };
    };
    const users = { support: await user("sam", "support"), viewer: await user("vic", "viewer"), approver: await user("ann", "approver") };
    return { url: t.server.url, port: Number(new URL(t.server.url).port), admin, fake, users, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Bundle the UI into dist/web when a web/ source is newer than the bundle (make's setup does the
 * same), so running this file directly tests the UI as it is in the tree, not an old bundle.
 */
async function buildWebUi(): Promise<void> {
  const r = await runNode([join(repoRoot, "scripts", "build-web.mjs"), "--if-stale"]);
  assert.equal(r.code, 0, `scripts/build-web.mjs failed:\n${r.output}`);
}

function runNode(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    proc.stdout.on("data", (b: Buffer) => (output += b.toString()));
    proc.stderr.on("data", (b: Buffer) => (output += b.toString()));
    proc.on("error", reject);
    proc.on("close", (code) => resolve({ code: code ?? -1, output }));
  });
}

/**
 * Log in through the UI's login page ("API token", "Log in") and wait for the logged-in shell
 * ("Log out"). With `keyboard`, the field and the button are reached with Tab and used with the
 * keyboard only. `onLoginPage` runs once the login page is up (an accessibility check, a screenshot).
 */
export async function login(page: Page, url: string, token: string, opts: { keyboard?: boolean; onLoginPage?: () => Promise<void> } = {}): Promise<void> {
  await page.goto(`${url}/`);
  const field = page.getByLabel("API token", { exact: true });
  await field.waitFor();
  await opts.onLoginPage?.();
  if (opts.keyboard) {
    await tabTo(page, field);
    await page.keyboard.type(token);
    await tabTo(page, page.getByRole("button", { name: "Log in" }));
    await page.keyboard.press("Enter");
  } else {
    await field.fill(token);
    await page.getByRole("button", { name: "Log in" }).click();
  }
  await page.getByRole("button", { name: "Log out" }).waitFor();
}

/** Log in unless this browser already holds a UI session cookie for `url`. */
export async function ensureLoggedIn(browser: UserBrowser, url: string, token: string): Promise<void> {
  if ((await browser.context.cookies(url)).some((c) => c.name === "paddock_session")) return;
  await login(browser.page, url, token);
}

/**
 * Run one case; when it fails, save a screenshot of every page still open in `browsers`
 * (`<test>-failed-<n>.png`) before the failure is reported, so a red run shows what the browser saw.
 */
export async function withFailureScreenshots(test: string, browsers: UserBrowser[], fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    let n = 0;
    for (const b of browsers) for (const page of b.context.pages()) await screenshot(page, test, `failed-${++n}`).catch(() => undefined);
    throw err;
  }
}

/** Press Tab until `target` has the focus (at most `maxPresses` times), as a keyboard user would. */
export async function tabTo(page: Page, target: Locator, maxPresses = 40): Promise<void> {
  await target.waitFor();
  for (let i = 0; i <= maxPresses; i++) {
    if (await target.evaluate((el) => el === el.ownerDocument.activeElement)) return;
    await page.keyboard.press("Tab");
  }
  assert.fail(`${String(target)} was not reached with ${maxPresses} presses of Tab`);
}

/** Remove the screenshots a previous run left whose names start with `prefix` (so none is mistaken for this run's). */
export async function clearScreenshots(prefixes: string[]): Promise<void> {
  await mkdir(SCREENSHOTS_DIR, { recursive: true });
  for (const name of await readdir(SCREENSHOTS_DIR)) if (name.endsWith(".png") && prefixes.some((p) => name.startsWith(`${p}-`))) await rm(join(SCREENSHOTS_DIR, name), { force: true });
}

/** A full-page PNG at test-artifacts/screenshots/<test>-<step>.png. */
export async function screenshot(page: Page, test: string, step: string): Promise<string> {
  await mkdir(SCREENSHOTS_DIR, { recursive: true });
  const path = join(SCREENSHOTS_DIR, `${test}-${step}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

const require = createRequire(import.meta.url);
let axeSource: Promise<string> | undefined;

/**
 * Run axe-core on the page as it is now and fail on serious or critical violations (listing each
 * rule, its help and the elements). axe is evaluated through the debugging protocol, which the
 * page's Content-Security-Policy does not apply to, so a strict CSP needs no exception for it.
 */
export async function checkAccessibility(page: Page, name: string): Promise<void> {
  assertAccessible(await accessibilityProblems(page, name));
}

/** The serious and critical axe violations of the page as it is now (for `assertAccessible` later). */
export async function accessibilityProblems(page: Page, name: string): Promise<{ name: string; problems: string[] }> {
  axeSource ??= readFile(require.resolve("axe-core/axe.min.js"), "utf8");
  const source = await axeSource;
  if (!(await page.evaluate("typeof window.axe === 'object'"))) await page.evaluate(`${source}\n;0`);
  const results = await page.evaluate<AxeResults>("window.axe.run(document, { resultTypes: ['violations'] })");
  const problems = results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.helpUrl})\n${v.nodes.map((n) => `    ${n.target.join(" ")}: ${n.failureSummary ?? ""}`).join("\n")}`);
  return { name, problems };
}

export function assertAccessible(found: { name: string; problems: string[] }): void {
  assert.deepEqual(found.problems, [], `axe found serious or critical violations on the ${found.name} page:\n${found.problems.join("\n")}`);
}
