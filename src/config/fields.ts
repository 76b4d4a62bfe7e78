/**
 * Building blocks for the environment schema: each one pairs a zod type with the message a person
 * needs when their value does not fit. Messages name what was expected, what was found, and an
 * example to copy.
 */
import { z } from "zod";
import type { Checked } from "./rules.ts";
import { describeValue, nearest, quote, quoteList } from "./words.ts";

/**
 * Error map for a field's own type: `expected a list of commands, got a string "npm install"`.
 * A missing required key gets `missing` instead (the issue is then placed on the parent mapping).
 */
export function expecting(what: string, missing?: string): { error: z.core.$ZodErrorMap } {
  return {
    error: (iss) => {
      // A union reports "no option matched" rather than a type mismatch; to a person it is the same.
      if (iss.code !== "invalid_type" && iss.code !== "invalid_union") return undefined;
      if (iss.input === undefined) return missing ?? `missing required key: add ${what}`;
      return `expected ${what}, got ${describeValue(iss.input)}`;
    },
  };
}

/**
 * Treats an absent key and an empty YAML value (`install:` with nothing after it) alike: both take
 * the default. YAML writes "nothing" as null, and refusing it would only punish a harmless habit.
 */
export function withDefault<T extends z.ZodType>(schema: T, fallback: () => z.output<T>) {
  return schema.nullish().transform((v): z.output<T> => (v ?? fallback()) as z.output<T>);
}

/** Adds one custom issue per problem; `problem` returns undefined for a good value. */
export function refineWith<T>(problem: (v: T) => string | undefined) {
  return (v: T, ctx: z.core.$RefinementCtx<T>): void => {
    const message = problem(v);
    if (message !== undefined) ctx.addIssue({ code: "custom", message, input: v });
  };
}

/** A string checked and normalised by one of the rule checkers (commands, hosts). */
export function ruleString(what: string, check: (raw: string) => Checked) {
  return z.string(expecting(what)).transform((raw, ctx): string => {
    const r = check(raw);
    if (r.ok) return r.value;
    ctx.addIssue({ code: "custom", message: r.message, input: raw });
    return z.NEVER;
  });
}

/** A string parsed into a number (bytes, milliseconds) with a bound check in the same message style. */
export function parsedString(what: string, parse: (s: string) => number, bound: (n: number) => string | undefined) {
  return z.string(expecting(what)).transform((raw, ctx): number => {
    let n: number;
    try {
      n = parse(raw);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message, input: raw });
      return z.NEVER;
    }
    const problem = bound(n);
    if (problem === undefined) return n;
    ctx.addIssue({ code: "custom", message: `${quote(raw)} ${problem}`, input: raw });
    return z.NEVER;
  });
}

/** An enum whose message suggests the nearest valid word and lists them all. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T, what: string) {
  return z.enum(values, {
    error: (iss) => {
      const valid = `valid ${what}s: ${quoteList(values)}`;
      if (typeof iss.input !== "string") return `expected a ${what}, got ${describeValue(iss.input)}; ${valid}`;
      const near = nearest(iss.input, values);
      const hint = near === undefined ? "" : ` (did you mean ${JSON.stringify(near)}?)`;
      return `unknown ${what} ${quote(iss.input)}${hint}; ${valid}`;
    },
  });
}

/**
 * Options for refinements that compare entries with each other (duplicates, conflicts): run them
 * even when some entries are already invalid, so one bad entry does not hide another problem.
 * Such refinements must therefore tolerate values of any shape.
 */
/** The part of a refinement context these helpers use; it does not depend on the value's type. */
export type IssueSink = Pick<z.core.$RefinementCtx, "addIssue">;

export const ALWAYS = { when: (): boolean => true } as const;

/** The string itself, or undefined for an entry that failed its own check. */
export const asString = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/**
 * Reports the second and later copies of an entry. `params.firstAt` (relative to the list) lets
 * the located message add where the first copy was written. Use with `ALWAYS`.
 */
export function noDuplicates(what: string, key: (item: unknown) => string | undefined = asString) {
  return (items: unknown, ctx: IssueSink): void => {
    if (!Array.isArray(items)) return;
    const first = new Map<string, number>();
    items.forEach((item: unknown, i) => {
      const k = key(item);
      if (k === undefined) return;
      const j = first.get(k);
      if (j === undefined) first.set(k, i);
      else ctx.addIssue({ code: "custom", path: [i], message: `${what} ${quote(k)} is listed twice; remove one`, input: item, params: { firstAt: [j] } });
    });
  };
}

/** Turns a free-form name into the closest valid one, for "did you mean" hints. */
export function slugify(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
}
