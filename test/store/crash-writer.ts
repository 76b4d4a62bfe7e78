/**
 * Child process for the kill -9 test in sqlite.test.ts (not a test itself). Opens the store at
 * argv[2], writes argv[3] sessions plus a built environment version, prints "written" once every
 * write has resolved, then idles with the store still open (no close, so no checkpoint: the
 * writes exist only in the WAL) until the parent kills it with SIGKILL.
 */
import { openSqliteStore } from "../../src/store/sqlite.ts";

const [path, countText] = process.argv.slice(2);
if (path === undefined || countText === undefined) throw new Error("usage: crash-writer.ts <db path> <session count>");

const store = await openSqliteStore(path);
for (let i = 0; i < Number(countText); i++) {
  await store.createSession({
    id: `crash-${i}`,
    environment: "runtime",
    version: 1,
    templateId: "tpl-1",
    provider: "local",
    state: "running",
    createdAt: new Date(Date.UTC(2026, 10, 2, 10, 0, i)).toISOString(),
    expiresAt: null,
    endedAt: null,
    endReason: null,
    providerState: { pid: 1000 + i },
    startedBy: "admin",
    agent: null,
    snapshot: null,
  });
}
await store.addEnvironmentVersion({ name: "runtime", fileName: "runtime.yml", source: "x", spec: {}, sourceDigest: "d", createdBy: "t" });
await store.finishBuild("runtime", 1, { templateId: "tpl-1" });
process.stdout.write("written\n");
setInterval(() => undefined, 60_000);
