/**
 * The CEL validation rules (`x-kubernetes-validations`) of the pinned CRDs, translated by hand:
 * the fake has no CEL interpreter, so each rule text it knows maps to a function. A CRD carrying
 * a rule not in this table fails when the fake loads it, so a re-pinned CRD with new rules cannot
 * be silently under-validated. Transition rules (those using `oldSelf`) apply to updates only,
 * as in the apiserver (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#transition-rules).
 */
import type { Cause } from "./status.ts";
import { canonicalJson } from "./json.ts";

type Value = Record<string, unknown> | undefined;
type Rule = (self: Value, oldSelf: Value) => boolean;

const has = (o: Value, k: string) => o !== undefined && o !== null && typeof o === "object" && k in o;

const RULES: Record<string, Rule> = {
  // external-snapshotter VolumeSnapshot v1
  "self == oldSelf": (self, old) => canonicalJson(self) === canonicalJson(old),
  "!has(oldSelf.persistentVolumeClaimName) || has(self.persistentVolumeClaimName)": (self, old) => !has(old, "persistentVolumeClaimName") || has(self, "persistentVolumeClaimName"),
  "!has(oldSelf.volumeSnapshotContentName) || has(self.volumeSnapshotContentName)": (self, old) => !has(old, "volumeSnapshotContentName") || has(self, "volumeSnapshotContentName"),
  "(has(self.volumeSnapshotContentName) && !has(self.persistentVolumeClaimName)) || (!has(self.volumeSnapshotContentName) && has(self.persistentVolumeClaimName))": (self) =>
    has(self, "volumeSnapshotContentName") !== has(self, "persistentVolumeClaimName"),
  "size(self) > 0": (self) => String(self ?? "").length > 0,
  // agent-sandbox Sandbox v1beta1 (spec): volumeClaimTemplates is immutable
  "has(self.volumeClaimTemplates) == has(oldSelf.volumeClaimTemplates) && (!has(self.volumeClaimTemplates) || self.volumeClaimTemplates == oldSelf.volumeClaimTemplates)": (self, old) =>
    has(self, "volumeClaimTemplates") === has(old, "volumeClaimTemplates") && (!has(self, "volumeClaimTemplates") || canonicalJson(self!.volumeClaimTemplates) === canonicalJson(old!.volumeClaimTemplates)),
};

interface FoundRule {
  /** Property names from the root; "*" for every item of an array or map. */
  path: string[];
  rule: string;
  message: string;
  transition: boolean;
}

type Schema = Record<string, unknown>;

/** Every rule in a CRD version's schema; throws for a rule the table does not know. */
export function collectRules(schema: Schema, path: string[] = []): FoundRule[] {
  const out: FoundRule[] = [];
  for (const v of (schema["x-kubernetes-validations"] as { rule: string; message?: string }[] | undefined) ?? []) {
    const rule = v.rule.replace(/\s+/g, " ").trim();
    if (!RULES[rule]) throw new Error(`the fake cannot evaluate the CEL rule ${JSON.stringify(rule)} at ${path.join(".") || "<root>"}: add it to cel.ts`);
    out.push({ path, rule, message: v.message ?? `failed rule: ${rule}`, transition: rule.includes("oldSelf") });
  }
  for (const [k, sub] of Object.entries((schema.properties as Record<string, Schema> | undefined) ?? {})) out.push(...collectRules(sub, [...path, k]));
  if (schema.items && typeof schema.items === "object") out.push(...collectRules(schema.items as Schema, [...path, "*"]));
  if (schema.additionalProperties && typeof schema.additionalProperties === "object") out.push(...collectRules(schema.additionalProperties as Schema, [...path, "*"]));
  return out;
}

/** The values at `path` (expanding "*"), with their field paths, in the new and the old object. */
function at(root: unknown, old: unknown, path: string[], field = ""): { field: string; self: unknown; oldSelf: unknown }[] {
  if (path.length === 0) return [{ field, self: root, oldSelf: old }];
  const [head, ...rest] = path as [string, ...string[]];
  if (root === null || typeof root !== "object") return [];
  const r = root as Record<string, unknown>;
  const o = old !== null && typeof old === "object" ? (old as Record<string, unknown>) : undefined;
  if (head === "*") {
    const keys = Array.isArray(root) ? root.map((_, i) => String(i)) : Object.keys(r);
    return keys.flatMap((k) => at(r[k], o?.[k], rest, Array.isArray(root) ? `${field}[${k}]` : `${field}[${JSON.stringify(k)}]`));
  }
  if (!(head in r)) return [];
  return at(r[head], o?.[head], rest, field ? `${field}.${head}` : head);
}

export function checkRules(rules: FoundRule[], obj: unknown, old: unknown | null): Cause[] {
  const causes: Cause[] = [];
  for (const r of rules) {
    if (r.transition && old === null) continue;
    for (const { field, self, oldSelf } of at(obj, old, r.path)) {
      // A transition rule only applies where the old object had the value too.
      if (r.transition && oldSelf === undefined) continue;
      if (!RULES[r.rule]!(self as Value, oldSelf as Value)) {
        const shown = self !== null && typeof self === "object" ? '"object"' : JSON.stringify(self);
        causes.push({ reason: "FieldValueInvalid", message: `Invalid value: ${shown}: ${r.message}`, field });
      }
    }
  }
  return causes;
}
