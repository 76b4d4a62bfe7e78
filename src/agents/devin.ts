/**
 * Devin, a hosted agent: no process in the sandbox. The control plane drives Devin's REST API (v1)
 * with the key from the vault, which never enters a sandbox. Written from Devin's API reference
 * (https://docs.devin.ai/api-reference, the v1 "Sessions" pages and https://docs.devin.ai/openapi.yaml,
 * read 2026):
 *
 * - `POST /v1/sessions` `{prompt, idempotent}` → `{session_id, url, is_new_session}`.
 * - `GET /v1/sessions/{session_id}` → `{session_id, status_enum, messages[], structured_output,
 *   pull_request}`; a message is `{type: "initial_user_message"|"user_message"|"devin_message",
 *   event_id, message, timestamp}`. `status_enum` is `working`, `blocked` (waiting for the user),
 *   `finished`, `expired`, `suspend_requested`, `resume_requested`… (an open set).
 * - `POST /v1/sessions/{session_id}/message` `{message}`; `DELETE /v1/sessions/{session_id}`
 *   terminates the session.
 * - Auth: `Authorization: Bearer <key>` (personal `apk_user_…` or service `apk_…` keys).
 *
 * `poll()` fetches the session and returns what is new since the last call: the `started` event
 * first, each message not seen before (by `event_id`), a pull request when one appears, and when
 * Devin stops working (`blocked`, `finished`, `expired`, `stopped`) a `result` with its last
 * message and `done: true`. A follow-up wakes a blocked session, so polling goes on after it.
 */
import { PaddockError } from "../core/index.ts";
import type { AgentEvent, HostedAgent, HostedAgentSession } from "./types.ts";

/** Where Devin has stopped working for now: the turn is over. `blocked` waits for a follow-up. */
const STOPPED = new Set(["blocked", "finished", "expired", "stopped"]);
const FAILED = new Set(["expired"]);

export const devin: HostedAgent = {
  name: "devin",
  title: "Devin",
  vendor: { hosts: ["api.devin.ai"], keyEnv: "DEVIN_API_KEY" },
  start: async (opts) => {
    const api = new DevinApi(opts.baseUrl, opts.apiKey, opts.fetch ?? fetch);
    const created = await api.call("POST", "/v1/sessions", { prompt: opts.prompt, idempotent: false });
    const id = typeof created.session_id === "string" ? created.session_id : null;
    if (id === null) throw new PaddockError("unavailable", "Devin's API answered POST /v1/sessions without a session_id");
    return new DevinSession(api, id, typeof created.url === "string" ? created.url : null);
  },
};

type Json = Record<string, unknown>;

class DevinApi {
  readonly #base: string;
  readonly #key: string;
  readonly #fetch: typeof fetch;

  constructor(baseUrl: string, key: string, f: typeof fetch) {
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#key = key;
    this.#fetch = f;
  }

  async call(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Json> {
    let res: Response;
    try {
      res = await this.#fetch(`${this.#base}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.#key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new PaddockError("unavailable", `Devin's API at ${this.#base} did not answer ${method} ${path}: ${(err as Error).message}`, undefined, { cause: err });
    }
    const text = await res.text();
    if (res.status === 401 || res.status === 403) {
      // Never echo the key; Devin's own detail says which (invalid, revoked, no access).
      throw new PaddockError("unauthorized", `Devin refused the API key (HTTP ${res.status}${detail(text)}): check the DEVIN_API_KEY secret in the vault`);
    }
    if (res.status === 404) throw new PaddockError("not_found", `Devin has no ${method} ${path} (HTTP 404${detail(text)})`);
    if (!res.ok) throw new PaddockError("unavailable", `Devin's API answered ${method} ${path} with HTTP ${res.status}${detail(text)}`);
    if (text.trim() === "") return {};
    try {
      const v: unknown = JSON.parse(text);
      return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : {};
    } catch {
      throw new PaddockError("unavailable", `Devin's API answered ${method} ${path} with something other than JSON`);
    }
  }
}

function detail(text: string): string {
  try {
    const v = JSON.parse(text) as { detail?: unknown };
    return typeof v.detail === "string" ? `: ${v.detail.slice(0, 300)}` : "";
  } catch {
    return "";
  }
}

class DevinSession implements HostedAgentSession {
  readonly id: string;
  readonly url: string | null;
  readonly #api: DevinApi;
  readonly #seen = new Set<string>();
  #started = false;
  #pullRequest: string | null = null;
  /** The status the last `result` was given for, so a turn ends once. */
  #ended: string | null = null;

  constructor(api: DevinApi, id: string, url: string | null) {
    this.#api = api;
    this.id = id;
    this.url = url;
  }

  async poll(signal?: AbortSignal): Promise<{ events: AgentEvent[]; done: boolean }> {
    const s = await this.#api.call("GET", `/v1/sessions/${encodeURIComponent(this.id)}`, undefined, signal);
    const events: AgentEvent[] = [];
    if (!this.#started) {
      this.#started = true;
      events.push({ type: "started", agentSessionId: this.id, model: null });
    }
    const messages = Array.isArray(s.messages) ? s.messages.filter((m): m is Json => typeof m === "object" && m !== null) : [];
    let lastDevin: string | null = null;
    for (const [i, m] of messages.entries()) {
      const text = typeof m.message === "string" ? m.message : "";
      if (m.type === "devin_message") lastDevin = text;
      const key = typeof m.event_id === "string" ? m.event_id : `#${i}`;
      if (this.#seen.has(key)) continue;
      this.#seen.add(key);
      if (m.type === "devin_message") events.push({ type: "message", role: "assistant", text });
      else if (m.type === "user_message" || m.type === "initial_user_message") events.push({ type: "message", role: "user", text });
      else events.push({ type: "raw", line: JSON.stringify(m) });
    }
    const pr = typeof s.pull_request === "object" && s.pull_request !== null ? (s.pull_request as Json).url : null;
    if (typeof pr === "string" && pr !== this.#pullRequest) {
      this.#pullRequest = pr;
      events.push({ type: "raw", line: JSON.stringify({ pull_request: { url: pr } }) });
    }
    const status = typeof s.status_enum === "string" ? s.status_enum : "";
    const done = STOPPED.has(status);
    if (done && this.#ended !== status) {
      this.#ended = status;
      if (s.structured_output !== undefined && s.structured_output !== null) events.push({ type: "raw", line: JSON.stringify({ structured_output: s.structured_output }) });
      events.push({ type: "result", text: lastDevin ?? "", isError: FAILED.has(status) });
    }
    if (!done) this.#ended = null;
    return { events, done };
  }

  async followUp(prompt: string): Promise<void> {
    await this.#api.call("POST", `/v1/sessions/${encodeURIComponent(this.id)}/message`, { message: prompt });
    // The next stop is a new turn's end, even if Devin stops in the same state.
    this.#ended = null;
  }

  async cancel(): Promise<void> {
    await this.#api.call("DELETE", `/v1/sessions/${encodeURIComponent(this.id)}`);
  }
}
