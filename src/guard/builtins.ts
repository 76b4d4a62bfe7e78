// Shell builtins, which are not programs: the ones that run nothing, and the ones that run code
// (`eval`, `source`, `trap`, `alias`, `command`, `exec` …), followed like wrappers.
import { parseOptions } from "./options.ts";
import type { ShellWord } from "./words.ts";
import { literal } from "./words.ts";
import { problem, startsRest, texts } from "./wrappers.ts";
import type { Inner, Wrapper } from "./wrappers.ts";

/** Builtins that start no program and run no code (`cd`, `export`, `read`, `:` …). */
export const RUNS_NOTHING: ReadonlySet<string> = new Set([
  "cd", "export", "set", "unset", "read", "exit", "return", "shift", "local", "declare", "typeset", "readonly",
  ":", "break", "continue", "wait", "jobs", "fg", "bg", "disown", "umask", "ulimit", "type", "getopts",
  "pushd", "popd", "dirs", "shopt", "caller", "history", "logout", "suspend", "times", "help", "unalias",
]);

const STDIN_PATHS = new Set(["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"]);
const fixed = (w: ShellWord | undefined): w is { kind: "literal"; text: string } => w?.kind === "literal";
const builtin = (unwrap: Wrapper["unwrap"]): Wrapper => ({ role: "builtin", unwrap });
const failsClosed = (reason: string, without: string): Wrapper => builtin(() => problem({ reason, without }));
/** Fails closed when any word is one of `options` (or a cluster holding one of its letters). */
const failsOn = (name: string, letters: string, reason: string): Wrapper =>
  builtin((_n, args) => (args.some((w) => w.kind !== "literal" || new RegExp(`^-[a-zA-Z]*[${letters}]`).test(w.text)) ? problem({ reason, without: `${name} -${letters[0] ?? ""}` }) : []));

/** `source FILE` runs the file as code: the file is the program. */
const source: Wrapper = builtin((name, args, stdin) => {
  const file = args[0];
  if (file === undefined) return [];
  if (!fixed(file)) return [{ kind: "file", path: file, via: name }];
  if (STDIN_PATHS.has(file.text) && stdin !== undefined) return [{ kind: "code", code: stdin, via: `${name} ${file.text}` }];
  if (/^\/(dev|proc)\//.test(file.text)) return problem({ reason: `${name} reads commands from ${file.text}`, without: `${name} ${file.text}` });
  return [{ kind: "file", path: file, via: name }];
});

/** `eval WORDS…` joins its arguments and runs them as a line of shell. */
const evaluate: Wrapper = builtin((_n, args) => {
  const code = texts(args);
  if (code === undefined) return problem({ reason: "eval runs a string that cannot be checked", without: "eval (run the command directly)" });
  return code.trim() === "" ? [] : [{ kind: "code", code: literal(code), via: "eval" }];
});

/** `trap CODE SIGNAL…`: CODE runs when the signal (or EXIT, DEBUG, ERR …) comes. */
const trap: Wrapper = builtin((_n, args) => {
  const a = args[0]?.kind === "literal" && args[0].text === "--" ? args.slice(1) : args;
  const code = a[0];
  if (code === undefined || a.length < 2) return [];
  if (fixed(code) && (code.text === "-" || code.text === "" || /^-[lp]$/.test(code.text))) return [];
  return [{ kind: "code", code, via: "trap" }];
});

/** `alias NAME=VALUE`: VALUE is code that runs wherever NAME is used. */
const alias: Wrapper = builtin((_n, args) => {
  const out: Inner[] = [];
  for (const w of args) {
    if (!fixed(w)) return problem({ reason: "an alias is defined from a value that cannot be checked", without: "the alias" });
    const eq = w.text.indexOf("=");
    if (eq > 0) out.push({ kind: "code", code: literal(w.text.slice(eq + 1)), via: "alias" });
  }
  return out;
});

/** `command [-p] CMD…` runs CMD (skipping functions); `command -v`/`-V` only looks it up. */
const command: Wrapper = builtin((name, args, stdin) => {
  const p = parseOptions(name, args, { flags: "pvV", values: "", long: {} });
  if (!("options" in p)) return problem(p);
  if (p.options.some((o) => o.name !== "p")) return [];
  return startsRest(name, p.rest, 0, undefined, stdin);
});

/** `exec [-cl] [-a NAME] CMD…` replaces the shell with CMD; without CMD it only redirects. */
const exec: Wrapper = builtin((name, args, stdin) => {
  const p = parseOptions(name, args, { flags: "cl", values: "a", long: {} });
  return "options" in p ? startsRest(name, p.rest, 0, undefined, stdin) : problem(p);
});

/** `coproc CMD…`; the `coproc NAME { …; }` form is not read as one command by the parser. */
const coproc: Wrapper = builtin((name, args, stdin) => {
  const first = args[0];
  if (fixed(first) && /^(\{|\(|if|while|until|for|case|select|\[\[|\(\()$/.test(first.text)) {
    return problem({ reason: "coproc runs a compound command the checker cannot read", without: "coproc (use a plain command or &)" });
  }
  return startsRest(name, args, 0, undefined, stdin);
});

/** `hash -p PATH NAME` makes NAME run PATH: PATH counts as a program of the line. */
const hash: Wrapper = builtin((_n, args) => {
  const i = args.findIndex((w) => fixed(w) && /^-[a-z]*p$/.test(w.text));
  if (i < 0) return [];
  const path = args[i + 1];
  return path === undefined ? [] : [{ kind: "file", path, via: "hash -p" }];
});

/** `let EXPR…`: quoted arithmetic can run `$(…)` inside array subscripts. */
const letBuiltin: Wrapper = builtin((_n, args) =>
  args.some((w) => fixed(w) && /\$\(|`/.test(w.text)) ? problem({ reason: "let evaluates text containing a command substitution", without: "$( or ` inside let" }) : [],
);

/** Builtins that run code, by name; only used for names written without a slash. */
export const BUILTINS: ReadonlyMap<string, Wrapper> = new Map<string, Wrapper>([
  ["command", command],
  ["builtin", builtin((name, args, stdin) => startsRest(name, args, 0, undefined, stdin))],
  ["exec", exec],
  ["eval", evaluate],
  ["source", source],
  [".", source],
  ["trap", trap],
  ["alias", alias],
  ["coproc", coproc],
  ["hash", hash],
  ["let", letBuiltin],
  ["fc", failsClosed("fc runs commands again from the shell history", "fc")],
  ["bind", failsOn("bind", "x", "bind -x runs a command the checker cannot follow")],
  ["complete", failsOn("complete", "CF", "complete -C/-F runs commands the checker cannot follow")],
  ["compgen", failsOn("compgen", "CF", "compgen -C/-F runs commands the checker cannot follow")],
  ["mapfile", failsOn("mapfile", "C", "mapfile -C runs a callback the checker cannot follow")],
  ["readarray", failsOn("readarray", "C", "readarray -C runs a callback the checker cannot follow")],
  ["enable", failsOn("enable", "f", "enable -f loads a builtin from a shared library")],
]);
