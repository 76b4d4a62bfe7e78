/**
 * The session as a picture: one lane per kind of thing that happened (the session's start and end,
 * commands, the agent's tool calls, denials, egress requests, previews), drawn as SVG from the
 * transcript, the audit log and the egress records. The same points are listed as text below it.
 */
import type { AuditRecord, RunEvent, Session } from "../types.ts";
import type { EgressRecord } from "./session-types.ts";
import { clock, commandOf, duration, str } from "./session-types.ts";

type Lane = "Session" | "Commands" | "Tool calls" | "Denials" | "Egress" | "Previews";
const LANES: Lane[] = ["Session", "Commands", "Tool calls", "Denials", "Egress", "Previews"];

export interface TimelinePoint {
  lane: Lane;
  t: number;
  label: string;
}

/** Every point of the timeline, oldest first. Pure: the page's data in, points out. */
export function timelinePoints(input: { session: Session; events: RunEvent[]; audit: AuditRecord[]; egress: EgressRecord[]; previews: { createdAt: string; port: number; id: string }[] }): TimelinePoint[] {
  const out: TimelinePoint[] = [];
  const at = (iso: string) => Date.parse(iso);
  out.push({ lane: "Session", t: at(input.session.createdAt), label: `session started by ${input.session.startedBy}${input.session.agent ? ` (agent ${input.session.agent})` : ""}` });
  if (input.session.endedAt) out.push({ lane: "Session", t: at(input.session.endedAt), label: `session ended${input.session.endReason ? `: ${input.session.endReason}` : ""}` });
  for (const r of input.audit) {
    const cmd = commandOf(r.detail);
    if (r.decision === "denied") out.push({ lane: "Denials", t: at(r.time), label: `denied ${r.action}${cmd ? `: ${cmd}` : ""}${r.rule ? ` (${r.rule})` : ""}` });
    else if (r.action === "exec" && cmd) out.push({ lane: "Commands", t: at(r.time), label: `${r.actor}: ${cmd}` });
  }
  for (const e of input.events) {
    const ev = e.event;
    if (ev.type === "tool_call") out.push({ lane: "Tool calls", t: at(e.time), label: `${str(ev, "tool") ?? "tool"}: ${str(ev, "command") ?? ""}`.trim() });
    else if (ev.type === "tool_result" && ev.denied === true) out.push({ lane: "Denials", t: at(e.time), label: `tool result denied: ${(str(ev, "output") ?? "").slice(0, 160)}` });
    else if (ev.type === "turn") out.push({ lane: "Session", t: at(e.time), label: `turn ${String(ev.turn ?? e.turn)}` });
  }
  for (const r of input.egress) {
    if (r.decision === "denied") out.push({ lane: "Denials", t: at(r.time), label: `egress denied: ${r.method} ${r.host}${r.path}` });
    else out.push({ lane: "Egress", t: at(r.time), label: `${r.method} ${r.host}${r.path} → ${r.status}` });
  }
  for (const p of input.previews) out.push({ lane: "Previews", t: at(p.createdAt), label: `preview of port ${p.port} (${p.id})` });
  return out.filter((p) => !Number.isNaN(p.t)).sort((a, b) => a.t - b.t);
}

const W = 900;
const LEFT = 90;
const RIGHT = 12;
const LANE_H = 26;
const TOP = 8;
/** Points drawn per lane at most (the text list has them all, up to LIST_MAX). */
const DRAW_MAX = 1500;
const LIST_MAX = 500;

export function Timeline({ points, start, end }: { points: TimelinePoint[]; start: number; end: number }) {
  const t0 = Math.min(start, ...points.map((p) => p.t));
  const t1 = Math.max(end, t0 + 1000, ...points.map((p) => p.t));
  const x = (t: number) => LEFT + ((t - t0) / (t1 - t0)) * (W - LEFT - RIGHT);
  const height = TOP + LANES.length * LANE_H + 28;
  const counts = new Map<Lane, number>(LANES.map((l) => [l, 0]));
  for (const p of points) counts.set(p.lane, (counts.get(p.lane) ?? 0) + 1);
  const summary = `Timeline over ${duration(t1 - t0)}: ${LANES.map((l) => `${counts.get(l) ?? 0} ${l.toLowerCase()}`).join(", ")}.`;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => t0 + f * (t1 - t0));
  return (
    <figure class="timeline">
      <svg viewBox={`0 0 ${W} ${height}`} role="img" aria-labelledby="timeline-summary" class="timeline-svg" preserveAspectRatio="xMinYMin meet">
        {LANES.map((lane, i) => {
          const y = TOP + i * LANE_H;
          const inLane = points.filter((p) => p.lane === lane).slice(-DRAW_MAX);
          return (
            <g key={lane} class={`lane lane-${lane.replace(/\s/g, "-").toLowerCase()}`}>
              <rect x={LEFT} y={y} width={W - LEFT - RIGHT} height={LANE_H - 4} class="lane-bg" />
              <text x={LEFT - 6} y={y + LANE_H / 2 + 2} text-anchor="end" class="lane-label">
                {lane}
              </text>
              {inLane.map((p, j) => (
                <rect key={j} x={x(p.t) - 1.5} y={y + 3} width={3} height={LANE_H - 10} class="mark">
                  <title>{`${clock(new Date(p.t).toISOString())} ${p.label}`}</title>
                </rect>
              ))}
            </g>
          );
        })}
        {ticks.map((t, i) => (
          <text key={i} x={x(t)} y={height - 8} text-anchor={i === 0 ? "start" : i === ticks.length - 1 ? "end" : "middle"} class="tick">
            {clock(new Date(t).toISOString())}
          </text>
        ))}
      </svg>
      <figcaption id="timeline-summary">{summary}</figcaption>
      <details>
        <summary>The timeline as a list ({Math.min(points.length, LIST_MAX)} of {points.length} points)</summary>
        <ol class="timeline-list">
          {points.slice(0, LIST_MAX).map((p, i) => (
            <li key={i}>
              <time dateTime={new Date(p.t).toISOString()}>{clock(new Date(p.t).toISOString())}</time> <strong>{p.lane}</strong>: {p.label}
            </li>
          ))}
        </ol>
      </details>
    </figure>
  );
}
