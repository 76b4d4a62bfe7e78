// How rules match programs, which programs are basic tools, and which uses are deploying.
// No filesystem access: paths are compared as text, with the merged-/usr layout and the default
// PATH assumed (/bin is /usr/bin, /sbin is /usr/sbin).
import type { ShellWord } from "./words.ts";
import { FIND_VALUES, base } from "./wrappers.ts";

/** Directories a bare program name may resolve to (the default PATH, merged-/usr). */
const SYSTEM_DIRS = new Set(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"]);

/**
 * Read-only tools an agent may always start, even with an allow list (by name, or from a system
 * directory). `env` is absent on purpose: as a wrapper it needs no entry, alone it is not basic.
 * `find` is basic unless it writes (-delete, -fprint…); `sort` unless it writes (-o).
 */
export const BASIC_TOOLS: readonly string[] = Object.freeze([
  "ls", "cat", "head", "tail", "wc", "grep", "pwd", "echo", "printf", "true", "false", "test", "[",
  "which", "stat", "file", "du", "df", "sort", "uniq", "cut", "tr", "diff", "date", "whoami", "id",
  "basename", "dirname", "realpath", "readlink", "find",
]);

/** Lexical path clean-up: `//`, `.`, `..`, and /bin → /usr/bin, /sbin → /usr/sbin, /lib → /usr/lib. */
export function normalisePath(path: string): string {
  const absolute = path.startsWith("/");
  const parts: string[] = [];
  for (const p of path.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === ".." && parts.length > 0 && parts[parts.length - 1] !== "..") parts.pop();
    else if (p !== ".." || !absolute) parts.push(p);
  }
  if (absolute && ["bin", "sbin", "lib", "lib64"].includes(parts[0] ?? "") && parts.length > 1) parts.unshift("usr");
  return (absolute ? "/" : "") + parts.join("/");
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** A bare name, or a path in a system directory. */
function fromSystem(program: string): boolean {
  if (!program.includes("/")) return true;
  return program.startsWith("/") && SYSTEM_DIRS.has(dirOf(normalisePath(program)));
}

/**
 * Deny, ask and deploy matching, which leans towards matching: a name rule matches that name at
 * any path (`rm` matches `/usr/bin/rm`, `./rm`, `~/bin/rm`); a path rule matches that path, a bare
 * name that resolves there, and a relative path with the same name (its directory is unknown).
 */
export function matchesBroad(rule: string, program: string): boolean {
  if (!rule.includes("/")) return base(program) === rule;
  const r = normalisePath(rule);
  if (!rule.startsWith("/")) return normalisePath(program) === r;
  if (!program.includes("/")) return base(r) === program && SYSTEM_DIRS.has(dirOf(r));
  if (!program.startsWith("/")) return base(program) === base(r);
  return normalisePath(program) === r;
}

/**
 * Allow matching, which leans the other way: a name rule matches the program started by that
 * name or from a system directory (`npm`, `/usr/bin/npm`), not a file of that name elsewhere
 * (`./npm`); a path rule matches that path, or a bare name that resolves there.
 */
export function matchesAllow(rule: string, program: string): boolean {
  if (!rule.includes("/")) return base(program) === rule && fromSystem(program);
  const r = normalisePath(rule);
  if (rule.startsWith("/") && !program.includes("/")) return base(r) === program && SYSTEM_DIRS.has(dirOf(r));
  return normalisePath(program) === r;
}

/** True when a use of a basic tool runs nothing but reads (see BASIC_TOOLS). */
export function isBasic(program: string, args: readonly ShellWord[]): boolean {
  const name = base(program);
  if (!fromSystem(program) || !BASIC_TOOLS.includes(name)) return false;
  if (name === "find") return findReadsOnly(args);
  if (name === "sort") return !args.some((w) => w.kind !== "literal" || /^(-[a-zA-Z]*o|--o)/.test(w.text));
  return true;
}

function findReadsOnly(args: readonly ShellWord[]): boolean {
  return args.every((w, i) => {
    const prev = args[i - 1];
    if (w.kind !== "literal") return prev?.kind === "literal" && FIND_VALUES.has(prev.text);
    return !/^-(delete|fprint|fprint0|fprintf|fls)$/.test(w.text);
  });
}

/**
 * Whether a use matches a deploy entry. An entry is a program and words, e.g. "kubectl apply":
 * the program matches as in deny rules; each further word must follow among the arguments that
 * are not options, in order, where a word right after an option may be skipped as that option's
 * value (`kubectl -n prod apply`). Entry words starting with `-` (`vercel --prod`) must appear
 * anywhere. A word only known at run time matches anything. `git push` is special: see gitPush.
 */
export function deploys(entry: string, program: string, args: readonly ShellWord[], protectedBranches: readonly string[]): boolean {
  const [head, ...words] = entry.trim().split(/\s+/);
  if (head === undefined || head === "" || !matchesBroad(head, program)) return false;
  if (base(head) === "git" && words.length === 1 && words[0] === "push") return gitPush(args, protectedBranches);
  const options = words.filter((w) => w.startsWith("-"));
  const wanted = words.filter((w) => !w.startsWith("-"));
  const present = (o: string): boolean => args.some((a) => a.kind !== "literal" || a.text === o || a.text.startsWith(`${o}=`));
  return options.every(present) && inOrder(operands(args), wanted);
}

interface Operand {
  word: ShellWord;
  maybeValue: boolean;
}

function operands(args: readonly ShellWord[]): Operand[] {
  const out: Operand[] = [];
  let afterOption = false;
  let ended = false;
  for (const w of args) {
    if (!ended && w.kind === "literal" && w.text === "--") {
      ended = true;
    } else if (!ended && w.kind === "literal" && w.text.startsWith("-") && w.text !== "-") {
      afterOption = !w.text.includes("=");
    } else {
      out.push({ word: w, maybeValue: afterOption });
      afterOption = false;
    }
  }
  return out;
}

function inOrder(items: readonly Operand[], wanted: readonly string[], i = 0, k = 0): boolean {
  if (k === wanted.length) return true;
  const item = items[i];
  if (item === undefined) return false;
  const hit = item.word.kind !== "literal" || item.word.text === wanted[k];
  if (hit && inOrder(items, wanted, i + 1, k + 1)) return true;
  return item.maybeValue && inOrder(items, wanted, i + 1, k);
}

const GIT_VALUE_OPTIONS = new Set(["-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env", "--super-prefix", "--list-cmds"]);
const PUSH_VALUE_OPTIONS = new Set(["-o", "--push-option", "--repo", "--receive-pack", "--exec"]);

/**
 * `git [global options] push …` deploys when a destination may be a protected branch: no
 * refspec (the current branch), --all/--branches/--mirror, a refspec with `*`, HEAD or `@`, or
 * a destination (`src:dst`, `+dst`, `refs/heads/dst`) matching a protected pattern. --dry-run
 * never deploys; --tags alone pushes only tags.
 */
function gitPush(args: readonly ShellWord[], protectedBranches: readonly string[]): boolean {
  let i = 0;
  while (i < args.length) {
    const w = args[i] as ShellWord;
    if (w.kind !== "literal") return true;
    if (!w.text.startsWith("-")) break;
    i += GIT_VALUE_OPTIONS.has(w.text) ? 2 : 1;
  }
  const sub = args[i];
  if (sub === undefined) return false;
  if (sub.kind !== "literal") return true;
  if (sub.text !== "push") return false;
  const flags = new Set<string>();
  const ops: ShellWord[] = [];
  let ended = false;
  for (let j = i + 1; j < args.length; j++) {
    const w = args[j] as ShellWord;
    if (w.kind !== "literal") {
      if (w.split && !ended) return true;
      ops.push(w);
    } else if (!ended && w.text === "--") {
      ended = true;
    } else if (!ended && w.text.startsWith("-")) {
      if (PUSH_VALUE_OPTIONS.has(w.text)) j++;
      flags.add(w.text.split("=")[0] as string);
      if (/^-[a-zA-Z]*n[a-zA-Z]*$/.test(w.text)) flags.add("--dry-run");
    } else {
      ops.push(w);
    }
  }
  if (flags.has("--dry-run")) return false;
  if (flags.has("--all") || flags.has("--branches") || flags.has("--mirror")) return true;
  const refspecs = ops.slice(1);
  if (refspecs.length === 0) return !flags.has("--tags");
  return refspecs.some((r) => mayHit(r, protectedBranches));
}

function mayHit(refspec: ShellWord, protectedBranches: readonly string[]): boolean {
  if (refspec.kind !== "literal") return true;
  const r = refspec.text.replace(/^\+/, "");
  const colon = r.indexOf(":");
  let dst = colon < 0 ? r : r.slice(colon + 1) || r.slice(0, colon);
  if (dst === "" || dst.includes("*") || /^(HEAD|@)$/.test(dst) || /[~^@{]/.test(dst)) return true;
  if (dst.startsWith("refs/heads/")) dst = dst.slice("refs/heads/".length);
  else if (dst.startsWith("refs/")) return false;
  return protectedBranches.some((p) => globMatch(p, dst));
}

/** `*` matches any run of characters (including `/`); everything else matches itself. */
export function globMatch(pattern: string, text: string): boolean {
  const re = pattern.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
  return new RegExp(`^${re}$`, "s").test(text);
}
