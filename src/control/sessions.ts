import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import type { ExecGuard, ExecOptions, ExecResult, FileEntry, FileEvent, FileInfo, FileWatch, Principal, Provider, ServiceSpec, ServiceStatus, Session, SessionRoute, Snapshot, Store, Template } from "../core/index.ts";
import { PaddockError, invalid, notFound } from "../core/index.ts";
import type { Environments } from "./environments.ts";
import type { Egress, SnapshotRegistration } from "./egress.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import type { AuditLog } from "../guard/index.ts";
import type { Access } from "./access.ts";
import type { Pools } from "./pools.ts";
import { servicesOf } from "./services.ts";
import { SessionRouting, type StartRoute } from "./session-routing.ts";
import { Router, defaultStrategy, scrubUrlCredentials, unconfigured, type LatencyClass, type RouteDecision, type RouteRequest } from "./routing/index.ts";

/**
 * How long a start waits for the sandbox's services to be ready before it fails: every service's
 * ready deadline for each start its restart limit allows, plus back-off, within `compute.timeout`.
 * The provider answers sooner when a service fails for good.
 */
export function servicesTimeoutMs(spec: EnvironmentSpec, services: ServiceSpec[]): number {
  const total = services.reduce((sum, s) => sum + (s.readyTimeoutMs ?? 60_000) * (s.restartLimit + 1) + 10_000 * s.restartLimit, 0);
  return Math.min(spec.compute.timeoutMs, total + 30_000);
}

/** A fresh session (and pool member) id: the sandbox id, the cgroup name, the layer key's suffix. */
export function newSessionId(): string {
  return `s-${randomBytes(8).toString("hex")}`;
}

/** What a session start names: the human it runs for, the agent acting in it, where it starts from. */
export interface StartOptions {
  startedBy: string;
  agent?: string | null;
  /** A snapshot id or name: start from it (same environment and version) instead of the current template. */
  from?: string;
  /**
   * The session user's name and home instead of `paddock` and /home/paddock (same uid): the E2B
   * front end asks for `user` and /home/user. Such a start never claims a pool member (its
   * /etc/passwd was written for the default user).
   */
  user?: { name: string; home: string };
  /** Variables every command in the session starts with (E2B's envVars); never PADDOCK_*. */
  env?: Record<string, string>;
  /** Routing's latency class (docs/routing.md): "interactive" prefers warm pools; default "batch". */
  latency?: LatencyClass;
}

/**
 * Sessions: start one from an environment's current template on the provider its file prefers,
 * run commands and file operations in it, end it on request or at `compute.timeout`, and find the
 * running ones again after a restart.
 */
export class Sessions {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** How many of each session's in-sandbox guard denials are already in the audit log. */
  private readonly guardAudited = new Map<string, number>();

  constructor(
    private readonly deps: {
      store: Store;
      providers: Map<string, Provider>;
      environments: Environments;
      egress: Egress | null;
      audit: AuditLog;
      access: Access;
      log: (line: string) => void;
      /** Warm pools to claim from; none: every start is a fresh sandbox. */
      pools?: Pools;
      /** Called when a session ends (garbage collection may have work). */
      onEnded?: () => void;
      /** Called before a running session is stopped (previews snapshot it first); a failure is logged, the stop goes on. */
      beforeStop?: (s: Session) => Promise<void>;
      /** Chooses providers (docs/routing.md); absent: the default strategy over `providers`. */
      router?: Router;
      /** Removes provider credentials from text before it is stored or shown (the registry's). */
      scrub?: (text: string) => string;
    },
  ) {
    this.router = deps.router ?? new Router({ providers: deps.providers, routingOf: () => ({}), strategy: defaultStrategy });
    this.routing = new SessionRouting({ store: deps.store, router: this.router, providers: deps.providers, audit: deps.audit, log: deps.log, ...(deps.scrub ? { scrub: deps.scrub } : {}) });
  }

  private readonly router: Router;
  private readonly routing: SessionRouting;

  /** The provider this environment's warm pool keeps ready members on, when it may have some (routing's latency factor). */
  private pooledOn(environment: string, version: number, spec: EnvironmentSpec): { pooledOn?: string } {
    if (!this.deps.pools?.mayHaveReady(environment, version)) return {};
    try {
      return { pooledOn: chooseProvider(this.deps.providers, environment, spec.providers, { selfHostedOnly: spec.compliance.selfHostedOnly }).name };
    } catch {
      return {};
    }
  }

  /**
   * Where a session of `environment` would run now and why (`paddock route explain`): the
   * decision for its current version, every candidate with every factor. Starts nothing.
   */
  async explain(environment: string, o: { latency?: LatencyClass } = {}): Promise<{ request: RouteRequest; decision: RouteDecision }> {
    const current = await this.deps.environments.current(environment);
    const request = this.routing.request(environment, current.spec, { ...o, ...this.pooledOn(environment, current.version.version, current.spec) });
    return { request, decision: await this.router.decide(request) };
  }

  /** How a session's provider was chosen, its skips and costs; null for sessions without a record. */
  route(id: string): Promise<SessionRoute | null> {
    return this.deps.store.getSessionRoute(id);
  }

  /**
   * Start a session of `environment`: from a ready pool member of its current version when there
   * is one (claimed and bound to its principal before this resolves), else a fresh sandbox. With
   * `from`, from that snapshot instead: `environment` (when given) must be the snapshot's.
   * `startedBy`: the human the session runs for; `agent`: the agent principal acting in it, if any.
   */
  async start(environment: string | null, opts: StartOptions): Promise<Session> {
    if (opts.from !== undefined) return this.startFrom(opts.from, environment, opts);
    if (environment === null) throw invalid("name the environment to start a session of, or a snapshot to start from");
    const current = await this.deps.environments.current(environment);
    try {
      const claimed = opts.user || opts.env ? null : await this.claim(environment, current, opts);
      if (claimed) return claimed;
      return await this.create(environment, current, opts);
    } finally {
      this.deps.pools?.demand(environment);
    }
  }

  /** A snapshot by id (`snap-…`) or name; rejects `not_found`. */
  async snapshot(ref: string): Promise<Snapshot> {
    const snap = ref.startsWith("snap-") ? await this.deps.store.getSnapshot(ref) : await this.deps.store.getSnapshotByName(ref);
    if (!snap) throw notFound("snapshot", ref);
    return snap;
  }

  /**
   * A session from a snapshot: its environment version and template, its captured writable layer
   * (copy-on-write), and its source's placeholders and CA for the secrets the version binds.
   */
  private async startFrom(ref: string, environment: string | null, opts: StartOptions): Promise<Session> {
    const snap = await this.snapshot(ref);
    if (environment !== null && environment !== snap.environment) {
      throw invalid(`snapshot ${snap.id} is of environment ${JSON.stringify(snap.environment)}, not ${JSON.stringify(environment)}: a session starts from a snapshot of its own environment only`);
    }
    const v = await this.deps.access.versionSpec(snap.environment, snap.version);
    const template = await this.deps.store.getTemplate(snap.templateId);
    if (!v || !template) throw new PaddockError("not_found", `snapshot ${snap.id}'s environment version ${snap.environment} v${snap.version} or its template is gone`);
    const provider = this.deps.providers.get(snap.provider);
    if (!provider) throw new PaddockError("unavailable", `provider ${JSON.stringify(snap.provider)} of snapshot ${snap.id} is not configured`);
    // Fails closed, as for a claimed pool member: a snapshot taken on a third-party provider before
    // the file said selfHostedOnly never starts a session there (nor does one whose version says so).
    if (!provider.capabilities.selfHosted) {
      const current = await this.deps.environments.current(snap.environment).catch(() => null);
      if (v.spec.compliance.selfHostedOnly || current?.spec.compliance.selfHostedOnly !== false) {
        throw new PaddockError("forbidden", `snapshot ${snap.id} lives on third-party provider ${provider.name}, and ${snap.environment} has compliance.selfHostedOnly (or its current version could not be read): start a fresh session of it instead`);
      }
    }
    const restore = this.deps.egress ? await this.deps.egress.snapshotRegistration(snap.id) : null;
    return this.create(snap.environment, { version: { version: snap.version, fileName: v.fileName }, spec: v.spec, template }, opts, { snap, provider, restore });
  }

  /** A fresh sandbox for a new session (from the template, or from a snapshot's layer). */
  private async create(
    environment: string,
    current: { version: { version: number; fileName: string }; spec: EnvironmentSpec; template: Template },
    opts: StartOptions,
    from?: { snap: Snapshot; provider: Provider; restore: SnapshotRegistration | null },
  ): Promise<Session> {
    const { version, spec, template } = current;
    // Routed (docs/routing.md) unless it starts from a snapshot, which lives on its own provider.
    const route: StartRoute | null = from ? null : await this.routing.decide(this.routing.request(environment, spec, opts.latency ? { latency: opts.latency } : {}));
    let provider = from?.provider ?? this.firstRouted(route);
    const now = new Date();
    const session: Session = {
      id: newSessionId(),
      environment,
      version: version.version,
      templateId: template.id,
      provider: provider.name,
      state: "starting",
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + spec.compute.timeoutMs).toISOString(),
      endedAt: null,
      endReason: null,
      providerState: {},
      startedBy: opts.startedBy,
      agent: opts.agent ?? null,
      snapshot: from?.snap.id ?? null,
    };
    const guard = execGuardOf(spec, version.fileName);
    const noPush = await this.protectedBranchesFor(session, spec);
    const services = servicesOf(spec);
    // Inserted only while the snapshot exists (one transaction): it cannot be removed under us.
    await this.deps.store.createSession(session);
    await this.routing.record(session, spec, route, from ? `started from snapshot ${from.snap.id}, which lives on ${provider.name}` : "");
    // A create abandoned at its time limit must not register the session with the gateway after the
    // next attempt did (it would replace that attempt's registration): once its signal aborts its
    // egress hook refuses, and cleanup waits for a registration already under way before dropping it.
    const attaching = new Set<Promise<unknown>>();
    const guarded = <A extends unknown[], T>(signal: AbortSignal, hook: (...a: A) => Promise<T>) => (...a: A): Promise<T> => {
      if (signal.aborted) return Promise.reject(signal.reason as Error);
      const p = hook(...a);
      attaching.add(p);
      p.then(() => attaching.delete(p), () => attaching.delete(p));
      return p;
    };
    try {
      const create = (signal: AbortSignal) => provider.create({
        id: session.id,
        mode: "session",
        base: spec.base,
        layers: template.layers,
        recipe: { templateId: template.id, base: spec.base, steps: spec.install.map((s) => s.run) },
        compute: spec.compute,
        hostname: environment,
        env: { ...opts.env, PADDOCK_SESSION: session.id, PADDOCK_ENVIRONMENT: environment },
        // compute.isolation: a provider without the tier refuses the create (never runs it weaker).
        ...(spec.compute.isolation ? { isolation: spec.compute.isolation } : {}),
        ...(opts.user ? { sessionUser: opts.user } : {}),
        ...(guard ? { guard } : {}),
        ...(from ? { from: from.snap.layerId } : {}),
        ...(services.length ? { services } : {}),
        // Remote providers' sandboxes reach the gateway as an HTTPS proxy with a session credential.
        ...(this.deps.egress && provider.capabilities.network === "proxy"
          ? { remoteEgress: guarded(signal, this.deps.egress.forRemoteSession(session.id, environment, version.version, spec, version.fileName, noPush, from?.restore ?? undefined)) }
          : this.deps.egress
            ? { egress: guarded(signal, this.deps.egress.forSession(session.id, environment, version.version, spec, version.fileName, noPush, from?.restore ?? undefined)) }
            : {}),
      }, signal);
      // Failover: a provider whose create fails is cleaned up and skipped for the next in the decided order.
      const handle = route
        ? await this.routing.create(session, route, (p) => (provider = p), async (p) => {
          await p.stop(session.id).catch(() => undefined);
          await Promise.allSettled([...attaching]);
          await this.deps.egress?.detach(session.id).catch(() => undefined);
        }, create)
        : await this.routing.within(session, provider, create);
      // Recorded before the services are waited for, so a restart meanwhile finds the sandbox.
      await this.deps.store.updateSession(session.id, { providerState: handle.providerState });
      if (services.length) await provider.waitForServices(session.id, servicesTimeoutMs(spec, services));
      const running = await this.deps.store.updateSession(session.id, { state: "running" });
      this.armTimeout(running);
      return running;
    } catch (err) {
      await provider.stop(session.id).catch(() => undefined);
      await Promise.allSettled([...attaching]);
      await this.deps.egress?.detach(session.id).catch(() => undefined);
      const message = this.scrub(err instanceof Error ? err.message : String(err));
      const failed = await this.deps.store.updateSession(session.id, { state: "failed", endedAt: new Date().toISOString(), endReason: `failed to start: ${message}` });
      await this.routing.finish(failed).catch(() => undefined);
      // A provider's error may quote a credential it was given: what leaves here never does.
      if (err instanceof Error && message !== err.message) throw new PaddockError(err instanceof PaddockError ? err.code : "unavailable", message);
      throw err;
    }
  }

  /** The decided order's first provider (the start fails over along the rest). */
  private firstRouted(route: StartRoute | null): Provider {
    const name = route?.decision.order[0];
    const p = name === undefined ? undefined : this.deps.providers.get(name);
    if (!p) throw new PaddockError("unavailable", `provider ${JSON.stringify(name ?? "")} was chosen but is no longer configured; start again`);
    return p;
  }

  /** A provider's error may quote a credential it was given, or the session's proxy URL: neither is stored, audited or returned. */
  private scrub(text: string): string {
    const out = scrubUrlCredentials(text);
    return this.deps.scrub ? this.deps.scrub(out) : out;
  }

  /**
   * Take a ready pool member of the current version, if any, and make it this session before
   * anything of the caller's runs in it: the store moves it into sessions (`starting`) atomically,
   * so no one else can claim it; the gateway registers it again with its secrets and principal;
   * the sandbox gets its placeholders; only then is the session `running`. A claim that fails half
   * way ends that sandbox (it is never handed to anyone) and the caller starts a fresh one.
   */
  private async claim(
    environment: string,
    current: { version: { version: number; fileName: string }; spec: EnvironmentSpec; template: Template },
    opts: StartOptions,
  ): Promise<Session | null> {
    if (!this.deps.pools?.mayHaveReady(environment, current.version.version)) return null;
    const { version, spec } = current;
    const now = new Date();
    const session = (m: { id: string; templateId: string; provider: string; providerState: Record<string, unknown> }): Session => ({
      id: m.id,
      environment,
      version: version.version,
      templateId: m.templateId,
      provider: m.provider,
      state: "starting",
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + spec.compute.timeoutMs).toISOString(),
      endedAt: null,
      endReason: null,
      providerState: m.providerState,
      startedBy: opts.startedBy,
      agent: opts.agent ?? null,
      snapshot: null,
    });
    // Decided before the claim (it depends on the principal only), to keep the claimed member's wait short.
    const noPush = await this.protectedBranchesFor(session({ id: "", templateId: current.template.id, provider: "", providerState: {} }), spec);
    const claimed = await this.deps.store.claimPoolMember({ environment, version: version.version }, session);
    if (!claimed) {
      this.deps.pools.noneReady(environment, version.version);
      return null;
    }
    this.deps.pools.claimed(environment);
    const provider = this.deps.providers.get(claimed.provider);
    try {
      if (!provider) throw new PaddockError("unavailable", `provider ${JSON.stringify(claimed.provider)} is not configured`);
      // Fails closed: a member made before the file said selfHostedOnly never serves it.
      if (spec.compliance.selfHostedOnly && !provider.capabilities.selfHosted) throw new PaddockError("forbidden", `pool member ${claimed.id} runs on third-party provider ${provider.name}, and ${environment} has compliance.selfHostedOnly`);
      let providerState = claimed.providerState;
      if (this.deps.egress) {
        const ip = claimed.providerState.sandboxIp;
        if (typeof ip !== "string") throw new PaddockError("internal", `pool member ${claimed.id} has no network address`);
        const placeholders = await this.deps.egress.claim(claimed.id, ip, environment, spec, version.fileName, noPush);
        providerState = await provider.setEnv(claimed.id, placeholders);
      }
      const running = await this.deps.store.updateSession(claimed.id, { state: "running", providerState });
      await this.routing.record(running, spec, null, `claimed a ready warm pool member on ${provider.name}`);
      this.armTimeout(running);
      return running;
    } catch (err) {
      const message = this.scrub(err instanceof Error ? err.message : String(err));
      this.deps.log(`claiming pool member ${claimed.id} of ${environment} failed (${message}); starting a fresh sandbox instead`);
      await provider?.stop(claimed.id).catch(() => undefined);
      await this.deps.egress?.detach(claimed.id).catch(() => undefined);
      await this.deps.store.updateSession(claimed.id, { state: "failed", endedAt: new Date().toISOString(), endReason: `failed to claim a pool member: ${message}` });
      return null;
    }
  }

  /** The state of a running session's services. */
  async services(id: string): Promise<ServiceStatus[]> {
    return (await this.running(id)).provider.services(id);
  }

  async get(id: string): Promise<Session> {
    const s = await this.deps.store.getSession(id);
    if (!s) throw notFound("session", id);
    return s;
  }

  list(filter?: { environment?: string; all?: boolean }): Promise<Session[]> {
    return this.deps.store.listSessions({
      ...(filter?.environment ? { environment: filter.environment } : {}),
      ...(filter?.all ? {} : { states: ["starting", "running"] }),
    });
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    return (await this.running(id)).provider.exec(id, opts);
  }

  /**
   * Copy the sandbox's exec-guard denials (programs the kernel refused to start inside it) into
   * the audit log, each once. `actor` is who ran the command that led to them.
   */
  async auditGuardDenials(session: Session, actor: Principal | null): Promise<number> {
    const provider = this.deps.providers.get(session.provider);
    if (!provider?.guardDenials) return 0;
    const denials = await provider.guardDenials(session.id);
    let done = this.guardAudited.get(session.id);
    if (done === undefined) {
      done = (await this.deps.audit.list({ sessionId: session.id })).filter((r) => r.action === "guard.exec").length;
    }
    const fresh = denials.slice(done);
    this.guardAudited.set(session.id, done + fresh.length);
    if (fresh.length === 0) return 0;
    await this.deps.audit.append(
      ...fresh.map((d) => ({
        time: d.time, actor: actor?.name ?? session.agent ?? session.startedBy, actorKind: actor?.kind ?? (session.agent ? ("agent" as const) : ("human" as const)),
        onBehalfOf: (actor?.kind ?? (session.agent ? "agent" : "human")) === "agent" ? session.startedBy : null,
        action: "guard.exec", target: d.path, environment: session.environment, sessionId: session.id, decision: "denied" as const,
        rule: "guardrails.commands.deny", detail: { program: d.program, path: d.path, pid: d.pid, reason: d.reason },
      })),
    );
    return fresh.length;
  }

  async writeFile(id: string, path: string, data: Uint8Array, mode?: number): Promise<void> {
    await (await this.running(id)).provider.writeFile(id, path, data, mode === undefined ? {} : { mode });
  }

  async readFile(id: string, path: string): Promise<Buffer> {
    return (await this.running(id)).provider.readFile(id, path);
  }

  async listDir(id: string, path: string): Promise<FileEntry[]> {
    return (await this.running(id)).provider.listDir(id, path);
  }

  /*
   * The file operations E2B's filesystem service needs (Provider's optional ones): done by the
   * provider as the session user, never by running a program, so a guardrail that denies `rm` or
   * `mv` neither blocks them nor is bypassed by them. A provider without one answers `unavailable`.
   */

  /** The file as a stream (bounded memory); falls back to `readFile` where the provider cannot stream. */
  async readFileStream(id: string, path: string): Promise<Readable> {
    const { provider } = await this.running(id);
    if (provider.readFileStream) return provider.readFileStream(id, path);
    return Readable.from([await provider.readFile(id, path)]);
  }

  /** Write a file from a stream (bounded memory); buffers it where the provider cannot stream. */
  async writeFileStream(id: string, path: string, data: Readable, mode?: number): Promise<void> {
    const { provider } = await this.running(id);
    const opts = mode === undefined ? {} : { mode };
    if (provider.writeFileStream) return provider.writeFileStream(id, path, data, opts);
    const chunks: Buffer[] = [];
    for await (const chunk of data) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
    await provider.writeFile(id, path, Buffer.concat(chunks), opts);
  }

  async statFile(id: string, path: string): Promise<FileInfo> {
    const { provider } = await this.running(id);
    return fileOp(provider, provider.statFile, "stat files").call(provider, id, path);
  }

  async listTree(id: string, path: string, depth: number): Promise<FileInfo[]> {
    const { provider } = await this.running(id);
    return fileOp(provider, provider.listTree, "list directory trees").call(provider, id, path, depth);
  }

  async makeDir(id: string, path: string): Promise<boolean> {
    const { provider } = await this.running(id);
    return fileOp(provider, provider.makeDir, "create directories").call(provider, id, path);
  }

  async moveFile(id: string, from: string, to: string): Promise<void> {
    const { provider } = await this.running(id);
    return fileOp(provider, provider.moveFile, "move files").call(provider, id, from, to);
  }

  async removeFile(id: string, path: string): Promise<boolean> {
    const { provider } = await this.running(id);
    return fileOp(provider, provider.removeFile, "remove files").call(provider, id, path);
  }

  async watchDir(id: string, path: string, opts: { recursive: boolean; onEvent: (event: FileEvent) => void }): Promise<FileWatch> {
    const { provider } = await this.running(id);
    return fileOp(provider, provider.watchDir, "watch directories").call(provider, id, path, opts);
  }

  /**
   * Signal every process of a running session except its init (default SIGKILL, then wait until
   * they are gone), without starting anything inside it: the way out of a full pid limit or a
   * stuck session. The session keeps running and takes commands again.
   */
  async kill(id: string, signal: NodeJS.Signals = "SIGKILL"): Promise<{ signalled: number }> {
    const { provider } = await this.running(id);
    return { signalled: await provider.killProcesses(id, signal) };
  }

  /**
   * Move a running session's end: it is stopped at `at` ("timeout reached") instead of at its
   * `compute.timeout`. The caller decides the bounds (the E2B front end keeps it within the
   * environment's `compute.timeout` from now). Rejects `conflict` when the session is not running.
   */
  async setDeadline(id: string, at: Date): Promise<Session> {
    const { session } = await this.running(id);
    const updated = await this.deps.store.updateSession(session.id, { expiresAt: at.toISOString() });
    this.armTimeout(updated);
    return updated;
  }

  /** End a session; stopping one that already ended is not an error (resolves it unchanged). */
  async stop(id: string, reason = "stopped by user"): Promise<Session> {
    const s = await this.get(id);
    if (s.state !== "running" && s.state !== "starting") return s;
    this.clearTimer(id);
    await this.auditGuardDenials(s, null).catch(() => undefined);
    if (this.deps.beforeStop) await this.deps.beforeStop(s).catch((err: unknown) => this.deps.log(`before stopping ${id}: ${err instanceof Error ? err.message : String(err)}`));
    await this.providerOf(s).stop(id);
    await this.deps.egress?.detach(id);
    const stopped = await this.deps.store.updateSession(id, { state: "stopped", endedAt: new Date().toISOString(), endReason: reason });
    await this.routing.finish(stopped).catch((err: unknown) => this.deps.log(`recording the cost of ${id}: ${err instanceof Error ? err.message : String(err)}`));
    this.ended();
    return stopped;
  }

  /** Called when a session ends: what it kept alive (an old template, a snapshot) may be collectable now. */
  private ended(): void {
    this.deps.onEnded?.();
  }

  async remove(id: string): Promise<void> {
    await this.stop(id);
    await this.deps.store.deleteSession(id);
  }

  /**
   * After a restart: every session the store thinks is live is either found again (and its
   * timeout re-armed) or marked lost, with what it held cleaned up by its provider.
   */
  async reconcile(): Promise<{ recovered: string[]; lost: string[] }> {
    const recovered: string[] = [];
    const lost: string[] = [];
    for (const s of await this.deps.store.listSessions({ states: ["starting", "running"] })) {
      const provider = this.deps.providers.get(s.provider);
      const state = provider ? await provider.recover(s.id, s.providerState) : "gone";
      if (state === "running" && s.state === "running") {
        recovered.push(s.id);
        await this.restoreEgress(s);
        this.armTimeout(s);
      } else {
        if (state === "running" && provider) await provider.stop(s.id);
        await this.deps.egress?.detach(s.id).catch(() => undefined);
        lost.push(s.id);
        // Its measured cost runs to now: when it really ended is not known.
        const ended = await this.deps.store.updateSession(s.id, {
          state: "lost",
          endedAt: new Date().toISOString(),
          endReason: s.state === "starting" ? "lost: the control plane stopped while it was starting" : "lost: its sandbox was gone after a control-plane restart",
        });
        await this.routing.finish(ended).catch(() => undefined);
      }
    }
    if (lost.length) this.ended();
    return { recovered, lost };
  }

  /** A recovered session's sandbox still has its placeholders and CA: serve it again with them. */
  private async restoreEgress(s: Session): Promise<void> {
    const ip = s.providerState.sandboxIp;
    const remote = this.deps.providers.get(s.provider)?.capabilities.network === "proxy";
    if (!this.deps.egress || (typeof ip !== "string" && !remote)) return;
    const v = await this.deps.store.getEnvironmentVersion(s.environment, s.version);
    if (!v) return;
    if (remote || typeof ip !== "string") {
      const served = await this.deps.egress.restoreRemote(s.id, s.environment, v.spec as EnvironmentSpec, v.fileName, await this.protectedBranchesFor(s, v.spec as EnvironmentSpec));
      if (!served) this.deps.log(`remote session ${s.id} has no stored proxy credential: it has no egress until it is started again`);
      return;
    }
    await this.deps.egress.restore(s.id, ip, s.environment, v.spec as EnvironmentSpec, v.fileName, await this.protectedBranchesFor(s, v.spec as EnvironmentSpec));
  }

  /**
   * Branches the gateway must not let this session push to: the protected ones, unless whoever
   * acts in it may deploy (the agent, with its intersection, when there is one; else the human).
   */
  private async protectedBranchesFor(session: Session, spec: EnvironmentSpec): Promise<string[]> {
    const c = spec.guardrails.commands;
    if (!c.deploy.some((d) => d.split(" ")[0] === "git")) return [];
    const actorName = session.agent ?? session.startedBy;
    const actor = await this.deps.store.getPrincipalByName(actorName);
    if (actor && (await this.deps.access.permissions(actor, session.environment, session)).has("deploy")) return [];
    return c.protectedBranches;
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private async running(id: string): Promise<{ session: Session; provider: Provider }> {
    const session = await this.get(id);
    if (session.state !== "running") throw new PaddockError("conflict", `session ${id} is ${session.state}, not running`);
    return { session, provider: this.providerOf(session) };
  }

  /** Free a snapshot's layer on the provider that made it. */
  async removeSnapshotLayer(snap: Snapshot): Promise<void> {
    const p = this.deps.providers.get(snap.provider);
    if (!p) throw new PaddockError("unavailable", `provider ${JSON.stringify(snap.provider)} of snapshot ${snap.id} is not configured`);
    await p.removeSnapshot(snap.layerId);
  }

  providerOf(s: Session): Provider {
    const p = this.deps.providers.get(s.provider);
    if (!p) throw new PaddockError("unavailable", `provider ${JSON.stringify(s.provider)} of session ${s.id} is not configured`);
    return p;
  }

  private armTimeout(s: Session): void {
    if (!s.expiresAt) return;
    const ms = Math.max(0, Date.parse(s.expiresAt) - Date.now());
    this.clearTimer(s.id);
    // Timers longer than ~24.8 days overflow; the timeout schema caps compute.timeout well below.
    const t = setTimeout(() => {
      this.timers.delete(s.id);
      this.stop(s.id, "compute.timeout reached").catch((err: unknown) => this.deps.log(`stopping ${s.id} at its timeout failed: ${String(err)}`));
    }, ms);
    t.unref();
    this.timers.set(s.id, t);
  }

  private clearTimer(id: string): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
  }
}

/**
 * The provider a warm pool of `environment` keeps members on: the first of its file's `providers:`
 * configured here (self-hosted only, for a `compliance.selfHostedOnly` environment), else `local`.
 * Session starts are routed instead (docs/routing.md).
 */
export function chooseProvider(providers: Map<string, Provider>, environment: string, wanted: string[], o: { selfHostedOnly?: boolean } = {}): Provider {
  if (wanted.length === 0) {
    const local = providers.get("local");
    if (!local) throw new PaddockError("unavailable", "the local provider is not available on this installation");
    return local;
  }
  for (const name of wanted) {
    const p = providers.get(name);
    if (p && (!o.selfHostedOnly || p.capabilities.selfHosted)) return p;
  }
  if (wanted.some((n) => providers.has(n))) {
    throw new PaddockError("invalid_argument", `environment ${JSON.stringify(environment)} has compliance.selfHostedOnly, and none of ${wanted.join(", ")} configured here is self-hosted`);
  }
  throw unconfigured({ environment, preference: wanted }, [...providers.keys()]);
}

/** The kernel-level exec guard for a session: every denied program with the line the agent will see. */
export function execGuardOf(spec: EnvironmentSpec, fileName: string): ExecGuard | null {
  const deny = spec.guardrails.commands.deny;
  if (deny.length === 0) return null;
  return {
    deny: deny.map((program, i) => {
      const at = spec.locations[`guardrails.commands.deny[${i}]`];
      return { program, message: `paddock: '${program}' denied by guardrails.commands.deny${at ? ` (${fileName}:${at.line})` : ""}` };
    }),
  };
}

/** A provider's optional file operation, or `unavailable` saying which provider lacks it. */
function fileOp<F>(provider: Provider, op: F | undefined, what: string): F {
  if (op === undefined) throw new PaddockError("unavailable", `provider ${JSON.stringify(provider.name)} cannot ${what}`);
  return op;
}
