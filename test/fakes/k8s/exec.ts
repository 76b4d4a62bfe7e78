/**
 * `pods/exec` over WebSocket, the channel protocol of the apiserver/kubelet
 * (https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apimachinery/pkg/util/remotecommand/constants.go):
 * each binary message starts with a channel byte, 0 stdin, 1 stdout, 2 stderr, 3 error (a Status
 * JSON ending the command), 4 resize; with v5.channel.k8s.io the client closes a channel with
 * [255, channel]. The subprotocol is chosen from the client's list, newest first, as the
 * apiserver does. The exit status goes out on channel 3 as
 * `{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"N"}]}}`
 * (or `{"status":"Success"}`), then the socket closes.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { PassThrough, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { WebSocketServer, type WebSocket } from "ws";
import type { FakeKubelet, KubeObject } from "./api.ts";
import type { ApiServer } from "./apiserver.ts";
import { ApiError, badRequest } from "./status.ts";

const PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const CLOSE = 255;

export interface ExecRequest {
  pod: KubeObject;
  container: string;
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** Check an exec request as the apiserver does before it upgrades (errors are plain HTTP Status answers). */
export function checkExec(api: ApiServer, namespace: string, name: string, query: URLSearchParams): ExecRequest {
  const podsDef = api.def("", "pods")!;
  const pod = api.get(podsDef, namespace, name);
  const containers = ((pod.spec as { containers?: { name: string }[] }).containers ?? []).map((c) => c.name);
  let container = query.get("container") ?? "";
  if (!container) {
    if (containers.length !== 1) throw badRequest(`a container name must be specified for pod ${name}, choose one of: [${containers.join(" ")}]`);
    container = containers[0]!;
  }
  if (!containers.includes(container)) throw badRequest(`container ${container} is not valid for pod ${name}`);
  const command = query.getAll("command");
  if (command.length === 0) throw badRequest("you must specify at least 1 command");
  const phase = (pod.status as { phase?: string } | undefined)?.phase;
  if (phase === "Succeeded" || phase === "Failed") throw badRequest(`cannot exec into a container in a completed pod; current phase is ${phase}`);
  if (!(pod.spec as { nodeName?: string }).nodeName) throw badRequest(`pod ${name} does not have a host assigned`);
  if (phase !== "Running") throw badRequest(`unable to upgrade connection: container not found ("${container}")`);
  const flag = (k: string) => query.get(k) === "true" || query.get(k) === "1";
  const stdout = flag("stdout");
  const stderr = flag("stderr");
  if (!flag("stdin") && !stdout && !stderr) throw badRequest("you must specify at least 1 of stdin, stdout, stderr");
  return { pod, container, command, stdin: flag("stdin"), stdout, stderr, tty: flag("tty") };
}

export class ExecService {
  private readonly wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => PROTOCOLS.find((p) => offered.has(p)) ?? false,
  });

  constructor(private readonly kubelet: FakeKubelet | null) {}

  /** Upgrade an already checked request and run the command. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, exec: ExecRequest): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      void this.run(ws, exec);
    });
  }

  private async run(ws: WebSocket, exec: ExecRequest): Promise<void> {
    const v5 = ws.protocol === "v5.channel.k8s.io";
    const stdin = exec.stdin ? new PassThrough() : null;
    // Frames go to the socket as they are written (the socket keeps their order), so output
    // written before the command ends always precedes its status on channel 3.
    const channel = (n: number, enabled: boolean) =>
      new Writable({
        write(chunk: Buffer, _enc, done) {
          if (enabled && ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([n]), chunk]));
          done();
        },
      });
    const stdout = channel(STDOUT, exec.stdout);
    const stderr = channel(STDERR, exec.stderr && !exec.tty);
    ws.on("message", (data: Buffer, isBinary) => {
      const buf = isBinary ? data : Buffer.from(data);
      if (buf.length === 0) return;
      if (buf[0] === STDIN) stdin?.write(buf.subarray(1));
      else if (buf[0] === CLOSE && v5 && buf[1] === STDIN) stdin?.end();
      // Channel 4 (resize) is accepted and ignored: the fake kubelet has no terminal size.
    });
    ws.on("close", () => stdin?.end());
    let status: Record<string, unknown>;
    try {
      if (!this.kubelet) throw new ApiError(500, "InternalError", "the fake cluster has no kubelet: pods run no containers");
      const code = await this.kubelet.exec(exec.pod, exec.container, exec.command, { stdin, stdout, stderr, tty: exec.tty });
      status =
        code === 0
          ? { metadata: {}, status: "Success" }
          : { metadata: {}, status: "Failure", message: `command terminated with non-zero exit code: error executing command [${exec.command.join(" ")}], exit code ${code}`, reason: "NonZeroExitCode", details: { causes: [{ reason: "ExitCode", message: String(code) }] } };
    } catch (err) {
      status = { metadata: {}, status: "Failure", message: err instanceof Error ? err.message : String(err), reason: "InternalError", code: 500 };
    }
    // Whatever the outcome (a kubelet that failed may have written first), stdout and stderr are
    // ended and every frame queued in them sent before the status, which ends the command for
    // the client: output queued behind it would be lost.
    await Promise.all([stdout, stderr].map((w) => (w.writableFinished ? null : finished(w.writableEnded ? w : w.end())))).catch(() => undefined);
    if (ws.readyState === ws.OPEN) {
      ws.send(Buffer.concat([Buffer.from([ERROR]), Buffer.from(JSON.stringify(status))]), () => ws.close(1000));
    }
  }

  close(): void {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
  }
}
