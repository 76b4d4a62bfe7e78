import { randomBytes } from "node:crypto";
import type { ExecGuard, ExecOptions, ExecResult, FileEntry, Principal, Provider, Session, Store } from "../core/index.ts";
import { PaddockError, notFound } from "../core/index.ts";
import type { Environments } from "./environments.ts";
import type { Egress } from "./egress.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import type { AuditLog } from "../guard/index.ts";
import type { Access } from "./access.ts";

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
    },
  ) {}

  /** `startedBy`: the human the session runs for; `agent`: the agent principal acting in it, if any. */
  async start(environment: string, opts: { startedBy: string; agent?: string | null }): Promise<Session> {
    const { version, spec, template } = await this.deps.environments.current(environment);
    const provider = this.chooseProvider(environment, spec.providers);
    const now = new Date();
    const session: Session = {
      id: `s-${randomBytes(8).toString("hex")}`,
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
    };
    const guard = execGuardOf(spec, version.fileName);
    const noPush = await this.protectedBranchesFor(session, spec);
    await this.deps.store.createSession(session);
    try {
      const handle = await provider.create({
        id: session.id,
        mode: "session",
        base: spec.base,
        layers: template.layers,
        compute: spec.compute,
        hostname: environment,
        env: { PADDOCK_SESSION: session.id, PADDOCK_ENVIRONMENT: environment },
        ...(guard ? { guard } : {}),
        ...(this.deps.egress ? { egress: this.deps.egress.forSession(session.id, environment, version.version, spec, version.fileName, noPush) } : {}),
      });
      const running = await this.deps.store.updateSession(session.id, { state: "running", providerState: handle.providerState });
      this.armTimeout(running);
      return running;
    } catch (err) {
      await this.deps.egress?.detach(session.id).catch(() => undefined);
      const message = err instanceof Error ? err.message : String(err);
      await this.deps.store.updateSession(session.id, { state: "failed", endedAt: new Date().toISOString(), endReason: `failed to start: ${message}` });
      throw err;
    }
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

  /**
   * Signal every process of a running session except its init (default SIGKILL, then wait until
   * they are gone), without starting anything inside it: the way out of a full pid limit or a
   * stuck session. The session keeps running and takes commands again.
   */
  async kill(id: string, signal: NodeJS.Signals = "SIGKILL"): Promise<{ signalled: number }> {
    const { provider } = await this.running(id);
    return { signalled: await provider.killProcesses(id, signal) };
  }

  /** End a session; stopping one that already ended is not an error (resolves it unchanged). */
  async stop(id: string, reason = "stopped by user"): Promise<Session> {
    const s = await this.get(id);
    if (s.state !== "running" && s.state !== "starting") return s;
    this.clearTimer(id);
    await this.auditGuardDenials(s, null).catch(() => undefined);
    await this.providerOf(s).stop(id);
    await this.deps.egress?.detach(id);
    return this.deps.store.updateSession(id, { state: "stopped", endedAt: new Date().toISOString(), endReason: reason });
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
        await this.deps.store.updateSession(s.id, {
          state: "lost",
          endedAt: new Date().toISOString(),
          endReason: s.state === "starting" ? "lost: the control plane stopped while it was starting" : "lost: its sandbox was gone after a control-plane restart",
        });
      }
    }
    return { recovered, lost };
  }

  /** A recovered session's sandbox still has its placeholders and CA: serve it again with them. */
  private async restoreEgress(s: Session): Promise<void> {
    const ip = s.providerState.sandboxIp;
    if (!this.deps.egress || typeof ip !== "string") return;
    const v = await this.deps.store.getEnvironmentVersion(s.environment, s.version);
    if (!v) return;
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

  private chooseProvider(environment: string, wanted: string[]): Provider {
    if (wanted.length === 0) {
      const local = this.deps.providers.get("local");
      if (!local) throw new PaddockError("unavailable", "the local provider is not available on this installation");
      return local;
    }
    for (const name of wanted) {
      const p = this.deps.providers.get(name);
      if (p) return p;
    }
    const configured = [...this.deps.providers.keys()].map((n) => JSON.stringify(n)).join(", ");
    throw new PaddockError(
      "invalid_argument",
      `environment ${JSON.stringify(environment)} asks for provider${wanted.length > 1 ? "s" : ""} ${wanted.join(", ")}, but this installation has only ${configured} configured. ` +
        `Configure a provider instance with that name (providers: in $PADDOCK_HOME/config.yml — remote providers arrive with the providers issue), or remove \`providers:\` from the file to run on "local".`,
    );
  }

  private async running(id: string): Promise<{ session: Session; provider: Provider }> {
    const session = await this.get(id);
    if (session.state !== "running") throw new PaddockError("conflict", `session ${id} is ${session.state}, not running`);
    return { session, provider: this.providerOf(session) };
  }

  private providerOf(s: Session): Provider {
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
