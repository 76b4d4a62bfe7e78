import { createHash, randomBytes } from "node:crypto";
import { dirname } from "node:path";
import { lookup } from "node:dns/promises";
import { isIPv4 } from "node:net";
import type { Readable } from "node:stream";
import { Daytona, DaytonaError, Image } from "@daytona/sdk";
import type { Sandbox } from "@daytona/sdk";
import type {
  ExecOptions, ExecResult, FileEntry, GuardDenial, Provider, ProviderCapabilities, ProviderDeps, ProviderHealth,
  RemoteEgressAttachment, SandboxHandle, SandboxSpec, ServiceStatus,
} from "../../core/provider.ts";
import { PaddockError, excerpt, invalid, notFound } from "../../core/errors.ts";
import { unsupported } from "../../core/capabilities.ts";
import { commandLine, shellQuote, signalOf } from "./command.ts";
import type { DaytonaSettings } from "./settings.ts";

/**
 * The `daytona` provider: sessions are Daytona sandboxes, driven through the official
 * `@daytona/sdk` (docs/providers.md, "Daytona").
 *
 * - Template: the recipe becomes a declarative Daytona image (`Image.base(settings.image)` plus one
 *   `RUN` per step). Daytona builds a snapshot from it on the first create and reuses it for every
 *   later sandbox with the same Dockerfile, so the recipe's steps run once per template, not per
 *   session. Creating from an image is also what lets `compute` become Daytona resources.
 * - Network: `proxy`. The sandbox's only allowed destination is Paddock's egress gateway
 *   (`networkAllowList` = the gateway's addresses as /32s); without `remoteEgress` it gets
 *   `networkBlockAll`. Its proxy variables and CA come from `remoteEgress`, so secrets are swapped
 *   by Paddock's gateway. Daytona's own placeholder secrets (`secrets` at create) are not used:
 *   they would put the real value in Daytona's organization and let Daytona's proxy, not
 *   Paddock's, decide where it goes (invariants 1, 2 and 4 could no longer be checked by Paddock).
 * - Exec: one Daytona session per command, run asynchronously; its state and output are polled
 *   (`pollIntervalMs`). Output is text (the daemon reports it as strings). Daytona's logs call
 *   answers the whole output so far on every poll (it has no offset; its WebSocket `follow` form
 *   is not used, docs/providers.md says why), so a command whose output
 *   passes `maxOutputBytes` is ended and its exec fails: the memory and bandwidth one exec costs the
 *   control plane stay bounded. Stdin is uploaded as a file before the command starts, so it is not
 *   interactive: a stream is read whole first, and refused beyond `maxStdinBytes` or when it has
 *   not ended within `stdinTimeoutMs` (a stream that never ends could otherwise never start its command).
 */
export interface DaytonaProviderOptions {
  name: string;
  settings: DaytonaSettings;
  apiKey: string;
  deps: ProviderDeps;
}

interface LiveSandbox {
  sandbox: Sandbox;
  /** `setEnv` additions: every later command starts with them. */
  env: Record<string, string>;
  /** Commands still running, by session id: each ends its command and resolves once it is gone (`killProcesses`). */
  running: Map<string, () => Promise<void>>;
}

const GiB = 2 ** 30;
const WORKSPACE = "/workspace";
/** Daytona accepts at most this many CIDRs in `networkAllowList`. */
const MAX_ALLOW_CIDRS = 5;
const SESSION_PREFIX = "paddock-x-";
/** Where the gateway's per-session files are uploaded (the image links their real paths here). */
const EGRESS_DIR = "/var/lib/paddock-egress";

export class DaytonaProvider implements Provider {
  readonly name: string;
  readonly capabilities: ProviderCapabilities = {
    kind: "daytona", selfHosted: false, layers: false, network: "proxy", snapshot: false, execGuard: false,
    services: false, fileOps: false, ports: true, warmPool: false, isolation: ["namespaces"],
  };
  private readonly client: Daytona;
  private readonly live = new Map<string, LiveSandbox>();
  private readonly settings: DaytonaSettings;
  private readonly log: (line: string) => void;

  constructor(opts: DaytonaProviderOptions) {
    this.name = opts.name;
    this.settings = opts.settings;
    this.log = opts.deps.log;
    if (!opts.apiKey) throw invalid(`daytona provider ${JSON.stringify(opts.name)}: credential apiKey is empty`);
    this.client = new Daytona({
      apiKey: opts.apiKey,
      apiUrl: opts.settings.apiUrl,
      ...(opts.settings.target ? { target: opts.settings.target } : {}),
      // State changes are read by polling the sandbox: the SDK's event stream is a WebSocket
      // connection per client that a control plane does not need for a handful of creates.
      useDeprecatedPolling: true,
    });
  }

  async create(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    this.refuseWhatItCannotDo(spec);
    if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(spec.id)) throw invalid(`bad sandbox id ${JSON.stringify(spec.id)}`);
    if (this.live.has(spec.id)) throw new PaddockError("conflict", `sandbox ${spec.id} already exists`);
    const recipe = spec.recipe;
    if (!recipe) throw invalid(`daytona provider ${JSON.stringify(this.name)}: sandbox ${spec.id} has no template recipe (SandboxSpec.recipe)`);
    const egress = spec.remoteEgress ? await spec.remoteEgress() : undefined;
    const network = egress ? { networkAllowList: (await allowCidrs(egress)).join(",") } : { networkBlockAll: true };
    const egressFiles = (egress?.files ?? []).map((f) => ({ ...f, stored: egressFilePath(f.path) }));
    const image = Image.base(this.settings.image).runCommands(
      // Each step as base64 so any shell text (newlines, quotes) is one Dockerfile line.
      ...recipe.steps.map((step) => `echo ${Buffer.from(step).toString("base64")} | base64 -d | /bin/sh`),
      `mkdir -p ${WORKSPACE} && chmod 1777 ${WORKSPACE}`,
      // The gateway's files (its CA bundle in /etc/paddock and /etc/ssl/certs) change per session
      // and the session user may not write /etc: the image links each path (stable, so the image
      // is still built once) to a file in a directory the upload below can write.
      ...egressFiles.map((f) => `mkdir -p ${EGRESS_DIR} ${shellQuote(dirname(f.path))} && chmod 1777 ${EGRESS_DIR} && ln -sfn ${f.stored} ${shellQuote(f.path)}`),
    );
    let sandbox: Sandbox;
    try {
      sandbox = await this.client.create(
        {
          name: spec.id,
          image,
          resources: {
            cpu: Math.max(1, Math.ceil(spec.compute.cpu)),
            memory: Math.max(1, Math.ceil(spec.compute.memoryBytes / GiB)),
            disk: Math.max(1, Math.ceil(spec.compute.diskBytes / GiB)),
          },
          envVars: { ...spec.env, ...egress?.env },
          labels: { "paddock.sandbox": spec.id, "paddock.template": recipe.templateId.slice(0, 63) },
          public: false,
          // Paddock decides when a session ends; Daytona must not stop it for being idle.
          autoStopInterval: 0,
          ...network,
        },
        { timeout: this.settings.createTimeoutSeconds },
      );
    } catch (err) {
      await this.removeFailed(spec.id, err);
      throw this.error(err, `create sandbox ${spec.id}`);
    }
    try {
      // The CA bundle and anything else the gateway needs, before any command of the session runs.
      for (const f of egressFiles) await sandbox.fs.uploadFile(Buffer.from(f.content), f.stored);
      if (signal?.aborted) throw signal.reason;
    } catch (err) {
      await sandbox.delete().catch(() => undefined);
      throw this.error(err, `prepare sandbox ${spec.id}`);
    }
    this.live.set(spec.id, { sandbox, env: {}, running: new Map() });
    return { id: spec.id, providerState: { daytonaId: sandbox.id, env: {} } };
  }

  /**
   * A create that Daytona accepted and that then failed (a build that failed, a start that timed
   * out) leaves a sandbox in the organization: it is removed. A refusal (4xx) left nothing, and
   * a name in use (409) is somebody else's sandbox, never touched.
   */
  private async removeFailed(id: string, err: unknown): Promise<void> {
    if (err instanceof DaytonaError && err.statusCode !== undefined && err.statusCode < 500) return;
    try {
      const left = await this.client.get(id);
      if (left.labels?.["paddock.sandbox"] === id) await left.delete();
    } catch {
      // Nothing there, or Daytona unreachable: nothing this call can do.
    }
  }

  /** Everything in a spec this provider cannot honour is refused by name, never ignored. */
  private refuseWhatItCannotDo(spec: SandboxSpec): void {
    const c = this.capabilities;
    if (spec.isolation && !c.isolation.includes(spec.isolation)) throw unsupported(this, `run isolation tier ${spec.isolation}`, `it runs ${c.isolation.join(", ")}`);
    if (spec.guard?.deny.length) throw unsupported(this, "enforce guardrails.commands.deny (an exec guard)", "run this environment on a provider with execGuard (local, ec2)");
    if (spec.services?.length) throw unsupported(this, "supervise services", "run this environment on a provider with services (local, ec2)");
    if (spec.from !== undefined) throw unsupported(this, "start a sandbox from a snapshot");
    if (spec.mode === "build") throw unsupported(this, "run template builds", "it builds templates from SandboxSpec.recipe itself");
    if (spec.mounts?.length) throw unsupported(this, "bind host directories into a sandbox");
    if (spec.sessionUser) throw unsupported(this, "choose the session user");
    if (spec.egress) throw unsupported(this, "link a sandbox to the gateway's network namespace", "it reaches the gateway as a proxy (SandboxSpec.remoteEgress)");
  }

  async recover(id: string, providerState: Record<string, unknown>): Promise<"running" | "gone"> {
    const daytonaId = typeof providerState["daytonaId"] === "string" ? providerState["daytonaId"] : id;
    let sandbox: Sandbox;
    try {
      sandbox = await this.client.get(daytonaId);
    } catch (err) {
      if (err instanceof DaytonaError && err.statusCode === 404) return "gone";
      throw this.error(err, `look up sandbox ${id}`);
    }
    // Only ever this session's own sandbox (its label, as create set it): another sandbox of the
    // organization is neither claimed nor deleted, whatever the recorded state names.
    if (sandbox.labels?.["paddock.sandbox"] !== id) return "gone";
    if (sandbox.state === "started") {
      const env = (providerState["env"] ?? {}) as Record<string, string>;
      this.live.set(id, { sandbox, env, running: new Map() });
      return "running";
    }
    // Stopped, archived or failed while the control plane was away: a session does not come back
    // from that (its processes are gone), so what is left is removed.
    await sandbox.delete().catch(() => undefined);
    return "gone";
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    const live = this.get(id);
    const { sandbox } = live;
    const session = `${SESSION_PREFIX}${randomBytes(8).toString("hex")}`;
    const t0 = performance.now();
    const stdin = opts.stdin ? await this.readStdin(opts.stdin, id, opts.signal) : undefined;
    const stdinPath = stdin?.length ? `/tmp/.paddock-stdin-${session}` : undefined;
    const command = commandLine({
      argv: opts.argv,
      cwd: opts.cwd ?? WORKSPACE,
      env: { ...live.env, ...opts.env },
      ...(stdinPath ? { stdinPath } : {}),
    });
    try {
      if (stdinPath && stdin) await sandbox.fs.uploadFile(stdin, stdinPath);
      await sandbox.process.createSession(session);
    } catch (err) {
      throw this.error(err, `exec in sandbox ${id}`);
    }
    let stop: "timeout" | "abort" | "killed" | null = null;
    let wake: () => void = () => undefined;
    let ended!: () => void;
    const gone = new Promise<void>((resolve) => (ended = resolve));
    live.running.set(session, () => {
      stop ??= "killed";
      wake();
      return gone;
    });
    const onAbort = () => {
      stop ??= "abort";
      wake();
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.signal?.aborted) stop = "abort";
    const timer = opts.timeoutMs ? setTimeout(() => {
      stop ??= "timeout";
      wake();
    }, opts.timeoutMs) : undefined;
    const delivered = { out: 0, err: 0 };
    const deliver = (stdout: string, stderr: string) => {
      if (stdout.length > delivered.out) opts.onStdout?.(Buffer.from(stdout.slice(delivered.out)));
      if (stderr.length > delivered.err) opts.onStderr?.(Buffer.from(stderr.slice(delivered.err)));
      delivered.out = Math.max(delivered.out, stdout.length);
      delivered.err = Math.max(delivered.err, stderr.length);
    };
    let stopSignals = (): void => undefined;
    try {
      const { cmdId } = await sandbox.process.executeSessionCommand(session, { command, runAsync: true });
      if (!cmdId) throw new PaddockError("unavailable", "Daytona started the command without a command id");
      // Daytona's session API can end a command but not signal it: SIGKILL ends it, any other
      // signal is refused (thrown to the sender), never dropped.
      stopSignals = opts.signals?.listen((name) => {
        if (name !== "SIGKILL") throw unsupported(this, `deliver ${name} to a running command`, "Daytona's session API can only end a command: send SIGKILL or abort the exec");
        stop ??= "killed";
        wake();
      }) ?? stopSignals;
      let interval = this.settings.pollIntervalMs;
      for (;;) {
        if (stop === "abort") throw opts.signal?.reason ?? new PaddockError("unavailable", "exec aborted");
        if (stop === "timeout") return { exitCode: 124, signal: null, timedOut: true, durationMs: performance.now() - t0 };
        if (stop === "killed") return { exitCode: 137, signal: "SIGKILL", timedOut: false, durationMs: performance.now() - t0 };
        const state = await sandbox.process.getSessionCommand(session, cmdId);
        const logs = await sandbox.process.getSessionCommandLogs(session, cmdId);
        const stdout = logs.stdout ?? "";
        const stderr = logs.stderr ?? "";
        const bytes = Buffer.byteLength(stdout) + Buffer.byteLength(stderr);
        if (bytes > this.settings.maxOutputBytes) {
          // Every later poll would download all of it again: the command is ended (deleting its
          // session, below) and what passed the cap is not delivered.
          throw invalid(
            `daytona provider ${JSON.stringify(this.name)}: exec in sandbox ${id}: the command's output passed ${this.settings.maxOutputBytes} bytes (settings.maxOutputBytes), so it was ended; write large output to a file and read that instead`,
            { provider: this.name, limit: "maxOutputBytes", maxOutputBytes: this.settings.maxOutputBytes },
          );
        }
        deliver(stdout, stderr);
        if (typeof state.exitCode === "number") {
          return { exitCode: state.exitCode, signal: signalOf(state.exitCode), timedOut: false, durationMs: performance.now() - t0 };
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, interval);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        // Quick at first (most commands are short), then gentler on the API for long ones.
        if (performance.now() - t0 > 5000) interval = Math.min(interval * 2, 1000);
      }
    } catch (err) {
      if (err === opts.signal?.reason && opts.signal?.aborted) throw err;
      throw this.error(err, `exec in sandbox ${id}`);
    } finally {
      if (timer) clearTimeout(timer);
      stopSignals();
      opts.signal?.removeEventListener("abort", onAbort);
      live.running.delete(session);
      // Deleting the session ends whatever the command left running (timeout, abort, background).
      await sandbox.process.deleteSession(session).catch(() => undefined);
      ended();
    }
  }

  /**
   * The whole of an exec's stdin, which must be uploaded before the command starts: bounded in size
   * (`maxStdinBytes`) and in time (`stdinTimeoutMs`), so a stream that never ends is refused instead
   * of holding the exec (and its memory) forever.
   */
  private async readStdin(input: Readable | Uint8Array, id: string, signal?: AbortSignal): Promise<Buffer> {
    const { maxStdinBytes, stdinTimeoutMs } = this.settings;
    const refuse = (why: string) => invalid(
      `daytona provider ${JSON.stringify(this.name)}: exec in sandbox ${id}: ${why}; Daytona runs a command with its stdin uploaded whole when it starts (not streamed)`,
      { provider: this.name, maxStdinBytes, stdinTimeoutMs },
    );
    if (input instanceof Uint8Array) {
      if (input.length > maxStdinBytes) throw refuse(`stdin is ${input.length} bytes, over ${maxStdinBytes} (settings.maxStdinBytes)`);
      return Buffer.from(input);
    }
    return await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (err: Error | null) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        input.off("data", onData).off("end", onEnd).off("error", onError);
        if (err) {
          // The exec will not take this stream: stop it rather than leave its producer writing.
          input.destroy();
          reject(err);
        } else resolve(Buffer.concat(chunks));
      };
      const onData = (chunk: unknown) => {
        const b = Buffer.isBuffer(chunk) ? chunk : typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
        size += b.length;
        if (size > maxStdinBytes) return finish(refuse(`stdin passed ${maxStdinBytes} bytes (settings.maxStdinBytes)`));
        chunks.push(b);
      };
      const onEnd = () => finish(null);
      const onError = (err: Error) => finish(refuse(`reading stdin failed: ${err.message}`));
      const onAbort = () => finish(signal?.reason instanceof Error ? signal.reason : new PaddockError("unavailable", "exec aborted"));
      const timer = setTimeout(() => finish(refuse(`stdin did not end within ${stdinTimeoutMs} ms (settings.stdinTimeoutMs)`)), stdinTimeoutMs);
      input.on("data", onData).once("end", onEnd).once("error", onError);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (signal?.aborted) onAbort();
      else if (input.readableEnded) finish(null);
    });
  }

  async writeFile(id: string, path: string, data: Uint8Array, o: { mode?: number } = {}): Promise<void> {
    const { sandbox } = this.get(id);
    const p = absolute(path);
    try {
      await sandbox.fs.uploadFile(Buffer.from(data), p);
      if (o.mode !== undefined) await sandbox.fs.setFilePermissions(p, { mode: (o.mode & 0o7777).toString(8).padStart(3, "0") });
    } catch (err) {
      throw this.error(err, `write ${p} in sandbox ${id}`);
    }
  }

  async readFile(id: string, path: string): Promise<Buffer> {
    const { sandbox } = this.get(id);
    const p = absolute(path);
    try {
      return await sandbox.fs.downloadFile(p);
    } catch (err) {
      throw this.error(err, `read ${p} in sandbox ${id}`);
    }
  }

  async listDir(id: string, path: string): Promise<FileEntry[]> {
    const { sandbox } = this.get(id);
    const p = absolute(path);
    try {
      const files = await sandbox.fs.listFiles(p);
      return files.map((f) => ({
        name: f.name,
        type: f.isDir ? "dir" : f.mode.startsWith("l") ? "symlink" : f.mode.startsWith("-") ? "file" : "other",
        size: f.size,
        mode: parseInt(f.permissions, 8) & 0o777,
        mtime: new Date(f.modTime).toISOString(),
      }));
    } catch (err) {
      throw this.error(err, `list ${p} in sandbox ${id}`);
    }
  }

  async stop(id: string): Promise<boolean> {
    const live = this.live.get(id);
    if (!live) return false;
    this.live.delete(id);
    try {
      await live.sandbox.delete();
    } catch (err) {
      if (!(err instanceof DaytonaError && err.statusCode === 404)) throw this.error(err, `delete sandbox ${id}`);
    }
    return true;
  }

  /** Ends the commands this provider started (their Daytona sessions); Daytona has no "signal every process" call, so `signal` is not chosen. */
  async killProcesses(id: string): Promise<number> {
    const live = this.get(id);
    const ends = [...live.running.values()];
    await Promise.all(ends.map((end) => end()));
    return ends.length;
  }

  async guardDenials(): Promise<GuardDenial[]> {
    return [];
  }

  async snapshot(): Promise<{ frozenMs: number }> {
    throw unsupported(this, "snapshot a sandbox", "run this environment on a provider with snapshots (local, ec2)");
  }

  async removeSnapshot(): Promise<boolean> {
    throw unsupported(this, "snapshot a sandbox");
  }

  async setEnv(id: string, env: Record<string, string>): Promise<Record<string, unknown>> {
    const live = this.get(id);
    live.env = { ...live.env, ...env };
    return { daytonaId: live.sandbox.id, env: live.env };
  }

  /** No services are supervised here (a spec with services is refused), so a sandbox has none. */
  async services(id: string): Promise<ServiceStatus[]> {
    this.get(id);
    return [];
  }

  async waitForServices(id: string): Promise<ServiceStatus[]> {
    this.get(id);
    return [];
  }

  /**
   * A signed preview URL (the token is part of it, so the preview gateway needs no header) that
   * expires after `previewTtlSeconds`. Paddock's preview gateway stays in front of it: that is where
   * invariant 8 (unguessable, expiring, revocable, RBAC) is kept.
   */
  async portUrl(id: string, port: number): Promise<string> {
    const { sandbox } = this.get(id);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`bad port ${port}`);
    try {
      return (await sandbox.getSignedPreviewUrl(port, this.settings.previewTtlSeconds)).url;
    } catch (err) {
      throw this.error(err, `preview port ${port} of sandbox ${id}`);
    }
  }

  async health(): Promise<ProviderHealth> {
    const t0 = performance.now();
    try {
      await this.client.list({ limit: 1 }).next();
      return { ok: true, detail: `${this.live.size} sandbox${this.live.size === 1 ? "" : "es"} running`, latencyMs: performance.now() - t0 };
    } catch (err) {
      return { ok: false, detail: this.error(err, "list sandboxes").message, latencyMs: performance.now() - t0 };
    }
  }

  async list(): Promise<string[]> {
    return [...this.live.keys()].sort();
  }

  async close(): Promise<void> {
    // Sandboxes outlive the control plane (invariant 9); only the client's resources go.
    this.live.clear();
    await this.client[Symbol.asyncDispose]();
  }

  private get(id: string): LiveSandbox {
    const live = this.live.get(id);
    if (!live) throw notFound("session", id);
    return live;
  }

  /** A Daytona failure as a PaddockError: its status decides the code; its message (never a credential) is kept. */
  private error(err: unknown, what: string): Error {
    if (err instanceof PaddockError) return err;
    const message = `daytona provider ${JSON.stringify(this.name)}: ${what}: ${excerpt(err instanceof Error ? err.message : String(err), 300)}`;
    const status = err instanceof DaytonaError ? err.statusCode : undefined;
    const code = status === 404 ? "not_found" : status === 400 || status === 422 ? "invalid_argument" : status === 409 ? "conflict" : status === 401 ? "unauthorized" : status === 403 ? "forbidden" : "unavailable";
    if (code === "unavailable") this.log(message);
    return new PaddockError(code, message, { provider: this.name, ...(status ? { status } : {}) }, { cause: err });
  }
}

/**
 * The gateway's proxy listener as Daytona allow-list entries: IPv4 /32s (Daytona's list takes IPv4
 * CIDRs only, and no ports: every port of those addresses is reachable, and nothing else).
 */
async function allowCidrs(egress: RemoteEgressAttachment): Promise<string[]> {
  const cidrs = new Set<string>();
  for (const { host } of egress.allow) {
    const addresses = isIPv4(host) ? [host] : (await lookup(host, { all: true, family: 4 })).map((a) => a.address);
    for (const a of addresses) cidrs.add(`${a}/32`);
  }
  if (cidrs.size === 0) throw new PaddockError("unavailable", "the egress gateway has no IPv4 address a Daytona allow list can name");
  if (cidrs.size > MAX_ALLOW_CIDRS) throw new PaddockError("unavailable", `the egress gateway has ${cidrs.size} addresses; a Daytona allow list takes at most ${MAX_ALLOW_CIDRS}`);
  return [...cidrs];
}

function egressFilePath(path: string): string {
  if (!path.startsWith("/") || /[\0\n]/.test(path)) throw invalid(`bad egress file path ${JSON.stringify(path)}: want an absolute path`);
  return `${EGRESS_DIR}/${createHash("sha256").update(path).digest("hex").slice(0, 16)}`;
}

function absolute(path: string): string {
  if (path.includes("\0")) throw invalid("path contains a NUL byte");
  return path.startsWith("/") ? path : `${WORKSPACE}/${path}`;
}
