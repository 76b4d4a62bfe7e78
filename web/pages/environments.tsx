/** Environments the user may read: their current version, what the user may do there, and a link to each. */
import { get } from "../api.ts";
import { ErrorAlert, Loading, useAsync } from "../components/async.tsx";
import { Time } from "../components/format.tsx";
import { Page } from "../components/page.tsx";
import { useMe } from "../me.tsx";
import { Link } from "../router.tsx";
import type { Environment } from "../types.ts";

export function EnvironmentsPage() {
  const me = useMe();
  const envs = useAsync((signal) => get<Environment[]>("/v1/environments", signal), []);
  return (
    <Page title="Environments">
      <ErrorAlert error={envs.error} />
      {!envs.data ? (
        envs.error ? null : <Loading label="Loading environments…" />
      ) : envs.data.length === 0 ? (
        <p class="muted">There are no environments you can see. An engineer creates them with <code>paddock env apply</code>.</p>
      ) : (
        <div class="table-wrap">
          <table>
            <caption>Environments you can see</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Current version</th>
                <th scope="col">Latest version</th>
                <th scope="col">Your access</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {envs.data.map((e) => (
                <tr key={e.name}>
                  <td>
                    <Link href={`/ui/environments/${encodeURIComponent(e.name)}`}>{e.name}</Link>
                  </td>
                  <td>{e.currentVersion ?? "none ready yet"}</td>
                  <td>{e.latestVersion}</td>
                  <td>{me.admin ? "admin" : (me.environments[e.name] ?? []).join(", ") || "none"}</td>
                  <td>
                    <Time iso={e.updatedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Page>
  );
}
