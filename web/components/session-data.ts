/**
 * The live data of a session page: the run and its transcript (followed over NDJSON, followed
 * again when a follow-up starts a turn), and the session's audit and egress records (paged by
 * their cursors, polled while the session runs).
 */
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { followNdjson, get, query, seg } from "../api.ts";
import type { AuditRecord, Run, RunEvent } from "../types.ts";
import type { EgressRecord } from "./session-types.ts";

const ACTIVE: ReadonlySet<Run["state"]> = new Set(["starting", "running"]);
/** Records kept in memory per list: the oldest go first (the tables say how many were dropped). */
const KEEP = 5000;
const POLL_MS = 4000;

/** Wait `ms`, or less when `wake` is called or `signal` aborts. */
function pause(ms: number, signal: AbortSignal, wakers: Set<() => void>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      wakers.delete(done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    wakers.add(done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** A loop's wake-up call: `wake()` ends its current pause at once. */
function useWaker(): { wakers: Set<() => void>; wake: () => void } {
  const wakers = useRef(new Set<() => void>()).current;
  const wake = useCallback(() => {
    for (const w of [...wakers]) w();
  }, [wakers]);
  return { wakers, wake };
}

export interface RunFollow {
  run: Run | undefined;
  events: RunEvent[];
  /** The transcript stream is open (a turn is in progress). */
  live: boolean;
  error: unknown;
  /** Read the run again now (after a follow-up, a cancel). */
  refresh: () => void;
}

/**
 * A run and its transcript: GET /v1/runs/:id/events?follow=1 while a turn is in progress (it ends
 * with the turn); then the run is read again every few seconds, and followed again from the last
 * event when a follow-up starts a new turn.
 */
export function useRunFollow(runId: string | null): RunFollow {
  const [run, setRun] = useState<Run | undefined>(undefined);
  const [events, setEvents] = useState<RunEvent[]>([]);
  const [live, setLive] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const { wakers, wake } = useWaker();
  useEffect(() => {
    setRun(undefined);
    setEvents([]);
    if (!runId) return;
    const abort = new AbortController();
    const { signal } = abort;
    let after = 0;
    const loop = async () => {
      while (!signal.aborted) {
        try {
          const r = await get<Run>(`/v1/runs/${seg(runId)}`, signal);
          setRun(r);
          setError(null);
          const wasActive = ACTIVE.has(r.state);
          setLive(wasActive);
          let batch: RunEvent[] = [];
          let flush = 0;
          const push = () => {
            const got = batch;
            batch = [];
            if (got.length) setEvents((old) => [...old, ...got].slice(-KEEP));
          };
          for await (const e of followNdjson<RunEvent>(`/v1/runs/${seg(runId)}/events${query({ follow: 1, after })}`, signal)) {
            if (e.seq <= after) continue;
            after = e.seq;
            batch.push(e);
            // One render per burst of lines, not one per line.
            if (!flush) flush = window.setTimeout(() => ((flush = 0), push()), 50);
          }
          clearTimeout(flush);
          push();
          setLive(false);
          if (wasActive) {
            await pause(300, signal, new Set()); // the turn ended: read its outcome at once
            continue;
          }
        } catch (err) {
          if (signal.aborted) return;
          setError(err);
          setLive(false);
        }
        await pause(POLL_MS, signal, wakers);
      }
    };
    void loop();
    return () => abort.abort();
  }, [runId, wakers]);
  return { run, events, live, error, refresh: wake };
}

export interface Records<T> {
  items: T[];
  error: unknown;
  /** Done loading what there was when the page opened. */
  loaded: boolean;
  refresh: () => void;
}

/**
 * Records read page by page after a cursor (`after`), then polled every few seconds while `live`.
 * `page(after, signal)` answers at most `limit` records in cursor order.
 */
function useCursorRecords<T>(key: string | null, live: boolean, limit: number, page: (after: number, signal: AbortSignal) => Promise<T[]>, cursorOf: (t: T) => number): Records<T> {
  const [items, setItems] = useState<T[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [loaded, setLoaded] = useState(false);
  const { wakers, wake } = useWaker();
  const liveRef = useRef(live);
  liveRef.current = live;
  useEffect(() => {
    setItems([]);
    setLoaded(false);
    if (!key) return;
    const abort = new AbortController();
    const { signal } = abort;
    let after = 0;
    const loop = async () => {
      while (!signal.aborted) {
        try {
          for (;;) {
            const got = await page(after, signal);
            const last = got[got.length - 1];
            if (last !== undefined) {
              after = cursorOf(last);
              setItems((old) => [...old, ...got].slice(-KEEP));
            }
            if (got.length < limit) break;
          }
          setLoaded(true);
          setError(null);
        } catch (err) {
          if (signal.aborted) return;
          setError(err);
        }
        await pause(liveRef.current ? POLL_MS : 60_000, signal, wakers);
      }
    };
    void loop();
    return () => abort.abort();
    // `page` and `cursorOf` are fixed per key.
  }, [key, wakers]);
  return { items, error, loaded, refresh: wake };
}

const EGRESS_PAGE = 1000;
const AUDIT_PAGE = 1000;

/** GET /v1/sessions/:id/egress, oldest first, polled while the session runs. */
export function useEgress(sessionId: string | null, live: boolean): Records<EgressRecord> {
  return useCursorRecords<EgressRecord>(
    sessionId,
    live,
    EGRESS_PAGE,
    (after, signal) => get<EgressRecord[]>(`/v1/sessions/${seg(sessionId ?? "")}/egress${query({ limit: EGRESS_PAGE, after })}`, signal),
    (r) => r.id,
  );
}

/** GET /v1/audit?session=ID: every audit record of the session, oldest first, polled while it runs. */
export function useSessionAudit(sessionId: string | null, live: boolean): Records<AuditRecord> {
  return useCursorRecords<AuditRecord>(
    sessionId,
    live,
    AUDIT_PAGE,
    (after, signal) => get<AuditRecord[]>(`/v1/audit${query({ session: sessionId, limit: AUDIT_PAGE, after })}`, signal),
    (r) => r.seq,
  );
}
