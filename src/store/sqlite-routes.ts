/**
 * Session routing records in the SQLite store (docs/routing.md): how each session's provider was
 * chosen, what was skipped on the way, and what it cost.
 */
import type Database from "better-sqlite3";
import type { RouteSkip, SessionRoute, Store } from "../core/store.ts";
import { notFound } from "../core/errors.ts";

type RouteRecords = Pick<Store, "putSessionRoute" | "getSessionRoute" | "updateSessionRoute">;

interface RouteRow {
  session_id: string; provider: string; strategy: string; reason: string; estimate_usd: number; price_json: string;
  skips_json: string; decision_json: string; created_at: string; runtime_ms: number | null; measured_usd: number | null;
}

const fromRow = (r: RouteRow): SessionRoute => ({
  sessionId: r.session_id, provider: r.provider, strategy: r.strategy, reason: r.reason, estimateUsd: r.estimate_usd,
  price: JSON.parse(r.price_json) as SessionRoute["price"], skips: JSON.parse(r.skips_json) as RouteSkip[],
  decision: JSON.parse(r.decision_json) as Record<string, unknown>, createdAt: r.created_at, runtimeMs: r.runtime_ms, measuredUsd: r.measured_usd,
});

const toRow = (x: SessionRoute): RouteRow => ({
  session_id: x.sessionId, provider: x.provider, strategy: x.strategy, reason: x.reason, estimate_usd: x.estimateUsd,
  price_json: JSON.stringify(x.price), skips_json: JSON.stringify(x.skips), decision_json: JSON.stringify(x.decision),
  created_at: x.createdAt, runtime_ms: x.runtimeMs, measured_usd: x.measuredUsd,
});

export function prepareRouteStatements(db: Database.Database) {
  return {
    insert: db.prepare<RouteRow>(`INSERT INTO session_routes
      (session_id, provider, strategy, reason, estimate_usd, price_json, skips_json, decision_json, created_at, runtime_ms, measured_usd)
      VALUES (@session_id, @provider, @strategy, @reason, @estimate_usd, @price_json, @skips_json, @decision_json, @created_at, @runtime_ms, @measured_usd)`),
    one: db.prepare<[string], RouteRow>("SELECT * FROM session_routes WHERE session_id = ?"),
    delete: db.prepare<[string]>("DELETE FROM session_routes WHERE session_id = ?"),
    update: db.prepare<RouteRow>(`UPDATE session_routes SET provider = @provider, strategy = @strategy, reason = @reason, estimate_usd = @estimate_usd,
      price_json = @price_json, skips_json = @skips_json, decision_json = @decision_json, created_at = @created_at, runtime_ms = @runtime_ms,
      measured_usd = @measured_usd WHERE session_id = @session_id`),
  };
}

export type RouteStatements = ReturnType<typeof prepareRouteStatements>;
type Runner = <T>(fn: (s: RouteStatements) => T, duplicate?: string) => T;

export class SqliteRouteRecords implements RouteRecords {
  constructor(
    private readonly run: Runner,
    private readonly write: Runner,
  ) {}

  async putSessionRoute(r: SessionRoute): Promise<void> {
    this.write((s) => s.insert.run(toRow(r)), `session ${JSON.stringify(r.sessionId)} already has a routing record`);
  }

  async getSessionRoute(sessionId: string): Promise<SessionRoute | null> {
    return this.run((s) => {
      const row = s.one.get(sessionId);
      return row === undefined ? null : fromRow(row);
    });
  }

  async updateSessionRoute(sessionId: string, patch: Partial<Omit<SessionRoute, "sessionId">>): Promise<SessionRoute> {
    return this.write((s) => {
      const row = s.one.get(sessionId);
      if (row === undefined) throw notFound("session route", sessionId);
      const next = { ...fromRow(row), ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)), sessionId } as SessionRoute;
      s.update.run(toRow(next));
      return next;
    });
  }

  /** With its session (`deleteSession`): not part of `Store`. */
  deleteSessionRoute(sessionId: string): void {
    this.write((s) => s.delete.run(sessionId));
  }
}
