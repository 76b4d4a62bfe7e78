/**
 * `/ui/sessions/:id`: a session on its own (a person's, or a run's seen from the session side:
 * the page links to the run when one of the environment's runs works in it).
 */
import { get, query } from "../api.ts";
import { useAsync } from "../components/async.tsx";
import { SessionView } from "../components/session-view.tsx";
import { Link } from "../router.tsx";
import type { Run, Session } from "../types.ts";
import type { PageProps } from "../routes.tsx";

export function SessionPage({ params }: PageProps) {
  const id = params.id ?? "";
  return <SessionView key={id} runId={null} sessionId={id} extra={<RunLink sessionId={id} />} />;
}

/** "Run X works in this session", when one does. */
function RunLink({ sessionId }: { sessionId: string }) {
  const run = useAsync(async (signal) => {
    const s = await get<Session>(`/v1/sessions/${encodeURIComponent(sessionId)}`, signal);
    if (!s.agent) return null;
    const runs = await get<Run[]>(`/v1/runs${query({ environment: s.environment })}`, signal);
    return runs.find((r) => r.sessionId === sessionId) ?? null;
  }, [sessionId]);
  if (!run.data) return null;
  return (
    <p class="notice">
      Agent run <Link href={`/ui/runs/${encodeURIComponent(run.data.id)}`}>{run.data.id}</Link> works in this session: its page has the transcript, the changes and the checks.
    </p>
  );
}
