/**
 * A client for one remote node (`paddock node`) that is itself a Provider (STYLE.md point 4): the
 * EC2 provider keeps one per host and delegates to it. Every connection is mutual TLS: the node's
 * certificate must chain to the node CA and name exactly the node this client was made for.
 */
import { request } from "node:https";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { Readable } from "node:stream";
import WebSocket from "ws";
import type { ExecOptions, ExecResult, FileEntry, GuardDenial, Provider, ProviderCapabilities, ProviderHealth, SandboxHandle, SandboxSpec, ServiceStatus, StopOptions } from "../../core/provider.ts";
import { PaddockError, invalid, unavailable } from "../../core/errors.ts";
import { unsupported } from "../../core/capabilities.ts";
import { NODE_API, STDERR, STDOUT, fromWire, type ExecControl, type ExecEnd, type ExecStart, type WireSandboxSpec } from "./protocol.ts";
import type { PemPair } from "./pki.ts";

export interface RemoteNodeOptions {
  /** `https://ADDRESS:PORT` of the node. */
  url: string;
  /** The name its certificate must carry (pinned: see pki.ts). */
  nodeName: string;
  caPem: string;
  /** The control plane's client certificate, asked for on each connection (it is rotated). */
  clientCert: () => Promise<PemPair>;
  /** Provider name in errors and `Provider.name`. */
  name: string;
  capabilities: ProviderCapabilities;
  /** Per-request deadline for calls other than create and exec (default 60 s). */
  timeoutMs?: number;
}

/** What a remote node can do, whatever drives it (the EC2 provider sets `kind`). */
export function remoteNodeCapabilities(kind: ProviderCapabilities["kind"]): ProviderCapabilities {
  return {
    kind,
    selfHosted: true,
    // The node has its own layer store and builds templates from `SandboxSpec.recipe`.
    layers: false,
    // The node gives a sandbox a netns whose only way out is Paddock's gateway as an HTTPS proxy
    // (`SandboxSpec.remoteEgress`, see docs/ec2.md "Egress").
    network: "proxy",
    snapshot: false,
    execGuard: true,
    services: true,
    fileOps: false,
    ports: false,
    warmPool: false,
    isolation: ["namespaces"],
  };
}

/** What no remote node can do, refused before anything is launched or sent. */
export function refuseUnsupported(provider: Pick<Provider, "name">, spec: SandboxSpec): void {
  // A node's sandboxes reach the gateway only as a proxy: a netns linked to this machine's
  // gateway cannot exist there (never a silent no-op).
  if (spec.egress && !spec.remoteEgress)
    throw unsupported(provider, "link a sandbox to the gateway's network namespace (SandboxSpec.egress)", "a remote node's sandboxes reach the gateway as an HTTPS proxy: give SandboxSpec.remoteEgress");
  if (spec.from !== undefined) throw unsupported(provider, "start a sandbox from a snapshot");
  if (spec.mounts?.length) throw unsupported(provider, "bind host directories into a sandbox");
  if (spec.isolation && spec.isolation !== "namespaces") throw unsupported(provider, `run the ${spec.isolation} isolation tier`);
  if (!spec.recipe) throw invalid(`provider ${provider.name} builds templates from SandboxSpec.recipe, and this spec has none`);
}

export class RemoteNodeProvider implements Provider {
  readonly name: string;
  readonly capabilities: ProviderCapabilities;

  constructor(private readonly opts: RemoteNodeOptions) {
    this.name = opts.name;
    this.capabilities = opts.capabilities;
  }

  async health(): Promise<ProviderHealth> {
    const started = Date.now();
    try {
      const h = (await this.call("GET", "/health", undefined, { timeoutMs: 10_000 })) as { sandboxes: number };
      return { ok: true, detail: `node ${this.opts.nodeName}: ${h.sandboxes} sandboxes`, latencyMs: Date.now() - started };
    } catch (err) {
      return { ok: false, detail: err instanceof Error ? err.message : String(err), latencyMs: Date.now() - started };
    }
  }

  async create(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    refuseUnsupported(this, spec);
    // Called here, in the control plane: the node gets the attachment's env, files and allow
    // list, never the callback or anything else of the gateway's.
    const egress = spec.remoteEgress ? await spec.remoteEgress() : undefined;
    const wire: WireSandboxSpec = {
      id: spec.id, mode: spec.mode, base: spec.base, compute: spec.compute, hostname: spec.hostname, env: spec.env, recipe: spec.recipe!,
      ...(spec.guard ? { guard: spec.guard } : {}),
      ...(spec.services ? { services: spec.services } : {}),
      ...(spec.sessionUser ? { sessionUser: spec.sessionUser } : {}),
      ...(egress ? { egress: { env: egress.env, files: egress.files.map((f) => ({ path: f.path, content: f.content })), allow: egress.allow.map((a) => ({ host: a.host, port: a.port })) } } : {}),
    };
    // Building a template on a fresh node can take as long as its install steps.
    try {
      return (await this.call("POST", "/sandboxes", { spec: wire }, { timeoutMs: 0, ...(signal ? { signal } : {}) })) as SandboxHandle;
    } catch (err) {
      // No answer (aborted, connection cut): the node may have made the sandbox; it is stopped
      // (best effort; a node that sees its client gone mid-create stops it itself). A refusal the
      // node answered made nothing, and may be about a sandbox that is not this create's (conflict).
      if (!answered.has(err as object)) await this.stop(spec.id).catch(() => false);
      throw err;
    }
  }

  async recover(id: string, providerState: Record<string, unknown>): Promise<"running" | "gone"> {
    return ((await this.call("POST", `/sandboxes/${seg(id)}/recover`, { providerState })) as { state: "running" | "gone" }).state;
  }

  async stop(id: string, opts?: StopOptions): Promise<boolean> {
    if (opts?.commitAs !== undefined) throw unsupported(this, "commit a sandbox as a layer of this machine's layer store");
    return ((await this.call("POST", `/sandboxes/${seg(id)}/stop`, {})) as { stopped: boolean }).stopped;
  }

  async list(): Promise<string[]> {
    return ((await this.call("GET", "/sandboxes")) as { ids: string[] }).ids;
  }

  async writeFile(id: string, path: string, data: Uint8Array, opts?: { mode?: number }): Promise<void> {
    const q = new URLSearchParams({ path, ...(opts?.mode !== undefined ? { mode: String(opts.mode) } : {}) });
    await this.call("PUT", `/sandboxes/${seg(id)}/file?${q}`, Buffer.from(data));
  }

  async readFile(id: string, path: string): Promise<Buffer> {
    return (await this.call("GET", `/sandboxes/${seg(id)}/file?${new URLSearchParams({ path })}`, undefined, { raw: true })) as Buffer;
  }

  async listDir(id: string, path: string): Promise<FileEntry[]> {
    return ((await this.call("GET", `/sandboxes/${seg(id)}/dir?${new URLSearchParams({ path })}`)) as { entries: FileEntry[] }).entries;
  }

  async killProcesses(id: string, signal?: NodeJS.Signals): Promise<number> {
    return ((await this.call("POST", `/sandboxes/${seg(id)}/kill`, { signal: signal ?? "SIGKILL" })) as { count: number }).count;
  }

  async guardDenials(id: string): Promise<GuardDenial[]> {
    return ((await this.call("GET", `/sandboxes/${seg(id)}/guard-denials`)) as { denials: GuardDenial[] }).denials;
  }

  async setEnv(id: string, env: Record<string, string>): Promise<Record<string, unknown>> {
    return ((await this.call("POST", `/sandboxes/${seg(id)}/env`, { env })) as { providerState: Record<string, unknown> }).providerState;
  }

  async services(id: string): Promise<ServiceStatus[]> {
    return ((await this.call("GET", `/sandboxes/${seg(id)}/services`)) as { services: ServiceStatus[] }).services;
  }

  async waitForServices(id: string, timeoutMs: number): Promise<ServiceStatus[]> {
    return ((await this.call("POST", `/sandboxes/${seg(id)}/services/wait`, { timeoutMs }, { timeoutMs: timeoutMs + 30_000 })) as { services: ServiceStatus[] }).services;
  }

  async memoryUsage(id: string): Promise<number | null> {
    return ((await this.call("GET", `/sandboxes/${seg(id)}/memory`)) as { bytes: number | null }).bytes;
  }

  snapshot(): Promise<{ frozenMs: number }> {
    return Promise.reject(unsupported(this, "snapshot a sandbox"));
  }

  removeSnapshot(): Promise<boolean> {
    return Promise.reject(unsupported(this, "remove a snapshot"));
  }

  async close(): Promise<void> {}

  exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    return new Promise<ExecResult>((resolve, reject) => {
      void this.opts.clientCert().then((tls) => {
        const url = `${this.opts.url.replace(/^https:/, "wss:")}${NODE_API}/sandboxes/${seg(id)}/exec`;
        // ws hands these options to tls.connect as they are; its typing of checkServerIdentity is an old one.
        const ws = new WebSocket(url, { ...this.tlsOptions(tls), maxPayload: 64 * 2 ** 20 } as unknown as WebSocket.ClientOptions);
        let settled = false;
        const cleanups: (() => void)[] = [];
        const finish = (err: Error | null, result?: ExecResult): void => {
          if (settled) return;
          settled = true;
          for (const c of cleanups) c();
          if (err) reject(err);
          else resolve(result!);
          ws.close();
        };
        const send = (c: ExecControl): void => {
          if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(c));
        };
        ws.on("open", () => {
          const start: ExecStart = {
            argv: opts.argv, stdin: opts.stdin !== undefined,
            ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
            ...(opts.env ? { env: opts.env } : {}),
            ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
          };
          ws.send(JSON.stringify(start));
          if (opts.signals) cleanups.push(opts.signals.listen((name) => send({ type: "signal", name })));
          if (opts.output) cleanups.push(opts.output.listen((paused) => send({ type: paused ? "pause" : "resume" })));
          if (opts.signal) {
            const onAbort = (): void => send({ type: "abort" });
            if (opts.signal.aborted) onAbort();
            else opts.signal.addEventListener("abort", onAbort, { once: true });
            cleanups.push(() => opts.signal?.removeEventListener("abort", onAbort));
          }
          if (opts.stdin !== undefined) void pumpStdin(ws, opts.stdin).catch((err: unknown) => finish(err instanceof Error ? err : new Error(String(err))));
        });
        ws.on("message", (data: Buffer, isBinary: boolean) => {
          if (isBinary) {
            const chunk = data.subarray(1);
            if (data[0] === STDOUT) opts.onStdout?.(chunk);
            else if (data[0] === STDERR) opts.onStderr?.(chunk);
            return;
          }
          // A node runs tenants' code: whatever it sends is checked, and a bad frame fails this exec
          // (a throw here would be an uncaught exception in the control plane).
          const end = safeJson(data.toString()) as Partial<ExecEnd> | null;
          if (end?.type === "exit" && isExecResult(end.result)) finish(null, end.result);
          else if (end?.type === "error") finish(fromWire({ error: end.error }, this.opts.nodeName));
          else finish(new PaddockError("internal", `node ${this.opts.nodeName} sent an exec frame that is not the protocol's`));
        });
        ws.on("unexpected-response", (_req, res) => {
          let body = "";
          res.on("data", (b: Buffer) => (body += b.toString()));
          res.on("end", () => finish(fromWire(safeJson(body), this.opts.nodeName)));
        });
        ws.on("error", (err) => finish(unavailable(`node ${this.opts.nodeName} (${this.opts.url}): exec connection failed: ${err.message}`, err)));
        ws.on("close", () => finish(unavailable(`node ${this.opts.nodeName} closed the exec stream before the command's exit`)));
      }, reject);
    });
  }

  private tlsOptions(tls: PemPair): { ca: string; cert: string; key: string; servername: string; checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined } {
    const pinned = this.opts.nodeName;
    return {
      ca: this.opts.caPem, cert: tls.certPem, key: tls.keyPem, servername: pinned,
      // Whatever address we dialled, the certificate must be the one issued to this node.
      checkServerIdentity: (_host, cert) => checkServerIdentity(pinned, cert),
    };
  }

  private async call(method: string, path: string, body?: unknown, o: { timeoutMs?: number; raw?: boolean; signal?: AbortSignal } = {}): Promise<unknown> {
    const tls = await this.opts.clientCert();
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const url = new URL(`${NODE_API}${path}`, this.opts.url);
    const timeoutMs = o.timeoutMs ?? this.opts.timeoutMs ?? 60_000;
    return new Promise((resolve, reject) => {
      const req = request(url, {
        method, ...this.tlsOptions(tls), agent: false,
        headers: payload ? { "content-type": Buffer.isBuffer(body) ? "application/octet-stream" : "application/json", "content-length": payload.length } : {},
        ...(o.signal ? { signal: o.signal } : {}),
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (b: Buffer) => chunks.push(b));
        res.on("error", reject);
        res.on("end", () => {
          const buf = Buffer.concat(chunks);
          if ((res.statusCode ?? 500) >= 400) {
            const err = fromWire(safeJson(buf.toString()), this.opts.nodeName);
            answered.add(err);
            return reject(err);
          }
          if (o.raw) return resolve(buf);
          resolve(buf.length ? safeJson(buf.toString()) : null);
        });
      });
      if (timeoutMs > 0) req.setTimeout(timeoutMs, () => req.destroy(unavailable(`node ${this.opts.nodeName} did not answer ${method} ${path} within ${timeoutMs} ms`)));
      req.on("error", (err) => reject(err instanceof PaddockError ? err : unavailable(`node ${this.opts.nodeName} (${this.opts.url}) is unreachable: ${err.message}`, err)));
      req.end(payload);
    });
  }
}

async function pumpStdin(ws: WebSocket, stdin: Readable | Uint8Array): Promise<void> {
  const stream = stdin instanceof Uint8Array ? Readable.from([Buffer.from(stdin)]) : stdin;
  for await (const chunk of stream) {
    if (ws.readyState !== WebSocket.OPEN) return;
    await new Promise<void>((r, j) => ws.send(Buffer.from(chunk as Uint8Array), { binary: true }, (e) => (e ? j(e) : r())));
  }
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stdin-end" } satisfies ExecControl));
}

/** Errors that are the node's own answer (it received the request and refused it). */
const answered = new WeakSet<object>();

function seg(id: string): string {
  return encodeURIComponent(id);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

function isExecResult(v: unknown): v is ExecResult {
  const r = v as Partial<ExecResult> | null;
  return typeof r === "object" && r !== null && Number.isInteger(r.exitCode) && (r.signal === null || typeof r.signal === "string") && typeof r.timedOut === "boolean" && typeof r.durationMs === "number";
}
