// `services:` and `seed:` in the environment file: the normalised spec (start order, defaults),
// every located error, the ServiceSpecs the control plane starts sandboxes with, the compose check,
// and the spec file the launcher reads. Run: node --import tsx --test test/services/config.test.ts
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { formatIssue, parseEnvironment } from "../../src/config/index.ts";
import type { EnvironmentSpec } from "../../src/config/index.ts";
import { composeIssues, servicesOf, servicesStepCommand } from "../../src/control/services.ts";
import { servicesFileText } from "../../src/providers/local/services.ts";
import { PaddockError } from "../../src/core/index.ts";

const parse = (src: string): EnvironmentSpec => {
  const r = parseEnvironment(src, "paddock.yml");
  assert.deepEqual(r.issues.map(formatIssue), []);
  assert.ok(r.spec);
  return r.spec;
};
const problems = (src: string): string[] => parseEnvironment(src, "paddock.yml").issues.map(formatIssue);

const SHOP = `name: shop
services:
  web:
    command: exec node server.js
    ready: { port: 3000 }
    dependsOn: [db, cache]
  cache:
    command: exec redis-server --port 6379
    user: redis
    ready: { port: 6379, timeout: 10s }
  db:
    command: exec postgres -D /var/lib/pg
    user: postgres
    cwd: /var/lib
    env: { PGPORT: 5432, VERBOSE: true, NAME: x }
    ready: { command: pg_isready }
    dataDirs: [/var/lib/pg]
    restart: { limit: 2 }
seed:
  - psql -c 'create table t()'
  - run: psql -f /workspace/fixtures.sql
`;

void describe("services: in the environment file", () => {
  void it("loads in start order (dependencies first, else as written), with defaults", () => {
    const spec = parse(SHOP);
    assert.deepEqual(spec.services, [
      { name: "cache", command: "exec redis-server --port 6379", user: "redis", cwd: null, env: {}, ready: { port: 6379 }, readyTimeoutMs: 10_000, dataDirs: [], dependsOn: [], restartLimit: 5 },
      {
        name: "db", command: "exec postgres -D /var/lib/pg", user: "postgres", cwd: "/var/lib", env: { PGPORT: "5432", VERBOSE: "true", NAME: "x" },
        ready: { command: "pg_isready" }, readyTimeoutMs: 60_000, dataDirs: ["/var/lib/pg"], dependsOn: [], restartLimit: 2,
      },
      { name: "web", command: "exec node server.js", user: "paddock", cwd: null, env: {}, ready: { port: 3000 }, readyTimeoutMs: 60_000, dataDirs: [], dependsOn: ["db", "cache"], restartLimit: 5 },
    ]);
    assert.deepEqual(spec.seed, [{ run: "psql -c 'create table t()'" }, { run: "psql -f /workspace/fixtures.sql" }]);
    assert.deepEqual(spec.locations["services.db.ready"], { line: 16, column: 5 });
  });

  void it("servicesOf gives the provider's ServiceSpecs; a spec stored before services existed has none", () => {
    const [cache, db] = servicesOf(parse(SHOP));
    assert.deepEqual(cache, { name: "cache", command: "exec redis-server --port 6379", user: "redis", env: {}, ready: { port: 6379 }, readyTimeoutMs: 10_000, dataDirs: [], restartLimit: 5, dependsOn: [] });
    assert.equal(db?.cwd, "/var/lib");
    assert.deepEqual(servicesOf({} as EnvironmentSpec), []);
  });

  void it("the services step's cache key changes with any service setting or seed command", () => {
    const base = servicesStepCommand(parse(SHOP));
    assert.equal(servicesStepCommand(parse(SHOP)), base);
    assert.notEqual(servicesStepCommand(parse(SHOP.replace("limit: 2", "limit: 3"))), base);
    assert.notEqual(servicesStepCommand(parse(SHOP.replace("fixtures.sql", "more.sql"))), base);
  });

  void it("reports dependency problems at the entry: unknown, itself, a cycle (named), a shared port", () => {
    assert.deepEqual(
      problems(`name: x
services:
  a:
    command: a
    ready: { port: 1000 }
    dependsOn: [b]
  b:
    command: b
    ready: { port: 1000 }
    dependsOn: [c]
  c:
    command: c
    ready: { command: "true" }
    dependsOn: [a, dbb, c]
  db:
    command: d
    ready: { command: "true" }
`),
      [
        'paddock.yml:6:17 services.a.dependsOn[0]: dependency cycle: "a" → "b" → "c" → "a"; no service could start first: remove one of these dependsOn entries',
        'paddock.yml:9:20 services.b.ready.port: port 1000 is already the ready port of "a": each service listens on its own port',
        'paddock.yml:14:20 services.c.dependsOn[1]: unknown service "dbb" (did you mean "db"?); the services are "a", "b", "c", "db"',
        'paddock.yml:14:25 services.c.dependsOn[2]: "c" cannot depend on itself',
      ],
    );
  });

  void it("reports bad settings, each at its place", () => {
    assert.deepEqual(
      problems(`name: x
services:
  My_DB:
    command: ""
    user: root
    cwd: relative
    env: { 1X: y, OK: [1] }
    ready: { port: 70000, command: x }
    dataDirs: [/data, /a/../b, /data]
    restart: { limit: -1 }
    dependsOn: [web, web]
    image: postgres:15
  web:
    ready: {}
  worker:
    command: w
`),
      [
        'paddock.yml:3:3 services.My_DB: "My_DB" is not a service name: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit, e.g. "postgres"',
        "paddock.yml:4:14 services.My_DB.command: empty command: write a shell command, or remove the key",
        'paddock.yml:5:11 services.My_DB.user: services run as an unprivileged user, not "root": use the session user "paddock" (the default) or a system user an install step created, e.g. "postgres"',
        'paddock.yml:6:10 services.My_DB.cwd: "relative" is not an absolute path: write a path inside the sandbox such as "/var/lib/postgresql/data"',
        'paddock.yml:7:12 services.My_DB.env.1X: "1X" is not an environment variable name: use letters, digits and "_", not starting with a digit',
        "paddock.yml:7:23 services.My_DB.env.OK: expected a string, number or boolean, got a list",
        "paddock.yml:8:20 services.My_DB.ready.port: must be 1 to 65535",
        'paddock.yml:8:27 services.My_DB.ready.command: give "port" or "command", not both',
        'paddock.yml:9:23 services.My_DB.dataDirs[1]: "/a/../b" has a "." or ".." part: write the path plainly',
        'paddock.yml:9:32 services.My_DB.dataDirs[2]: directory "/data" is listed twice (first at line 9, column 16); remove one',
        "paddock.yml:10:23 services.My_DB.restart.limit: must be 0 or more",
        'paddock.yml:11:22 services.My_DB.dependsOn[1]: service "web" is listed twice (first at line 11, column 17); remove one',
        'paddock.yml:12:5 services.My_DB.image: unknown key; valid keys here: "command", "user", "cwd", "env", "ready", "dataDirs", "dependsOn", "restart"',
        'paddock.yml:13:3 services.web.command: missing required key: add "command: <shell command>"',
        'paddock.yml:14:12 services.web.ready: say how to tell the service is ready: "port: 5432" or "command: …"',
        'paddock.yml:15:3 services.worker.ready: missing required key: add "ready: { port: 5432 }" or "ready: { command: … }"',
      ],
    );
  });

  void it("seed: needs services:", () => {
    assert.deepEqual(problems("name: x\nseed:\n  - psql -f schema.sql\n"), [
      'paddock.yml:2:1 seed: seed steps run with the environment\'s services started, and there are none: declare them under "services:", or move these steps to "install:"',
    ]);
  });
});

void describe("docker-compose in install: (the local provider's check)", () => {
  const issues = (install: string[]) => {
    const spec = parse(`name: x\ninstall:\n${install.map((c) => `  - ${JSON.stringify(c)}`).join("\n")}\n`);
    return composeIssues(spec, "runtime.yml").map((i) => `${i.path}@${i.line}:${i.column}`);
  };

  void it("finds compose up/start/run in any spelling, and nothing else", () => {
    assert.deepEqual(issues(["docker-compose up -d", "npm ci && docker compose -f ci.yml up --wait", "sudo docker compose start db", "cd x\nCOMPOSE_FILE=a.yml docker-compose run t"]), [
      "install[0]@3:5",
      "install[1]@4:5",
      "install[2]@5:5",
      "install[3]@6:5",
    ]);
    assert.deepEqual(issues(["docker-compose pull", "docker compose down", "echo docker-compose up", "docker build .", "npm run compose-up"]), []);
  });
});

void describe("the launcher's services file", () => {
  const spec = {
    name: "db", command: "a\tb\\c\nd", user: "postgres", cwd: "/srv", env: { OWN: "1" }, ready: { port: 5432 }, readyTimeoutMs: 5000,
    dataDirs: ["/var/lib/pg"], restartLimit: 2, dependsOn: [],
  };

  void it("writes one block per service, escaping tab, newline and backslash; HOME/USER/LOGNAME come from the user", () => {
    const text = servicesFileText([spec, { ...spec, name: "app", user: "1000", ready: { command: "curl -f localhost" }, dependsOn: ["db"], dataDirs: [], env: {} }], {
      PATH: "/usr/bin",
      HOME: "/home/paddock",
      USER: "paddock",
    });
    assert.equal(
      text,
      [
        "paddock-services 1",
        "service\tdb", "command\ta\\tb\\\\c\\nd", "user\tpostgres", "cwd\t/srv", "env\tPATH=/usr/bin", "env\tOWN=1", "ready-port\t5432", "ready-timeout-ms\t5000", "data-dir\t/var/lib/pg", "restart-limit\t2", "end",
        "service\tapp", "command\ta\\tb\\\\c\\nd", "user\t1000", "cwd\t/srv", "env\tPATH=/usr/bin", "ready-command\tcurl -f localhost", "ready-timeout-ms\t5000", "restart-limit\t2", "depends-on\tdb", "end",
        "",
      ].join("\n"),
    );
  });

  void it("refuses what the launcher would refuse", () => {
    const refuses = (over: Record<string, unknown>, message: RegExp) =>
      assert.throws(() => servicesFileText([{ ...spec, ...over }], {}), (e: unknown) => e instanceof PaddockError && e.code === "invalid_argument" && message.test(e.message));
    refuses({ name: "Bad" }, /bad service name "Bad"/);
    refuses({ user: "root" }, /services run as an unprivileged user, not root/);
    refuses({ dependsOn: ["later"] }, /depends on "later", which is not one of the services listed before it/);
    refuses({ dataDirs: ["/x/../y"] }, /data directory "\/x\/..\/y"/);
    refuses({ command: "a\u0000b" }, /command contains a control character/);
    refuses({ ready: { port: 0 } }, /ready port must be 1 to 65535/);
    assert.throws(() => servicesFileText([], {}), /1 to 32 services/);
  });
});
