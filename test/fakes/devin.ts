import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A FAKE of Devin's v1 REST API (see src/agents/devin.ts for the documented routes), plain HTTP on
 * 127.0.0.1 and a random port: the control plane calls it directly with `baseUrl`, no sandbox or
 * gateway in between. Every route checks `Authorization: Bearer <key>` (401 otherwise, with
 * Devin's `{"detail": …}` shape). The test drives a session by hand: `devinSays()` adds a Devin
 * message, `setStatus()` moves `status_enum`; a follow-up is recorded and puts the session back to
 * `working`; DELETE terminates it (`finished`, and further messages are refused).
 */
export interface FakeDevinMessage {
  type: "initial_user_message" | "user_message" | "devin_message";
  event_id: string;
  message: string;
  timestamp: string;
}

export interface FakeDevinSession {
  session_id: string;
  status_enum: string;
  messages: FakeDevinMessage[];
  pull_request: { url: string } | null;
  structured_output: unknown;
  terminated: boolean;
}

export interface FakeDevin {
  url: string;
  sessions: Map<string, FakeDevinSession>;
  /** Every request: method, path, and the Authorization header as received. */
  requests: { method: string; path: string; authorization: string | undefined; body: unknown }[];
  devinSays(id: string, text: string): void;
  setStatus(id: string, status: string): void;
  close(): Promise<void>;
}

export async function startFakeDevin(opts: { apiKey: string }): Promise<FakeDevin> {
  const sessions = new Map<string, FakeDevinSession>();
  const requests: FakeDevin["requests"] = [];
  let n = 0;
  const event = (type: FakeDevinMessage["type"], message: string): FakeDevinMessage => ({ type, event_id: `fake-event-${++n}`, message, timestamp: new Date().toISOString() });
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body: unknown = null;
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : null;
      } catch {
        body = null;
      }
      requests.push({ method: req.method ?? "", path: req.url ?? "", authorization: req.headers.authorization, body });
      route(req, res, body);
    });
  });
  const route = (req: IncomingMessage, res: ServerResponse, body: unknown) => {
    if (req.headers.authorization !== `Bearer ${opts.apiKey}`) return json(res, 401, { detail: "Invalid API key (fake devin)" });
    const path = (req.url ?? "").split("?")[0] ?? "";
    const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
    if (req.method === "POST" && path === "/v1/sessions") {
      if (typeof b.prompt !== "string" || b.prompt === "") return json(res, 422, { detail: "prompt is required" });
      const id = `devin-fake${(++n).toString(16).padStart(8, "0")}`;
      sessions.set(id, { session_id: id, status_enum: "working", messages: [event("initial_user_message", b.prompt)], pull_request: null, structured_output: null, terminated: false });
      return json(res, 200, { session_id: id, url: `https://app.devin.ai/sessions/${id.slice(6)}`, is_new_session: true });
    }
    const m = /^\/v1\/sessions\/([^/]+)(\/message)?$/.exec(path);
    const s = m ? sessions.get(decodeURIComponent(m[1]!)) : undefined;
    if (!m || !s) return json(res, 404, { detail: "Session not found (fake devin)" });
    if (req.method === "GET" && !m[2]) return json(res, 200, { ...s, title: "fake", created_at: "", updated_at: "" });
    if (req.method === "POST" && m[2]) {
      if (s.terminated) return json(res, 400, { detail: "Session is terminated" });
      if (typeof b.message !== "string") return json(res, 422, { detail: "message is required" });
      s.messages.push(event("user_message", b.message));
      s.status_enum = "working";
      return json(res, 200, { detail: "Message sent" });
    }
    if (req.method === "DELETE" && !m[2]) {
      s.terminated = true;
      s.status_enum = "finished";
      return json(res, 200, { detail: "Session terminated successfully" });
    }
    return json(res, 405, { detail: "method not allowed" });
  };
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const get = (id: string) => {
    const s = sessions.get(id);
    if (!s) throw new Error(`fake devin: no session ${id}`);
    return s;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    sessions,
    requests,
    devinSays: (id, text) => void get(id).messages.push(event("devin_message", text)),
    setStatus: (id, status) => void (get(id).status_enum = status),
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}
