// Programs and builtins that start other programs, and how to find what they start:
// `env rm`, `timeout 5 rm`, `sudo rm`, `xargs rm`, `find -exec rm`, `bash -c 'rm'`, `eval rm` …
// Each entry reads the wrapper's own options exactly (options.ts) and fails closed where the
// started program cannot be known.
import { has, notFixed, parseOptions, valueOf } from "./options.ts";
import type { OptionSpec } from "./options.ts";
import type { Unprovable } from "./shell.ts";
import type { ShellWord } from "./words.ts";
import { literal } from "./words.ts";

/** What a wrapper starts. */
export type Inner =
  /** A program with these words (its own wrappers are unwrapped in turn). */
  | { kind: "argv"; words: ShellWord[]; via: string; stdin?: ShellWord | undefined }
  /** Shell code (`bash -c CODE`), scanned as a line of its own; `positional` is `$0 $1 …`. */
  | { kind: "code"; code: ShellWord; via: string; positional?: ShellWord[] }
  /** A file run as code (`source FILE`, `hash -p FILE name`): the file is the program. */
  | { kind: "file"; path: ShellWord; via: string }
  | { kind: "problem"; problem: Unprovable };

/**
 * `wrapper`: a program that only changes how the program it starts runs (env, timeout, xargs, …);
 * it needs no allow entry of its own when it starts one. `program`: itself a program to allow
 * (sudo, busybox, a shell running a script). `builtin`: a shell builtin, not a program at all.
 */
export interface Wrapper {
  role: "wrapper" | "program" | "builtin";
  unwrap(name: string, args: ShellWord[], stdin: ShellWord | undefined): Inner[];
}

export const problem = (p: Unprovable): Inner[] => [{ kind: "problem", problem: p }];
const failsClosed = (reason: string, without: string): Wrapper => ({ role: "program", unwrap: () => problem({ reason, without }) });
export const texts = (ws: readonly ShellWord[]): string | undefined =>
  ws.every((w) => w.kind === "literal") ? ws.map((w) => (w.kind === "literal" ? w.text : "")).join(" ") : undefined;

/**
 * A wrapper read by getopt: `none` options mean it starts nothing; `operands` fixed words
 * (timeout's DURATION, taskset's MASK) come before the program.
 */
function getopt(
  role: Wrapper["role"],
  spec: OptionSpec,
  more: { none?: string[]; operands?: number; skip?: (w: ShellWord) => boolean; empty?: string[] } = {},
): Wrapper {
  return {
    role,
    unwrap(name, args, stdin) {
      const p = parseOptions(name, args, spec);
      if (!("options" in p)) return problem(p);
      if (has(p, ...(more.none ?? []))) return [];
      return startsRest(name, p.rest, more.operands ?? 0, more.skip, stdin, more.empty);
    },
  };
}

export function startsRest(
  name: string,
  rest: ShellWord[],
  operands: number,
  skip: ((w: ShellWord) => boolean) | undefined,
  stdin: ShellWord | undefined,
  empty?: string[],
): Inner[] {
  let i = 0;
  for (; i < rest.length && (i < operands || (skip?.(rest[i] as ShellWord) ?? false)); i++) {
    const w = rest[i] as ShellWord;
    if (w.kind !== "literal") return problem(notFixed(name, w));
  }
  const words = rest.slice(i);
  if (words.length === 0) return empty === undefined ? [] : [{ kind: "argv", words: empty.map(literal), via: base(name), stdin }];
  return [{ kind: "argv", words, via: base(name), stdin }];
}

export function base(path: string): string {
  const parts = path.split("/");
  return parts[parts.length - 1] ?? path;
}

/** NAME=VALUE, also when VALUE is only known at run time but stays one word (`A="$x"`). */
const isAssignment = (w: ShellWord): boolean => /^[A-Za-z_][A-Za-z0-9_]*=/.test(w.kind === "literal" ? w.text : w.split ? "" : w.prefix);
const isNumber = (w: ShellWord): boolean => w.kind === "literal" && /^-?\d+$/.test(w.text);

const ENV_SPEC: OptionSpec = {
  flags: "iv0", values: "uCS",
  long: { "ignore-environment": "flag", null: "flag", unset: "value", chdir: "value", "split-string": "value", debug: "flag", "block-signal": "optional", "default-signal": "optional", "ignore-signal": "optional", "list-signal-handling": "flag", help: "flag", version: "flag" },
};

/** `env [-i] [-u NAME] [-C DIR] [-S STRING] [NAME=VALUE]… [CMD…]`. */
const env: Wrapper = {
  role: "wrapper",
  unwrap(name, args, stdin) {
    const p = parseOptions(name, args, ENV_SPEC);
    if (!("options" in p)) return problem(p);
    if (has(p, "help", "version", "list-signal-handling")) return [];
    const split = valueOf(p, "S", "split-string");
    if (split !== undefined) {
      // -S splits one string into arguments, which env then reads like its own (options too).
      const words = splitString(split);
      if (words === undefined) return problem({ reason: "env -S expands variables in its string", without: "$ in the env -S string" });
      return env.unwrap(name, [...words.map(literal), ...p.rest], stdin);
    }
    // A lone "-" right after the options means -i.
    let i = p.rest[0]?.kind === "literal" && p.rest[0].text === "-" ? 1 : 0;
    while (i < p.rest.length && isAssignment(p.rest[i] as ShellWord)) i++;
    return startsRest(name, p.rest.slice(i), 0, undefined, stdin);
  },
};

/** env -S splitting: blanks separate words; quotes and backslashes as in env(1); `$` fails closed. */
export function splitString(s: string): string[] | undefined {
  if (s.includes("$")) return undefined;
  const out: string[] = [];
  let cur: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (/\s/.test(c)) {
      if (cur !== undefined) out.push(cur);
      cur = undefined;
    } else if (c === "'" || c === '"') {
      const end = s.indexOf(c, i + 1);
      if (end < 0) return undefined;
      cur = (cur ?? "") + s.slice(i + 1, end);
      i = end;
    } else if (c === "\\" && i + 1 < s.length) {
      const n = s[++i] as string;
      cur = (cur ?? "") + ({ _: " ", n: "\n", t: "\t", f: "\f", v: "\v", r: "\r" }[n] ?? n);
    } else if (c === "#" && cur === undefined) {
      break;
    } else {
      cur = (cur ?? "") + c;
    }
  }
  if (cur !== undefined) out.push(cur);
  return out;
}

const sudo = getopt("program", {
  flags: "AbBEeHiKklNnPSsVv", values: "CDghpRrTUtu",
  long: { askpass: "flag", background: "flag", bell: "flag", "close-from": "value", chdir: "value", "preserve-env": "optional", edit: "flag", group: "value", "set-home": "flag", help: "flag", host: "value", login: "flag", "remove-timestamp": "flag", "reset-timestamp": "flag", list: "flag", "non-interactive": "flag", "preserve-groups": "flag", prompt: "value", chroot: "value", role: "value", stdin: "flag", shell: "flag", type: "value", "command-timeout": "value", "other-user": "value", user: "value", version: "flag", validate: "flag" },
}, { none: ["e", "edit", "l", "list", "V", "version", "K", "remove-timestamp", "v", "validate", "help"], skip: isAssignment });

/** `su -c CODE` and `runuser -u USER CMD…`; without either they start a login shell (not followed). */
const su: Wrapper = {
  role: "program",
  unwrap(name, args) {
    const p = parseOptions(name, args, {
      flags: "lmpfPhV", values: "cgGswu", permute: true,
      long: { command: "value", "session-command": "value", group: "value", "supp-group": "value", shell: "value", login: "flag", "preserve-environment": "flag", pty: "flag", "whitelist-environment": "value", fast: "flag", help: "flag", version: "flag", user: "value" },
    });
    if (!("options" in p)) return problem(p);
    const rest = p.rest.filter((w) => !(w.kind === "literal" && w.text === "-"));
    const code = valueOf(p, "c", "command", "session-command");
    if (code !== undefined) return [{ kind: "code", code: literal(code), via: `${base(name)} -c`, positional: rest.slice(1) }];
    if (base(name) === "runuser" && has(p, "u", "user")) return startsRest(name, rest, 0, undefined, undefined);
    return [];
  },
};

const xargs = getopt("wrapper", {
  flags: "0oprtx", values: "adEILnPs", optional: "eil",
  long: { null: "flag", "arg-file": "value", delimiter: "value", eof: "optional", replace: "optional", "max-lines": "optional", "max-args": "value", "max-procs": "value", "max-chars": "value", interactive: "flag", "no-run-if-empty": "flag", verbose: "flag", exit: "flag", "show-limits": "flag", "open-tty": "flag", "process-slot-var": "value", help: "flag", version: "flag" },
}, { none: ["help", "version", "show-limits"], empty: ["echo"] });

const SHELL_FLAGS = "abefhkmnptuvxBCEHPTilrsDc";
const SHELL_LONG = new Set(["login", "noprofile", "norc", "posix", "restricted", "verbose", "debugger", "dump-strings", "dump-po-strings", "noediting", "protected", "wordexp", "pretty-print", "help", "version"]);
const STDIN_PATHS = new Set(["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"]);

/** `bash -c CODE $0 $1…`, `sh -lc`, `bash -euo pipefail -c`, `bash <<EOF`, `bash script.sh`. */
const shell: Wrapper = {
  role: "wrapper",
  unwrap(name, args, stdin) {
    const via = base(name);
    const out: Inner[] = [];
    let command = false;
    let readsStdin = false;
    let i = 0;
    for (; i < args.length; i++) {
      const w = args[i] as ShellWord;
      // After -c, a word that stays one word is the code (checked as such), not an option.
      if (w.kind !== "literal" && command && !w.split) break;
      if (w.kind !== "literal") return problem(notFixed(via, w));
      const t = w.text;
      if (t === "--" || t === "-") {
        i++;
        break;
      }
      if (/^--(rcfile|init-file)$/.test(t)) {
        out.push({ kind: "file", path: args[++i] ?? literal(""), via: `${via} ${t}` });
      } else if (t.startsWith("--")) {
        if (!SHELL_LONG.has(t.slice(2))) return problem({ reason: `${via} has an option the checker does not know (${t})`, without: `the ${via} option ${t}` });
      } else if (/^[-+]/.test(t)) {
        for (const c of t.slice(1)) {
          if (c === "o" || c === "O") {
            const v = args[++i];
            if (v !== undefined && v.kind !== "literal") return problem(notFixed(via, v));
          } else if (!SHELL_FLAGS.includes(c)) return problem({ reason: `${via} has an option the checker does not know (-${c})`, without: `the ${via} option -${c}` });
          if (c === "c") command = true;
          if (c === "s") readsStdin = true;
        }
      } else break;
    }
    const operands = args.slice(i);
    const first = operands[0];
    if (command) return first === undefined ? out : [...out, { kind: "code", code: first, via: `${via} -c`, positional: operands.slice(1) }];
    if (first !== undefined && !readsStdin) {
      if (first.kind !== "literal") return problem(notFixed(via, first));
      if (!STDIN_PATHS.has(first.text)) return /^\/(dev|proc)\//.test(first.text) ? problem({ reason: `${via} reads commands from ${first.text}`, without: `${via} ${first.text}` }) : out;
    }
    // Commands on stdin are checked when the line holds them (a here-document or here-string).
    return stdin === undefined ? out : [...out, { kind: "code", code: stdin, via: `${via} <<` }];
  },
};

/** Tests of find whose value is one word that cannot start an action. */
export const FIND_VALUES = new Set(["-name", "-iname", "-path", "-ipath", "-wholename", "-iwholename", "-regex", "-iregex", "-lname", "-ilname", "-newer", "-anewer", "-cnewer", "-type", "-xtype", "-user", "-group", "-uid", "-gid", "-perm", "-size", "-mtime", "-mmin", "-atime", "-amin", "-ctime", "-cmin", "-used", "-inum", "-links", "-samefile", "-maxdepth", "-mindepth", "-printf", "-fstype", "-context", "-regextype"]);

/** `find … -exec CMD {} ;` (and -execdir, -ok, -okdir): every command it runs. */
const find: Wrapper = {
  role: "program",
  unwrap(name, args) {
    const out: Inner[] = [];
    // A word only known at run time could itself be `-exec`; that needs a `;` or `+` to end it.
    const ended = args.some(isEnd);
    for (let i = 0; i < args.length; i++) {
      const w = args[i] as ShellWord;
      const prev = args[i - 1];
      if (w.kind !== "literal") {
        if (!w.split && (!ended || (prev?.kind === "literal" && FIND_VALUES.has(prev.text)))) continue;
        return problem(notFixed(base(name), w));
      }
      if (!/^-(exec|execdir|ok|okdir)$/.test(w.text)) continue;
      let j = i + 1;
      while (j < args.length && !isEnd(args[j] as ShellWord)) j++;
      const words = args.slice(i + 1, j);
      const program = words[0];
      if (program?.kind === "literal" && program.text.includes("{}")) return problem({ reason: `find ${w.text} runs the files it finds`, without: `{} as the program of find ${w.text}` });
      if (words.length > 0) out.push({ kind: "argv", words, via: `find ${w.text}` });
      i = j;
    }
    return out;
  },
};
const isEnd = (w: ShellWord): boolean => w.kind === "literal" && (w.text === ";" || w.text === "+");

/** `watch CMD…` joins its arguments into one shell command; `watch -x` runs them as they are. */
const watch: Wrapper = {
  role: "wrapper",
  unwrap(name, args) {
    const p = parseOptions(name, args, {
      flags: "bcCeghprtwx", values: "nq", optional: "d",
      long: { beep: "flag", color: "flag", "no-color": "flag", differences: "optional", errexit: "flag", chgexit: "flag", interval: "value", precise: "flag", equexit: "value", "no-rerun": "flag", "no-title": "flag", "no-wrap": "flag", exec: "flag", help: "flag", version: "flag" },
    });
    if (!("options" in p)) return problem(p);
    if (p.rest.length === 0) return [];
    if (has(p, "x", "exec")) return [{ kind: "argv", words: p.rest, via: "watch -x" }];
    const code = texts(p.rest);
    return code === undefined ? problem(notFixed("watch", p.rest.find((w) => w.kind !== "literal") as ShellWord)) : [{ kind: "code", code: literal(code), via: "watch" }];
  },
};

/** `flock [opts] FILE CMD…`, `flock [opts] FILE -c CODE`, `flock [opts] FD`. */
const flock: Wrapper = {
  role: "wrapper",
  unwrap(name, args, stdin) {
    const p = parseOptions(name, args, {
      flags: "sexnuoFhV", values: "wEc",
      long: { shared: "flag", exclusive: "flag", unlock: "flag", nonblock: "flag", nb: "flag", close: "flag", "no-fork": "flag", "conflict-exit-code": "value", wait: "value", timeout: "value", command: "value", verbose: "flag", help: "flag", version: "flag" },
    });
    if (!("options" in p)) return problem(p);
    const [file, flag, code] = p.rest;
    if (file !== undefined && file.kind !== "literal") return problem(notFixed("flock", file));
    const c = valueOf(p, "c", "command");
    if (c !== undefined) return [{ kind: "code", code: literal(c), via: "flock -c" }];
    if (flag?.kind === "literal" && (flag.text === "-c" || flag.text === "--command")) {
      return code === undefined ? [] : [{ kind: "code", code, via: "flock -c" }];
    }
    return startsRest(name, p.rest, 1, undefined, stdin);
  },
};

const script: Wrapper = {
  role: "wrapper",
  unwrap(name, args) {
    const p = parseOptions(name, args, {
      flags: "aefqhV", values: "cEIOBTmo", optional: "t", permute: true,
      long: { append: "flag", command: "value", echo: "value", return: "flag", flush: "flag", force: "flag", "log-in": "value", "log-out": "value", "log-io": "value", "log-timing": "value", "logging-format": "value", "output-limit": "value", quiet: "flag", timing: "optional", help: "flag", version: "flag" },
    });
    if (!("options" in p)) return problem(p);
    const code = valueOf(p, "c", "command");
    return code === undefined ? [] : [{ kind: "code", code: literal(code), via: "script -c" }];
  },
};

/** `sort --compress-program=PROG` runs PROG (getopt_long takes any unique prefix from `--co`). */
const sort: Wrapper = {
  role: "program",
  unwrap(_name, args) {
    for (let i = 0; i < args.length; i++) {
      const w = args[i] as ShellWord;
      if (w.kind !== "literal") continue;
      if (w.text === "--") break;
      const m = /^--(co[a-z-]*)(=(.*))?$/s.exec(w.text);
      if (m === null || !"compress-program".startsWith(m[1] as string)) continue;
      const program = m[3] !== undefined ? literal(m[3]) : args[i + 1];
      if (program !== undefined) return [{ kind: "argv", words: [program], via: "sort --compress-program" }];
    }
    return [];
  },
};

const busybox: Wrapper = {
  role: "program",
  unwrap(name, args, stdin) {
    const applet = args[0];
    if (applet === undefined || (applet.kind === "literal" && applet.text.startsWith("-"))) return [];
    return [{ kind: "argv", words: args, via: base(name), stdin }];
  },
};

/** `nice [-n N | -N | --N] CMD…`: the old `-N` form comes first and is read before getopt. */
const niceOptions = getopt("wrapper", { flags: "", values: "n", long: { adjustment: "value", help: "flag", version: "flag" } }, { none: ["help", "version"] });
const nice: Wrapper = {
  role: "wrapper",
  unwrap(name, args, stdin) {
    const first = args[0];
    const old = first?.kind === "literal" && /^-[-+]?\d+$/.test(first.text);
    return niceOptions.unwrap(name, old ? args.slice(1) : args, stdin);
  },
};

/** Wrapper programs by the name they are started with. */
export const WRAPPERS: ReadonlyMap<string, Wrapper> = new Map<string, Wrapper>([
  ["env", env],
  ["nice", nice],
  ["ionice", getopt("wrapper", { flags: "tVh", values: "cnpPu", long: { class: "value", classdata: "value", pid: "value", pgid: "value", uid: "value", ignore: "flag", help: "flag", version: "flag" } }, { none: ["p", "P", "u", "pid", "pgid", "uid", "h", "V", "help", "version"] })],
  ["timeout", getopt("wrapper", { flags: "v", values: "ks", long: { "preserve-status": "flag", foreground: "flag", "kill-after": "value", signal: "value", verbose: "flag", help: "flag", version: "flag" } }, { none: ["help", "version"], operands: 1 })],
  ["nohup", getopt("wrapper", { flags: "", values: "", long: { help: "flag", version: "flag" } }, { none: ["help", "version"] })],
  ["setsid", getopt("wrapper", { flags: "cfwhV", values: "", long: { ctty: "flag", fork: "flag", wait: "flag", help: "flag", version: "flag" } }, { none: ["h", "V", "help", "version"] })],
  ["stdbuf", getopt("wrapper", { flags: "", values: "ioe", long: { input: "value", output: "value", error: "value", help: "flag", version: "flag" } }, { none: ["help", "version"] })],
  ["chrt", getopt("wrapper", { flags: "abdefimoprRvhV", values: "TPD", long: { "all-tasks": "flag", batch: "flag", deadline: "flag", fifo: "flag", idle: "flag", other: "flag", rr: "flag", "reset-on-fork": "flag", max: "flag", pid: "flag", verbose: "flag", "sched-runtime": "value", "sched-period": "value", "sched-deadline": "value", help: "flag", version: "flag" } }, { none: ["p", "pid", "m", "max", "h", "V", "help", "version"], skip: isNumber })],
  ["taskset", getopt("wrapper", { flags: "acphV", values: "", long: { "all-tasks": "flag", "cpu-list": "flag", pid: "flag", help: "flag", version: "flag" } }, { none: ["p", "pid", "h", "V", "help", "version"], operands: 1 })],
  ["time", getopt("wrapper", { flags: "apqv", values: "fo", long: { format: "value", output: "value", append: "flag", verbose: "flag", quiet: "flag", portability: "flag", help: "flag", version: "flag" } }, { none: ["help", "version"] })],
  ["flock", flock],
  ["xargs", xargs],
  ["watch", watch],
  ["script", script],
  ["find", find],
  ["sort", sort],
  ["sudo", sudo],
  ["doas", getopt("program", { flags: "Lns", values: "Cu", long: {} }, { none: ["C", "L"] })],
  ["su", su],
  ["runuser", su],
  ["busybox", busybox],
  ["toybox", busybox],
  ["parallel", failsClosed("parallel builds the commands it runs from its input", "parallel")],
  ["sem", failsClosed("sem (GNU parallel) builds the commands it runs from its input", "sem")],
  ["strace", failsClosed("strace starts and alters programs in ways the checker cannot follow", "strace")],
  ["ltrace", failsClosed("ltrace starts and alters programs in ways the checker cannot follow", "ltrace")],
  ["gdb", failsClosed("gdb can start and alter programs in ways the checker cannot follow", "gdb")],
  ...["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash"].map((s): [string, Wrapper] => [s, shell]),
]);
