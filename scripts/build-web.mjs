// Bundles the web UI (web/main.tsx, Preact + CSS) into dist/web/, which `paddock up` serves at /:
//   index.html   the page (no inline script or style: the CSP forbids them), naming the assets
//                with ?v=<content hash> so browsers may cache them for good
//   app.js       the bundle, minified (+ app.js.map)
//   app.css      every stylesheet the bundle imports, minified
//   *-HASH.*     fonts and images the stylesheets use, if any
//   .stamp       written first, its mtime the build's start
// Plain JavaScript on purpose, like build.mjs: it runs before anything else is set up.
// Usage: node scripts/build-web.mjs [--if-stale: only when dist/web is stale | --check: exit 1 when stale]
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "web");
/** What the bundle is made of: newer than the stamp means stale. */
const INPUTS = ["web", "scripts/build-web.mjs", "package-lock.json"];

function* walk(p) {
  yield p;
  if (statSync(p).isDirectory()) for (const e of readdirSync(p)) yield* walk(join(p, e));
}

function isStale() {
  try {
    const mtime = (p) => statSync(p, { bigint: true }).mtimeNs;
    const built = mtime(join(out, ".stamp"));
    if (!existsSync(join(out, "index.html"))) return true;
    for (const input of INPUTS) for (const p of walk(join(root, input))) if (mtime(p) > built) return true;
    return false;
  } catch {
    return true;
  }
}

const hashOf = (file) => createHash("sha256").update(readFileSync(file)).digest("base64url").slice(0, 12);

function indexHtml(jsHash, cssHash) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Paddock</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css?v=${cssHash}">
<script type="module" src="/app.js?v=${jsHash}"></script>
</head>
<body>
<div id="app"></div>
<noscript>Paddock's web UI needs JavaScript. The command line (paddock --help) does everything it does.</noscript>
</body>
</html>
`;
}

async function build() {
  const tmp = join(root, "dist", `web.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeFileSync(join(tmp, ".stamp"), "");
    await esbuild.build({
      absWorkingDir: root,
      entryPoints: { app: join(root, "web/main.tsx") },
      tsconfig: join(root, "web/tsconfig.json"),
      outdir: tmp,
      entryNames: "[name]",
      assetNames: "[name]-[hash]",
      bundle: true,
      format: "esm",
      platform: "browser",
      target: ["es2022", "chrome110", "firefox115", "safari16"],
      jsx: "automatic",
      jsxImportSource: "preact",
      minify: true,
      sourcemap: "linked",
      sourcesContent: false,
      legalComments: "linked",
      loader: { ".woff": "file", ".woff2": "file", ".ttf": "file", ".svg": "file", ".png": "file" },
      define: { "process.env.NODE_ENV": '"production"' },
      logLevel: "warning",
    });
    if (!existsSync(join(tmp, "app.css"))) writeFileSync(join(tmp, "app.css"), "");
    writeFileSync(join(tmp, "index.html"), indexHtml(hashOf(join(tmp, "app.js")), hashOf(join(tmp, "app.css"))));
    // Swap in the new folder: a server reading dist/web sees the old build or the new one.
    const old = `${out}.old-${process.pid}`;
    if (existsSync(out)) renameSync(out, old);
    renameSync(tmp, out);
    rmSync(old, { recursive: true, force: true });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv.includes("--check")) process.exit(isStale() ? 1 : 0);
if (process.argv.includes("--if-stale") && !isStale()) process.exit(0);
const t0 = Date.now();
await build();
process.stderr.write(`paddock build: dist/web bundled from web/ in ${Date.now() - t0} ms\n`);
