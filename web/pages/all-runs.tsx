/** Every run the user may read, newest first, each linking to its page. */
import { get, query } from "../api.ts";
import { ErrorAlert, Loading, useAsync } from "../components/async.tsx";
import { ShortId, StateBadge, Time } from "../components/format.tsx";
import { Page } from "../components/page.tsx";
import { Link } from "../router.tsx";
import type { Run } from "../types.ts";

export function AllRunsPage() {
  return (
    <Page title="Runs">
      <RecentRuns />
    </Page>
  );
}

/** The runs table; `environment` narrows it, `limit` keeps the newest few. */
export function RecentRuns({ environment, limit }: { environment?: string; limit?: number }) {
  const runs = useAsync((signal) => get<Run[]>(`/v1/runs${query({ environment })}`, signal), [environment]);
  if (runs.error) return <ErrorAlert error={runs.error} />;
  if (!runs.data) return <Loading label="Loading runs…" />;
  const list = limit ? runs.data.slice(0, limit) : runs.data;
  if (list.length === 0) return <p class="muted">No runs yet.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption>{environment ? `Runs in ${environment}` : "Runs"}, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Run</th>
            <th scope="col">Prompt</th>
            <th scope="col">Environment</th>
            <th scope="col">Agent</th>
            <th scope="col">Started by</th>
            <th scope="col">State</th>
            <th scope="col">Started</th>
          </tr>
        </thead>
        <tbody>
          {list.map((r) => (
            <tr key={r.id}>
              <td>
                <Link href={`/ui/runs/${encodeURIComponent(r.id)}`} aria-label={`Run ${r.id}`}>
                  <ShortId id={r.id} />
                </Link>
              </td>
              <td class="prompt-cell">{r.prompt.length > 120 ? `${r.prompt.slice(0, 120)}…` : r.prompt}</td>
              <td>{r.environment}</td>
              <td>{r.agent}</td>
              <td>{r.trigger ? `${r.startedBy} (trigger ${r.trigger.name})` : r.startedBy}</td>
              <td>
                <StateBadge state={r.state} />
              </td>
              <td>
                <Time iso={r.createdAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
