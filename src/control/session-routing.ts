/**
 * Routing for session starts (docs/routing.md): the request a start makes of the router, the
 * failover walk over the decided order (a provider whose create fails, or whose breaker opened
 * meanwhile, is skipped for the next; every skip is recorded on the session and audited), and
 * the session's routing record: its provider, the reason, the estimate, and at its end the
 * measured cost.
 */
import type { Provider, SandboxHandle, Session, SessionRoute, Store } from "../core/index.ts";
import { PaddockError } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import type { AuditLog } from "../guard/index.ts";
import { costUsd, priceOf, scrubUrlCredentials, type LatencyClass, type RouteDecision, type RouteRequest, type Router } from "./routing/index.ts";

const GIB = 1024 ** 3;

/**
 * A remote kind's limit on one create when providers.yml sets none: room for a cold image pull or
 * an instance launch, but a hung API (a k8s watch, an EC2 call) cannot hold a start for ever.
 */
export const DEFAULT_REMOTE_CREATE_TIMEOUT_MS = 10 * 60_000;

/** The limit on one create on `provider` (0: none): its instance's setting, else its kind's default. */
export function createTimeoutMs(provider: Provider, routing: { createTimeoutMs?: number }): number {
  return routing.createTimeoutMs ?? (provider.capabilities.kind === "local" ? 0 : DEFAULT_REMOTE_CREATE_TIMEOUT_MS);
}

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(3))} s`;

/** A create abandoned at its instance's limit: the provider's signal is aborted with it. */
class CreateTimedOut extends PaddockError {
  constructor(readonly provider: string, readonly limitMs: number) {
    super("unavailable", `create on ${provider} timed out after ${seconds(limitMs)}`, { provider, createTimeoutMs: limitMs });
  }
}

/** A start's decision and the request it answered (failover walks `decision.order`). */
export interface StartRoute {
  request: RouteRequest;
  decision: RouteDecision;
}

export interface SessionRoutingDeps {
  store: Store;
  router: Router;
  providers: Map<string, Provider>;
  audit: AuditLog;
  log: (line: string) => void;
  /** Removes provider credentials from text (an error message) before it is stored or shown. */
  scrub?: (text: string) => string;
}

export class SessionRouting {
  constructor(private readonly deps: SessionRoutingDeps) {}

  /** What a start of `environment` at `spec` asks of the router. */
  request(environment: string, spec: EnvironmentSpec, o: { latency?: LatencyClass; pooledOn?: string } = {}): RouteRequest {
    const isolation = (spec.compute as { isolation?: unknown }).isolation;
    return {
      environment,
      preference: spec.providers,
      compute: { cpu: spec.compute.cpu, memoryBytes: spec.compute.memoryBytes, timeoutMs: spec.compute.timeoutMs },
      latency: o.latency ?? "batch",
      selfHostedOnly: spec.compliance.selfHostedOnly,
      ...(isolation === "namespaces" || isolation === "gvisor" ? { isolation } : {}),
      ...(o.pooledOn ? { pooledOn: o.pooledOn } : {}),
    };
  }

  /** Decide; rejects `unavailable` with every candidate's reason when none can take the session. */
  async decide(request: RouteRequest): Promise<StartRoute> {
    const decision = await this.deps.router.decide(request);
    if (decision.order.length === 0) {
      throw new PaddockError("unavailable", `no provider can start a session of ${request.environment}: ${decision.candidates.map((c) => `${c.provider} ${c.reason}`).join("; ")}`, { decision });
    }
    return { request, decision };
  }

  /**
   * Create the sandbox on the first provider of the decided order that manages it. `use` points
   * the caller at the provider about to be tried (its create callback reads it); a failed create
   * is cleaned up (`cleanup`), counted by the breaker, recorded as a skip and audited, and the next
   * is tried. A create that outlives its instance's limit (`createTimeoutMs`) is aborted and
   * treated the same. Rejects with the last error when every provider failed.
   */
  async create(session: Session, route: StartRoute, use: (p: Provider) => void, cleanup: (p: Provider) => Promise<void>, create: (signal: AbortSignal) => Promise<SandboxHandle>): Promise<SandboxHandle> {
    const { order } = route.decision;
    let lastError: unknown = null;
    for (const [i, name] of order.entries()) {
      const provider = this.deps.providers.get(name);
      const breaker = this.deps.router.breakers.state(name);
      if (!provider || breaker === "open") {
        await this.skip(session, name, provider ? "circuit breaker open" : "no longer configured", order[i + 1] ?? null);
        continue;
      }
      // A half-open breaker's one trial is this start's: concurrent starts now skip the provider.
      if (breaker === "half-open") this.deps.router.breakers.trial(name);
      use(provider);
      if (session.provider !== name) {
        await this.deps.store.updateSession(session.id, { provider: name });
        await this.deps.store.updateSessionRoute(session.id, this.landing(route, name));
        session.provider = name;
      }
      try {
        const handle = await this.within(session, provider, create);
        this.deps.router.breakers.success(name);
        return handle;
      } catch (err) {
        lastError = err;
        const message = this.scrub(err instanceof Error ? err.message : String(err));
        this.deps.router.breakers.failure(name, message);
        await cleanup(provider);
        if (i === order.length - 1) break;
        await this.skip(session, name, err instanceof CreateTimedOut ? `create timed out after ${seconds(err.limitMs)}` : `create failed: ${message}`, order[i + 1] ?? null);
      }
    }
    if (lastError !== null) throw lastError;
    throw new PaddockError("unavailable", `no provider could start session ${session.id}: every one in the decided order was skipped (see its route)`);
  }

  /**
   * Run one create on `provider` within its limit. At the limit the signal given to the provider is
   * aborted and the start goes on without it (rejects `CreateTimedOut`); a provider that ignores
   * the abort and still makes the sandbox later has it stopped at once, so nothing is left running.
   */
  async within(session: Session, provider: Provider, create: (signal: AbortSignal) => Promise<SandboxHandle>): Promise<SandboxHandle> {
    const controller = new AbortController();
    const limitMs = createTimeoutMs(provider, this.routingOf(provider.name));
    if (limitMs <= 0) return create(controller.signal);
    const attempt = create(controller.signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new CreateTimedOut(provider.name, limitMs);
        controller.abort(err);
        reject(err);
      }, limitMs);
    });
    try {
      return await Promise.race([attempt, timedOut]);
    } catch (err) {
      if (!controller.signal.aborted) throw err;
      attempt.then(
        async () => {
          this.deps.log(`session ${session.id}: provider ${provider.name} made the sandbox after its create timed out; stopping it`);
          await provider.stop(session.id).catch((e: unknown) => this.deps.log(`session ${session.id}: stopping the late sandbox on ${provider.name}: ${this.scrub(e instanceof Error ? e.message : String(e))}`));
        },
        () => undefined, // the abort (or anything else) ended it: nothing was made
      );
      throw controller.signal.reason;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The routing record of a new session (before its sandbox exists). */
  async record(session: Session, spec: EnvironmentSpec, route: StartRoute | null, reason: string): Promise<void> {
    const r: SessionRoute = {
      sessionId: session.id, provider: session.provider, strategy: route?.decision.strategy ?? "none", reason: route ? "" : reason,
      estimateUsd: 0, price: { perVcpuHour: 0, perGibHour: 0, source: "", cpu: spec.compute.cpu, memoryGib: spec.compute.memoryBytes / GIB },
      skips: [], decision: route ? (route.decision as unknown as Record<string, unknown>) : {}, createdAt: session.createdAt, runtimeMs: null, measuredUsd: null,
    };
    const priced = route ? this.landing(route, session.provider) : this.priced(session.provider, spec, reason);
    await this.deps.store.putSessionRoute({ ...r, ...priced });
    // Providers passed over because their breaker is open are skips too (recorded and audited).
    for (const v of route?.decision.candidates ?? []) {
      if (!v.eligible && (v.factors.some((f) => f.name === "breaker" && f.excludes) || /circuit breaker open/.test(v.reason))) {
        await this.skip(session, v.provider, "circuit breaker open", route?.decision.chosen ?? null);
      }
    }
  }

  /** At a session's end: how long it ran and what that cost at the prices recorded at its start. */
  async finish(s: Session): Promise<void> {
    const r = await this.deps.store.getSessionRoute(s.id);
    if (!r || r.runtimeMs !== null) return;
    const runtimeMs = Math.max(0, Date.parse(s.endedAt ?? new Date().toISOString()) - Date.parse(s.createdAt));
    const measuredUsd = costUsd(r.price, r.price.cpu, r.price.memoryGib * GIB, runtimeMs);
    await this.deps.store.updateSessionRoute(s.id, { runtimeMs, measuredUsd, provider: s.provider });
  }

  /** The record's provider-dependent part once the session lands on `name`. */
  private landing(route: StartRoute, name: string): Pick<SessionRoute, "provider" | "reason" | "estimateUsd" | "price"> {
    const v = route.decision.candidates.find((c) => c.provider === name);
    const p = this.deps.providers.get(name);
    const price = p ? priceOf(p.capabilities.kind, this.routingOf(name)) : { perVcpuHour: 0, perGibHour: 0, source: "unknown" };
    const { cpu, memoryBytes, timeoutMs } = route.request.compute;
    const first = route.decision.chosen === name;
    return {
      provider: name,
      reason: first ? route.decision.reason : `failover: ${route.decision.order.slice(0, route.decision.order.indexOf(name)).join(", ")} skipped (see skips); ${name} was ${v?.reason ?? "next in order"}`,
      estimateUsd: v?.estimateUsd ?? costUsd(price, cpu, memoryBytes, route.request.expectedDurationMs ?? timeoutMs),
      price: { perVcpuHour: price.perVcpuHour, perGibHour: price.perGibHour, source: price.source, cpu, memoryGib: memoryBytes / GIB },
    };
  }

  private priced(name: string, spec: EnvironmentSpec, reason: string): Pick<SessionRoute, "provider" | "reason" | "estimateUsd" | "price"> {
    const p = this.deps.providers.get(name);
    const price = p ? priceOf(p.capabilities.kind, this.routingOf(name)) : { perVcpuHour: 0, perGibHour: 0, source: "unknown" };
    const { cpu, memoryBytes, timeoutMs } = spec.compute;
    return {
      provider: name, reason, estimateUsd: costUsd(price, cpu, memoryBytes, timeoutMs),
      price: { perVcpuHour: price.perVcpuHour, perGibHour: price.perGibHour, source: price.source, cpu, memoryGib: memoryBytes / GIB },
    };
  }

  private routingOf(name: string) {
    return this.deps.router.routingOf(name);
  }

  private async skip(session: Session, provider: string, reason: string, next: string | null): Promise<void> {
    const at = new Date().toISOString();
    const r = await this.deps.store.getSessionRoute(session.id);
    if (r) await this.deps.store.updateSessionRoute(session.id, { skips: [...r.skips, { provider, at, reason }] });
    this.deps.log(`session ${session.id}: skipped provider ${provider} (${reason})${next ? `; trying ${next}` : ""}`);
    await this.deps.audit.append({
      time: at, actor: "system", actorKind: "system", onBehalfOf: null, action: "session.failover", target: provider,
      environment: session.environment, sessionId: session.id, decision: "info", rule: null, detail: { provider, reason, next },
    });
  }

  /** A provider's error may quote a credential it was given, or the session's proxy URL: neither is stored or audited. */
  private scrub(text: string): string {
    const out = scrubUrlCredentials(text);
    return this.deps.scrub ? this.deps.scrub(out) : out;
  }
}
