/**
 * Sessions on E2B (https://e2b.dev) through its official SDK (`e2b` 2.51): a Paddock sandbox is
 * an E2B sandbox, found again by its metadata (`paddockInstance`, `paddockSession`).
 *
 * - Template: a recipe with a prebuilt E2B template in `settings.templates` starts from it;
 *   otherwise from `settings.defaultTemplate`, and its install steps run at create, as root in
 *   `/`, every time (nothing is cached: an E2B template built here could not be kept in step with
 *   the recipe's id without E2B's template builds, which this provider does not drive).
 * - Egress: E2B's network controls deny all traffic but the hosts of
 *   `RemoteEgressAttachment.allow` (Paddock's gateway; see `egressSettings`); the attachment's
 *   proxy variables go into the sandbox's environment and its files (the gateway's CA) are
 *   written before any command runs, so secrets are swapped by Paddock's gateway, never by E2B.
 *   Without `remoteEgress`: `allowInternetAccess: false`. E2B filters by address, not port: every
 *   port of the gateway's address is reachable, and only its proxy listener answers with
 *   anything but a refusal.
 * - Snapshots are E2B's (createSnapshot, then a sandbox created from the snapshot's name).
 * - Not offered (each refused with `unsupported`, never ignored): the local layer store and build
 *   sandboxes, the exec guard, services, host mounts, gVisor. E2B decides
 *   CPU, memory and disk by template: `compute` is not applied; `hostname` neither.
 */
import { Sandbox, type ConnectionOpts, type EntryInfo } from "e2b";
import { createHash } from "node:crypto";
import type {
  ExecOptions, ExecResult, FileEntry, FileEvent, FileInfo, FileWatch, GuardDenial, Provider, ProviderCapabilities, ProviderDeps, ProviderHealth,
  RemoteEgressAttachment, SandboxHandle, SandboxSpec, ServiceStatus, StopOptions,
} from "../../core/index.ts";
import { PaddockError, conflict, invalid, notFound, unsupported } from "../../core/index.ts";
import { fromE2b, isFileNotFound } from "./errors.ts";
import { egressSettings, refuseUnsupported, snapshotName } from "./spec.ts";
import { execIn, shellJoin } from "./exec.ts";
import { fileEntryOf, fileInfoOf, treeOrder } from "./files.ts";
import type { E2bSettings } from "./settings.ts";

/** One sandbox this instance runs: the SDK's handle, and what `setEnv` added for later commands. */
interface Live {
  sandbox: Sandbox;
  sandboxId: string;
  template: string;
  env: Record<string, string>;
}

const ROOT = "root";
/** How long killProcesses waits for envd to see SIGKILLed processes gone. */
const KILL_WAIT_MS = 30_000;
/** Ids remembered as stopped (oldest forgotten first). */
const MAX_STOPPED = 10_000;

export class E2bProvider implements Provider {
  readonly capabilities: ProviderCapabilities = {
    kind: "e2b", selfHosted: false, layers: false, network: "proxy", snapshot: true, execGuard: false,
    // "namespaces" is the default tier (no user-space kernel asked for): E2B runs every sandbox in
    // a Firecracker microVM of its own, which is at least that. gVisor is not offered.
    services: false, fileOps: true, ports: true, warmPool: false, isolation: ["namespaces"],
  };

  private readonly live = new Map<string, Live>();
  /** Paused through `pause` (this instance): id → sandbox, for `resume`. */
  private readonly paused = new Map<string, Live>();
  /** Ids this instance stopped: never looked up again (E2B's listing may lag behind a kill). */
  private readonly stopped = new Set<string>();
  /** Tells this installation's sandboxes of this instance from any other user of the same E2B account. */
  private readonly instanceKey: string;

  constructor(
    readonly name: string,
    private readonly settings: E2bSettings,
    private readonly apiKey: string,
    private readonly deps: ProviderDeps,
  ) {
    this.instanceKey = createHash("sha256").update(`${deps.home}\0${name}`).digest("hex").slice(0, 16);
  }

  /** Every SDK call names its endpoint and key explicitly: nothing is read from E2B_* variables. */
  private conn(): ConnectionOpts {
    const { domain, apiUrl, sandboxUrl, requestTimeoutMs } = this.settings;
    return { apiKey: this.apiKey, domain, requestTimeoutMs, ...(apiUrl ? { apiUrl } : {}), ...(sandboxUrl ? { sandboxUrl } : {}) };
  }

  private fail(what: string, err: unknown): PaddockError {
    return fromE2b(this.name, what, err);
  }

  async health(): Promise<ProviderHealth> {
    const started = Date.now();
    try {
      await Sandbox.list({ ...this.conn(), limit: 1 }).nextItems();
      return { ok: true, detail: `E2B API at ${this.settings.apiUrl ?? `https://api.${this.settings.domain}`} answered`, latencyMs: Date.now() - started };
    } catch (err) {
      return { ok: false, detail: this.fail("list sandboxes (health check)", err).message, latencyMs: Date.now() - started };
    }
  }

  async create(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    refuseUnsupported(this, spec, this.settings.user);
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(spec.id)) throw invalid(`bad sandbox id ${JSON.stringify(spec.id.slice(0, 80))}`);
    if (this.live.has(spec.id) || this.paused.has(spec.id) || (await this.findRunning(spec.id))) throw conflict(`sandbox ${spec.id} already exists`);
    // A snapshot already holds what the recipe's steps made; a prebuilt template too.
    const mapped = spec.from ? snapshotName(spec.from) : spec.recipe ? this.settings.templates[spec.recipe.templateId] : undefined;
    const template = mapped ?? this.settings.defaultTemplate;
    const attachment = spec.remoteEgress ? await spec.remoteEgress() : null;
    const egress = egressSettings(this.name, attachment);
    const env = { ...spec.env, ...attachment?.env };
    let sandbox: Sandbox;
    try {
      sandbox = await Sandbox.create(template, {
        ...this.conn(), metadata: { paddockInstance: this.instanceKey, paddockSession: spec.id, paddockProvider: this.name }, envs: env,
        timeoutMs: this.settings.timeoutMs, ...egress, ...(signal ? { signal } : {}),
      });
    } catch (err) {
      // E2B may have made the sandbox before its answer was lost (a dropped connection, a request
      // timeout, an abort): found by its metadata and killed, so nothing is left running and billed.
      await this.killUnanswered(spec.id);
      if (signal?.aborted) throw signal.reason;
      throw this.fail(`create a sandbox from template ${JSON.stringify(template)}`, err);
    }
    try {
      await this.prepare(sandbox, attachment, mapped ? [] : (spec.recipe?.steps ?? []), template);
      if (signal?.aborted) throw signal.reason;
    } catch (err) {
      // Nothing half-made is left running (and billed) at E2B.
      await sandbox.kill().catch(() => undefined);
      throw err;
    }
    this.live.set(spec.id, { sandbox, sandboxId: sandbox.sandboxId, template, env: {} });
    this.stopped.delete(spec.id);
    return { id: spec.id, providerState: { sandboxId: sandbox.sandboxId, template } };
  }

  /**
   * Before any command of the session: the gateway's files, `/workspace`, then the recipe's
   * install steps as root in `/`.
   */
  private async prepare(sandbox: Sandbox, attachment: RemoteEgressAttachment | null, steps: string[], template: string): Promise<void> {
    const user = this.settings.user;
    for (const f of attachment?.files ?? []) {
      // The CA bundle and the like are system files (root's, which the session cannot change);
      // anything under the user's home or /tmp is the user's.
      const owner = f.path.startsWith(`/home/${user}/`) || f.path.startsWith("/tmp/") ? user : ROOT;
      await sandbox.files.write(f.path, f.content, { user: owner }).catch((err: unknown) => {
        throw this.fail(`write ${f.path} (egress attachment) as ${owner}`, err);
      });
    }
    if (!(await sandbox.files.exists("/workspace", { user }).catch((e: unknown) => Promise.reject(this.fail("look for /workspace", e))))) {
      await this.runAsRoot(sandbox, `mkdir -p /workspace && chown ${shellJoin([`${user}:`])} /workspace`, "create /workspace");
    }
    for (const [i, step] of steps.entries()) await this.runAsRoot(sandbox, step, `install step ${i + 1} of ${steps.length} (template ${template})`);
  }

  private async runAsRoot(sandbox: Sandbox, command: string, what: string): Promise<void> {
    let stderr = "";
    const result = await execIn({ provider: this.name, what, sandbox, user: ROOT, env: {} }, { argv: ["/bin/sh", "-c", command], cwd: "/", onStderr: (c) => (stderr = (stderr + c.toString()).slice(-2000)) });
    if (result.exitCode !== 0) throw invalid(`provider ${JSON.stringify(this.name)} (e2b): ${what} failed with exit code ${result.exitCode}: ${stderr.trim().slice(-500)}`, { provider: this.name });
  }

  /** The running sandbox of `id`: known here, or found by its metadata (after a restart). */
  private async get(id: string): Promise<Live> {
    const known = this.live.get(id);
    if (known) return known;
    if (this.paused.has(id)) throw conflict(`sandbox ${id} is paused: resume it first`);
    const found = this.stopped.has(id) ? null : await this.findRunning(id);
    if (!found) throw notFound("sandbox", id);
    let sandbox: Sandbox;
    try {
      sandbox = await Sandbox.connect(found, this.conn());
    } catch (err) {
      throw this.fail(`connect to sandbox ${id}`, err);
    }
    const live: Live = { sandbox, sandboxId: found, template: "", env: {} };
    this.live.set(id, live);
    return live;
  }

  /** Kills this instance's sandbox for `id` that a failed create may have left at E2B (best effort: E2B may be unreachable too). */
  private async killUnanswered(id: string): Promise<void> {
    try {
      const items = await Sandbox.list({ ...this.conn(), query: { metadata: { paddockInstance: this.instanceKey, paddockSession: id }, state: ["running", "paused"] }, limit: 10 }).nextItems();
      for (const s of items) await Sandbox.kill(s.sandboxId, this.conn()).catch(() => false);
    } catch {
      // Nothing to find, or E2B unreachable: `list` and `recover` still name the sandbox by its metadata.
    }
  }

  /** The E2B id of this instance's running sandbox for `id`, if there is one. */
  private async findRunning(id: string): Promise<string | null> {
    try {
      const items = await Sandbox.list({ ...this.conn(), query: { metadata: { paddockInstance: this.instanceKey, paddockSession: id }, state: ["running"] }, limit: 1 }).nextItems();
      return items[0]?.sandboxId ?? null;
    } catch (err) {
      throw this.fail(`look up sandbox ${id}`, err);
    }
  }

  async recover(id: string, providerState: Record<string, unknown>): Promise<"running" | "gone"> {
    const sandboxId = typeof providerState.sandboxId === "string" ? providerState.sandboxId : null;
    this.live.delete(id);
    if (!sandboxId) return "gone";
    let info;
    try {
      info = await Sandbox.getInfo(sandboxId, this.conn());
    } catch (err) {
      const e = this.fail(`recover sandbox ${id}`, err);
      if (e.code === "not_found") return "gone";
      throw e;
    }
    // Only ever this instance's sandbox for this id: another's is neither claimed nor killed.
    if (info.metadata.paddockInstance !== this.instanceKey || info.metadata.paddockSession !== id) return "gone";
    if (info.state !== "running") {
      // A paused sandbox nothing will resume (Paddock does not pause on its own): released.
      await Sandbox.kill(sandboxId, this.conn()).catch(() => undefined);
      return "gone";
    }
    try {
      const sandbox = await Sandbox.connect(sandboxId, this.conn());
      const env = isStringRecord(providerState.env) ? providerState.env : {};
      this.live.set(id, { sandbox, sandboxId, template: typeof providerState.template === "string" ? providerState.template : "", env });
      this.stopped.delete(id);
      return "running";
    } catch (err) {
      throw this.fail(`reconnect to sandbox ${id}`, err);
    }
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    const s = await this.get(id);
    return execIn({ provider: this.name, sandbox: s.sandbox, user: this.settings.user, env: s.env }, opts);
  }

  async writeFile(id: string, path: string, data: Uint8Array, opts?: { mode?: number }): Promise<void> {
    const s = await this.get(id);
    const user = this.settings.user;
    try {
      await s.sandbox.files.write(path, new Blob([Buffer.from(data.buffer, data.byteOffset, data.byteLength)]), { user });
    } catch (err) {
      throw this.fail(`write ${path}`, err);
    }
    if (opts?.mode === undefined) return;
    // envd's upload has no mode: set it after, as the file's owner.
    const r = await execIn({ provider: this.name, sandbox: s.sandbox, user, env: {} }, { argv: ["chmod", (opts.mode & 0o7777).toString(8), "--", path], cwd: "/" });
    if (r.exitCode !== 0) throw new PaddockError("internal", `provider ${JSON.stringify(this.name)} (e2b): chmod of ${path} failed with exit code ${r.exitCode}`);
  }

  async readFile(id: string, path: string): Promise<Buffer> {
    const s = await this.get(id);
    try {
      return Buffer.from(await s.sandbox.files.read(path, { format: "bytes", user: this.settings.user }));
    } catch (err) {
      throw this.fail(`read ${path}`, err);
    }
  }

  async listDir(id: string, path: string): Promise<FileEntry[]> {
    return (await this.entries(id, path, 1)).map(fileEntryOf);
  }

  private async entries(id: string, path: string, depth: number): Promise<EntryInfo[]> {
    const s = await this.get(id);
    try {
      return await s.sandbox.files.list(path, { user: this.settings.user, depth });
    } catch (err) {
      throw this.fail(`list ${path}`, err);
    }
  }

  async statFile(id: string, path: string): Promise<FileInfo> {
    const s = await this.get(id);
    try {
      return fileInfoOf(await s.sandbox.files.getInfo(path, { user: this.settings.user }));
    } catch (err) {
      throw this.fail(`stat ${path}`, err);
    }
  }

  async listTree(id: string, path: string, depth: number): Promise<FileInfo[]> {
    return (await this.entries(id, path, depth)).map(fileInfoOf).sort(treeOrder);
  }

  async makeDir(id: string, path: string): Promise<boolean> {
    const s = await this.get(id);
    return s.sandbox.files.makeDir(path, { user: this.settings.user }).catch((err: unknown) => Promise.reject(this.fail(`make directory ${path}`, err)));
  }

  async moveFile(id: string, from: string, to: string): Promise<void> {
    const s = await this.get(id);
    await s.sandbox.files.rename(from, to, { user: this.settings.user }).catch((err: unknown) => Promise.reject(this.fail(`move ${from} to ${to}`, err)));
  }

  async removeFile(id: string, path: string): Promise<boolean> {
    const s = await this.get(id);
    const user = this.settings.user;
    try {
      // envd's Remove of nothing succeeds; the contract wants to know whether there was anything.
      await s.sandbox.files.getInfo(path, { user });
    } catch (err) {
      if (isFileNotFound(err)) return false;
      throw this.fail(`stat ${path}`, err);
    }
    await s.sandbox.files.remove(path, { user }).catch((err: unknown) => Promise.reject(this.fail(`remove ${path}`, err)));
    return true;
  }

  async watchDir(id: string, path: string, opts: { recursive: boolean; onEvent: (event: FileEvent) => void }): Promise<FileWatch> {
    const s = await this.get(id);
    let settle: { resolve: () => void; reject: (err: unknown) => void } = { resolve: () => undefined, reject: () => undefined };
    const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    done.catch(() => undefined);
    try {
      const handle = await s.sandbox.files.watchDir(path, (ev) => opts.onEvent({ type: ev.type as FileEvent["type"], name: ev.name }), {
        user: this.settings.user, recursive: opts.recursive, timeoutMs: 0,
        onExit: (err) => (err ? settle.reject(this.fail(`watch ${path}`, err)) : settle.resolve()),
      });
      return {
        done,
        close: () => void handle.stop().finally(() => settle.resolve()),
      };
    } catch (err) {
      throw this.fail(`watch ${path}`, err);
    }
  }

  async stop(id: string, opts?: StopOptions): Promise<boolean> {
    if (opts?.commitAs) throw unsupported(this, "commit a sandbox's writes as a layer (stop with commitAs)");
    const paused = this.paused.get(id);
    const sandboxId = this.live.get(id)?.sandboxId ?? paused?.sandboxId ?? (this.stopped.has(id) ? null : await this.findRunning(id));
    this.live.delete(id);
    this.paused.delete(id);
    this.stopped.add(id);
    if (this.stopped.size > MAX_STOPPED) this.stopped.delete(this.stopped.values().next().value ?? id);
    if (!sandboxId) return false;
    try {
      return await Sandbox.kill(sandboxId, this.conn());
    } catch (err) {
      throw this.fail(`kill sandbox ${id}`, err);
    }
  }

  /** E2B can list the processes envd started and SIGKILL them; it sends no other signal. */
  async killProcesses(id: string, signal: NodeJS.Signals = "SIGKILL"): Promise<number> {
    if (signal !== "SIGKILL") throw unsupported(this, `send ${signal} to a sandbox's processes`, "E2B's process API sends SIGKILL only");
    const s = await this.get(id);
    try {
      const killed = new Set<number>();
      for (const p of await s.sandbox.commands.list()) if (await s.sandbox.commands.kill(p.pid)) killed.add(p.pid);
      // Resolves once they are gone (as the contract asks for SIGKILL), or after KILL_WAIT_MS.
      for (let wait = 5, deadline = Date.now() + KILL_WAIT_MS; killed.size > 0 && Date.now() < deadline; wait = Math.min(wait * 2, 200)) {
        const left = (await s.sandbox.commands.list()).filter((p) => killed.has(p.pid));
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, wait));
      }
      return killed.size;
    } catch (err) {
      throw this.fail(`kill the processes of sandbox ${id}`, err);
    }
  }

  async guardDenials(): Promise<GuardDenial[]> {
    return [];
  }

  /**
   * E2B's createSnapshot, named after `layerId` (`snapshotName`): E2B pauses the sandbox while it
   * captures it, then it goes on. `frozenMs` is the whole call's time: E2B does not say how long
   * the sandbox itself was paused, so this is an upper bound.
   */
  async snapshot(id: string, layerId: string): Promise<{ frozenMs: number }> {
    const name = snapshotName(layerId);
    const s = await this.get(id);
    const started = Date.now();
    try {
      await s.sandbox.createSnapshot({ name });
    } catch (err) {
      throw this.fail(`snapshot sandbox ${id} as ${name}`, err);
    }
    return { frozenMs: Date.now() - started };
  }

  /** E2B's deleteSnapshot. False when E2B has none of that name. */
  async removeSnapshot(layerId: string): Promise<boolean> {
    const name = snapshotName(layerId);
    try {
      return await Sandbox.deleteSnapshot(name, this.conn());
    } catch (err) {
      throw this.fail(`remove snapshot ${name}`, err);
    }
  }

  async setEnv(id: string, env: Record<string, string>): Promise<Record<string, unknown>> {
    const s = await this.get(id);
    s.env = { ...s.env, ...env };
    return { sandboxId: s.sandboxId, template: s.template, env: s.env };
  }

  async services(id: string): Promise<ServiceStatus[]> {
    await this.get(id);
    return [];
  }

  async waitForServices(id: string): Promise<ServiceStatus[]> {
    return this.services(id);
  }

  async portUrl(id: string, port: number): Promise<string> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`bad port ${port}: 1–65535`);
    return `https://${(await this.get(id)).sandbox.getHost(port)}`;
  }

  /**
   * E2B's pause (not part of the Provider contract): the sandbox stops taking calls until
   * `resume`. On E2B's cloud memory is kept; Paddock's own E2B front end keeps files only.
   * @returns false when E2B says it was already paused.
   */
  async pause(id: string): Promise<boolean> {
    const s = await this.get(id);
    try {
      const done = await s.sandbox.pause();
      this.live.delete(id);
      this.paused.set(id, s);
      return done;
    } catch (err) {
      throw this.fail(`pause sandbox ${id}`, err);
    }
  }

  /** Resume a sandbox this instance paused (E2B's connect), under the same ids. */
  async resume(id: string): Promise<void> {
    const s = this.paused.get(id);
    if (!s) throw notFound("paused sandbox", id);
    try {
      const sandbox = await Sandbox.connect(s.sandboxId, { ...this.conn(), timeoutMs: this.settings.timeoutMs });
      this.paused.delete(id);
      this.live.set(id, { ...s, sandbox });
    } catch (err) {
      throw this.fail(`resume sandbox ${id}`, err);
    }
  }

  async list(): Promise<string[]> {
    const out: string[] = [];
    try {
      const pager = Sandbox.list({ ...this.conn(), query: { metadata: { paddockInstance: this.instanceKey }, state: ["running"] }, limit: 100 });
      while (pager.hasNext) {
        for (const s of await pager.nextItems()) {
          const id = s.metadata.paddockSession;
          if (id && !this.stopped.has(id)) out.push(id);
        }
      }
    } catch (err) {
      throw this.fail("list sandboxes", err);
    }
    return out;
  }

  async close(): Promise<void> {
    this.live.clear();
    this.paused.clear();
  }
}

const isStringRecord = (v: unknown): v is Record<string, string> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === "string");
