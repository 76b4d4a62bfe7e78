/** `paddock run ENV --prompt …` and `paddock runs …` (docs/agents.md). */
import type { Command } from "commander";
import type { PaddockClient } from "../client/index.ts";
import type { Run, RunEvent } from "../core/index.ts";
import { invalid } from "../core/index.ts";
import { printJson, printTable } from "./output.ts";

const OUTCOMES = ["keep", "snapshot", "stop"];

/** One transcript entry as a line for people. */
export function describeEvent(e: RunEvent): string | null {
  const ev = e.event as Record<string, unknown> & { type: string };
  const s = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));
  const short = (t: string, n = 400) => (t.length > n ? `${t.slice(0, n)}…` : t);
  switch (ev.type) {
    case "turn": return `── turn ${e.turn}: ${short(s(ev.prompt), 200)}`;
    case "started": return null;
    case "message": return ev.role === "assistant" ? `agent: ${short(s(ev.text), 2000)}` : null;
    case "tool_call": return `  → ${s(ev.tool)}${ev.command ? `: ${short(s(ev.command), 300)}` : ""}`;
    case "tool_result": return `  ${ev.denied ? "✗ denied" : ev.isError ? "✗" : "←"} ${short(s(ev.output).trim().split("\n").slice(0, 3).join(" / "), 300)}`;
    case "usage": return null;
    case "result": return null;
    case "error": return `error: ${s(ev.message)}`;
    case "check": return `check ${s(ev.name)}: ${ev.passed ? "passed" : `FAILED (exit ${s(ev.exitCode)})`}`;
    case "agent_exit": return ev.exitCode === 0 ? null : `agent exited with status ${s(ev.exitCode)}${ev.stderr ? `: ${short(s(ev.stderr), 300)}` : ""}`;
    case "state": return `── ${s(ev.state)}${ev.error ? `: ${s(ev.error)}` : ""}`;
    default: return null;
  }
}

function summarise(run: Run): string {
  const r = run.result;
  const lines = [`run ${run.id} (${run.agent} in ${run.environment}, session ${run.sessionId ?? "-"}): ${run.state}${run.error ? ` — ${run.error}` : ""}`];
  if (r) {
    if (r.summary) lines.push(`summary: ${r.summary}`);
    lines.push(`changed: ${r.changedFiles.length ? r.changedFiles.join(", ") : "nothing"}`);
    for (const c of r.checks) lines.push(`check ${c.name}: ${c.passed ? "passed" : `FAILED (exit ${c.exitCode})`}`);
    lines.push(`tokens: ${r.inputTokens} in, ${r.outputTokens} out${r.costUsd !== null ? `, $${r.costUsd.toFixed(4)}` : ""}`);
    if (r.snapshotId) lines.push(`snapshot: ${r.snapshotId}`);
  }
  if (run.state === "idle") lines.push(`follow up: paddock runs send ${run.id} --prompt "…"`);
  return lines.join("\n") + "\n";
}

/** Exit status: 0 when the agent finished without error and every check passed. */
function exitOf(run: Run): number {
  if (run.state === "failed" || run.state === "cancelled") return 1;
  return run.result && !run.result.isError && run.result.checksPassed ? 0 : 1;
}

async function follow(client: PaddockClient, id: string, json: boolean, after = 0): Promise<Run> {
  for await (const e of client.runs.follow(id, after)) {
    if (json) process.stdout.write(JSON.stringify(e) + "\n");
    else {
      const line = describeEvent(e);
      if (line !== null) process.stderr.write(line + "\n");
    }
  }
  return client.runs.get(id);
}

export function registerRunCommands(program: Command, client: () => PaddockClient): void {
  program
    .command("run <environment>")
    .description("start a coding agent in a new session of ENVIRONMENT with a prompt; streams the transcript, then prints the summary, changes and checks")
    .requiredOption("-p, --prompt <text>", "what the agent should do")
    .option("--agent <name>", "claude-code, codex, gemini, copilot, opencode, cursor or devin (default: the environment's first agent)")
    .option("--outcome <outcome>", "after the turn: keep the session for follow-ups, snapshot it and stop, or stop (default: the environment's agent.outcome)")
    .option("-d, --detach", "print the run's id and return at once")
    .option("--json", "NDJSON transcript on stdout, then the run object")
    .action(async (environment: string, o: { prompt: string; agent?: string; outcome?: string; detach?: boolean; json?: boolean }) => {
      if (o.outcome !== undefined && !OUTCOMES.includes(o.outcome)) throw invalid(`--outcome ${JSON.stringify(o.outcome)}: use keep, snapshot or stop`);
      const c = client();
      const run = await c.runs.start({ environment, prompt: o.prompt, ...(o.agent ? { agent: o.agent } : {}), ...(o.outcome ? { outcome: o.outcome as Run["outcome"] } : {}) });
      if (o.detach) {
        if (o.json) printJson(run);
        else process.stdout.write(run.id + "\n");
        return;
      }
      if (!o.json) process.stderr.write(`run ${run.id} started (${run.agent} in ${environment})\n`);
      const done = await follow(c, run.id, o.json ?? false);
      if (o.json) printJson(done);
      else process.stdout.write(summarise(done));
      process.exitCode = exitOf(done);
    });

  const runs = program.command("runs").description("agent runs: list, show, transcripts, follow-ups, cancel");
  runs
    .command("list")
    .description("list runs, newest first")
    .option("--env <name>", "only runs of this environment")
    .option("--json", "print JSON")
    .action(async (o: { env?: string; json?: boolean }) => {
      const list = await client().runs.list(o.env ? { environment: o.env } : {});
      if (o.json) return printJson(list);
      printTable(["ID", "AGENT", "ENVIRONMENT", "STATE", "BY", "TRIGGER", "CREATED"], list.map((r) => [r.id, r.agent, r.environment, r.state, r.startedBy, r.trigger ? `${r.trigger.source}/${r.trigger.name}` : "-", r.createdAt]));
    });
  runs
    .command("show <id>")
    .description("one run: state, summary, changes, checks; --diff prints the diff")
    .option("--diff", "print the diff of the working directory")
    .option("--json", "print JSON")
    .action(async (id: string, o: { diff?: boolean; json?: boolean }) => {
      const run = await client().runs.get(id);
      if (o.json) return printJson(run);
      process.stdout.write(summarise(run));
      if (o.diff && run.result?.diff) process.stdout.write(run.result.diff);
    });
  runs
    .command("logs <id>")
    .description("the run's transcript; --follow keeps printing until the turn is over")
    .option("-f, --follow", "follow the live transcript")
    .option("--json", "NDJSON")
    .action(async (id: string, o: { follow?: boolean; json?: boolean }) => {
      const c = client();
      if (o.follow) {
        await follow(c, id, o.json ?? false);
        return;
      }
      for (const e of await c.runs.events(id)) {
        if (o.json) process.stdout.write(JSON.stringify(e) + "\n");
        else {
          const line = describeEvent(e);
          if (line !== null) process.stdout.write(line + "\n");
        }
      }
    });
  runs
    .command("send <id>")
    .description("a follow-up prompt to an idle run; streams the new turn")
    .requiredOption("-p, --prompt <text>", "the follow-up")
    .option("--json", "NDJSON transcript, then the run object")
    .action(async (id: string, o: { prompt: string; json?: boolean }) => {
      const c = client();
      const last = (await c.runs.events(id)).at(-1)?.seq ?? 0;
      await c.runs.followUp(id, o.prompt);
      const done = await follow(c, id, o.json ?? false, last);
      if (o.json) printJson(done);
      else process.stdout.write(summarise(done));
      process.exitCode = exitOf(done);
    });
  runs
    .command("cancel <id>")
    .description("stop the agent now")
    .action(async (id: string) => {
      const run = await client().runs.cancel(id);
      process.stdout.write(`${run.id}: ${run.state}\n`);
    });
}
