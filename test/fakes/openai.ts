import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { makeTestCertificates } from "../helpers/upstream.ts";
import { tempDir } from "../helpers/tmp.ts";

/**
 * A local fake of the OpenAI APIs the agent CLIs call (Codex, Copilot BYOK, opencode): the
 * Responses API (`POST /v1/responses`, streamed as SSE or as one JSON answer), Chat Completions
 * (`POST /v1/chat/completions`, streamed chunks with `tool_calls` and `[DONE]`) and `/v1/models`.
 * Real HTTPS with its own test CA, on a loopback address; the gateway reaches it through
 * `gateway.upstream.hosts`. Nothing here is a model: each model request is answered by the next
 * scripted turn, a function of the request it received (so a turn can read the previous tool
 * output). Every request is recorded, unknown routes too (answered 404).
 */

/** One request as the fake received it. */
export interface FakeOpenAIRequest {
  method: string;
  path: string;
  host: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The parsed JSON body, or null. */
  json: Record<string, unknown> | null;
  /** Which API it was for; "other" for routes the fake does not serve (answered 404). */
  api: "responses" | "chat" | "models" | "other";
  /** Answered by a scripted turn (false: an auxiliary request, e.g. a title, or not a model call). */
  scripted: boolean;
}

/** A tool call a turn asks the agent to make. `arguments` is the JSON object the tool receives. */
export interface FakeToolCall {
  name: string;
  arguments: Record<string, unknown>;
}

/**
 * What a turn answers. `shell`: call the request's shell tool (found among the tools it offers:
 * `exec_command`, `shell`, `bash`…) with this command line, its arguments filled in the shape
 * that tool declares. `call`: an explicit tool call. Text alone ends the agent's turn.
 */
export interface FakeReply {
  text?: string;
  shell?: string;
  call?: FakeToolCall;
}

export type FakeTurn = (req: FakeOpenAIRequest) => FakeReply;

export interface FakeOpenAI {
  address: string;
  /** The CA that signed the fake's certificate (give it to the gateway as `extraCaPem`). */
  caPem: string;
  received: FakeOpenAIRequest[];
  /** Replace the script: the next model requests are answered by these turns, in order. */
  script(turns: FakeTurn[]): void;
  /** Turns not yet used. */
  remaining(): number;
  close(): Promise<void>;
}

/** Hosts the fake's certificate is valid for (evil.example: an exfiltration sink that records). */
export const FAKE_OPENAI_NAMES = ["api.openai.com", "evil.example"];
export const FAKE_OPENAI_USAGE = { input: 120, output: 30 };

export async function startFakeOpenAI(opts: { address?: string; port?: number } = {}): Promise<FakeOpenAI> {
  const address = opts.address ?? "127.0.61.1";
  const dir = await tempDir("paddock-fake-openai-");
  const certs = await makeTestCertificates(dir.path, [...FAKE_OPENAI_NAMES, "localhost"]);
  const received: FakeOpenAIRequest[] = [];
  let turns: FakeTurn[] = [];
  let seq = 0;
  const server: Server = createServer({ key: certs.keyPem, cert: certs.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const r = record(req, Buffer.concat(chunks).toString("utf8"));
      received.push(r);
      if (r.api === "models") return void json(res, 200, { object: "list", data: MODELS.map((id) => ({ id, object: "model", created: 1_700_000_000, owned_by: "fake" })) });
      if (r.api === "other" || r.json === null) return void json(res, 404, { error: { message: `the fake OpenAI has no route ${r.method} ${r.path}`, type: "invalid_request_error" } });
      const tools = Array.isArray(r.json.tools) ? (r.json.tools as unknown[]) : [];
      let reply: FakeReply;
      const next = turns[0];
      if (tools.length > 0 && next) {
        turns = turns.slice(1);
        r.scripted = true;
        try {
          reply = next(r);
        } catch (err) {
          reply = { text: `fake script error: ${String(err)}` };
        }
      } else reply = { text: tools.length > 0 ? "(the fake's script has no more turns)" : "Fake title" };
      const call = reply.call ?? (reply.shell !== undefined ? shellCall(tools, reply.shell) : null);
      const id = ++seq;
      const model = typeof r.json.model === "string" ? r.json.model : "gpt-fake";
      if (r.api === "responses") respond(res, r.json.stream === true, responsesEvents(id, model, reply.text ?? "", call));
      else chat(res, r.json.stream === true, id, model, reply.text ?? "", call);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 443, address, () => resolve());
  });
  return {
    address,
    caPem: certs.caPem,
    received,
    script: (t) => (turns = [...t]),
    remaining: () => turns.length,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await dir.remove();
    },
  };
}

const MODELS = ["gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4o", "gpt-4o-mini", "o4-mini"];

function record(req: IncomingMessage, body: string): FakeOpenAIRequest {
  const path = (req.url ?? "").split("?")[0] ?? "";
  let parsed: Record<string, unknown> | null = null;
  try {
    const v: unknown = JSON.parse(body);
    if (v && typeof v === "object" && !Array.isArray(v)) parsed = v as Record<string, unknown>;
  } catch {
    parsed = null;
  }
  const api = req.method === "POST" && /\/responses$/.test(path) ? "responses" : req.method === "POST" && /\/chat\/completions$/.test(path) ? "chat" : req.method === "GET" && /\/models$/.test(path) ? "models" : "other";
  return { method: req.method ?? "", path, host: String(req.headers.host ?? ""), headers: req.headers, body, json: parsed, api, scripted: false };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

/** The name and parameter schema of each function tool a request offers (both APIs' shapes). */
function toolSchemas(tools: unknown[]): { name: string; params: Record<string, unknown> }[] {
  return tools.flatMap((t) => {
    const o = t as { type?: string; name?: string; parameters?: Record<string, unknown>; function?: { name?: string; parameters?: Record<string, unknown> } };
    const name = o.function?.name ?? o.name;
    return name ? [{ name, params: o.function?.parameters ?? o.parameters ?? {} }] : [];
  });
}

const SHELL_TOOLS = ["exec_command", "shell_command", "shell", "bash", "Bash", "run_shell_command"];

/** A call of the request's shell tool running `command`, with its arguments in that tool's shape. */
export function shellCall(tools: unknown[], command: string): FakeToolCall {
  const offered = toolSchemas(tools);
  const tool = SHELL_TOOLS.map((n) => offered.find((t) => t.name === n)).find((t) => t !== undefined);
  if (!tool) throw new Error(`the request offers no shell tool (tools: ${offered.map((t) => t.name).join(", ")})`);
  const props = (tool.params.properties ?? {}) as Record<string, { type?: string }>;
  const required = Array.isArray(tool.params.required) ? (tool.params.required as string[]) : [];
  const args: Record<string, unknown> = {};
  if ("cmd" in props) args.cmd = command;
  else if (props.command?.type === "array") args.command = ["bash", "-lc", command];
  else args.command = command;
  for (const k of required) if (!(k in args) && props[k]?.type === "string") args[k] = "paddock fake step";
  return { name: tool.name, arguments: args };
}

interface SseEvent {
  type: string;
  [k: string]: unknown;
}

/** The Responses API stream for one answer: a message item and/or one function_call item. */
function responsesEvents(id: number, model: string, text: string, call: FakeToolCall | null): { events: SseEvent[]; response: Record<string, unknown> } {
  const respId = `resp_fake_${id}`;
  const base = { id: respId, object: "response", created_at: Math.floor(Date.now() / 1000), model, status: "in_progress", output: [] as unknown[] };
  const events: SseEvent[] = [{ type: "response.created", response: base }, { type: "response.in_progress", response: base }];
  const output: Record<string, unknown>[] = [];
  if (text !== "") {
    const item = { id: `msg_fake_${id}`, type: "message", status: "in_progress", role: "assistant", content: [] as unknown[] };
    const i = output.length;
    const part = { type: "output_text", text, annotations: [] };
    events.push(
      { type: "response.output_item.added", output_index: i, item },
      { type: "response.content_part.added", item_id: item.id, output_index: i, content_index: 0, part: { ...part, text: "" } },
      ...chunks(text).map((delta) => ({ type: "response.output_text.delta", item_id: item.id, output_index: i, content_index: 0, delta, logprobs: [] })),
      { type: "response.output_text.done", item_id: item.id, output_index: i, content_index: 0, text, logprobs: [] },
      { type: "response.content_part.done", item_id: item.id, output_index: i, content_index: 0, part },
    );
    const done = { ...item, status: "completed", content: [part] };
    events.push({ type: "response.output_item.done", output_index: i, item: done });
    output.push(done);
  }
  if (call) {
    const args = JSON.stringify(call.arguments);
    const item = { id: `fc_fake_${id}`, type: "function_call", status: "in_progress", call_id: `call_fake_${id}`, name: call.name, arguments: "" };
    const i = output.length;
    events.push(
      { type: "response.output_item.added", output_index: i, item },
      ...chunks(args).map((delta) => ({ type: "response.function_call_arguments.delta", item_id: item.id, output_index: i, delta })),
      { type: "response.function_call_arguments.done", item_id: item.id, output_index: i, arguments: args },
    );
    const done = { ...item, status: "completed", arguments: args };
    events.push({ type: "response.output_item.done", output_index: i, item: done });
    output.push(done);
  }
  const usage = { input_tokens: FAKE_OPENAI_USAGE.input, input_tokens_details: { cached_tokens: 0 }, output_tokens: FAKE_OPENAI_USAGE.output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: FAKE_OPENAI_USAGE.input + FAKE_OPENAI_USAGE.output };
  const response = { ...base, status: "completed", output, usage };
  events.push({ type: "response.completed", response });
  return { events, response };
}

function respond(res: ServerResponse, stream: boolean, r: { events: SseEvent[]; response: Record<string, unknown> }): void {
  if (!stream) return void json(res, 200, r.response);
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  r.events.forEach((e, n) => res.write(`event: ${e.type}\ndata: ${JSON.stringify({ ...e, sequence_number: n })}\n\n`));
  res.end();
}

function chat(res: ServerResponse, stream: boolean, id: number, model: string, text: string, call: FakeToolCall | null): void {
  const head = { id: `chatcmpl-fake-${id}`, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model };
  const toolCall = call ? { id: `call_fake_${id}`, type: "function", function: { name: call.name, arguments: JSON.stringify(call.arguments) } } : null;
  const finish = call ? "tool_calls" : "stop";
  const usage = { prompt_tokens: FAKE_OPENAI_USAGE.input, completion_tokens: FAKE_OPENAI_USAGE.output, total_tokens: FAKE_OPENAI_USAGE.input + FAKE_OPENAI_USAGE.output };
  if (!stream) {
    const message = { role: "assistant", content: text === "" ? null : text, ...(toolCall ? { tool_calls: [toolCall] } : {}) };
    return void json(res, 200, { ...head, object: "chat.completion", choices: [{ index: 0, message, finish_reason: finish }], usage });
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
  send({ ...head, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] });
  for (const c of text === "" ? [] : chunks(text)) send({ ...head, choices: [{ index: 0, delta: { content: c }, finish_reason: null }] });
  if (toolCall) {
    const args = toolCall.function.arguments;
    send({ ...head, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: toolCall.id, type: "function", function: { name: toolCall.function.name, arguments: "" } }] }, finish_reason: null }] });
    for (const c of chunks(args)) send({ ...head, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: c } }] }, finish_reason: null }] });
  }
  send({ ...head, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
  send({ ...head, choices: [], usage });
  res.end("data: [DONE]\n\n");
}

/** Split into a few pieces, so clients must join deltas. */
function chunks(s: string): string[] {
  const size = Math.max(1, Math.ceil(s.length / 3));
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

/** The tool outputs a request carries (Responses `function_call_output` items, Chat `tool` messages), oldest first. */
export function toolOutputs(req: FakeOpenAIRequest): { callId: string; output: string }[] {
  const body = req.json ?? {};
  const items = (Array.isArray(body.input) ? body.input : Array.isArray(body.messages) ? body.messages : []) as Record<string, unknown>[];
  return items.flatMap((i) => {
    if (i.type === "function_call_output" || i.type === "custom_tool_call_output") return [{ callId: String(i.call_id), output: flatten(i.output) }];
    if (i.role === "tool") return [{ callId: String(i.tool_call_id), output: flatten(i.content) }];
    return [];
  });
}

/** The newest tool output of a request ("" when it has none). */
export function lastToolOutput(req: FakeOpenAIRequest): string {
  return toolOutputs(req).at(-1)?.output ?? "";
}

function flatten(v: unknown): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) return v.map((p) => (typeof p === "string" ? p : typeof (p as { text?: unknown }).text === "string" ? (p as { text: string }).text : JSON.stringify(p))).join("");
  return JSON.stringify(v ?? "");
}
