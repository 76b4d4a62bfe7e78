// Reading a file named by a user is bounded by the bytes read, not by stat: /dev/zero, FIFOs and
// pipes have size 0. Both readers are covered: config's loadEnvironmentFile and `paddock env`.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { open, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ConfigError, MAX_FILE_BYTES, loadEnvironmentFile } from "../../src/config/index.ts";
import { cli } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";

const TOO_LARGE = `cannot read the file: it is larger than ${MAX_FILE_BYTES} bytes`;

/** A file of exactly `bytes` bytes that is a valid environment (a name and a comment). */
const fileOf = (bytes: number): string => {
  const head = "name: x\n# ";
  return `${head}${"x".repeat(bytes - head.length - 1)}\n`;
};

let dir: { path: string; remove: () => Promise<void> };
before(async () => {
  dir = await tempDir();
});
after(async () => {
  await dir.remove();
});

const refusal = async (path: string): Promise<string> => {
  const err = await loadEnvironmentFile(path).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof ConfigError, String(err));
  return err.message;
};

void describe("loadEnvironmentFile reads at most 1 MiB", () => {
  void it("/dev/zero (stat size 0, endless) is refused after 1 MiB + 1 bytes", async () => {
    assert.equal(await refusal("/dev/zero"), `zero: ${TOO_LARGE}`);
  });

  void it("a file of exactly 1 MiB loads; one byte more is refused", async () => {
    const ok = join(dir.path, "ok.yml");
    await writeFile(ok, fileOf(MAX_FILE_BYTES));
    assert.equal((await loadEnvironmentFile(ok)).spec.name, "x");
    const big = join(dir.path, "big.yml");
    await writeFile(big, fileOf(MAX_FILE_BYTES + 1));
    assert.equal(await refusal(big), `big.yml: ${TOO_LARGE}`);
  });

  void it("a FIFO: read while its writer writes; an endless writer is cut off", async () => {
    const fifo = join(dir.path, "env.fifo");
    execFileSync("mkfifo", [fifo]);
    // Both opens wait for the other end, so the writer is opened while the load is under way.
    const write = async (data: Buffer, times: number) => {
      const w = await open(fifo, "w");
      try {
        for (let i = 0; i < times; i++) await w.write(data);
      } catch (e) {
        assert.equal((e as NodeJS.ErrnoException).code, "EPIPE"); // the reader stopped
      } finally {
        await w.close();
      }
    };
    const [small] = await Promise.all([loadEnvironmentFile(fifo), write(Buffer.from("name: from-fifo\n"), 1)]);
    assert.equal(small.spec.name, "from-fifo");
    const [message] = await Promise.all([refusal(fifo), write(Buffer.alloc(64 * 1024, "#"), 1000)]);
    assert.equal(message, `env.fifo: ${TOO_LARGE}`);
  });
});

void describe("paddock env validate reads at most 1 MiB", () => {
  // The file is read before the server is asked, so a refusal needs no server; one that is read
  // goes to this stand-in, which answers "valid" and keeps what it was sent.
  const received: { fileName: string; source: string }[] = [];
  let url = "";
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (b: Buffer) => (body += b.toString()));
    req.on("end", () => {
      received.push(JSON.parse(body) as { fileName: string; source: string });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ valid: true, issues: [], spec: null }));
    });
  });
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  void it("/dev/zero is refused", async () => {
    const r = await cli(url, ["env", "validate", "/dev/zero"], { token: "pdk_test" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`cannot read /dev/zero: it is larger than ${MAX_FILE_BYTES} bytes`));
    assert.equal(received.length, 0);
  });

  void it("a file one byte over the limit is refused; one at the limit is sent", async () => {
    const big = join(dir.path, "over.yml");
    await writeFile(big, fileOf(MAX_FILE_BYTES + 1));
    const r = await cli(url, ["env", "validate", big], { token: "pdk_test" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /it is larger than 1048576 bytes/);
    const ok = join(dir.path, "at-limit.yml");
    await writeFile(ok, fileOf(MAX_FILE_BYTES));
    const sent = await cli(url, ["env", "validate", ok], { token: "pdk_test" });
    assert.equal(sent.code, 0, sent.stderr);
    assert.equal(received.at(-1)?.source.length, MAX_FILE_BYTES);
  });

  void it("- reads standard input, bounded the same way", async () => {
    const r = await cli(url, ["env", "validate", "-"], { token: "pdk_test", input: "name: from-stdin\n" });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^stdin: valid/);
    assert.deepEqual(received.at(-1), { fileName: "stdin", source: "name: from-stdin\n" });
    const big = await cli(url, ["env", "validate", "-"], { token: "pdk_test", input: fileOf(MAX_FILE_BYTES + 1) });
    assert.notEqual(big.code, 0);
    assert.match(big.stderr, /cannot read standard input: it is larger than 1048576 bytes/);
  });
});
