// From a line (or argv) to every program it can start: scan the shell, then unwrap wrappers and
// builtins recursively (`sudo env bash -c 'xargs rm'` → sudo, env, bash, xargs, rm).
import { BUILTINS, RUNS_NOTHING } from "./builtins.ts";
import type { ProgramUse } from "./commands.ts";
import { scanShell } from "./shell.ts";
import type { ShellParser, Unprovable } from "./shell.ts";
import type { ShellWord } from "./words.ts";
import { literal } from "./words.ts";
import { WRAPPERS, base } from "./wrappers.ts";
import type { Inner } from "./wrappers.ts";

/** One program the line can start, with what the policy needs to judge it. */
export interface Use {
  use: ProgramUse;
  /** The words after the program, unexpanded where not fixed. */
  args: ShellWord[];
  /** A wrapper (env, timeout, xargs, sh -c …) that starts another program: needs no allow entry. */
  passThrough: boolean;
  /** A call of a function the line defined: its body is what runs (see Analysis.unsets). */
  functionCall: boolean;
}

/** Everything found in one line. */
export interface Analysis {
  uses: Use[];
  problems: Unprovable[];
  /** The line changes PATH (or a loader variable): bare names may not be the usual programs. */
  pathChanged: boolean;
  /** The line may unset a function (`unset`, or code it cannot see: `source FILE`). */
  unsets: boolean;
}

interface Context {
  via: string[];
  depth: number;
}

// Nested `sh -c "sh -c …"` deeper than this is not something a person writes; fail closed.
const MAX_DEPTH = 12;

/** Finds the programs a line or argv can start. */
export class Analyser {
  constructor(private readonly parser: ShellParser) {}

  /** Analyses a command line as bash would read it. */
  line(text: string, out: Analysis, ctx: Context = { via: [], depth: 0 }, positional?: readonly string[]): void {
    if (ctx.depth > MAX_DEPTH) return void out.problems.push(tooDeep());
    const scan = scanShell(this.parser, text, positional);
    out.problems.push(...scan.problems);
    out.pathChanged ||= scan.pathChanged;
    out.unsets ||= scan.unsets;
    for (const cmd of scan.commands) this.argv(cmd.words, cmd.stdin, out, { via: ctx.via, depth: ctx.depth + 1 }, cmd.functionCall);
  }

  /** Analyses one command's words: words[0] is the program; nothing is shell-parsed. */
  argv(words: readonly ShellWord[], stdin: ShellWord | undefined, out: Analysis, ctx: Context = { via: [], depth: 0 }, functionCall = false): void {
    if (ctx.depth > MAX_DEPTH) return void out.problems.push(tooDeep());
    const [first, ...args] = words;
    if (first === undefined) return;
    if (first.kind !== "literal") return void out.problems.push(dynamicProgram(first, args));
    const name = first.text;
    if (name === "") return void out.problems.push({ reason: "the program name is empty", without: "an empty program name" });
    const plain = !name.includes("/");
    out.unsets ||= plain && name === "unset";
    if (plain && RUNS_NOTHING.has(name)) return;
    const wrapper = (plain ? BUILTINS.get(name) : undefined) ?? WRAPPERS.get(base(name));
    const inner = wrapper?.unwrap(name, args, stdin) ?? [];
    if (wrapper?.role !== "builtin") {
      const passThrough = wrapper?.role === "wrapper" && inner.some((i) => i.kind === "argv" || i.kind === "code");
      out.uses.push({ use: { program: name, argv: [name, ...args.map(display)], via: ctx.via }, args, passThrough, functionCall });
    }
    for (const i of inner) this.inner(i, out, ctx);
  }

  private inner(i: Inner, out: Analysis, ctx: Context): void {
    const next = (via: string): Context => ({ via: [...ctx.via, via], depth: ctx.depth + 1 });
    switch (i.kind) {
      case "problem":
        out.problems.push(i.problem);
        return;
      case "argv":
        return this.argv(i.words, i.stdin, out, next(i.via));
      case "code": {
        if (i.code.kind !== "literal") {
          return void out.problems.push({ reason: `${i.via} runs code that comes from ${i.code.what}`, without: `${i.code.what} as the code of ${i.via}`, hints: i.code.hints });
        }
        const positional = i.positional?.map((w) => (w.kind === "literal" ? w.text : ""));
        return this.line(i.code.text, out, next(i.via), positional);
      }
      case "file":
        if (i.path.kind !== "literal") {
          return void out.problems.push({ reason: `${i.via} runs a file named by ${i.path.what}`, without: `${i.path.what} as the file of ${i.via}` });
        }
        out.unsets = true; // the file may do anything, unset included
        return this.argv([literal(i.path.text)], undefined, out, next(i.via));
    }
  }
}

/** An empty analysis to fill. */
export function emptyAnalysis(): Analysis {
  return { uses: [], problems: [], pathChanged: false, unsets: false };
}

function display(w: ShellWord): string {
  return w.kind === "literal" ? w.text : w.source;
}

function tooDeep(): Unprovable {
  return { reason: `commands are nested more than ${MAX_DEPTH} levels deep`, without: "so many nested shells and wrappers" };
}

function dynamicProgram(first: ShellWord & { kind: "dynamic" }, args: readonly ShellWord[]): Unprovable {
  const rest = args.map((w) => (w.kind === "literal" ? ` '${w.text.replace(/'/g, "'\\''")}'` : "")).join("");
  return { reason: `the program name comes from ${first.what}`, without: `${first.what} as the program name`, hints: first.hints.map((h) => h + rest) };
}
