/**
 * `http://paddock.internal`: the control plane's small API for code inside a sandbox, served by the
 * gateway (the sandbox's only way out) to registered sessions only. Agents use it to submit their
 * tool calls for the same command check the exec API applies (docs/guardrails.md, "Agent tool
 * calls"). The gateway does not know what the routes mean: it hands the request, tagged with the
 * calling session (known from the source address, never from anything the sandbox says), to the
 * handler the control plane gave it.
 */
import type { ServerResponse } from "node:http";
import type { Buffered, Refusal } from "./body.ts";

export const LOCAL_API_HOST = "paddock.internal";
/** Tool calls are small; anything larger is not one. */
export const MAX_LOCAL_BODY_BYTES = 1024 * 1024;

export interface LocalRequest {
  method: string;
  /** Path and query, e.g. `/v1/check`. */
  path: string;
  body: Buffer;
  /** Aborted when the caller goes away (a waiting approval then ends). */
  signal: AbortSignal;
}

export interface LocalResponse {
  status: number;
  body: unknown;
}

/** The control plane's side: answer one request from session `sessionId`. */
export type LocalApi = (sessionId: string, req: LocalRequest) => Promise<LocalResponse>;

/**
 * Serve one request to paddock.internal; resolves the status sent. Never rejects. `read` reads the
 * body (at most MAX_LOCAL_BODY_BYTES, within the session's buffer budget); the caller releases it.
 */
export async function serveLocal(api: LocalApi | undefined, sessionId: string, method: string, path: string, read: () => Promise<Buffered | Refusal>, res: ServerResponse): Promise<number> {
  const send = (status: number, body: unknown): number => {
    if (res.headersSent) {
      res.destroy();
      return status;
    }
    const text = JSON.stringify(body) + "\n";
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
    res.end(text);
    return status;
  };
  if (!api) return send(404, { error: "paddock.internal is not served by this installation" });
  const got = await read();
  if ("status" in got) return send(got.status, { error: got.reason });
  const body = got.body;
  const abort = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) abort.abort();
  });
  try {
    const out = await api(sessionId, { method, path, body, signal: abort.signal });
    return send(out.status, out.body);
  } catch {
    // Fail closed, and say nothing about why: the caller is inside the sandbox.
    return send(500, { error: "paddock.internal could not answer" });
  }
}
