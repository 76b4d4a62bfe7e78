/**
 * Commands in a session pod over the pods/exec WebSocket (client-node's `Exec`, channel protocol
 * v5/v4: 0 stdin, 1 stdout, 2 stderr, 3 status); the wrapper every command goes through is in
 * commands.ts.
 */
import { Readable, Writable } from "node:stream";
import { Exec } from "@kubernetes/client-node";
import { WebSocketHandler } from "@kubernetes/client-node/dist/web-socket-handler.js";
import { PaddockError } from "../../core/index.ts";
import type { KubeClients } from "./kube.ts";
import { kubeError } from "./kube.ts";
import { exitCodeOf } from "./commands.ts";

export interface PodRef {
  namespace: string;
  pod: string;
  container: string;
}

export interface RawIo {
  stdin?: Readable | Uint8Array;
  onStdout?: (b: Buffer) => void;
  onStderr?: (b: Buffer) => void;
}

/** One exec of `argv` exactly as given; resolves with the exit code once the status channel says so. */
export function rawExec(c: KubeClients, ref: PodRef, argv: string[], io: RawIo, stop?: AbortSignal): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let settled = false;
    let socket: { close(): void } | undefined;
    const done = (r: number | Error) => {
      if (settled) return;
      settled = true;
      stop?.removeEventListener("abort", onStop);
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const onStop = () => {
      socket?.close();
      done(new PaddockError("unavailable", "exec stream closed before the command ended"));
    };
    if (stop?.aborted) return onStop();
    stop?.addEventListener("abort", onStop, { once: true });
    // client-node ends these when the status arrives; a frame after it must not become an unhandled 'write after end'.
    const sink = (fn?: (b: Buffer) => void) => new Writable({ write(chunk: Buffer, _e, cb) { fn?.(Buffer.from(chunk)); cb(); } }).on("error", () => undefined);
    const stdin = io.stdin === undefined ? null : io.stdin instanceof Uint8Array ? Readable.from([Buffer.from(io.stdin)]) : io.stdin;
    // The handler's own streams are only touched by v5 close frames; they must never be this process's stdio.
    const quiet = { stdin: Readable.from([]), stdout: sink(), stderr: sink() };
    const exec = new Exec(c.config, new WebSocketHandler(c.config, undefined, quiet));
    exec.exec(ref.namespace, ref.pod, ref.container, argv, sink(io.onStdout), sink(io.onStderr), stdin, false, (status) => {
      try {
        done(exitCodeOf(status));
      } catch (e) {
        done(e as Error);
      }
    }).then((ws) => {
      socket = ws;
      if (settled) ws.close();
      ws.on("close", () => done(new PaddockError("unavailable", `exec in pod ${ref.pod}: the stream closed without an exit status`)));
      ws.on("error", (e: Error) => done(new PaddockError("unavailable", `exec in pod ${ref.pod}: ${e.message}`)));
    }, (e: unknown) => done(execConnectError(ref, e)));
  });
}

function execConnectError(ref: PodRef, e: unknown): PaddockError {
  // The upgrade's failure comes back as a ws error event, whose message holds the HTTP status.
  const msg = (e as { message?: string } | null)?.message ?? String(e);
  if (/\b404\b/.test(msg)) return new PaddockError("not_found", `pod ${ref.pod} not found`);
  return kubeError(`exec in pod ${ref.pod}`, new Error(msg));
}

/** Signal the process group whose leader wrote `pidFile` (best effort: the group may be gone). */
export async function signalGroup(c: KubeClients, ref: PodRef, pidFile: string, signal: NodeJS.Signals): Promise<void> {
  const name = signal.replace(/^SIG/, "");
  const script = 'p=$(cat "$1" 2>/dev/null) || exit 0; [ -n "$p" ] || exit 0; kill -s "$2" -- "-$p" 2>/dev/null || kill -s "$2" "$p" 2>/dev/null; [ "$2" = KILL ] && rm -f -- "$1"; exit 0';
  await rawExec(c, ref, ["/bin/sh", "-c", script, "paddock-kill", pidFile, name], {}).catch(() => undefined);
}

