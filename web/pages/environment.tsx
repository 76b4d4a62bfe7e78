/**
 * One environment: its file, build history (with each failed build's error), the names of the
 * secrets it uses (never values: the API has none to give), its guardrails, access, pool,
 * snapshots, live sessions and runs.
 */
import { get, query, request, seg } from "../api.ts";
import { useState } from "preact/hooks";
import { ErrorAlert, Loading, useAsync } from "../components/async.tsx";
import { CodeBlock, ShortId, StateBadge, Time } from "../components/format.tsx";
import { Page } from "../components/page.tsx";
import { can, useMe } from "../me.tsx";
import { Link } from "../router.tsx";
import type { PageProps } from "../routes.tsx";
import { agentsOf, type EnvironmentDetail, type EnvironmentSpec, type EnvironmentVersion, type PoolInfo, type Session, type Snapshot } from "../types.ts";
import { RecentRuns } from "./all-runs.tsx";

export function EnvironmentPage({ params }: PageProps) {
  const name = params.name ?? "";
  const me = useMe();
  const detail = useAsync((signal) => get<EnvironmentDetail>(`/v1/environments/${seg(name)}`, signal), [name]);
  const versions = useAsync((signal) => get<EnvironmentVersion[]>(`/v1/environments/${seg(name)}/versions`, signal), [name]);
  const current = detail.data?.current ?? versions.data?.[0] ?? null;
  const spec = current?.spec ?? null;
  return (
    <Page title={`Environment ${name}`}>
      <ErrorAlert error={detail.error} />
      {!detail.data && !detail.error ? <Loading /> : null}
      {detail.data ? (
        <p class="lead">
          {detail.data.environment.currentVersion === null ? "No version has built successfully yet." : `Sessions start from version ${detail.data.environment.currentVersion}.`}{" "}
          {can(me, name, "write") ? (
            agentsOf(spec).length > 0 ? (
              <Link href="/ui/">Start an agent here</Link>
            ) : null
          ) : (
            "You can look here but not start anything."
          )}
        </p>
      ) : null}
      <section aria-labelledby="env-versions">
        <h2 id="env-versions">Build history</h2>
        <Versions versions={versions.data} error={versions.error} />
      </section>
      {spec ? <SpecSections spec={spec} /> : null}
      <section aria-labelledby="env-pool">
        <h2 id="env-pool">Warm pool</h2>
        <Pool name={name} />
      </section>
      <section aria-labelledby="env-snapshots">
        <h2 id="env-snapshots">Snapshots</h2>
        <Snapshots name={name} />
      </section>
      <section aria-labelledby="env-sessions">
        <h2 id="env-sessions">Live sessions</h2>
        <Sessions name={name} />
      </section>
      <section aria-labelledby="env-runs">
        <h2 id="env-runs">Runs</h2>
        <RecentRuns environment={name} limit={20} />
      </section>
      {current ? (
        <section aria-labelledby="env-file">
          <h2 id="env-file">
            The file: <code>{current.fileName}</code> (version {current.version})
          </h2>
          <CodeBlock label={`${current.fileName}, version ${current.version}`}>{current.source}</CodeBlock>
        </section>
      ) : null}
    </Page>
  );
}

/** A version's build log, fetched when opened (steps, output, exit codes). */
function BuildLog({ name, version }: { name: string; version: number }) {
  const [text, setText] = useState<string | null>(null);
  const [failed, setFailed] = useState<unknown>(null);
  const load = (open: boolean) => {
    if (!open || text !== null) return;
    request("GET", `/v1/environments/${seg(name)}/versions/${version}/log`, { headers: { accept: "text/plain" } })
      .then((r) => r.text())
      .then(setText, setFailed);
  };
  return (
    <details onToggle={(e) => load((e.currentTarget as HTMLDetailsElement).open)}>
      <summary>Build log</summary>
      {failed ? <ErrorAlert error={failed} /> : text === null ? <Loading label="Loading the build log…" /> : <CodeBlock label={`Build log of version ${version}`}>{text}</CodeBlock>}
    </details>
  );
}

function Versions({ versions, error }: { versions: EnvironmentVersion[] | undefined; error: unknown }) {
  if (error) return <ErrorAlert error={error} />;
  if (!versions) return <Loading label="Loading versions…" />;
  return (
    <div class="table-wrap">
      <table>
        <caption>Versions, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Build</th>
            <th scope="col">Applied by</th>
            <th scope="col">Applied</th>
            <th scope="col">Build log</th>
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.version}>
              <td>{v.version}</td>
              <td>
                <StateBadge state={v.buildStatus} />
              </td>
              <td>{v.createdBy}</td>
              <td>
                <Time iso={v.createdAt} />
              </td>
              <td>
                {v.buildError ? <details><summary>Why it failed</summary><CodeBlock label={`Build error of version ${v.version}`}>{v.buildError}</CodeBlock></details> : null}
                {v.buildStatus !== "building" ? <BuildLog name={v.name} version={v.version} /> : "building…"}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function SpecSections({ spec }: { spec: EnvironmentSpec }) {
  const secrets = spec.secrets ?? [];
  return (
    <>
      <section aria-labelledby="env-agent">
        <h2 id="env-agent">Agent</h2>
        {spec.agent && agentsOf(spec).length > 0 ? (
          <dl class="facts">
            <dt>Agents</dt>
            <dd>{agentsOf(spec).join(", ")}</dd>
            {spec.agent.model ? (
              <>
                <dt>Model</dt>
                <dd>{spec.agent.model}</dd>
              </>
            ) : null}
            {spec.agent.outcome ? (
              <>
                <dt>After a run</dt>
                <dd>{spec.agent.outcome}</dd>
              </>
            ) : null}
          </dl>
        ) : (
          <p class="muted">This environment has no agent: sessions run commands only.</p>
        )}
      </section>
      <section aria-labelledby="env-secrets">
        <h2 id="env-secrets">Secrets</h2>
        <p class="hint">Names only. Sandboxes never see the values: the gateway swaps them in on the way out, for the hosts listed.</p>
        {secrets.length === 0 ? (
          <p class="muted">No secrets.</p>
        ) : (
          <div class="table-wrap">
            <table>
              <caption>Secrets this environment uses</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Sent only to</th>
                </tr>
              </thead>
              <tbody>
                {secrets.map((s) => (
                  <tr key={s.name}>
                    <td>
                      <code>{s.name}</code>
                    </td>
                    <td>{(s.hosts ?? []).join(", ") || "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <section aria-labelledby="env-policy">
        <h2 id="env-policy">Policy (guardrails)</h2>
        {spec.guardrails ? <Tree value={spec.guardrails} /> : <p class="muted">Defaults.</p>}
      </section>
      <section aria-labelledby="env-rbac">
        <h2 id="env-rbac">Who may do what</h2>
        {spec.rbac && Object.keys(spec.rbac).length > 0 ? (
          <div class="table-wrap">
            <table>
              <caption>Roles and their permissions (admins may do everything)</caption>
              <thead>
                <tr>
                  <th scope="col">Role</th>
                  <th scope="col">Permissions</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(spec.rbac).map(([role, perms]) => (
                  <tr key={role}>
                    <td>{role}</td>
                    <td>{perms.join(", ") || "none"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted">Only admins.</p>
        )}
      </section>
    </>
  );
}

/** A nested policy object as nested definition lists (lists inline), readable without YAML. */
function Tree({ value }: { value: unknown }) {
  if (Array.isArray(value)) {
    if (value.length === 0) return <span class="muted">none</span>;
    if (value.every((v) => typeof v !== "object" || v === null)) return <span>{value.map(String).join(", ")}</span>;
    return (
      <ul class="tree-list">
        {value.map((v, i) => (
          <li key={i}>
            <Tree value={v} />
          </li>
        ))}
      </ul>
    );
  }
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) return <span class="muted">none</span>;
    return (
      <dl class="tree">
        {entries.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>
              <Tree value={v} />
            </dd>
          </div>
        ))}
      </dl>
    );
  }
  return <span>{value === null || value === undefined ? "—" : String(value)}</span>;
}

function Pool({ name }: { name: string }) {
  const pools = useAsync((signal) => get<PoolInfo[]>("/v1/pools", signal), []);
  if (pools.error) return <ErrorAlert error={pools.error} />;
  if (!pools.data) return <Loading label="Loading pool…" />;
  const p = pools.data.find((x) => x.environment === name);
  if (!p || (p.min === 0 && p.max === 0)) return <p class="muted">No warm pool: each session starts a fresh sandbox.</p>;
  return (
    <dl class="facts">
      <dt>Ready</dt>
      <dd>{p.ready}</dd>
      <dt>Starting</dt>
      <dd>{p.starting}</dd>
      <dt>Size</dt>
      <dd>
        {p.min}–{p.max} ({p.source === "set" ? "set by an admin" : "from the file"})
      </dd>
      <dt>Claimed in the last minute</dt>
      <dd>{p.claimedLastMinute}</dd>
    </dl>
  );
}

function Snapshots({ name }: { name: string }) {
  const snaps = useAsync((signal) => get<Snapshot[]>(`/v1/snapshots${query({ environment: name })}`, signal), [name]);
  if (snaps.error) return <ErrorAlert error={snaps.error} />;
  if (!snaps.data) return <Loading label="Loading snapshots…" />;
  if (snaps.data.length === 0) return <p class="muted">No snapshots.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption>Snapshots of {name}, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Snapshot</th>
            <th scope="col">Name</th>
            <th scope="col">Version</th>
            <th scope="col">Taken by</th>
            <th scope="col">Taken</th>
          </tr>
        </thead>
        <tbody>
          {snaps.data.map((s) => (
            <tr key={s.id}>
              <td>
                <ShortId id={s.id} />
              </td>
              <td>{s.name ?? (s.autoRemove ? "(fork)" : "—")}</td>
              <td>{s.version}</td>
              <td>{s.createdBy}</td>
              <td>
                <Time iso={s.createdAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Sessions({ name }: { name: string }) {
  const sessions = useAsync((signal) => get<Session[]>(`/v1/sessions${query({ environment: name })}`, signal), [name]);
  if (sessions.error) return <ErrorAlert error={sessions.error} />;
  if (!sessions.data) return <Loading label="Loading sessions…" />;
  if (sessions.data.length === 0) return <p class="muted">No live sessions.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption>Live sessions of {name}</caption>
        <thead>
          <tr>
            <th scope="col">Session</th>
            <th scope="col">Started by</th>
            <th scope="col">State</th>
            <th scope="col">Started</th>
          </tr>
        </thead>
        <tbody>
          {sessions.data.map((s) => (
            <tr key={s.id}>
              <td>
                <Link href={`/ui/sessions/${encodeURIComponent(s.id)}`}>
                  <ShortId id={s.id} />
                </Link>
              </td>
              <td>{s.agent ? `${s.agent} for ${s.startedBy}` : s.startedBy}</td>
              <td>
                <StateBadge state={s.state} />
              </td>
              <td>
                <Time iso={s.createdAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
