/**
 * `services:` and `seed:` (extensions): long-running processes every sandbox of the environment
 * starts (a database, a cache, a broker), and commands run once at build time with them started,
 * so the template holds seeded data. The file writes services as a mapping by name; the spec holds
 * them as a list in start order (dependencies first). See docs/config.md, "Services".
 */
import { z } from "zod";
import type { IssueSink } from "./fields.ts";
import { ALWAYS, expecting, noDuplicates, parsedString, refineWith, withDefault } from "./fields.ts";
import { DAY_MS, parseDuration } from "./units.ts";
import { nearest, quote, quoteList } from "./words.ts";

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const USER_RE = /^[A-Za-z0-9._-]{1,32}$/;
const ENV_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const MAX_SERVICES = 32;
export const MAX_SEED_STEPS = 50;
/** The session user, which services run as unless they say otherwise. */
export const DEFAULT_SERVICE_USER = "paddock";
export const DEFAULT_READY_TIMEOUT_MS = 60_000;
export const DEFAULT_RESTART_LIMIT = 5;

/** A service as the spec holds it (`EnvironmentSpec.services[i]`). */
export interface ServiceConfig {
  name: string;
  command: string;
  user: string;
  /** null: "/" */
  cwd: string | null;
  env: Record<string, string>;
  ready: { port: number } | { command: string };
  readyTimeoutMs: number;
  dataDirs: string[];
  dependsOn: string[];
  restartLimit: number;
}

const emptyCommand = (what: string) => (v: string): string | undefined =>
  v.trim() === "" ? `empty ${what}: write a shell command, or remove the key` : undefined;

// eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
const CONTROL = /[\u0000-\u001f\u007f]/;

function badPath(v: string): string | undefined {
  if (!v.startsWith("/")) return `${quote(v)} is not an absolute path: write a path inside the sandbox such as "/var/lib/postgresql/data"`;
  if (v === "/" || /^\/+$/.test(v)) return `${quote(v)} is the sandbox's root: name a directory of its own`;
  if (CONTROL.test(v)) return `${quote(v)} contains a control character`;
  if (v.split("/").some((s) => s === "." || s === "..")) return `${quote(v)} has a "." or ".." part: write the path plainly`;
  if (v.length > 1024) return "is longer than 1024 characters";
  return undefined;
}

function badUser(v: string): string | undefined {
  if (v === "root" || v === "0")
    return `services run as an unprivileged user, not ${quote(v)}: use the session user "paddock" (the default) or a system user an install step created, e.g. "postgres"`;
  if (!USER_RE.test(v)) return `${quote(v)} is not a user name: use letters, digits, ".", "_" and "-" (a name from the sandbox's /etc/passwd, or a numeric uid)`;
  return undefined;
}

const path = (what: string) => z.string(expecting(what)).superRefine(refineWith(badPath));

const SHELL = "a shell command";

const envValues = z
  .record(
    z.string(),
    // Numbers and booleans as YAML writes them unquoted (PGPORT: 5432) mean their text.
    z.union([z.string(), z.number(), z.boolean()], expecting("a string, number or boolean")).transform((v) => String(v)),
    expecting("a mapping of variable name to value"),
  )
  .superRefine((env: unknown, ctx) => {
    if (typeof env !== "object" || env === null || Array.isArray(env)) return;
    for (const k of Object.keys(env)) {
      if (ENV_RE.test(k)) continue;
      ctx.addIssue({ code: "custom", path: [k], message: `${quote(k)} is not an environment variable name: use letters, digits and "_", not starting with a digit`, input: k, params: { at: "key" } });
    }
  }, ALWAYS);

const readyTimeout = (n: number): string | undefined => {
  if (n <= 0) return "is zero: a service needs some time to start, e.g. \"60s\"";
  return n > DAY_MS ? "is more than the maximum of 1d" : undefined;
};

const ready = z
  .strictObject(
    {
      port: z
        .number(expecting("a TCP port number such as 5432"))
        .int({ error: "must be a whole number" })
        .min(1, { error: "must be 1 to 65535" })
        .max(65535, { error: "must be 1 to 65535" })
        .optional()
        .describe("Ready when something accepts TCP connections on 127.0.0.1 at this port, inside the sandbox."),
      command: z
        .string(expecting(SHELL))
        .superRefine(refineWith(emptyCommand("ready command")))
        .optional()
        .describe('Ready when this shell command exits 0, run as the service\'s user, e.g. "pg_isready -h 127.0.0.1".'),
      timeout: withDefault(parsedString('a duration such as "60s" or "2m"', parseDuration, readyTimeout), () => DEFAULT_READY_TIMEOUT_MS).describe(
        'How long each start may take to become ready; past it the start counts as failed (it is killed and restarted). Default "60s", at most 1d.',
      ),
    },
    expecting('a mapping with "port" or "command", e.g. { port: 5432 }', 'missing required key: add "ready: { port: 5432 }" or "ready: { command: … }"'),
  )
  .superRefine((r, ctx) => {
    if (r.port === undefined && r.command === undefined)
      ctx.addIssue({ code: "custom", message: 'say how to tell the service is ready: "port: 5432" or "command: …"', input: r });
    if (r.port !== undefined && r.command !== undefined)
      ctx.addIssue({ code: "custom", path: ["command"], message: 'give "port" or "command", not both', input: r.command, params: { at: "key" } });
  })
  .transform((r) => ({ check: r.port !== undefined ? { port: r.port } : { command: r.command ?? "" }, timeoutMs: r.timeout }));

const restart = z.strictObject(
  {
    limit: withDefault(
      z.number(expecting("a whole number of restarts, e.g. 5"))
        .int({ error: "must be a whole number" })
        .min(0, { error: "must be 0 or more" })
        .max(100, { error: "must be at most 100" }),
      () => DEFAULT_RESTART_LIMIT,
    ).describe("How many times in a row the service is restarted after it exits or misses its ready timeout before it is marked failed; 0 to 100. Default 5. A service that stays ready for a minute has the whole budget again."),
  },
  expecting("a mapping with limit, e.g. { limit: 5 }"),
);

const service = z
  .strictObject(
    {
      command: z
        .string(expecting(SHELL, 'missing required key: add "command: <shell command>"'))
        .superRefine(refineWith(emptyCommand("command")))
        .describe("The service, as a shell command (/bin/sh -c) that stays in the foreground, e.g. \"exec redis-server --port 6379\". Required."),
      user: withDefault(z.string(expecting('a user name such as "postgres"')).superRefine(refineWith(badUser)), () => DEFAULT_SERVICE_USER).describe(
        'The user it runs as: a name from the sandbox\'s /etc/passwd or a numeric uid; never root. Default "paddock" (the session user).',
      ),
      cwd: withDefault(path("an absolute path such as \"/workspace\"").nullable(), () => null).describe('Working directory inside the sandbox. Default "/".'),
      env: withDefault(envValues, () => ({})).describe(
        "Extra environment variables (name → value) on top of what every command of the sandbox gets; HOME, USER and LOGNAME come from the service's user.",
      ),
      ready: ready.describe("How to tell the service is ready: { port: N } or { command: \"…\" }, with an optional timeout. Required."),
      dataDirs: withDefault(
        z.array(path('an absolute path such as "/var/lib/postgresql/data"'), expecting("a list of directories"))
          .max(16, { error: "too many data directories: at most 16" })
          .superRefine(noDuplicates("directory"), ALWAYS),
        () => [],
      ).describe("Directories the service keeps its data in: created (owned by its user, mode 0700) when missing. They live in the sandbox's filesystem, so the template, snapshots and forks carry them. Absent or []: none."),
      dependsOn: withDefault(
        z.array(z.string(expecting("a service name")), expecting("a list of service names")).superRefine(noDuplicates("service"), ALWAYS),
        () => [],
      ).describe("Services that must be ready before this one starts. Absent or []: none."),
      restart: withDefault(restart, () => ({ limit: DEFAULT_RESTART_LIMIT })).describe("Restarts after the service exits. Absent: { limit: 5 }."),
    },
    expecting('a mapping with command, ready and optionally user, cwd, env, dataDirs, dependsOn, restart'),
  );

type ServiceIn = z.output<typeof service>;

/** Cross-service rules: names, dependencies that exist, no cycles, one port per service. */
function checkServices(services: unknown, ctx: IssueSink): void {
  if (typeof services !== "object" || services === null || Array.isArray(services)) return;
  const all = services as Record<string, unknown>;
  const names = Object.keys(all);
  if (names.length > MAX_SERVICES) ctx.addIssue({ code: "custom", message: `too many services: at most ${MAX_SERVICES}`, input: names.length });
  const deps = (name: string): unknown[] => {
    const v = (all[name] as { dependsOn?: unknown } | null)?.dependsOn;
    return Array.isArray(v) ? v : [];
  };
  for (const name of names) {
    if (!NAME_RE.test(name)) {
      const message = `${quote(name)} is not a service name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit, e.g. "postgres"`;
      ctx.addIssue({ code: "custom", path: [name], message, input: name, params: { at: "key" } });
    }
    deps(name).forEach((d, i) => {
      if (typeof d !== "string") return;
      if (d === name) {
        ctx.addIssue({ code: "custom", path: [name, "dependsOn", i], message: `${quote(name)} cannot depend on itself`, input: d });
      } else if (!Object.hasOwn(all, d)) {
        const near = nearest(d, names);
        const hint = near === undefined ? "" : ` (did you mean ${JSON.stringify(near)}?)`;
        ctx.addIssue({ code: "custom", path: [name, "dependsOn", i], message: `unknown service ${quote(d)}${hint}; the services are ${quoteList(names)}`, input: d });
      }
    });
  }
  const cycle = findCycle(names, (n) => deps(n).filter((d): d is string => typeof d === "string" && d !== n && Object.hasOwn(all, d)));
  if (cycle !== null) {
    const [first = "", second = ""] = cycle;
    const i = deps(first).indexOf(second);
    const message = `dependency cycle: ${cycle.map(quote).join(" → ")}; no service could start first: remove one of these dependsOn entries`;
    ctx.addIssue({ code: "custom", path: [first, "dependsOn", i], message, input: second });
  }
  const ports = new Map<number, string>();
  for (const name of names) {
    // The parsed value when the entry is valid ({ check: { port } }), else what was written.
    const r = (all[name] as { ready?: { port?: unknown; check?: { port?: unknown } } } | null)?.ready;
    const port = r?.check?.port ?? r?.port;
    if (typeof port !== "number") continue;
    const other = ports.get(port);
    if (other === undefined) ports.set(port, name);
    else ctx.addIssue({ code: "custom", path: [name, "ready", "port"], message: `port ${port} is already the ready port of ${quote(other)}: each service listens on its own port`, input: port });
  }
}

/** The first dependency cycle, in declaration order, as [a, b, …, a]; null when there is none. */
function findCycle(names: string[], deps: (n: string) => string[]): string[] | null {
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    if (state.get(n) === "done") return null;
    if (state.get(n) === "visiting") return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, "visiting");
    stack.push(n);
    for (const d of deps(n)) {
      const c = visit(d);
      if (c) return c;
    }
    stack.pop();
    state.set(n, "done");
    return null;
  };
  for (const n of names) {
    const c = visit(n);
    if (c) return c;
  }
  return null;
}

/** Start order: dependencies first; among services free to start, the one written first. */
function startOrder(services: Record<string, ServiceIn>): ServiceConfig[] {
  const names = Object.keys(services);
  const out: ServiceConfig[] = [];
  const placed = new Set<string>();
  while (out.length < names.length) {
    const next = names.find((n) => !placed.has(n) && (services[n]?.dependsOn ?? []).every((d) => placed.has(d)));
    if (next === undefined) break; // a cycle; reported by checkServices, so this is not reached
    const s = services[next]!;
    placed.add(next);
    out.push({
      name: next,
      command: s.command,
      user: s.user,
      cwd: s.cwd,
      env: s.env,
      ready: s.ready.check,
      readyTimeoutMs: s.ready.timeoutMs,
      dataDirs: s.dataDirs,
      dependsOn: s.dependsOn,
      restartLimit: s.restart.limit,
    });
  }
  return out;
}

export const servicesSchema = withDefault(
  z.record(z.string(), service, expecting("a mapping of service name to its settings, e.g. postgres: { command: …, ready: { port: 5432 } }")).superRefine(checkServices, ALWAYS),
  () => ({}),
)
  .transform(startOrder)
  .describe(
    "Extension. Long-running services every sandbox of the environment starts at boot (postgres, redis, a broker): service name → settings. They start in dependency order, each once the services it depends on are ready, run supervised inside the sandbox, and are restarted when they exit. Absent or {}: none.",
  );

const seedStep = z
  .union(
    [
      z.string(expecting(SHELL)).superRefine(refineWith(emptyCommand("seed step"))).describe("A shell command line, run once at build time with the services ready."),
      z.strictObject(
        {
          run: z.string(expecting(SHELL, 'missing required key: add "run: <shell command>"'))
            .superRefine(refineWith(emptyCommand("seed step")))
            .describe("The shell command line."),
        },
        expecting('a mapping with "run"'),
      ),
    ],
    expecting('a shell command, or a mapping { run: "…" }'),
  )
  .transform((s): { run: string } => (typeof s === "string" ? { run: s } : { run: s.run }));

export const seedSchema = withDefault(
  z.array(seedStep, expecting('a list of shell commands, one per line starting with "- "')).max(MAX_SEED_STEPS, { error: `too many seed steps: at most ${MAX_SEED_STEPS}` }),
  () => [],
).describe(
  "Extension. Commands run once at build time, after install:, as root, with every service started and ready (e.g. creating a database and loading fixtures). The services are then stopped cleanly and what they wrote becomes part of the template, so every session and snapshot starts with it. Needs services:. Absent or []: none.",
);

/** `seed:` without `services:` could never run as documented; say what to do. */
export function seedNeedsServices(spec: { services?: unknown; seed?: unknown }, ctx: IssueSink): void {
  const seed = Array.isArray(spec.seed) ? spec.seed : [];
  const services = Array.isArray(spec.services) ? spec.services : [];
  if (seed.length > 0 && services.length === 0)
    ctx.addIssue({ code: "custom", path: ["seed"], message: 'seed steps run with the environment\'s services started, and there are none: declare them under "services:", or move these steps to "install:"', input: spec.seed, params: { at: "key" } });
}
