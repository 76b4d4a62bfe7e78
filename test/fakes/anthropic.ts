import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { makeTestCertificates } from "../helpers/upstream.ts";
import { tempDir } from "../helpers/tmp.ts";

/**
 * A local fake of the Anthropic Messages API, for running the real Claude Code CLI offline. It is
 * scripted: the test gives the model's turns in order, each a function of the request it answers
 * (so a turn can look at the tool_result the previous one caused), and the fake streams each
 * answer back as the API's server-sent events. Every request is recorded as received (headers,
 * x-api-key included, and body), so a test can check what really left the gateway.
 *
 * HTTPS with its own test CA on a loopback address of this machine; it also answers as the
 * `evil.example` sink a test may try to exfiltrate to (recorded, answered 200).
 */
export const FAKE_ANTHROPIC_ADDRESS = "127.0.60.1";
export const FAKE_ANTHROPIC_NAMES = ["api.anthropic.com", "evil.example"];

export interface FakeRequest {
  method: string;
  url: string;
  host: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The body as JSON when it was JSON. */
  json: FakeMessagesBody | null;
}

/** The parts of a Messages API request body the scripts look at. */
export interface FakeMessagesBody {
  model?: string;
  stream?: boolean;
  max_tokens?: number;
  system?: unknown;
  tools?: { name: string }[];
  messages?: { role: "user" | "assistant"; content: string | FakeBlock[] }[];
  [k: string]: unknown;
}

export type FakeBlock =
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: unknown }
  | { type: "tool_result"; tool_use_id: string; content: string | { type: string; text?: string }[]; is_error?: boolean }
  | { type: string; [k: string]: unknown };

/** What the scripted model answers: text and/or tool calls (a tool call ends the turn with stop_reason tool_use). */
export interface FakeReply {
  text?: string;
  tools?: { name: string; input: Record<string, unknown>; id?: string }[];
  usage?: { input_tokens: number; output_tokens: number };
}

export type FakeTurn = (req: FakeRequest) => FakeReply;

export interface FakeAnthropic {
  address: string;
  caPem: string;
  /** Every request, in order of arrival. */
  received: FakeRequest[];
  /** The requests that consumed a scripted turn (the agent's main loop). */
  turns: FakeRequest[];
  /** Requests to routes the fake does not know (answered 404). */
  unknown: FakeRequest[];
  /** Requests to the evil.example sink. */
  sink: FakeRequest[];
  /** Replace the script (the next turn is the first of `turns`). */
  script(turns: FakeTurn[]): void;
  close(): Promise<void>;
}

/** The text of every tool_result in a request's last user message, by tool_use_id. */
export function fakeToolResults(req: FakeRequest): { id: string; text: string; isError: boolean }[] {
  const last = req.json?.messages?.at(-1);
  if (!last || typeof last.content === "string") return [];
  return last.content
    .filter((b): b is Extract<FakeBlock, { type: "tool_result" }> => b.type === "tool_result" && "tool_use_id" in b)
    .map((b) => ({
      id: b.tool_use_id,
      text: typeof b.content === "string" ? b.content : b.content.map((c) => c.text ?? "").join(""),
      isError: b.is_error === true,
    }));
}

/**
 * Whether a Messages request is the agent's main loop (it offers tools) rather than a side query
 * the CLI makes on its own (titles, topic checks): side queries get a short text answer and do not
 * consume a scripted turn.
 */
function isMainLoop(body: FakeMessagesBody): boolean {
  return Array.isArray(body.tools) && body.tools.length > 0;
}

export async function startFakeAnthropic(opts: { address?: string; port?: number; turns?: FakeTurn[]; names?: string[] } = {}): Promise<FakeAnthropic> {
  const address = opts.address ?? FAKE_ANTHROPIC_ADDRESS;
  const dir = await tempDir("paddock-fake-anthropic-");
  const certs = await makeTestCertificates(dir.path, opts.names ?? FAKE_ANTHROPIC_NAMES).finally(() => dir.remove());
  let script: FakeTurn[] = opts.turns ?? [];
  let next = 0;
  let ids = 0;
  const fake: FakeAnthropic = {
    address,
    caPem: certs.caPem,
    received: [],
    turns: [],
    unknown: [],
    sink: [],
    script: (turns) => {
      script = turns;
      next = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  const handle = (req: IncomingMessage, res: ServerResponse, raw: string) => {
    let json: FakeMessagesBody | null = null;
    try {
      json = raw ? (JSON.parse(raw) as FakeMessagesBody) : null;
    } catch {
      json = null;
    }
    const r: FakeRequest = { method: req.method ?? "", url: req.url ?? "", host: String(req.headers.host ?? ""), headers: req.headers, body: raw, json };
    fake.received.push(r);
    const path = r.url.split("?")[0];
    if (r.host.split(":")[0] === "evil.example") {
      fake.sink.push(r);
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (r.method === "POST" && path === "/v1/messages" && json) {
      let reply: FakeReply;
      if (isMainLoop(json)) {
        fake.turns.push(r);
        const turn = script[next++];
        reply = turn ? turn(r) : { text: "(the fake's script has no more turns)" };
      } else {
        reply = { text: "fake side answer" };
      }
      const message = toMessage(reply, String(json.model ?? "claude-fake"), () => `toolu_fake_${String(++ids).padStart(4, "0")}`);
      if (json.stream) streamMessage(res, message);
      else res.writeHead(200, { "content-type": "application/json", "request-id": "req_fake" }).end(JSON.stringify(message));
      return;
    }
    if (r.method === "POST" && path === "/v1/messages/count_tokens") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ input_tokens: 100 }));
      return;
    }
    fake.unknown.push(r);
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ type: "error", error: { type: "not_found_error", message: `the fake has no ${r.method} ${path}` } }));
  };
  const server: Server = createServer({ key: certs.keyPem, cert: certs.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handle(req, res, Buffer.concat(chunks).toString("utf8")));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 443, address, () => resolve());
  });
  return fake;
}

interface FakeMessage {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: ({ type: "text"; text: string } | { type: "tool_use"; id: string; name: string; input: Record<string, unknown> })[];
  stop_reason: "end_turn" | "tool_use";
  stop_sequence: null;
  usage: { input_tokens: number; output_tokens: number; cache_creation_input_tokens: number; cache_read_input_tokens: number };
}

function toMessage(reply: FakeReply, model: string, toolId: () => string): FakeMessage {
  const content: FakeMessage["content"] = [];
  if (reply.text !== undefined) content.push({ type: "text", text: reply.text });
  for (const t of reply.tools ?? []) content.push({ type: "tool_use", id: t.id ?? toolId(), name: t.name, input: t.input });
  const usage = reply.usage ?? { input_tokens: 120, output_tokens: 30 };
  return {
    id: `msg_fake_${Math.random().toString(36).slice(2, 12)}`,
    type: "message",
    role: "assistant",
    model,
    content,
    stop_reason: reply.tools?.length ? "tool_use" : "end_turn",
    stop_sequence: null,
    usage: { ...usage, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
  };
}

/** The Messages API's streaming shape: one content block at a time, usage at the start and the end. */
function streamMessage(res: ServerResponse, m: FakeMessage): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "request-id": "req_fake" });
  const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  send("message_start", { type: "message_start", message: { ...m, content: [], stop_reason: null, usage: { ...m.usage, output_tokens: 1 } } });
  m.content.forEach((block, index) => {
    if (block.type === "text") {
      send("content_block_start", { type: "content_block_start", index, content_block: { type: "text", text: "" } });
      send("content_block_delta", { type: "content_block_delta", index, delta: { type: "text_delta", text: block.text } });
    } else {
      send("content_block_start", { type: "content_block_start", index, content_block: { type: "tool_use", id: block.id, name: block.name, input: {} } });
      send("content_block_delta", { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: JSON.stringify(block.input) } });
    }
    send("content_block_stop", { type: "content_block_stop", index });
  });
  send("message_delta", { type: "message_delta", delta: { stop_reason: m.stop_reason, stop_sequence: null }, usage: { output_tokens: m.usage.output_tokens } });
  send("message_stop", { type: "message_stop" });
  res.end();
}
