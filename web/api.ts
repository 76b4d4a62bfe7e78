/**
 * The web UI's only way to the server: the same /v1 API the CLI and the SDK use, authenticated by
 * the `paddock_session` cookie (HttpOnly: this code never sees it). Every request carries
 * `X-Paddock-CSRF: 1`, which the server requires of cookie-authenticated requests that change
 * anything (a custom header cannot be sent cross-site without a CORS preflight the server never
 * approves). A 401 means the session ended (expired, token revoked, principal disabled): the page
 * goes to the login page and comes back afterwards.
 */

/** An error answered by the API: `{ error: { code, message } }`, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface RequestOptions {
  /** A JSON body (sent as application/json). */
  body?: unknown;
  signal?: AbortSignal;
  /** Extra headers (e.g. Accept). */
  headers?: Record<string, string>;
  /** Leave a 401 to the caller instead of going to the login page (the login page itself). */
  allowUnauthorized?: boolean;
}

/** Where to log in, coming back to the current page afterwards. */
export function loginUrl(next: string = location.pathname + location.search): string {
  return next.startsWith("/ui/login") || next === "/" ? "/ui/login" : `/ui/login?next=${encodeURIComponent(next)}`;
}

/** The response of a request, or ApiError. A 401 sends the browser to the login page (and still rejects). */
export async function request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { "X-Paddock-CSRF": "1", Accept: "application/json", ...opts.headers };
  const init: RequestInit = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  if (opts.signal) init.signal = opts.signal;
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, "unavailable", "The Paddock server cannot be reached. Check that it is running, then try again.");
  }
  if (res.ok) return res;
  const err = await errorOf(res);
  if (res.status === 401 && !opts.allowUnauthorized) location.assign(loginUrl());
  throw err;
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.message) return new ApiError(res.status, body.error.code ?? "internal", body.error.message);
  } catch {
    /* not our error shape */
  }
  return new ApiError(res.status, "internal", `the server answered ${res.status} ${res.statusText}`);
}

/** A JSON API call. 204 resolves undefined. */
export async function api<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await request(method, path, opts);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const get = <T>(path: string, signal?: AbortSignal): Promise<T> => api<T>("GET", path, signal ? { signal } : {});
export const post = <T>(path: string, body: unknown = {}, signal?: AbortSignal): Promise<T> => api<T>("POST", path, { body, ...(signal ? { signal } : {}) });

/** A query string from the defined, non-empty values: `?a=1&b=x`, or "". */
export function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/**
 * Each JSON line of an NDJSON answer (a run's transcript with follow=1, a build's events), as it
 * arrives, until the server ends the stream or `signal` aborts (then it returns quietly).
 *
 * @example
 * for await (const e of followNdjson<RunEvent>(`/v1/runs/${id}/events?follow=1`, abort.signal)) show(e);
 */
export async function* followNdjson<T>(path: string, signal?: AbortSignal, opts: Omit<RequestOptions, "signal"> = {}): AsyncGenerator<T> {
  let res: Response;
  try {
    res = await request(opts.body === undefined ? "GET" : "POST", path, { ...opts, ...(signal ? { signal } : {}), headers: { Accept: "application/x-ndjson", ...opts.headers } });
  } catch (err) {
    if (signal?.aborted) return;
    throw err;
  }
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) yield JSON.parse(line) as T;
      }
    }
    if (buffered.trim()) yield JSON.parse(buffered) as T;
  } catch (err) {
    if (signal?.aborted) return;
    throw err;
  } finally {
    reader.releaseLock();
  }
}

/** `/v1/...` path segment, encoded. */
export const seg = (s: string): string => encodeURIComponent(s);
