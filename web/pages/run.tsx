/** `/ui/runs/:id`: an agent run and its session (web/components/session-view.tsx). */
import { SessionView } from "../components/session-view.tsx";
import type { PageProps } from "../routes.tsx";

export function RunPage({ params }: PageProps) {
  const id = params.id ?? "";
  return <SessionView key={id} runId={id} sessionId={null} />;
}
