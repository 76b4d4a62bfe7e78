/**
 * `labelSelector` and `fieldSelector` query parameters, parsed as the apiserver parses them
 * (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors,
 * https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/).
 */
import type { KubeObject } from "./api.ts";
import { badRequest } from "./status.ts";

export type Predicate = (obj: KubeObject) => boolean;

function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== "");
}

export function parseLabelSelector(selector: string | null): Predicate {
  if (!selector) return () => true;
  const terms = splitTopLevel(selector).map(parseLabelTerm);
  return (obj) => {
    const labels = obj.metadata.labels ?? {};
    return terms.every((t) => t(labels));
  };
}

const KEY = /^([A-Za-z0-9][-A-Za-z0-9_./]*)?[A-Za-z0-9]$/;

function parseLabelTerm(term: string): (labels: Record<string, string>) => boolean {
  let m = /^!\s*(\S+)$/.exec(term);
  if (m) return checkKey(m[1]!, (l, k) => !(k in l));
  m = /^(\S+?)\s+(in|notin)\s+\((.*)\)$/.exec(term);
  if (m) {
    const values = m[3]!.split(",").map((v) => v.trim());
    return m[2] === "in" ? checkKey(m[1]!, (l, k) => k in l && values.includes(l[k]!)) : checkKey(m[1]!, (l, k) => !(k in l) || !values.includes(l[k]!));
  }
  m = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(term);
  if (m) {
    const value = m[3]!;
    return m[2] === "!=" ? checkKey(m[1]!, (l, k) => l[k] !== value) : checkKey(m[1]!, (l, k) => l[k] === value);
  }
  if (KEY.test(term)) return (l) => term in l;
  throw badRequest(`unable to parse requirement: found '${term}', expected: in, notin, =, ==, !=, gt, lt`);
}

function checkKey(key: string, test: (labels: Record<string, string>, key: string) => boolean): (labels: Record<string, string>) => boolean {
  if (!KEY.test(key)) throw badRequest(`unable to parse requirement: invalid label key "${key}"`);
  return (labels) => test(labels, key);
}

/** Field paths each kind supports in a field selector (metadata.name and metadata.namespace for all). */
const FIELDS: Record<string, string[]> = {
  Pod: ["status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.podIP"],
  Event: ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"],
  Secret: ["type"],
  Namespace: ["status.phase"],
};

function fieldValue(obj: KubeObject, path: string): string {
  let v: unknown = obj;
  for (const p of path.split(".")) v = v && typeof v === "object" ? (v as Record<string, unknown>)[p] : undefined;
  return v === undefined || v === null ? "" : String(v);
}

export function parseFieldSelector(selector: string | null, kind: string): Predicate {
  if (!selector) return () => true;
  const allowed = ["metadata.name", "metadata.namespace", ...(FIELDS[kind] ?? [])];
  const terms = splitTopLevel(selector).map((term) => {
    const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(term);
    if (!m) throw badRequest(`invalid selector: '${selector}'; can't understand '${term}'`);
    const [, field, op, value] = m as unknown as [string, string, string, string];
    if (!allowed.includes(field)) throw badRequest(`field label not supported: ${field}`);
    return (obj: KubeObject) => (fieldValue(obj, field) === value) === (op !== "!=");
  });
  return (obj) => terms.every((t) => t(obj));
}
