// `triggers:`: the spec form, defaults, and located fix-it messages for every kind of mistake.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseEnvironment } from "../../src/config/index.ts";
import type { TriggerConfig } from "../../src/config/triggers.ts";
import { MAX_PROMPT_VALUE_CHARS, MAX_RENDERED_PROMPT_CHARS, TRUNCATED, parseTemplate, renderPrompt, triggerSecretsStayPrivate } from "../../src/config/triggers.ts";
import { lines, problems } from "./fixtures.ts";

const trigger = (...extra: string[]) =>
  lines("name: shop", "triggers:", "  - name: pd-incident", "    on: pagerduty", "    secret: PD_SECRET", "    agent: claude-code", '    prompt: "Investigate {{event.data.title}}"', "    as: alice", ...extra);

function triggersOf(source: string): TriggerConfig[] {
  const { spec, issues } = parseEnvironment(source, "runtime.yml");
  assert.deepEqual(issues, []);
  assert.ok(spec);
  return spec.triggers;
}

void describe("triggers: spec form", () => {
  void it("absent and empty are no triggers", () => {
    assert.deepEqual(triggersOf(lines("name: shop")), []);
    assert.deepEqual(triggersOf(lines("name: shop", "triggers: []")), []);
    assert.deepEqual(triggersOf(lines("name: shop", "triggers:")), []);
  });

  void it("fills the defaults: every event, keep, 5m in milliseconds", () => {
    assert.deepEqual(triggersOf(trigger()), [
      { name: "pd-incident", on: "pagerduty", events: [], secret: "PD_SECRET", agent: "claude-code", prompt: "Investigate {{event.data.title}}", as: "alice", outcome: "keep", maxAgeMs: 300_000 },
    ]);
  });

  void it("takes events, outcome and maxAge", () => {
    const [t] = triggersOf(trigger("    events: [incident.triggered, incident.reopened]", "    outcome: snapshot", "    maxAge: 30m"));
    assert.deepEqual(t?.events, ["incident.triggered", "incident.reopened"]);
    assert.equal(t?.outcome, "snapshot");
    assert.equal(t?.maxAgeMs, 30 * 60_000);
  });

  void it("accepts each sender's event forms", () => {
    const src = lines(
      "name: shop",
      "triggers:",
      "  - { name: gh, on: github, events: [issues, issues.opened, pull_request.labeled, fork], secret: GH, agent: codex, prompt: x, as: alice }",
      "  - { name: se, on: sentry, events: [issue.created, event_alert.triggered, metric_alert], secret: SE, agent: codex, prompt: x, as: alice }",
      '  - { name: hk, on: hook, events: ["Deploy Failed", alert/fired], secret: HK, agent: codex, prompt: x, as: alice }',
    );
    assert.deepEqual(triggersOf(src).map((t) => t.events.length), [4, 3, 2]);
  });
});

void describe("triggers: located, actionable errors", () => {
  void it("requires each key, at the trigger", () => {
    assert.deepEqual(problems(lines("name: shop", "triggers:", "  - name: a")), [
      'runtime.yml:3:5 triggers[0].on: missing required key: add "on:" with the sender, one of "pagerduty", "sentry", "github", "hook"',
      'runtime.yml:3:5 triggers[0].secret: missing required key: add "secret: <NAME>" naming the vault secret that holds the signing secret',
      'runtime.yml:3:5 triggers[0].agent: missing required key: add "agent: <name>", e.g. "agent: claude-code"',
      'runtime.yml:3:5 triggers[0].prompt: missing required key: add "prompt: …" saying what the agent should do; {{a.b}} inserts a payload field',
      'runtime.yml:3:5 triggers[0].as: missing required key: add "as: <person>" naming who the triggered run acts for',
    ]);
  });

  void it("names, senders and secret names", () => {
    const src = lines("name: shop", "triggers:", "  - { name: PD_1, on: pagerduti, secret: pd-secret, agent: claude-code, prompt: x, as: Alice }");
    assert.deepEqual(problems(src), [
      'runtime.yml:3:13 triggers[0].name: "PD_1" is not a trigger name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit, e.g. "pd-incident"',
      'runtime.yml:3:23 triggers[0].on: unknown sender "pagerduti" (did you mean "pagerduty"?); valid senders: "pagerduty", "sentry", "github", "hook" (use "hook" for any other sender that can sign with X-Paddock-Signature)',
      'runtime.yml:3:42 triggers[0].secret: "pd-secret" is not a secret name: use upper-case letters, digits and "_", not starting with a digit, e.g. "PAGERDUTY_WEBHOOK_SECRET" (the value itself goes in the vault: paddock secret set NAME)',
      'runtime.yml:3:88 triggers[0].as: "Alice" is not a principal name: use lowercase letters, digits, ".", "_" and "-", starting with a letter (e.g. "oncall-lead")',
    ]);
  });

  void it("a trigger name used twice, at the second", () => {
    const src = lines("name: shop", "triggers:", "  - { name: a, on: hook, secret: S, agent: codex, prompt: x, as: bob }", "  - { name: a, on: hook, secret: S, agent: codex, prompt: x, as: bob }");
    assert.deepEqual(problems(src), ['runtime.yml:4:5 triggers[1]: trigger "a" is listed twice (first at line 3); remove one']);
  });

  void it("event typos per sender, with the likely name", () => {
    const src = lines(
      "name: shop",
      "triggers:",
      "  - { name: a, on: pagerduty, events: [incident.trigered, Incident], secret: S, agent: codex, prompt: x, as: bob }",
      "  - { name: b, on: github, events: [issue.opened, issues.opened.now], secret: S, agent: codex, prompt: x, as: bob }",
      "  - { name: c, on: sentry, events: [issues.created], secret: S, agent: codex, prompt: x, as: bob }",
      '  - { name: d, on: hook, events: [" "], secret: S, agent: codex, prompt: x, as: bob }',
    );
    assert.deepEqual(problems(src), [
      'runtime.yml:3:40 triggers[0].events[0]: unknown PagerDuty event type "incident.trigered" (did you mean "incident.triggered"?)',
      'runtime.yml:3:59 triggers[0].events[1]: "Incident" is not a PagerDuty event type: write it as PagerDuty names it, e.g. "incident.triggered"',
      'runtime.yml:4:37 triggers[1].events[0]: unknown GitHub event "issue" (did you mean "issues.opened"?)',
      'runtime.yml:4:51 triggers[1].events[1]: "issues.opened.now" is not a GitHub event: write the X-GitHub-Event name, optionally with the payload\'s action, e.g. "issues" or "issues.opened"',
      'runtime.yml:5:37 triggers[2].events[0]: unknown Sentry resource "issues" (did you mean "issue"?); Sentry sends "installation", "event_alert", "issue", "metric_alert", "error", "comment", "seer", "preprod_artifact"',
      'runtime.yml:6:35 triggers[3].events[0]: is empty: name the event your sender puts in X-Paddock-Event, or remove the item',
    ]);
  });

  void it("maxAge: bounds, and none for github", () => {
    assert.deepEqual(problems(trigger("    maxAge: 0s")), [
      'runtime.yml:9:13 triggers[0].maxAge: "0s" is zero: every delivery would be refused as stale; give the sender time, e.g. "5m"',
    ]);
    assert.deepEqual(problems(trigger("    maxAge: 2d")), [
      'runtime.yml:9:13 triggers[0].maxAge: "2d" is more than the maximum of 1d: a long window lets a captured delivery be replayed for longer',
    ]);
    const gh = lines("name: shop", "triggers:", "  - { name: gh, on: github, secret: S, agent: codex, prompt: x, as: bob, maxAge: 5m }");
    assert.deepEqual(problems(gh), [
      "runtime.yml:3:74 triggers[0].maxAge: GitHub signs no timestamp, so there is nothing for maxAge to check: remove it (a replayed GitHub delivery is refused by its delivery id and body instead)",
    ]);
  });

  void it("prompt templates: unclosed, empty and malformed placeholders, size", () => {
    const at = (prompt: string) => problems(lines("name: shop", "triggers:", "  - name: a", "    on: hook", "    secret: S", "    agent: codex", `    prompt: ${JSON.stringify(prompt)}`, "    as: bob"));
    assert.deepEqual(at("Fix {{issue.title"), ['runtime.yml:7:13 triggers[0].prompt: has a "{{" that is not closed by "}}" (or has braces inside it): write placeholders as {{event.data.title}}']);
    assert.deepEqual(at("Fix {{ }}"), ['runtime.yml:7:13 triggers[0].prompt: empty placeholder "{{}}": name a payload field such as {{event.data.title}}']);
    assert.match(at("Fix {{issue title}}")[0] ?? "", /"\{\{issue title\}\}" is not a payload path: write field names/);
    assert.match(at("   ")[0] ?? "", /prompt: is empty: write what the agent should do/);
    assert.match(at("x".repeat(17 * 1024))[0] ?? "", /prompt: is longer than 16 KiB/);
  });

  void it("outcome names the valid words", () => {
    assert.deepEqual(problems(trigger("    outcome: snapshott")), [
      'runtime.yml:9:14 triggers[0].outcome: unknown outcome "snapshott" (did you mean "snapshot"?); valid outcomes: "keep", "snapshot", "stop"',
    ]);
  });

  void it("triggers: must be a list", () => {
    assert.deepEqual(problems(lines("name: shop", "triggers:", "  pd: { on: pagerduty }")), [
      'runtime.yml:3:3 triggers: expected a list of triggers, each a mapping starting with "- name: …", got a mapping',
    ]);
  });
});

void describe("triggerSecretsStayPrivate", () => {
  void it("refuses a signing secret that sandboxes would also get", () => {
    const issues: unknown[] = [];
    const ctx = { addIssue: (i: unknown) => void issues.push(i) };
    triggerSecretsStayPrivate({ secrets: [{ name: "PD_SECRET" }, { name: "OTHER" }], triggers: [{ secret: "PD_SECRET" }, { secret: "SAFE" }] }, ctx);
    assert.equal(issues.length, 1);
    assert.deepEqual((issues[0] as { path: unknown[] }).path, ["triggers", 0, "secret"]);
  });
});

void describe("prompt rendering", () => {
  const payload = { event: { data: { title: "DB down", n: 3, ok: true, none: null, list: [1, { a: "b" }] } } };

  void it("fills paths, with whitespace in braces; unknown paths are empty", () => {
    assert.equal(renderPrompt("T={{event.data.title}} N={{ event.data.n }} B={{event.data.ok}} X={{event.data.nope}} Y={{event.data.none}}", payload), "T=DB down N=3 B=true X= Y=");
    assert.equal(renderPrompt("{{event.data.list.1.a}} {{event.data.list}}", payload), 'b [1,{"a":"b"}]');
  });

  void it("never reaches the prototype chain", () => {
    assert.equal(renderPrompt("[{{__proto__}}][{{constructor.name}}][{{event.toString}}]", payload), "[][][]");
  });

  void it("inserts values as plain text, once: a value's {{x}} stays as written", () => {
    assert.equal(renderPrompt("Title: {{t}}", { t: "{{secret}} and {{t}}", secret: "s3cr3t" }), "Title: {{secret}} and {{t}}");
  });

  void it("drops control characters but keeps newlines and tabs", () => {
    assert.equal(renderPrompt("{{t}}", { t: "a\u0000b\u001b[31mc\nd\te\u007f" }), "ab[31mc\nd\te");
  });

  void it("bounds each value and the whole prompt", () => {
    const one = renderPrompt("<{{t}}>", { t: "x".repeat(1_000_000) });
    assert.equal(one.length, MAX_PROMPT_VALUE_CHARS + 2);
    assert.ok(one.endsWith(`${TRUNCATED}>`));
    const many = renderPrompt(Array.from({ length: 10 }, (_, i) => `{{v${i}}}`).join(""), Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`v${i}`, "y".repeat(20_000)])));
    assert.equal(many.length, MAX_RENDERED_PROMPT_CHARS);
    assert.ok(many.endsWith(TRUNCATED));
  });

  void it("parses templates into text and paths", () => {
    assert.deepEqual(parseTemplate("a {{b.c}} d"), [{ text: "a " }, { path: ["b", "c"] }, { text: " d" }]);
  });
});
