// The submission-time command check: every program a command line (or argv) can start, judged
// against `guardrails.commands`. It fails closed: a line it cannot read completely is denied
// with the construct to remove. Programs started by programs (`npm run`, `make`, interpreters'
// code strings) are not visible here; the in-sandbox enforcement applies the deny list to those.
import { Analyser, emptyAnalysis } from "./analyse.ts";
import type { Analysis, Use } from "./analyse.ts";
import { deploys, isBasic, matchesAllow, matchesBroad, normalisePath } from "./policy.ts";
import { createShellParser } from "./shell.ts";
import type { Unprovable } from "./shell.ts";
import { literal } from "./words.ts";
import { base } from "./wrappers.ts";

export { BASIC_TOOLS } from "./policy.ts";
// One list of defaults, owned by the environment-file schema (docs/guardrails.md shows it).
export { DEFAULT_DEPLOY_COMMANDS, DEFAULT_PROTECTED_BRANCHES } from "../config/index.ts";

/** `guardrails.commands` of an environment, as the check reads it. */
export interface CommandPolicy {
  /** Programs an agent or user may start (names or paths). Only applies when `allowListed`. */
  allow: string[];
  /** True when the environment file has an `allow:` key, even an empty one (then only BASIC_TOOLS run). */
  allowListed: boolean;
  /** Programs that may never run, whoever starts them. */
  deny: string[];
  /** Programs that need a person's approval each time. */
  ask: string[];
  /** Command prefixes that count as deploying, e.g. "npm publish", "kubectl apply", "git push". */
  deploy: string[];
  /** `git push` deploys only when a destination may be one of these (`*` matches any text). */
  protectedBranches: string[];
}

/** Where a rule was written, e.g. ("deny", 0) → "runtime.yml:18"; index -1 is the list's key. */
export type RuleLocator = (list: "allow" | "deny" | "ask" | "deploy", index: number) => string | undefined;

/** One program a command can start. */
export interface ProgramUse {
  /** The name as written after quote removal: "rm", "/usr/bin/rm", "./build.sh". */
  program: string;
  /** Its argument vector, argv[0] included; words only known at run time appear as written. */
  argv: string[];
  /** The wrappers and shells it is started through, outermost first, e.g. ["sudo", "bash -c"]. */
  via: string[];
}

/** The rule behind a verdict. For a program missing from the allow list: list "allow", index -1, entry "". */
export interface RuleRef {
  list: "allow" | "deny" | "ask" | "deploy";
  index: number;
  entry: string;
  /** Where the rule is written, e.g. "runtime.yml:18", when the locator knows. */
  at?: string;
}

/**
 * The decision on one command. `message` is one line for the agent or user, naming the program,
 * the rule and where it is written. A denied line that cannot be read has `rule: null` and
 * `program: ""`. `deploying` says whether an allowed line deploys (see `CommandPolicy.deploy`).
 */
export type CommandVerdict =
  | { verdict: "allow"; programs: ProgramUse[]; deploying: boolean }
  | { verdict: "ask"; programs: ProgramUse[]; program: string; rule: RuleRef; deploying: boolean; message: string }
  | { verdict: "deny"; programs: ProgramUse[]; program: string; rule: RuleRef | null; message: string };

/** Checks commands against a policy. Methods are synchronous; one parser serves every call. */
export interface CommandChecker {
  /**
   * Decides on a command: a bash line (string) or an argv array (argv[0] is the program and
   * nothing is shell-parsed, but wrappers such as `bash -c` and `env` are still followed).
   * @returns deny when the line cannot be read completely or starts a denied program (or one
   * outside the allow list); ask when it starts an `ask` program; otherwise allow.
   * @example checker.check("ls && rm x", policy).verdict // "deny"
   */
  check(command: string | string[], policy: CommandPolicy, locate?: RuleLocator): CommandVerdict;
  /** The analysis alone: every program the command can start, or why that cannot be known. */
  programs(command: string | string[]): { programs: ProgramUse[] } | { unprovable: string };
  /** Frees the parser. The checker must not be used afterwards. */
  close(): void;
}

/** Loads the bash grammar once. Rejects when it cannot be loaded. */
export async function createCommandChecker(): Promise<CommandChecker> {
  const parser = await createShellParser();
  const analyser = new Analyser(parser);
  const analyse = (command: string | string[]): Analysis | "empty" => {
    const out = emptyAnalysis();
    if (typeof command === "string" ? /^\s*(#[^\n]*\s*)*$/.test(command) : command.length === 0) return "empty";
    // execve ends every argument at its first NUL, so bash would see less than was checked.
    if ((typeof command === "string" ? [command] : command).some((a) => a.includes("\0"))) {
      out.problems.push({ reason: "the command holds a NUL byte", without: "NUL bytes" });
      return out;
    }
    try {
      if (typeof command === "string") analyser.line(command, out);
      else analyser.argv(command.map(literal), undefined, out);
    } catch (e) {
      // Thousands of nested ( ( ( … exhaust the walk's stack: refuse rather than crash.
      if (!(e instanceof RangeError)) throw e;
      out.problems.push({ reason: "the line is nested too deeply to check", without: "so much nesting" });
    }
    return out;
  };
  return {
    check(command, policy, locate) {
      const a = analyse(command);
      if (a === "empty") return { verdict: "deny", programs: [], program: "", rule: null, message: "paddock: command denied: the command is empty" };
      return decide(a, policy, locate ?? (() => undefined), analyser);
    },
    programs(command) {
      const a = analyse(command);
      if (a === "empty") return { unprovable: "the command is empty" };
      const p = a.problems[0];
      return p !== undefined ? { unprovable: p.reason } : { programs: a.uses.map((u) => u.use) };
    },
    close() {
      parser.close();
    },
  };
}

type Locate = RuleLocator;

function ref(list: RuleRef["list"], index: number, entry: string, locate: Locate): RuleRef {
  const at = locate(list, index);
  return at === undefined ? { list, index, entry } : { list, index, entry, at };
}

/** The decision order: unreadable → deny; deny rule; allow list; ask; deploying. */
function decide(a: Analysis, policy: CommandPolicy, locate: Locate, analyser: Analyser): CommandVerdict {
  const programs = a.uses.map((u) => u.use);
  const denied = firstDenied(a.uses, policy, locate) ?? hintedDenial(a.problems, policy, locate, analyser) ?? codeStringDenial(a.uses, policy, locate);
  if (denied !== undefined) {
    return { verdict: "deny", programs, ...denied, message: `paddock: '${denied.program}' denied by guardrails.commands.deny${at(denied.rule)}` };
  }
  const problem = a.problems[0] ?? (policy.allowListed && a.pathChanged ? PATH_CHANGED : undefined);
  if (problem !== undefined) {
    return { verdict: "deny", programs, program: "", rule: null, message: `paddock: command denied: ${problem.reason} (guardrails fail closed: write the command without ${problem.without})` };
  }
  if (policy.allowListed) {
    const free = (u: Use): boolean => u.passThrough || (u.functionCall && !a.unsets) || isBasic(u.use.program, u.args);
    const outside = a.uses.find((u) => !free(u) && !policy.allow.some((r) => matchesAllow(r, u.use.program)));
    if (outside !== undefined) {
      const rule = ref("allow", -1, "", locate);
      return { verdict: "deny", programs, program: outside.use.program, rule, message: `paddock: '${outside.use.program}' is not in guardrails.commands.allow${at(rule)}` };
    }
  }
  const deploying = a.uses.some((u) => policy.deploy.some((d) => deploys(d, u.use.program, u.args, policy.protectedBranches)));
  for (const u of a.uses) {
    const i = policy.ask.findIndex((r) => matchesBroad(r, u.use.program));
    if (i < 0) continue;
    const rule = ref("ask", i, policy.ask[i] as string, locate);
    const where = rule.at === undefined ? "" : `, ${rule.at}`;
    return { verdict: "ask", programs, program: u.use.program, rule, deploying, message: `paddock: '${u.use.program}' needs approval (guardrails.commands.ask${where})` };
  }
  return { verdict: "allow", programs, deploying };
}

const PATH_CHANGED: Unprovable = {
  reason: "the line changes PATH or a loader variable, so program names cannot be checked against guardrails.commands.allow",
  without: "changing PATH or LD_PRELOAD (name the program by its full path instead)",
};

function at(rule: RuleRef): string {
  return rule.at === undefined ? "" : ` (${rule.at})`;
}

interface Denial {
  program: string;
  rule: RuleRef;
}

/** The first program matching a deny rule, or a system binary a copier duplicates under a new name. */
function firstDenied(uses: readonly Use[], policy: CommandPolicy, locate: Locate): Denial | undefined {
  for (const u of uses) {
    const i = policy.deny.findIndex((r) => matchesBroad(r, u.use.program));
    if (i >= 0) return { program: u.use.program, rule: ref("deny", i, policy.deny[i] as string, locate) };
  }
  for (const u of uses) {
    if (!COPIERS.has(base(u.use.program))) continue;
    for (const w of u.args) {
      if (w.kind !== "literal" || !w.text.startsWith("/")) continue;
      const i = policy.deny.findIndex((r) => systemCopyOf(r, w.text));
      if (i >= 0) return { program: w.text, rule: ref("deny", i, policy.deny[i] as string, locate) };
    }
  }
  return undefined;
}

// `ln -s /bin/rm /tmp/d; /tmp/d` would start rm under another name. Copying or linking a denied
// program's file out of a system directory counts as running it (in-sandbox enforcement catches
// the copies this misses, e.g. `cat /bin/rm > d`).
const COPIERS = new Set(["cp", "ln", "install", "mv", "rsync", "link"]);

function systemCopyOf(rule: string, path: string): boolean {
  const p = normalisePath(path);
  return matchesBroad(rule, p) && /^\/usr\/(local\/)?s?bin\/[^/]+$/.test(p);
}

// Interpreters given code on the command line. What the code runs is not analysed (the exec guard
// in the sandbox stops it); but code that names a denied program cannot be shown safe here, so it
// is refused at once with the rule — the agent gets the same actionable line and exit 126.
const CODE_FLAGS: ReadonlyMap<RegExp, ReadonlySet<string>> = new Map([
  [/^python(\d+(\.\d+)?)?$/, new Set(["-c"])],
  [/^(node|nodejs|deno|bun)$/, new Set(["-e", "--eval", "-p", "--print"])],
  [/^(perl|ruby)$/, new Set(["-e", "-E"])],
  [/^php$/, new Set(["-r"])],
  [/^(lua|luajit)$/, new Set(["-e"])],
]);

function codeStringDenial(uses: readonly Use[], policy: CommandPolicy, locate: Locate): Denial | undefined {
  for (const u of uses) {
    const flags = [...CODE_FLAGS].find(([re]) => re.test(base(u.use.program)))?.[1];
    if (!flags) continue;
    for (let i = 0; i < u.args.length; i++) {
      const flag = u.args[i];
      const code = u.args[i + 1];
      if (flag?.kind !== "literal" || !flags.has(flag.text) || code?.kind !== "literal") continue;
      for (const [j, rule] of policy.deny.entries()) {
        const name = base(rule);
        const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        // The name as a word of its own, bare or at the end of a path: `"rm"`, `/bin/rm x`, not `firm` or `rm.txt`.
        const word = new RegExp(String.raw`(^|[^\w.\-/])(/[\w./-]*/)?` + escaped + String.raw`($|[^\w.\-])`);
        if (word.test(code.text)) return { program: name, rule: ref("deny", j, rule, locate) };
      }
    }
  }
  return undefined;
}

/** When a line cannot be read but what it suggests (`a=rm; $a`) is denied, name that rule. */
function hintedDenial(problems: readonly Unprovable[], policy: CommandPolicy, locate: Locate, analyser: Analyser): Denial | undefined {
  for (const p of problems) {
    for (const hint of p.hints ?? []) {
      const out = emptyAnalysis();
      analyser.line(hint, out);
      const d = firstDenied(out.uses, policy, locate);
      if (d !== undefined) return d;
    }
  }
  return undefined;
}
