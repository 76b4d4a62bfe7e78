// Crash consistency of snapshots with a real PostgreSQL under load. A session runs PostgreSQL (a
// service, seeded at build time with pgbench's tables and amcheck), pgbench writes TPC-B-like
// transactions, and a second writer commits numbered rows and appends each number to a file after
// its commit. The session is snapshotted mid-load. Every session started from the snapshot must
// recover PostgreSQL as after a power cut, pass amcheck (heap and every index), keep pgbench's
// balances summing to its history, and hold every row whose number reached the file: the freeze
// stopped the database and the writer at one instant, so what the file says was committed was.
// Run (root): node --import tsx --test --test-concurrency=1 test/e2e/snapshot-consistency.test.ts
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";

const PG = "/usr/lib/postgresql/15/bin";
const skip = process.getuid?.() !== 0 ? "needs root" : !existsSync(`${PG}/pg_amcheck`) ? "needs Debian's postgresql-15 (scripts/setup.sh)" : false;
const PSQL = "psql -h 127.0.0.1 -U paddock -d postgres -v ON_ERROR_STOP=1";

const ENV = `name: pg-consistency
compute: { memory: 1GiB, pids: 512, timeout: 15m }
services:
  postgres:
    command: |
      [ -f /var/lib/pgdata/PG_VERSION ] || ${PG}/initdb -D /var/lib/pgdata -A trust -U paddock >/dev/null
      exec ${PG}/postgres -D /var/lib/pgdata -k /tmp -c listen_addresses=127.0.0.1 -p 5432
    ready: { command: ${PG}/pg_isready -q -h 127.0.0.1 -p 5432, timeout: 2m }
    dataDirs: [/var/lib/pgdata]
seed:
  - ${PSQL} -c "create extension amcheck; create table ledger(id bigint primary key, at timestamptz default now())"
  - ${PG}/pgbench -h 127.0.0.1 -U paddock -i -q -s 1 postgres
`;

void describe("snapshot consistency: PostgreSQL under load", { skip, timeout: 600_000 }, () => {
  let t: Awaited<ReturnType<typeof testServer>>;
  const run = async (id: string, script: string) => {
    let out = "";
    let err = "";
    const r = await t.client.sessions.exec(id, { argv: ["bash", "-c", script], onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()) });
    return { code: r.exitCode, out, err };
  };
  const sql = async (id: string, query: string) => {
    const r = await run(id, `${PSQL} -qtAc "${query}"`);
    assert.equal(r.code, 0, `${query}: ${r.err}`);
    return r.out.trim();
  };

  before(async () => {
    t = await testServer();
    await t.server.cp.environments.apply({ source: ENV, fileName: "paddock.yml", createdBy: "admin" }, () => undefined);
  });
  after(async () => {
    await t.cleanup();
  });

  void it("every session started from a snapshot taken under load recovers with all committed rows and intact indexes", async () => {
    const source = await t.client.sessions.start("pg-consistency");
    // Load: pgbench (two clients) and the numbered writer, detached from the exec that starts them.
    const started = await run(
      source.id,
      `setsid ${PG}/pgbench -h 127.0.0.1 -U paddock -c 2 -T 600 postgres >/dev/null 2>&1 < /dev/null &
       setsid bash -c 'i=0; while :; do i=$((i+1)); ${PSQL} -qc "insert into ledger(id) values ($i)" && echo $i >> /workspace/committed; done' >/dev/null 2>&1 < /dev/null &
       echo started`,
    );
    assert.equal(started.code, 0, started.err);
    // Wait for real load: enough numbered commits and pgbench history.
    await until(async () => Number((await run(source.id, "wc -l < /workspace/committed 2>/dev/null || echo 0")).out.trim()) >= 30, 60_000, "30 numbered commits");
    await until(async () => Number(await sql(source.id, "select count(*) from pgbench_history")) >= 50, 60_000, "50 pgbench transactions");

    const snap = await t.client.snapshots.create(source.id, { name: "under-load" });
    // The source was thawed and goes on committing.
    const before = Number((await run(source.id, "wc -l < /workspace/committed")).out.trim());
    await until(async () => Number((await run(source.id, "wc -l < /workspace/committed")).out.trim()) > before + 5, 30_000, "the source to go on after the snapshot");

    for (const n of [1, 2]) {
      const s = await t.client.sessions.start(null, { from: snap.id });
      // PostgreSQL came up by crash recovery, as after a power cut.
      const services = await t.client.sessions.services(s.id);
      assert.equal(services[0]?.state, "ready", JSON.stringify(services));
      assert.match(services[0]?.logTail ?? "", /database system was (interrupted|not properly shut down)/, `session ${n}: recovery in the log`);

      // Every number in the file (complete lines only: the freeze may have cut the last) is a committed row.
      const file = (await run(s.id, "cat /workspace/committed")).out;
      const lines = file.split("\n");
      // After the last "\n" is either nothing or a line the freeze cut: only complete lines count.
      const complete = lines.slice(0, -1);
      const last = Number(complete.at(-1));
      assert.ok(last >= 30, `session ${n}: ${last} numbered commits in the snapshot`);
      assert.deepEqual(complete.map(Number), Array.from({ length: last }, (_, i) => i + 1), "the file holds 1..N in order");
      assert.equal(Number(await sql(s.id, `select count(*) from ledger where id <= ${last}`)), last, `session ${n}: rows 1..${last} all present`);

      // amcheck over every relation: heap and all B-tree indexes, with the heap checked against them.
      const check = await run(s.id, `${PG}/pg_amcheck -h 127.0.0.1 -U paddock -d postgres --heapallindexed --install-missing 2>&1; echo "exit $?"`);
      assert.match(check.out, /exit 0\s*$/, `session ${n}: pg_amcheck:\n${check.out}`);
      // pgbench's invariant: each transaction adds its delta to one account, teller and branch, and logs it.
      const sums = await sql(
        s.id,
        "select (select coalesce(sum(abalance),0) from pgbench_accounts) || ',' || (select coalesce(sum(tbalance),0) from pgbench_tellers) || ',' || (select coalesce(sum(bbalance),0) from pgbench_branches) || ',' || (select coalesce(sum(delta),0) from pgbench_history)",
      );
      const [a, tl, b, h] = sums.split(",");
      assert.deepEqual([a, tl, b], [h, h, h], `session ${n}: balances equal history (${sums})`);
      // And the copy takes writes of its own.
      assert.equal(await sql(s.id, "insert into ledger(id) values (-1) returning id"), "-1");
      await t.client.sessions.stop(s.id);
    }
    await t.client.sessions.stop(source.id);
    await t.client.snapshots.remove(snap.id);
  });
});
