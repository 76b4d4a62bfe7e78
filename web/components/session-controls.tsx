/**
 * What a person with `write` can do with a run or session: send a follow-up to an idle run
 * (POST /v1/runs/:id/messages), Stop (cancel a running run: POST /v1/runs/:id/cancel; else stop
 * the session: POST /v1/sessions/:id/stop), and Keep (an idle run's session stays as it is).
 */
import { useState } from "preact/hooks";
import { post, seg } from "../api.ts";
import type { Run, Session } from "../types.ts";
import { ErrorAlert } from "./async.tsx";
import { Time } from "./format.tsx";

export function Controls({ run, session, canWrite, onChange }: { run: Run | null | undefined; session: Session | undefined; canWrite: boolean; onChange: () => void }) {
  const [prompt, setPrompt] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [note, setNote] = useState<string | null>(null);
  const act = async (what: () => Promise<unknown>, done: string) => {
    setBusy(true);
    setError(null);
    setNote(null);
    try {
      await what();
      setNote(done);
      onChange();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const sessionLive = session?.state === "running" || session?.state === "starting";
  const runActive = run?.state === "running" || run?.state === "starting";
  const idle = run?.state === "idle";
  const outcomeText = run ? outcomeNote(run) : null;
  if (!canWrite) {
    return (
      <div class="controls">
        {outcomeText ? <p>{outcomeText}</p> : null}
        <p class="muted">You can read this {run ? "run" : "session"}; acting on it needs write permission on environment {run?.environment ?? session?.environment}.</p>
      </div>
    );
  }
  const stop = () =>
    runActive && run
      ? act(() => post(`/v1/runs/${seg(run.id)}/cancel`), `Run cancelled.${run.outcome === "keep" ? " Its session is kept." : ""}`)
      : act(() => post(`/v1/sessions/${seg(session?.id ?? "")}/stop`), "Session stopped.");
  return (
    <div class="controls">
      {outcomeText ? <p>{outcomeText}</p> : null}
      {idle && run ? (
        <form
          class="follow-up"
          onSubmit={(e) => {
            e.preventDefault();
            if (prompt.trim()) void act(() => post(`/v1/runs/${seg(run.id)}/messages`, { prompt }), "Sent: the agent resumes the conversation.").then(() => setPrompt(""));
          }}
        >
          <label for="follow-up">Follow-up</label>
          <textarea id="follow-up" name="prompt" rows={3} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} placeholder="What should the agent do next?" required />
          <div class="row">
            <button type="submit" class="button" disabled={busy || !prompt.trim()}>
              Send
            </button>
          </div>
        </form>
      ) : null}
      <div class="row" role="group" aria-label={run ? "Run actions" : "Session actions"}>
        {runActive || sessionLive ? (
          <button type="button" class="button danger" disabled={busy} onClick={() => void stop()} title={runActive ? "Cancel the run now" : "Stop the session: its processes end and its files are freed"}>
            Stop
          </button>
        ) : null}
        {idle && run ? (
          <button type="button" class="button secondary" disabled={busy} onClick={() => setNote(`Kept: session ${run.sessionId ?? ""} stays as it is${session?.expiresAt ? ", until its timeout" : ""}; send a follow-up or stop it any time.`)}>
            Keep
          </button>
        ) : null}
        {session?.expiresAt && sessionLive ? (
          <span class="muted">
            Session ends <Time iso={session.expiresAt} /> (compute.timeout).
          </span>
        ) : null}
      </div>
      {note ? <p role="status">{note}</p> : null}
      <ErrorAlert error={error} />
    </div>
  );
}

/** What happens to the session after the turn, in words. */
function outcomeNote(run: Run): string | null {
  switch (run.outcome) {
    case "keep":
      return run.state === "idle" ? "Outcome keep: the session is kept for follow-ups." : null;
    case "snapshot":
      return run.result?.snapshotId ? `Outcome snapshot: the session was snapshotted (${run.result.snapshotId}) and stopped.` : "Outcome snapshot: after the turn the session is snapshotted, then stopped.";
    case "stop":
      return "Outcome stop: the session is stopped after the turn.";
  }
}
