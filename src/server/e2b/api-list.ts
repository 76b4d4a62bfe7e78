/**
 * E2B's sandbox listing (docs/e2b.md). `GET /v2/sandboxes`: running and paused sandboxes the
 * caller may read, filtered by `metadata` (`k=v&k2=v2`, each part URL-encoded), `state`
 * (`running,paused`), `template` and `startedAfter`, newest first (`order=asc` for oldest first),
 * `limit` per page (1–100, default 100) with the next page's token in the `X-Next-Token` header.
 * `GET /sandboxes` (the older form): running ones only, the metadata filter, no paging.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { ComputeLimits, E2bSandbox, Principal } from "../../core/index.ts";
import { PaddockError } from "../../core/index.ts";
import { auditFailure, authorize, readableEnvironments } from "../auth.ts";
import { detailAnswer } from "./api-shapes.ts";
import type { E2bContext } from "./context.ts";
import type { E2bSandboxTable } from "./sandboxes.ts";

const MAX_LIMIT = 100;
const OPERATION = "e2b.listSandboxes";

interface ListQuery {
  metadata: [string, string][];
  states: Set<string>;
  template: string | null;
  startedAfter: number | null;
  order: "asc" | "desc";
  limit: number;
  /** Position after which this page starts: [createdAt ms, id]. */
  after: [number, string] | null;
}

export async function listSandboxes(ctx: E2bContext, table: E2bSandboxTable, who: Principal, req: FastifyRequest, form: "v1" | "v2", reply?: FastifyReply) {
  const { cp } = ctx;
  let q: ListQuery;
  try {
    q = parseQuery(req.query as Record<string, unknown>, form);
  } catch (err) {
    await auditFailure(cp, who, OPERATION, "-", err);
    throw err;
  }
  await authorize(cp, who, { kind: "authenticated" }, OPERATION, null, "-", { form });
  const readable = await readableEnvironments(cp, who);
  const matching: E2bSandbox[] = [];
  for (const row of await table.list()) {
    if (!matches(row, q)) continue;
    const session = await table.sessionOf(row).catch(() => null);
    if (session && (await readable(row.environment, session))) matching.push(row);
  }
  const key = (r: E2bSandbox): [number, string] => [Date.parse(r.createdAt), r.id];
  const cmp = (a: [number, string], b: [number, string]) => (a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)) * (q.order === "asc" ? 1 : -1);
  matching.sort((a, b) => cmp(key(a), key(b)));
  const after = q.after;
  const rest = after ? matching.filter((r) => cmp(key(r), after) > 0) : matching;
  const page = rest.slice(0, q.limit);
  const last = page.at(-1);
  if (reply && last && rest.length > page.length) reply.header("x-next-token", Buffer.from(JSON.stringify(key(last))).toString("base64url"));
  const compute = new Map<string, ComputeLimits | null>();
  const out = [];
  for (const row of page) {
    const session = await table.sessionOf(row);
    const k = `${session.environment}\0${session.version}`;
    if (!compute.has(k)) compute.set(k, (await cp.access.versionSpec(session.environment, session.version))?.spec.compute ?? null);
    out.push(detailAnswer(row, compute.get(k) ?? null));
  }
  return out;
}

function matches(row: E2bSandbox, q: ListQuery): boolean {
  if (!q.states.has(row.state)) return false;
  if (q.template !== null && q.template !== row.templateId && q.template !== row.environment) return false;
  if (q.startedAfter !== null && Date.parse(row.startedAt) < q.startedAfter) return false;
  return q.metadata.every(([k, v]) => row.metadata[k] === v);
}

const bad = (message: string) => new PaddockError("invalid_argument", message);

function one(query: Record<string, unknown>, name: string): string | null {
  const v = query[name];
  if (v === undefined) return null;
  if (typeof v === "string") return v;
  throw bad(`query parameter ${name} is given more than once`);
}

function parseQuery(query: Record<string, unknown>, form: "v1" | "v2"): ListQuery {
  const metadata: [string, string][] = [];
  const m = one(query, "metadata");
  if (m !== null) {
    for (const [k, v] of new URLSearchParams(m)) {
      try {
        metadata.push([decodeURIComponent(k), decodeURIComponent(v)]);
      } catch {
        throw bad("bad metadata filter: each key and value must be URL-encoded (key=value&key2=value2)");
      }
    }
  }
  if (form === "v1") return { metadata, states: new Set(["running"]), template: null, startedAfter: null, order: "desc", limit: Number.MAX_SAFE_INTEGER, after: null };
  const raw = query.state;
  const states = new Set((Array.isArray(raw) ? raw : raw === undefined ? ["running,paused"] : [raw]).flatMap((s) => String(s).split(",")).filter((s) => s !== ""));
  for (const s of states) if (s !== "running" && s !== "paused") throw bad(`bad state ${JSON.stringify(s.slice(0, 40))}: running or paused`);
  const order = one(query, "order") ?? "desc";
  if (order !== "asc" && order !== "desc") throw bad("bad order: asc or desc");
  const limitText = one(query, "limit");
  const limit = limitText === null ? MAX_LIMIT : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw bad(`bad limit: a whole number from 1 to ${MAX_LIMIT}`);
  const startedText = one(query, "startedAfter");
  const startedAfter = startedText === null ? null : Date.parse(startedText);
  if (startedAfter !== null && Number.isNaN(startedAfter)) throw bad("bad startedAfter: an RFC 3339 date-time");
  return { metadata, states: states.size ? states : new Set(["running", "paused"]), template: one(query, "template"), startedAfter, order, limit, after: parseToken(one(query, "nextToken")) };
}

function parseToken(token: string | null): [number, string] | null {
  if (token === null || token === "") return null;
  try {
    const v: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === "number" && typeof v[1] === "string") return [v[0], v[1]];
  } catch {
    // answered below
  }
  throw bad("bad nextToken: pass the X-Next-Token of the previous page unchanged");
}
