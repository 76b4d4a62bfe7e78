/**
 * Webhook triggers: a signed delivery from PagerDuty, Sentry, GitHub or any sender using the
 * `hook` scheme starts one agent run, acting for the trigger's `as` principal (config:
 * src/config/triggers.ts; docs/triggers.md). Security code: every step fails closed.
 *
 * Order, each step refusing before the next runs:
 *  1. known environment and trigger (404), body within MAX_WEBHOOK_BODY_BYTES (413);
 *  2. the signing secret from the vault (never leaves the control plane; 503 when unset);
 *  3. the signature over the raw bytes, compared in constant time (401);
 *  4. the signed timestamp within `maxAge`, either way (401); GitHub signs none;
 *  5. the delivery claimed once, by its id and by a digest of what was signed (200 duplicate):
 *     the id headers are not signed, so a captured delivery replayed under a fresh id is still
 *     the same signed bytes, and for GitHub (no timestamp) the only replay protection there is;
 *  6. the event filter (202 ignored), the principal (403), then the run (202).
 * Every delivery, whatever the answer, is one audit record (never the secret or the body).
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { TriggerConfig, TriggerSource } from "../config/triggers.ts";
import { renderPrompt } from "../config/triggers.ts";
import type { Principal, Run, RunOutcome, Store } from "../core/index.ts";
import { PaddockError, asPaddockError, excerpt } from "../core/index.ts";
import type { Vault } from "../gateway/vault.ts";
import type { AuditLog } from "../guard/index.ts";

/** Larger deliveries are refused (413). PagerDuty's are at most 256 KB; GitHub's are usually far smaller. */
export const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;
/**
 * How long a claimed delivery is remembered. Longer than any `maxAge` (at most 1d), so a
 * timestamped delivery is refused as stale long before it is forgotten; for GitHub, which signs no
 * timestamp, a captured delivery could be replayed once more after this long.
 */
export const DELIVERY_MEMORY_MS = 90 * 24 * 60 * 60 * 1000;

/** What a triggered run needs; `Runs.start(req, actor)` takes exactly this. */
export interface TriggeredRunRequest {
  environment: string;
  agent: string;
  prompt: string;
  outcome: RunOutcome;
  trigger: { name: string; source: TriggerSource; deliveryId: string };
}
export type StartRun = (req: TriggeredRunRequest, actor: Principal) => Promise<Run>;

export interface WebhookDelivery {
  environment: string;
  trigger: string;
  /** As node gives them (lower-case names); other casings are looked up too. */
  headers: Record<string, string | string[] | undefined>;
  rawBody: Buffer;
}

export interface WebhookAnswer {
  status: number;
  body: unknown;
}

export interface WebhooksDeps {
  store: Pick<Store, "getEnvironment" | "getEnvironmentVersion" | "getPrincipalByName" | "claimWebhookDelivery" | "releaseWebhookDeliveries">;
  vault: Pick<Vault, "get">;
  audit: Pick<AuditLog, "append">;
  startRun: StartRun;
  /** The spec whose `triggers:` apply: the newest applied version (e.g. `Access.rbacSpec`). Default: read from the store. */
  specOf?: (environment: string) => Promise<{ triggers?: TriggerConfig[] } | null>;
  /** Milliseconds since the epoch; tests move it. */
  now?: () => number;
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const DELIVERY_RE = /^[\x21-\x7e]{1,200}$/;
const HEX64 = /^[0-9a-fA-F]{64}$/;
const PINGS = new Set(["ping", "pagey.ping"]);

/** The parts of a delivery that the per-sender checks produce. */
interface Verified {
  payload: unknown;
  /** The exact bytes the signature covers: digested for the replay key. */
  signed: Buffer;
  /** Milliseconds, or null for senders that sign no timestamp (GitHub). */
  signedAt: number | null;
  deliveryId: string;
  event: string;
}

/** A refusal on the way; turned into the answer and its audit record. */
class Refusal {
  constructor(readonly status: number, readonly code: string, readonly message: string, readonly rule: string) {}
}

export class Webhooks {
  constructor(private readonly deps: WebhooksDeps) {}

  /**
   * Verify a delivery and start its run. Resolves the HTTP answer for every outcome a sender may
   * see (202 run started or event ignored, 200 duplicate, 401 bad signature or timestamp, 403, 404,
   * 413, 400); rejects only when the store, vault, audit log or `startRun` fail unexpectedly
   * (after auditing what is known), so the server answers 5xx with an error id.
   */
  async receive(d: WebhookDelivery): Promise<WebhookAnswer> {
    const target = `${excerpt(d.environment, 63)}/${excerpt(d.trigger, 63)}`;
    const known = NAME_RE.test(d.environment) && NAME_RE.test(d.trigger);
    const trigger = known ? await this.#trigger(d.environment, d.trigger) : null;
    const base: AuditBase = { environment: trigger ? d.environment : null, target, trigger, deliveryId: null, event: null };
    if (!trigger) return this.#refuse(base, new Refusal(404, "not_found", `no trigger ${JSON.stringify(target)}: check the URL, /v1/hooks/<environment>/<trigger>, against the environment's triggers:`, "unknown trigger"));
    base.deliveryId = sanitizedId(header(d.headers, deliveryHeader(trigger.on)));
    try {
      return await this.#decide(base, d.environment, trigger, d);
    } catch (err) {
      // Unexpected (store, vault, startRun): recorded as far as the audit log still works, then the server answers 5xx.
      const e = asPaddockError(err);
      await this.#audit(base, null, "denied", `failed: ${e.code}`, { reason: excerpt(e.message, 300) }).catch(() => undefined);
      throw err;
    }
  }

  async #decide(base: AuditBase, environment: string, trigger: TriggerConfig, d: WebhookDelivery): Promise<WebhookAnswer> {
    if (d.rawBody.length > MAX_WEBHOOK_BODY_BYTES)
      return this.#refuse(base, new Refusal(413, "invalid_argument", `the body is ${d.rawBody.length} bytes; webhook bodies are at most ${MAX_WEBHOOK_BODY_BYTES}`, "body size"));
    const secret = await this.deps.vault.get(trigger.secret, { environment });
    if (!secret) {
      const message = `trigger ${trigger.name} cannot verify deliveries: its signing secret ${trigger.secret} is not set; set it with: paddock secret set ${trigger.secret} --env ${environment}`;
      return this.#refuse(base, new Refusal(503, "unavailable", message, "signing secret unset"));
    }
    const verified = verify(trigger, d, Buffer.from(secret.reveal(), "utf8"));
    if (verified instanceof Refusal) return this.#refuse(base, verified);
    base.deliveryId = verified.deliveryId;
    base.event = verified.event;
    const stale = this.#staleness(trigger, verified.signedAt);
    if (stale) return this.#refuse(base, stale);
    if (!(await this.#claim(environment, trigger.name, verified))) {
      await this.#audit(base, 200, "info", "duplicate delivery", { duplicate: true });
      return { status: 200, body: { duplicate: true, run: null } };
    }
    if (!wanted(trigger, verified.event)) {
      const reason = PINGS.has(verified.event) ? "a ping (list it in events: to start runs on it)" : `event ${JSON.stringify(verified.event)} is not in the trigger's events`;
      await this.#audit(base, 202, "info", "events filter", { ignored: true, reason });
      return { status: 202, body: { ignored: true, reason, run: null } };
    }
    return this.#start(base, environment, trigger, verified);
  }

  async #trigger(environment: string, name: string): Promise<TriggerConfig | null> {
    const spec = this.deps.specOf ? await this.deps.specOf(environment) : await this.#latestSpec(environment);
    return spec?.triggers?.find((t) => t.name === name) ?? null;
  }

  async #latestSpec(environment: string): Promise<{ triggers?: TriggerConfig[] } | null> {
    const e = await this.deps.store.getEnvironment(environment);
    const v = e ? await this.deps.store.getEnvironmentVersion(environment, e.latestVersion) : null;
    return (v?.spec as { triggers?: TriggerConfig[] } | undefined) ?? null;
  }

  #staleness(trigger: TriggerConfig, signedAt: number | null): Refusal | null {
    // GitHub signs no timestamp: replays are refused by the claim below instead.
    if (signedAt === null) return null;
    const now = (this.deps.now ?? Date.now)();
    const skew = now - signedAt;
    const window = `the trigger's maxAge of ${Math.round(trigger.maxAgeMs / 1000)}s`;
    const at = new Date(signedAt).toISOString();
    if (skew > trigger.maxAgeMs) return new Refusal(401, "unauthorized", `stale delivery: signed at ${at}, ${Math.round(skew / 1000)}s ago, beyond ${window} (a replay, or a retry sent too late)`, "timestamp");
    if (-skew > trigger.maxAgeMs) return new Refusal(401, "unauthorized", `delivery from the future: signed at ${at}, ${Math.round(-skew / 1000)}s ahead, beyond ${window} (check the sender's clock)`, "timestamp");
    return null;
  }

  /** The keys one delivery is claimed under: its id, and the digest of the signed bytes. */
  #keys(environment: string, trigger: string, v: Verified): [string, string] {
    const prefix = `${environment}/${trigger}/`;
    return [`${prefix}${v.deliveryId}`, `${prefix}sha256:${createHash("sha256").update(v.signed).digest("hex")}`];
  }

  /** One event, one decision: the delivery id and the signed bytes are each claimed once. */
  async #claim(environment: string, trigger: string, v: Verified): Promise<boolean> {
    const now = (this.deps.now ?? Date.now)();
    const at = new Date(now).toISOString();
    const forget = new Date(now - DELIVERY_MEMORY_MS).toISOString();
    const [byId, bySigned] = this.#keys(environment, trigger, v);
    if (!(await this.deps.store.claimWebhookDelivery(byId, at, forget))) return false;
    return this.deps.store.claimWebhookDelivery(bySigned, at, forget);
  }

  async #start(base: AuditBase, environment: string, trigger: TriggerConfig, v: Verified): Promise<WebhookAnswer> {
    const actor = await this.deps.store.getPrincipalByName(trigger.as);
    const problem =
      actor === null ? `principal ${trigger.as} does not exist: create it (paddock user add ${trigger.as}) or change the trigger's "as:"`
      : actor.disabledAt !== null ? `principal ${trigger.as} is disabled, so nothing runs for it: enable it or change the trigger's "as:"`
      : actor.kind !== "human" ? `principal ${trigger.as} is an agent; "as:" names the person a triggered run acts for`
      : null;
    if (actor === null || problem !== null) return this.#refuse(base, new Refusal(403, "forbidden", problem ?? "", "principal"));
    const req: TriggeredRunRequest = {
      environment, agent: trigger.agent, prompt: renderPrompt(trigger.prompt, v.payload), outcome: trigger.outcome,
      trigger: { name: trigger.name, source: trigger.on, deliveryId: v.deliveryId },
    };
    let run: Run;
    try {
      run = await this.deps.startRun(req, actor);
    } catch (err) {
      // A passing failure (the store or a provider unavailable): forget the claim, so the sender's
      // retry of this very delivery starts the run. A refusal (forbidden, invalid) stays decided.
      if (err instanceof PaddockError && (err.code === "unavailable" || err.code === "internal")) await this.deps.store.releaseWebhookDeliveries(this.#keys(environment, trigger.name, v));
      throw err;
    }
    await this.#audit(base, 202, "allowed", "signature", { run: run.id, session: run.sessionId, agent: trigger.agent });
    return { status: 202, body: { run: run.id, session: run.sessionId } };
  }

  async #refuse(base: AuditBase, r: Refusal): Promise<WebhookAnswer> {
    await this.#audit(base, r.status, "denied", r.rule, { reason: r.message });
    return { status: r.status, body: { error: { code: r.code, message: r.message } } };
  }

  #audit(base: AuditBase, status: number | null, decision: "allowed" | "denied" | "info", rule: string, extra: Record<string, unknown>): Promise<unknown> {
    const t = base.trigger;
    return this.deps.audit.append({
      actor: t ? `webhook:${t.on}` : "webhook", actorKind: "system", onBehalfOf: t?.as ?? null, action: "webhook.receive", target: base.target,
      environment: base.environment, decision, rule,
      detail: { source: t?.on ?? null, trigger: t?.name ?? null, deliveryId: base.deliveryId, event: base.event, status, outcome: outcomeOf(status, extra), ...extra },
    });
  }
}

interface AuditBase {
  environment: string | null;
  target: string;
  trigger: TriggerConfig | null;
  deliveryId: string | null;
  event: string | null;
}

function outcomeOf(status: number | null, extra: Record<string, unknown>): string {
  if (extra.duplicate) return "duplicate";
  if (extra.ignored) return "ignored";
  if (status === 202) return "accepted";
  return "refused";
}

/** Is `event` one the trigger starts runs on? `issues` covers `issues.opened`; pings only when listed. */
function wanted(t: TriggerConfig, event: string): boolean {
  if (t.events.length === 0) return !PINGS.has(event);
  return t.events.some((e) => e === event || event.startsWith(`${e}.`));
}

function header(headers: WebhookDelivery["headers"], name: string): string | undefined {
  let v = headers[name];
  if (v === undefined) {
    const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
    v = key === undefined ? undefined : headers[key];
  }
  return Array.isArray(v) ? v.join(",") : v;
}

function sanitizedId(v: string | undefined): string | null {
  if (v === undefined) return null;
  return DELIVERY_RE.test(v) ? v : excerpt(v.replace(/[^\x21-\x7e]/g, "?"), 200);
}

function deliveryHeader(source: TriggerSource): string {
  switch (source) {
    case "pagerduty":
      return "x-webhook-id";
    case "sentry":
      return "request-id";
    case "github":
      return "x-github-delivery";
    case "hook":
      return "x-paddock-delivery";
  }
}

/** Does the hex `given` equal the digest, in constant time? Malformed or truncated hex never does. */
function hexMatches(digest: Buffer, given: string): boolean {
  if (!HEX64.test(given)) return false;
  // Both 32 bytes: timingSafeEqual needs equal lengths, which the pattern above guarantees.
  return timingSafeEqual(digest, Buffer.from(given, "hex"));
}

const hmac = (secret: Buffer, ...parts: (string | Buffer)[]): Buffer => {
  const h = createHmac("sha256", secret);
  for (const p of parts) h.update(p);
  return h.digest();
};

const unauthorized = (message: string): Refusal => new Refusal(401, "unauthorized", message, "signature");
const malformed = (message: string): Refusal => new Refusal(400, "invalid_argument", message, "malformed delivery");

/** Checks the sender's signature scheme, then reads what the signed bytes say. */
function verify(t: TriggerConfig, d: WebhookDelivery, secret: Buffer): Verified | Refusal {
  const h = (name: string) => header(d.headers, name);
  let signedAt: number | null = null;
  let signed = d.rawBody;
  switch (t.on) {
    // PagerDuty v3: "X-PagerDuty-Signature: v1=<hex HMAC-SHA256(body)>", several comma-separated
    // during a secret rotation, any one matching; https://developer.pagerduty.com/docs/webhooks/
    // (v3 "Verifying Signatures"). Deliveries are de-duplicated by X-Webhook-Id ("Behavior").
    case "pagerduty": {
      const sig = h("x-pagerduty-signature");
      if (sig === undefined) return unauthorized("missing X-PagerDuty-Signature header: is this a PagerDuty v3 webhook subscription?");
      const digest = hmac(secret, d.rawBody);
      const ok = sig.split(",").map((s) => s.trim()).filter((s) => s.startsWith("v1=")).some((s) => hexMatches(digest, s.slice(3)));
      if (!ok) return unauthorized("X-PagerDuty-Signature does not match the body: check the trigger's signing secret");
      break;
    }
    // Sentry integration platform: "Sentry-Hook-Signature: <hex HMAC-SHA256(body)>" keyed by the
    // integration's client secret, Sentry-Hook-Timestamp in seconds, Sentry-Hook-Resource, and a
    // Request-ID per delivery; https://docs.sentry.io/integrations/integration-platform/webhooks/
    // The timestamp header is not signed: the claim on the signed bytes is the replay guard.
    case "sentry": {
      const sig = h("sentry-hook-signature");
      if (sig === undefined) return unauthorized("missing Sentry-Hook-Signature header: is this a Sentry integration webhook?");
      if (!hexMatches(hmac(secret, d.rawBody), sig.trim())) return unauthorized("Sentry-Hook-Signature does not match the body: check the trigger's signing secret (the integration's client secret)");
      const ts = h("sentry-hook-timestamp")?.trim() ?? "";
      if (!/^\d{1,12}(\.\d{1,9})?$/.test(ts)) return unauthorized("missing or malformed Sentry-Hook-Timestamp (seconds since the epoch)");
      signedAt = Math.round(Number(ts) * 1000);
      break;
    }
    // GitHub: "X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>";
    // https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    // GitHub signs no timestamp: a delivery is refused as a replay by X-GitHub-Delivery and by the
    // digest of its body, both remembered for DELIVERY_MEMORY_MS.
    case "github": {
      const sig = h("x-hub-signature-256")?.trim();
      if (sig === undefined) return unauthorized("missing X-Hub-Signature-256 header: set a secret on the GitHub webhook");
      if (!sig.startsWith("sha256=") || !hexMatches(hmac(secret, d.rawBody), sig.slice(7))) return unauthorized("X-Hub-Signature-256 does not match the body: check the trigger's signing secret");
      break;
    }
    // Paddock's own scheme for any sender: "X-Paddock-Signature: t=<unix seconds>,v1=<hex
    // HMAC-SHA256("<t>.<body>")>" (several v1= during a rotation), X-Paddock-Delivery required.
    case "hook": {
      const sig = h("x-paddock-signature");
      if (sig === undefined) return unauthorized("missing X-Paddock-Signature header: sign as docs/triggers.md shows (t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">)");
      const fields = sig.split(",").map((s) => s.trim());
      const ts = fields.filter((f) => f.startsWith("t=")).map((f) => f.slice(2));
      if (ts.length !== 1 || !/^\d{1,12}$/.test(ts[0] ?? "")) return unauthorized("X-Paddock-Signature needs exactly one t=<unix seconds>");
      const t0 = ts[0] ?? "";
      signed = Buffer.concat([Buffer.from(`${t0}.`, "utf8"), d.rawBody]);
      const digest = hmac(secret, signed);
      if (!fields.filter((f) => f.startsWith("v1=")).some((f) => hexMatches(digest, f.slice(3)))) return unauthorized("X-Paddock-Signature does not match \"<t>.<body>\": check the trigger's signing secret");
      signedAt = Number(t0) * 1000;
      break;
    }
  }
  const payload = parsePayload(t.on, d.rawBody, h("content-type"));
  if (payload instanceof Refusal) return payload;
  if (t.on === "pagerduty") {
    const occurred = (payload as { event?: { occurred_at?: unknown } } | null)?.event?.occurred_at;
    const ms = typeof occurred === "string" && /^\d{4}-\d\d-\d\dT/.test(occurred) ? Date.parse(occurred) : NaN;
    if (Number.isNaN(ms)) return malformed("the payload has no event.occurred_at time: is this a PagerDuty v3 webhook?");
    signedAt = ms;
  }
  const id = h(deliveryHeader(t.on))?.trim();
  if (id === undefined || !DELIVERY_RE.test(id)) return malformed(`missing or malformed ${deliveryHeader(t.on)} header: 1 to 200 printable characters identifying the delivery`);
  return { payload, signed, signedAt, deliveryId: id, event: eventOf(t.on, payload, h) };
}

function parsePayload(source: TriggerSource, raw: Buffer, contentType: string | undefined): unknown {
  let text = raw.toString("utf8");
  // GitHub may be set to send form bodies: payload=<JSON>; the signature covers the form bytes.
  if (source === "github" && /^application\/x-www-form-urlencoded/i.test(contentType ?? "")) text = new URLSearchParams(text).get("payload") ?? "";
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return malformed("the body is not JSON");
  }
}

function eventOf(source: TriggerSource, payload: unknown, h: (name: string) => string | undefined): string {
  const action = (payload as { action?: unknown } | null)?.action;
  const withAction = (name: string): string => (typeof action === "string" && action !== "" ? `${name}.${action}` : name);
  switch (source) {
    case "pagerduty": {
      const type = (payload as { event?: { event_type?: unknown } } | null)?.event?.event_type;
      return typeof type === "string" ? excerpt(type, 200) : "";
    }
    case "sentry":
      return excerpt(withAction(h("sentry-hook-resource")?.trim() ?? ""), 200);
    case "github":
      return excerpt(withAction(h("x-github-event")?.trim() ?? ""), 200);
    case "hook":
      return excerpt(h("x-paddock-event")?.trim() ?? "", 200);
  }
}
