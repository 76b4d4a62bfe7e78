/**
 * The TypeScript SDK: the HTTP API as methods. The CLI uses it and nothing else, and tests use it
 * to drive a real server. Modelled on the E2B/Daytona SDKs: `client.sessions.start()`,
 * `client.sessions.exec()`, `client.files.write()`; units in option names; errors are PaddockError.
 *
 * @example
 * const paddock = new PaddockClient({ url: "http://127.0.0.1:7070" });
 * const s = await paddock.sessions.start("monorepo-agent");
 * const r = await paddock.sessions.exec(s.id, { argv: ["npm", "test"], onStdout: (b) => process.stdout.write(b) });
 */
import type WebSocket from "ws";
import type { Readable } from "node:stream";
import type { Approval, AuditRecord, Environment, EnvironmentVersion, ExecResult, FileEntry, PoolInfo, Preview, Principal, Run, RunEvent, RunOutcome, ServiceStatus, Session, SessionRoute, Snapshot, StoredEgressRecord, Template } from "../core/index.ts";
import { PaddockError, codeOfHttpStatus, unavailable, type ExecSignals } from "../core/index.ts";

export { ExecSignals } from "../core/index.ts";

export interface ClientOptions {
  /** Server URL; default $PADDOCK_URL or http://127.0.0.1:7070. */
  url?: string;
  /** API token (`pdk_…`); default $PADDOCK_TOKEN. Every call but health needs one. */
  token?: string;
}

/** Who the token belongs to and what it may do on each environment. */
export interface Whoami {
  principal: Principal;
  admin: boolean;
  environments: Record<string, ("read" | "write" | "deploy")[]>;
}

export interface AuditFilter {
  session?: string;
  actor?: string;
  environment?: string;
  /** ISO time. */
  since?: string;
  /** Only records after this seq. */
  after?: number;
  limit?: number;
}

export type PublicSession = Omit<Session, "providerState"> & {
  /** How its provider was chosen (docs/routing.md): on `sessions.get` only; null when it has no record. */
  route?: Omit<SessionRoute, "sessionId" | "decision"> | null;
};

/** A provider instance as listed (docs/routing.md): never a credential value. */
export interface ProviderInfo {
  name: string;
  kind: string;
  status: string;
  selfHosted: boolean | null;
  settings: Record<string, unknown>;
  routing: Record<string, unknown>;
  credentials: { name: string; set: boolean; optional?: true }[];
}

export interface ProviderHealthInfo {
  name: string;
  ok: boolean;
  detail: string;
  latencyMs: number;
  breaker: "closed" | "open" | "half-open";
  failures: number;
  lastError: string | null;
}

/** `paddock route explain`: the request and the decision with every candidate's factors. */
export interface RouteExplanation {
  request: { environment: string; preference: string[]; compute: { cpu: number; memoryBytes: number; timeoutMs: number }; latency: "interactive" | "batch"; selfHostedOnly: boolean; isolation?: string; pooledOn?: string };
  decision: {
    strategy: string;
    order: string[];
    chosen: string | null;
    reason: string;
    candidates: { provider: string; eligible: boolean; reason: string; score: number; estimateUsd: number; factors: { name: string; value: string; points: number; excludes: boolean; note: string }[] }[];
  };
}

/** A preview as served: its URL without the token (docs/previews.md). */
export type PreviewInfo = Preview & { url: string };

export type { PoolInfo, Snapshot, ServiceStatus } from "../core/index.ts";

/** A snapshot with what keeps it from being removed (`session <id>`, `pool member <id>`). */
export type SnapshotDetail = Snapshot & { users: string[] };

/** What a fork started: the sessions, and per failed start its error (the others are unaffected). */
export interface ForkResult {
  snapshot: Snapshot;
  sessions: PublicSession[];
  failures: { index: number; code: string; message: string }[];
}


export interface Issue {
  file: string;
  line: number;
  column: number;
  path: string;
  message: string;
}

/** Where a secret applies: at most one of the three; none means global. */
export interface SecretScopeOptions {
  environment?: string;
  team?: string;
  agent?: string;
}

/** A secret as listed by the server: never its value. */
export interface SecretInfo {
  name: string;
  /** `{}` for global; else exactly one of environment, team, agent. */
  scope: SecretScopeOptions;
  /** Hosts the secret is swapped into by default, when the server knows them. */
  hosts?: string[];
  createdAt: string;
  updatedAt: string;
  lastUsedAt: string | null;
}

/** One request that left a session through the egress gateway. */
export type EgressRecord = StoredEgressRecord;

export interface StreamExecOptions {
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  stdin?: Readable;
  onStdout?: (b: Buffer) => void;
  onStderr?: (b: Buffer) => void;
  /** Aborting closes the stream, which kills the command's process group; the call rejects with the abort reason. */
  signal?: AbortSignal;
  /**
   * Signals to deliver to the command while it runs (e.g. Ctrl-C as SIGINT); the call then
   * resolves with its exit as usual.
   * @example
   * const signals = new ExecSignals();
   * process.on("SIGINT", () => signals.send("SIGINT"));
   * await paddock.sessions.exec(id, { argv: ["npm", "test"], signals });
   */
  signals?: ExecSignals;
}

/** Stdin goes in messages of at most this size (the server closes the stream on one over 1 MiB). */
const STDIN_MESSAGE_BYTES = 256 * 1024;

export class PaddockClient {
  readonly url: string;
  readonly #token: string | undefined;

  constructor(opts: ClientOptions = {}) {
    this.url = (opts.url ?? process.env.PADDOCK_URL ?? "http://127.0.0.1:7070").replace(/\/$/, "");
    this.#token = opts.token ?? process.env.PADDOCK_TOKEN;
  }

  #auth(): Record<string, string> {
    return this.#token ? { authorization: `Bearer ${this.#token}` } : {};
  }

  /** The calling principal and its permissions. */
  whoami(): Promise<Whoami> {
    return this.json("GET", "/v1/whoami");
  }

  /** Like whoami, and recorded in the audit log as a login. */
  login(): Promise<Whoami> {
    return this.json("POST", "/v1/login");
  }

  /** Principals (admin only). `create` returns the new principal's token: shown once. */
  readonly principals = {
    create: (p: { name: string; kind?: "human" | "agent"; role: string; team?: string }) =>
      this.json<{ principal: Principal; token: string }>("POST", "/v1/principals", p),
    list: () => this.json<Principal[]>("GET", "/v1/principals"),
    issueToken: (name: string, label?: string) => this.json<{ token: string }>("POST", `/v1/principals/${enc(name)}/tokens`, label ? { label } : {}),
    /** Token ids (the public part), labels and use; never secrets. */
    tokens: (name: string) => this.json<{ id: string; label: string; createdAt: string; lastUsedAt: string | null; revokedAt: string | null }[]>("GET", `/v1/principals/${enc(name)}/tokens`),
    revokeToken: (name: string, tokenId: string) => this.json<void>("DELETE", `/v1/principals/${enc(name)}/tokens/${enc(tokenId)}`),
    disable: (name: string) => this.json<Principal>("POST", `/v1/principals/${enc(name)}/disable`),
  };

  /** The hash-chained audit log. */
  readonly audit = {
    list: (f: AuditFilter = {}) => {
      const q = new URLSearchParams(Object.entries(f).filter(([, v]) => v !== undefined).map(([k, v]): [string, string] => [k, String(v)]));
      return this.json<AuditRecord[]>("GET", `/v1/audit${q.size ? `?${q}` : ""}`);
    },
    verify: () => this.json<{ ok: boolean; records: number; lastSeq: number; problems: { seq: number; problem: string }[] }>("GET", "/v1/audit/verify"),
  };

  /** Commands waiting for a person's approval (guardrails.commands.ask). */
  readonly approvals = {
    list: (f: { state?: Approval["state"]; session?: string } = {}) => {
      const q = new URLSearchParams(Object.entries(f).filter((e): e is [string, string] => typeof e[1] === "string"));
      return this.json<Approval[]>("GET", `/v1/approvals${q.size ? `?${q}` : ""}`);
    },
    get: (id: string) => this.json<Approval>("GET", `/v1/approvals/${enc(id)}`),
    approve: (id: string, reason?: string) => this.json<Approval>("POST", `/v1/approvals/${enc(id)}/approve`, reason ? { reason } : {}),
    deny: (id: string, reason?: string) => this.json<Approval>("POST", `/v1/approvals/${enc(id)}/deny`, reason ? { reason } : {}),
  };

  readonly environments = {
    validate: (fileName: string, source: string) =>
      this.json<{ valid: boolean; issues: Issue[]; spec: unknown }>("POST", "/v1/environments/validate", { fileName, source }),
    /** Register and build; `onEvent` receives each build event as it happens. */
    apply: (fileName: string, source: string, opts: { noCache?: boolean; onEvent?: (e: Record<string, unknown>) => void } = {}) =>
      this.applyStream(fileName, source, opts),
    list: () => this.json<Environment[]>("GET", "/v1/environments"),
    get: (name: string) => this.json<{ environment: Environment; current: EnvironmentVersion | null; template: Template | null }>("GET", `/v1/environments/${enc(name)}`),
    history: (name: string) => this.json<EnvironmentVersion[]>("GET", `/v1/environments/${enc(name)}/versions`),
    /** A version's build log: each step, its output and exit code. */
    buildLog: async (name: string, version: number): Promise<string> =>
      (await this.request("GET", `/v1/environments/${enc(name)}/versions/${version}/log`, { accept: "text/plain" })).text(),
  };

  readonly sessions = {
    /**
     * Start a session (from a ready pool member when the environment has one); an agent names the
     * person it works for with `onBehalfOf`. With `from`, start from that snapshot (id or name)
     * instead: `environment` may then be null, and when given must be the snapshot's.
     * @example
     * const s = await paddock.sessions.start(null, { from: "before-migration" });
     */
    start: (environment: string | null, opts: { onBehalfOf?: string; from?: string; latency?: "interactive" | "batch" } = {}) =>
      this.json<PublicSession>("POST", "/v1/sessions", { ...(environment !== null ? { environment } : {}), ...opts }),
    /**
     * Snapshot a running session and start `count` sessions from it at once. Resolves with the
     * sessions started and the failures (it does not reject when only some starts failed).
     * @example
     * const { sessions, failures } = await paddock.sessions.fork(id, { count: 10 });
     */
    fork: (id: string, opts: { count: number }) => this.json<ForkResult>("POST", `/v1/sessions/${enc(id)}/fork`, { count: opts.count }),
    /** The state of a session's services (postgres, redis… of its environment file). */
    services: (id: string) => this.json<ServiceStatus[]>("GET", `/v1/sessions/${enc(id)}/services`),
    list: (opts: { all?: boolean; environment?: string } = {}) => {
      const q = new URLSearchParams();
      if (opts.all) q.set("all", "true");
      if (opts.environment) q.set("environment", opts.environment);
      return this.json<PublicSession[]>("GET", `/v1/sessions${q.size ? `?${q}` : ""}`);
    },
    get: (id: string) => this.json<PublicSession>("GET", `/v1/sessions/${enc(id)}`),
    stop: (id: string) => this.json<PublicSession>("POST", `/v1/sessions/${enc(id)}/stop`),
    /**
     * Signal every process of a session except its init, without starting one inside it (default
     * SIGKILL, resolved once they are gone). The session keeps running.
     * @returns how many processes were signalled.
     * @example await client.sessions.killProcesses(id); // after a fork bomb filled compute.pids
     */
    killProcesses: (id: string, opts: { signal?: string } = {}) =>
      this.json<{ signalled: number }>("POST", `/v1/sessions/${enc(id)}/kill`, opts.signal ? { signal: opts.signal } : {}),
    remove: (id: string) => this.json<void>("DELETE", `/v1/sessions/${enc(id)}`),
    /** Run a command to completion; output is buffered (UTF-8). */
    run: (id: string, opts: { argv: string[]; cwd?: string; env?: Record<string, string>; timeoutMs?: number; stdin?: Uint8Array }) =>
      this.json<ExecResult & { stdout: string; stderr: string; truncated: boolean }>("POST", `/v1/sessions/${enc(id)}/exec`, {
        ...opts,
        ...(opts.stdin ? { stdin: Buffer.from(opts.stdin).toString("base64") } : {}),
      }),
    /** Run a command with live output and stdin over a WebSocket. */
    exec: (id: string, opts: StreamExecOptions) => this.execStream(id, opts),
    /**
     * Requests that left the session through the egress gateway, oldest first. Without `after`, the
     * newest `limit` (default 100, at most 1000); with it, the first `limit` after that record id.
     * @example
     * const page = await paddock.sessions.egress(id, { after: last?.id });
     */
    egress: (id: string, opts: { limit?: number; after?: number } = {}) => {
      const q = new URLSearchParams();
      if (opts.limit !== undefined) q.set("limit", String(opts.limit));
      if (opts.after !== undefined) q.set("after", String(opts.after));
      return this.json<EgressRecord[]>("GET", `/v1/sessions/${enc(id)}/egress${q.size ? `?${q}` : ""}`);
    },
  };

  /** Snapshots of running sessions; start sessions from them with `sessions.start(null, { from })`. */
  readonly snapshots = {
    /**
     * Capture a running session (its processes are frozen for the instant of the capture).
     * @example
     * const snap = await paddock.snapshots.create(sessionId, { name: "before-migration" });
     */
    create: (session: string, opts: { name?: string } = {}) => this.json<Snapshot>("POST", "/v1/snapshots", { session, ...opts }),
    list: (opts: { environment?: string } = {}) => {
      const q = new URLSearchParams(opts.environment ? { environment: opts.environment } : {});
      return this.json<Snapshot[]>("GET", `/v1/snapshots${q.size ? `?${q}` : ""}`);
    },
    /** By id or name. */
    get: (ref: string) => this.json<SnapshotDetail>("GET", `/v1/snapshots/${enc(ref)}`),
    /** Rejects `conflict` (naming them) while running sessions started from it use it. */
    remove: (ref: string) => this.json<void>("DELETE", `/v1/snapshots/${enc(ref)}`),
  };

  /**
   * Agent runs: a coding agent working headless in a session for the caller (docs/agents.md).
   * @example
   * const run = await paddock.runs.start({ environment: "monorepo-agent", agent: "claude-code", prompt: "Fix the failing test" });
   * for await (const e of paddock.runs.follow(run.id)) console.log(e.event.type);
   * const done = await paddock.runs.get(run.id); // summary, diff, checks, outcome
   */
  // --- previews (docs/previews.md) ---
  /** Preview URLs: one port of one session at its own origin, token- or role-guarded, with a TTL. */
  readonly previews = {
    /**
     * Serve `port` of a running session. The answer's `url` carries the visitor token (shown once).
     * @example
     * const { url } = await paddock.previews.create(sessionId, 3000, { ttl: "2h", command: "npm start" });
     */
    create: (session: string, port: number, opts: { ttl?: string; public?: boolean; command?: string } = {}) =>
      this.json<{ preview: PreviewInfo; token: string; url: string }>("POST", "/v1/previews", { session, port, ...opts }),
    /** Live previews (all: also revoked and expired ones) the caller may read. */
    list: (filter: { session?: string; environment?: string; all?: boolean } = {}) => {
      const q = new URLSearchParams({ ...(filter.session ? { session: filter.session } : {}), ...(filter.environment ? { environment: filter.environment } : {}), ...(filter.all ? { all: "true" } : {}) });
      return this.json<PreviewInfo[]>("GET", `/v1/previews${q.size ? `?${q}` : ""}`);
    },
    get: (id: string) => this.json<PreviewInfo>("GET", `/v1/previews/${enc(id)}`),
    /** Revoke: the next request through it is refused. */
    revoke: (id: string) => this.json<PreviewInfo>("DELETE", `/v1/previews/${enc(id)}`),
  };
  // --- end previews ---

  readonly runs = {
    start: (req: { environment: string; agent?: string; prompt: string; outcome?: RunOutcome }) => this.json<Run>("POST", "/v1/runs", req),
    get: (id: string) => this.json<Run>("GET", `/v1/runs/${enc(id)}`),
    list: (opts: { environment?: string } = {}) => {
      const q = new URLSearchParams(opts.environment ? { environment: opts.environment } : {});
      return this.json<Run[]>("GET", `/v1/runs${q.size ? `?${q}` : ""}`);
    },
    /** The transcript so far (after `after`). */
    events: (id: string, after = 0) => this.json<RunEvent[]>("GET", `/v1/runs/${enc(id)}/events?after=${after}`),
    /** The transcript, then each new entry live, until the run's turn is over. */
    follow: (id: string, after = 0, signal?: AbortSignal) => this.followRun(id, after, signal),
    /** Follow until the turn is over, then the run (idle, done, failed or cancelled). */
    wait: async (id: string, signal?: AbortSignal): Promise<Run> => {
      for await (const _ of this.followRun(id, Number.MAX_SAFE_INTEGER, signal)) {
        // only waiting for the end of the stream
      }
      return this.json<Run>("GET", `/v1/runs/${enc(id)}`);
    },
    /** A follow-up prompt to an idle run. */
    followUp: (id: string, prompt: string) => this.json<Run>("POST", `/v1/runs/${enc(id)}/messages`, { prompt }),
    cancel: (id: string) => this.json<Run>("POST", `/v1/runs/${enc(id)}/cancel`),
  };

  private async *followRun(id: string, after: number, signal?: AbortSignal): AsyncGenerator<RunEvent> {
    const res = await this.request("GET", `/v1/runs/${enc(id)}/events?follow=1&after=${after}`, { accept: "application/x-ndjson", ...(signal ? { signal } : {}) });
    let pending = "";
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) if (line.trim()) yield JSON.parse(line) as RunEvent;
    }
  }

  /** Warm pools of started sandboxes, claimed by session starts. */
  readonly pools = {
    list: () => this.json<PoolInfo[]>("GET", "/v1/pools"),
    /** Admin: keep `min` members ready (at most `max`, default `min`), overriding the file's `pool:`. */
    set: (environment: string, size: { min: number; max?: number }) => this.json<PoolInfo>("PUT", `/v1/pools/${enc(environment)}`, size),
    /** Admin: back to the file's `pool:`. */
    reset: (environment: string) => this.json<PoolInfo>("DELETE", `/v1/pools/${enc(environment)}`),
  };

  /** Admin: remove the layers nothing keeps now (it also runs on its own). */
  gc(): Promise<{ layers: string[]; snapshots: string[]; orphans: string[] }> {
    return this.json("POST", "/v1/gc");
  }

  /**
   * Secrets: values go in and never come out. The gateway swaps them into requests to their bound
   * hosts; sandboxes see placeholders.
   */
  readonly secrets = {
    /**
     * Set a value in one scope (none = global); the next request through the gateway uses it.
     * @example
     * await paddock.secrets.set("STRIPE_API_KEY", process.env.STRIPE_API_KEY!, { environment: "monorepo-agent" });
     */
    set: (name: string, value: string, scope: SecretScopeOptions = {}) =>
      this.json<void>("PUT", `/v1/secrets/${enc(name)}`, { value, ...scope }),
    /** Every secret by name and scope, with when it was set and last used. */
    list: () => this.json<SecretInfo[]>("GET", "/v1/secrets"),
    /** Delete the value in exactly that scope; rejects `not_found` when there is none. */
    remove: (name: string, scope: SecretScopeOptions = {}) => {
      const q = new URLSearchParams(Object.entries(scope).filter((e): e is [string, string] => typeof e[1] === "string" && e[1] !== ""));
      return this.json<void>("DELETE", `/v1/secrets/${enc(name)}${q.size ? `?${q}` : ""}`);
    },
  };

  /** Provider instances (admin; docs/routing.md). Credentials go in and never come out. */
  readonly providers = {
    list: () => this.json<ProviderInfo[]>("GET", "/v1/providers"),
    /**
     * @example
     * await paddock.providers.add({ name: "e2b", kind: "e2b", credentials: { apiKey: process.env.E2B_API_KEY! } });
     */
    add: (p: { name: string; kind: string; settings?: Record<string, unknown>; routing?: Record<string, unknown>; credentials?: Record<string, string> }) =>
      this.json<ProviderInfo>("POST", "/v1/providers", p),
    remove: (name: string) => this.json<void>("DELETE", `/v1/providers/${enc(name)}`),
    health: () => this.json<ProviderHealthInfo[]>("GET", "/v1/providers/health"),
  };

  /** Where a session of `environment` would run now, and why (starts nothing). */
  explainRoute(environment: string, opts: { latency?: "interactive" | "batch" } = {}): Promise<RouteExplanation> {
    return this.json("GET", `/v1/environments/${enc(environment)}/route${opts.latency ? `?latency=${opts.latency}` : ""}`);
  }

  readonly files = {
    write: (id: string, path: string, data: Uint8Array, opts: { mode?: number } = {}) =>
      this.request("PUT", `/v1/sessions/${enc(id)}/files?${new URLSearchParams({ path, ...(opts.mode !== undefined ? { mode: opts.mode.toString(8) } : {}) })}`, {
        body: data,
        contentType: "application/octet-stream",
      }).then(() => undefined),
    read: async (id: string, path: string) =>
      Buffer.from(await (await this.request("GET", `/v1/sessions/${enc(id)}/files?${new URLSearchParams({ path })}`)).arrayBuffer()),
    list: (id: string, path: string) => this.json<FileEntry[]>("GET", `/v1/sessions/${enc(id)}/files/list?${new URLSearchParams({ path })}`),
  };

  doctor(): Promise<{ ok: boolean; checks: { name: string; ok: boolean; detail: string }[]; leaks: string[] }> {
    return this.json("GET", "/v1/doctor");
  }

  health(): Promise<{ ok: boolean; version: string }> {
    return this.json("GET", "/v1/health");
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body === undefined ? {} : { body: JSON.stringify(body), contentType: "application/json" });
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  private async request(method: string, path: string, o: { body?: string | Uint8Array; contentType?: string; accept?: string; signal?: AbortSignal } = {}): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: { ...this.#auth(), ...(o.contentType ? { "content-type": o.contentType } : {}), accept: o.accept ?? "application/json" },
        ...(o.body !== undefined ? { body: o.body } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      });
    } catch (err) {
      if (o.signal?.aborted) throw err;
      throw unavailable(`cannot reach the Paddock server at ${this.url}: is it running? (start it with \`paddock up\`, or set PADDOCK_URL)`, err);
    }
    if (!res.ok) throw await errorFrom(res);
    return res;
  }

  private async applyStream(fileName: string, source: string, opts: { noCache?: boolean; onEvent?: (e: Record<string, unknown>) => void }) {
    const res = await this.request("POST", "/v1/environments", {
      body: JSON.stringify({ fileName, source, ...(opts.noCache ? { noCache: true } : {}) }),
      contentType: "application/json",
      accept: "application/x-ndjson",
    });
    let last: Record<string, unknown> | null = null;
    let pending = "";
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.trim()) continue;
        last = JSON.parse(line) as Record<string, unknown>;
        opts.onEvent?.(last);
      }
    }
    if (last?.type === "done") return last as { type: "done"; templateId: string; durationMs: number };
    const message = typeof last?.message === "string" ? last.message : "the build ended without a result (server stopped?)";
    throw new PaddockError("invalid_argument", message, last ?? undefined);
  }

  private async execStream(id: string, opts: StreamExecOptions): Promise<ExecResult> {
    // Loaded on first use: most commands never open a stream, and loading ws costs about 20 ms at CLI start.
    const { default: WebSocketClient } = await import("ws");
    return new Promise((resolve, reject) => {
      const ws = new WebSocketClient(`${this.url.replace(/^http/, "ws")}/v1/sessions/${enc(id)}/exec/stream`, { headers: this.#auth() });
      let settled = false;
      const settle = (f: () => void) => {
        if (!settled) {
          settled = true;
          f();
        }
      };
      const sendIfOpen = (data: string | Buffer) => ws.readyState === ws.OPEN && ws.send(data);
      // Aborting closes the stream: the server kills the command when its socket goes away.
      const onAbort = () => settle(() => {
        ws.terminate();
        reject(opts.signal?.reason ?? new PaddockError("unavailable", "exec aborted"));
      });
      if (opts.signal?.aborted) onAbort();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      ws.on("open", () => {
        ws.send(JSON.stringify({ argv: opts.argv, cwd: opts.cwd, env: opts.env, timeoutMs: opts.timeoutMs }));
        if (opts.stdin) {
          opts.stdin.on("data", (b: Buffer | string) => {
            const buf = typeof b === "string" ? Buffer.from(b) : b;
            for (let off = 0; off < buf.length; off += STDIN_MESSAGE_BYTES) sendIfOpen(buf.subarray(off, off + STDIN_MESSAGE_BYTES));
          });
          opts.stdin.on("end", () => sendIfOpen(JSON.stringify({ type: "stdin-eof" })));
        } else ws.send(JSON.stringify({ type: "stdin-eof" }));
        const unlisten = opts.signals?.listen((name) => sendIfOpen(JSON.stringify({ type: "signal", signal: name })));
        ws.on("close", () => unlisten?.());
      });
      ws.on("message", (data: WebSocket.RawData, isBinary) => {
        const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        if (isBinary) {
          if (buf[0] === 1) opts.onStdout?.(buf.subarray(1));
          else if (buf[0] === 2) opts.onStderr?.(buf.subarray(1));
          return;
        }
        let msg: { type?: string; code?: string; message?: string; fatal?: boolean } & Partial<ExecResult>;
        try {
          msg = JSON.parse(buf.toString("utf8")) as typeof msg;
        } catch {
          return;
        }
        if (msg.type === "exit") settle(() => resolve({ exitCode: msg.exitCode ?? -1, signal: msg.signal ?? null, timedOut: msg.timedOut ?? false, durationMs: msg.durationMs ?? 0 }));
        // `fatal: false`: one of our messages was refused (e.g. an unknown signal); the command runs on.
        else if (msg.type === "error" && msg.fatal !== false) settle(() => reject(new PaddockError((msg.code ?? "internal") as PaddockError["code"], msg.message ?? "exec failed")));
      });
      ws.on("unexpected-response", (_req, res) => {
        let text = "";
        res.on("data", (b: Buffer) => (text += b.toString()));
        res.on("end", () => {
          let message = `exec stream refused: HTTP ${res.statusCode}`;
          try {
            message = (JSON.parse(text) as { error: { message: string } }).error.message;
          } catch {
            /* not JSON */
          }
          settle(() => reject(new PaddockError(codeOfHttpStatus(res.statusCode ?? 500), message)));
        });
      });
      ws.on("error", (err) => settle(() => reject(unavailable(`cannot reach the Paddock server at ${this.url}: ${err.message}`, err))));
      ws.on("close", (code: number) => {
        opts.signal?.removeEventListener("abort", onAbort);
        if (code === 1009) settle(() => reject(new PaddockError("invalid_argument", "the server closed the exec stream: a message was over its 1 MiB limit")));
        settle(() => reject(new PaddockError("unavailable", "the exec stream closed before the command ended")));
      });
    });
  }
}

const enc = encodeURIComponent;

async function errorFrom(res: Response): Promise<PaddockError> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string; details?: Record<string, unknown> } };
    if (body.error?.message) return new PaddockError((body.error.code ?? codeOfHttpStatus(res.status)) as PaddockError["code"], body.error.message, body.error.details);
  } catch {
    /* not JSON */
  }
  return new PaddockError(codeOfHttpStatus(res.status), `HTTP ${res.status}: ${text.slice(0, 200)}`);
}
