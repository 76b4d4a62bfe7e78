import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { releaseHome, repoRoot } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";

const DESCRIPTION = "Run coding agents in isolated sandboxes";

/**
 * A copy of the checkout (src, bin, scripts, tsconfig.json, package.json; node_modules and build/
 * linked) with dist/ built, and what the tests do with it. The real dist/ and src/ are never touched.
 */
async function checkout(parent: string) {
  const root = await mkdtemp(join(parent, "checkout-"));
  for (const p of ["src", "bin", "scripts", "tsconfig.json", "package.json"]) await cp(join(repoRoot, p), join(root, p), { recursive: true });
  await symlink(join(repoRoot, "node_modules"), join(root, "node_modules"));
  await symlink(join(repoRoot, "build"), join(root, "build"));
  const paddock = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync(join(root, "bin/paddock"), args, { encoding: "utf8", env: { ...process.env, PADDOCK_FROM_SOURCE: "", ...env } });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const c = {
    root,
    paddock,
    /** Builds dist/ and marks its help text, so `ran()` can tell which of the two ran. */
    build: async () => {
      const r = spawnSync(process.execPath, [join(root, "scripts/build.mjs")], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      const file = join(root, "dist/paddock.js");
      const text = await readFile(file, "utf8");
      assert.ok(text.includes(DESCRIPTION));
      await writeFile(file, text.replace(DESCRIPTION, "FROM-DIST"));
    },
    /** 0 when dist/ is fresh by the build script's rule (`--check`), which must agree with bin/paddock's. */
    check: () => spawnSync(process.execPath, [join(root, "scripts/build.mjs"), "--check"]).status,
    /** Which CLI `bin/paddock --help` ran: the build ("dist") or the sources through tsx ("source"). */
    ran: () => {
      const r = paddock(["--help"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "", "no hint when stderr is not a terminal");
      if (r.stdout.includes("FROM-DIST")) return "dist";
      assert.ok(r.stdout.includes(DESCRIPTION), r.stdout);
      return "source";
    },
  };
  await c.build();
  return c;
}

/**
 * The compiled CLI (scripts/build.mjs → dist/, run by bin/paddock): it works, bin/paddock runs it
 * only while no input of the build is newer than the build, and `paddock up` from dist/ finds what
 * it resolves relative to its sources (the launcher, tree-sitter's grammar).
 */
void describe("compiled CLI", async () => {
  const dir = await tempDir("paddock-test-build-");
  after(() => dir.remove());

  void it("bin/paddock runs dist/ while it is fresh: --help and --version exit 0", async () => {
    const c = await checkout(dir.path);
    assert.equal(c.check(), 0);
    assert.equal(c.ran(), "dist");
    const v = c.paddock(["--version"]);
    assert.deepEqual([v.code, v.stdout, v.stderr], [0, "0.1.0\n", ""]);
    assert.equal(c.ran(), "dist", "running it changes nothing");
  });

  void it("emits each src/**/NAME.worker.ts as dist/NAME.worker.js, and no output names a .ts file", async () => {
    const c = await checkout(dir.path);
    const workers = (await readdir(join(c.root, "src"), { recursive: true })).filter((p) => p.endsWith(".worker.ts"));
    const outputs = await readdir(join(c.root, "dist"));
    for (const w of workers) assert.ok(outputs.includes(basename(w, ".ts") + ".js"), `${w}: ${outputs.join(" ")}`);
    for (const o of outputs.filter((f) => f.endsWith(".js"))) {
      const text = await readFile(join(c.root, "dist", o), "utf8");
      assert.doesNotMatch(text.replaceAll(/"\.\.\/src\/[^"]*\.ts", import\.meta\.url\)/g, ""), /["'`]\.{1,2}\/[^"'`\s]*\.ts["'`]/, o);
    }
  });

  void it("--help loads neither the server nor native or heavy modules (they are chunks imported on demand)", async () => {
    const c = await checkout(dir.path);
    const seen = new Set<string>();
    const bare = new Set<string>();
    const visit = async (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = await readFile(join(c.root, "dist", file), "utf8");
      for (const m of text.matchAll(/^import\s+(?:[^;]*?\sfrom\s*)?"([^"]+)";/gm)) {
        const spec = m[1]!;
        if (spec.startsWith("./")) await visit(spec.slice(2));
        else bare.add(spec);
      }
    };
    await visit("paddock.js");
    assert.ok(bare.has("commander"), [...bare].join(" "));
    for (const heavy of ["fastify", "better-sqlite3", "web-tree-sitter", "ws"]) assert.ok(!bare.has(heavy), `${heavy} is loaded at start: ${[...bare].join(" ")}`);
  });

  void it("runs the sources once a source file changed, and the build again after a rebuild", async () => {
    const c = await checkout(dir.path);
    const main = join(c.root, "src/cli/main.ts");
    await writeFile(main, await readFile(main, "utf8"));
    assert.equal(c.ran(), "source");
    assert.equal(c.check(), 1);
    await c.build();
    assert.equal(c.ran(), "dist");
  });

  void it("runs the sources once a source file is added or deleted", async () => {
    const c = await checkout(dir.path);
    const extra = join(c.root, "src/cli/scratch.ts");
    await writeFile(extra, "export {};\n");
    assert.equal(c.ran(), "source");
    await c.build();
    assert.equal(c.ran(), "dist");
    await rm(extra);
    assert.equal(c.ran(), "source");
    assert.equal(c.check(), 1);
  });

  void it("treats the build script and tsconfig.json as inputs", async () => {
    const c = await checkout(dir.path);
    for (const input of ["scripts/build.mjs", "tsconfig.json"]) {
      const later = new Date(Date.now() + 2000);
      await utimes(join(c.root, input), later, later);
      assert.equal(c.ran(), "source", input);
      assert.equal(c.check(), 1, input);
      await utimes(join(c.root, input), new Date(0), new Date(0));
      assert.equal(c.ran(), "dist", input);
    }
  });

  void it("runs the sources when asked (PADDOCK_FROM_SOURCE=1) or when dist/ is gone", async () => {
    const c = await checkout(dir.path);
    const r = c.paddock(["--help"], { PADDOCK_FROM_SOURCE: "1" });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(DESCRIPTION));
    await rm(join(c.root, "dist"), { recursive: true });
    assert.equal(c.ran(), "source");
    assert.equal(c.check(), 1);
  });

  void it("paddock up from dist/ starts (launcher and bash grammar found) and answers the CLI", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, cgroups)" }, async () => {
    const c = await checkout(dir.path);
    const home = join(c.root, "home");
    const server = spawn(join(c.root, "bin/paddock"), ["up", "--port", "0", "--home", home], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PADDOCK_FROM_SOURCE: "" } });
    const exited = new Promise((resolve) => server.once("exit", resolve));
    try {
      let log = "";
      const url = await new Promise<string>((resolve, reject) => {
        createInterface({ input: server.stderr }).on("line", (line) => {
          log += line + "\n";
          const m = /listening on (http:\/\/\S+)/.exec(line);
          if (m?.[1]) resolve(m[1]);
        });
        server.on("exit", (code) => reject(new Error(`paddock up exited with ${code} before listening:\n${log}`)));
      });
      const cmdline = await readFile(`/proc/${server.pid}/cmdline`, "utf8");
      assert.ok(cmdline.includes(join(c.root, "dist/paddock.js")), "bin/paddock ran the server from dist/");
      const token = (await readFile(join(home, "admin.token"), "utf8")).trim();
      const r = c.paddock(["doctor", "--json"], { PADDOCK_URL: url, PADDOCK_TOKEN: token });
      const launcher = (JSON.parse(r.stdout) as { checks: { name: string; ok: boolean; detail: string }[] }).checks.find((x) => x.name === "launcher");
      assert.equal(launcher?.ok, true, JSON.stringify(launcher));
      assert.ok(launcher.detail.startsWith(join(c.root, "build/paddock-sandbox")), launcher.detail);
      const v = c.paddock(["env", "validate", join(repoRoot, "examples/quickstart.yml")], { PADDOCK_URL: url, PADDOCK_TOKEN: token });
      assert.equal(v.code, 0, v.stderr);
    } finally {
      if (server.exitCode === null && server.signalCode === null) server.kill("SIGTERM");
      await exited;
      await releaseHome(home);
    }
  });
});
