/** `paddock login/logout/whoami`, `paddock user …`, `paddock audit …`, `paddock approvals/approve/deny`. */
import type { Command } from "commander";
import type { AuditFilter, PaddockClient, Whoami } from "../client/index.ts";
import type { AuditRecord } from "../core/index.ts";
import { PaddockError } from "../core/index.ts";
import { parseDurationFlag, printJson, printTable } from "./output.ts";
import { forgetCredentials, saveCredentials } from "./credentials.ts";
import { promptHidden, readStdinValue } from "./secret.ts";

type ClientFactory = (override?: { token?: string }) => PaddockClient;

function describeWho(w: Whoami): string {
  const envs = Object.entries(w.environments).map(([e, p]) => `  ${e}: ${p.length ? p.join(",") : "-"}`);
  const who = `${w.principal.name} (${w.principal.kind}, role ${w.principal.role}${w.principal.team ? `, team ${w.principal.team}` : ""})${w.admin ? " — admin" : ""}`;
  return envs.length ? `${who}\n${envs.join("\n")}` : `${who}\n  (no environments yet)`;
}

export function registerAccessCommands(program: Command, client: ClientFactory): void {
  program
    .command("login")
    .description("check an API token against the server and save it (0600) for later commands; the token is read from stdin or a hidden prompt")
    .action(async () => {
      const token = process.stdin.isTTY ? await promptHidden("API token (input hidden): ") : await readStdinValue();
      const c = client({ token });
      const who = await c.login();
      const path = await saveCredentials({ url: c.url, token });
      process.stderr.write(`logged in to ${c.url} as ${describeWho(who)}\ncredentials saved to ${path}\n`);
    });

  program
    .command("logout")
    .description("forget the saved token")
    .action(async () => {
      process.stderr.write((await forgetCredentials()) ? "logged out\n" : "no saved token\n");
    });

  program
    .command("whoami")
    .description("the principal your token belongs to and its permissions on each environment")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const who = await client().whoami();
      if (o.json) printJson(who);
      else process.stdout.write(describeWho(who) + "\n");
    });

  const user = program.command("user").description("principals (people and agents) and their tokens; admin only");
  user
    .command("add <name>")
    .description("create a person (or with --agent, an agent identity) and print its API token once, on stdout")
    .requiredOption("--role <role>", 'a role from the environments\' rbac: (e.g. "engineering"), or "admin"')
    .option("--team <team>", "team name")
    .option("--agent", "an agent identity rather than a person")
    .option("--json", "print JSON (includes the token)")
    .action(async (name: string, o: { role: string; team?: string; agent?: boolean; json?: boolean }) => {
      const made = await client().principals.create({ name, role: o.role, kind: o.agent ? "agent" : "human", ...(o.team ? { team: o.team } : {}) });
      if (o.json) return printJson(made);
      process.stderr.write(`created ${made.principal.kind} ${made.principal.name} (role ${made.principal.role}). Its token, shown only now:\n`);
      process.stdout.write(made.token + "\n");
    });
  user
    .command("list")
    .description("every principal")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const list = await client().principals.list();
      if (o.json) return printJson(list);
      printTable(["NAME", "KIND", "ROLE", "TEAM", "CREATED", "DISABLED"], list.map((p) => [p.name, p.kind, p.role, p.team ?? "-", p.createdAt, p.disabledAt ?? "-"]));
    });
  user
    .command("token <name>")
    .description("issue another token for a principal (printed once, on stdout)")
    .option("--label <label>", "what the token is for")
    .action(async (name: string, o: { label?: string }) => {
      process.stdout.write((await client().principals.issueToken(name, o.label)).token + "\n");
    });
  user
    .command("tokens <name>")
    .description("a principal's tokens: id (the part after pdk_), label, created, last used, revoked")
    .option("--json", "print JSON")
    .action(async (name: string, o: { json?: boolean }) => {
      const list = await client().principals.tokens(name);
      if (o.json) return printJson(list);
      printTable(["ID", "LABEL", "CREATED", "LAST USED", "REVOKED"], list.map((t) => [t.id, t.label, t.createdAt, t.lastUsedAt ?? "never", t.revokedAt ?? "-"]));
    });
  user
    .command("revoke <name> <token-id>")
    .description("revoke one token (it stops working at once); the principal's other tokens keep working")
    .action(async (name: string, tokenId: string) => {
      await client().principals.revokeToken(name, tokenId);
      process.stderr.write(`revoked token ${tokenId} of ${name}\n`);
    });
  user
    .command("disable <name>")
    .description("disable a principal: its tokens stop working at once")
    .action(async (name: string) => {
      await client().principals.disable(name);
      process.stderr.write(`disabled ${name}\n`);
    });

  registerAuditCommands(program, client);
  registerApprovalCommands(program, client);
}

/** `--since` takes an ISO time or a duration back from now (`1h`, `30m`). */
export function sinceOf(value: string, now = Date.now()): string {
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const ms = Date.parse(value);
    if (Number.isNaN(ms)) throw new PaddockError("invalid_argument", `--since ${JSON.stringify(value)} is not a valid time (e.g. 2026-11-26T10:00:00Z or 2h)`);
    return new Date(ms).toISOString();
  }
  return new Date(now - parseDurationFlag(value)).toISOString();
}

function registerAuditCommands(program: Command, client: ClientFactory): void {
  const audit = program
    .command("audit")
    .description("the audit log: who did what, allowed or denied (records of environments you can read)")
    .option("--session <id>", "only this session")
    .option("--actor <name>", "only this principal (and agents acting for them)")
    .option("--env <name>", "only this environment")
    .option("--since <time>", "ISO time, or a duration back from now such as 2h")
    .option("--limit <n>", "at most this many records", "200")
    .option("--json", "print JSON")
    .action(async (o: { session?: string; actor?: string; env?: string; since?: string; limit: string; json?: boolean }) => {
      const f: AuditFilter = { limit: Number(o.limit), ...(o.session ? { session: o.session } : {}), ...(o.actor ? { actor: o.actor } : {}), ...(o.env ? { environment: o.env } : {}), ...(o.since ? { since: sinceOf(o.since) } : {}) };
      const records = await client().audit.list(f);
      if (o.json) return printJson(records);
      printTable(["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DECISION", "RULE"], records.map(row));
    });
  audit
    .command("verify")
    .description("recompute the hash chain; exit 1 and list the records when anything was changed, removed or inserted (admin)")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const r = await client().audit.verify();
      if (o.json) printJson(r);
      else if (r.ok) process.stdout.write(`audit log intact: ${r.records} records, chain verified up to record ${r.lastSeq}\n`);
      else {
        process.stdout.write(`audit log TAMPERED: ${r.problems.length} problem(s) in ${r.records} records\n`);
        for (const p of r.problems) process.stdout.write(`  record ${p.seq}: ${p.problem}\n`);
      }
      if (!r.ok) process.exitCode = 1;
    });
}

function row(r: AuditRecord): string[] {
  const actor = r.onBehalfOf ? `${r.actor} (for ${r.onBehalfOf})` : r.actor;
  return [String(r.seq), r.time, actor, r.action, r.target, r.decision, r.rule ?? "-"];
}

function registerApprovalCommands(program: Command, client: ClientFactory): void {
  program
    .command("approvals")
    .description("commands waiting for approval (guardrails.commands.ask); --all includes answered ones")
    .option("--all", "include approved, denied and expired")
    .option("--session <id>", "only this session")
    .option("--json", "print JSON")
    .action(async (o: { all?: boolean; session?: string; json?: boolean }) => {
      const list = await client().approvals.list({ ...(o.all ? {} : { state: "pending" as const }), ...(o.session ? { session: o.session } : {}) });
      if (o.json) return printJson(list);
      printTable(["ID", "SESSION", "BY", "COMMAND", "RULE", "STATE", "EXPIRES"], list.map((a) => [a.id, a.sessionId, a.requestedBy, a.argv.join(" "), a.rule, a.state, a.expiresAt]));
    });
  for (const verb of ["approve", "deny"] as const) {
    program
      .command(`${verb} <id>`)
      .description(verb === "approve" ? "let a waiting command run (needs write on its environment, and deploy when it deploys)" : "refuse a waiting command: it exits 126")
      .option("--reason <text>", "shown to the requester and kept in the audit log")
      .action(async (id: string, o: { reason?: string }) => {
        const a = await client().approvals[verb](id, o.reason);
        process.stderr.write(`${a.id} ${a.state}: ${a.argv.join(" ")}\n`);
      });
  }
}
