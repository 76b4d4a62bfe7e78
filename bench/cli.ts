/**
 * CLI start-up (issue #8): `bin/paddock --help` running the compiled CLI (dist/), the same from the
 * TypeScript sources through tsx (`PADDOCK_FROM_SOURCE=1`, how every call started before dist/),
 * and `node -e 0` as the baseline, interleaved in one run. Each is a whole process spawned and
 * waited for, as a shell would. Builds dist/ first when it is stale, and refuses to report figures
 * if a source changed during the run (bin/paddock would then have run from source). Prints one
 * JSON document. Usage: node --import tsx bench/cli.ts [--runs N]
 */
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { machine, summarize, time } from "./stats.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 30;
const root = join(import.meta.dirname, "..");
const paddock = join(root, "bin/paddock");

function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: "ignore", env });
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(" ")} exited ${code}`))));
  });
}

/** True when bin/paddock would run dist/ (the build script applies bin/paddock's rule). */
function compiledIsFresh(): boolean {
  return spawnSync(process.execPath, [join(root, "scripts/build.mjs"), "--check"]).status === 0;
}

async function main(): Promise<void> {
  const build = spawnSync(process.execPath, [join(root, "scripts/build.mjs"), "--if-stale"], { stdio: "inherit" });
  if (build.status !== 0 || !compiledIsFresh()) throw new Error("dist/ could not be built (node scripts/build.mjs)");
  const fromSource = { ...process.env, PADDOCK_FROM_SOURCE: "1" };
  const cases: { name: string; go: () => Promise<void>; samples: number[] }[] = [
    { name: "node -e 0", go: () => run([process.execPath, "-e", "0"]), samples: [] },
    { name: "bin/paddock --help (compiled, dist/)", go: () => run([paddock, "--help"]), samples: [] },
    { name: "bin/paddock --help (sources through tsx)", go: () => run([paddock, "--help"], fromSource), samples: [] },
  ];
  for (const c of cases) for (let i = 0; i < 3; i++) await c.go(); // page cache, first compile of tsx's cache
  for (let i = 0; i < runs; i++) for (const c of cases) c.samples.push(await time(c.go));
  if (!compiledIsFresh()) throw new Error("a source changed during the run, so some calls ran from source: run it again on a quiet checkout");

  const [baseline, ...results] = cases.map((c) => summarize(c.name, c.samples));
  const report = {
    benchmark: "cli",
    machine: machine(),
    runs,
    baseline,
    results: [...results, baseline],
    targets: { paddockHelpP50Ms: 150 },
  };
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
}

await main();
