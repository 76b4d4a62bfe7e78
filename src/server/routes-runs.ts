/**
 * Agent run routes (docs/agents.md): start a run, read it and its transcript (also as a live
 * NDJSON stream), send a follow-up, cancel.
 */
import { z } from "zod";
import type { ControlPlane } from "../control/index.ts";
import { readableEnvironments } from "./auth.ts";
import { caller, type Route, type Scope } from "./routes.ts";

const IdParams = z.object({ id: z.string().min(1) });

const Outcome = z.enum(["keep", "snapshot", "stop"]);
export const StartRunBody = z.object({
  environment: z.string().min(1).describe("The environment to run the agent in (it must install the agent: `agent:` in its file)."),
  agent: z.string().min(1).optional().describe("claude-code, codex, gemini, copilot, opencode, cursor or devin; default: the environment's first agent.cli."),
  prompt: z.string().min(1).max(100_000).describe("What the agent should do."),
  outcome: Outcome.optional().describe("After the turn: keep the session for follow-ups, snapshot it and stop, or stop. Default: the environment's agent.outcome."),
});
const FollowUpBody = z.object({ prompt: z.string().min(1).max(100_000) });
const EventsQuery = z.object({
  after: z.coerce.number().int().min(0).optional().describe("Only entries with a greater seq."),
  follow: z.enum(["1", "true", "0", "false"]).optional().describe("Stream (NDJSON) until the run's turn is over."),
});

const Check = z.object({ name: z.string(), command: z.string(), exitCode: z.number(), passed: z.boolean(), durationMs: z.number(), outputTail: z.string() });
export const RunSchema = z.object({
  id: z.string(),
  environment: z.string(),
  version: z.number(),
  sessionId: z.string().nullable(),
  agent: z.string(),
  startedBy: z.string(),
  trigger: z.object({ name: z.string(), source: z.string(), deliveryId: z.string() }).nullable(),
  prompt: z.string(),
  outcome: Outcome,
  state: z.enum(["starting", "running", "idle", "done", "failed", "cancelled"]),
  turns: z.number(),
  agentSessionId: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  endedAt: z.string().nullable(),
  result: z
    .object({
      summary: z.string(), isError: z.boolean(), diff: z.string().nullable(), changedFiles: z.array(z.string()), checks: z.array(Check), checksPassed: z.boolean(),
      inputTokens: z.number(), outputTokens: z.number(), costUsd: z.number().nullable(), snapshotId: z.string().nullable(),
    })
    .nullable(),
  error: z.string().nullable(),
});
const RunEventSchema = z.object({ runId: z.string(), seq: z.number(), turn: z.number(), time: z.string(), event: z.object({ type: z.string() }).passthrough() });

const runScope = async ({ cp, params }: { cp: ControlPlane; params: Record<string, string> }): Promise<Scope> => {
  const run = await cp.runs.get(params.id ?? "");
  return { environment: run.environment, session: run.sessionId ? await cp.store.getSession(run.sessionId) : null };
};

export const runRoutes: Route[] = [
  {
    method: "POST",
    path: "/v1/runs",
    operationId: "startRun",
    access: { kind: "environment", permission: "write" },
    scope: async ({ body }) => ({ environment: (body as z.infer<typeof StartRunBody>).environment, session: null }),
    summary:
      "Start a coding agent in a new session of the environment, headless, acting for the caller. Answers at once (state starting); follow the transcript with GET /v1/runs/{id}/events?follow=1.",
    body: StartRunBody,
    response: { status: 201, schema: RunSchema },
    handler: async (ctx) => {
      const b = ctx.body as z.infer<typeof StartRunBody>;
      const run = await ctx.cp.runs.start({ environment: b.environment, prompt: b.prompt, ...(b.agent ? { agent: b.agent } : {}), ...(b.outcome ? { outcome: b.outcome } : {}) }, caller(ctx));
      ctx.reply.code(201);
      return run;
    },
  },
  {
    method: "GET",
    path: "/v1/runs",
    operationId: "listRuns",
    access: { kind: "authenticated" },
    filtered: true,
    summary: "Runs, newest first (only those of environments the caller may read).",
    query: z.object({ environment: z.string().optional() }),
    response: { status: 200, schema: z.array(RunSchema) },
    handler: async (ctx) => {
      const readable = await readableEnvironments(ctx.cp, caller(ctx));
      const out = [];
      for (const r of await ctx.cp.runs.list(ctx.query.environment ? { environment: ctx.query.environment } : {})) if (await readable(r.environment)) out.push(r);
      return out;
    },
  },
  {
    method: "GET",
    path: "/v1/runs/:id",
    operationId: "getRun",
    access: { kind: "environment", permission: "read" },
    scope: runScope,
    summary: "One run: its state and, after a turn, the summary, the diff, the checks' results and the outcome.",
    params: IdParams,
    response: { status: 200, schema: RunSchema },
    handler: async ({ cp, params }) => cp.runs.get(params.id ?? ""),
  },
  {
    method: "GET",
    path: "/v1/runs/:id/events",
    operationId: "getRunEvents",
    access: { kind: "environment", permission: "read" },
    scope: runScope,
    summary:
      "The run's transcript (secrets redacted): normalised agent events (message, tool_call, tool_result, usage, result) and run events (turn, check, agent_exit, state). With follow=1, NDJSON that stays open until the turn is over.",
    params: IdParams,
    query: EventsQuery,
    response: { status: 200, schema: "ndjson", description: "With follow=1, one RunEvent per line; else a JSON array of them." },
    handler: async (ctx) => {
      const { cp, params, query, reply } = ctx;
      const id = params.id ?? "";
      const after = Number(query.after ?? 0);
      if (query.follow !== "1" && query.follow !== "true") return z.array(RunEventSchema).parse(await cp.runs.events(id, after));
      const abort = new AbortController();
      reply.raw.on("close", () => abort.abort());
      reply.hijack();
      reply.raw.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
      try {
        for await (const e of cp.runs.follow(id, after, abort.signal)) reply.raw.write(JSON.stringify(e) + "\n");
      } finally {
        reply.raw.end();
      }
      return undefined;
    },
  },
  {
    method: "POST",
    path: "/v1/runs/:id/messages",
    operationId: "followUpRun",
    access: { kind: "environment", permission: "write" },
    scope: runScope,
    summary: "A follow-up prompt to an idle run (its session was kept): the agent resumes the same conversation.",
    params: IdParams,
    body: FollowUpBody,
    response: { status: 202, schema: RunSchema },
    handler: async (ctx) => {
      const run = await ctx.cp.runs.followUp(ctx.params.id ?? "", (ctx.body as z.infer<typeof FollowUpBody>).prompt, caller(ctx));
      ctx.reply.code(202);
      return run;
    },
  },
  {
    method: "POST",
    path: "/v1/runs/:id/cancel",
    operationId: "cancelRun",
    access: { kind: "environment", permission: "write" },
    scope: runScope,
    summary: "Stop the agent now. The run ends cancelled; its session is kept only when the outcome is keep.",
    params: IdParams,
    response: { status: 200, schema: RunSchema },
    handler: async (ctx) => ctx.cp.runs.cancel(ctx.params.id ?? "", caller(ctx)),
  },
];
