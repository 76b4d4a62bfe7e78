/**
 * Egress records: one per request, allowed or denied. A record never holds a secret value: the
 * path keeps query keys but drops their values, and reasons are written by the gateway itself.
 */
import type { EgressRecord } from "./types.ts";

const MAX_PATH = 2048;

/** `/v1/charges?limit=10&expand=x` → `/v1/charges?limit=&expand=` */
export function recordPath(path: string): string {
  const q = path.indexOf("?");
  let out = path;
  if (q >= 0) {
    const keys = path
      .slice(q + 1)
      .split("&")
      .filter((kv) => kv !== "")
      .map((kv) => `${kv.split("=")[0] ?? ""}=`);
    out = `${path.slice(0, q)}?${keys.join("&")}`;
  }
  // Drop a fragment or anything after it; cap the length.
  return out.split("#")[0]!.slice(0, MAX_PATH);
}

export interface RecordDraft {
  sessionId: string;
  started: number;
  method: string;
  host: string;
  port: number;
  path: string;
}

export function draft(sessionId: string, method: string, host: string, port: number, path: string): RecordDraft {
  return { sessionId, started: Date.now(), method, host: host.toLowerCase(), port, path: recordPath(path) };
}

export function finish(
  d: RecordDraft,
  r: { status: number; decision: "allowed" | "denied"; rule: string; reason?: string; swapped?: string[]; bytesIn?: number; bytesOut?: number },
): EgressRecord {
  const rec: EgressRecord = {
    sessionId: d.sessionId,
    time: new Date(d.started).toISOString(),
    method: d.method,
    host: d.host,
    port: d.port,
    path: d.path,
    status: r.status,
    bytesOut: r.bytesOut ?? 0,
    bytesIn: r.bytesIn ?? 0,
    durationMs: Date.now() - d.started,
    swapped: r.swapped ?? [],
    decision: r.decision,
    rule: r.rule,
  };
  if (r.reason !== undefined) rec.reason = r.reason;
  return rec;
}

/** One log line per record (no secret values: every field is gateway-written or a placeholder-side value). */
export function logLine(r: EgressRecord): string {
  const swapped = r.swapped.length > 0 ? ` swapped=${r.swapped.join(",")}` : "";
  const reason = r.reason ? ` reason=${JSON.stringify(r.reason)}` : "";
  return `egress ${r.decision} session=${r.sessionId} ${r.method} ${r.host}:${r.port}${r.path} status=${r.status} rule=${r.rule}${swapped}${reason}`;
}
