/**
 * Guardrail and access-control costs (issue #4), each beside a baseline from the same run:
 * - the submission-time command check (tree-sitter bash parse + policy) vs `bash -n` spawned to
 *   merely syntax-check the same line;
 * - an authenticated, authorised, audited API call (GET /v1/sessions/{id}) vs the public health
 *   route, which does none of that;
 * - exec `true` through the command gate in a session with an exec guard vs one without;
 * - 100 execs of /bin/true inside the sandbox (each answered by the fanotify guard) vs the same in
 *   an unguarded sandbox;
 * - `audit verify` over every record the run wrote.
 * Prints one JSON document. Usage: node --import tsx bench/guard.ts [--runs N]
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../src/server/index.ts";
import { PaddockClient } from "../src/client/index.ts";
import { createCommandChecker } from "../src/guard/index.ts";
import { machine, summarize, time } from "./stats.ts";
import { releaseHome } from "../test/helpers/server.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 300;
const LINES = [
  "npm test",
  "ls -la && git status --porcelain | grep -v '^??' | wc -l",
  `find . -name '*.log' -exec sh -c 'gzip "$1"' _ {} \\; ; timeout 60 env CI=1 npm run build -- --prod > build.log 2>&1 || tail -n 50 build.log`,
];
const POLICY = { allow: [], allowListed: false, deny: ["rm", "sudo"], ask: ["terraform"], deploy: ["git push", "npm publish"], protectedBranches: ["main"] };

function bashSyntaxCheck(line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn("bash", ["-n", "-c", line], { stdio: "ignore" });
    p.on("error", reject);
    p.on("exit", () => resolve());
  });
}

async function main(): Promise<void> {
  const checker = await createCommandChecker();
  const check: Record<number, number[]> = { 0: [], 1: [], 2: [] };
  const bashN: number[] = [];
  for (let i = 0; i < 50; i++) for (const l of LINES) checker.check(l, POLICY);
  for (let i = 0; i < runs; i++) {
    LINES.forEach((l, j) => {
      const t0 = process.hrtime.bigint();
      checker.check(l, POLICY);
      check[j]!.push(Number(process.hrtime.bigint() - t0) / 1e6);
    });
    bashN.push(await time(() => bashSyntaxCheck(LINES[2]!)));
  }
  checker.close();

  const home = await mkdtemp(join(tmpdir(), "paddock-bench-guard-"));
  const server = await startServer({ home, port: 0 });
  const client = new PaddockClient({ url: server.url, token: (await readFile(join(home, "admin.token"), "utf8")).trim() });
  try {
    await client.environments.apply("runtime.yml", "name: guarded\nguardrails:\n  commands:\n    deny: [rm, sudo]\n");
    await client.environments.apply("runtime.yml", "name: open\n");
    const guarded = (await client.sessions.start("guarded")).id;
    const open = (await client.sessions.start("open")).id;
    const health: number[] = [];
    const getSession: number[] = [];
    const execGuarded: number[] = [];
    const execOpen: number[] = [];
    const loopGuarded: number[] = [];
    const loopOpen: number[] = [];
    const loop = { argv: ["sh", "-c", "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done"] };
    for (let i = 0; i < 20; i++) await client.sessions.run(guarded, { argv: ["true"] });
    for (let i = 0; i < runs; i++) {
      health.push(await time(() => client.health()));
      getSession.push(await time(() => client.sessions.get(guarded)));
      execGuarded.push(await time(() => client.sessions.run(guarded, { argv: ["true"] })));
      execOpen.push(await time(() => client.sessions.run(open, { argv: ["true"] })));
      if (i < Math.min(runs, 50)) {
        loopGuarded.push((await time(() => client.sessions.run(guarded, loop))) / 100);
        loopOpen.push((await time(() => client.sessions.run(open, loop))) / 100);
      }
    }
    const records = (await server.cp.store.lastAudit())?.seq ?? 0;
    const verify: number[] = [];
    for (let i = 0; i < 5; i++) verify.push(await time(() => client.audit.verify()));
    const report = {
      benchmark: "guardrails, access control and audit",
      machine: machine(),
      runs,
      results: [
        { baseline: summarize("bash -n -c LINE (spawned syntax check only)", bashN), result: summarize(`command check: ${LINES[2]!.slice(0, 40)}…`, check[2]!) },
        { result: summarize(`command check: ${LINES[0]}`, check[0]!) },
        { result: summarize(`command check: ${LINES[1]!.slice(0, 40)}…`, check[1]!) },
        { baseline: summarize("GET /v1/health (public: no auth, no audit)", health), result: summarize("GET /v1/sessions/{id} (token + RBAC + audit record)", getSession) },
        { baseline: summarize("exec `true` via API, session without exec guard", execOpen), result: summarize("exec `true` via API, session with exec guard (deny: [rm, sudo])", execGuarded) },
        { baseline: summarize("one /bin/true inside an unguarded sandbox (of a 100-exec loop)", loopOpen), result: summarize("one /bin/true inside a guarded sandbox (of a 100-exec loop)", loopGuarded) },
        { result: { ...summarize(`audit verify (${records} records)`, verify), records } },
      ],
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    for (const s of await client.sessions.list()) await client.sessions.remove(s.id).catch(() => undefined);
    await server.close({ unmountLayers: true, removeHostNetwork: true });
    await releaseHome(home);
    await rm(home, { recursive: true, force: true });
  }
}

await main();
