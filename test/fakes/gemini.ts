import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { makeTestCertificates } from "../helpers/upstream.ts";
import { tempDir } from "../helpers/tmp.ts";

/**
 * A FAKE of Google's Gemini API (generativelanguage.googleapis.com, v1beta) for end-to-end tests
 * of the real Gemini CLI: an HTTPS server with its own test CA on a loopback address of this
 * machine, answering `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`,
 * `:generateContent` and `:countTokens` from a script, and recording every request it gets
 * (headers, the `x-goog-api-key` header or `key` query parameter, the JSON body). Requests for the
 * `sinks` host names (default "evil.example", an exfiltration sink) are recorded too and answered 200.
 *
 * The script is a list of turns, each a function of the request it answers, so a turn can look at
 * the `functionResponse` the CLI sent back for the previous call. Streaming turns come from
 * `script` in order; non-streaming `generateContent` calls (the CLI's own helper prompts, which
 * ask for JSON) get `utility`'s answer.
 */
export const FAKE_GEMINI_ADDRESS = "127.0.62.1";

export interface FakeGeminiRequest {
  method: string;
  host: string;
  /** Path without the query. */
  path: string;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  /** The key as the client sent it: `x-goog-api-key` header, else the `key` query parameter. */
  apiKey: string | null;
  /** `models/{model}:{action}` parts, when the path is one. */
  model: string | null;
  action: string | null;
  /** Parsed JSON body (null when not JSON). */
  body: FakeGeminiBody | null;
  raw: string;
}

export interface FakeGeminiPart {
  text?: string;
  functionCall?: { name: string; args: Record<string, unknown>; id?: string };
  functionResponse?: { name: string; response: Record<string, unknown>; id?: string };
  thought?: boolean;
}

export interface FakeGeminiBody {
  contents?: { role: string; parts: FakeGeminiPart[] }[];
  [k: string]: unknown;
}

/** What a scripted turn answers: text, function calls, or both. */
export interface FakeGeminiReply {
  text?: string;
  functionCalls?: { name: string; args: Record<string, unknown> }[];
}

export type FakeGeminiTurn = (req: FakeGeminiRequest) => FakeGeminiReply;

export interface FakeGemini {
  address: string;
  caPem: string;
  /** Every request, in arrival order. */
  requests: FakeGeminiRequest[];
  /** Model turns (`streamGenerateContent`/`generateContent` of the conversation) answered so far. */
  turnsServed(): number;
  /** Replace the script (the next model turn answers from `turns[0]`). */
  script(turns: FakeGeminiTurn[]): void;
  close(): Promise<void>;
}

/** The function responses in the last user content of a request (what the CLI sends back after a tool ran). */
export function lastFunctionResponses(req: FakeGeminiRequest): { name: string; response: Record<string, unknown> }[] {
  const last = req.body?.contents?.at(-1);
  return (last?.parts ?? []).flatMap((p) => (p.functionResponse ? [p.functionResponse] : []));
}

/** Start the fake on `address`:443 with a certificate for `names` (root may bind 443). */
export async function startFakeGemini(opts: { address?: string; names?: string[]; sinks?: string[]; turns?: FakeGeminiTurn[] } = {}): Promise<FakeGemini> {
  const address = opts.address ?? FAKE_GEMINI_ADDRESS;
  const sinks = opts.sinks ?? ["evil.example"];
  const dir = await tempDir("paddock-fake-gemini-");
  const certs = await makeTestCertificates(dir.path, opts.names ?? ["generativelanguage.googleapis.com", "evil.example"]).finally(() => dir.remove());
  const requests: FakeGeminiRequest[] = [];
  let turns = opts.turns ?? [];
  let served = 0;
  const server: Server = createServer({ key: certs.keyPem, cert: certs.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const r = record(req, Buffer.concat(chunks).toString("utf8"));
      requests.push(r);
      answer(r, res, sinks, () => {
        const turn = turns[served];
        served++;
        return turn ? turn(r) : { text: `(fake gemini: no scripted turn ${served})` };
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(443, address, () => resolve());
  });
  return {
    address,
    caPem: certs.caPem,
    requests,
    turnsServed: () => served,
    script: (next) => {
      turns = next;
      served = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function record(req: IncomingMessage, raw: string): FakeGeminiRequest {
  const url = new URL(req.url ?? "/", "https://fake.invalid");
  const m = /\/models\/([^/:]+):([A-Za-z]+)$/.exec(url.pathname);
  let body: FakeGeminiBody | null = null;
  try {
    body = raw === "" ? null : (JSON.parse(raw) as FakeGeminiBody);
  } catch {
    body = null;
  }
  const header = req.headers["x-goog-api-key"];
  return {
    method: req.method ?? "",
    host: String(req.headers.host ?? "").split(":")[0] ?? "",
    path: url.pathname,
    query: url.searchParams,
    headers: req.headers,
    apiKey: typeof header === "string" ? header : url.searchParams.get("key"),
    model: m?.[1] ?? null,
    action: m?.[2] ?? null,
    body,
    raw,
  };
}

function answer(r: FakeGeminiRequest, res: ServerResponse, sinks: string[], nextTurn: () => FakeGeminiReply): void {
  if (sinks.includes(r.host)) {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ sink: true, received: r.raw.length }));
    return;
  }
  if (r.apiKey === null || r.apiKey === "") {
    json(res, 401, { error: { code: 401, message: "API key not valid. (fake gemini)", status: "UNAUTHENTICATED" } });
    return;
  }
  switch (r.action ?? "") {
    case "countTokens":
      json(res, 200, { totalTokens: 42 });
      return;
    case "streamGenerateContent": {
      const reply = nextTurn();
      res.writeHead(200, { "content-type": "text/event-stream" });
      // Two chunks when there is text, like the real API (text streams in pieces).
      const text = reply.text ?? "";
      const half = Math.floor(text.length / 2);
      if (text !== "" && reply.functionCalls === undefined) res.write(sse(candidate([{ text: text.slice(0, half) }], null, r.model)));
      const parts: FakeGeminiPart[] = [];
      const rest = reply.functionCalls === undefined ? text.slice(half) : text;
      if (rest !== "") parts.push({ text: rest });
      for (const c of reply.functionCalls ?? []) parts.push({ functionCall: c });
      res.end(sse(candidate(parts, "STOP", r.model)));
      return;
    }
    case "generateContent":
      // The conversation's own turns are streamed; a non-streaming call is a helper prompt
      // (next-speaker check, loop detection, routing) asking for JSON. Answer the neutral choice.
      json(res, 200, candidate([{ text: JSON.stringify({ reasoning: "fake", next_speaker: "user", model_choice: "flash" }) }], "STOP", r.model));
      return;
    default:
      json(res, 404, { error: { code: 404, message: `fake gemini: no route ${r.method} ${r.path}`, status: "NOT_FOUND" } });
  }
}

function candidate(parts: FakeGeminiPart[], finishReason: string | null, model: string | null): unknown {
  return {
    candidates: [{ content: { role: "model", parts }, ...(finishReason ? { finishReason } : {}), index: 0 }],
    usageMetadata: { promptTokenCount: 100, candidatesTokenCount: 10, totalTokenCount: 110 },
    modelVersion: model ?? "gemini-fake",
  };
}

function sse(data: unknown): string {
  return `data: ${JSON.stringify(data)}\r\n\r\n`;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}
