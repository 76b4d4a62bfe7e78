/**
 * Warm pools: per environment, sandboxes of its current version started ahead (services ready),
 * bound to nobody, so a session start can claim one instead of starting a sandbox (docs/pools.md).
 *
 * A member is not a session: it lives in its own table, no route reaches it, its gateway
 * registration has the version's policy and no secret. `Sessions.claim` moves one into `sessions`
 * atomically (the store's claim) and binds it to its principal before the API answers. Whoever
 * deletes a member's row owns its sandbox: the claim, a drain, or the member's own start when it
 * fails or its version stopped being current meanwhile; so a sandbox is never handed out twice.
 *
 * Refills run in the background, at most `concurrency` member starts at a time across every
 * environment (starts of real sessions come first on a small machine). A new current version
 * drains the idle members of the older ones and starts new ones.
 *
 * Members run only on providers whose sandboxes join this machine's gateway network
 * (`capabilities.network === "netns"`, e.g. local): a member is started with the local egress
 * hook (`Egress.forPoolMember`), which a `proxy` provider cannot take, so its member would have
 * no egress and every claim would fail over to a fresh start. An environment on such a provider
 * gets no members, and says why (`PoolInfo.refused`, `pool set`, the log).
 */
import type { PoolInfo, PoolMember, PoolSetting, Provider, Store } from "../core/index.ts";
import { PaddockError, invalid, notFound } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import type { AuditLog } from "../guard/index.ts";
import type { Egress } from "./egress.ts";
import type { Environments } from "./environments.ts";
import { chooseProvider, execGuardOf, newSessionId, servicesTimeoutMs } from "./sessions.ts";
import { servicesOf } from "./services.ts";

/** The largest pool an environment may ask for (`pool.max`, `paddock pool set --max`). */
export const MAX_POOL_SIZE = 200;
/**
 * After a session start, the refill waits this long for quiet (each start pushes it back): the
 * commands of the session just started, and the other starts of a burst, go first.
 */
const REFILL_DELAY_MS = 50;
/** A pool grows beyond `min` by the claims of this last stretch of time (up to `max`). */
const DEMAND_WINDOW_MS = 60_000;


export interface PoolsDeps {
  store: Store;
  providers: Map<string, Provider>;
  environments: Environments;
  egress: Egress | null;
  audit: AuditLog;
  log: (line: string) => void;
  /** Member starts at a time across all pools (default 1). */
  concurrency?: number;
}

export class Pools {
  private readonly concurrency: number;
  /** Environments whose pool may need work. */
  private readonly dirty = new Set<string>();
  /** Member starts in flight, per environment. */
  private readonly inFlight = new Map<string, number>();
  private running = 0;
  private closed = false;
  /** Claim times per environment (the last DEMAND_WINDOW_MS), for growing toward max. */
  private readonly claims = new Map<string, number[]>();
  /** Ready members per environment version, as last seen: lets a start skip the claim transaction when the pool is empty. */
  private readonly readyHint = new Map<string, number>();
  /** Refills waiting for a burst of starts to pause, per environment. */
  private readonly refillTimers = new Map<string, NodeJS.Timeout>();
  /** Pools refused a provider, as `environment@version: reason`, so the log says it once, not at every refill. */
  private readonly refusalsLogged = new Set<string>();
  /** Settles when the pump has nothing left to do (tests and drains wait for it). */
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly deps: PoolsDeps) {
    this.concurrency = Math.max(1, deps.concurrency ?? 1);
  }

  /** The pool size of an environment: a stored override, else its current version's `pool:`, else none. */
  async size(environment: string): Promise<{ min: number; max: number; source: "set" | "file" }> {
    const set = await this.deps.store.getPoolSetting(environment);
    if (set) return { min: set.min, max: set.max, source: "set" };
    const spec = await this.currentSpec(environment);
    const pool = spec ? poolOfSpec(spec) : null;
    return pool ? { ...pool, source: "file" } : { min: 0, max: 0, source: "file" };
  }

  /** Set an environment's pool size (overriding its file's `pool:`); `max` defaults to `min`. */
  async set(environment: string, size: { min: number; max?: number }, by: string): Promise<PoolInfo> {
    if (!(await this.deps.store.getEnvironment(environment))) throw notFound("environment", environment);
    const max = size.max ?? size.min;
    if (!Number.isSafeInteger(size.min) || !Number.isSafeInteger(max) || size.min < 0 || max < size.min || max > MAX_POOL_SIZE) {
      throw invalid(`a pool needs 0 ≤ min ≤ max ≤ ${MAX_POOL_SIZE} (whole numbers); got min ${size.min}, max ${max}`);
    }
    const spec = max > 0 ? await this.currentSpec(environment) : null;
    const where = spec ? poolProviderOf(this.deps.providers, environment, spec) : null;
    if (where && "refused" in where) throw invalid(`${where.refused}; set its pool to 0, or run the environment on such a provider`);
    const setting: PoolSetting = { environment, min: size.min, max, updatedAt: new Date().toISOString(), updatedBy: by };
    await this.deps.store.putPoolSetting(setting);
    await this.deps.audit.append({ actor: by, actorKind: "human", action: "pool.set", target: environment, environment, decision: "info", detail: { min: setting.min, max } });
    this.schedule(environment);
    return this.info(environment);
  }

  /** Forget the override: the file's `pool:` (or none) applies again. */
  async reset(environment: string, by: string): Promise<PoolInfo> {
    if (!(await this.deps.store.getEnvironment(environment))) throw notFound("environment", environment);
    await this.deps.store.deletePoolSetting(environment);
    await this.deps.audit.append({ actor: by, actorKind: "human", action: "pool.reset", target: environment, environment, decision: "info" });
    this.schedule(environment);
    return this.info(environment);
  }

  /** Every environment with a pool size above zero or members left. */
  async list(): Promise<PoolInfo[]> {
    const names = new Set<string>((await this.deps.store.listPoolMembers()).map((m) => m.environment));
    for (const s of await this.deps.store.listPoolSettings()) names.add(s.environment);
    for (const e of await this.deps.store.listEnvironments()) {
      const spec = await this.currentSpec(e.name);
      if (spec && poolOfSpec(spec)) names.add(e.name);
    }
    const out: PoolInfo[] = [];
    for (const name of [...names].sort()) {
      const info = await this.info(name);
      if (info.max > 0 || info.ready + info.starting + info.stale > 0) out.push(info);
    }
    return out;
  }

  async info(environment: string): Promise<PoolInfo> {
    const size = await this.size(environment);
    const version = (await this.deps.store.getEnvironment(environment))?.currentVersion ?? null;
    const members = await this.deps.store.listPoolMembers({ environment });
    let memory: number | null = 0;
    for (const m of members) {
      const used = await this.deps.providers.get(m.provider)?.memoryUsage?.(m.id).catch(() => null);
      memory = used === undefined || used === null || memory === null ? null : memory + used;
    }
    const current = members.filter((m) => m.version === version);
    const refused = size.max > 0 ? this.refusal(environment, await this.currentSpec(environment)) : null;
    return {
      environment,
      version,
      ...size,
      ready: current.filter((m) => m.state === "ready").length,
      starting: current.filter((m) => m.state === "starting").length,
      stale: members.length - current.length,
      claimedLastMinute: this.recentClaims(environment),
      memoryBytes: members.length === 0 ? 0 : memory,
      ...(refused ? { refused } : {}),
    };
  }

  /** Why the environment's provider cannot hold members, or null (also null when it has no provider configured: starts say so). */
  private refusal(environment: string, spec: EnvironmentSpec | null): string | null {
    if (!spec) return null;
    try {
      const where = poolProviderOf(this.deps.providers, environment, spec);
      return "refused" in where ? where.refused : null;
    } catch {
      return null;
    }
  }

  /**
   * Cheap check on the start path: could a member of this version be ready? False only when the
   * pool was seen empty since the last member became ready, so the claim transaction is skipped.
   */
  mayHaveReady(environment: string, version: number): boolean {
    return (this.readyHint.get(`${environment}@${version}`) ?? 1) > 0;
  }

  /** The claim found nothing ready for this version. */
  noneReady(environment: string, version: number): void {
    this.readyHint.set(`${environment}@${version}`, 0);
  }

  /** A session was claimed from the pool: count it (the pool grows with demand) and refill. */
  claimed(environment: string): void {
    const now = Date.now();
    const list = (this.claims.get(environment) ?? []).filter((t) => now - t < DEMAND_WINDOW_MS);
    list.push(now);
    this.claims.set(environment, list);
    // When this claim leaves the window, the pool may shrink back toward min.
    setTimeout(() => this.schedule(environment), DEMAND_WINDOW_MS + 100).unref();
  }

  /** A session of the environment started (claimed or not): refill in the background, once starts pause. */
  demand(environment: string): void {
    if (this.closed) return;
    clearTimeout(this.refillTimers.get(environment));
    const t = setTimeout(() => {
      this.refillTimers.delete(environment);
      this.schedule(environment);
    }, REFILL_DELAY_MS);
    t.unref();
    this.refillTimers.set(environment, t);
  }

  /** A new version became current: drain the idle members of older ones, start new ones. */
  versionChanged(environment: string): void {
    this.schedule(environment);
  }

  /** Look at an environment's pool (or every pool) soon. */
  schedule(environment?: string): void {
    if (this.closed) return;
    if (environment === undefined) {
      void this.scheduleAll();
      return;
    }
    this.dirty.add(environment);
    setImmediate(() => this.pump());
  }

  private async scheduleAll(): Promise<void> {
    try {
      for (const e of await this.deps.store.listEnvironments()) this.dirty.add(e.name);
      for (const m of await this.deps.store.listPoolMembers()) this.dirty.add(m.environment);
    } catch (err) {
      this.deps.log(`pools: cannot list environments: ${String(err)}`);
    }
    this.pump();
  }

  /** Resolves once no pool has work left (members started, stale ones drained). */
  async idle(): Promise<void> {
    while (this.refillTimers.size > 0 && !this.closed) await new Promise((r) => setTimeout(r, REFILL_DELAY_MS));
    if (this.running === 0 && this.dirty.size === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * After a restart: members whose sandboxes still run (and are of the current version) are
   * served by the gateway again; the rest are stopped and forgotten. Then every pool is refilled.
   */
  async reconcile(): Promise<{ recovered: string[]; dropped: string[] }> {
    const recovered: string[] = [];
    const dropped: string[] = [];
    for (const m of await this.deps.store.listPoolMembers()) {
      const provider = this.deps.providers.get(m.provider);
      const state = provider ? await provider.recover(m.id, m.providerState).catch(() => "gone" as const) : "gone";
      const current = (await this.deps.store.getEnvironment(m.environment))?.currentVersion;
      const keep = state === "running" && m.state === "ready" && m.version === current;
      if (keep) {
        try {
          await this.restoreEgress(m);
          recovered.push(m.id);
          continue;
        } catch (err) {
          this.deps.log(`pool member ${m.id} cannot be served by the gateway again (${String(err)}); replacing it`);
        }
      }
      if (!(await this.deps.store.deletePoolMember(m.id))) continue;
      if (state === "running") await provider?.stop(m.id).catch(() => undefined);
      await this.deps.egress?.detach(m.id).catch(() => undefined);
      dropped.push(m.id);
    }
    return { recovered, dropped };
  }

  /** Stop every idle member (of one environment, or all) now; starting ones end when they are ready. */
  async drain(environment?: string): Promise<number> {
    let n = 0;
    for (const m of await this.deps.store.listPoolMembers(environment ? { environment } : {})) {
      if (m.state === "ready" && (await this.removeMember(m, "drained"))) n++;
    }
    return n;
  }

  /**
   * No more refills; waits (up to 10 s) for member starts in flight. Members keep running: they
   * outlive the control plane like sessions, and the next start recovers them.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.dirty.clear();
    for (const t of this.refillTimers.values()) clearTimeout(t);
    this.refillTimers.clear();
    if (this.running > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
    }
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private recentClaims(environment: string): number {
    const now = Date.now();
    return (this.claims.get(environment) ?? []).filter((t) => now - t < DEMAND_WINDOW_MS).length;
  }

  private async currentSpec(environment: string): Promise<EnvironmentSpec | null> {
    try {
      return (await this.deps.environments.current(environment)).spec;
    } catch {
      return null;
    }
  }

  private pump(): void {
    if (this.closed) return;
    while (this.running < this.concurrency && this.dirty.size > 0) {
      const environment = this.dirty.values().next().value as string;
      this.dirty.delete(environment);
      this.running++;
      this.work(environment)
        .catch((err: unknown) => this.deps.log(`pool of ${environment}: ${err instanceof Error ? err.message : String(err)}`))
        .finally(() => {
          this.running--;
          this.pump();
          if (this.running === 0 && this.dirty.size === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }

  /**
   * One step for one pool: drain stale idle members, trim above max, or start one member. When
   * more is left to do, the pool is marked dirty again (so pools take turns).
   */
  private async work(environment: string): Promise<void> {
    let current: Awaited<ReturnType<Environments["current"]>>;
    try {
      current = await this.deps.environments.current(environment);
    } catch {
      for (const m of await this.deps.store.listPoolMembers({ environment })) if (m.state === "ready") await this.removeMember(m, "its environment has no current version");
      return;
    }
    const size = await this.size(environment);
    const members = await this.deps.store.listPoolMembers({ environment });
    for (const m of members) {
      if (m.state === "ready" && (m.version !== current.version.version || m.templateId !== current.template.id)) {
        await this.removeMember(m, `version ${m.version} is no longer current`);
      }
    }
    const live = members.filter((m) => m.version === current.version.version && m.templateId === current.template.id);
    const ready = live.filter((m) => m.state === "ready");
    this.readyHint.set(`${environment}@${current.version.version}`, ready.length);
    // Starting members counted from the store, plus starts whose row is not written yet.
    const count = Math.max(live.length, ready.length + (this.inFlight.get(environment) ?? 0));
    const want = Math.min(size.max, size.min + this.recentClaims(environment));
    if (count > want && ready.length > 0) {
      // Above what is wanted (min lowered, or the demand that grew it is over): one idle member
      // goes per step, the newest (the oldest have been ready longest, their services warmest).
      const extra = ready.at(-1);
      if (extra) await this.removeMember(extra, count > size.max ? "the pool is above its max" : "the pool is above its size");
      this.dirty.add(environment);
      return;
    }
    if (count >= want) return;
    const where = poolProviderOf(this.deps.providers, environment, current.spec);
    if ("refused" in where) {
      // Not marked dirty again: nothing changes until the environment or the providers do.
      const key = `${environment}@${current.version.version}: ${where.refused}`;
      if (!this.refusalsLogged.has(key)) this.deps.log(`pool of ${environment}: no members started: ${where.refused}`);
      this.refusalsLogged.add(key);
      return;
    }
    this.inFlight.set(environment, (this.inFlight.get(environment) ?? 0) + 1);
    try {
      await this.startMember(environment, current);
    } finally {
      this.inFlight.set(environment, (this.inFlight.get(environment) ?? 1) - 1);
    }
    this.dirty.add(environment);
  }

  /** Start one member: row first (a restart then finds and cleans it), sandbox, services, ready. */
  private async startMember(environment: string, current: Awaited<ReturnType<Environments["current"]>>): Promise<void> {
    const { version, spec, template } = current;
    const where = poolProviderOf(this.deps.providers, environment, spec);
    if ("refused" in where) throw new PaddockError("unavailable", where.refused);
    const provider = where.provider;
    const member: PoolMember = {
      id: newSessionId(),
      environment,
      version: version.version,
      templateId: template.id,
      provider: provider.name,
      snapshot: null,
      state: "starting",
      createdAt: new Date().toISOString(),
      providerState: {},
    };
    await this.deps.store.addPoolMember(member);
    const guard = execGuardOf(spec, version.fileName);
    const services = servicesOf(spec);
    try {
      const handle = await provider.create({
        id: member.id,
        mode: "session",
        base: spec.base,
        layers: template.layers,
        compute: spec.compute,
        hostname: environment,
        env: { PADDOCK_SESSION: member.id, PADDOCK_ENVIRONMENT: environment },
        // compute.isolation: a provider without the tier refuses the create (never runs it weaker).
        ...(spec.compute.isolation ? { isolation: spec.compute.isolation } : {}),
        ...(guard ? { guard } : {}),
        ...(services.length ? { services } : {}),
        ...(this.deps.egress ? { egress: this.deps.egress.forPoolMember(member.id, environment, version.version, spec, version.fileName) } : {}),
      });
      await this.deps.store.updatePoolMember(member.id, { providerState: handle.providerState });
      if (services.length) await provider.waitForServices(member.id, servicesTimeoutMs(spec, services));
      if (this.closed || (await this.deps.store.getEnvironment(environment))?.currentVersion !== version.version) {
        await this.removeMember(member, "its version stopped being current while it started");
        return;
      }
      await this.deps.store.updatePoolMember(member.id, { state: "ready" });
      this.readyHint.set(`${environment}@${version.version}`, (this.readyHint.get(`${environment}@${version.version}`) ?? 0) + 1);
    } catch (err) {
      if (await this.deps.store.deletePoolMember(member.id)) {
        await provider.stop(member.id).catch(() => undefined);
        await this.deps.egress?.detach(member.id).catch(() => undefined);
      }
      throw err;
    }
  }

  /** Remove a member the pool no longer wants, unless a claim took it first (then it is a session). */
  private async removeMember(m: PoolMember, why: string): Promise<boolean> {
    if (!(await this.deps.store.deletePoolMember(m.id))) return false;
    this.deps.log(`pool of ${m.environment}: removed member ${m.id} (${why})`);
    await this.deps.providers.get(m.provider)?.stop(m.id).catch(() => undefined);
    await this.deps.egress?.detach(m.id).catch(() => undefined);
    return true;
  }

  private async restoreEgress(m: PoolMember): Promise<void> {
    const ip = m.providerState.sandboxIp;
    if (!this.deps.egress || typeof ip !== "string") return;
    const v = await this.deps.store.getEnvironmentVersion(m.environment, m.version);
    if (!v) throw notFound("environment version", `${m.environment} v${m.version}`);
    await this.deps.egress.restore(m.id, ip, m.environment, v.spec as EnvironmentSpec, v.fileName, [], { member: true });
  }
}

/**
 * The provider an environment's members would run on (the one its sessions start on when nothing
 * fails), or why Paddock keeps no members there: only `network: "netns"` providers take the local
 * egress hook a member is started with (see the file comment). Throws as `chooseProvider` does
 * when none of the environment's providers is configured.
 */
export function poolProviderOf(providers: Map<string, Provider>, environment: string, spec: EnvironmentSpec): { provider: Provider } | { refused: string } {
  const provider = chooseProvider(providers, environment, spec.providers, { selfHostedOnly: spec.compliance.selfHostedOnly });
  const caps = provider.capabilities;
  if (caps.network === "netns") return { provider };
  const own = caps.warmPool ? `; ${provider.name} keeps warm sandboxes of its own (its warm pool), which its starts use` : "";
  return {
    refused: `environment ${environment} runs on provider ${provider.name}, whose sandboxes reach the gateway as a proxy (network "${caps.network}"): warm pools keep members only on providers that join this machine's gateway network (network "netns", such as local)${own}`,
  };
}

/** The file's `pool:` ({min, max}), when it has one. */
export function poolOfSpec(spec: EnvironmentSpec): { min: number; max: number } | null {
  // `pool:` is an extension key of the environment file (src/config/schema.ts); read defensively so
  // files from before it keep working.
  const pool = (spec as { pool?: { min?: unknown; max?: unknown } | null }).pool;
  if (!pool || typeof pool.min !== "number") return null;
  const min = pool.min;
  const max = typeof pool.max === "number" ? pool.max : min;
  return max > 0 ? { min, max } : null;
}
