// The local provider's exec guard (SandboxSpec.guard, Provider.guardDenials): a guarded session
// never runs a denied program, whether the exec API starts it or an allowed program does (npm
// run, make, python), the denials are readable after a control-plane restart and disappear with
// the sandbox, builds never get a guard, and bad rules are refused before anything starts.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ExecOptions, Provider, SandboxSpec } from "../../src/core/index.ts";
import { PaddockError } from "../../src/core/index.ts";
import { runCommand } from "../../src/core/index.ts";
import type { ClosableLayerStore } from "../../src/layers/index.ts";
import { isMountPoint, openLayerStore } from "../../src/layers/index.ts";
import { cgroupDirs, createLocalProvider, destroyCgroups, detectCgroupLayout, installationScope, listCgroupIds, removeCgroupScope } from "../../src/providers/local/index.ts";
import { tempDir } from "../helpers/tmp.ts";

const RM = "paddock: 'rm' denied by guardrails.commands.deny (runtime.yml:18)";
const SUDO = "paddock: 'sudo' denied by guardrails.commands.deny (runtime.yml:19)";
const guard = { deny: [{ program: "rm", message: RM }, { program: "sudo", message: SUDO }] };

const spec = (id: string, over: Partial<SandboxSpec> = {}): SandboxSpec => ({
  id,
  mode: "session",
  base: "host",
  layers: [],
  compute: { cpu: 1, memoryBytes: 512 * 2 ** 20, pids: 256, diskBytes: 256 * 2 ** 20 },
  hostname: "guarded",
  env: { npm_config_update_notifier: "false", npm_config_cache: "/tmp/npm-cache" },
  guard,
  ...over,
});

const rootOnly = { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, overlayfs, cgroups, fanotify)" };

void describe("local provider: exec guard", rootOnly, () => {
  let home: Awaited<ReturnType<typeof tempDir>>;
  let layers: ClosableLayerStore;
  let p: Provider;
  const providers: Provider[] = [];
  let n = 0;
  const id = () => `guard-${process.pid}-${n++}`;
  const run = async (sid: string, argv: string[], o: Partial<ExecOptions> = {}) => {
    let out = "";
    let err = "";
    const r = await p.exec(sid, { argv, onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()), ...o });
    return { code: r.exitCode, out, err };
  };

  before(async () => {
    home = await tempDir();
    layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 2 * 2 ** 30 });
    p = await createLocalProvider({ home: home.path, layers });
    providers.push(p);
  });
  after(async () => {
    for (const q of providers) for (const s of await q.list()) await q.stop(s).catch(() => undefined);
    await layers?.close({ unmount: true });
    if (home) {
      // What a provider of this home may have left on the machine (no network: none was used).
      const scope = installationScope(home.path);
      const layout = await detectCgroupLayout(scope);
      for (const cg of await listCgroupIds(layout)) await destroyCgroups(cgroupDirs(layout, cg));
      await removeCgroupScope(layout);
      await rm(join("/run/paddock", scope), { recursive: true, force: true });
      if (await isMountPoint(join(home.path, "layers"))) await runCommand(["umount", join(home.path, "layers")]);
      await home.remove();
    }
  });

  void it("denies rm from the exec API, a shell, npm run, make and python; reports each; survives a restart; gone after stop", async () => {
    const sid = id();
    const handle = await p.create(spec(sid));
    await p.writeFile(sid, "/workspace/package.json", Buffer.from(JSON.stringify({ name: "p", version: "1.0.0", scripts: { clean: "rm -rf dist" } })));
    await p.writeFile(sid, "/workspace/Makefile", Buffer.from("clean:\n\trm -rf dist\n"));
    assert.equal((await run(sid, ["mkdir", "/workspace/dist"])).code, 0);
    await p.writeFile(sid, "/workspace/dist/out.js", Buffer.from("built\n"));

    const direct = await run(sid, ["rm", "-rf", "dist"]);
    assert.equal(direct.code, 126);
    assert.equal(direct.err, `${RM}\npaddock: exec: Operation not permitted\n`);
    const shell = await run(sid, ["bash", "-c", "rm -rf dist"]);
    assert.equal(shell.code, 126);
    assert.ok(shell.err.startsWith(`${RM}\n`), shell.err);
    for (const argv of [["npm", "run", "clean"], ["make", "clean"], ["python3", "-c", "import subprocess; subprocess.run(['rm', '-rf', 'dist'])"]]) {
      const r = await run(sid, argv);
      assert.notEqual(r.code, 0, argv.join(" "));
      assert.ok(r.err.includes(RM), `${argv.join(" ")}: ${r.err}`);
    }
    const sudo = await run(sid, ["sh", "-c", "printf '#!/bin/sh\\necho ran\\n' > /tmp/sudo; chmod +x /tmp/sudo; /tmp/sudo ls"]);
    assert.equal(sudo.code, 126);
    assert.ok(sudo.err.includes(SUDO));
    assert.equal((await p.readFile(sid, "/workspace/dist/out.js")).toString(), "built\n");

    const denials = await p.guardDenials(sid);
    assert.deepEqual(
      denials.map((d) => d.program),
      ["rm", "rm", "rm", "rm", "rm", "sudo"],
    );
    assert.ok(denials.every((d) => d.pid > 1 && /Z$/.test(d.time)));
    assert.deepEqual(denials[0] && [denials[0].path, denials[0].reason], ["/usr/bin/rm", "same file"]);
    assert.deepEqual(denials[5] && [denials[5].path, denials[5].reason], ["/tmp/sudo", "name"]);

    // A control plane restart: a new provider instance finds the sandbox and its denials again.
    const again = await createLocalProvider({ home: home.path, layers });
    providers.push(again);
    assert.deepEqual(await again.guardDenials(sid), [], "unknown to this instance until recovered");
    assert.equal(await again.recover(sid, handle.providerState), "running");
    assert.deepEqual(await again.guardDenials(sid), denials);
    assert.equal((await again.exec(sid, { argv: ["rm", "x"] })).exitCode, 126, "still guarded");
    assert.equal((await again.guardDenials(sid)).length, denials.length + 1);

    const log = handle.providerState.guardLog as string;
    assert.ok(existsSync(log));
    assert.equal(await again.stop(sid), true);
    assert.equal(existsSync(log), false, "the log goes with the sandbox");
    assert.deepEqual(await again.guardDenials(sid), []);
    await p.close();
    p = again;
  });

  void it("the provider raised fs.fanotify.max_user_groups above the kernel's 128, so more than 128 guarded sessions can run", async () => {
    const groups = Number((await readFile("/proc/sys/fs/fanotify/max_user_groups", "utf8")).trim());
    assert.ok(groups >= 4096, `max_user_groups is ${groups}`);
  });

  void it("unknown ids, unguarded sessions and builds have no denials; builds never get a guard", async () => {
    assert.deepEqual(await p.guardDenials("never-was"), []);
    const [plain, build] = [id(), id()];
    await p.create(spec(plain, { guard: { deny: [] } }));
    await p.create(spec(build, { mode: "build" }));
    for (const sid of [plain, build]) {
      const r = await run(sid, ["sh", "-c", "touch /tmp/f && rm /tmp/f && echo removed"]);
      assert.equal(r.out, "removed\n", `${sid}: ${r.err}`);
      assert.deepEqual(await p.guardDenials(sid), []);
    }
    await p.stop(plain);
    await p.stop(build);
  });

  void it("a rule the launcher would refuse rejects create (invalid_argument) and leaves nothing running", async () => {
    const sid = id();
    await assert.rejects(p.create(spec(sid, { guard: { deny: [{ program: "bin/rm", message: "m" }] } })), (e: unknown) => {
      assert.ok(e instanceof PaddockError && e.code === "invalid_argument");
      return true;
    });
    assert.equal((await p.list()).includes(sid), false);
    // The id is free again: nothing of the failed create was kept.
    await p.create(spec(sid));
    assert.equal((await p.exec(sid, { argv: ["true"] })).exitCode, 0);
    await p.stop(sid);
  });
});
