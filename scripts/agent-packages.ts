/**
 * Installs the pinned agent CLIs (src/agents/packages.ts) into DIR/<name>@<version>/ with npm, for
 * installations that build templates without the registry (`--agent-packages DIR`, `PADDOCK_AGENT_PACKAGES`)
 * and for the tests, which run the real CLIs. Idempotent: a version already installed is kept; a
 * half-made one (interrupted) is replaced. Usage: node --import tsx scripts/agent-packages.ts DIR [NAME…]
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { AGENT_PACKAGES } from "../src/agents/packages.ts";

const [dirArg, ...only] = process.argv.slice(2);
if (!dirArg) {
  process.stderr.write("usage: agent-packages.ts DIR [NAME…]\n");
  process.exit(2);
}
const dir = resolve(dirArg);
mkdirSync(dir, { recursive: true });
for (const [name, pkg] of Object.entries(AGENT_PACKAGES)) {
  if (!pkg || (only.length && !only.includes(name))) continue;
  const target = join(dir, `${name}@${pkg.version}`);
  if (existsSync(join(target, ".complete"))) continue;
  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  process.stderr.write(`paddock setup: installing agent ${name} (${pkg.npm}@${pkg.version})\n`);
  const r = spawnSync("npm", ["install", "--prefix", tmp, "--no-audit", "--no-fund", "--no-save", "--loglevel=error", `${pkg.npm}@${pkg.version}`], { stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    process.stderr.write(`paddock setup: npm could not install ${pkg.npm}@${pkg.version} (exit ${String(r.status)})\n`);
    process.exit(1);
  }
  if (!existsSync(join(tmp, "node_modules", ".bin", pkg.bin))) {
    process.stderr.write(`paddock setup: ${pkg.npm}@${pkg.version} installed no ${pkg.bin} executable\n`);
    process.exit(1);
  }
  writeFileSync(join(tmp, ".complete"), `${pkg.npm}@${pkg.version}\n`);
  rmSync(target, { recursive: true, force: true });
  renameSync(tmp, target);
}
