/**
 * Agent runs: a coding agent working in a session, headless, with its machine-readable stream
 * turned into a stored, redacted transcript (docs/agents.md).
 *
 * A run starts a session of the environment for the person who asked (or whom a trigger names)
 * with the agent's principal acting in it, writes the agent's context (instructions, skills, MCP
 * servers, mirrored guardrails) into it, and runs the agent's CLI through the session's exec path:
 * the exec guard and the egress gateway hold everything the agent starts, and its tool calls are
 * checked through http://paddock.internal by its hooks. After each turn the environment's
 * `agent.checks` run, the diff of the working directory is taken, and the outcome applies: keep
 * the session for follow-ups, snapshot it and stop, or stop. Hosted agents (Devin) are driven
 * from here over their vendor's API, with the key from the vault; nothing runs in a sandbox.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { AgentAdapter, AgentContext, AgentEvent, AgentLaunch, HostedAgent, StreamParser } from "../agents/index.ts";
import { AGENT_PACKAGES, AGENT_ROOT, requireAgent } from "../agents/index.ts";
import type { AgentConfig, EnvironmentSpec } from "../config/index.ts";
import type { CheckResult, Principal, Run, RunEvent, RunOutcome, RunOutput, Session, Store } from "../core/index.ts";
import { PaddockError, invalid, notFound } from "../core/index.ts";
import type { AuditLog, Identities } from "../guard/index.ts";
import { secretScrubber } from "../guard/index.ts";
import type { Access } from "./access.ts";
import type { Sessions } from "./sessions.ts";
import type { Snapshots } from "./snapshots.ts";

/** Where the session user's files live inside a local sandbox. */
const SESSION_HOME = "/home/paddock";
const WORKDIR = "/workspace";
const CA_FILE = "/etc/paddock/ca.pem";
const CHECK_URL = "http://paddock.internal/v1/check";
/** The run's baseline of the working directory: a git directory of its own, outside the work tree (so the agent's own repositories are untouched). */
const BASELINE_GIT = "/home/paddock/.paddock/baseline.git";
const MAX_DIFF_BYTES = 256 * 1024;
const MAX_TAIL_BYTES = 8 * 1024;
const MAX_PROMPT_CHARS = 100_000;
/** A line longer than this is cut before parsing (a runaway tool output must not hold the control plane's memory). */
const MAX_LINE_BYTES = 4 * 1024 * 1024;
const HOSTED_POLL_MS = 2_000;
/** The role agent principals get when a run creates them; environments grant it in `rbac:` (e.g. `agent: [read, write]`). */
export const AGENT_ROLE = "agent";

export interface StartRunRequest {
  environment: string;
  /** Default: the environment's first `agent.cli`. */
  agent?: string;
  prompt: string;
  /** Default: the environment's `agent.outcome`. */
  outcome?: RunOutcome;
  trigger?: { name: string; source: string; deliveryId: string };
}

export interface RunsDeps {
  store: Store;
  sessions: Sessions;
  snapshots: Snapshots;
  access: Access;
  audit: AuditLog;
  identities: Identities;
  secretValues: () => Promise<string[]>;
  /** The real key of a hosted agent's vendor (from the vault, as the environment's sessions would get it); null when unset. */
  hostedKey: (name: string, environment: string, agent: string) => Promise<string | null>;
  /** Base URLs of hosted agents' APIs by agent name (tests point them at local fakes). */
  hostedBaseUrls?: Record<string, string>;
  log: (line: string) => void;
}

type Listener = (e: RunEvent | null) => void;

interface Active {
  abort: AbortController;
  /** Resolves when the turn's work (agent, checks, outcome) is over. */
  done: Promise<void>;
}

export class Runs {
  readonly #active = new Map<string, Active>();
  readonly #emitter = new EventEmitter();
  readonly #seq = new Map<string, number>();
  /** Runs written by this process serialise their store writes per run (events keep their order). */
  readonly #writes = new Map<string, Promise<void>>();
  #closed = false;

  constructor(private readonly deps: RunsDeps) {
    this.#emitter.setMaxListeners(0);
  }

  /**
   * Start a run: resolves once the run is recorded (state `starting`); the session, the agent and
   * its checks go on in the background. Needs `write` on the environment, as a session start does.
   */
  async start(req: StartRunRequest, actor: Principal): Promise<Run> {
    if (actor.kind !== "human") throw new PaddockError("forbidden", `${actor.name} is an agent: a run acts for a person, so a person (or a trigger naming one) must start it`);
    const prompt = req.prompt.trim();
    if (prompt === "") throw invalid("the prompt is empty: say what the agent should do");
    if (prompt.length > MAX_PROMPT_CHARS) throw invalid(`the prompt is ${prompt.length} characters; at most ${MAX_PROMPT_CHARS}`);
    await this.deps.access.require(actor, "write", req.environment, null);
    const spec = await this.deps.access.rbacSpec(req.environment);
    const env = await this.deps.store.getEnvironment(req.environment);
    if (!spec || !env || env.currentVersion === null) throw notFound("environment", req.environment);
    const config = agentConfigOf(spec, req.environment);
    const name = req.agent ?? config.agents[0] ?? "";
    if (!config.agents.includes(name as AgentConfig["agents"][number]))
      throw invalid(`environment ${req.environment} does not install agent ${JSON.stringify(name)}; its agent.cli: ${config.agents.join(", ")}`);
    const agent = requireAgent(name);
    if ("cli" in agent) {
      const vendor = agent.cli.vendor;
      if (!spec.secrets.some((s) => s.name === vendor.keyEnv))
        throw invalid(`environment ${req.environment} gives ${name} no ${vendor.keyEnv}: add it to secrets: (e.g. { name: ${vendor.keyEnv}, hosts: [${vendor.hosts.join(", ")}] }) and set its value with \`paddock secret set ${vendor.keyEnv}\``);
    } else if ((await this.deps.hostedKey(agent.hosted.vendor.keyEnv, req.environment, name)) === null) {
      // A hosted agent's key is used by the control plane only: it is not among the sandbox's secrets.
      throw invalid(`${agent.hosted.title} needs its API key in the vault: paddock secret set ${agent.hosted.vendor.keyEnv}`);
    }
    const agentPrincipal = await this.#agentPrincipal(name);
    const now = new Date().toISOString();
    const run: Run = {
      id: `run-${randomBytes(8).toString("hex")}`,
      environment: req.environment,
      version: env.currentVersion,
      sessionId: null,
      agent: name,
      startedBy: actor.name,
      trigger: req.trigger ?? null,
      prompt: await this.#redact(prompt),
      // A hosted agent has no session of ours to keep or snapshot: its run ends with its turn.
      outcome: "cli" in agent ? (req.outcome ?? config.outcome) : "stop",
      state: "starting",
      turns: 1,
      agentSessionId: null,
      createdAt: now,
      updatedAt: now,
      endedAt: null,
      result: null,
      error: null,
    };
    await this.deps.store.createRun(run);
    this.#seq.set(run.id, 0);
    await this.#audit(run, actor, "run.start", "allowed", { agent: name, outcome: run.outcome, trigger: run.trigger });
    const abort = new AbortController();
    const done = ("cli" in agent ? this.#runCli(run, agent.cli, config, prompt, actor, agentPrincipal, abort.signal) : this.#runHosted(run, agent.hosted, prompt, abort.signal))
      .catch((err: unknown) => this.#fail(run.id, err))
      .finally(() => {
        this.#active.delete(run.id);
        void this.#forgetIfFinal(run.id);
      });
    this.#active.set(run.id, { abort, done });
    return run;
  }

  /** A follow-up prompt to an `idle` run (its session was kept). */
  async followUp(id: string, promptText: string, actor: Principal): Promise<Run> {
    const run = await this.get(id);
    await this.deps.access.require(actor, "write", run.environment, null);
    const prompt = promptText.trim();
    if (prompt === "") throw invalid("the prompt is empty: say what the agent should do");
    if (run.state !== "idle") throw new PaddockError("conflict", `run ${id} is ${run.state}: follow-ups go to a run whose turn ended and whose session was kept (state idle)`);
    if (run.sessionId === null) throw new PaddockError("conflict", `run ${id} has no session to continue in`);
    const spec = await this.deps.access.versionSpec(run.environment, run.version);
    if (!spec) throw notFound("environment version", `${run.environment} v${run.version}`);
    const agent = requireAgent(run.agent);
    if (!("cli" in agent)) throw new PaddockError("conflict", `${run.agent} is hosted: its runs end with their session on the vendor's side`);
    if (run.agentSessionId === null) throw new PaddockError("conflict", `${run.agent} never said which conversation to resume in run ${id}`);
    const agentPrincipal = await this.#agentPrincipal(run.agent);
    const next: Run = { ...run, state: "running", turns: run.turns + 1, updatedAt: new Date().toISOString() };
    await this.deps.store.updateRun(next);
    await this.#audit(next, actor, "run.followup", "allowed", { turn: next.turns });
    const abort = new AbortController();
    const config = agentConfigOf(spec.spec, run.environment);
    const done = this.#turn(next, agent.cli, config, actor, agentPrincipal, abort.signal, (ctx) => agent.cli.resume(prompt, run.agentSessionId ?? "", ctx), prompt)
      .catch((err: unknown) => this.#fail(run.id, err))
      .finally(() => {
        this.#active.delete(run.id);
        void this.#forgetIfFinal(run.id);
      });
    this.#active.set(run.id, { abort, done });
    return next;
  }

  /** Stop the agent now; the run ends `cancelled` (its session is kept only when the outcome is `keep`). */
  async cancel(id: string, actor: Principal): Promise<Run> {
    const run = await this.get(id);
    await this.deps.access.require(actor, "write", run.environment, null);
    if (isFinal(run.state)) return run;
    const active = this.#active.get(id);
    await this.#update(id, (r) => ({ ...r, state: "cancelled", error: `cancelled by ${actor.name}`, endedAt: new Date().toISOString() }));
    active?.abort.abort(new PaddockError("conflict", `cancelled by ${actor.name}`));
    await active?.done;
    const after = await this.get(id);
    if (after.sessionId && after.outcome !== "keep") await this.deps.sessions.stop(after.sessionId, `run ${id} cancelled`).catch(() => undefined);
    await this.#audit(after, actor, "run.cancel", "allowed", {});
    this.#emit(id, null);
    return after;
  }

  async get(id: string): Promise<Run> {
    const run = await this.deps.store.getRun(id);
    if (!run) throw notFound("run", id);
    return run;
  }

  list(filter?: { environment?: string; limit?: number }): Promise<Run[]> {
    return this.deps.store.listRuns(filter);
  }

  events(id: string, afterSeq = 0, limit = 1000): Promise<RunEvent[]> {
    return this.deps.store.listRunEvents(id, afterSeq, limit);
  }

  /**
   * Every transcript entry after `afterSeq`, then each new one as it is stored, until the run's turn
   * is over (idle or final) or `signal` aborts.
   */
  async *follow(id: string, afterSeq = 0, signal?: AbortSignal): AsyncGenerator<RunEvent> {
    let last = afterSeq;
    const queue: (RunEvent | null)[] = [];
    let wake: (() => void) | null = null;
    const listener: Listener = (e) => {
      queue.push(e);
      wake?.();
    };
    this.#emitter.on(id, listener);
    const onAbort = () => wake?.();
    signal?.addEventListener("abort", onAbort);
    try {
      for (;;) {
        // The store first (what was written before we listened, or by another process), then live events.
        for (const e of await this.events(id, last)) {
          last = e.seq;
          yield e;
        }
        const run = await this.get(id);
        if (run.state !== "starting" && run.state !== "running") {
          await this.#writes.get(id);
          for (const e of await this.events(id, last)) {
            last = e.seq;
            yield e;
          }
          return;
        }
        if (signal?.aborted) return;
        if (queue.length === 0) await new Promise<void>((r) => (wake = r));
        wake = null;
        while (queue.length) {
          const e = queue.shift();
          if (e && e.seq > last) {
            last = e.seq;
            yield e;
          }
        }
      }
    } finally {
      this.#emitter.off(id, listener);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Resolves with the run once its current turn is over (idle or final). */
  async wait(id: string, signal?: AbortSignal): Promise<Run> {
    for await (const _ of this.follow(id, Number.MAX_SAFE_INTEGER, signal)) {
      // only waiting for the end
    }
    return this.get(id);
  }

  /** After a restart: a turn that was running lost its agent process with the exec connection. */
  async reconcile(): Promise<number> {
    const stale = await this.deps.store.listRuns({ states: ["starting", "running"] });
    for (const r of stale)
      await this.deps.store.updateRun({ ...r, state: "failed", error: "interrupted: the control plane restarted while the agent was working", endedAt: new Date().toISOString(), updatedAt: new Date().toISOString() });
    return stale.length;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const a of this.#active.values()) a.abort.abort(new PaddockError("unavailable", "the control plane is shutting down"));
    await Promise.all([...this.#active.values()].map((a) => a.done));
  }

  // ---- the work ----

  async #runCli(run: Run, adapter: AgentAdapter, config: AgentConfig, prompt: string, human: Principal, agent: Principal, signal: AbortSignal): Promise<void> {
    const session = await this.deps.sessions.start(run.environment, { startedBy: human.name, agent: agent.name });
    let current = await this.#update(run.id, (r) => ({ ...r, sessionId: session.id, state: "running" }));
    if (signal.aborted) return;
    // The baseline only reads /workspace and the context files go under the home directory: the
    // two overlap, and the agent starts once both are done (bench/agent-overhead.ts).
    const baseline = this.#baseline(session.id, signal);
    baseline.catch(() => undefined);
    current = await this.get(run.id);
    await this.#turn(current, adapter, config, human, agent, signal, (ctx) => adapter.start(prompt, ctx), prompt, baseline);
  }

  async #turn(run: Run, adapter: AgentAdapter, config: AgentConfig, human: Principal, agent: Principal, signal: AbortSignal, launchOf: (ctx: AgentContext) => AgentLaunch, prompt: string, ready?: Promise<void>): Promise<void> {
    const sessionId = run.sessionId ?? "";
    const session = await this.deps.sessions.get(sessionId);
    const spec = await this.deps.access.versionSpec(run.environment, run.version);
    if (!spec) throw notFound("environment version", `${run.environment} v${run.version}`);
    const ctx = contextOf(adapter, config, spec.spec);
    const prepared = adapter.prepare(ctx);
    const launch = launchOf(ctx);
    const files = [...prepared.files, ...launch.files];
    // The file API writes into existing directories only: make theirs first, as the session user.
    const dirs = [...new Set(files.map((f) => f.path.slice(0, f.path.lastIndexOf("/"))).filter((d) => d.length > 1))];
    if (dirs.length) {
      const r = await this.deps.sessions.exec(sessionId, { argv: ["mkdir", "-p", "--", ...dirs], cwd: WORKDIR, signal, timeoutMs: 30_000 });
      if (r.exitCode !== 0) throw new PaddockError("unavailable", `could not create ${dirs.join(", ")} in session ${sessionId} for ${adapter.title}'s files (mkdir exit ${r.exitCode})`);
    }
    await Promise.all(files.map((f) => this.deps.sessions.writeFile(sessionId, f.path, Buffer.from(f.content), f.mode ?? 0o644)));
    await ready;
    await this.#append(run, [{ type: "turn", turn: run.turns, prompt: await this.#redact(prompt) }]);
    await this.#audit(run, agent, "run.turn", "allowed", { turn: run.turns, argv: launch.argv.map((a) => (a === prompt ? "<prompt>" : a)) }, human.name);
    const parser = adapter.parser();
    const usage = { inputTokens: 0, outputTokens: 0, costUsd: null as number | null };
    let summary = "";
    let lastAssistant = "";
    let isError = false;
    let pending: Buffer = Buffer.alloc(0);
    const stderr: Buffer[] = [];
    let stderrBytes = 0;
    const handle = (events: AgentEvent[]) => {
      for (const e of events) {
        if (e.type === "usage") {
          usage.inputTokens = Math.max(usage.inputTokens, e.inputTokens);
          usage.outputTokens = Math.max(usage.outputTokens, e.outputTokens);
          if (e.costUsd !== null) usage.costUsd = e.costUsd;
        }
        if (e.type === "result") {
          summary = e.text;
          isError = e.isError;
        }
        if (e.type === "message" && e.role === "assistant" && e.text.trim()) lastAssistant = e.text;
      }
      if (events.length) void this.#queue(run, events, human, agent);
    };
    const onStdout = (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let nl: number;
      while ((nl = pending.indexOf(10)) >= 0) {
        const line = pending.subarray(0, Math.min(nl, MAX_LINE_BYTES)).toString("utf8");
        pending = pending.subarray(nl + 1);
        if (line.trim()) handle(parser.line(line));
      }
      if (pending.length > MAX_LINE_BYTES) {
        handle(parser.line(pending.subarray(0, MAX_LINE_BYTES).toString("utf8")));
        pending = Buffer.alloc(0);
      }
    };
    const result = await this.deps.sessions.exec(sessionId, {
      argv: launch.argv,
      cwd: WORKDIR,
      env: { ...prepared.env, ...launch.env },
      signal,
      onStdout,
      onStderr: (b) => {
        if (stderrBytes < MAX_TAIL_BYTES * 4) {
          stderr.push(b);
          stderrBytes += b.length;
        }
      },
    });
    if (pending.length && pending.toString("utf8").trim()) handle(parser.line(pending.toString("utf8")));
    handle(parser.end());
    await this.#writes.get(run.id);
    if (signal.aborted) return;
    const errText = tail(Buffer.concat(stderr).toString("utf8"));
    await this.#append(run, [{ type: "agent_exit", exitCode: result.exitCode, signal: result.signal, durationMs: result.durationMs, ...(result.exitCode !== 0 && errText ? { stderr: await this.#redact(errText) } : {}) }]);
    if (!summary) summary = lastAssistant;
    if (result.exitCode !== 0 && !summary) {
      isError = true;
      summary = `${adapter.title} exited with status ${result.exitCode}${errText ? `: ${errText.split("\n").filter(Boolean).slice(-3).join(" / ")}` : ""}`;
    }
    const checks = await this.#checks(run, session, config, agent, signal);
    const diff = await this.#diff(sessionId, signal);
    const output: RunOutput = {
      summary: await this.#redact(summary),
      isError,
      diff: diff === null ? null : await this.#redact(diff.text),
      changedFiles: diff?.files ?? [],
      checks,
      checksPassed: checks.every((c) => c.passed),
      ...usage,
      snapshotId: null,
    };
    await this.#finishTurn(run.id, output, human);
  }

  /** Apply the outcome after a turn: keep (idle), or snapshot and/or stop (done). */
  async #finishTurn(id: string, output: RunOutput, human: Principal): Promise<void> {
    const run = await this.get(id);
    if (isFinal(run.state)) return;
    let snapshotId: string | null = null;
    if (run.sessionId && run.outcome === "snapshot") {
      const snap = await this.deps.snapshots.create(run.sessionId, { createdBy: human });
      snapshotId = snap.id;
    }
    if (run.sessionId && run.outcome !== "keep") await this.deps.sessions.stop(run.sessionId, `run ${id} finished (outcome ${run.outcome})`);
    const final = run.outcome === "keep" ? "idle" : "done";
    const ended = await this.#update(id, (r) => ({ ...r, state: final, result: { ...output, snapshotId }, ...(final === "done" ? { endedAt: new Date().toISOString() } : {}) }));
    await this.#append(ended, [{ type: "state", state: final, checksPassed: output.checksPassed, snapshotId }]);
    await this.#audit(ended, human, "run.end", output.isError || !output.checksPassed ? "denied" : "allowed", { state: final, checksPassed: output.checksPassed, isError: output.isError, changedFiles: output.changedFiles.slice(0, 50), snapshotId });
    this.#emit(id, null);
  }

  async #checks(run: Run, session: Session, config: AgentConfig, agent: Principal, signal: AbortSignal): Promise<CheckResult[]> {
    const out: CheckResult[] = [];
    for (const check of config.checks) {
      if (signal.aborted) break;
      const chunks: Buffer[] = [];
      const keep = (b: Buffer) => chunks.push(b);
      const r = await this.deps.sessions.exec(session.id, { argv: ["/bin/sh", "-c", check.run], cwd: WORKDIR, timeoutMs: check.timeoutMs, signal, onStdout: keep, onStderr: keep });
      const result: CheckResult = { name: check.name, command: check.run, exitCode: r.exitCode, passed: r.exitCode === 0, durationMs: r.durationMs, outputTail: await this.#redact(tail(Buffer.concat(chunks).toString("utf8"))) };
      out.push(result);
      await this.#append(run, [{ type: "check", ...result }]);
      await this.#audit(run, agent, "run.check", result.passed ? "allowed" : "denied", { name: check.name, exitCode: r.exitCode }, run.startedBy);
    }
    return out;
  }

  /** Record the working directory as it is before the agent starts, in a git directory of the run's own. */
  async #baseline(sessionId: string, signal: AbortSignal): Promise<void> {
    const script = `set -e; export GIT_DIR=${BASELINE_GIT} GIT_WORK_TREE=${WORKDIR}; mkdir -p ${BASELINE_GIT}; git init -q; ` +
      `git -c user.name=paddock -c user.email=paddock@localhost add -A . 2>/dev/null || true; ` +
      `git -c user.name=paddock -c user.email=paddock@localhost commit -q --allow-empty --no-verify -m baseline`;
    const r = await this.deps.sessions.exec(sessionId, { argv: ["/bin/sh", "-c", script], cwd: WORKDIR, signal, timeoutMs: 60_000 });
    if (r.exitCode !== 0) this.deps.log(`run baseline in ${sessionId} failed (exit ${r.exitCode}): the run's diff will be missing`);
  }

  /** The working directory's changes since the baseline (files the agent's nested repositories hold show as those repositories). */
  async #diff(sessionId: string, signal: AbortSignal): Promise<{ text: string; files: string[] } | null> {
    const git = `GIT_DIR=${BASELINE_GIT} GIT_WORK_TREE=${WORKDIR} git -c core.quotepath=off`;
    const script = `${git} rev-parse -q --verify HEAD >/dev/null || exit 3; ${git} add -A . 2>/dev/null; ${git} diff --cached --name-only HEAD; printf '\\036\\n'; ${git} diff --cached --submodule=log HEAD`;
    const chunks: Buffer[] = [];
    let bytes = 0;
    const r = await this.deps.sessions.exec(sessionId, {
      argv: ["/bin/sh", "-c", script],
      cwd: WORKDIR,
      signal,
      timeoutMs: 60_000,
      onStdout: (b) => {
        if (bytes < MAX_DIFF_BYTES + 4096) chunks.push(b);
        bytes += b.length;
      },
    });
    if (r.exitCode !== 0) return null;
    const text = Buffer.concat(chunks).toString("utf8");
    const sep = text.indexOf("\u001e\n");
    const files = (sep < 0 ? "" : text.slice(0, sep)).split("\n").filter(Boolean);
    let diff = sep < 0 ? text : text.slice(sep + 2);
    if (bytes > MAX_DIFF_BYTES) diff = `${diff.slice(0, MAX_DIFF_BYTES)}\n… diff cut at ${MAX_DIFF_BYTES / 1024} KiB (${bytes} bytes in all)\n`;
    return { text: diff, files };
  }

  async #runHosted(run: Run, hosted: HostedAgent, prompt: string, signal: AbortSignal): Promise<void> {
    const apiKey = await this.deps.hostedKey(hosted.vendor.keyEnv, run.environment, run.agent);
    if (!apiKey) throw invalid(`${hosted.title} needs its API key in the vault: paddock secret set ${hosted.vendor.keyEnv}`);
    const baseUrl = this.deps.hostedBaseUrls?.[hosted.name] ?? `https://${hosted.vendor.hosts[0] ?? ""}`;
    await this.#update(run.id, (r) => ({ ...r, state: "running" }));
    await this.#append(run, [{ type: "turn", turn: 1, prompt: await this.#redact(prompt) }]);
    const remote = await hosted.start({ prompt, apiKey, baseUrl });
    await this.#update(run.id, (r) => ({ ...r, agentSessionId: remote.id }));
    let summary = "";
    let isError = false;
    for (;;) {
      if (signal.aborted) {
        await remote.cancel().catch(() => undefined);
        return;
      }
      const { events, done } = await remote.poll(signal);
      for (const e of events)
        if (e.type === "result") {
          summary = e.text;
          isError = e.isError;
        }
      if (events.length) await this.#append(run, events);
      if (done) break;
      await new Promise<void>((r) => {
        // The vendor's API has no push: poll it, and stop waiting at once when cancelled.
        const t = setTimeout(r, HOSTED_POLL_MS);
        signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
      });
    }
    const human = await this.deps.identities.byName(run.startedBy);
    await this.#finishTurn(run.id, { summary: await this.#redact(summary), isError, diff: null, changedFiles: [], checks: [], checksPassed: true, inputTokens: 0, outputTokens: 0, costUsd: null, snapshotId: null }, human);
  }

  // ---- bookkeeping ----

  async #agentPrincipal(name: string): Promise<Principal> {
    const existing = await this.deps.store.getPrincipalByName(name);
    if (existing) {
      if (existing.kind !== "agent") throw new PaddockError("conflict", `the principal ${name} is a ${existing.kind}, not an agent: rename it so ${name} can act as the agent`);
      if (existing.disabledAt !== null) throw new PaddockError("forbidden", `the agent principal ${name} is disabled: \`paddock user enable ${name}\` or ask an admin`);
      return existing;
    }
    try {
      const { principal } = await this.deps.identities.add({ name, kind: "agent", role: AGENT_ROLE }, "created by its first run");
      await this.deps.audit.append({ time: new Date().toISOString(), actor: "system", actorKind: "system", onBehalfOf: null, action: "principal.create", target: name, environment: null, sessionId: null, decision: "allowed", rule: "first run of an agent", detail: { kind: "agent", role: AGENT_ROLE } });
      return principal;
    } catch (err) {
      const again = await this.deps.store.getPrincipalByName(name);
      if (again) return again;
      throw err;
    }
  }

  /** Events of one run are stored in order: each append waits for the previous one. */
  #queue(run: Run, events: AgentEvent[], human: Principal, agent: Principal): Promise<void> {
    const prev = this.#writes.get(run.id) ?? Promise.resolve();
    const next = prev.then(async () => {
      // In the same queue as the transcript: a read-modify-write of the run beside it could undo a
      // state change made meanwhile.
      for (const e of events) if (e.type === "started" && e.agentSessionId) await this.#update(run.id, (r) => ({ ...r, agentSessionId: e.agentSessionId }));
      await this.#append(run, events);
      // Every tool call the agent made, whatever the tool (shell, file edits, MCP), and how it ended.
      for (const e of events)
        if (e.type === "tool_call") await this.#audit(run, agent, "agent.toolcall", "allowed", { tool: e.tool, id: e.id, command: e.command, input: boundedJson(e.input, 2048) }, human.name);
        else if (e.type === "tool_result") await this.#audit(run, agent, "agent.toolresult", e.denied ? "denied" : "allowed", { id: e.id, isError: e.isError, denied: e.denied }, human.name);
    }).catch((err: unknown) => this.deps.log(`run ${run.id}: storing its transcript failed: ${err instanceof Error ? err.message : String(err)}`));
    this.#writes.set(run.id, next);
    return next;
  }

  async #append(run: Run, events: ({ type: string } & Record<string, unknown>)[]): Promise<void> {
    const scrub = secretScrubber(await this.deps.secretValues());
    const deep = (v: unknown): unknown =>
      typeof v === "string" ? scrub(v) : Array.isArray(v) ? v.map(deep) : v && typeof v === "object" ? Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, deep(x)])) : v;
    const time = new Date().toISOString();
    let seq = this.#seq.get(run.id) ?? (await this.deps.store.listRunEvents(run.id, 0, Number.MAX_SAFE_INTEGER)).at(-1)?.seq ?? 0;
    const rows: RunEvent[] = events.map((e) => ({ runId: run.id, seq: ++seq, turn: (this.#turnOf.get(run.id) ?? run.turns), time, event: deep(e) as RunEvent["event"] }));
    this.#seq.set(run.id, seq);
    await this.deps.store.appendRunEvents(rows);
    for (const r of rows) this.#emit(run.id, r);
  }

  readonly #turnOf = new Map<string, number>();

  async #update(id: string, patch: (r: Run) => Run): Promise<Run> {
    const run = await this.get(id);
    const next = { ...patch(run), updatedAt: new Date().toISOString() };
    this.#turnOf.set(id, next.turns);
    await this.deps.store.updateRun(next);
    return next;
  }

  async #fail(id: string, err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    const run = await this.deps.store.getRun(id).catch(() => null);
    if (!run || isFinal(run.state)) return;
    await this.#writes.get(id);
    const failed = await this.#update(id, (r) => ({ ...r, state: "failed", error: message.slice(0, 2000), endedAt: new Date().toISOString() }));
    await this.#append(failed, [{ type: "state", state: "failed", error: failed.error }]).catch(() => undefined);
    if (failed.sessionId && failed.outcome !== "keep" && !this.#closed) await this.deps.sessions.stop(failed.sessionId, `run ${id} failed`).catch(() => undefined);
    this.deps.log(`run ${id} failed: ${message}`);
    this.#emit(id, null);
  }

  #emit(id: string, e: RunEvent | null): void {
    this.#emitter.emit(id, e);
  }

  /** A final run takes no more events: its sequence counter and write queue go (they would grow with every run a server ever ran). */
  async #forgetIfFinal(id: string): Promise<void> {
    const run = await this.deps.store.getRun(id).catch(() => null);
    if (!run || !isFinal(run.state) || this.#active.has(id)) return;
    await this.#writes.get(id);
    this.#seq.delete(id);
    this.#writes.delete(id);
    this.#turnOf.delete(id);
  }

  async #redact(text: string): Promise<string> {
    return secretScrubber(await this.deps.secretValues())(text);
  }

  async #audit(run: Run, actor: Principal, action: string, decision: "allowed" | "denied", detail: Record<string, unknown>, onBehalfOf?: string): Promise<void> {
    await this.deps.audit.append({
      time: new Date().toISOString(),
      actor: actor.name,
      actorKind: actor.kind,
      onBehalfOf: actor.kind === "agent" ? (onBehalfOf ?? run.startedBy) : null,
      action,
      target: run.id,
      environment: run.environment,
      sessionId: run.sessionId,
      decision,
      rule: null,
      detail: { ...detail, run: run.id },
    });
  }
}

function isFinal(state: Run["state"]): boolean {
  return state === "done" || state === "failed" || state === "cancelled";
}

function agentConfigOf(spec: EnvironmentSpec, environment: string): AgentConfig {
  if (!spec.agent) throw invalid(`environment ${environment} has no agent: add e.g. "agent: claude-code" to its file and apply it`);
  return spec.agent;
}

function contextOf(adapter: AgentAdapter, config: AgentConfig, spec: EnvironmentSpec): AgentContext {
  const pkg = AGENT_PACKAGES[adapter.name];
  return {
    bin: pkg ? `${AGENT_ROOT}/${adapter.name}/node_modules/.bin/${pkg.bin}` : `/usr/local/bin/cursor-agent`,
    home: SESSION_HOME,
    cwd: WORKDIR,
    caFile: CA_FILE,
    model: config.model,
    instructions: config.instructions,
    skills: config.skills,
    mcp: config.mcp,
    commands: { allow: spec.guardrails.commands.allow, deny: spec.guardrails.commands.deny, ask: spec.guardrails.commands.ask },
    checkUrl: CHECK_URL,
    endpoint: null,
  };
}

/** JSON of a tool's input for the audit log, cut to `max` characters. */
function boundedJson(v: unknown, max: number): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? "null";
  } catch {
    text = String(v);
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function tail(text: string): string {
  return text.length > MAX_TAIL_BYTES ? `…${text.slice(-MAX_TAIL_BYTES)}` : text;
}

/** For parsers' tests and the API's docs: the shape of an event line. */
export type { StreamParser };
