import { createServer, request as httpsRequest, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { spawn } from "node:child_process";
import { cp, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../../src/core/index.ts";
import { makeTestCertificates } from "../helpers/upstream.ts";
import { tempDir } from "../helpers/tmp.ts";

/**
 * Local FAKES of what the on-call inspector (examples/oncall-inspector) talks to: PagerDuty's REST
 * API, Sentry's API, GitHub's REST API and GitHub's git smart HTTP (a REAL git-http-backend over a
 * bare repository). One HTTPS server with its own test CA on a loopback address of this machine,
 * answering as github.com, api.github.com, sentry.io and api.pagerduty.com; the gateway is pointed
 * at it by a DNS override. Each fake checks the credential the way the real service does and only
 * accepts the REAL token (the sandbox only ever has placeholders, so an accepted request proves the
 * gateway swapped it); everything received is recorded.
 */
export const FAKE_ONCALL_ADDRESS = "127.0.63.1";
export const FAKE_ONCALL_NAMES = ["github.com", "api.github.com", "sentry.io", "api.pagerduty.com"];

export interface FakeOncallRequest {
  method: string;
  url: string;
  host: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The HTTP status the fake answered. */
  status: number;
}

export interface FakePull {
  number: number;
  repo: string;
  title: string;
  head: string;
  headSha: string;
  base: string;
  body: string;
  draft: boolean;
  htmlUrl: string;
  authorization: string;
}

export interface FakeNote {
  incident: string;
  content: string;
  from: string;
  authorization: string;
}

export interface FakeOncallScenario {
  /** "owner/name" of the repository on the fake GitHub. */
  repo: string;
  /** Files of the repository's first commit on main. */
  repoFiles: string;
  incident: { id: string; number: number; title: string; serviceId: string; serviceName: string };
  sentryIssue: Record<string, unknown> & { id: string };
  sentryLatestEvent: Record<string, unknown>;
}

export interface FakeOncall {
  address: string;
  caPem: string;
  /** Every request, in order of arrival (git requests included). */
  received: FakeOncallRequest[];
  /** Requests refused for a wrong or missing credential (git's own first, credential-less request is not one). */
  unauthorized: FakeOncallRequest[];
  pulls: FakePull[];
  notes: FakeNote[];
  /** Path of the bare repository on this machine. */
  bareRepo: string;
  close(): Promise<void>;
}

export interface FakeOncallTokens {
  github: string;
  sentry: string;
  pagerduty: string;
}

export async function startFakeOncall(opts: { scenario: FakeOncallScenario; tokens: FakeOncallTokens; address?: string; port?: number }): Promise<FakeOncall> {
  const address = opts.address ?? FAKE_ONCALL_ADDRESS;
  const dir = await tempDir("paddock-fake-oncall-");
  try {
    const certs = await makeTestCertificates(dir.path, FAKE_ONCALL_NAMES);
    const gitRoot = join(dir.path, "git");
    const bareRepo = await makeRepo(gitRoot, opts.scenario.repo, opts.scenario.repoFiles);
    const fake: FakeOncall = {
      address,
      caPem: certs.caPem,
      received: [],
      unauthorized: [],
      pulls: [],
      notes: [],
      bareRepo,
      close: async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        await dir.remove();
      },
    };
    const ctx: Ctx = { fake, scenario: opts.scenario, tokens: opts.tokens, gitRoot };
    const server: Server = createServer({ key: certs.keyPem, cert: certs.certPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const r: FakeOncallRequest = { method: req.method ?? "", url: req.url ?? "", host: String(req.headers.host ?? "").split(":")[0] ?? "", headers: req.headers, body: body.toString("utf8"), status: 0 };
        fake.received.push(r);
        const answer = (status: number, json: unknown, headers: Record<string, string> = {}) => {
          r.status = status;
          if (status === 401 || status === 403) fake.unauthorized.push(r);
          res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers }).end(JSON.stringify(json));
        };
        void route(ctx, r, body, req, res, answer).catch((err: unknown) => answer(500, { message: `the fake failed: ${String(err)}` }));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port ?? 443, address, () => resolve());
    });
    return fake;
  } catch (err) {
    await dir.remove();
    throw err;
  }
}

interface Ctx {
  fake: FakeOncall;
  scenario: FakeOncallScenario;
  tokens: FakeOncallTokens;
  gitRoot: string;
}

type Answer = (status: number, json: unknown, headers?: Record<string, string>) => void;

async function route(ctx: Ctx, r: FakeOncallRequest, body: Buffer, req: IncomingMessage, res: ServerResponse, answer: Answer): Promise<void> {
  switch (r.host) {
    case "github.com":
      return gitBackend(ctx, r, body, req, res, answer);
    case "api.github.com":
      return github(ctx, r, answer);
    case "sentry.io":
      return sentry(ctx, r, answer);
    case "api.pagerduty.com":
      return pagerduty(ctx, r, answer);
    default:
      return answer(404, { message: `the fake does not answer as ${r.host}` });
  }
}

const header = (r: FakeOncallRequest, name: string): string => {
  const v = r.headers[name];
  return Array.isArray(v) ? v.join(",") : (v ?? "");
};

/** GitHub REST: "Authorization: Bearer <token>" or "token <token>" (docs.github.com/rest/authentication). */
async function github(ctx: Ctx, r: FakeOncallRequest, answer: Answer): Promise<void> {
  const auth = header(r, "authorization");
  if (auth !== `Bearer ${ctx.tokens.github}` && auth !== `token ${ctx.tokens.github}`) return answer(401, { message: "Bad credentials", documentation_url: "https://docs.github.com/rest", status: "401" });
  const path = r.url.split("?")[0] ?? "";
  const pulls = /^\/repos\/([^/]+\/[^/]+)\/pulls(?:\/(\d+))?$/.exec(path);
  if (!pulls || pulls[1] !== ctx.scenario.repo) return answer(404, { message: "Not Found", status: "404" });
  if (r.method === "GET" && pulls[2]) {
    const pull = ctx.fake.pulls.find((p) => p.number === Number(pulls[2]));
    return pull ? answer(200, pullJson(ctx, pull)) : answer(404, { message: "Not Found", status: "404" });
  }
  if (r.method !== "POST" || pulls[2]) return answer(404, { message: "Not Found", status: "404" });
  let input: { title?: unknown; head?: unknown; base?: unknown; body?: unknown; draft?: unknown };
  try {
    input = JSON.parse(r.body) as typeof input;
  } catch {
    return answer(400, { message: "Problems parsing JSON", status: "400" });
  }
  const invalid = (field: string, code = "missing_field") => answer(422, { message: "Validation Failed", errors: [{ resource: "PullRequest", field, code }], status: "422" });
  if (typeof input.title !== "string" || input.title === "") return invalid("title");
  if (typeof input.head !== "string") return invalid("head");
  if (typeof input.base !== "string") return invalid("base");
  const headSha = await revParse(ctx.fake.bareRepo, input.head);
  if (!headSha) return invalid("head", "invalid");
  if (!(await revParse(ctx.fake.bareRepo, input.base))) return invalid("base", "invalid");
  const number = ctx.fake.pulls.length + 1;
  const pull: FakePull = {
    number, repo: ctx.scenario.repo, title: input.title, head: input.head, headSha, base: input.base, body: typeof input.body === "string" ? input.body : "",
    draft: input.draft === true, htmlUrl: `https://github.com/${ctx.scenario.repo}/pull/${number}`, authorization: header(r, "authorization"),
  };
  ctx.fake.pulls.push(pull);
  answer(201, pullJson(ctx, pull), { location: `https://api.github.com/repos/${ctx.scenario.repo}/pulls/${number}` });
}

function pullJson(ctx: Ctx, p: FakePull): Record<string, unknown> {
  const [owner] = ctx.scenario.repo.split("/");
  return {
    url: `https://api.github.com/repos/${p.repo}/pulls/${p.number}`, id: 1_000_000 + p.number, number: p.number, state: "open", draft: p.draft, title: p.title, body: p.body,
    html_url: p.htmlUrl, user: { login: "paddock-oncall[bot]", type: "Bot" },
    head: { label: `${owner}:${p.head}`, ref: p.head, sha: p.headSha }, base: { label: `${owner}:${p.base}`, ref: p.base },
    merged: false, mergeable_state: "unknown", created_at: new Date().toISOString(),
  };
}

/** Sentry: "Authorization: Bearer <auth token>" (docs.sentry.io/api/auth/). */
function sentry(ctx: Ctx, r: FakeOncallRequest, answer: Answer): void {
  if (header(r, "authorization") !== `Bearer ${ctx.tokens.sentry}`) return answer(401, { detail: "Invalid token" });
  const path = r.url.split("?")[0] ?? "";
  // The issue routes with and without the organization (docs.sentry.io/api/events/).
  const m = /^\/api\/0\/(?:organizations\/[^/]+\/)?issues\/([^/]+)\/(events\/latest\/)?$/.exec(path);
  if (r.method !== "GET" || !m || m[1] !== ctx.scenario.sentryIssue.id) return answer(404, { detail: "The requested resource does not exist" });
  answer(200, m[2] ? ctx.scenario.sentryLatestEvent : ctx.scenario.sentryIssue);
}

/**
 * PagerDuty REST v2: "Authorization: Token token=<key>", and a "From:" header naming a user of the
 * account on requests that act as one, such as creating a note
 * (developer.pagerduty.com/api-reference: "Create a note on an incident").
 */
function pagerduty(ctx: Ctx, r: FakeOncallRequest, answer: Answer): void {
  if (header(r, "authorization") !== `Token token=${ctx.tokens.pagerduty}`) return answer(401, { error: { message: "Unauthorized", code: 2006 } });
  const path = r.url.split("?")[0] ?? "";
  const inc = ctx.scenario.incident;
  const m = /^\/incidents\/([^/]+)\/(alerts|notes)$/.exec(path);
  if (!m || m[1] !== inc.id) return answer(404, { error: { message: "Not Found", code: 2100 } });
  if (m[2] === "alerts" && r.method === "GET") return answer(200, { alerts: [alertJson(ctx)], limit: 25, offset: 0, more: false, total: null });
  if (m[2] !== "notes" || r.method !== "POST") return answer(404, { error: { message: "Not Found", code: 2100 } });
  const from = header(r, "from");
  if (!/^[^@\s]+@[^@\s]+$/.test(from)) return answer(400, { error: { message: "Invalid Input Provided", code: 2001, errors: ["A valid 'From' header is required: the email address of a user of this account"] } });
  let content: unknown;
  try {
    content = (JSON.parse(r.body) as { note?: { content?: unknown } }).note?.content;
  } catch {
    content = undefined;
  }
  if (typeof content !== "string" || content === "") return answer(400, { error: { message: "Invalid Input Provided", code: 2001, errors: ["Note content must not be empty"] } });
  ctx.fake.notes.push({ incident: inc.id, content, from, authorization: header(r, "authorization") });
  const note = {
    id: `PNOTE${ctx.fake.notes.length}`, content, created_at: new Date().toISOString(),
    user: { id: "PONCALL", type: "user_reference", summary: from, self: "https://api.pagerduty.com/users/PONCALL", html_url: "https://acme.pagerduty.com/users/PONCALL" },
    channel: { summary: "The PagerDuty website or APIs" },
  };
  answer(201, { note });
}

/** The alert Sentry's PagerDuty integration raises: its link names the Sentry issue. */
function alertJson(ctx: Ctx): Record<string, unknown> {
  const { incident: inc, sentryIssue: issue } = ctx.scenario;
  return {
    id: "PALERT1", type: "alert", summary: inc.title, status: "triggered", severity: "error", created_at: new Date().toISOString(),
    alert_key: String(issue.shortId ?? issue.id),
    service: { id: inc.serviceId, type: "service_reference", summary: inc.serviceName },
    incident: { id: inc.id, type: "incident_reference" },
    body: {
      type: "alert_body",
      contexts: [{ type: "link", href: `https://acme.sentry.io/issues/${issue.id}/?referrer=pagerduty_integration`, text: "View Sentry Issue Details" }],
      details: { culprit: issue.culprit ?? null, project: "shop-checkout", release: "shop-checkout@1.4.2" },
    },
  };
}

/** git smart HTTP through git-http-backend (CGI), Basic auth with the token as the password, as github.com takes it. */
function gitBackend(ctx: Ctx, r: FakeOncallRequest, body: Buffer, req: IncomingMessage, res: ServerResponse, answer: Answer): void {
  const auth = header(r, "authorization");
  const password = auth.startsWith("Basic ") ? Buffer.from(auth.slice(6), "base64").toString().split(":").slice(1).join(":") : null;
  if (password !== ctx.tokens.github) {
    // git asks without credentials first: a challenge, not a refusal. A wrong password is one.
    r.status = 401;
    if (password !== null) ctx.fake.unauthorized.push(r);
    res.writeHead(401, { "www-authenticate": 'Basic realm="GitHub"' }).end("authentication required\n");
    return;
  }
  const [path, query = ""] = r.url.split("?");
  if (!(path ?? "").startsWith(`/${ctx.scenario.repo}.git/`)) return answer(404, { message: "Repository not found." });
  const cgi = spawn("/usr/lib/git-core/git-http-backend", [], {
    env: {
      GIT_PROJECT_ROOT: ctx.gitRoot, GIT_HTTP_EXPORT_ALL: "1", PATH_INFO: path ?? "/", QUERY_STRING: query, REQUEST_METHOD: r.method,
      CONTENT_TYPE: String(req.headers["content-type"] ?? ""), CONTENT_LENGTH: String(body.length), REMOTE_USER: "x-access-token", REMOTE_ADDR: "127.0.0.1",
      PATH: process.env.PATH ?? "/usr/bin:/bin",
    },
  });
  const out: Buffer[] = [];
  cgi.stdout.on("data", (c: Buffer) => out.push(c));
  cgi.on("close", () => {
    const all = Buffer.concat(out);
    const split = all.indexOf("\r\n\r\n");
    const headers: Record<string, string> = {};
    let status = 200;
    for (const line of all.subarray(0, Math.max(split, 0)).toString().split("\r\n")) {
      const i = line.indexOf(":");
      if (i < 0) continue;
      const k = line.slice(0, i).trim().toLowerCase();
      const v = line.slice(i + 1).trim();
      if (k === "status") status = Number(v.split(" ")[0]);
      else headers[k] = v;
    }
    r.status = status;
    res.writeHead(status, headers).end(all.subarray(split + 4));
  });
  cgi.stdin.end(body);
}

async function revParse(bare: string, branch: string): Promise<string | null> {
  if (!/^[\w./-]+$/.test(branch) || branch.includes("..")) return null;
  const r = await runCommand(["git", "-C", bare, "rev-parse", "--verify", "-q", `refs/heads/${branch}`], { allowFailure: true });
  return r.code === 0 ? r.stdout.trim() : null;
}

/** A bare repository `<root>/<repo>.git` whose main holds one commit of `files`, pushable over HTTP. */
async function makeRepo(root: string, repo: string, files: string): Promise<string> {
  const bare = join(root, `${repo}.git`);
  const work = join(root, "work");
  await mkdir(bare, { recursive: true });
  await runCommand(["git", "init", "-q", "--bare", "-b", "main", bare]);
  await runCommand(["git", "-C", bare, "config", "http.receivepack", "true"]);
  await cp(files, work, { recursive: true });
  const git = ["git", "-C", work, "-c", "user.name=Acme Dev", "-c", "user.email=dev@acme.example"];
  await runCommand(["git", "init", "-q", "-b", "main", work]);
  await runCommand([...git, "add", "."]);
  await runCommand([...git, "commit", "-q", "-m", "checkout pricing"]);
  await runCommand([...git, "push", "-q", bare, "main"]);
  return bare;
}

/**
 * The example's incident: checkout 500s because a discount code nobody published (SPRING24) makes
 * `discountFor` read `.rate` of undefined. The Sentry event is in the shape Sentry's API returns
 * (`entries[type=exception].data.values[].stacktrace.frames[]`, outermost frame first), with the
 * source context read from the fixture repository itself, so it stays true to the code.
 */
export async function shopCheckoutScenario(repoFiles: string): Promise<FakeOncallScenario> {
  const source = async (file: string) => (await readFile(join(repoFiles, file), "utf8")).split("\n");
  const frame = async (file: string, fn: string, needle: string, colNo: number) => {
    const lines = await source(file);
    const lineNo = lines.findIndex((l) => l.includes(needle)) + 1;
    if (lineNo === 0) throw new Error(`the fixture's ${file} no longer has ${JSON.stringify(needle)}`);
    const context: [number, string][] = [];
    for (let n = Math.max(1, lineNo - 2); n <= Math.min(lines.length, lineNo + 2); n++) context.push([n, lines[n - 1] ?? ""]);
    return { filename: `/srv/shop-checkout/${file}`, absPath: `/srv/shop-checkout/${file}`, module: file.replace(/\.js$/, ""), function: fn, lineNo, colNo, inApp: true, context, vars: null, platform: null };
  };
  const message = "Cannot read properties of undefined (reading 'rate')";
  const title = `TypeError: ${message}`;
  const issue = {
    id: "4711", shortId: "SHOP-CHECKOUT-1F", title, culprit: "discountFor(src/discounts)", level: "error", status: "unresolved", platform: "node",
    permalink: "https://acme.sentry.io/issues/4711/", project: { id: "42", slug: "shop-checkout", name: "shop-checkout" },
    metadata: { type: "TypeError", value: message, filename: "/srv/shop-checkout/src/discounts.js", function: "discountFor", in_app_frame_mix: "mixed" },
    count: "318", userCount: 211, firstSeen: "2025-03-21T08:59:41Z", lastSeen: "2025-03-21T09:14:02Z",
  };
  const internal = (fn: string, file: string, lineNo: number) => ({ filename: `node:${file}`, absPath: `node:${file}`, module: file, function: fn, lineNo, colNo: 5, inApp: false, context: [], vars: null, platform: null });
  const event = {
    id: "9f1c2e4b7a3d4c0e8b6f5a1d2c3e4f50", eventID: "9f1c2e4b7a3d4c0e8b6f5a1d2c3e4f50", groupID: issue.id, projectID: "42", platform: "node", type: "error",
    title, message: "", culprit: issue.culprit, dateCreated: "2025-03-21T09:14:02Z", dateReceived: "2025-03-21T09:14:03Z",
    metadata: issue.metadata, release: { version: "shop-checkout@1.4.2" },
    tags: [{ key: "environment", value: "production" }, { key: "release", value: "shop-checkout@1.4.2" }, { key: "transaction", value: "POST /api/checkout" }, { key: "handled", value: "no" }],
    entries: [
      {
        type: "exception",
        data: {
          values: [{
            type: "TypeError", value: message, module: null, mechanism: { type: "onuncaughtexception", handled: false },
            stacktrace: {
              frames: [
                internal("process.processTicksAndRejections", "internal/process/task_queues", 95),
                internal("Layer.handle [as handle_request]", "express/lib/router/layer", 95),
                await frame("src/cart.js", "cartTotal", "discountFor(code)", 16),
                await frame("src/discounts.js", "discountFor", "return discount.rate", 19),
              ],
              framesOmitted: null, registers: null, hasSystemFrames: true,
            },
          }],
          excOmitted: null, hasSystemFrames: true,
        },
      },
      {
        type: "request",
        data: { method: "POST", url: "https://shop.example.com/api/checkout", query: [], data: { items: [{ sku: "TEE-BLK-M", price: 1999, qty: 2 }], code: "SPRING24" }, headers: [["Content-Type", "application/json"]] },
      },
      { type: "breadcrumbs", data: { values: [{ category: "http", message: "POST /api/checkout", level: "info", timestamp: "2025-03-21T09:14:02Z" }] } },
    ],
  };
  return {
    repo: "acme/shop-checkout",
    repoFiles,
    incident: { id: "Q2K7HV8M4ZC1XP", number: 1042, title, serviceId: "PSHOPCK", serviceName: "Shop checkout" },
    sentryIssue: issue,
    sentryLatestEvent: event,
  };
}

/** A GET to one of the fakes from this machine, as `host` (trusting the fake's CA only), e.g. to read a pull request back. */
export function fakeOncallGet(fake: FakeOncall, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: fake.address, port: 443, servername: host, path, ca: fake.caPem, headers: { ...headers, host } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown });
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    req.on("error", reject);
    req.end();
  });
}
