/**
 * The environment file's schema (`paddock.yml` / `runtime.yml`). The schema is the type and the
 * documentation: every field says what it means, its default, and what an empty value means.
 * Keys marked "extension" are additions to the DESIGN.md file; a file without them keeps working.
 */
import { z } from "zod";
import type { IssueSink } from "./fields.ts";
import { ALWAYS, asString, expecting, noDuplicates, oneOf, parsedString, refineWith, ruleString, slugify, withDefault } from "./fields.ts";
import { checkCommandRule, checkNetworkRule } from "./rules.ts";
import { seedNeedsServices, seedSchema, servicesSchema } from "./services.ts";
import { agentSchema } from "./agent.ts";
import { triggerSecretsStayPrivate, triggersSchema } from "./triggers.ts";
import { DAY_MS, GiB, MiB, formatBytes, parseDuration, parseMemory } from "./units.ts";
import { quote } from "./words.ts";

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const PROVIDER_RE = /^[a-z0-9][a-z0-9-]*$/;
const SECRET_RE = /^[A-Z_][A-Z0-9_]*$/;
const ROLE_RE = /^[a-z][a-z0-9_-]*$/;

export const MIN_MEMORY_BYTES = 16 * MiB;
export const MAX_TIMEOUT_MS = 7 * DAY_MS;
export const MAX_INSTALL_STEPS = 50;
export const PERMISSIONS = ["read", "write", "deploy"] as const;
export const SECRET_LOCATIONS = ["header", "query", "body"] as const;
export const SECRET_KINDS = ["http", "postgres"] as const;
export const BASES = ["host", "debian-12"] as const;
export const ISOLATION_TIERS = ["namespaces", "gvisor"] as const;

function badName(v: string): string | undefined {
  if (NAME_RE.test(v)) return undefined;
  const slug = slugify(v);
  const hint = NAME_RE.test(slug) ? ` (did you mean ${JSON.stringify(slug)}?)` : "";
  return `${quote(v)} is not a valid name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit${hint}`;
}

function badProvider(v: string): string | undefined {
  if (PROVIDER_RE.test(v)) return undefined;
  return `${quote(v)} is not a provider name: use lowercase letters, digits and dashes, e.g. "k8s-prod"`;
}

function badSecretName(v: string): string | undefined {
  if (SECRET_RE.test(v)) return undefined;
  const upper = v.toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const hint = SECRET_RE.test(upper) && upper.length <= 64 ? ` (did you mean ${JSON.stringify(upper)}?)` : "";
  return `${quote(v)} is not a secret name: use upper-case letters, digits and "_", not starting with a digit, e.g. "STRIPE_API_KEY"${hint}`;
}

const nonEmptyCommand = (v: string): string | undefined =>
  v.trim() === "" ? "empty install step: write a shell command such as \"npm install\", or remove the item" : undefined;

const minMemory = (n: number): string | undefined =>
  n < MIN_MEMORY_BYTES ? `is less than the minimum of ${formatBytes(MIN_MEMORY_BYTES)}` : undefined;

const timeoutBounds = (n: number): string | undefined => {
  if (n <= 0) return "is zero: a session needs some time, e.g. \"30m\"";
  return n > MAX_TIMEOUT_MS ? "is more than the maximum of 7d" : undefined;
};

const SIZE = 'a size such as "8GB" or "512MiB"';
const DURATION = 'a duration such as "30m" or "1h30m"';

const compute = z
  .strictObject({
    cpu: withDefault(
      z.number(expecting("a number of CPU cores, e.g. 2 or 0.5"))
        .gt(0, { error: "must be more than 0 cores; fractions such as 0.5 are allowed" })
        .max(256, { error: "must be at most 256 cores" }),
      () => 2,
    ).describe("CPU cores, a number > 0 and ≤ 256; fractions such as 0.5 are allowed. Default 2."),
    memory: withDefault(parsedString(SIZE, parseMemory, minMemory), () => 4 * GiB).describe(
      'Memory limit: "8GB" (10^9 bytes), "512MiB" or "512M" (2^20 bytes), "1.5GiB". At least 16MiB. Default "4GiB".',
    ),
    timeout: withDefault(parsedString(DURATION, parseDuration, timeoutBounds), () => 60 * 60 * 1000).describe(
      'How long a session may run: "45s", "30m", "2h", "1h30m", "1d". More than 0, at most 7d. Default "1h".',
    ),
    disk: withDefault(parsedString(SIZE, parseMemory, minMemory), () => 10 * GiB).describe(
      'Extension. Disk space for the session\'s writable layer, written like memory. At least 16MiB. Default "10GiB".',
    ),
    pids: withDefault(
      z.number(expecting("a whole number of processes, e.g. 4096"))
        .int({ error: "must be a whole number" })
        .min(16, { error: "must be at least 16" })
        .max(65536, { error: "must be at most 65536" }),
      () => 4096,
    ).describe("Extension. Most processes and threads alive at once in a session, 16 to 65536. Default 4096."),
    isolation: z.enum(ISOLATION_TIERS, { error: 'must be "namespaces" or "gvisor"' }).optional().describe(
      'Extension. How the local provider isolates a session: "namespaces" (Linux namespaces, seccomp, the exec guard) or "gvisor" (gVisor\'s user-space kernel, runsc; no guardrails.commands.deny, services or snapshots: see docs/sandbox.md). Default "namespaces".',
    ),
  }, expecting("a mapping of cpu, memory, timeout, disk, pids"))
  // isolation only when written: absent means the provider's default tier (namespaces).
  .transform((c): { cpu: number; memoryBytes: number; timeoutMs: number; diskBytes: number; pids: number; isolation?: (typeof ISOLATION_TIERS)[number] } => ({
    cpu: c.cpu, memoryBytes: c.memory, timeoutMs: c.timeout, diskBytes: c.disk, pids: c.pids, ...(c.isolation ? { isolation: c.isolation } : {}),
  }));

/** Extension (issue #10): a warm pool of started sandboxes, claimed by session starts (docs/pools.md). */
const poolSize = (what: string) =>
  z.number(expecting(`a whole number of ${what}, e.g. 2`))
    .int({ error: "must be a whole number" })
    .min(0, { error: "must be 0 or more" })
    .max(200, { error: "must be at most 200" });
const pool = z
  .strictObject({
    min: poolSize("sandboxes").describe("Sandboxes of the current version kept started and ready, 0 to 200. Required."),
    max: poolSize("sandboxes")
      .nullish()
      .describe("Most sandboxes in the pool at once (ready and starting), min to 200; the pool grows toward it while sessions claim members. Default: min."),
  }, expecting("a mapping of min, max"))
  .superRefine((p, ctx) => {
    if (p.max !== null && p.max !== undefined && p.max < p.min) ctx.addIssue({ code: "custom", path: ["max"], message: `must be at least min (${p.min})`, input: p.max });
  })
  .transform((p) => ({ min: p.min, max: p.max ?? p.min }));

const command = z.string(expecting("a shell command")).superRefine(refineWith(nonEmptyCommand));

const installStep = z
  .union(
    [
      command.describe("A shell command line, run at build time; a multi-line string is one step."),
      z.strictObject({
        run: z.string(expecting("a shell command", 'missing required key: add "run: <shell command>"'))
          .superRefine(refineWith(nonEmptyCommand))
          .describe("The shell command line."),
      }, expecting('a mapping with "run"')),
    ],
    expecting('a shell command, or a mapping { run: "…" }'),
  )
  .transform((s): { run: string } => (typeof s === "string" ? { run: s } : { run: s.run }));

const secretName = z
  .string(expecting('a secret name such as "STRIPE_API_KEY"', 'missing required key: add "name: STRIPE_API_KEY"'))
  .superRefine(refineWith(badSecretName));

const secretHosts = z
  .array(
    ruleString('a host such as "api.stripe.com"', (raw) => checkNetworkRule(raw, { allowAny: false })),
    expecting('a list of hosts such as "api.stripe.com"'),
  )
  .min(1, { error: "empty list: name at least one host, or leave hosts out to use the default binding" })
  .superRefine(noDuplicates("host"), ALWAYS);

const secretIn = z
  .array(oneOf(SECRET_LOCATIONS, "location"), expecting('a list of "header", "query", "body"'))
  .min(1, { error: 'empty list: name at least one of "header", "query", "body", or leave in out for ["header"]' })
  .superRefine(noDuplicates("location"), ALWAYS);

/** Secrets are the same secret whether written short or extended. */
const secretKey = (s: unknown): string | undefined => asString(typeof s === "object" && s !== null ? (s as { name?: unknown }).name : s);

type Secret = { name: string; hosts: string[] | null; in: ("header" | "query" | "body")[]; cleartext?: boolean; kind?: "http" | "postgres" };

/** `kind: postgres` goes to the database gateway, which has no hosts or request parts to swap into. */
function postgresSecretAlone(s: { kind?: string | undefined; hosts?: unknown; in?: unknown; cleartext?: unknown }, ctx: IssueSink): void {
  if (s.kind !== "postgres") return;
  const why = "a kind: postgres secret is a database URL the database gateway uses itself, never swapped into HTTP requests";
  if (s.hosts !== null && s.hosts !== undefined) ctx.addIssue({ code: "custom", path: ["hosts"], input: s.hosts, message: `contradicts kind: postgres: ${why}; remove hosts:` });
  if (s.in !== null && s.in !== undefined) ctx.addIssue({ code: "custom", path: ["in"], input: s.in, message: `contradicts kind: postgres: ${why}; remove in:` });
  if (s.cleartext !== undefined) ctx.addIssue({ code: "custom", path: ["cleartext"], input: s.cleartext, message: `contradicts kind: postgres: ${why}; remove cleartext:` });
}

const secret = z
  .union(
    [
      secretName.describe("The secret's name; its value is injected by the gateway, never stored in the sandbox."),
      z.strictObject(
        {
          name: secretName.describe("The secret's name, an environment-variable name such as STRIPE_API_KEY."),
          hosts: withDefault(secretHosts.nullable(), () => null).describe(
            'Extension. Hosts the secret may be sent to ("api.stripe.com", "*.stripe.com", host:port); "*" is refused. Absent: the installation\'s default binding for this secret. An empty list is an error.',
          ),
          // Defaulted in the transform below, so a written `in:` can be told from an absent one.
          in: secretIn.nullish().describe(
            'Extension. Where in a request the placeholder may be swapped: "header", "query", "body". Default ["header"]. An empty list is an error.',
          ),
          cleartext: z
            .boolean(expecting("true or false"))
            .optional()
            .describe(
              "Extension. Also swap the secret into plain http:// requests to its hosts: it then crosses the network unencrypted. Absent or false: swapped only into requests that leave over TLS; a plain-HTTP request carrying the placeholder is refused.",
            ),
          kind: oneOf(SECRET_KINDS, "secret kind")
            .optional()
            .describe(
              'Extension. How the secret is used: "http" (swapped into HTTP requests to its hosts) or "postgres" (a PostgreSQL URL used by the database gateway; the sandbox gets a placeholder URL naming the gateway, docs/database.md). Absent: "postgres" for DATABASE_URL and *_DATABASE_URL, "http" otherwise. With "postgres", hosts, in and cleartext are errors.',
            ),
        },
        expecting('a mapping with "name", "hosts", "in"'),
      ).superRefine(postgresSecretAlone),
    ],
    expecting('a secret name, or a mapping { name: …, hosts: […], in: […] }'),
  )
  .transform((s): Secret => {
    if (typeof s === "string") return { name: s, hosts: null, in: ["header"] };
    const { in: where, kind, ...rest } = s;
    return { ...rest, in: where ?? ["header"], ...(kind !== undefined ? { kind } : {}) };
  });

const programList = (what: string) =>
  withDefault(
    z.array(ruleString('a program name or absolute path such as "npm"', checkCommandRule), expecting("a list of program names"))
      .superRefine(noDuplicates("program"), ALWAYS),
    () => [],
  ).describe(what);

const hostList = (what: string) =>
  withDefault(
    z.array(ruleString('a host such as "api.stripe.com"', (raw) => checkNetworkRule(raw)), expecting("a list of hosts"))
      .superRefine(noDuplicates("host"), ALWAYS),
    () => [],
  ).describe(what);

/** The same entry in two lists of one policy is contradictory; report it on the later list. */
function noConflicts(lists: readonly string[]) {
  return (policy: unknown, ctx: IssueSink): void => {
    const entries = (name: string): unknown[] => {
      const v = (policy as Record<string, unknown> | null)?.[name];
      return Array.isArray(v) ? v : [];
    };
    lists.forEach((later, li) => {
      for (const earlier of lists.slice(0, li)) {
        const before = new Set(entries(earlier).map(asString));
        entries(later).forEach((entry, i) => {
          if (typeof entry !== "string" || !before.has(entry)) return;
          const message = `${quote(entry)} is in both ${earlier} and ${later}; keep it in one`;
          ctx.addIssue({ code: "custom", path: [later, i], message, input: entry });
        });
      }
    });
  };
}

/** Commands classified as deploying when `deploy:` is absent (docs/guardrails.md). */
export const DEFAULT_DEPLOY_COMMANDS: readonly string[] = [
  "git push", "npm publish", "yarn publish", "pnpm publish", "cargo publish", "twine upload", "gem push", "docker push",
  "kubectl apply", "kubectl create", "kubectl delete", "kubectl replace", "kubectl patch", "kubectl rollout", "kubectl scale", "kubectl set",
  "helm install", "helm upgrade", "helm uninstall", "helm rollback", "terraform apply", "terraform destroy", "tofu apply", "tofu destroy",
  "pulumi up", "pulumi destroy", "gh release create", "fly deploy", "vercel deploy", "serverless deploy", "aws cloudformation deploy",
];
/** Branches a `git push` must not reach without `deploy` when `protectedBranches:` is absent. */
export const DEFAULT_PROTECTED_BRANCHES: readonly string[] = ["main", "master", "release/*", "production"];

const nonEmptyWords = (v: string): string | undefined =>
  v.trim() === "" ? 'empty entry: write a command prefix such as "npm publish", or remove the item' : undefined;
const askTimeoutBounds = (n: number): string | undefined => {
  if (n <= 0) return 'is zero: give approvers some time, e.g. "10m"';
  return n > DAY_MS ? "is more than the maximum of 1d" : undefined;
};

const commandPolicy = z
  .strictObject({
    allow: programList("Programs a person or agent may start with a command (the programs of the line they submit). Absent: no allow list (anything not denied). []: only the basic read-only tools. See docs/guardrails.md."),
    deny: programList("Programs that may never run in the sandbox, whoever starts them: checked when a command is submitted and again by the kernel at every exec. Absent or []: none."),
    ask: programList("Extension. Programs that need a person's approval each time they are submitted. Absent or []: none."),
    deploy: withDefault(
      z.array(z.string(expecting('a command prefix such as "npm publish"')).superRefine(refineWith(nonEmptyWords)).transform((v) => v.trim().split(/\s+/).join(" ")), expecting("a list of command prefixes"))
        .superRefine(noDuplicates("command"), ALWAYS),
      () => [...DEFAULT_DEPLOY_COMMANDS],
    ).describe('Extension. Command prefixes that count as deploying and need the "deploy" permission, e.g. "npm publish", "kubectl apply". Absent: a default list (docs/guardrails.md). []: none.'),
    protectedBranches: withDefault(
      z.array(z.string(expecting('a branch name or pattern such as "release/*"')).superRefine(refineWith(nonEmptyWords)), expecting("a list of branch names"))
        .superRefine(noDuplicates("branch"), ALWAYS),
      () => [...DEFAULT_PROTECTED_BRANCHES],
    ).describe('Extension. Branches (with * patterns) a `git push` deploys to. Absent: ["main", "master", "release/*", "production"].'),
    askTimeout: withDefault(parsedString(DURATION, parseDuration, askTimeoutBounds), () => 10 * 60 * 1000).describe(
      'Extension. How long a command waits for approval before it is denied: "5m", "1h". At most 1d. Default "10m".',
    ),
    agentsMayDeploy: withDefault(z.boolean(expecting("true or false")), () => false).describe(
      'Extension. Whether agent principals may ever run deploying commands (they also need "deploy" in their role and the starting human\'s). Default false: only humans deploy.',
    ),
  }, expecting("a mapping of allow, deny, ask, deploy, protectedBranches, askTimeout, agentsMayDeploy"))
  .superRefine(noConflicts(["allow", "deny", "ask"]), ALWAYS)
  .transform((c) => ({ allow: c.allow, deny: c.deny, ask: c.ask, deploy: c.deploy, protectedBranches: c.protectedBranches, askTimeoutMs: c.askTimeout, agentsMayDeploy: c.agentsMayDeploy }));

function defaultCommandPolicy() {
  return {
    allow: [], deny: [], ask: [], deploy: [...DEFAULT_DEPLOY_COMMANDS], protectedBranches: [...DEFAULT_PROTECTED_BRANCHES],
    askTimeoutMs: 10 * 60 * 1000, agentsMayDeploy: false,
  };
}

const networkPolicy = z
  .strictObject({
    allow: hostList('Hosts the sandbox may reach: "api.stripe.com", "*.example.com", "*", host:port. Absent or []: none named.'),
    deny: hostList('Hosts the sandbox may not reach, same forms; "*" denies everything not allowed. Absent or []: none named.'),
  }, expecting("a mapping of allow, deny"))
  .superRefine(noConflicts(["allow", "deny"]), ALWAYS);

const buildPolicy = z.strictObject({
  network: withDefault(networkPolicy, () => ({ allow: ["*"], deny: [] })).describe(
    'Extension. Hosts install steps may reach through the egress gateway, same forms as guardrails.network. Absent: ["*"] (any public host; private addresses stay refused). Builds never get secrets.',
  ),
}, expecting("a mapping with network"));

const guardrails = z.strictObject({
  commands: withDefault(commandPolicy, () => defaultCommandPolicy()).describe(
    "Which programs may run. Entries are program names (rm) or absolute paths (/usr/bin/rm), never command lines.",
  ),
  network: withDefault(networkPolicy, () => ({ allow: [], deny: [] })).describe(
    "Which hosts the sandbox may reach through the egress gateway. Entries are lower-cased; a trailing dot is dropped.",
  ),
}, expecting("a mapping of commands, network"));

const rbac = z
  .record(
    z.string(),
    z.array(oneOf(PERMISSIONS, "permission"), expecting('a list of permissions such as "read"'))
      .superRefine(noDuplicates("permission"), ALWAYS),
    expecting("a mapping of role name to a list of permissions"),
  )
  .superRefine((roles: unknown, ctx) => {
    // Runs even when the value is not a mapping at all (ALWAYS); there are no role names then.
    if (typeof roles !== "object" || roles === null || Array.isArray(roles)) return;
    for (const role of Object.keys(roles)) {
      if (ROLE_RE.test(role)) continue;
      const message = `${quote(role)} is not a role name: use lowercase letters, digits, "_" and "-", starting with a letter, e.g. "engineering"`;
      // at: "key" places the issue on the role's key rather than on its permission list.
      ctx.addIssue({ code: "custom", path: [role], message, input: role, params: { at: "key" } });
    }
  }, ALWAYS);

/** The environment file's schema; `z.output` of it, plus `locations`, is `EnvironmentSpec`. */
export const environmentSchema = z.strictObject({
  name: z.string(expecting('a name such as "monorepo-agent"', 'missing required key: add a name such as "name: monorepo-agent"'))
    .superRefine(refineWith(badName))
    .describe("The environment's name: 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit. Required."),
  base: withDefault(oneOf(BASES, "base"), () => "host" as const).describe(
    'Extension. The root filesystem the install steps build on: "host" (the machine\'s own) or "debian-12" (a Debian 12 image). Default "host".',
  ),
  providers: withDefault(
    z.array(z.string(expecting('a provider name such as "k8s-prod"')).superRefine(refineWith(badProvider)), expecting("a list of provider names"))
      .superRefine(noDuplicates("provider"), ALWAYS),
    () => [],
  ).describe('Provider instances to run on, most preferred first, e.g. ["e2b", "k8s-prod"]. Absent or []: "local".'),
  compliance: withDefault(
    z.strictObject({
      selfHostedOnly: withDefault(z.boolean(expecting("true or false")), () => false).describe(
        "true: sessions run only on self-hosted providers (local, k8s, ec2), never on a third-party cloud (e2b, daytona), whatever `providers:` lists and whatever the routing strategy prefers; a start with none of those available fails. Default false.",
      ),
    }, expecting("a mapping with selfHostedOnly")),
    () => ({ selfHostedOnly: false }),
  ).describe("Extension. Where this environment's sessions may run (docs/routing.md). Absent: anywhere `providers:` allows."),
  compute: withDefault(compute, () => ({ cpu: 2, memoryBytes: 4 * GiB, timeoutMs: 60 * 60 * 1000, diskBytes: 10 * GiB, pids: 4096 })).describe(
    "Resources for each session. Absent keys take their defaults.",
  ),
  install: withDefault(
    z.array(installStep, expecting("a list of shell commands, one per line starting with \"- \""))
      .max(MAX_INSTALL_STEPS, { error: `too many install steps: at most ${MAX_INSTALL_STEPS}; join related commands with &&` }),
    () => [],
  ).describe("Build steps, run in order; each becomes a filesystem layer. Absent or []: nothing installed. At most 50."),
  secrets: withDefault(
    z.array(secret, expecting("a list of secret names")).superRefine(noDuplicates("secret", secretKey), ALWAYS),
    () => [],
  ).describe("Secrets the sandbox may use through placeholders. Absent or []: none."),
  guardrails: withDefault(guardrails, () => ({ commands: defaultCommandPolicy(), network: { allow: [], deny: [] } })).describe(
    "Command and network policy. Absent lists are the same as empty ones.",
  ),
  build: withDefault(buildPolicy, () => ({ network: { allow: ["*"], deny: [] } })).describe(
    "Extension. Settings for template builds. Absent: install steps may reach any public host.",
  ),
  services: servicesSchema,
  seed: seedSchema,
  pool: pool.nullish().transform((p) => p ?? null).describe(
    "Extension. A warm pool: sandboxes of the current version started ahead (services ready), bound to nobody, claimed by session starts. `paddock pool set` overrides it. Absent: no pool.",
  ),
  agent: agentSchema,
  triggers: triggersSchema,
  rbac: withDefault(rbac, () => ({})).describe(
    'Role name → permissions ("read", "write", "deploy") on this environment. Absent and {} are the same: no role mappings.',
  ),
}, expecting("a mapping of keys such as name:, compute:, install:"))
  .superRefine(seedNeedsServices)
  .superRefine(triggerSecretsStayPrivate)
  .superRefine(gvisorCanHold);

/**
 * `compute.isolation: gvisor` refuses, at the key that asks for it, what cannot hold inside gVisor:
 * the exec guard (fanotify on the host sees no exec of gVisor's kernel, so a deny rule would be a
 * silent no-op) and services (their supervisor gets its spec through a descriptor runsc cannot
 * pass). Snapshots are refused by the provider when asked (docs/sandbox.md, "gVisor tier").
 */
function gvisorCanHold(
  spec: { compute?: { isolation?: string }; guardrails?: { commands?: { deny?: unknown[] } }; services?: unknown },
  ctx: IssueSink,
): void {
  if (spec.compute?.isolation !== "gvisor") return;
  if ((spec.guardrails?.commands?.deny ?? []).length > 0)
    ctx.addIssue({
      code: "custom", path: ["compute", "isolation"], input: "gvisor", params: { at: "key" },
      message: 'gvisor cannot enforce guardrails.commands.deny: the exec guard watches execs in the host kernel, and gVisor runs them in its own; use isolation: namespaces, or drop the deny list',
    });
  if (Array.isArray(spec.services) && spec.services.length > 0)
    ctx.addIssue({
      code: "custom", path: ["compute", "isolation"], input: "gvisor", params: { at: "key" },
      message: "gvisor cannot run services: the service supervisor is not available under gVisor here; use isolation: namespaces, or drop services:",
    });
}

/** A located source position, 1-based. */
export interface Position {
  line: number;
  column: number;
}

// Flattens the intersection below into one object type, so editors show one plain shape.
type Flat<T> = { [K in keyof T]: T[K] };

/** The validated, normalised environment. Units are in the field names (bytes, milliseconds). */
export type EnvironmentSpec = Flat<
  z.output<typeof environmentSchema> & {
    /**
     * Where each value was written: dotted path of the file's keys → position, e.g.
     * "guardrails.commands.deny[0]" or "compute.memory". Every key (at the key) and list item
     * (at the item) of the file has an entry.
     */
    locations: Record<string, Position>;
  }
>;
