/**
 * Reads the valid keys out of the zod schema, so unknown-key messages can never drift from the
 * schema: the suggestions are computed from the same object that validates.
 */
import { z } from "zod";
import { nearest, quoteList } from "./words.ts";

type Schema = z.core.$ZodType;

/** Strips wrappers that do not change which keys are valid (optional, nullable, transforms). */
function unwrap(s: Schema): Schema {
  let cur = s;
  for (;;) {
    if (cur instanceof z.ZodOptional || cur instanceof z.ZodNullable) cur = cur.unwrap();
    else if (cur instanceof z.ZodPipe) cur = cur.in; // the input side is what the file is written in
    else return cur;
  }
}

/** Every concrete schema a value can have: a union counts as each of its options. */
function variants(s: Schema): Schema[] {
  const u = unwrap(s);
  return u instanceof z.ZodUnion ? (u.options as Schema[]).flatMap(variants) : [u];
}

function child(s: Schema, seg: PropertyKey): Schema[] {
  if (s instanceof z.ZodObject) {
    const shape = s.shape as Record<string, Schema>;
    const next = typeof seg === "string" ? shape[seg] : undefined;
    return next === undefined ? [] : [next];
  }
  if (s instanceof z.ZodArray) return typeof seg === "number" ? [s.element as Schema] : [];
  if (s instanceof z.ZodRecord) return [s.valueType as Schema];
  return [];
}

/** The keys allowed in the mapping at `path` (union options merged), in schema order. */
export function keysAt(schema: Schema, path: readonly PropertyKey[]): string[] {
  let here = variants(schema);
  for (const seg of path) here = here.flatMap((s) => child(s, seg)).flatMap(variants);
  const keys = new Set<string>();
  for (const s of here) if (s instanceof z.ZodObject) for (const k of Object.keys(s.shape)) keys.add(k);
  return [...keys];
}

/** Where each key name is valid, as parent paths ("" = top level, "secrets[]" = in a secrets item). */
export function keyHomes(schema: Schema): Map<string, string[]> {
  const homes = new Map<string, string[]>();
  const visit = (s: Schema, at: string): void => {
    for (const v of variants(s)) {
      if (v instanceof z.ZodArray) visit(v.element as Schema, `${at}[]`);
      if (!(v instanceof z.ZodObject)) continue;
      for (const [k, sub] of Object.entries(v.shape as Record<string, Schema>)) {
        homes.set(k, [...(homes.get(k) ?? []), at]);
        visit(sub, at === "" ? k : `${at}.${k}`);
      }
    }
  };
  visit(schema, "");
  return homes;
}

/** "" → "at the top level", "secrets[]" → "in an item of "secrets"", "compute" → "under "compute"". */
function describeHome(home: string): string {
  if (home === "") return "at the top level";
  return home.endsWith("[]") ? `in an item of ${JSON.stringify(home.slice(0, -2))}` : `under ${JSON.stringify(home)}`;
}

/**
 * The message for an unknown key: the nearest valid key when it is a likely typo, else where the
 * key belongs if it is valid elsewhere, else the list of valid keys.
 */
export function unknownKeyMessage(key: string, valid: string[], homes: Map<string, string[]>): { message: string; suggestion?: string } {
  const near = nearest(key, valid);
  if (near !== undefined) return { message: `unknown key (did you mean ${JSON.stringify(near)}?)`, suggestion: near };
  const elsewhere = homes.get(key);
  if (elsewhere !== undefined && elsewhere.length > 0) {
    const where = elsewhere.map(describeHome).join(" or ");
    return { message: `unknown key here: ${JSON.stringify(key)} belongs ${where}` };
  }
  return { message: valid.length > 0 ? `unknown key; valid keys here: ${quoteList(valid)}` : "unknown key: nothing is allowed here" };
}
