// Build-time services and seeding through a real server: PostgreSQL (Debian's postgresql-15 on
// the host's /usr) is initialised by its own service command, seeded by a seed step, stopped
// cleanly and committed; a session started from the template has the seeded table. Also the
// build cache of the services step, build failures, and docker-compose in install:. Run (root):
// node --import tsx --test --test-concurrency=1 test/services/seed.test.ts
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Provider, ServiceStatus } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import type { BuildEvent } from "../../src/control/index.ts";
import { servicesOf } from "../../src/control/services.ts";
import { repoRoot, testServer } from "../helpers/server.ts";

const PG = "/usr/lib/postgresql/15/bin";
const skip = process.getuid?.() !== 0 ? "needs root" : !existsSync(`${PG}/postgres`) ? "needs Debian's postgresql-15 (scripts/setup.sh)" : false;

const pgEnv = (seed: string[], extra = "") => `name: pg-seeded
compute: { memory: 1GiB, pids: 512, timeout: 10m }
services:
  postgres:
    command: |
      [ -f /var/lib/pgdata/PG_VERSION ] || ${PG}/initdb -D /var/lib/pgdata -A trust -U paddock >/dev/null
      exec ${PG}/postgres -D /var/lib/pgdata -k /tmp -c listen_addresses=127.0.0.1 -p 5432
    ready: { command: ${PG}/pg_isready -q -h 127.0.0.1 -p 5432, timeout: 2m }
    dataDirs: [/var/lib/pgdata]
seed:
${seed.map((s) => `  - ${JSON.stringify(s)}`).join("\n")}
${extra}`;

const SEED = ["psql -h 127.0.0.1 -U paddock -d postgres -v ON_ERROR_STOP=1 -c \"create table fruit(name text); insert into fruit values ('apple'), ('pear')\""];

void describe("services at build time (seeded PostgreSQL)", { skip }, () => {
  let t: Awaited<ReturnType<typeof testServer>>;
  let provider: Provider;
  const apply = async (source: string, fileName = "paddock.yml") => {
    const events: BuildEvent[] = [];
    const result = await t.server.cp.environments.apply({ source, fileName, createdBy: "admin" }, (e) => void events.push(e as BuildEvent));
    return { ...result, events };
  };
  const applyFails = async (source: string, fileName = "paddock.yml") => {
    const events: BuildEvent[] = [];
    const err = await t.server.cp.environments.apply({ source, fileName, createdBy: "admin" }, (e) => void events.push(e as BuildEvent)).then(
      () => assert.fail("the build should have failed"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PaddockError, String(err));
    return { err, failed: events.find((e): e is Extract<BuildEvent, { type: "failed" }> => e.type === "failed") };
  };

  before(async () => {
    t = await testServer();
    const p = t.server.cp.providers.get("local");
    assert.ok(p);
    provider = p;
  });
  after(async () => {
    for (const id of await provider.list()) await provider.stop(id).catch(() => undefined);
    await t.cleanup();
  });

  void it("seeds the table at build time; a session starts with it, after a clean shutdown", async () => {
    const { template, events } = await apply(pgEnv(SEED));
    const steps = events.filter((e) => e.type === "step");
    assert.deepEqual(steps.map((e) => [e.index, e.total, e.command, e.status]), [[0, 1, "services: start postgres, run 1 seed step, stop", "running"]]);
    const output = events.flatMap((e) => (e.type === "output" ? [e.data] : [])).join("");
    assert.match(output, /services ready: postgres\nseed step 1: psql .*\nINSERT 0 2\n/s);
    assert.equal(template.layers.length, 1);
    // The cluster is in the layer, owned by the session user (host uid 101000).
    assert.ok(existsSync(join(t.server.cp.layers.layerPath(template.layers[0]!), "var/lib/pgdata/PG_VERSION")));

    const { spec } = await t.server.cp.environments.current("pg-seeded");
    const id = `svc-pg-${process.pid}`;
    await provider.create({ id, mode: "session", base: spec.base, layers: template.layers, compute: spec.compute, hostname: "pg", env: {}, services: servicesOf(spec) });
    const [pg] = (await provider.waitForServices(id, 60_000)) as [ServiceStatus];
    assert.equal(pg.state, "ready");
    let out = "";
    const r = await provider.exec(id, {
      argv: ["psql", "-h", "127.0.0.1", "-U", "paddock", "-d", "postgres", "-tAc", "select string_agg(name, ',' order by name) from fruit"],
      onStdout: (b) => (out += b.toString()),
    });
    assert.deepEqual([r.exitCode, out], [0, "apple,pear\n"]);
    // initdb did not run again, and the build's shutdown was clean: no crash recovery here.
    const log = (await provider.services(id))[0]!.logTail;
    assert.match(log, /database system was shut down at/);
    assert.doesNotMatch(log, /not properly shut down|automatic recovery/);
    assert.doesNotMatch(log, /creating directory|Success\. You can now start/);
    await provider.stop(id);
  });

  void it("reuses the services layer for an unchanged file; a changed seed step rebuilds it", async () => {
    const again = await apply(pgEnv(SEED));
    assert.deepEqual(again.events.filter((e) => e.type === "step").map((e) => e.status), ["cached"]);
    const changed = await apply(pgEnv([...SEED, "psql -h 127.0.0.1 -U paddock -d postgres -c \"insert into fruit values ('plum')\""]));
    assert.deepEqual(changed.events.filter((e) => e.type === "step").map((e) => [e.command, e.status]), [["services: start postgres, run 2 seed steps, stop", "running"]]);
    assert.notDeepEqual(changed.template.layers, again.template.layers);
  });

  void it("a service that never gets ready fails the build, with the end of its log", async () => {
    const source = `name: broken-svc
services:
  broken:
    command: "echo 'fatal: no config' >&2; exit 1"
    ready: { port: 5999 }
    restart: { limit: 0 }
seed: [echo never]
`;
    const { err, failed } = await applyFails(source);
    assert.equal(err.message, "services did not start at build time: service broken failed: exited with status 1 (restart.limit is 0: not restarted)");
    assert.ok(failed?.lastLines.includes("fatal: no config"), JSON.stringify(failed));
    assert.equal(failed?.index, 0);
  });

  void it("a failing seed step fails the build with its exit code", async () => {
    const source = `name: bad-seed
services:
  idle:
    command: exec sleep 100000
    ready: { command: "true" }
seed:
  - echo seeding; exit 4
`;
    const { err, failed } = await applyFails(source);
    assert.equal(err.message, 'seed step 1 ("echo seeding; exit 4") failed with exit code 4');
    assert.deepEqual([failed?.index, failed?.exitCode, failed?.lastLines.at(-1)], [0, 4, "seeding"]);
  });

  void it("docker-compose in install: the DESIGN.md file validates, but the local provider refuses to build it, at the step", async () => {
    const source = await readFile(join(repoRoot, "examples/runtime.yml"), "utf8");
    const checked = await t.server.cp.environments.validate(source, "runtime.yml");
    assert.deepEqual(checked.issues, []);
    const { err, failed } = await applyFails(source, "runtime.yml");
    assert.equal(
      err.message,
      'runtime.yml cannot be built on the local provider:\nruntime.yml:13:5 install[2]: "docker-compose up -d" starts containers, which a sandbox on the local provider cannot run (there is no container runtime inside it): declare each container as a service under "services:" (command, ready, dataDirs), install its program in an install step (e.g. "apt-get install -y postgresql" with base: debian-12), and remove this step',
    );
    assert.deepEqual(err.details?.issues, [
      { file: "runtime.yml", line: 13, column: 5, path: "install[2]", message: (err.message.split("install[2]: ")[1] ?? "") },
    ]);
    assert.equal(failed?.index, null);
  });
});
