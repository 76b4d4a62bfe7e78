import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { crashableServer, releaseHome } from "../helpers/server.ts";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { tempDir } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";

/**
 * Invariant 9 for the database gateway: kill -9 of the control plane (its gateway process exits
 * with it), then a restart re-registers the running session from its sealed registration, so the
 * URL the sandbox holds works again, and its read-only decision is made again from rbac:.
 */
void describe("database gateway across a control-plane crash (real server process, real PostgreSQL)", () => {
  let home: { path: string; remove: () => Promise<void> };
  let pg: TestPostgres;

  const { start, kill9 } = crashableServer(() => home.path);

  before(async () => {
    home = await tempDir();
    pg = await startPostgres();
    await pg.psql(`create table notes (body text); grant all on notes to ${pg.user};`);
  });
  after(async () => {
    await kill9();
    const s = await start().catch(() => null);
    if (s) {
      for (const x of await s.client.sessions.list()) await s.client.sessions.stop(x.id).catch(() => undefined);
      await kill9();
    }
    await releaseHome(home.path);
    await home.remove();
    await pg?.stop();
  });

  void it("the sandbox's DATABASE_URL works again after kill -9 and restart, with the same URL", async () => {
    let s = await start();
    await s.client.secrets.set("DATABASE_URL", pg.url);
    await s.client.environments.apply("runtime.yml", "name: dbcrash\ncompute:\n  timeout: 1h\nsecrets: [DATABASE_URL]\n");
    const id = (await s.client.sessions.start("dbcrash")).id;
    const psql = async (sql: string) => (await s.client.sessions.run(id, { argv: ["sh", "-c", `psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -Atc "${sql}" 2>&1`], timeoutMs: 60_000 })).stdout;
    assert.equal(await psql("insert into notes values ('before')"), "INSERT 0 1\n");
    const url = (await s.client.sessions.run(id, { argv: ["printenv", "DATABASE_URL"] })).stdout;
    const gateway = `${new URL(url.trim()).hostname}:15432`;
    assert.match(execFileSync("ss", ["-Hltn"], { encoding: "utf8" }), new RegExp(gateway.replace(/\./g, "\\.")), "the gateway's Postgres listener");

    await kill9();
    // While the control plane is down its gateway is gone too: the sandbox fails closed.
    await until(async () => !execFileSync("ss", ["-Hltn"], { encoding: "utf8" }).includes(gateway), 30_000, "the gateway process to exit with its control plane");
    s = await start();
    assert.equal((await s.client.sessions.run(id, { argv: ["printenv", "DATABASE_URL"] })).stdout, url, "the sandbox keeps its URL");
    const after = await until(async () => {
      const out = await psql("insert into notes values ('after'); select count(*) from notes");
      return out.endsWith("2\n") ? out : null;
    }, 60_000, "the session's database URL to work through the restarted gateway");
    assert.match(after, /INSERT 0 1\n2\n$/);
    await s.client.sessions.stop(id);
  });
});
