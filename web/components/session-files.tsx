/**
 * A browser of the session's /workspace: directories from GET /v1/sessions/:id/files/list, a
 * file's bytes from GET /v1/sessions/:id/files (shown as text when they decode as UTF-8, offered
 * as a download otherwise). Works on ended sessions only while the provider still has their files.
 */
import { useEffect, useState } from "preact/hooks";
import { get, query, request, seg } from "../api.ts";
import { ErrorAlert, Loading, useAsync } from "./async.tsx";
import { bytes } from "./session-types.ts";
import type { FileEntry } from "./session-types.ts";

const ROOT = "/workspace";
/** Larger files are not loaded into the page; they can be downloaded. */
const VIEW_MAX = 1 << 20;

/** `changed`: a value that changes when the files may have (a turn ended): the listing is read again. */
export function FileBrowser({ sessionId, changed }: { sessionId: string; changed?: unknown }) {
  const [dir, setDir] = useState(ROOT);
  const [open, setOpen] = useState<FileEntry | null>(null);
  const listing = useAsync((signal) => get<FileEntry[]>(`/v1/sessions/${seg(sessionId)}/files/list${query({ path: dir })}`, signal), [sessionId, dir, changed]);
  const entries = [...(listing.data ?? [])].sort((a, b) => Number(b.type === "dir") - Number(a.type === "dir") || a.name.localeCompare(b.name));
  const parts = dir.split("/").filter(Boolean);
  const go = (path: string) => {
    setOpen(null);
    setDir(path);
  };
  return (
    <div class="files">
      <nav aria-label="Folder path" class="crumbs">
        {parts.map((p, i) => {
          const path = "/" + parts.slice(0, i + 1).join("/");
          const here = i === parts.length - 1;
          return (
            <span key={path}>
              {"/"}
              {here ? (
                <span aria-current="location">{p}</span>
              ) : (
                <button type="button" class="link" onClick={() => go(path)} disabled={path.length < ROOT.length}>
                  {p}
                </button>
              )}
            </span>
          );
        })}
        <button type="button" class="button secondary small" onClick={listing.reload}>
          Refresh
        </button>
      </nav>
      <div class="files-panes">
        <div class="files-list" tabIndex={0} role="region" aria-label="Folder listing">
          {listing.loading && !listing.data ? <Loading label="Loading files…" /> : null}
          <ErrorAlert error={listing.error} />
          <table>
            <caption class="sr-only">Files in {dir}</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Size</th>
              </tr>
            </thead>
            <tbody>
              {dir !== ROOT ? (
                <tr>
                  <td colSpan={2}>
                    <button type="button" class="link" onClick={() => go(dir.slice(0, dir.lastIndexOf("/")) || ROOT)}>
                      .. (up)
                    </button>
                  </td>
                </tr>
              ) : null}
              {entries.map((e) => (
                <tr key={e.name} class={open?.name === e.name ? "selected" : ""}>
                  <td>
                    {e.type === "dir" ? (
                      <button type="button" class="link" onClick={() => go(`${dir}/${e.name}`)}>
                        {e.name}/
                      </button>
                    ) : e.type === "file" ? (
                      <button type="button" class="link" aria-pressed={open?.name === e.name} onClick={() => setOpen(e)}>
                        {e.name}
                      </button>
                    ) : (
                      <span>
                        {e.name} <span class="muted">({e.type})</span>
                      </span>
                    )}
                  </td>
                  <td class="num">{e.type === "file" ? bytes(e.size) : ""}</td>
                </tr>
              ))}
              {listing.data && entries.length === 0 ? (
                <tr>
                  <td colSpan={2} class="muted">
                    Empty folder.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </div>
        <div class="files-view">{open ? <FileView sessionId={sessionId} path={`${dir}/${open.name}`} entry={open} /> : <p class="muted">Choose a file to see it here.</p>}</div>
      </div>
    </div>
  );
}

function FileView({ sessionId, path, entry }: { sessionId: string; path: string; entry: FileEntry }) {
  const [content, setContent] = useState<{ text: string | null; blob: Blob } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [url, setUrl] = useState<string | null>(null);
  const tooBig = entry.size > VIEW_MAX;
  const load = async (signal?: AbortSignal) => {
    const res = await request("GET", `/v1/sessions/${seg(sessionId)}/files${query({ path })}`, { headers: { Accept: "application/octet-stream" }, ...(signal ? { signal } : {}) });
    const blob = await res.blob();
    let text: string | null = null;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(await blob.arrayBuffer());
      if (text.includes("\u0000")) text = null;
    } catch {
      text = null;
    }
    return { text, blob };
  };
  useEffect(() => {
    setContent(null);
    setError(null);
    if (tooBig) return;
    const abort = new AbortController();
    load(abort.signal).then(
      (c) => !abort.signal.aborted && setContent(c),
      (err: unknown) => !abort.signal.aborted && setError(err),
    );
    return () => abort.abort();
  }, [sessionId, path]);
  useEffect(() => () => void (url && URL.revokeObjectURL(url)), [url]);
  const download = async () => {
    try {
      const blob = content?.blob ?? (await load()).blob;
      setUrl(URL.createObjectURL(blob));
    } catch (err) {
      setError(err);
    }
  };
  return (
    <div>
      <h3 class="file-name">
        <code>{path}</code> <span class="muted">({bytes(entry.size)})</span>
      </h3>
      <ErrorAlert error={error} />
      {tooBig ? <p>This file is too large to show here.</p> : null}
      {!tooBig && !content && !error ? <Loading label="Loading the file…" /> : null}
      {content && content.text !== null ? (
        <pre class="code file-text" tabIndex={0} aria-label={`Contents of ${path}`}>
          <code>{content.text}</code>
        </pre>
      ) : null}
      {content && content.text === null ? <p>Binary file: not shown.</p> : null}
      {url ? (
        <a href={url} download={entry.name}>
          Save {entry.name}
        </a>
      ) : (
        <button type="button" class="button secondary small" onClick={() => void download()}>
          Download
        </button>
      )}
    </div>
  );
}
