/**
 * The SQLite store: the conformance suite in memory and on disk, then what only a file-backed
 * store can show: data survives close/reopen and a kill -9 of the writing process, two
 * connections share one file, and failures come back as PaddockErrors.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { after, before, describe, it } from "node:test";
import { openSqliteStore } from "../../src/store/sqlite.ts";
import { layer, rejectsWith, session, template, versionInput } from "./suite-fixtures.ts";
import { runStoreSuite } from "./suite.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "paddock-store-"));
let files = 0;
const freshPath = (): string => join(dir, `store-${++files}.db`);

after(() => rmSync(dir, { recursive: true, force: true }));

runStoreSuite("sqlite :memory:", () => openSqliteStore(":memory:"));
runStoreSuite("sqlite file", () => openSqliteStore(freshPath()));

void describe("sqlite store on disk", () => {
  void it("keeps every kind of record across close and reopen", async () => {
    const path = freshPath();
    const first = await openSqliteStore(path);
    assert.equal(first.path, path);
    await first.addEnvironmentVersion(versionInput("runtime"));
    await first.finishBuild("runtime", 1, { templateId: "t1" });
    await first.putLayer(layer("l1"));
    await first.putTemplate(template("t1"));
    await first.createSession(session("s1"));
    await first.close();

    const second = await openSqliteStore(path);
    try {
      assert.equal((await second.getEnvironment("runtime"))?.currentVersion, 1);
      assert.deepEqual((await second.getEnvironmentVersion("runtime", 1))?.spec, versionInput("runtime").spec);
      assert.deepEqual(await second.getLayer("l1"), layer("l1"));
      assert.deepEqual(await second.getTemplate("t1"), template("t1"));
      assert.deepEqual(await second.getSession("s1"), session("s1"));
      assert.equal((await second.addEnvironmentVersion(versionInput("runtime", 2))).version, 2);
    } finally {
      await second.close();
    }
  });

  void it("uses WAL journaling on disk", async () => {
    const path = freshPath();
    await (await openSqliteStore(path)).close();
    const raw = new Database(path);
    try {
      assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
    } finally {
      raw.close();
    }
  });

  void it("two stores on one file see each other's writes and concurrent writes all land", async () => {
    const path = freshPath();
    const a = await openSqliteStore(path);
    const b = await openSqliteStore(path);
    try {
      await a.createSession(session("from-a"));
      assert.equal((await b.getSession("from-a"))?.id, "from-a");
      await rejectsWith(b.createSession(session("from-a")), "conflict", /from-a/);
      const writes = [a, b, a, b].map((s, i) => s.addEnvironmentVersion(versionInput("runtime", i)));
      const versions = (await Promise.all(writes)).map((v) => v.version).sort();
      assert.deepEqual(versions, [1, 2, 3, 4]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  void it("after close, calls reject unavailable and close again is a no-op", async () => {
    const store = await openSqliteStore(":memory:");
    await store.close();
    await store.close();
    await rejectsWith(store.getSession("s1"), "unavailable", /closed/);
    await rejectsWith(store.createSession(session("s1")), "unavailable", /closed/);
  });

  void it("rejects unavailable when the directory does not exist", async () => {
    await rejectsWith(openSqliteStore(join(dir, "missing", "x.db")), "unavailable", /directory exists/);
  });

  void it("rejects invalid_argument for a createdAt that is not a timestamp or state that is not JSON", async () => {
    const store = await openSqliteStore(":memory:");
    try {
      await rejectsWith(store.createSession(session("s1", { createdAt: "yesterday" })), "invalid_argument", /createdAt.*ISO-8601/);
      await rejectsWith(store.createSession(session("s2", { providerState: { n: 1n } })), "invalid_argument", /providerState/);
      await store.createSession(session("s3"));
      await rejectsWith(store.updateSession("s3", { createdAt: "soon" }), "invalid_argument", /createdAt/);
      assert.deepEqual(await store.getSession("s3"), session("s3"));
      assert.deepEqual((await store.listSessions()).map((s) => s.id), ["s3"]);
    } finally {
      await store.close();
    }
  });
});

/** Resolve once `child` prints `line`; reject if it exits first or takes longer than `ms`. */
function waitForLine(child: ReturnType<typeof spawn>, line: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`no "${line}" within ${ms} ms; stderr: ${err}`)), ms);
    child.stderr?.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.split("\n").includes(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`writer exited (${code}) before "${line}"; stderr: ${err}`));
    });
  });
}

void describe("sqlite store durability", () => {
  const count = 50;
  let path = "";
  let signal: NodeJS.Signals | null = null;

  before(async () => {
    path = freshPath();
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "test/store/crash-writer.ts"), path, String(count)], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, sig) => resolve(sig)));
    try {
      await waitForLine(child, "written", 30_000);
    } finally {
      child.kill("SIGKILL");
    }
    signal = await exited;
  });

  void it("loses no committed write when the writing process is killed with SIGKILL", async () => {
    assert.equal(signal, "SIGKILL");
    // The writer never closed the store, so its commits were still only in the WAL.
    assert.ok(existsSync(`${path}-wal`) && statSync(`${path}-wal`).size > 0, "the WAL holds the writes");
    const store = await openSqliteStore(path);
    try {
      const sessions = await store.listSessions();
      assert.equal(sessions.length, count);
      assert.equal(sessions[0]?.id, `crash-${count - 1}`);
      assert.deepEqual(sessions.at(-1)?.providerState, { pid: 1000 });
      const env = await store.getEnvironment("runtime");
      assert.equal(env?.currentVersion, 1);
      assert.equal((await store.getEnvironmentVersion("runtime", 1))?.templateId, "tpl-1");
    } finally {
      await store.close();
    }
  });
});
