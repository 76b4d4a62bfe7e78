// Compiles the paddock command to JavaScript in dist/, so `bin/paddock` starts without compiling
// TypeScript on every call (tsx stays for development and tests). Plain JavaScript on purpose: it
// runs before anything else is set up.
// Usage: node scripts/build.mjs [--if-stale: only when dist/ is stale | --check: exit 1 when stale]
//
// What it emits (all files side by side in dist/, no subfolders; see "Paths in the bundle" below):
//   paddock.js          the CLI (src/cli/main.ts); what `paddock up` needs is a chunk it imports
//                       on demand, so `paddock --help` loads only the CLI and the SDK
//   NAME.worker.js      one entry per src/**/NAME.worker.ts (worker threads, child processes)
//   chunk-*.js, *.map   shared code and source maps (stack traces name the .ts files)
//   package.json        { "type": "module" }
//   .stamp              written first, its mtime the build's start: bin/paddock runs dist/ only
//                       while nothing in INPUTS is newer
//   web/                the web UI, built by scripts/build-web.mjs (kept across this build)
//
// node_modules stay external (native better-sqlite3, web-tree-sitter's wasm and the rest load as
// under tsx, found from dist/ as from src/). The build goes to a temporary folder that replaces
// dist/ at the end, so a concurrent `paddock` sees the old build, the new one, or none (then it
// runs from source).
import * as esbuild from "esbuild";
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, renameSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
/** What the build reads. bin/paddock's `find` checks the same list: keep them in step. */
const INPUTS = ["src", "scripts/build.mjs", "tsconfig.json"];

/** Every file and folder under `p` (a folder's mtime moves when an entry is added, removed or renamed). */
function* walk(p) {
  yield p;
  if (statSync(p).isDirectory()) for (const e of readdirSync(p)) yield* walk(join(p, e));
}

/** True when dist/ is missing or any input is newer than its stamp, as bin/paddock decides. */
function isStale() {
  try {
    const mtime = (p) => statSync(p, { bigint: true }).mtimeNs; // nanoseconds, as find -newer compares
    const built = mtime(join(dist, ".stamp"));
    for (const input of INPUTS) for (const p of walk(join(root, input))) if (mtime(p) > built) return true;
    return false;
  } catch {
    return true; // no stamp, or an input vanished while we looked
  }
}

/**
 * Paths in the bundle. import.meta.url is the URL of the output file in dist/ (it ends in .js, so
 * `import.meta.url.endsWith(".ts")` tells compiled from source). Two idioms are rewritten, on one
 * line so source maps keep their lines:
 * - a relative literal naming NAME.worker.ts, anywhere, becomes "./NAME.worker.js": the worker's
 *   own entry, beside every other output in dist/;
 * - `new URL("<relative path>", import.meta.url)` resolves from the source file, as under tsx (the
 *   launcher at ../../../build/paddock-sandbox): "../src/<file>" relative to an output in dist/ is
 *   that source file wherever the checkout lives.
 * Other ways of computing paths from the module's location would silently point into dist/, so
 * they fail the build.
 */
const WORKER = /(["'])(?:\.{1,2}\/)+(?:[^"'/\s]+\/)*([^"'/\s]+)\.worker\.ts\1/g;
const RELATIVE_URL = /new URL\(\s*(["'])(\.{1,2}(?:\/[^"']*)?)\1\s*,\s*import\.meta\.url\s*\)/g;
const UNSUPPORTED = /import\.meta\.(dirname|filename)\b|fileURLToPath\(\s*import\.meta\.url\s*\)/;
const sourcePaths = {
  name: "paddock-source-paths",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, async (args) => {
      const text = await readFile(args.path, "utf8");
      const bad = UNSUPPORTED.exec(text);
      if (bad) throw new Error(`${relative(root, args.path)}: ${bad[0]} would name dist/ once compiled; resolve files with new URL("./relative/path", import.meta.url)`);
      const source = JSON.stringify(relative(dist, args.path).split(sep).join("/"));
      const contents = text
        .replace(RELATIVE_URL, (m, q, path) => (/\.worker\.(ts|js)$/.test(path) ? m : `new URL(${q}${path}${q}, new URL(${source}, import.meta.url))`))
        .replace(WORKER, (_m, q, name) => `${q}./${name}.worker.js${q}`);
      return { contents, loader: "ts" };
    });
  },
};

/** src/**\/*.worker.ts, each its own entry dist/NAME.worker.js. */
function workerEntries() {
  const entries = {};
  for (const p of walk(join(root, "src"))) {
    if (!p.endsWith(".worker.ts")) continue;
    const name = basename(p, ".ts");
    if (entries[name]) throw new Error(`two workers named ${name}.ts (${relative(root, entries[name])}, ${relative(root, p)}): dist/ is flat, rename one`);
    entries[name] = p;
  }
  return entries;
}

/** Puts `tmp` in the place of dist/; another build finishing at the same moment makes it try again. */
function replaceDist(tmp) {
  const old = `${dist}.old-${process.pid}`;
  for (let attempt = 1; ; attempt++) {
    try {
      if (existsSync(dist)) renameSync(dist, old);
      renameSync(tmp, dist);
      break;
    } catch (err) {
      if (attempt >= 5 || !["ENOENT", "ENOTEMPTY", "EEXIST"].includes(err.code)) throw err;
    } finally {
      rmSync(old, { recursive: true, force: true });
    }
  }
}

async function build() {
  const tmp = join(root, `dist.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  try {
    // The stamp first: an input changed while esbuild reads it is newer than the stamp, so stale.
    mkdirSync(tmp, { recursive: true });
    writeFileSync(join(tmp, ".stamp"), "");
    writeFileSync(join(tmp, "package.json"), '{ "type": "module" }\n'); // ESM whatever the checkout's package.json says
    const result = await esbuild.build({
      absWorkingDir: root,
      entryPoints: { paddock: join(root, "src/cli/main.ts"), ...workerEntries() },
      outdir: tmp,
      entryNames: "[name]",
      bundle: true,
      splitting: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      sourcemap: "linked",
      sourcesContent: false,
      plugins: [sourcePaths],
      logLevel: "warning",
      metafile: true,
    });
    for (const file of Object.keys(result.metafile.outputs)) {
      if (!file.endsWith(".js")) continue;
      const text = await readFile(join(root, file), "utf8");
      // A relative .ts path left in the output would be loaded at run time, which plain node cannot.
      const ts = /["'`](\.{1,2}\/[^"'`\s]*\.ts)["'`]/.exec(text.replaceAll(/"\.\.\/src\/[^"]*\.ts", import\.meta\.url\)/g, ""));
      if (ts) throw new Error(`${basename(file)} loads ${ts[1]} at run time: name a worker src/**/NAME.worker.ts and start it with new URL("./NAME.worker.ts", import.meta.url)`);
      if (dirname(join(root, file)) !== tmp) throw new Error(`${file}: every output must sit directly in dist/ (the path rewriting assumes it)`);
    }
    // The web UI's bundle (scripts/build-web.mjs) lives in dist/web: carried over, not rebuilt here.
    if (existsSync(join(dist, "web", "index.html"))) cpSync(join(dist, "web"), join(tmp, "web"), { recursive: true, preserveTimestamps: true });
    replaceDist(tmp);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv.includes("--check")) process.exit(isStale() ? 1 : 0);
if (process.argv.includes("--if-stale") && !isStale()) process.exit(0);
const t0 = Date.now();
await build();
process.stderr.write(`paddock build: dist/ compiled from src/ in ${Date.now() - t0} ms\n`);
