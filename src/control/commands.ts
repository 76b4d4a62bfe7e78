/**
 * The command gate: every command submitted to a session (exec API, WebSocket, SDK, CLI) is
 * checked here before anything runs — guardrails.commands (deny, allow, ask), the deploy
 * permission — and audited. The kernel-level exec guard inside the sandbox (native/guard.c) is
 * the second layer: it stops what this check cannot see, such as programs an allowed one starts.
 */
import type { ExecOptions, ExecResult, Principal, Session, Store } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import type { AuditLog, CommandChecker, CommandPolicy, CommandVerdict, RuleLocator } from "../guard/index.ts";
import type { Access } from "./access.ts";
import type { Approvals } from "./approvals.ts";
import type { Sessions } from "./sessions.ts";

/** The exit status of a command the guardrails refused (the shell's "cannot execute"). */
export const DENIED_EXIT = 126;

export interface Caller {
  principal: Principal;
}

export class CommandGate {
  constructor(
    private readonly deps: { store: Store; sessions: Sessions; access: Access; approvals: Approvals; audit: AuditLog; checker: CommandChecker },
  ) {}

  /**
   * Check, then run. A refused command does not start: the result is exit 126 with one line on
   * stderr naming the program, the rule and where it was written.
   */
  async run(sessionId: string, actor: Principal, opts: ExecOptions): Promise<ExecResult> {
    const started = Date.now();
    const session = await this.deps.sessions.get(sessionId);
    const refusal = await this.#check(session, actor, opts.argv, opts.signal, "exec");
    if (refusal !== null) {
      opts.onStderr?.(Buffer.from(refusal + "\n"));
      return { exitCode: DENIED_EXIT, signal: null, timedOut: false, durationMs: Date.now() - started };
    }
    try {
      return await this.deps.sessions.exec(sessionId, opts);
    } finally {
      await this.deps.sessions.auditGuardDenials(session, actor).catch(() => undefined);
    }
  }

  async #nothingToEnforce(policy: CommandPolicy, actor: Principal, session: Session): Promise<boolean> {
    if (policy.deny.length || policy.ask.length || policy.allowListed) return false;
    if (policy.deploy.length === 0) return true;
    return (await this.deps.access.permissions(actor, session.environment, session)).has("deploy");
  }

  /**
   * Decide on a command an agent inside the session is about to run (a tool call submitted to
   * http://paddock.internal): the same check as for exec, audited as `toolcall`, nothing run here.
   * Waits for approval when an `ask` rule matches. Resolves null when it may run, else the refusal.
   */
  decide(session: Session, actor: Principal, command: string | string[], signal?: AbortSignal): Promise<string | null> {
    return this.#check(session, actor, command, signal, "toolcall");
  }

  /** Null when the command may run; otherwise the one-line refusal. Every outcome is audited. */
  async #check(session: Session, actor: Principal, command: string | string[], signal: AbortSignal | undefined, action: "exec" | "toolcall"): Promise<string | null> {
    const argv = typeof command === "string" ? ["sh", "-c", command] : command;
    const version = await this.deps.access.versionSpec(session.environment, session.version);
    const spec = version?.spec;
    const onBehalfOf = actor.kind === "agent" ? session.startedBy : null;
    const base = { actor: actor.name, actorKind: actor.kind, onBehalfOf, environment: session.environment, sessionId: session.id, target: session.id } as const;
    if (!spec || !version) {
      await this.deps.audit.append({ ...base, action, decision: "denied", rule: "no environment version", detail: { argv } });
      return `paddock: command denied: the environment version of session ${session.id} is gone`;
    }
    const policy = policyOf(spec);
    const verdict = this.deps.checker.check(command, policy, locatorOf(spec, version.fileName));
    const detail = { argv: argv, programs: verdict.programs.map((p) => p.program) };
    if (verdict.verdict === "deny" && verdict.rule === null && (await this.#nothingToEnforce(policy, actor, session))) {
      // A line the parser cannot follow (`bash -c "$cmd"`) is refused only when some rule could
      // apply to it: with no deny, allow or ask rule, and a caller who may deploy anyway, there is
      // nothing it could violate, and the exec guard inside the sandbox is not needed either.
      await this.deps.audit.append({ ...base, action, decision: "allowed", rule: "no command rules apply", detail: { ...detail, unprovable: verdict.message } });
      return null;
    }
    if (verdict.verdict === "deny") {
      await this.deps.audit.append({ ...base, action, decision: "denied", rule: ruleText(verdict), detail: { ...detail, message: verdict.message } });
      return verdict.message;
    }
    if (verdict.deploying) {
      const perms = await this.deps.access.permissions(actor, session.environment, session);
      if (!perms.has("deploy")) {
        const message = deployRefusal(actor, spec, verdict);
        await this.deps.audit.append({ ...base, action, decision: "denied", rule: "rbac: deploy", detail: { ...detail, message } });
        return message;
      }
    }
    if (verdict.verdict === "ask") {
      const rule = ruleText(verdict) ?? "guardrails.commands.ask";
      const answer = await this.deps.approvals.request({
        session, argv: argv, program: verdict.program, rule, deploying: verdict.deploying, actor, onBehalfOf,
        timeoutMs: spec.guardrails.commands.askTimeoutMs, ...(signal ? { signal } : {}),
      });
      if (answer.state !== "approved") {
        const why = answer.state === "denied" ? `denied by ${answer.decidedBy ?? "a person"}${answer.reason ? `: ${answer.reason}` : ""}` : `expired: ${answer.reason ?? "no answer"}`;
        return `paddock: '${verdict.program}' was not approved (${why}; approval ${answer.id})`;
      }
    }
    await this.deps.audit.append({ ...base, action, decision: "allowed", rule: verdict.verdict === "ask" ? ruleText(verdict) : null, detail: { ...detail, deploying: verdict.deploying } });
    return null;
  }
}

export function policyOf(spec: EnvironmentSpec): CommandPolicy {
  const c = spec.guardrails.commands;
  return {
    allow: c.allow, allowListed: spec.locations["guardrails.commands.allow"] !== undefined, deny: c.deny, ask: c.ask,
    deploy: c.deploy, protectedBranches: c.protectedBranches,
  };
}

/** "runtime.yml:18" for an entry of a command list; index -1 is the list's key. */
export function locatorOf(spec: EnvironmentSpec, fileName: string): RuleLocator {
  return (list, index) => {
    const at = spec.locations[index < 0 ? `guardrails.commands.${list}` : `guardrails.commands.${list}[${index}]`];
    return at ? `${fileName}:${at.line}` : undefined;
  };
}

function ruleText(v: CommandVerdict): string | null {
  if (v.verdict === "allow" || !v.rule) return null;
  return `guardrails.commands.${v.rule.list}[${v.rule.index}]${v.rule.at ? ` (${v.rule.at})` : ""}`;
}

function deployRefusal(actor: Principal, spec: EnvironmentSpec, v: CommandVerdict): string {
  const what = v.programs.map((p) => p.argv.slice(0, 2).join(" ")).find(Boolean) ?? "this command";
  if (actor.kind === "agent" && !spec.guardrails.commands.agentsMayDeploy) {
    return `paddock: '${what}' deploys, and agents may not deploy in this environment (guardrails.commands.agentsMayDeploy is false): ask a person with the deploy permission to run it`;
  }
  return `paddock: '${what}' deploys and needs the deploy permission (rbac:); ${actor.name} has role ${JSON.stringify(actor.role)}`;
}
