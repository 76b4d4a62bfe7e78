/**
 * The agent's transcript as it happens: messages, tool calls with their command, tool results
 * (denials highlighted), checks, state changes. A polite live region, so screen readers hear new
 * entries without losing their place; it stays scrolled to the end while the reader is there.
 */
import { useEffect, useLayoutEffect, useRef } from "preact/hooks";
import type { RunEvent } from "../types.ts";
import { clock, duration, str } from "./session-types.ts";

export function Transcript({ events, live, hasRun }: { events: RunEvent[]; live: boolean; hasRun: boolean }) {
  const box = useRef<HTMLOListElement>(null);
  const atEnd = useRef(true);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const onScroll = () => (atEnd.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 24);
    el.addEventListener("scroll", onScroll, { passive: true });
    return () => el.removeEventListener("scroll", onScroll);
  }, []);
  useLayoutEffect(() => {
    const el = box.current;
    if (el && atEnd.current) el.scrollTop = el.scrollHeight;
  }, [events.length]);
  return (
    <div class="transcript-wrap">
      <p class="muted" id="transcript-status">
        {!hasRun ? "This session has no agent run: nothing to show here." : live ? "Live: new entries appear as the agent works." : `${events.length} entries.`}
      </p>
      <ol class="transcript" ref={box} data-testid="transcript" aria-live="polite" aria-relevant="additions" aria-label="Agent transcript" aria-describedby="transcript-status" tabIndex={0}>
        {events.map((e) => (
          <Entry key={e.seq} e={e} />
        ))}
      </ol>
    </div>
  );
}

function Entry({ e }: { e: RunEvent }) {
  const ev = e.event;
  const when = <time class="t-time" dateTime={e.time}>{clock(e.time)}</time>;
  switch (ev.type) {
    case "turn":
      return (
        <li class="t-turn">
          {when} <strong>Turn {String(ev.turn ?? e.turn)}</strong>: <span class="t-text">{str(ev, "prompt") ?? ""}</span>
        </li>
      );
    case "started":
      return (
        <li class="t-meta">
          {when} agent started{str(ev, "model") ? ` (model ${str(ev, "model")})` : ""}
        </li>
      );
    case "message":
      return (
        <li class={`t-message t-${str(ev, "role") ?? "assistant"}`}>
          {when} <strong>{str(ev, "role") === "user" ? "user" : "agent"}:</strong> <span class="t-text">{str(ev, "text") ?? ""}</span>
        </li>
      );
    case "tool_call":
      return (
        <li class="t-call">
          {when} <span aria-hidden="true">→ </span>
          <strong>{str(ev, "tool") ?? "tool"}</strong>
          {": "}
          {str(ev, "command") !== null ? <code class="t-command">{str(ev, "command")}</code> : <code class="t-input">{inputText(ev.input)}</code>}
        </li>
      );
    case "tool_result": {
      const denied = ev.denied === true;
      const failed = ev.isError === true;
      return (
        <li class={denied ? "t-result t-denied" : failed ? "t-result t-error" : "t-result"}>
          {when} <span class="t-mark">{denied ? "✗ denied" : failed ? "✗ error" : "✓ result"}</span> <span class="t-text">{head(str(ev, "output") ?? "", 2000)}</span>
        </li>
      );
    }
    case "usage":
      return (
        <li class="t-meta">
          {when} tokens: {String(ev.inputTokens ?? 0)} in, {String(ev.outputTokens ?? 0)} out{typeof ev.costUsd === "number" ? `, $${ev.costUsd.toFixed(4)}` : ""}
        </li>
      );
    case "result":
      return (
        <li class={ev.isError === true ? "t-final t-error" : "t-final"}>
          {when} <strong>summary:</strong> <span class="t-text">{str(ev, "text") ?? ""}</span>
        </li>
      );
    case "error":
      return (
        <li class="t-error">
          {when} <strong>error:</strong> {str(ev, "message") ?? ""}
        </li>
      );
    case "check":
      return (
        <li class={ev.passed === true ? "t-check" : "t-check t-error"}>
          {when} check <strong>{str(ev, "name") ?? str(ev, "command") ?? "?"}</strong>: {ev.passed === true ? "passed" : `FAILED (exit ${String(ev.exitCode)})`}
          {typeof ev.durationMs === "number" ? ` in ${duration(ev.durationMs)}` : ""}
        </li>
      );
    case "agent_exit":
      return (
        <li class={ev.exitCode === 0 ? "t-meta" : "t-meta t-error"}>
          {when} agent exited with {String(ev.exitCode)}
          {str(ev, "signal") ? ` (${str(ev, "signal")})` : ""}
          {str(ev, "stderr") ? <span class="t-text">: {tail(str(ev, "stderr") ?? "", 1000)}</span> : null}
        </li>
      );
    case "state":
      return (
        <li class="t-state">
          {when} <strong>state → {str(ev, "state") ?? "?"}</strong>
          {str(ev, "error") ? `: ${str(ev, "error")}` : ""}
          {str(ev, "snapshotId") ? ` (snapshot ${str(ev, "snapshotId")})` : ""}
        </li>
      );
    case "raw":
      return (
        <li class="t-raw">
          {when} <code>{str(ev, "line") ?? ""}</code>
        </li>
      );
    default:
      return (
        <li class="t-raw">
          {when} {ev.type}: <code>{inputText(ev)}</code>
        </li>
      );
  }
}

/** A tool's input as one short line. */
function inputText(v: unknown): string {
  try {
    return tail(typeof v === "string" ? v : JSON.stringify(v), 400);
  } catch {
    return String(v);
  }
}

function head(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function tail(s: string, max: number): string {
  return s.length > max ? `…${s.slice(-max)}` : s;
}
