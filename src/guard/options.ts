// A getopt_long reader for the options of wrapper programs (env, timeout, sudo, xargs, …), so the
// check finds the program a wrapper starts exactly where the wrapper would. It fails closed: an
// option it does not know, or an option word that is not fixed text, could shift that position.
import type { Unprovable } from "./shell.ts";
import type { ShellWord } from "./words.ts";

/** How each option of one program takes its value. */
export interface OptionSpec {
  /** Short options without a value, e.g. "iv0". */
  flags: string;
  /** Short options with a required value, attached (`-k5`) or in the next word (`-k 5`). */
  values: string;
  /** Short options whose value can only be attached (`-e[EOF]`). */
  optional?: string;
  /** Long options by name; "optional" values can only be given as `--name=value`. */
  long: Record<string, "flag" | "value" | "optional">;
  /** Options may follow operands (no leading `+` in the program's getopt string). */
  permute?: boolean;
}

/** Options found, by their short letter or long name, in order. */
export type Options = { name: string; value: string | undefined }[];

/** The options and the words after them. */
export interface Parsed {
  options: Options;
  /** Operands: for a non-permuting program, everything from the first non-option on. */
  rest: ShellWord[];
}

/** Reads `args` the way getopt_long would for `program`. */
export function parseOptions(program: string, args: readonly ShellWord[], spec: OptionSpec): Parsed | Unprovable {
  const options: Options = [];
  const rest: ShellWord[] = [];
  for (let i = 0; i < args.length; i++) {
    const w = args[i] as ShellWord;
    if (w.kind !== "literal") {
      // One word that starts with fixed text other than "-" is an operand (`A="$x"`); any other
      // could be an option (`"$x"` may be `-crm`), or several words.
      const operand = !w.split && w.prefix !== "" && !w.prefix.startsWith("-");
      if (!operand) return notFixed(program, w);
      if (spec.permute !== true) return { options, rest: [...rest, ...args.slice(i)] };
      rest.push(w);
      continue;
    }
    const t = w.text;
    if (t === "--") return { options, rest: [...rest, ...args.slice(i + 1)] };
    if (!t.startsWith("-") || t === "-") {
      if (spec.permute !== true) return { options, rest: [...rest, ...args.slice(i)] };
      rest.push(w);
      continue;
    }
    const next = (): string | Unprovable => {
      const v = args[++i];
      if (v === undefined) return { reason: `${program} ${t} has no value`, without: `the incomplete ${program} option` };
      return v.kind === "literal" ? v.text : notFixed(program, v);
    };
    const err = t.startsWith("--") ? longOption(program, t, spec, options, next) : shortOptions(program, t, spec, options, next);
    if (err !== undefined) return err;
  }
  return { options, rest };
}

/** True when `parsed` holds any of `names`. */
export function has(parsed: Parsed, ...names: string[]): boolean {
  return parsed.options.some((o) => names.includes(o.name));
}

/** The value of the last of `names` given, if any. */
export function valueOf(parsed: Parsed, ...names: string[]): string | undefined {
  return parsed.options.filter((o) => names.includes(o.name)).pop()?.value;
}

/** A wrapper argument only known at run time, where it could be an option or the program. */
export function notFixed(program: string, w: ShellWord): Unprovable {
  const what = w.kind === "dynamic" ? w.what : "a word";
  const hints = w.kind === "dynamic" ? w.hints : [];
  return { reason: `the arguments of ${program} come from ${what}, so the program it starts is unknown`, without: `${what} in the ${program} arguments`, hints };
}

function unknown(program: string, option: string): Unprovable {
  return { reason: `${program} has an option the checker does not know (${option})`, without: `the ${program} option ${option}` };
}

function longOption(
  program: string,
  t: string,
  spec: OptionSpec,
  options: Options,
  next: () => string | Unprovable,
): Unprovable | undefined {
  const eq = t.indexOf("=");
  const written = t.slice(2, eq < 0 ? undefined : eq);
  // getopt_long accepts any unambiguous prefix of a long option.
  const exact = spec.long[written] !== undefined ? [written] : [];
  const matches = exact.length > 0 ? exact : Object.keys(spec.long).filter((k) => k.startsWith(written));
  const name = matches[0];
  if (matches.length !== 1 || name === undefined) return unknown(program, t);
  const kind = spec.long[name];
  let value: string | undefined = eq < 0 ? undefined : t.slice(eq + 1);
  if (kind === "flag" && value !== undefined) return unknown(program, t);
  if (kind === "value" && value === undefined) {
    const v = next();
    if (typeof v !== "string") return v;
    value = v;
  }
  options.push({ name, value });
  return undefined;
}

function shortOptions(
  program: string,
  t: string,
  spec: OptionSpec,
  options: Options,
  next: () => string | Unprovable,
): Unprovable | undefined {
  for (let j = 1; j < t.length; j++) {
    const c = t[j] as string;
    if (spec.flags.includes(c)) {
      options.push({ name: c, value: undefined });
    } else if (spec.values.includes(c) || (spec.optional ?? "").includes(c)) {
      let value: string | undefined = t.slice(j + 1);
      if (value === "") {
        if (spec.values.includes(c)) {
          const v = next();
          if (typeof v !== "string") return v;
          value = v;
        } else {
          value = undefined;
        }
      }
      options.push({ name: c, value });
      return undefined;
    } else {
      return unknown(program, `-${c}`);
    }
  }
  return undefined;
}
