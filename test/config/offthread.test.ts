// Parsing off the event loop: the worker gives the same results as parseEnvironment, a file over
// the time limit is refused and its worker replaced, the main thread stays free meanwhile (also
// for /v1/health on a real server), an idle parser keeps no process alive, and the worker loads
// both from the .ts sources (tests, under tsx) and compiled to JavaScript (dist/).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, readdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import * as esbuild from "esbuild";
import { createOffThreadParser, parseEnvironment } from "../../src/config/index.ts";
import type { OffThreadParser } from "../../src/config/index.ts";
import { repoRoot, testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";

const run = promisify(execFile);

/** Just under 25,000 tokens of explicit keys: among the slowest files the limits let through to the end. */
const heavy = `name: x\nrbac:\n${"  ? a\n  : [read]\n".repeat(1780)}`;

const examplesDir = join(repoRoot, "examples");
// Every example file: the top-level ones, and each example directory's runtime.yml.
const exampleFiles = (await readdir(examplesDir, { withFileTypes: true })).flatMap((e) => (e.isDirectory() ? [join(e.name, "runtime.yml")] : e.name.endsWith(".yml") ? [e.name] : []));
const examples = await Promise.all(exampleFiles.map(async (f) => [f, await readFile(join(examplesDir, f), "utf8")] as const));

/**
 * How often a 2 ms interval fires while `work` runs. Parsing on the main thread would let it fire
 * about once per file (between parses); off the main thread it fires all along.
 */
async function ticksDuring(work: Promise<unknown>): Promise<{ ticks: number; ms: number }> {
  let ticks = 0;
  const started = performance.now();
  const tick = setInterval(() => ticks++, 2);
  try {
    await work;
  } finally {
    clearInterval(tick);
  }
  return { ticks, ms: performance.now() - started };
}

void describe("createOffThreadParser", () => {
  let parser: OffThreadParser;
  before(() => {
    parser = createOffThreadParser({ timeoutMs: 2000 });
  });
  after(() => parser.close());

  void it("gives what parseEnvironment gives: the examples, a bad file, a refused one", async () => {
    const files: (readonly [string, string])[] = [...examples, ["bad.yml", "name: Bad\ncompute: { cpu: lots }\n"], ["deep.yml", `${"[".repeat(100)}${"]".repeat(100)}`]];
    for (const [name, text] of files) assert.deepEqual(await parser.parse(text, name), parseEnvironment(text, name), name);
  });

  void it("refuses a file over its time limit as one issue, then parses on a new worker", async () => {
    const slow = await parser.parse(heavy, "runtime.yml", { timeoutMs: 1 });
    assert.deepEqual(slow, {
      spec: null,
      issues: [{ file: "runtime.yml", line: 0, column: 0, path: "", message: "the file took too long to check (over 0.001 s): an environment file is a few kilobytes" }],
    });
    assert.equal((await parser.parse("name: after\n", "runtime.yml")).spec?.name, "after");
  });

  void it("keeps the event loop free while it parses", async () => {
    // Twelve files of at least 20 ms each: on the main thread the timer could fire about 12 times.
    const { ticks, ms } = await ticksDuring(Promise.all(Array.from({ length: 12 }, () => parser.parse(heavy, "runtime.yml"))));
    assert.ok(ticks >= 40, `a 2 ms timer fired ${ticks} times in ${ms.toFixed(0)} ms of parsing`);
  });

  void it("rejects calls after close", async () => {
    const p = createOffThreadParser();
    await p.parse("name: x\n", "x.yml");
    await p.close();
    await assert.rejects(p.parse("name: x\n", "x.yml"), /closed/);
  });

  void it("keeps no process alive when idle and not closed", async () => {
    const script = `import { createOffThreadParser } from ${JSON.stringify(join(repoRoot, "src/config/index.ts"))};
      const r = await createOffThreadParser().parse("name: x\\n", "x.yml");
      console.log(r.spec.name);`;
    const { stdout } = await run(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: repoRoot, timeout: 20_000 });
    assert.equal(stdout.trim(), "x");
  });

  void it("loads compiled to JavaScript, as dist/ ships it (no tsx in the worker)", async () => {
    const dir = await tempDir();
    try {
      // As scripts/build.mjs does: the worker is its own entry, referenced as ./parse.worker.js.
      const src = join(repoRoot, "src/config");
      await esbuild.build({
        entryPoints: { config: join(src, "index.ts"), "parse.worker": join(src, "parse.worker.ts") },
        outdir: dir.path, bundle: true, splitting: true, format: "esm", platform: "node", packages: "external", logLevel: "error",
        plugins: [{
          name: "worker-url",
          setup: (b) => b.onLoad({ filter: /offthread\.ts$/ }, async (a) => ({ loader: "ts", contents: (await readFile(a.path, "utf8")).replace('"./parse.worker.ts"', '"./parse.worker.js"') })),
        }],
      });
      await writeFile(join(dir.path, "package.json"), '{ "type": "module" }');
      await symlink(join(repoRoot, "node_modules"), join(dir.path, "node_modules"));
      const script = `import { createOffThreadParser } from "./config.js";
        const p = createOffThreadParser();
        console.log(JSON.stringify(await p.parse("name: Bad\\n", "x.yml")));
        await p.close();`;
      const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: dir.path, timeout: 20_000 });
      assert.deepEqual(JSON.parse(stdout), parseEnvironment("name: Bad\n", "x.yml"));
    } finally {
      await dir.remove();
    }
  });
});

void describe("POST /v1/environments/validate off the event loop", () => {
  let server: Awaited<ReturnType<typeof testServer>>;
  before(async () => {
    server = await testServer();
  });
  after(() => server.cleanup());

  void it("/v1/health answers at once while uploads are being checked", async () => {
    const url = server.server.url;
    const headers = { authorization: `Bearer ${server.token}`, "content-type": "application/json" };
    const validate = async () => {
      const res = await fetch(`${url}/v1/environments/validate`, { method: "POST", headers, body: JSON.stringify({ fileName: "runtime.yml", source: heavy }) });
      assert.equal(res.status, 200);
      return (await res.json()) as { valid: boolean };
    };
    // Warm up first: the first request of each route compiles its schemas, and the first upload starts the worker.
    await fetch(`${url}/v1/health`);
    await validate();
    // Twelve files of at least 20 ms each. Were they parsed on the event loop, each health check
    // would wait for the parse under way: about one answer per file. Off it, they answer at once.
    let pending = 12;
    const uploads = Array.from({ length: pending }, () => validate().finally(() => pending--));
    let answered = 0;
    const started = performance.now();
    while (pending > 0) {
      const res = await fetch(`${url}/v1/health`);
      assert.equal(res.status, 200);
      if (pending > 0) answered++;
    }
    const ms = performance.now() - started;
    await Promise.all(uploads);
    assert.ok(answered >= 30, `/v1/health answered ${answered} times in the ${ms.toFixed(0)} ms the uploads took`);
  });
});
