/**
 * Agent runs, their transcripts, webhook deliveries and build logs in the SQLite store. Transcript entries are
 * append-only rows keyed by (run, seq), so a reader that follows a run asks for "after seq N".
 * Webhook deliveries are keys with the time first seen: the insert that finds the key taken is
 * what tells a replay or a retry from a new event, atomically.
 */
import type Database from "better-sqlite3";
import type { Run, RunEvent, RunState } from "../core/domain.ts";
import type { Store } from "../core/store.ts";
import { fromJson, timestampMs, toJson } from "./sqlite-rows.ts";

type RunRecords = Pick<Store, "createRun" | "updateRun" | "getRun" | "listRuns" | "appendRunEvents" | "listRunEvents" | "claimWebhookDelivery" | "releaseWebhookDeliveries" | "putBuildLog" | "getBuildLog">;

interface RunRow {
  id: string; environment: string; version: number; session_id: string | null; agent: string; started_by: string; trigger_json: string | null;
  prompt: string; outcome: string; state: string; turns: number; agent_session_id: string | null; created_at: string; created_ms: number;
  updated_at: string; ended_at: string | null; result_json: string | null; error: string | null;
}
interface EventRow { run_id: string; seq: number; turn: number; time: string; event_json: string }

const runToRow = (r: Run): RunRow => ({
  id: r.id, environment: r.environment, version: r.version, session_id: r.sessionId, agent: r.agent, started_by: r.startedBy,
  trigger_json: r.trigger === null ? null : toJson(r.trigger, `trigger of run ${r.id}`), prompt: r.prompt, outcome: r.outcome, state: r.state,
  turns: r.turns, agent_session_id: r.agentSessionId, created_at: r.createdAt, created_ms: timestampMs(r.createdAt, `createdAt of run ${r.id}`),
  updated_at: r.updatedAt, ended_at: r.endedAt, result_json: r.result === null ? null : toJson(r.result, `result of run ${r.id}`), error: r.error,
});
const runFromRow = (r: RunRow): Run => ({
  id: r.id, environment: r.environment, version: r.version, sessionId: r.session_id, agent: r.agent, startedBy: r.started_by,
  trigger: r.trigger_json === null ? null : (fromJson(r.trigger_json, `trigger of run ${r.id}`) as Run["trigger"]), prompt: r.prompt,
  outcome: r.outcome as Run["outcome"], state: r.state as RunState, turns: r.turns, agentSessionId: r.agent_session_id, createdAt: r.created_at,
  updatedAt: r.updated_at, endedAt: r.ended_at, result: r.result_json === null ? null : (fromJson(r.result_json, `result of run ${r.id}`) as Run["result"]),
  error: r.error,
});

export function prepareRunStatements(db: Database.Database) {
  return {
    insertRun: db.prepare<RunRow>(`INSERT INTO runs
      (id, environment, version, session_id, agent, started_by, trigger_json, prompt, outcome, state, turns, agent_session_id, created_at, created_ms, updated_at, ended_at, result_json, error)
      VALUES (@id, @environment, @version, @session_id, @agent, @started_by, @trigger_json, @prompt, @outcome, @state, @turns, @agent_session_id, @created_at, @created_ms, @updated_at, @ended_at, @result_json, @error)`),
    updateRun: db.prepare<RunRow>(`UPDATE runs SET session_id = @session_id, state = @state, turns = @turns, agent_session_id = @agent_session_id,
      updated_at = @updated_at, ended_at = @ended_at, result_json = @result_json, error = @error WHERE id = @id`),
    run: db.prepare<[string], RunRow>("SELECT * FROM runs WHERE id = ?"),
    runs: db.prepare<{ environment: string | null; states: string | null; limit: number }, RunRow>(`SELECT * FROM runs
      WHERE (@environment IS NULL OR environment = @environment) AND (@states IS NULL OR state IN (SELECT value FROM json_each(@states)))
      ORDER BY created_ms DESC, id LIMIT @limit`),
    insertEvent: db.prepare<EventRow>("INSERT INTO run_events (run_id, seq, turn, time, event_json) VALUES (@run_id, @seq, @turn, @time, @event_json)"),
    events: db.prepare<{ run_id: string; after: number; limit: number }, EventRow>(
      "SELECT * FROM run_events WHERE run_id = @run_id AND seq > @after ORDER BY seq LIMIT @limit"),
    claimDelivery: db.prepare<{ key: string; received_ms: number }>("INSERT INTO webhook_deliveries (key, received_ms) VALUES (@key, @received_ms) ON CONFLICT (key) DO NOTHING"),
    forgetDeliveries: db.prepare<[number]>("DELETE FROM webhook_deliveries WHERE received_ms < ?"),
    releaseDelivery: db.prepare<[string]>("DELETE FROM webhook_deliveries WHERE key = ?"),
    putBuildLog: db.prepare<{ environment: string; version: number; log: string }>(
      "INSERT INTO build_logs (environment, version, log) VALUES (@environment, @version, @log) ON CONFLICT (environment, version) DO UPDATE SET log = excluded.log"),
    buildLog: db.prepare<[string, number], string>("SELECT log FROM build_logs WHERE environment = ? AND version = ?").pluck(),
  };
}

export type RunStatements = ReturnType<typeof prepareRunStatements>;
type Runner = <T>(fn: (s: RunStatements) => T, duplicate?: string) => T;

export class SqliteRunRecords implements RunRecords {
  constructor(
    private readonly run: Runner,
    private readonly write: Runner,
  ) {}

  async createRun(r: Run): Promise<void> {
    this.write((s) => s.insertRun.run(runToRow(r)), `run ${JSON.stringify(r.id)} already exists; run ids must be new`);
  }

  async updateRun(r: Run): Promise<void> {
    this.write((s) => s.updateRun.run(runToRow(r)));
  }

  async getRun(id: string): Promise<Run | null> {
    return this.run((s) => {
      const row = s.run.get(id);
      return row === undefined ? null : runFromRow(row);
    });
  }

  async listRuns(filter?: { environment?: string; states?: RunState[]; limit?: number }): Promise<Run[]> {
    return this.run((s) =>
      s.runs.all({ environment: filter?.environment ?? null, states: filter?.states ? JSON.stringify(filter.states) : null, limit: filter?.limit ?? 1000 }).map(runFromRow),
    );
  }

  async appendRunEvents(events: RunEvent[]): Promise<void> {
    if (events.length === 0) return;
    this.write((s) => {
      for (const e of events) s.insertEvent.run({ run_id: e.runId, seq: e.seq, turn: e.turn, time: e.time, event_json: toJson(e.event, `event ${e.seq} of run ${e.runId}`) });
    }, "a transcript entry with that sequence number already exists");
  }

  async listRunEvents(runId: string, afterSeq = 0, limit = 1000): Promise<RunEvent[]> {
    return this.run((s) =>
      s.events.all({ run_id: runId, after: afterSeq, limit }).map((r) => ({
        runId: r.run_id, seq: r.seq, turn: r.turn, time: r.time, event: fromJson(r.event_json, `event ${r.seq} of run ${r.run_id}`) as RunEvent["event"],
      })),
    );
  }

  async putBuildLog(environment: string, version: number, log: string): Promise<void> {
    this.write((s) => s.putBuildLog.run({ environment, version, log }));
  }

  async getBuildLog(environment: string, version: number): Promise<string | null> {
    return this.run((s) => s.buildLog.get(environment, version) ?? null);
  }

  async releaseWebhookDeliveries(keys: string[]): Promise<void> {
    this.write((s) => {
      for (const k of keys) s.releaseDelivery.run(k);
    });
  }

  async claimWebhookDelivery(key: string, receivedAt: string, forgetBefore: string): Promise<boolean> {
    return this.write((s) => {
      s.forgetDeliveries.run(timestampMs(forgetBefore, "forgetBefore"));
      return s.claimDelivery.run({ key, received_ms: timestampMs(receivedAt, "receivedAt") }).changes === 1;
    });
  }
}
