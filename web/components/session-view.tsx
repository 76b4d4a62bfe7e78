/**
 * The page of one session, with its run when it has one: what the run did (transcript, changes,
 * checks), the session itself (terminal, files), what left it and what was refused (egress,
 * denials), previews and snapshots, and a timeline. Every section is a labelled region with an
 * `<h2>`; the section list at the top links to each, so the keyboard reaches them in one step.
 */
import "../session.css";
import { useEffect, useMemo, useState } from "preact/hooks";
import { get, seg } from "../api.ts";
import { can, useMe } from "../me.tsx";
import { Link } from "../router.tsx";
import type { Run, Session } from "../types.ts";
import { ErrorAlert, Loading } from "./async.tsx";
import { StateBadge, Time } from "./format.tsx";
import { Page } from "./page.tsx";
import { Checks, Diff } from "./session-changes.tsx";
import { Controls } from "./session-controls.tsx";
import { useEgress, useRunFollow, useSessionAudit } from "./session-data.ts";
import { DeniedTable, EgressTable, denialsOf } from "./session-egress.tsx";
import { FileBrowser } from "./session-files.tsx";
import { Previews, Snapshots, usePreviews, useSessionSnapshots } from "./session-previews.tsx";
import { Transcript } from "./session-transcript.tsx";
import { Terminal } from "./terminal.tsx";
import { Timeline, timelinePoints } from "./timeline.tsx";
import type { ComponentChildren } from "preact";

const SESSION_POLL_MS = 5000;

/** A session, read again every few seconds while it runs (and when `tick` changes). */
export function useSession(id: string | null, tick: unknown): { session: Session | undefined; error: unknown } {
  const [session, setSession] = useState<Session | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    if (!id) return;
    const abort = new AbortController();
    let timer = 0;
    const load = async () => {
      try {
        const s = await get<Session>(`/v1/sessions/${seg(id)}`, abort.signal);
        setSession(s);
        setError(null);
        if (s.state === "running" || s.state === "starting") timer = window.setTimeout(() => void load(), SESSION_POLL_MS);
      } catch (err) {
        if (!abort.signal.aborted) setError(err);
      }
    };
    void load();
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, [id, tick]);
  return { session, error };
}

const SECTIONS: [string, string][] = [
  ["transcript", "Transcript"],
  ["terminal", "Terminal"],
  ["files", "Files"],
  ["changes", "Changes"],
  ["checks", "Checks"],
  ["egress", "Egress"],
  ["previews", "Previews"],
  ["snapshots", "Snapshots"],
  ["timeline", "Timeline"],
];

function Section({ id, title, children, wide }: { id: string; title: string; children: ComponentChildren; wide?: boolean }) {
  return (
    <section id={id} aria-labelledby={`${id}-heading`} class={wide ? "s-section s-wide" : "s-section"}>
      <h2 id={`${id}-heading`}>{title}</h2>
      {children}
    </section>
  );
}

/** The run page's and the session page's body: `runId` null for a session without a run. */
export function SessionView({ runId, sessionId: givenSessionId, extra }: { runId: string | null; sessionId: string | null; extra?: ComponentChildren }) {
  const me = useMe();
  const follow = useRunFollow(runId);
  const run: Run | null | undefined = runId ? follow.run : null;
  const sessionId = givenSessionId ?? run?.sessionId ?? null;
  const [tick, setTick] = useState(0);
  const { session, error: sessionError } = useSession(sessionId, `${tick}-${run?.state ?? ""}`);
  const live = session?.state === "running" || session?.state === "starting";
  const egress = useEgress(sessionId, live);
  const audit = useSessionAudit(sessionId, live);
  const previews = usePreviews(sessionId ?? "");
  const snapshots = useSessionSnapshots(sessionId ?? "", session?.environment);
  const environment = run?.environment ?? session?.environment ?? "";
  const canWrite = environment !== "" && can(me, environment, "write");
  const denials = useMemo(() => denialsOf(audit.items, follow.events), [audit.items, follow.events]);
  const points = useMemo(
    () => (session ? timelinePoints({ session, events: follow.events, audit: audit.items, egress: egress.items, previews: (previews.data ?? []).map((p) => ({ ...p })) }) : []),
    [session, follow.events, audit.items, egress.items, previews.data],
  );
  const changed = () => {
    follow.refresh();
    setTick((t) => t + 1);
    audit.refresh();
  };
  const title = runId ? `Run ${runId}` : `Session ${givenSessionId ?? ""}`;
  const loading = (runId && !run && !follow.error) || (sessionId && !session && !sessionError);
  return (
    <Page title={title}>
      <ErrorAlert error={runId ? follow.error : null} />
      <ErrorAlert error={sessionError} />
      {loading ? <Loading /> : null}
      <Summary run={run} session={session} />
      {extra}
      {run || session ? <Controls run={run} session={session} canWrite={canWrite} onChange={changed} /> : null}
      <nav class="s-sections" aria-label="Sections of this page">
        <ul>
          {SECTIONS.map(([id, text]) => (
            <li key={id}>
              <a href={`#${id}`}>{text}</a>
            </li>
          ))}
        </ul>
      </nav>
      <div class="s-grid">
        <Section id="transcript" title="Transcript">
          <Transcript events={follow.events} live={follow.live} hasRun={runId !== null} />
        </Section>
        <Section id="terminal" title="Terminal">
          {sessionId ? <Terminal sessionId={sessionId} enabled={live && canWrite} /> : <p class="muted">The run has no session yet.</p>}
        </Section>
      </div>
      <Section id="files" title="Files" wide>
        {sessionId && session && session.state !== "stopped" && session.state !== "lost" && session.state !== "failed" ? (
          <FileBrowser sessionId={sessionId} changed={`${run?.state ?? ""}-${run?.turns ?? 0}`} />
        ) : (
          <p class="muted">{session ? `The session is ${session.state}: its files are gone.` : "No session yet."}</p>
        )}
      </Section>
      <Section id="changes" title="Changes" wide>
        <Diff run={run} />
      </Section>
      <Section id="checks" title="Checks" wide>
        <Checks run={run} />
      </Section>
      <Section id="egress" title="Egress" wide>
        <h3>Requests</h3>
        <EgressTable egress={egress} />
        <h3>Denied commands</h3>
        <DeniedTable denials={denials} error={audit.error} />
      </Section>
      <div class="s-grid">
        <Section id="previews" title="Previews">
          {sessionId ? <Previews sessionId={sessionId} running={session?.state === "running"} canWrite={canWrite} previews={previews} /> : null}
        </Section>
        <Section id="snapshots" title="Snapshots">
          {sessionId ? <Snapshots sessionId={sessionId} running={session?.state === "running"} canWrite={canWrite} snapshots={snapshots} /> : null}
        </Section>
      </div>
      <Section id="timeline" title="Timeline" wide>
        {session ? <Timeline points={points} start={Date.parse(session.createdAt)} end={session.endedAt ? Date.parse(session.endedAt) : Date.now()} /> : <p class="muted">No session yet.</p>}
      </Section>
    </Page>
  );
}

function Summary({ run, session }: { run: Run | null | undefined; session: Session | undefined }) {
  return (
    <dl class="facts s-facts">
      {run ? (
        <>
          <dt>Run</dt>
          <dd>
            <StateBadge state={run.state} /> {run.agent} in{" "}
            <Link href={`/ui/environments/${encodeURIComponent(run.environment)}`}>{run.environment}</Link> v{run.version}, for {run.startedBy}
            {run.trigger ? ` (trigger ${run.trigger.name})` : ""}, {run.turns} turn{run.turns === 1 ? "" : "s"}, outcome {run.outcome}
          </dd>
          <dt>Prompt</dt>
          <dd class="prompt-cell">{run.prompt}</dd>
          {run.error ? (
            <>
              <dt>Error</dt>
              <dd class="alert">{run.error}</dd>
            </>
          ) : null}
          {run.result ? (
            <>
              <dt>Summary</dt>
              <dd class="prompt-cell">{run.result.summary || <span class="muted">none</span>}</dd>
              <dt>Tokens</dt>
              <dd>
                {run.result.inputTokens} in, {run.result.outputTokens} out{run.result.costUsd !== null ? `, $${run.result.costUsd.toFixed(4)}` : ""}
              </dd>
            </>
          ) : null}
        </>
      ) : null}
      {session ? (
        <>
          <dt>Session</dt>
          <dd>
            <StateBadge state={session.state} /> {run ? <Link href={`/ui/sessions/${encodeURIComponent(session.id)}`}>{session.id}</Link> : <code>{session.id}</code>} of{" "}
            {session.environment} v{session.version}, started <Time iso={session.createdAt} /> by {session.startedBy}
            {session.agent ? ` (agent ${session.agent})` : ""}
            {session.snapshot ? `, from snapshot ${session.snapshot}` : ""}
            {session.endedAt ? (
              <>
                , ended <Time iso={session.endedAt} />
                {session.endReason ? `: ${session.endReason}` : ""}
              </>
            ) : null}
          </dd>
        </>
      ) : null}
    </dl>
  );
}
