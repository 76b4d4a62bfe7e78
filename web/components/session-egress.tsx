/**
 * What left the session and what was refused: the egress gateway's records
 * (GET /v1/sessions/:id/egress) and the denied commands (the session's audit records with decision
 * denied, and tool results the agent was refused).
 */
import type { AuditRecord, RunEvent } from "../types.ts";
import { ErrorAlert } from "./async.tsx";
import type { Records } from "./session-data.ts";
import { bytes, clock, commandOf, duration, str } from "./session-types.ts";
import type { EgressRecord } from "./session-types.ts";

/** Rows shown at once; the newest. */
const SHOW = 300;

export function EgressTable({ egress }: { egress: Records<EgressRecord> }) {
  const rows = egress.items.slice(-SHOW).reverse();
  const denied = egress.items.filter((r) => r.decision === "denied").length;
  const total = egress.items.reduce((n, r) => n + r.bytesIn + r.bytesOut, 0);
  return (
    <div>
      <ErrorAlert error={egress.error} />
      <p>
        {egress.items.length} request{egress.items.length === 1 ? "" : "s"}, {denied} denied, {bytes(total)} in all.
        {egress.items.length > SHOW ? ` The newest ${SHOW} are shown.` : ""}
      </p>
      {rows.length ? (
        <div class="table-scroll" tabIndex={0} role="region" aria-label="Egress requests">
          <table class="egress">
            <caption class="sr-only">Egress requests, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Decision</th>
                <th scope="col">Request</th>
                <th scope="col">Status</th>
                <th scope="col">Out / in</th>
                <th scope="col">Duration</th>
                <th scope="col">Secrets</th>
                <th scope="col">Rule</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id} class={r.decision === "denied" ? "row-bad" : ""}>
                  <td>
                    <time dateTime={r.time}>{clock(r.time)}</time>
                  </td>
                  <td>
                    <span class={`badge badge-${r.decision === "denied" ? "bad" : "ok"}`}>{r.decision}</span>
                  </td>
                  <td>
                    <code>
                      {r.method} {r.host}
                      {r.port === 443 || r.port === 80 ? "" : `:${r.port}`}
                      {r.path}
                    </code>
                  </td>
                  <td class="num">{r.status}</td>
                  <td class="num">
                    {bytes(r.bytesOut)} / {bytes(r.bytesIn)}
                  </td>
                  <td class="num">{duration(r.durationMs)}</td>
                  <td>{r.swapped.join(", ")}</td>
                  <td>
                    {r.rule}
                    {r.reason ? <div class="muted">{r.reason}</div> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : egress.loaded ? (
        <p class="muted">No requests left this session.</p>
      ) : null}
    </div>
  );
}

export interface Denial {
  key: string;
  time: string;
  who: string;
  what: string;
  command: string | null;
  rule: string | null;
  reason: string | null;
  source: "audit" | "transcript";
}

/** Denied audit records of the session and denied tool results of its run, oldest first. */
export function denialsOf(audit: AuditRecord[], events: RunEvent[]): Denial[] {
  const out: Denial[] = [];
  for (const r of audit) {
    if (r.decision !== "denied") continue;
    out.push({
      key: `a${r.seq}`, time: r.time, who: r.onBehalfOf ? `${r.actor} for ${r.onBehalfOf}` : r.actor, what: r.action, command: commandOf(r.detail),
      rule: r.rule, reason: str(r.detail, "message") ?? str(r.detail, "reason"), source: "audit",
    });
  }
  const calls = new Map<string, string | null>();
  for (const e of events) {
    const ev = e.event;
    if (ev.type === "tool_call") calls.set(String(ev.id), str(ev, "command"));
    if (ev.type === "tool_result" && ev.denied === true) {
      out.push({ key: `t${e.seq}`, time: e.time, who: "agent", what: "tool result", command: calls.get(String(ev.id)) ?? null, rule: null, reason: str(ev, "output"), source: "transcript" });
    }
  }
  return out.sort((a, b) => a.time.localeCompare(b.time));
}

export function DeniedTable({ denials, error }: { denials: Denial[]; error: unknown }) {
  return (
    <div>
      <ErrorAlert error={error} />
      {denials.length === 0 ? (
        <p class="muted">Nothing was denied in this session.</p>
      ) : (
        <div class="table-scroll" tabIndex={0} role="region" aria-label="Denied commands">
          <table class="denied">
            <caption class="sr-only">Denied commands and actions, oldest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Who</th>
                <th scope="col">What</th>
                <th scope="col">Command</th>
                <th scope="col">Rule / reason</th>
              </tr>
            </thead>
            <tbody>
              {denials.map((d) => (
                <tr key={d.key} class="row-bad">
                  <td>
                    <time dateTime={d.time}>{clock(d.time)}</time>
                  </td>
                  <td>{d.who}</td>
                  <td>
                    {d.what}
                    {d.source === "transcript" ? <span class="muted"> (transcript)</span> : null}
                  </td>
                  <td>{d.command ? <code>{d.command}</code> : <span class="muted">—</span>}</td>
                  <td>
                    {d.rule ? <div>{d.rule}</div> : null}
                    {d.reason ? <div class="muted">{d.reason.length > 300 ? `${d.reason.slice(0, 300)}…` : d.reason}</div> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
