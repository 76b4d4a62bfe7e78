/**
 * Charts over recent sessions, in plain SVG with a table as the text alternative:
 * - session start latency: from a session's creation to the first action recorded in it (the
 *   audit log has no "running" record, so this is an upper bound: for a run's session the agent's
 *   first exec follows the start at once; for a person's session it includes their first command's
 *   wait). A session carrying `readyAt`/`runningAt` uses that instead;
 * - egress per session: requests and bytes (in + out) from its egress records (the newest 1000).
 * `Dashboard` loads the data; `BarChart` draws any labelled values.
 */
import { get, query, seg } from "../api.ts";
import type { AuditRecord, Session } from "../types.ts";
import { ErrorAlert, Loading, useAsync } from "./async.tsx";
import { Page } from "./page.tsx";
import type { EgressRecord } from "./session-types.ts";
import { bytes, duration } from "./session-types.ts";

export interface Bar {
  label: string;
  value: number;
  /** Shown beside the bar and in the table. */
  text: string;
  href?: string;
}

const W = 640;
const LEFT = 170;
const BAR_H = 18;
const GAP = 6;

/** A horizontal bar chart with its data as a table (visually hidden, and on request). */
export function BarChart({ title, bars, unit, id }: { title: string; bars: Bar[]; unit: string; id: string }) {
  const max = Math.max(1, ...bars.map((b) => b.value));
  const height = bars.length * (BAR_H + GAP) + GAP;
  return (
    <figure class="chart" aria-labelledby={`${id}-title`}>
      <figcaption id={`${id}-title`} class="chart-title">
        {title}
      </figcaption>
      {bars.length === 0 ? (
        <p class="muted">No data yet.</p>
      ) : (
        <>
          <svg viewBox={`0 0 ${W} ${height}`} role="img" aria-labelledby={`${id}-title`} aria-describedby={`${id}-table`} class="chart-svg">
            {bars.map((b, i) => {
              const y = GAP + i * (BAR_H + GAP);
              const w = Math.max(1, (b.value / max) * (W - LEFT - 120));
              return (
                <g key={i}>
                  <text x={LEFT - 6} y={y + BAR_H - 5} text-anchor="end" class="chart-label">
                    {b.label.length > 24 ? `${b.label.slice(0, 23)}…` : b.label}
                  </text>
                  <rect x={LEFT} y={y} width={w} height={BAR_H} class="chart-bar">
                    <title>{`${b.label}: ${b.text}`}</title>
                  </rect>
                  <text x={LEFT + w + 6} y={y + BAR_H - 5} class="chart-value">
                    {b.text}
                  </text>
                </g>
              );
            })}
          </svg>
          <details>
            <summary>Data as a table</summary>
            <table id={`${id}-table`}>
              <thead>
                <tr>
                  <th scope="col">Session</th>
                  <th scope="col">{unit}</th>
                </tr>
              </thead>
              <tbody>
                {bars.map((b, i) => (
                  <tr key={i}>
                    <th scope="row">{b.href ? <a href={b.href}>{b.label}</a> : b.label}</th>
                    <td class="num">{b.text}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </figure>
  );
}

/** Sessions the charts cover: the newest. */
const SESSIONS = 20;
const CONCURRENCY = 6;

/** `f` over `items`, at most `n` at once. */
async function mapLimit<T, R>(items: T[], n: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

export interface SessionStats {
  session: Session;
  /** ms from creation to running (or to its first recorded action); null when unknown. */
  startMs: number | null;
  exact: boolean;
  requests: number;
  bytes: number;
}

/** Per session: start latency and egress totals. Sessions the caller cannot read are skipped. */
export async function loadSessionStats(signal: AbortSignal, environment?: string): Promise<SessionStats[]> {
  const sessions = (await get<Session[]>(`/v1/sessions${query({ all: true, environment })}`, signal)).slice(0, SESSIONS);
  return mapLimit(sessions, CONCURRENCY, async (s) => {
    const ready = (s as Session & { readyAt?: string | null; runningAt?: string | null }).readyAt ?? (s as { runningAt?: string | null }).runningAt ?? null;
    let startMs: number | null = ready ? Date.parse(ready) - Date.parse(s.createdAt) : null;
    const exact = startMs !== null;
    const [audit, egress] = await Promise.all([
      startMs === null ? get<AuditRecord[]>(`/v1/audit${query({ session: s.id, limit: 1 })}`, signal).catch(() => []) : Promise.resolve([]),
      get<EgressRecord[]>(`/v1/sessions/${seg(s.id)}/egress${query({ limit: 1000 })}`, signal).catch(() => []),
    ]);
    const first = audit[0];
    if (startMs === null && first) startMs = Math.max(0, Date.parse(first.time) - Date.parse(s.createdAt));
    return { session: s, startMs, exact, requests: egress.length, bytes: egress.reduce((n, r) => n + r.bytesIn + r.bytesOut, 0) };
  });
}

const label = (s: Session) => `${s.id.slice(0, 14)} ${s.environment}`;
const hrefOf = (s: Session) => `/ui/sessions/${encodeURIComponent(s.id)}`;

export function StartLatencyChart({ stats }: { stats: SessionStats[] }) {
  const rows = stats.filter((s) => s.startMs !== null);
  const exact = rows.every((s) => s.exact);
  return (
    <BarChart
      id="chart-start"
      unit="Start latency"
      title={exact ? "Session start latency" : "Session start latency (creation to first recorded action: an upper bound)"}
      bars={rows.map((s) => ({ label: label(s.session), value: s.startMs ?? 0, text: duration(s.startMs ?? 0), href: hrefOf(s.session) }))}
    />
  );
}

export function EgressChart({ stats }: { stats: SessionStats[] }) {
  return (
    <>
      <BarChart id="chart-egress-bytes" unit="Bytes (in + out)" title="Egress per session: bytes" bars={stats.map((s) => ({ label: label(s.session), value: s.bytes, text: bytes(s.bytes), href: hrefOf(s.session) }))} />
      <BarChart id="chart-egress-requests" unit="Requests" title="Egress per session: requests" bars={stats.map((s) => ({ label: label(s.session), value: s.requests, text: String(s.requests), href: hrefOf(s.session) }))} />
    </>
  );
}

/** Both charts for the newest sessions (of one environment when given). */
export function SessionCharts({ environment }: { environment?: string }) {
  const stats = useAsync((signal) => loadSessionStats(signal, environment), [environment]);
  return (
    <section aria-labelledby="charts-heading" class="charts">
      <h2 id="charts-heading">Sessions at a glance</h2>
      {stats.loading && !stats.data ? <Loading label="Loading session statistics…" /> : null}
      <ErrorAlert error={stats.error} />
      {stats.data ? (
        <>
          <StartLatencyChart stats={stats.data} />
          <EgressChart stats={stats.data} />
          <button type="button" class="button secondary small" onClick={stats.reload}>
            Refresh
          </button>
        </>
      ) : null}
    </section>
  );
}

/** The `/ui/dashboard` page. */
export function DashboardPage() {
  return (
    <Page title="Dashboard">
      <SessionCharts />
    </Page>
  );
}
