/**
 * Shapes the session pages read beyond web/types.ts (egress records, files, previews), and small
 * formatting helpers they share. The server's zod schemas are the source of truth.
 */

/** GET /v1/sessions/:id/egress: one request through the egress gateway (the store's record, as the API returns it). */
export type { StoredEgressRecord as EgressRecord } from "../../src/core/store.ts";

/** GET /v1/sessions/:id/files/list: one directory entry. */
export interface FileEntry {
  name: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  mode: number;
  mtime: string;
}

/**
 * A preview: a port of a session's sandbox served at a URL (POST /v1/previews {session, port}).
 * Written against the shape the previews API was specified with; fields beyond these are ignored.
 */
export interface Preview {
  id: string;
  session: string;
  port: number;
  url: string;
  createdAt?: string;
  createdBy?: string;
  expiresAt?: string | null;
}

/** A preview as the API may name its fields (`session` or `sessionId`). */
export function previewOf(p: Partial<Preview> & { sessionId?: string }): Preview {
  return { id: p.id ?? "", session: p.session ?? p.sessionId ?? "", port: p.port ?? 0, url: p.url ?? "", ...(p.createdAt ? { createdAt: p.createdAt } : {}), ...(p.createdBy ? { createdBy: p.createdBy } : {}) };
}

/** 1536 → "1.5 KiB". */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** 1234 → "1.2 s", 65000 → "1 min 5 s". */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** The clock time of an ISO timestamp, to the second (for dense tables). */
export function clock(iso: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toLocaleTimeString([], { hour12: false });
}

/** The string value of `o[k]` when it is one. */
export function str(o: Record<string, unknown>, k: string): string | null {
  const v = o[k];
  return typeof v === "string" ? v : null;
}

/** A command from an audit record's detail (`argv` or `command`), as one line. */
export function commandOf(detail: Record<string, unknown>): string | null {
  const argv = detail.argv;
  if (Array.isArray(argv)) return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(String(a)) ? String(a) : JSON.stringify(String(a)))).join(" ");
  return str(detail, "command");
}
