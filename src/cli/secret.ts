/**
 * `paddock secret set|list|rm`. A value is read from stdin when it is piped, else from a hidden
 * prompt; never from the command line, where it would stay in shell history and show in `ps`.
 * Nothing here ever prints a value.
 */
import { Option, type Command } from "commander";
import type { PaddockClient, SecretInfo, SecretScopeOptions } from "../client/index.ts";
import { PaddockError } from "../core/index.ts";
import { printJson, printTable } from "./output.ts";

const NAME_RE = /^[A-Z_][A-Z0-9_]*$/;

interface ScopeFlags {
  env?: string;
  team?: string;
  agent?: string;
}

export function registerSecretCommands(program: Command, client: () => PaddockClient): void {
  const secret = program.command("secret").description("set, list and remove secrets (sandboxes only ever see placeholders)");

  withScopeFlags(secret.command("set <name>"))
    .argument("[value...]", "refused: pipe the value on stdin instead")
    .addOption(new Option("--value <value>", "refused: pipe the value on stdin instead").hideHelp())
    .description("set a secret's value, read from stdin when piped (one trailing newline is dropped), else typed at a hidden prompt")
    .action(async (name: string, extra: string[], o: ScopeFlags & { value?: string }) => {
      if (extra.length > 0 || o.value !== undefined) {
        // The value is already in this process's argv and the shell's history; say so without repeating it.
        throw new PaddockError(
          "invalid_argument",
          `secret values are never taken from the command line (shell history, \`ps\`). Pipe it instead: printf %s "$VALUE" | paddock secret set ${name}` +
            " (or run the command in a terminal to type it hidden). If you just typed a real value, consider rotating it.",
        );
      }
      checkName(name);
      const scope = scopeOf(o);
      const value = process.stdin.isTTY ? await promptHidden(`value for ${name} (input hidden): `) : await readStdinValue();
      await client().secrets.set(name, value, scope);
      process.stderr.write(`secret ${name} set (${scopeLabel(scope)})\n`);
    });

  secret
    .command("list")
    .description("list secrets: name, scope, when set and last used (values are never shown)")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const list = await client().secrets.list();
      if (o.json) return printJson(list);
      const withHosts = list.some((s) => s.hosts !== undefined);
      const row = (s: SecretInfo) => [s.name, scopeLabel(s.scope), s.updatedAt, s.lastUsedAt ?? "never", ...(withHosts ? [(s.hosts ?? []).join(",") || "-"] : [])];
      printTable(["NAME", "SCOPE", "UPDATED", "LAST USED", ...(withHosts ? ["HOSTS"] : [])], list.map(row));
    });

  withScopeFlags(secret.command("rm <name>"))
    .description("delete a secret's value in one scope (no scope flag: the global value); exit 3 when there is none")
    .action(async (name: string, o: ScopeFlags) => {
      checkName(name);
      const scope = scopeOf(o);
      await client().secrets.remove(name, scope);
      process.stderr.write(`secret ${name} removed (${scopeLabel(scope)})\n`);
    });
}

function withScopeFlags(cmd: Command): Command {
  return cmd
    .option("--env <environment>", "scope: only sessions of this environment")
    .option("--team <team>", "scope: only sessions started for this team")
    .option("--agent <agent>", "scope: only sessions of this agent identity");
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new PaddockError("invalid_argument", `secret name ${JSON.stringify(name)} is not valid: use upper-case letters, digits and _ (e.g. STRIPE_API_KEY)`);
}

function scopeOf(o: ScopeFlags): SecretScopeOptions {
  const scope: SecretScopeOptions = { ...(o.env ? { environment: o.env } : {}), ...(o.team ? { team: o.team } : {}), ...(o.agent ? { agent: o.agent } : {}) };
  if (Object.keys(scope).length > 1) throw new PaddockError("invalid_argument", "give at most one of --env, --team, --agent (a secret value has one scope)");
  return scope;
}

/** `global`, `env:NAME`, `team:NAME` or `agent:NAME`. */
export function scopeLabel(scope: SecretScopeOptions): string {
  if (scope.agent) return `agent:${scope.agent}`;
  if (scope.team) return `team:${scope.team}`;
  if (scope.environment) return `env:${scope.environment}`;
  return "global";
}

/** All of stdin, minus one trailing newline (what `echo` and here-strings add). */
export async function readStdinValue(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
  const value = Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
  if (value === "") throw new PaddockError("invalid_argument", "no value on stdin: pipe the value, e.g. printf %s \"$VALUE\" | paddock secret set NAME");
  return value;
}

/** What the hidden prompt has read so far. */
export interface PromptState {
  chars: string[];
  done: boolean;
  cancelled: boolean;
  /** Inside an escape sequence (arrow keys and the like), which is skipped. */
  escape: boolean;
}

export const emptyPrompt = (): PromptState => ({ chars: [], done: false, cancelled: false, escape: false });

/**
 * Apply raw-mode keystrokes to the prompt: Enter ends, Ctrl-C cancels, Ctrl-D ends, Backspace and
 * Delete remove the last character, Ctrl-U clears, escape sequences and other control keys are ignored.
 */
export function applyKeys(state: PromptState, chunk: string): PromptState {
  const s: PromptState = { ...state, chars: [...state.chars] };
  for (const ch of chunk) {
    if (s.done || s.cancelled) break;
    if (s.escape) {
      // CSI sequences end with a byte in @..~ (after the "["); a lone ESC+char ends at that char.
      if (ch !== "[" && ch >= "@" && ch <= "~") s.escape = false;
      continue;
    }
    const code = ch.codePointAt(0) ?? 0;
    if (ch === "\r" || ch === "\n" || ch === "\u0004") s.done = true;
    else if (ch === "\u0003") s.cancelled = true;
    else if (ch === "\u007f" || ch === "\b") s.chars.pop();
    else if (ch === "\u0015") s.chars.length = 0;
    else if (ch === "\u001b") s.escape = true;
    else if (code >= 0x20) s.chars.push(ch);
  }
  return s;
}

/** Read a line from the terminal without echoing it. Ctrl-C exits 130 like other commands. */
export function promptHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  const output = process.stderr;
  return new Promise((resolve) => {
    output.write(prompt);
    let state = emptyPrompt();
    input.setRawMode(true);
    input.setEncoding("utf8");
    const onData = (chunk: string) => {
      state = applyKeys(state, chunk);
      if (!state.done && !state.cancelled) return;
      input.off("data", onData);
      input.setRawMode(false);
      input.pause();
      output.write("\n");
      if (state.cancelled) {
        output.write("paddock: cancelled\n");
        process.exit(130);
      }
      if (state.chars.length === 0) {
        output.write("paddock: no value typed; nothing set\n");
        process.exit(2);
      }
      resolve(state.chars.join(""));
    };
    input.on("data", onData);
    input.resume();
  });
}
