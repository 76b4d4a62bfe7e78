/**
 * `$PADDOCK_HOME/providers.yml`: the installation's provider instances and routing settings
 * (docs/routing.md). Read at `paddock up`; `paddock provider add/remove` edit it through the API
 * (comments and the order of what is there are kept) and apply the change at once. Credentials
 * are never in this file: they are sealed in the vault as `provider/<instance>/<credential>`.
 *
 * ```yaml
 * routing:
 *   strategy: ./my-strategy.mjs    # optional: a module exporting a RoutingStrategy
 *   breaker: { failures: 3, coolDownSeconds: 30 }
 *   createTimeoutSeconds: 600       # optional: every instance's create limit (default: 600 remote, none local)
 * providers:
 *   e2b:
 *     kind: e2b
 *     settings: { domain: e2b.app }
 *     routing: { pricePerVcpuHour: 0.05, latencyClass: interactive, region: us, maxCpu: 8, maxMemory: 16GiB }
 * ```
 *
 * Every problem is reported at once, located like the environment file's: `providers.yml:LINE:COL path: message`.
 */
import { LineCounter, isMap, isScalar, parseDocument, type Document, type Node } from "yaml";
import { z } from "zod";
import { parseMemory } from "../config/index.ts";
import type { ProviderKind } from "../core/index.ts";
import { PaddockError } from "../core/index.ts";
import type { ProviderRouting } from "./routing/index.ts";

export const PROVIDERS_FILE = "providers.yml";
export const PROVIDER_KINDS: readonly ProviderKind[] = ["local", "k8s", "e2b", "daytona", "ec2"];
const INSTANCE_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const MAX_FILE_BYTES = 256 * 1024;

const price = z.number("a price in USD, e.g. 0.05").nonnegative("a price cannot be negative").max(1000, "is more than $1000 per hour: prices are per vCPU-hour or GiB-hour");
// A start waits this long at most for one provider's create (then fails over); a day is plenty for any.
const createTimeout = z.number("a number of seconds, e.g. 600 (0: no limit)").min(0, "cannot be negative: use 0 for no limit").max(86_400, "is more than a day: a create that slow is a hung one");
const routingSchema = z.strictObject({
  pricePerVcpuHour: price.optional().describe("USD per vCPU-hour; absent: the default table's for the kind (docs/routing.md)."),
  pricePerGibHour: price.optional().describe("USD per GiB-hour of memory; absent: the default table's."),
  latencyClass: z.enum(["interactive", "batch"], 'either "interactive" or "batch"').optional().describe("What the instance is for; matching starts get a few points."),
  region: z.string("a region name, e.g. \"eu-west-1\"").max(64).optional().describe("Shown in explanations."),
  maxCpu: z.number("a number of vCPUs").positive("must be more than 0").optional().describe("Sessions asking for more vCPUs skip this instance."),
  maxMemory: z.union([z.string(), z.number()], 'a size such as "16GiB"').optional().describe("Sessions asking for more memory skip this instance."),
  createTimeoutSeconds: createTimeout.optional().describe("How long one create may take before it is abandoned for the next provider; 0: no limit."),
}, "a mapping of pricePerVcpuHour, pricePerGibHour, latencyClass, region, maxCpu, maxMemory, createTimeoutSeconds");

const instanceSchema = z.strictObject({
  kind: z.enum(PROVIDER_KINDS as [ProviderKind, ...ProviderKind[]], `one of ${PROVIDER_KINDS.join(", ")}`),
  settings: z.record(z.string(), z.unknown(), "a mapping of the kind's settings").optional(),
  routing: routingSchema.optional(),
}, "a mapping with kind:, and optionally settings: and routing:");

const fileSchema = z.strictObject({
  routing: z.strictObject({
    strategy: z.string("a module path such as ./my-strategy.mjs").min(1).optional(),
    breaker: z.strictObject({
      failures: z.number("a whole number").int("a whole number").min(1).max(100).optional(),
      coolDownSeconds: z.number("a number of seconds").min(0).max(86_400).optional(),
    }, "a mapping of failures, coolDownSeconds").optional(),
    createTimeoutSeconds: createTimeout.optional(),
  }, "a mapping of strategy, breaker, createTimeoutSeconds").optional(),
  providers: z.record(z.string(), instanceSchema, "a mapping of instance name to { kind, settings, routing }").optional(),
}, "a mapping of routing: and providers:");

/** One configured instance, validated (its settings are checked by its kind's driver later). */
export interface ProviderInstanceConfig {
  name: string;
  kind: ProviderKind;
  settings: Record<string, unknown>;
  routing: ProviderRouting;
}

export interface ProvidersConfig {
  instances: ProviderInstanceConfig[];
  strategy: { module: string; where: string } | null;
  breaker: { failures?: number; coolDownMs?: number };
}

/** A located problem: `providers.yml:3:5 providers.e2b.kind: …`. */
export interface ProvidersIssue {
  line: number;
  column: number;
  path: string;
  message: string;
}

export const formatProvidersIssue = (i: ProvidersIssue, file = PROVIDERS_FILE): string =>
  `${i.line > 0 ? `${file}:${i.line}:${i.column}` : file}${i.path ? ` ${i.path}` : ""}: ${i.message}`;

/** The error for a bad providers.yml: every issue, one per line; `details.issues` has them. */
export function providersFileError(issues: ProvidersIssue[]): PaddockError {
  return new PaddockError("invalid_argument", issues.map((i) => formatProvidersIssue(i)).join("\n"), { issues });
}

/** A parsed file: the YAML document (kept for edits) and its validated content, or its issues. */
export type ParsedProviders =
  | { ok: true; doc: Document; config: ProvidersConfig; lines: LineCounter }
  | { ok: false; issues: ProvidersIssue[] };

const pathText = (path: readonly PropertyKey[]): string =>
  path.map((p, i) => (typeof p === "number" ? `[${p}]` : /^[A-Za-z0-9_-]+$/.test(String(p)) ? (i ? `.${String(p)}` : String(p)) : `[${JSON.stringify(String(p))}]`)).join("");

/** Parse and validate the file's text. Never throws. */
export function parseProvidersFile(source: string): ParsedProviders {
  if (Buffer.byteLength(source) > MAX_FILE_BYTES) return { ok: false, issues: [{ line: 0, column: 0, path: "", message: `larger than ${MAX_FILE_BYTES} bytes` }] };
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number) => {
    const p = lines.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const yamlIssues = [...doc.errors, ...doc.warnings].map((e) => ({ ...at(e.pos[0]), path: "", message: e.message.split("\n")[0] ?? e.message }));
  if (yamlIssues.length) return { ok: false, issues: yamlIssues };
  const data: unknown = doc.toJS() ?? {};
  const locate = (path: readonly PropertyKey[], onKey = false): { line: number; column: number } => locateNode(doc, path, onKey, at);
  const issues: ProvidersIssue[] = [];
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      if (i.code === "unrecognized_keys") {
        for (const k of i.keys) issues.push({ ...locate([...i.path, k], true), path: pathText([...i.path, k]), message: `unknown key: expected ${i.message.replace(/^Unrecognized keys?: .*$/, "only the keys providers.yml documents")}` });
      } else {
        const missing = valueAt(data, i.path) === undefined;
        issues.push({ ...locate(i.path), path: pathText(i.path), message: missing ? `missing: add it, ${i.message}` : i.message });
      }
    }
    return { ok: false, issues: sortIssues(issues) };
  }
  const instances: ProviderInstanceConfig[] = [];
  for (const [name, raw] of Object.entries(parsed.data.providers ?? {})) {
    const p = ["providers", name];
    if (!INSTANCE_RE.test(name)) issues.push({ ...locate(p, true), path: pathText(p), message: `${JSON.stringify(name)} is not an instance name: use 1 to 63 lowercase letters, digits and dashes, e.g. "k8s-prod"` });
    if ((name === "local") !== (raw.kind === "local")) {
      issues.push({ ...locate([...p, "kind"]), path: pathText([...p, "kind"]), message: name === "local" ? 'the instance named "local" is this machine: its kind is local' : 'there is one local provider, named "local"' });
    }
    const routing: ProviderRouting = {};
    const r = raw.routing ?? {};
    if (r.pricePerVcpuHour !== undefined) routing.pricePerVcpuHour = r.pricePerVcpuHour;
    if (r.pricePerGibHour !== undefined) routing.pricePerGibHour = r.pricePerGibHour;
    if (r.latencyClass !== undefined) routing.latencyClass = r.latencyClass;
    if (r.region !== undefined) routing.region = r.region;
    if (r.maxCpu !== undefined) routing.maxCpu = r.maxCpu;
    // The instance's own limit, else the file's default for every instance (SessionRouting applies the kind's default).
    const createTimeoutSeconds = r.createTimeoutSeconds ?? parsed.data.routing?.createTimeoutSeconds;
    if (createTimeoutSeconds !== undefined) routing.createTimeoutMs = Math.round(createTimeoutSeconds * 1000);
    if (r.maxMemory !== undefined) {
      try {
        routing.maxMemoryBytes = typeof r.maxMemory === "number" ? r.maxMemory : parseMemory(r.maxMemory);
      } catch (err) {
        const mp = [...p, "routing", "maxMemory"];
        issues.push({ ...locate(mp), path: pathText(mp), message: err instanceof Error ? err.message : String(err) });
      }
    }
    instances.push({ name, kind: raw.kind, settings: raw.settings ?? {}, routing });
  }
  if (issues.length) return { ok: false, issues: sortIssues(issues) };
  const strategyPath = ["routing", "strategy"];
  const s = parsed.data.routing?.strategy;
  const b = parsed.data.routing?.breaker;
  const config: ProvidersConfig = {
    instances,
    strategy: s === undefined ? null : { module: s, where: formatProvidersIssue({ ...locate(strategyPath), path: "routing.strategy", message: "" }).replace(/: $/, "") },
    breaker: { ...(b?.failures !== undefined ? { failures: b.failures } : {}), ...(b?.coolDownSeconds !== undefined ? { coolDownMs: b.coolDownSeconds * 1000 } : {}) },
  };
  return { ok: true, doc, config, lines };
}

/** Where the value at `path` (or its key, `onKey`) was written; the nearest written parent when it was not. */
function locateNode(doc: Document, path: readonly PropertyKey[], onKey: boolean, at: (o: number) => { line: number; column: number }): { line: number; column: number } {
  for (let n = path.length; n >= 0; n--) {
    const parentPath = path.slice(0, Math.max(0, n - 1)).map(String);
    const last = n > 0 ? String(path[n - 1]) : null;
    if (last !== null && (onKey || n < path.length)) {
      const parent = parentPath.length ? doc.getIn(parentPath, true) : doc.contents;
      if (isMap(parent)) {
        const pair = parent.items.find((it) => isScalar(it.key) && String(it.key.value) === last);
        const keyNode = pair?.key as Node | undefined;
        if (keyNode?.range) return at(keyNode.range[0]);
      }
    }
    const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n).map(String), true)) as Node | null | undefined;
    if (node && typeof node === "object" && "range" in node && node.range) return at(node.range[0]);
  }
  return { line: 1, column: 1 };
}

const sortIssues = (issues: ProvidersIssue[]): ProvidersIssue[] => [...issues].sort((a, b) => a.line - b.line || a.column - b.column);

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let at: unknown = data;
  for (const k of path) {
    if (typeof at !== "object" || at === null) return undefined;
    at = (at as Record<PropertyKey, unknown>)[k];
  }
  return at;
}
