/**
 * E2B's real SDK (the newest pinned release and one about two months older) using a Paddock
 * sandbox's files through the E2B front end: write (string, bytes, a stream, several files at
 * once), read (text, bytes, blob, stream), list with depth, exists, getInfo, rename, remove,
 * makeDir, watchDir (recursive), signed upload and download URLs; in an environment whose
 * guardrails deny `rm` and `mv` (the file API runs no program, so it works, and the commands
 * still fail).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { FileNotFoundError as FileNotFoundErrorNew, Sandbox as SandboxNew } from "e2b";
import { FileNotFoundError as FileNotFoundErrorPrev, Sandbox as SandboxPrev } from "e2b-prev";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { e2bApiKeyOf } from "../../src/server/e2b/api.ts";
import type { E2bSandboxes } from "../../src/server/e2b/context.ts";
import { E2bSandboxTable } from "../../src/server/e2b/sandboxes.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";

const ENV = `name: e2bfiles
guardrails:
  commands:
    deny: [rm, mv]
`;

const SDKS = [
  { name: "e2b 2.51.0", Sandbox: SandboxNew, FileNotFoundError: FileNotFoundErrorNew },
  { name: "e2b 2.39.0", Sandbox: SandboxPrev as unknown as typeof SandboxNew, FileNotFoundError: FileNotFoundErrorPrev as unknown as typeof FileNotFoundErrorNew },
] as const;

let server: RunningServer;
let client: PaddockClient;
let cleanup: () => Promise<void>;
/** Whether the sandbox table can verify signed URLs (it needs the envd access tokens themselves). */
const signedUrls = typeof (E2bSandboxTable.prototype as Partial<E2bSandboxes>).envdSignedCaller === "function";

before(async () => {
  const t = await testServer({ e2bPort: 0 });
  ({ server, client, cleanup } = t);
  await client.environments.apply("runtime.yml", ENV);
  process.env.E2B_API_URL = server.e2bUrl;
  process.env.E2B_SANDBOX_URL = server.e2bUrl;
  process.env.E2B_API_KEY = e2bApiKeyOf(t.token);
});
after(async () => {
  await cleanup?.();
});

for (const sdk of SDKS) {
  void describe(`files with the real SDK (${sdk.name})`, () => {
    let sbx: SandboxNew;

    before(async () => {
      sbx = await sdk.Sandbox.create("e2bfiles");
    });
    after(async () => {
      await sbx?.kill().catch(() => undefined);
    });

    void it("write a string (relative: under /home/user), bytes, a stream and several files; read them back as text, bytes, blob, stream", async () => {
      const info = await sbx.files.write("notes/a.txt", "hello from e2b");
      assert.deepEqual({ name: info.name, path: info.path, type: info.type }, { name: "a.txt", path: "/home/user/notes/a.txt", type: "file" });
      assert.equal(await sbx.files.read("/home/user/notes/a.txt"), "hello from e2b");
      assert.equal(await sbx.files.read("~/notes/a.txt"), "hello from e2b");

      const bytes = new Uint8Array([0, 1, 2, 250, 255]);
      await sbx.files.write("/home/user/b.bin", bytes.buffer);
      assert.deepEqual([...(await sbx.files.read("b.bin", { format: "bytes" }))], [...bytes]);
      assert.equal((await sbx.files.read("b.bin", { format: "blob" })).size, 5);

      // A ReadableStream goes as application/octet-stream (envd 0.5.7+), streamed.
      const big = new Uint8Array(3 << 20).fill(120);
      const streamed = new ReadableStream<Uint8Array>({
        start(c) {
          for (let off = 0; off < big.length; off += 1 << 20) c.enqueue(big.subarray(off, off + (1 << 20)));
          c.close();
        },
      });
      await sbx.files.write("big.txt", streamed);
      let got = 0;
      const reader = (await sbx.files.read("big.txt", { format: "stream" })).getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) got += r.value.length;
      assert.equal(got, big.length);

      const many = await sbx.files.write([
        { path: "multi/one.txt", data: "1" },
        { path: "/home/user/multi/deep/two.txt", data: "2" },
      ]);
      assert.deepEqual(many.map((e) => e.path), ["/home/user/multi/one.txt", "/home/user/multi/deep/two.txt"]);
      assert.equal(await sbx.files.read("multi/deep/two.txt"), "2");
      await assert.rejects(sbx.files.read("nope.txt"), sdk.FileNotFoundError);
    });

    void it("list (depth), exists, getInfo, makeDir (true, then false), rename, remove", async () => {
      assert.equal(await sbx.files.makeDir("tree/a/b"), true);
      assert.equal(await sbx.files.makeDir("tree/a/b"), false);
      await sbx.files.write("tree/a/b/leaf.txt", "leaf");
      await sbx.files.write("tree/top.txt", "top");
      const one = await sbx.files.list("tree");
      assert.deepEqual(one.map((e) => [e.name, e.type]), [["a", "dir"], ["top.txt", "file"]]);
      const deep = await sbx.files.list("/home/user/tree", { depth: 3 });
      assert.deepEqual(deep.map((e) => e.path), ["/home/user/tree/a", "/home/user/tree/a/b", "/home/user/tree/a/b/leaf.txt", "/home/user/tree/top.txt"]);

      assert.equal(await sbx.files.exists("tree/top.txt"), true);
      assert.equal(await sbx.files.exists("tree/none"), false);
      const info = await sbx.files.getInfo("tree/top.txt");
      assert.equal(info.type, "file");
      assert.equal(info.size, 3);
      assert.equal(info.permissions, "-rw-r--r--");
      assert.equal(info.owner, "user");
      assert.ok(info.modifiedTime instanceof Date && Math.abs(info.modifiedTime.getTime() - Date.now()) < 600_000);

      const moved = await sbx.files.rename("tree/top.txt", "tree/moved/top2.txt");
      assert.equal(moved.path, "/home/user/tree/moved/top2.txt");
      assert.equal(await sbx.files.exists("tree/top.txt"), false);
      await sbx.files.remove("tree");
      assert.equal(await sbx.files.exists("tree"), false);
      await assert.rejects(sbx.files.getInfo("tree"), sdk.FileNotFoundError);
    });

    void it("the file API works where guardrails deny rm and mv; the commands still fail", async () => {
      await sbx.files.write("guarded.txt", "g");
      const r = await sbx.commands.run("rm guarded.txt").catch((e: unknown) => e as { exitCode: number; stderr: string });
      assert.notEqual(r.exitCode, 0);
      assert.match(r.stderr, /'rm' denied by guardrails\.commands\.deny/);
      await sbx.files.rename("guarded.txt", "guarded2.txt");
      await sbx.files.remove("guarded2.txt");
      assert.equal(await sbx.files.exists("guarded2.txt"), false);
    });

    void it("watchDir (recursive) reports a file written in a subdirectory", async () => {
      await sbx.files.makeDir("watched/sub");
      const events: { name: string; type: string }[] = [];
      const handle = await sbx.files.watchDir("watched", (e) => void events.push({ name: e.name, type: e.type }), { recursive: true });
      try {
        await sbx.files.write("watched/sub/new.txt", "n");
        // A new directory and a file in it in one upload (parents made, then the file).
        await sbx.files.write("watched/fresh/deeper/f.txt", "f");
        await until(async () => events.some((e) => e.name === "fresh/deeper/f.txt" && e.type === "create"), 30_000, "a create event for fresh/deeper/f.txt");
        await until(async () => events.some((e) => e.name === "sub/new.txt" && e.type === "create"), 30_000, "a create event for sub/new.txt");
        await sbx.files.remove("watched/sub/new.txt");
        await until(async () => events.some((e) => e.name === "sub/new.txt" && e.type === "remove"), 30_000, "a remove event for sub/new.txt");
      } finally {
        await handle.stop();
      }
      await assert.rejects(sbx.files.watchDir("not-there", () => undefined), sdk.FileNotFoundError);
    });

    void it("signed upload and download URLs work without a token; tampered and expired ones are refused", { skip: !signedUrls ? "the E2B sandbox table cannot verify signed URLs yet (E2bSandboxes.envdSignedCaller)" : false }, async () => {
      const up = await sbx.uploadUrl("signed/up.txt", { useSignatureExpiration: 600 });
      const form = new FormData();
      form.append("file", new Blob(["signed upload"]), "up.txt");
      assert.equal((await fetch(up, { method: "POST", body: form })).status, 200);
      const down = await sbx.downloadUrl("signed/up.txt");
      assert.equal(await (await fetch(down)).text(), "signed upload");
      const tampered = new URL(down);
      tampered.searchParams.set("path", "/etc/passwd");
      assert.equal((await fetch(tampered)).status, 401);
      const expired = await sbx.downloadUrl("signed/up.txt", { useSignatureExpiration: -10 });
      assert.equal((await fetch(expired)).status, 401);
      assert.equal((await fetch(new URL(down.replace(/signature=[^&]+/, "signature=v1_x")))).status, 401);
    });
  });
}
