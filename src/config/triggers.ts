/**
 * `triggers:` (extension): webhooks that start an agent run. Each trigger names the sender
 * (`on`), which of its events count, the vault secret its signatures are checked with, the agent,
 * a prompt template filled from the payload, and the principal the run acts for. The control plane
 * verifies and dispatches deliveries (src/control/webhooks.ts); see docs/triggers.md.
 *
 * The prompt template grammar lives here, beside its validation, so the file is checked with the
 * same rules the renderer uses.
 */
import { z } from "zod";
import type { IssueSink } from "./fields.ts";
import { ALWAYS, expecting, noDuplicates, oneOf, parsedString, refineWith, withDefault } from "./fields.ts";
import { RUN_OUTCOMES } from "./agent.ts";
import { DAY_MS, MINUTE_MS, parseDuration } from "./units.ts";
import { describeValue, nearest, quote, quoteList } from "./words.ts";

export const TRIGGER_SOURCES = ["pagerduty", "sentry", "github", "hook"] as const;
export type TriggerSource = (typeof TRIGGER_SOURCES)[number];
export const MAX_TRIGGERS = 32;
export const MAX_TRIGGER_EVENTS = 64;
export const DEFAULT_MAX_AGE_MS = 5 * MINUTE_MS;
/** The template as written; what it renders to is bounded separately (MAX_RENDERED_PROMPT_BYTES). */
export const MAX_PROMPT_TEMPLATE_BYTES = 16 * 1024;
/** Each value inserted into the prompt is cut to this many characters. */
export const MAX_PROMPT_VALUE_CHARS = 8 * 1024;
/** The whole rendered prompt is cut to this many characters. */
export const MAX_RENDERED_PROMPT_CHARS = 32 * 1024;
export const TRUNCATED = "…[truncated]";

/** A trigger as the spec holds it (`EnvironmentSpec.triggers[i]`). */
export interface TriggerConfig {
  /** Unique in the environment; the URL is `/v1/hooks/<environment>/<name>`. */
  name: string;
  on: TriggerSource;
  /** Event types that start a run; `[]`: every event (pings excepted). */
  events: string[];
  /** Name of the vault secret holding the signing secret (read by the control plane only). */
  secret: string;
  agent: string;
  /** Template with `{{a.b.c}}` paths into the payload. */
  prompt: string;
  /** The principal (a person) the run acts for. */
  as: string;
  outcome: (typeof RUN_OUTCOMES)[number];
  /** How far a signed timestamp may be from now, either way; unused for github (it signs none). */
  maxAgeMs: number;
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const SECRET_RE = /^[A-Z_][A-Z0-9_]{0,127}$/;
const PRINCIPAL_RE = /^[a-z][a-z0-9._-]{0,62}$/;
const AGENT_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
const CONTROL = /[\u0000-\u001f\u007f]/;

// ---- prompt templates -------------------------------------------------------------------------

/** One piece of a parsed template: text as written, or a path into the payload. */
export type TemplatePart = { text: string } | { path: string[] };

const PLACEHOLDER = /\{\{([^{}]*)\}\}/g;
const SEGMENT = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Splits a template into text and `{{a.b.c}}` paths. Throws an Error fit to show for an unclosed
 * `{{`, an empty placeholder or a malformed path. Whitespace inside the braces is allowed.
 */
export function parseTemplate(template: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let at = 0;
  for (const m of template.matchAll(PLACEHOLDER)) {
    const text = template.slice(at, m.index);
    checkText(text);
    if (text) parts.push({ text });
    const inner = (m[1] ?? "").trim();
    if (inner === "") throw new Error(`empty placeholder "{{}}": name a payload field such as {{event.data.title}}`);
    const path = inner.split(".");
    const bad = path.find((s) => !SEGMENT.test(s));
    if (bad !== undefined || path.length > 16)
      throw new Error(`${quote(`{{${inner}}}`)} is not a payload path: write field names (letters, digits, "_", "-") and list indexes joined by ".", e.g. {{event.data.title}} or {{commits.0.id}}`);
    parts.push({ path });
    at = m.index + m[0].length;
  }
  const rest = template.slice(at);
  checkText(rest);
  if (rest) parts.push({ text: rest });
  return parts;
}

function checkText(text: string): void {
  if (text.includes("{{")) throw new Error('has a "{{" that is not closed by "}}" (or has braces inside it): write placeholders as {{event.data.title}}');
}

/** The payload value at `path` as text: "" when absent; objects and lists as JSON. Own keys only. */
function lookup(payload: unknown, path: string[]): string {
  let cur: unknown = payload;
  for (const seg of path) {
    if (cur === null || typeof cur !== "object") return "";
    // Own properties only: {{__proto__}} or {{constructor}} must not reach the prototype chain.
    if (!Object.hasOwn(cur, seg)) return "";
    cur = (cur as Record<string, unknown>)[seg];
  }
  switch (typeof cur) {
    case "string":
      return cur;
    case "number":
    case "boolean":
      return String(cur);
    case "object":
      return cur === null ? "" : JSON.stringify(cur);
    case "bigint":
    case "function":
    case "symbol":
    case "undefined":
      return "";
  }
}

/** Control characters other than newline and tab are dropped: a prompt is plain text. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what we drop
const STRIP = /[\u0000-\u0008\u000b-\u001f\u007f]/g;

function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  // Do not split a surrogate pair.
  let end = max - TRUNCATED.length;
  const code = s.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end -= 1;
  return s.slice(0, end) + TRUNCATED;
}

/**
 * Fills a template from a payload in one pass: values are inserted as plain text and never read as
 * template text again (a value holding "{{x}}" stays "{{x}}"). Each value is cut to
 * MAX_PROMPT_VALUE_CHARS and the whole prompt to MAX_RENDERED_PROMPT_CHARS.
 *
 * @throws Error for a template parseTemplate refuses (the config check keeps such files out).
 * @example renderPrompt("Fix {{event.data.title}}", payload) // "Fix DB down"
 */
export function renderPrompt(template: string, payload: unknown): string {
  const out = parseTemplate(template)
    .map((p) => ("text" in p ? p.text : cut(lookup(payload, p.path).replace(STRIP, ""), MAX_PROMPT_VALUE_CHARS)))
    .join("");
  return cut(out, MAX_RENDERED_PROMPT_CHARS);
}

function badTemplate(v: string): string | undefined {
  if (v.trim() === "") return 'is empty: write what the agent should do, e.g. "Investigate {{event.data.title}}"';
  if (Buffer.byteLength(v) > MAX_PROMPT_TEMPLATE_BYTES) return `is longer than ${MAX_PROMPT_TEMPLATE_BYTES / 1024} KiB: keep the prompt short and point the agent at details`;
  try {
    parseTemplate(v);
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
}

// ---- event names ------------------------------------------------------------------------------

/** PagerDuty v3 event types (developer.pagerduty.com, "v3 Overview"; more may be added). */
const PAGERDUTY_EVENTS = [
  "incident.acknowledged", "incident.annotated", "incident.delegated", "incident.escalated", "incident.priority_updated",
  "incident.reassigned", "incident.reopened", "incident.resolved", "incident.responder.added", "incident.responder.replied",
  "incident.status_update_published", "incident.triggered", "incident.unacknowledged", "incident.conference_bridge.updated",
  "incident.custom_field_values.updated", "incident.incident_type.changed", "incident.workflow.started", "incident.workflow.completed",
  "service.created", "service.deleted", "service.updated", "pagey.ping",
];
/** Sentry-Hook-Resource values (docs.sentry.io, integration platform webhooks). */
const SENTRY_RESOURCES = ["installation", "event_alert", "issue", "metric_alert", "error", "comment", "seer", "preprod_artifact"];
/** Common X-GitHub-Event names, for typo hints only: any lowercase name is accepted. */
const GITHUB_EVENTS = [
  "issues", "issue_comment", "pull_request", "pull_request_review", "pull_request_review_comment", "pull_request_review_thread",
  "push", "release", "workflow_run", "workflow_job", "check_run", "check_suite", "discussion", "discussion_comment", "create",
  "delete", "deployment", "deployment_status", "status", "label", "milestone", "repository_dispatch", "code_scanning_alert",
  "dependabot_alert", "secret_scanning_alert", "security_advisory", "merge_group", "ping", "fork", "star", "watch", "member",
  "membership", "public", "gollum", "installation", "installation_repositories", "commit_comment", "page_build", "project",
  "registry_package", "package", "team", "team_add", "repository", "sponsorship", "branch_protection_rule", "deploy_key",
  "workflow_dispatch", "meta", "organization", "repository_vulnerability_alert", "repository_ruleset",
];

const DOTTED = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;

function hint(word: string, known: readonly string[]): string {
  const near = nearest(word, known);
  return near === undefined ? "" : ` (did you mean ${JSON.stringify(near)}?)`;
}

/** Why `event` cannot be an event of `source`, or undefined when it can. */
export function badEvent(source: TriggerSource, event: string): string | undefined {
  switch (source) {
    case "pagerduty":
      if (!DOTTED.test(event)) return `${quote(event)} is not a PagerDuty event type: write it as PagerDuty names it, e.g. "incident.triggered"`;
      // A near miss of a known type is a typo that would silently never match.
      if (!PAGERDUTY_EVENTS.includes(event) && nearest(event, PAGERDUTY_EVENTS) !== undefined)
        return `unknown PagerDuty event type ${quote(event)}${hint(event, PAGERDUTY_EVENTS)}`;
      return undefined;
    case "github": {
      const [name = "", action, ...more] = event.split(".");
      if (!DOTTED.test(event) || more.length > 0)
        return `${quote(event)} is not a GitHub event: write the X-GitHub-Event name, optionally with the payload's action, e.g. "issues" or "issues.opened"`;
      const near = GITHUB_EVENTS.includes(name) ? undefined : nearest(name, GITHUB_EVENTS);
      if (near !== undefined) return `unknown GitHub event ${quote(name)} (did you mean ${JSON.stringify(action === undefined ? near : `${near}.${action}`)}?)`;
      return undefined;
    }
    case "sentry": {
      const [resource = "", , ...more] = event.split(".");
      if (!DOTTED.test(event) || more.length > 0)
        return `${quote(event)} is not a Sentry event: write the Sentry-Hook-Resource, optionally with the payload's action, e.g. "issue.created" or "event_alert.triggered"`;
      if (!SENTRY_RESOURCES.includes(resource))
        return `unknown Sentry resource ${quote(resource)}${hint(resource, SENTRY_RESOURCES)}; Sentry sends ${quoteList(SENTRY_RESOURCES)}`;
      return undefined;
    }
    case "hook":
      if (event.trim() === "") return "is empty: name the event your sender puts in X-Paddock-Event, or remove the item";
      if (event.length > 200 || CONTROL.test(event)) return `${quote(event)} is not an event name: at most 200 characters, no control characters`;
      return undefined;
  }
}

// ---- the schema -------------------------------------------------------------------------------

const string = (what: string, missing: string, problem: (v: string) => string | undefined) =>
  z.string(expecting(what, missing)).superRefine(refineWith(problem));

const maxAge = (n: number): string | undefined => {
  if (n <= 0) return 'is zero: every delivery would be refused as stale; give the sender time, e.g. "5m"';
  return n > DAY_MS ? "is more than the maximum of 1d: a long window lets a captured delivery be replayed for longer" : undefined;
};

const trigger = z.strictObject(
  {
    name: string('a trigger name such as "pd-incident"', 'missing required key: add a name such as "name: pd-incident"', (v) =>
      NAME_RE.test(v) ? undefined : `${quote(v)} is not a trigger name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit, e.g. "pd-incident"`,
    ).describe("The trigger's name, unique in the file: the webhook URL is /v1/hooks/<environment>/<name>. 1 to 63 lowercase letters, digits and dashes. Required."),
    on: z
      .enum(TRIGGER_SOURCES, {
        error: (iss) => {
          if (iss.input === undefined) return `missing required key: add "on:" with the sender, one of ${quoteList(TRIGGER_SOURCES)}`;
          const valid = `valid senders: ${quoteList(TRIGGER_SOURCES)}`;
          if (typeof iss.input !== "string") return `expected a sender, got ${describeValue(iss.input)}; ${valid}`;
          return `unknown sender ${quote(iss.input)}${hint(iss.input, TRIGGER_SOURCES)}; ${valid} (use "hook" for any other sender that can sign with X-Paddock-Signature)`;
        },
      })
      .describe('Who sends the webhook, which decides how it is verified: "pagerduty" (v3 webhooks), "sentry" (integration webhooks), "github", or "hook" (any sender signing with the X-Paddock-Signature scheme). Required.'),
    events: withDefault(
      z.array(z.string(expecting("an event name such as \"incident.triggered\"")), expecting('a list of event names, e.g. ["incident.triggered"]'))
        .max(MAX_TRIGGER_EVENTS, { error: `too many events: at most ${MAX_TRIGGER_EVENTS}` })
        .superRefine(noDuplicates("event"), ALWAYS),
      () => [],
    ).describe(
      'Event types that start a run; other deliveries are answered 202 and ignored. PagerDuty: event.event_type ("incident.triggered"); GitHub: X-GitHub-Event, optionally .action ("issues", "issues.opened"); Sentry: Sentry-Hook-Resource, optionally .action ("issue.created", "event_alert.triggered"); hook: X-Paddock-Event. Absent or []: every event except the senders\' pings.',
    ),
    secret: string('a secret name such as "PAGERDUTY_WEBHOOK_SECRET"', 'missing required key: add "secret: <NAME>" naming the vault secret that holds the signing secret', (v) =>
      SECRET_RE.test(v) ? undefined : `${quote(v)} is not a secret name: use upper-case letters, digits and "_", not starting with a digit, e.g. "PAGERDUTY_WEBHOOK_SECRET" (the value itself goes in the vault: paddock secret set NAME)`,
    ).describe("The name of the vault secret holding the signing secret (set it with `paddock secret set NAME`). Only the control plane reads it; sandboxes never get it. Required."),
    agent: string('an agent name such as "claude-code"', 'missing required key: add "agent: <name>", e.g. "agent: claude-code"', (v) =>
      AGENT_RE.test(v) ? undefined : `${quote(v)} is not an agent name: e.g. "claude-code"`,
    ).describe('The agent that runs, e.g. "claude-code". Required.'),
    prompt: string('a prompt such as "Investigate {{event.data.title}}"', 'missing required key: add "prompt: …" saying what the agent should do; {{a.b}} inserts a payload field', badTemplate).describe(
      "The agent's first prompt. {{a.b.c}} inserts the payload's field as plain text (a missing field inserts nothing; lists and mappings as JSON); each value is cut at 8 KiB and the prompt at 32 KiB. At most 16 KiB as written. Required.",
    ),
    as: string('a principal name such as "oncall-lead"', 'missing required key: add "as: <person>" naming who the triggered run acts for', (v) =>
      PRINCIPAL_RE.test(v) ? undefined : `${quote(v)} is not a principal name: use lowercase letters, digits, ".", "_" and "-", starting with a letter (e.g. "oncall-lead")`,
    ).describe("The person (principal name) the run acts for: the agent's permissions are cut to theirs, and the audit names them. A missing or disabled principal refuses the run. Required."),
    outcome: withDefault(oneOf(RUN_OUTCOMES, "outcome"), () => "keep" as const).describe('After the run: "keep" the session for follow-ups (default), "snapshot" it and stop, or "stop".'),
    maxAge: withDefault(parsedString('a duration such as "5m"', parseDuration, maxAge).nullable(), () => null).describe(
      'How far the delivery\'s signed timestamp may be from now, either way (pagerduty: event.occurred_at; sentry: Sentry-Hook-Timestamp; hook: t=). Default "5m", at most 1d. Not for github, which signs no timestamp.',
    ),
  },
  expecting('a mapping with name, on, secret, agent, prompt, as and optionally events, outcome, maxAge'),
);

type TriggerIn = z.output<typeof trigger>;

/** Per-trigger rules that depend on the sender: event names, maxAge on github. */
function checkTrigger(t: unknown, ctx: IssueSink, at: number): void {
  if (typeof t !== "object" || t === null) return;
  const { on, events, maxAge: age } = t as { on?: unknown; events?: unknown; maxAge?: unknown };
  if (typeof on !== "string" || !(TRIGGER_SOURCES as readonly string[]).includes(on)) return;
  const source = on as TriggerSource;
  if (Array.isArray(events))
    events.forEach((e: unknown, i) => {
      if (typeof e !== "string") return;
      const message = badEvent(source, e);
      if (message !== undefined) ctx.addIssue({ code: "custom", path: [at, "events", i], message, input: e });
    });
  if (source === "github" && age !== undefined && age !== null)
    ctx.addIssue({
      code: "custom", path: [at, "maxAge"], input: age, params: { at: "key" },
      message: "GitHub signs no timestamp, so there is nothing for maxAge to check: remove it (a replayed GitHub delivery is refused by its delivery id and body instead)",
    });
}

const triggerName = (t: unknown): string | undefined =>
  typeof t === "object" && t !== null && typeof (t as { name?: unknown }).name === "string" ? (t as { name: string }).name : undefined;

export const triggersSchema = withDefault(
  z
    .array(trigger, expecting("a list of triggers, each a mapping starting with \"- name: …\""))
    .max(MAX_TRIGGERS, { error: `too many triggers: at most ${MAX_TRIGGERS}` })
    .superRefine((list: unknown, ctx) => {
      noDuplicates("trigger", triggerName)(list, ctx);
      if (Array.isArray(list)) list.forEach((t: unknown, i) => checkTrigger(t, ctx, i));
    }, ALWAYS),
  () => [],
)
  .transform((list: TriggerIn[]): TriggerConfig[] =>
    list.map((t) => ({
      name: t.name, on: t.on, events: t.events, secret: t.secret, agent: t.agent, prompt: t.prompt, as: t.as, outcome: t.outcome,
      maxAgeMs: t.maxAge ?? DEFAULT_MAX_AGE_MS,
    })),
  )
  .describe(
    "Extension. Webhooks that start an agent run: each names its sender (on), the events that count, the vault secret its signatures are checked with, the agent, a prompt filled from the payload and the person the run acts for. Deliveries go to POST /v1/hooks/<environment>/<name> (docs/triggers.md). Absent or []: none.",
  );

/**
 * A signing secret listed in `secrets:` too would be handed to sandboxes as a placeholder the
 * gateway swaps, so an agent could sign its own deliveries: refused. For `environmentSchema`'s
 * superRefine, like seedNeedsServices.
 */
export function triggerSecretsStayPrivate(spec: { secrets?: unknown; triggers?: unknown }, ctx: IssueSink): void {
  const triggers = Array.isArray(spec.triggers) ? (spec.triggers as unknown[]) : [];
  const bound = new Set(
    (Array.isArray(spec.secrets) ? (spec.secrets as unknown[]) : [])
      .map((s) => (typeof s === "string" ? s : typeof s === "object" && s !== null ? (s as { name?: unknown }).name : undefined))
      .filter((n): n is string => typeof n === "string"),
  );
  triggers.forEach((t: unknown, i) => {
    const secret = typeof t === "object" && t !== null ? (t as { secret?: unknown }).secret : undefined;
    if (typeof secret === "string" && bound.has(secret))
      ctx.addIssue({
        code: "custom", path: ["triggers", i, "secret"], input: secret,
        message: `${quote(secret)} is also listed under "secrets:", which would give sandboxes a placeholder for it and let an agent sign its own webhooks: keep the signing secret out of "secrets:" (only the control plane reads it)`,
      });
  });
}
