/**
 * Previews (a port of the session served at a URL: GET/POST /v1/previews) and snapshots of the
 * session (GET /v1/snapshots, filtered to this session; POST /v1/snapshots {session}).
 */
import { useState } from "preact/hooks";
import { ApiError, api, get, post, query, seg } from "../api.ts";
import type { Snapshot } from "../types.ts";
import { ErrorAlert, errorText, useAsync } from "./async.tsx";
import { Time } from "./format.tsx";
import { clock } from "./session-types.ts";

/** A preview as the API answers it (the list, or `{preview, token, url}` from a create). */
export interface PreviewItem {
  id: string;
  sessionId: string;
  port: number;
  public?: boolean;
  createdBy?: string;
  createdAt: string;
  expiresAt?: string;
  revokedAt?: string | null;
  /** The preview's URL, when the API gives one (the create's carries the visitor token). */
  url?: string;
}

type Created = { preview: PreviewItem; url?: string; token?: string } | (PreviewItem & { session?: string });

function normalise(c: Created): PreviewItem {
  if ("preview" in c) return { ...c.preview, ...(c.url ? { url: c.url } : {}) };
  return { ...c, sessionId: c.sessionId ?? c.session ?? "" };
}

/** The previews of a session: GET /v1/previews?session=ID (an API without the route: none). */
export function usePreviews(sessionId: string) {
  return useAsync(async (signal) => {
    try {
      const list = await get<Created[]>(`/v1/previews${query({ session: sessionId })}`, signal);
      return list.map(normalise).filter((p) => p.sessionId === sessionId || !p.sessionId);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404 && err.code !== "not_found") return [];
      throw err;
    }
  }, [sessionId]);
}

export function Previews({ sessionId, running, canWrite, previews }: { sessionId: string; running: boolean; canWrite: boolean; previews: ReturnType<typeof usePreviews> }) {
  const [port, setPort] = useState("3000");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [created, setCreated] = useState<PreviewItem[]>([]);
  const create = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const made = normalise(await post<Created>("/v1/previews", { session: sessionId, port: Number(port) }));
      setCreated((c) => [made, ...c.filter((p) => p.id !== made.id)]);
      previews.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (id: string) => {
    setError(null);
    try {
      const gone = normalise(await api<Created>("DELETE", `/v1/previews/${seg(id)}`));
      setCreated((c) => c.map((p) => (p.id === id ? { ...p, revokedAt: gone.revokedAt ?? new Date().toISOString() } : p)));
      previews.reload();
    } catch (err) {
      setError(err);
    }
  };
  // The create's URL (with its token) wins over the list's for the same preview.
  const byId = new Map<string, PreviewItem>();
  for (const p of previews.data ?? []) byId.set(p.id, p);
  for (const p of created) byId.set(p.id, { ...byId.get(p.id), ...p, url: p.url ?? byId.get(p.id)?.url });
  const items = [...byId.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return (
    <div>
      <ErrorAlert error={previews.error} />
      {items.length ? (
        <ul class="previews">
          {items.map((p) => (
            <li key={p.id}>
              Port {p.port}:{" "}
              {p.url ? (
                <a href={p.url} target="_blank" rel="noopener noreferrer">
                  {p.url}
                </a>
              ) : (
                <code>{p.id}</code>
              )}{" "}
              <span class="muted">
                {p.revokedAt ? "revoked" : p.expiresAt ? <>expires <Time iso={p.expiresAt} /></> : null}
                {p.public ? ", public" : ""}
                {p.createdBy ? `, by ${p.createdBy}` : ""}
              </span>{" "}
              {canWrite && !p.revokedAt ? (
                <button type="button" class="button secondary small" aria-label={`Revoke the preview of port ${p.port}`} onClick={() => void revoke(p.id)}>
                  Revoke
                </button>
              ) : null}
            </li>
          ))}
        </ul>
      ) : (
        <p class="muted">No previews of this session.</p>
      )}
      {canWrite ? (
        <form class="row" onSubmit={(e) => void create(e)}>
          <label>
            Port{" "}
            <input type="number" min={1} max={65535} required value={port} onInput={(e) => setPort(e.currentTarget.value)} name="port" inputMode="numeric" />
          </label>
          <button type="submit" class="button" disabled={busy || !running}>
            Create preview
          </button>
          {!running ? <span class="muted">Previews are made of running sessions.</span> : null}
        </form>
      ) : null}
      <ErrorAlert error={error} />
    </div>
  );
}

export function useSessionSnapshots(sessionId: string, environment: string | undefined) {
  return useAsync(
    async (signal) => (environment ? (await get<Snapshot[]>(`/v1/snapshots${query({ environment })}`, signal)).filter((s) => s.sourceSession === sessionId) : []),
    [sessionId, environment],
  );
}

export function Snapshots({ sessionId, running, canWrite, snapshots }: { sessionId: string; running: boolean; canWrite: boolean; snapshots: ReturnType<typeof useSessionSnapshots> }) {
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const take = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const s = await post<Snapshot & { frozenMs?: number }>("/v1/snapshots", { session: sessionId, ...(name.trim() ? { name: name.trim() } : {}) });
      setDone(`Snapshot ${s.name ?? s.id} taken${typeof s.frozenMs === "number" ? ` (processes frozen for ${Math.round(s.frozenMs)} ms)` : ""}.`);
      setName("");
      snapshots.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const list = snapshots.data ?? [];
  return (
    <div>
      <ErrorAlert error={snapshots.error} />
      {list.length ? (
        <table>
          <caption class="sr-only">Snapshots of this session</caption>
          <thead>
            <tr>
              <th scope="col">Snapshot</th>
              <th scope="col">Taken</th>
              <th scope="col">By</th>
              <th scope="col">Start from it</th>
            </tr>
          </thead>
          <tbody>
            {list.map((s) => (
              <tr key={s.id}>
                <td>
                  <code>{s.name ?? s.id}</code>
                  {s.autoRemove ? <span class="muted"> (fork)</span> : null}
                </td>
                <td>
                  <time dateTime={s.createdAt}>{clock(s.createdAt)}</time>
                </td>
                <td>{s.createdBy}</td>
                <td>
                  <code>paddock session start --from {s.name ?? s.id}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p class="muted">No snapshots of this session.</p>
      )}
      {canWrite ? (
        <form class="row" onSubmit={(e) => void take(e)}>
          <label>
            Snapshot name (optional){" "}
            <input type="text" value={name} onInput={(e) => setName(e.currentTarget.value)} name="snapshot-name" pattern="[A-Za-z0-9][A-Za-z0-9._-]*" />
          </label>
          <button type="submit" class="button" disabled={busy || !running}>
            Snapshot
          </button>
        </form>
      ) : null}
      {done ? <p role="status">{done}</p> : null}
      <ErrorAlert error={error ? errorText(error) : undefined} />
    </div>
  );
}
