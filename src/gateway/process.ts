/**
 * The egress gateway in a process of its own (issue 9): a sandbox that holds thousands of
 * connections or uploads costs that process's event loop and memory, not the control plane's, so
 * the API stays responsive. `startGatewayProcess` returns a `Gateway` like `createGateway` does;
 * the control plane keeps the vault, the records and paddock.internal, and answers the gateway's
 * questions over the IPC channel (process-protocol.ts).
 *
 * If the gateway process dies it is started again at once and every registered session is
 * registered again with the same placeholders and CA, so sandboxes see a dropped connection,
 * never a changed identity. While it is down, sandboxes have no way out: they fail closed.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { PaddockError, asPaddockError, unavailable, type ErrorCode } from "../core/errors.ts";
import type { LocalApi } from "./local.ts";
import type { ChildCall, GatewayInit, ParentCall, Reply, ToChild, ToParent } from "./process-protocol.ts";
import type { EgressRecord, Gateway, GatewayEndpoints, GatewayRegistration, GatewaySessionSpec, RemoteProxyEndpoint, SecretSource } from "./types.ts";

export interface GatewayProcessOptions {
  init: GatewayInit;
  secrets: SecretSource;
  onRecord: (r: EgressRecord) => void;
  localApi?: LocalApi;
  /** Lifecycle lines and the gateway's own log; never a secret value. */
  log?: (line: string) => void;
}

/** The running gateway, plus what only a process has. */
export interface GatewayProcess extends Gateway {
  /** Secret values changed (set, rotated, deleted): the gateway forgets the ones it cached. */
  secretsChanged(): void;
  /** Host pid of the gateway process (tests kill it to prove it comes back). */
  readonly pid: number | undefined;
}

const CHILD = fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "./gateway-process.worker.ts" : "./gateway-process.worker.js", import.meta.url));
/** Restarts in a row that fail before the gateway is ready: after this many, give up and say so. */
const MAX_QUICK_RESTARTS = 5;

interface Registered {
  spec: GatewaySessionSpec;
  reg: GatewayRegistration & { caKeyPem: string };
}

class ProcessGateway implements GatewayProcess {
  endpoints!: GatewayEndpoints;
  remoteProxy: RemoteProxyEndpoint | null = null;
  private child: ChildProcess | null = null;
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly localCalls = new Map<number, AbortController>();
  private readonly registered = new Map<string, Registered>();
  private closing = false;
  private quickRestarts = 0;
  private ready: Promise<void> = Promise.resolve();

  private init: GatewayInit;

  constructor(private readonly opts: GatewayProcessOptions) {
    this.init = opts.init;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  /** Fork the gateway process and wait until its listeners are bound. */
  start(): Promise<void> {
    const child = fork(CHILD, [], {
      execArgv: CHILD.endsWith(".ts") ? ["--import", "tsx"] : ["--enable-source-maps"],
      serialization: "advanced",
      stdio: ["ignore", "inherit", "pipe", "ipc"],
    });
    this.child = child;
    let stderr = "";
    let wasReady = false;
    child.stderr?.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    this.ready = new Promise<void>((resolve, reject) => {
      const early = (code: number | null, signal: NodeJS.Signals | null): void =>
        reject(unavailable(`the gateway process exited before it was ready (${signal ?? `exit ${code}`}): ${stderrTail(stderr)}`));
      child.once("exit", early);
      child.on("message", (m: ToParent) => {
        if (m.t === "ready") {
          child.off("exit", early);
          wasReady = true;
          this.endpoints = m.endpoints;
          this.remoteProxy = m.remoteProxy;
          // A restarted gateway binds the same remote port: remote sandboxes were told it.
          if (this.init.remoteProxy && m.remoteProxy) this.init = { ...this.init, remoteProxy: { ...this.init.remoteProxy, port: m.remoteProxy.port } };
          resolve();
        } else if (m.t === "failed") {
          child.off("exit", early);
          child.kill("SIGKILL");
          reject(unavailable(`the gateway could not start: ${m.message}`));
        } else this.onMessage(child, m);
      });
    });
    // Only a gateway that was serving is restarted here; a failed start is the caller's to handle.
    child.on("exit", (code, signal) => (wasReady ? this.onExit(child, code, signal, stderr) : undefined));
    // A send racing the child's exit fails with EPIPE, emitted here: without a listener it would
    // crash this process. The exit handler restarts the gateway and rejects the calls in flight.
    child.on("error", (err) => this.log(`gateway process: ${err.message}`));
    child.send({ t: "init", init: this.init } satisfies ToChild);
    return this.ready;
  }

  private onMessage(child: ChildProcess, m: ToParent): void {
    switch (m.t) {
      case "reply":
        return this.settle(m);
      case "call":
        return this.serve(child, m);
      case "abort":
        this.localCalls.get(m.id)?.abort();
        return;
      case "record":
        return this.opts.onRecord(m.record);
      case "records":
        for (const r of m.records) this.opts.onRecord(r);
        return;
      case "touch":
        return this.opts.secrets.touch(m.name, m.scope);
      case "log":
        return this.log(m.line);
      case "ready":
      case "failed":
      case "closed":
        return;
    }
  }

  /** Answer the gateway's question: a secret value, or a paddock.internal request. */
  private serve(child: ChildProcess, m: { t: "call"; id: number } & ChildCall): void {
    let work: Promise<unknown>;
    if (m.op === "resolve") work = this.opts.secrets.resolve(m.name, m.scope);
    else {
      const abort = new AbortController();
      this.localCalls.set(m.id, abort);
      const api = this.opts.localApi;
      const req = { ...m.req, body: Buffer.from(m.req.body), signal: abort.signal };
      work = (api ? api(m.sessionId, req) : Promise.resolve({ status: 404, body: { error: "paddock.internal is not served by this installation" } })).finally(() => this.localCalls.delete(m.id));
    }
    work.then(
      (value) => child.connected && child.send({ t: "reply", id: m.id, ok: true, value } satisfies Reply),
      (err: unknown) => {
        const e = asPaddockError(err);
        if (child.connected) child.send({ t: "reply", id: m.id, ok: false, code: e.code, message: e.message } satisfies Reply);
      },
    );
  }

  private settle(m: Reply): void {
    const p = this.calls.get(m.id);
    if (!p) return;
    this.calls.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new PaddockError(m.code as ErrorCode, m.message));
  }

  private call(c: ParentCall): Promise<unknown> {
    const child = this.child;
    if (!child?.connected) return Promise.reject(unavailable("the egress gateway process is not running"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      child.send({ ...c, t: "call", id } satisfies ToChild);
    });
  }

  /** The gateway process died: say why, and bring it back with every session it served. */
  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null, stderr: string): void {
    if (child !== this.child) return;
    this.child = null;
    for (const [id, p] of this.calls) {
      this.calls.delete(id);
      p.reject(unavailable("the egress gateway process exited"));
    }
    for (const a of this.localCalls.values()) a.abort();
    if (this.closing) return;
    this.log(`gateway: process exited unexpectedly (${signal ?? `exit ${code}`}): ${stderrTail(stderr)}; restarting it`);
    void this.restart();
  }

  private async restart(): Promise<void> {
    while (!this.closing) {
      try {
        await this.start();
        this.quickRestarts = 0;
        for (const r of this.registered.values()) await this.call({ op: "register", spec: r.spec, restore: r.reg });
        this.log(`gateway: process restarted, ${this.registered.size} session(s) served again`);
        return;
      } catch (err) {
        this.log(`gateway: restart failed: ${asPaddockError(err).message}`);
        if (++this.quickRestarts >= MAX_QUICK_RESTARTS) {
          this.log(`gateway: giving up after ${MAX_QUICK_RESTARTS} failed restarts; sandboxes have no egress until Paddock is restarted`);
          return;
        }
        // Back off a little, so a gateway that cannot bind its ports does not spin.
        await new Promise((r) => setTimeout(r, 200 * this.quickRestarts));
      }
    }
  }

  async register(spec: GatewaySessionSpec, restore?: GatewayRegistration & { caKeyPem?: string }): Promise<GatewayRegistration & { caKeyPem: string }> {
    await this.ready;
    const reg = (await this.call({ op: "register", spec, ...(restore ? { restore } : {}) })) as GatewayRegistration & { caKeyPem: string };
    this.registered.set(spec.id, { spec, reg });
    return reg;
  }

  async unregister(id: string): Promise<boolean> {
    this.registered.delete(id);
    if (!this.child?.connected) return false;
    return (await this.call({ op: "unregister", sessionId: id })) as boolean;
  }

  secretsChanged(): void {
    if (this.child?.connected) this.child.send({ t: "invalidate" } satisfies ToChild);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    if (child.connected) child.send({ t: "close" } satisfies ToChild);
    // A gateway stuck on a hostile sandbox gets a moment to close its listeners, then is killed.
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** The end of what the process wrote to stderr: for a crash, the error and its stack. */
function stderrTail(text: string): string {
  return text.trim().split("\n").slice(-20).join("\n").slice(-3000) || "no output";
}

/** Start the gateway in its own process. Rejects when it cannot bind its ports. */
export async function startGatewayProcess(opts: GatewayProcessOptions): Promise<GatewayProcess> {
  const gw = new ProcessGateway(opts);
  try {
    await gw.start();
  } catch (err) {
    await gw.close();
    throw err;
  }
  return gw;
}
