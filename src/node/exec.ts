/**
 * One exec over the node's WebSocket (frames defined in src/providers/ec2/protocol.ts): the first
 * text frame starts the command; stdin, signals, flow control and abort follow; output goes back
 * as tagged binary frames and the exit as the last text frame. A client that goes away kills the
 * command (as the local API's exec stream does).
 */
import { PassThrough } from "node:stream";
import type WebSocket from "ws";
import type { ExecOptions, Provider } from "../core/provider.ts";
import { ExecSignals, OutputGate, invalid } from "../core/index.ts";
import { STDERR, STDOUT, toWire, type ExecControl, type ExecEnd, type ExecStart } from "../providers/ec2/index.ts";

/** Above this much unsent output the command's output is paused until the socket drains below LOW. */
const HIGH_WATER = 4 * 2 ** 20;
const LOW_WATER = 2 ** 20;

export function serveExec(ws: WebSocket, local: Provider, id: string): void {
  let started = false;
  let stdin: PassThrough | null = null;
  const signals = new ExecSignals();
  const gate = new OutputGate();
  const abort = new AbortController();
  let clientPaused = false;
  let drainTimer: NodeJS.Timeout | null = null;
  const end = (e: ExecEnd): void => {
    if (drainTimer) clearInterval(drainTimer);
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(e), () => ws.close());
  };
  const out = (tag: number) => (chunk: Buffer): void => {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(Buffer.concat([Buffer.of(tag), chunk]), { binary: true });
    if (ws.bufferedAmount > HIGH_WATER && !drainTimer) {
      gate.pause();
      drainTimer = setInterval(() => {
        if (ws.bufferedAmount > LOW_WATER && ws.readyState === ws.OPEN) return;
        clearInterval(drainTimer!);
        drainTimer = null;
        if (!clientPaused) gate.resume();
      }, 10);
    }
  };
  ws.on("close", () => {
    abort.abort();
    stdin?.destroy();
    if (drainTimer) clearInterval(drainTimer);
  });
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    if (!started) {
      started = true;
      let start: ExecStart;
      try {
        start = parseStart(isBinary ? "" : data.toString());
      } catch (err) {
        end({ type: "error", error: toWire(err) });
        return;
      }
      if (start.stdin) stdin = new PassThrough();
      const opts: ExecOptions = {
        argv: start.argv, signals, output: gate, signal: abort.signal,
        onStdout: out(STDOUT), onStderr: out(STDERR),
        ...(start.cwd !== undefined ? { cwd: start.cwd } : {}),
        ...(start.env ? { env: start.env } : {}),
        ...(start.timeoutMs ? { timeoutMs: start.timeoutMs } : {}),
        ...(stdin ? { stdin } : {}),
      };
      local.exec(id, opts).then((result) => end({ type: "exit", result }), (err: unknown) => end({ type: "error", error: toWire(err) }));
      return;
    }
    if (isBinary) {
      stdin?.write(data);
      return;
    }
    let c: ExecControl;
    try {
      c = JSON.parse(data.toString()) as ExecControl;
    } catch {
      return;
    }
    switch (c.type) {
      case "stdin-end":
        stdin?.end();
        break;
      case "signal":
        try {
          signals.send(c.name);
        } catch {
          // An unknown name sends nothing (ExecSignals' rule); the command goes on.
        }
        break;
      case "pause":
        clientPaused = true;
        gate.pause();
        break;
      case "resume":
        clientPaused = false;
        if (!drainTimer) gate.resume();
        break;
      case "abort":
        abort.abort();
        break;
    }
  });
}

function parseStart(text: string): ExecStart {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw invalid("the exec stream must start with a JSON text frame");
  }
  const s = v as Partial<ExecStart>;
  if (!Array.isArray(s.argv) || s.argv.length === 0 || !s.argv.every((a) => typeof a === "string")) throw invalid("exec: argv must be a non-empty list of strings");
  if (s.cwd !== undefined && typeof s.cwd !== "string") throw invalid("exec: cwd must be a string");
  if (s.env !== undefined && (typeof s.env !== "object" || s.env === null || !Object.values(s.env).every((x) => typeof x === "string"))) throw invalid("exec: env must map names to strings");
  if (s.timeoutMs !== undefined && (!Number.isInteger(s.timeoutMs) || s.timeoutMs < 0)) throw invalid("exec: timeoutMs must be a whole number of milliseconds");
  return { argv: s.argv, stdin: s.stdin === true, ...(s.cwd !== undefined ? { cwd: s.cwd } : {}), ...(s.env ? { env: s.env } : {}), ...(s.timeoutMs ? { timeoutMs: s.timeoutMs } : {}) };
}
