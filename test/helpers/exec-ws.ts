import WebSocket from "ws";

/** A server → client text message of the exec stream. */
export interface ControlMessage {
  type: string;
  code?: string;
  message?: string;
  errorId?: string;
  fatal?: boolean;
  exitCode?: number;
  signal?: string | null;
}

/**
 * A raw exec WebSocket for protocol tests: every message is recorded; `next(pred)` waits for the
 * first (past or future) text message matching `pred`; `closed` resolves with the close code.
 */
export interface ExecSocket {
  ws: WebSocket;
  /** Text messages, parsed (or `{type: "unparsable"}`). */
  control: ControlMessage[];
  stdout: () => string;
  stderr: () => string;
  next(pred: (m: ControlMessage) => boolean, what: string, timeoutMs?: number): Promise<ControlMessage>;
  /** Resolves once any output on stdout contains `text`. */
  output(text: string, timeoutMs?: number): Promise<void>;
  closed: Promise<number>;
  sendJson(msg: unknown): void;
}

export async function openExec(url: string, sessionId: string, token: string): Promise<ExecSocket> {
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/sessions/${encodeURIComponent(sessionId)}/exec/stream`, {
    headers: { authorization: `Bearer ${token}` },
  });
  ws.on("error", () => undefined); // the close code says what happened
  const control: ControlMessage[] = [];
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (isBinary) (buf[0] === 1 ? out : err).push(buf.subarray(1));
    else {
      try {
        control.push(JSON.parse(buf.toString("utf8")) as ControlMessage);
      } catch {
        control.push({ type: "unparsable", message: buf.toString("utf8") });
      }
    }
    wake();
  });
  let closedFlag = false;
  const closed = new Promise<number>((resolve) =>
    ws.on("close", (code: number) => {
      closedFlag = true;
      resolve(code);
      wake();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
    ws.once("close", () => reject(new Error("closed before open")));
  });
  const waitUntil = <T>(check: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const tryNow = () => {
        const v = check();
        if (v !== undefined) {
          done();
          resolve(v);
        } else if (closedFlag) {
          done();
          reject(new Error(`socket closed while waiting for ${what}; messages: ${JSON.stringify(control)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}; messages: ${JSON.stringify(control)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(tryNow);
      };
      waiters.add(tryNow);
      tryNow();
    });
  const text = (bufs: Buffer[]) => Buffer.concat(bufs).toString("utf8");
  return {
    ws,
    control,
    stdout: () => text(out),
    stderr: () => text(err),
    next: (pred, what, timeoutMs = 10_000) => waitUntil(() => control.find(pred), what, timeoutMs),
    output: (needle, timeoutMs = 10_000) => waitUntil(() => (text(out).includes(needle) ? true : undefined), `stdout ${JSON.stringify(needle)}`, timeoutMs).then(() => undefined),
    closed,
    sendJson: (msg) => ws.send(JSON.stringify(msg)),
  };
}
