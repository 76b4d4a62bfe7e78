/**
 * Agent-run overhead: the time Paddock adds between `paddock run` and the agent's
 * first model request, beside the same CLI started directly in the same kind of sandbox.
 *
 * The real Claude Code CLI (vendor/agents, installed into the template by `agent: claude-code`)
 * runs against the scripted fake Anthropic API (test/fakes/anthropic.ts) behind the egress gateway,
 * the same set-up as test/e2e/runs.test.ts. The fake runs in this process and stamps each request's
 * arrival with performance.now(); it answers the first request with a final text ("done") so the
 * CLI exits, and runs use outcome `stop` so their sessions end. Per iteration, interleaved:
 *
 * - run, cold session: `POST /v1/runs` (client.runs.start) until the fake receives the first
 *   `POST /v1/messages`. Where that time goes is taken from the server's own calls (Sessions.start,
 *   Sessions.exec, Sessions.writeFile, wrapped in this process: no change to src/).
 * - run, pool claim: the same for an identical environment with a warm pool (`pools.set`, min 1),
 *   refilled (not timed) before each run, so the run's session start is a claim.
 * - baseline: a session of the same environment (same template, same sandbox kind) started and
 *   given the adapter's prepare() files before the clock starts; then the adapter's start() argv
 *   with prepare()'s variables, exec'd by the client (`sessions.exec`, the WebSocket stream), until
 *   the fake's first request. A fresh session each iteration, so the CLI starts with the same empty
 *   home as in a run.
 * - baseline, in-process exec: the same through `Sessions.exec` in the server process, which is
 *   how runs.ts starts the CLI (no HTTP, no WebSocket).
 *
 * The CLI's own start (about a second, and the noisiest part) dominates a and b, so the report also
 * gives Paddock's part from the server's marks alone: POST /v1/runs until runs.ts calls the CLI's
 * exec. Afterwards, what each step of runs.ts costs on its own in a running session: the
 * `#baseline` git commit over the template's /workspace and over `--workspace-files` more small
 * files, the mkdir exec, one file write, and the baseline + files done as now (one after another)
 * against overlapped (the baseline reads /workspace only; the files go under ~/.claude).
 *
 * Needs the agent mirror in vendor/agents (`make test`'s setup: scripts/agent-packages.ts).
 *
 * Prints one JSON document. Needs root.
 * Usage: node --import tsx bench/agent-overhead.ts [--runs N] [--workspace-files N]
 */
import { performance } from "node:perf_hooks";
import { claudeCode } from "../src/agents/claude-code.ts";
import { AGENT_PACKAGES, AGENT_ROOT, type AgentContext } from "../src/agents/index.ts";
import type { ExecOptions } from "../src/core/index.ts";
import type { RunningServer } from "../src/server/index.ts";
import { testServer } from "../test/helpers/server.ts";
import { FAKE_ANTHROPIC_NAMES, startFakeAnthropic, type FakeAnthropic, type FakeRequest } from "../test/fakes/anthropic.ts";
import { machine, summarize, time } from "./stats.ts";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) || fallback : fallback;
};
const runs = arg("--runs", 20);
const workspaceFiles = arg("--workspace-files", 2000);
const WARMUP = 2;
/** Not the tests' 127.0.60.1: e2e tests running at the same time keep theirs. */
const FAKE_ADDRESS = "127.0.60.77";
const REAL_KEY = "sk-ant-api03-BenchAgentOverheadKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH-CCCCCCCC";
const PROMPT = "Say done.";
const INSTRUCTIONS = "Keep changes small.";
const FIRST_REQUEST_TIMEOUT_MS = 60_000;

const envFile = (name: string) => `name: ${name}
agent:
  cli: claude-code
  instructions: ${INSTRUCTIONS}
  outcome: stop
secrets:
  - name: ANTHROPIC_API_KEY
    hosts: [api.anthropic.com]
guardrails:
  commands:
    deny: [rm]
  network:
    allow: [api.anthropic.com]
    deny: ["*"]
rbac:
  agent: [read, write]
`;
const COLD = "agents-cold";
const POOLED = "agents-pool";

/** What runs.ts's contextOf() gives Claude Code for the environment above. */
const ctx: AgentContext = {
  bin: `${AGENT_ROOT}/claude-code/node_modules/.bin/${AGENT_PACKAGES["claude-code"]?.bin ?? "claude"}`,
  home: "/home/paddock",
  cwd: "/workspace",
  caFile: "/etc/paddock/ca.pem",
  model: null,
  instructions: INSTRUCTIONS,
  skills: [],
  mcp: {},
  commands: { allow: [], deny: ["rm"], ask: [] },
  checkUrl: "http://paddock.internal/v1/check",
  endpoint: null,
};

/** Resolves with the arrival time (performance.now()) of the next POST /v1/messages the fake receives. */
function firstMessagesRequest(fake: FakeAnthropic): { arrived: Promise<number>; cancel: () => void } {
  let resolve!: (t: number) => void;
  let reject!: (e: Error) => void;
  const arrived = new Promise<number>((res, rej) => ((resolve = res), (reject = rej)));
  const timer = setTimeout(() => reject(new Error(`no model request within ${FIRST_REQUEST_TIMEOUT_MS} ms`)), FIRST_REQUEST_TIMEOUT_MS);
  waiter = (t) => {
    clearTimeout(timer);
    waiter = null;
    resolve(t);
  };
  fake.script([() => ({ text: "done" })]);
  return { arrived, cancel: () => (clearTimeout(timer), (waiter = null)) };
}
let waiter: ((t: number) => void) | null = null;

/** Stamps each request's arrival: the fake pushes it onto `received` as soon as its body is read. */
function stampArrivals(fake: FakeAnthropic): void {
  const push = fake.received.push.bind(fake.received);
  fake.received.push = (...items: FakeRequest[]) => {
    const t = performance.now();
    for (const r of items) if (r.method === "POST" && r.url.split("?")[0] === "/v1/messages") waiter?.(t);
    return push(...items);
  };
}

/** Marks of one run, taken by wrappers around the server's Sessions calls. */
interface Trace {
  sessionId: string | null;
  startBegin?: number;
  startEnd?: number;
  gitBegin?: number;
  gitEnd?: number;
  mkdirBegin?: number;
  mkdirEnd?: number;
  filesBegin?: number;
  filesEnd?: number;
  files: number;
  cliExec?: number;
}
let trace: Trace | null = null;

function instrument(server: RunningServer): void {
  const sessions = server.cp.sessions;
  const start = sessions.start.bind(sessions);
  const exec = sessions.exec.bind(sessions);
  const writeFile = sessions.writeFile.bind(sessions);
  sessions.start = async (...a: Parameters<typeof start>) => {
    const t = trace;
    if (t && a[1].agent) t.startBegin = performance.now();
    const s = await start(...a);
    if (t && a[1].agent) {
      t.startEnd = performance.now();
      t.sessionId = s.id;
    }
    return s;
  };
  sessions.exec = async (id: string, opts: ExecOptions) => {
    const t = trace && trace.sessionId === id ? trace : null;
    const kind = !t ? null : opts.argv[0] === ctx.bin ? "cli" : opts.argv[0] === "mkdir" ? "mkdir" : opts.argv.join(" ").includes("baseline.git") && opts.argv.join(" ").includes("git init") ? "git" : null;
    const t0 = performance.now();
    if (t && kind === "cli") t.cliExec ??= t0;
    const r = await exec(id, opts);
    if (t && kind === "git" && t.gitBegin === undefined) {
      t.gitBegin = t0;
      t.gitEnd = performance.now();
    }
    if (t && kind === "mkdir" && t.mkdirBegin === undefined) {
      t.mkdirBegin = t0;
      t.mkdirEnd = performance.now();
    }
    return r;
  };
  sessions.writeFile = async (...a: Parameters<typeof writeFile>) => {
    const t = trace && trace.sessionId === a[0] && trace.cliExec === undefined ? trace : null;
    if (t) t.filesBegin ??= performance.now();
    await writeFile(...a);
    if (t) {
      t.filesEnd = performance.now();
      t.files++;
    }
  };
}

async function main(): Promise<void> {
  const fake = await startFakeAnthropic({ address: FAKE_ADDRESS, port: 443 });
  stampArrivals(fake);
  const t = await testServer({
    gateway: { upstream: { extraCaPem: [fake.caPem], hosts: Object.fromEntries(FAKE_ANTHROPIC_NAMES.map((n) => [n, [FAKE_ADDRESS]])), trustedAddresses: [FAKE_ADDRESS] } },
  });
  const { server, client } = t;
  instrument(server);
  const sessions = server.cp.sessions;
  try {
    await client.secrets.set("ANTHROPIC_API_KEY", REAL_KEY);
    const built0 = performance.now();
    await client.environments.apply(`${COLD}.yml`, envFile(COLD));
    await client.environments.apply(`${POOLED}.yml`, envFile(POOLED));
    const buildMs = performance.now() - built0;
    await client.pools.set(POOLED, { min: 1 });
    const refilled = async () => {
      for (;;) {
        await server.cp.pools.idle();
        const p = (await client.pools.list()).find((x) => x.environment === POOLED);
        if (p && p.ready >= 1 && p.starting === 0) return;
        await new Promise((r) => setTimeout(r, 5));
      }
    };

    const prepared = claudeCode.prepare(ctx);
    const launch = claudeCode.start(PROMPT, ctx);
    const files = [...prepared.files, ...launch.files];
    const dirs = [...new Set(files.map((f) => f.path.slice(0, f.path.lastIndexOf("/"))))];
    const env = { ...prepared.env, ...launch.env };

    /** (a): POST /v1/runs until the first model request; the run is then waited for (not timed). */
    const viaRun = async (environment: string): Promise<{ total: number; trace: Trace; claimed: boolean }> => {
      const members = new Set((await server.cp.store.listPoolMembers({ environment: POOLED })).map((m) => m.id));
      const first = firstMessagesRequest(fake);
      const tr: Trace = { sessionId: null, files: 0 };
      trace = tr;
      const t0 = performance.now();
      const run = await client.runs.start({ environment, prompt: PROMPT, outcome: "stop" });
      const arrived = await first.arrived.finally(first.cancel);
      trace = null;
      const done = await client.runs.wait(run.id);
      if (done.state !== "done") throw new Error(`run ${run.id} ended ${done.state}: ${done.error ?? JSON.stringify(done.result)}`);
      const rel = (x: number | undefined) => (x === undefined ? NaN : x - t0);
      const marks = { ...tr, startBegin: rel(tr.startBegin), startEnd: rel(tr.startEnd), gitBegin: rel(tr.gitBegin), gitEnd: rel(tr.gitEnd), mkdirBegin: rel(tr.mkdirBegin), mkdirEnd: rel(tr.mkdirEnd), filesBegin: rel(tr.filesBegin), filesEnd: rel(tr.filesEnd), cliExec: rel(tr.cliExec) };
      return { total: arrived - t0, trace: { ...marks, first: arrived - t0 } as Trace & { first: number }, claimed: members.has(tr.sessionId ?? "") };
    };

    /** (b): a started session with the adapter's files in place; exec of the argv until the first model request. */
    const direct = async (how: "client" | "server"): Promise<number> => {
      const s = await sessions.start(COLD, { startedBy: "admin", agent: null });
      try {
        await sessions.exec(s.id, { argv: ["mkdir", "-p", "--", ...dirs], cwd: ctx.cwd });
        for (const f of files) await sessions.writeFile(s.id, f.path, Buffer.from(f.content), f.mode ?? 0o644);
        const first = firstMessagesRequest(fake);
        const t0 = performance.now();
        const exec =
          how === "client"
            ? client.sessions.exec(s.id, { argv: launch.argv, cwd: ctx.cwd, env })
            : sessions.exec(s.id, { argv: launch.argv, cwd: ctx.cwd, env });
        const arrived = await first.arrived.finally(first.cancel);
        const r = await exec;
        if (r.exitCode !== 0) throw new Error(`the CLI exited ${r.exitCode} in ${s.id}`);
        return arrived - t0;
      } finally {
        await sessions.remove(s.id);
      }
    };

    const cold: number[] = [];
    const pooled: number[] = [];
    const baseClient: number[] = [];
    const baseServer: number[] = [];
    const traces: { cold: (Trace & { first: number })[]; pool: (Trace & { first: number })[] } = { cold: [], pool: [] };
    let claimed = 0;
    for (let i = 0; i < runs + WARMUP; i++) {
      const measured = i >= WARMUP;
      await refilled();
      const c = await viaRun(COLD);
      await refilled();
      const p = await viaRun(POOLED);
      await refilled();
      const bc = await direct("client");
      await refilled();
      const bs = await direct("server");
      if (!measured) continue;
      cold.push(c.total);
      traces.cold.push(c.trace as Trace & { first: number });
      pooled.push(p.total);
      traces.pool.push(p.trace as Trace & { first: number });
      if (p.claimed) claimed++;
      baseClient.push(bc);
      baseServer.push(bs);
      process.stderr.write(`run ${i - WARMUP + 1}/${runs}: cold ${c.total.toFixed(0)} ms, pool ${p.total.toFixed(0)} ms, direct ${bc.toFixed(0)} / ${bs.toFixed(0)} ms\n`);
    }

    const diff = (a: number[], b: number[]) => a.map((x, i) => x - (b[i] ?? NaN));
    const breakdown = (ts: (Trace & { first: number })[]) => {
      const seg = (name: string, f: (x: Trace & { first: number }) => number) => summarize(name, ts.map(f));
      return [
        seg("POST /v1/runs → session start begins (auth, run record, audit, agent principal)", (x) => x.startBegin!),
        seg("session start (Sessions.start: fresh sandbox or pool claim)", (x) => x.startEnd! - x.startBegin!),
        seg("run → running, then the baseline exec begins", (x) => x.gitBegin! - x.startEnd!),
        seg("baseline: git init + add -A + commit of /workspace (one exec)", (x) => x.gitEnd! - x.gitBegin!),
        seg("turn set-up (run, session, version spec, prepare) → mkdir exec", (x) => x.mkdirBegin! - x.gitEnd!),
        seg("mkdir -p of the files' directories (one exec)", (x) => x.mkdirEnd! - x.mkdirBegin!),
        seg(`file writes (${ts[0]?.files ?? 0}, one after another)`, (x) => x.filesEnd! - x.mkdirEnd!),
        seg("transcript append + audit → CLI exec called", (x) => x.cliExec! - x.filesEnd!),
        seg("CLI exec → first model request (the CLI's own start)", (x) => x.first - x.cliExec!),
      ];
    };

    // ---- each step on its own, in a running session ----
    const steps = await (async () => {
      const n = Math.max(5, Math.min(runs, 20));
      const baselineScript = (dir: string, extra = "") =>
        `set -e; export GIT_DIR=${dir} GIT_WORK_TREE=/workspace; mkdir -p ${dir}; git init -q; ` +
        `git ${extra}-c user.name=paddock -c user.email=paddock@localhost add -A . 2>/dev/null || true; ` +
        `git ${extra}-c user.name=paddock -c user.email=paddock@localhost commit -q --allow-empty --no-verify -m baseline`;
      const ok = async (what: string, r: Promise<{ exitCode: number | null }>) => {
        const { exitCode } = await r;
        if (exitCode !== 0) throw new Error(`${what} exited ${exitCode}`);
      };
      const git = (id: string, dir: string, extra = "") => ok("the baseline git commit", sessions.exec(id, { argv: ["/bin/sh", "-c", baselineScript(dir, extra)], cwd: "/workspace", timeoutMs: 600_000 }));
      /** runs.ts's file step under `root`: one mkdir exec, then each file written in turn (or all at once). */
      const writeAll = async (id: string, root: string, parallel: boolean) => {
        await ok("mkdir", sessions.exec(id, { argv: ["mkdir", "-p", "--", ...dirs.map((d) => `${root}${d}`)], cwd: "/workspace" }));
        if (parallel) await Promise.all(files.map((f) => sessions.writeFile(id, `${root}${f.path}`, Buffer.from(f.content), f.mode ?? 0o644)));
        else for (const f of files) await sessions.writeFile(id, `${root}${f.path}`, Buffer.from(f.content), f.mode ?? 0o644);
      };
      const s = await sessions.start(COLD, { startedBy: "admin", agent: null });
      try {
        const execTrue: number[] = [];
        const gitTemplate: number[] = [];
        const mkdir: number[] = [];
        const afterGit: number[] = [];
        const write: number[] = [];
        const serial: number[] = [];
        const overlapped: number[] = [];
        for (let i = 0; i < n; i++) {
          execTrue.push(await time(() => sessions.exec(s.id, { argv: ["true"], cwd: "/workspace" })));
          mkdir.push(await time(() => ok("mkdir", sessions.exec(s.id, { argv: ["mkdir", "-p", "--", ...dirs.map((d) => `/tmp/m${i}${d}`)], cwd: "/workspace" }))));
          write.push(await time(() => sessions.writeFile(s.id, `/tmp/w${i}.json`, Buffer.from(files[0]?.content ?? "{}"), 0o644)));
          gitTemplate.push(await time(() => git(s.id, `/tmp/b${i}.git`)));
          // An exec right after the baseline commit, as runs.ts's mkdir is.
          afterGit.push(await time(() => sessions.exec(s.id, { argv: ["true"], cwd: "/workspace" })));
          // As runs.ts does it now: baseline, then mkdir, then the files one by one.
          serial.push(await time(async () => {
            await git(s.id, `/tmp/s${i}.git`);
            await writeAll(s.id, `/tmp/s${i}`, false);
          }));
          // The same work overlapped: the baseline (it reads /workspace only) beside the files (under ~).
          overlapped.push(await time(() => Promise.all([git(s.id, `/tmp/o${i}.git`), writeAll(s.id, `/tmp/o${i}`, true)])));
        }
        // A mid-sized repository's worth of small files in /workspace (2 KiB of random bytes, base64).
        const mk = await sessions.exec(s.id, {
          argv: ["/bin/sh", "-c", `mkdir -p /workspace/src && cd /workspace/src && i=0; while [ $i -lt ${workspaceFiles} ]; do d=d$((i % 50)); mkdir -p $d; head -c 2048 /dev/urandom | base64 > $d/f$i.txt; i=$((i+1)); done`],
          cwd: "/workspace",
          timeoutMs: 600_000,
        });
        if (mk.exitCode !== 0) throw new Error(`filling /workspace failed (${mk.exitCode})`);
        const gitBig: number[] = [];
        const gitBigRaw: number[] = [];
        for (let i = 0; i < 3; i++) {
          gitBig.push(await time(() => git(s.id, `/tmp/big${i}.git`)));
          gitBigRaw.push(await time(() => git(s.id, `/tmp/raw${i}.git`, "-c core.looseCompression=0 ")));
        }
        return [
          summarize("exec `true` via Sessions.exec (the floor of any exec step)", execTrue),
          summarize("baseline git commit of the template's /workspace", gitTemplate),
          summarize(`baseline git commit of /workspace with ${workspaceFiles} more files of 2.7 KiB`, gitBig),
          summarize(`the same with core.looseCompression=0`, gitBigRaw),
          summarize(`mkdir -p of ${dirs.length} director${dirs.length === 1 ? "y" : "ies"} (one exec)`, mkdir),
          summarize("exec `true` right after the baseline git commit", afterGit),
          summarize("one file write (Sessions.writeFile)", write),
          summarize(`as runs.ts: baseline git, then mkdir, then ${files.length} files one by one`, serial),
          summarize(`overlapped: baseline git beside (mkdir, then ${files.length} files at once)`, overlapped),
        ];
      } finally {
        await sessions.remove(s.id);
      }
    })();

    const report = {
      benchmark: "agent-overhead",
      machine: machine(),
      layerStore: server.cp.layers.kind,
      agent: `claude-code@${claudeCode.package?.version ?? "?"}`,
      runs,
      warmup: WARMUP,
      environmentBuildMs: Math.round(buildMs),
      poolSize: 1,
      claimedFromPool: claimed,
      baseline: summarize("direct: client sessions.exec (WebSocket) of the CLI argv → first model request", baseClient),
      results: [
        summarize("(a) run, cold session: POST /v1/runs → first model request", cold),
        summarize("(a) run, pool claim: POST /v1/runs → first model request", pooled),
        summarize("(b) direct: client sessions.exec (WebSocket) of the CLI argv → first model request", baseClient),
        summarize("(b') direct: Sessions.exec in the server process (as runs.ts does) → first model request", baseServer),
        summarize("Paddock's part, cold session: POST /v1/runs → CLI exec called (server marks)", traces.cold.map((x) => x.cliExec!)),
        summarize("Paddock's part, pool claim: POST /v1/runs → CLI exec called (server marks)", traces.pool.map((x) => x.cliExec!)),
        summarize("CLI exec called → first model request, in the runs (compare b')", [...traces.cold, ...traces.pool].map((x) => x.first - x.cliExec!)),
        summarize("added (a − b), cold session, paired per iteration", diff(cold, baseClient)),
        summarize("added (a − b), pool claim, paired per iteration", diff(pooled, baseClient)),
        summarize("added (a − b'), cold session, paired per iteration", diff(cold, baseServer)),
        summarize("added (a − b'), pool claim, paired per iteration", diff(pooled, baseServer)),
      ],
      breakdown: { coldSession: breakdown(traces.cold), poolClaim: breakdown(traces.pool) },
      steps,
      targets: { addedP50Ms: 100 },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    trace = null;
    await client.pools.set(POOLED, { min: 0 }).catch(() => undefined);
    await server.cp.pools.drain().catch(() => undefined);
    await server.cp.pools.idle();
    await server.cp.pools.drain().catch(() => undefined);
    await t.cleanup();
    await fake.close();
  }
}

await main();
