/**
 * The audit log as a table, newest first, filtered by actor, action, environment, session,
 * decision and time window. The filters live in the URL (shareable, back button works). Actor,
 * environment, session and window are applied by the server; action (a substring, e.g. "exec")
 * and decision on the page.
 */
import { useState } from "preact/hooks";
import type { JSX } from "preact";
import { get, query } from "../api.ts";
import { ErrorAlert, Loading, useAsync } from "../components/async.tsx";
import { ShortId, StateBadge, Time } from "../components/format.tsx";
import { Page } from "../components/page.tsx";
import { Link, navigate, useLocation } from "../router.tsx";
import type { AuditRecord } from "../types.ts";

const PAGE = 5000;
/** Most records read for one view; the caption says when there were more. */
const MAX_RECORDS = 20_000;
const SHOWN_STEP = 200;
const WINDOWS: Record<string, { label: string; ms: number | null }> = {
  "1h": { label: "Last hour", ms: 3600_000 },
  "24h": { label: "Last 24 hours", ms: 86_400_000 },
  "7d": { label: "Last 7 days", ms: 7 * 86_400_000 },
  all: { label: "All time", ms: null },
};
const DECISIONS = ["allowed", "denied", "pending", "approved", "expired", "info"];
const FIELDS = ["actor", "action", "environment", "session", "decision", "window"] as const;
type Filters = Record<(typeof FIELDS)[number], string>;

function filtersOf(search: URLSearchParams): Filters {
  const f = Object.fromEntries(FIELDS.map((k) => [k, search.get(k) ?? ""])) as Filters;
  if (!(f.window in WINDOWS)) f.window = "24h";
  return f;
}

async function load(f: Filters, signal: AbortSignal): Promise<{ records: AuditRecord[]; capped: boolean }> {
  const ms = WINDOWS[f.window]?.ms ?? null;
  const since = ms === null ? undefined : new Date(Date.now() - ms).toISOString();
  const out: AuditRecord[] = [];
  let after = 0;
  for (;;) {
    const page = await get<AuditRecord[]>(`/v1/audit${query({ actor: f.actor, environment: f.environment, session: f.session, since, after, limit: PAGE })}`, signal);
    out.push(...page);
    if (page.length < PAGE) return { records: out, capped: false };
    if (out.length >= MAX_RECORDS) return { records: out, capped: true };
    after = page[page.length - 1]?.seq ?? after;
  }
}

export function AuditPage() {
  const { search } = useLocation();
  const filters = filtersOf(search);
  const key = FIELDS.map((k) => filters[k]).join("\0");
  const data = useAsync((signal) => load(filters, signal), [key]);
  const [shown, setShown] = useState(SHOWN_STEP);
  const action = filters.action.toLowerCase();
  const rows = (data.data?.records ?? []).filter((r) => (!action || r.action.toLowerCase().includes(action)) && (!filters.decision || r.decision === filters.decision)).reverse();
  return (
    <Page title="Audit log">
      <FilterForm filters={filters} />
      <ErrorAlert error={data.error} />
      {!data.data ? (
        data.error ? null : <Loading label="Loading audit records…" />
      ) : rows.length === 0 ? (
        <p class="muted">No records match.</p>
      ) : (
        <>
          <div class="table-wrap">
            <table class="audit">
              <caption>
                Audit records, newest first: {rows.length} matching{data.data.capped ? ` (only the oldest ${MAX_RECORDS} of the window were read: narrow the filters)` : ""}
              </caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Actor</th>
                  <th scope="col">Action</th>
                  <th scope="col">Target</th>
                  <th scope="col">Environment</th>
                  <th scope="col">Session</th>
                  <th scope="col">Decision</th>
                  <th scope="col">Rule</th>
                </tr>
              </thead>
              <tbody>
                {rows.slice(0, shown).map((r) => (
                  <tr key={r.seq}>
                    <td>
                      <Time iso={r.time} />
                    </td>
                    <td>{r.onBehalfOf ? `${r.actor} for ${r.onBehalfOf}` : r.actor}</td>
                    <td>
                      <code>{r.action}</code>
                    </td>
                    <td class="wrap">{r.target}</td>
                    <td>{r.environment ? <Link href={`/ui/environments/${encodeURIComponent(r.environment)}`}>{r.environment}</Link> : "—"}</td>
                    <td>{r.sessionId ? <Link href={`/ui/sessions/${encodeURIComponent(r.sessionId)}`}><ShortId id={r.sessionId} /></Link> : "—"}</td>
                    <td>
                      <StateBadge state={r.decision} />
                    </td>
                    <td class="wrap">{r.rule ?? "—"}{typeof r.detail.reason === "string" ? <div class="muted">{r.detail.reason}</div> : null}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {rows.length > shown ? (
            <button type="button" class="button secondary" onClick={() => setShown(shown + SHOWN_STEP)}>
              Show more
            </button>
          ) : null}
        </>
      )}
    </Page>
  );
}

function FilterForm({ filters }: { filters: Filters }) {
  const submit = (e: JSX.TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget);
    const next: Record<string, string> = {};
    for (const k of FIELDS) next[k] = String(data.get(k) ?? "").trim();
    if (next.window === "24h") next.window = "";
    navigate(`/ui/audit${query(next)}`);
  };
  const text = (name: keyof Filters, label: string, hint?: string) => (
    <div class="field">
      <label for={`audit-${name}`}>{label}</label>
      <input id={`audit-${name}`} name={name} type="text" placeholder={hint} defaultValue={filters[name]} />
    </div>
  );
  return (
    <form class="filters card" role="search" aria-label="Filter the audit log" onSubmit={submit} key={FIELDS.map((k) => filters[k]).join("\0")}>
      {text("actor", "Actor", "e.g. alice")}
      {text("action", "Action", "e.g. exec")}
      {text("environment", "Environment")}
      {text("session", "Session")}
      <div class="field">
        <label for="audit-decision">Decision</label>
        <select id="audit-decision" name="decision" value={filters.decision}>
          <option value="">Any</option>
          {DECISIONS.map((d) => (
            <option key={d} value={d}>
              {d}
            </option>
          ))}
        </select>
      </div>
      <div class="field">
        <label for="audit-window">Time</label>
        <select id="audit-window" name="window" value={filters.window}>
          {Object.entries(WINDOWS).map(([k, w]) => (
            <option key={k} value={k}>
              {w.label}
            </option>
          ))}
        </select>
      </div>
      <div class="field actions">
        <button type="submit" class="button">
          Filter
        </button>
        <Link href="/ui/audit" class="button secondary">
          Clear
        </Link>
      </div>
    </form>
  );
}
