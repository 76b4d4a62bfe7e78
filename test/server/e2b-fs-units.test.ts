/**
 * Unit tests of the filesystem service's pieces: the streaming multipart reader behind
 * `POST /files` (src/server/e2b/fs-multipart.ts), on bodies made by the platform's own FormData
 * (as the SDK sends them) cut into chunks of every size from one byte up, so a boundary split
 * across chunks is seen, then broken bodies; signatures, path resolution, and the entry fields
 * envd spells in Go's way.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PaddockError } from "../../src/core/index.ts";
import { multipartBoundary, multipartParts } from "../../src/server/e2b/fs-multipart.ts";
import { envdSignature, signatureVerifier, signedQuery } from "../../src/server/e2b/fs-signature.ts";
import { E2B_HOME, envdUser, resolveEnvdPath } from "../../src/server/e2b/fs-paths.ts";
import { goModeString, timestampJson } from "../../src/server/e2b/fs-entries.ts";

async function encode(form: FormData): Promise<{ body: Buffer; type: string }> {
  const res = new Response(form);
  return { body: Buffer.from(await res.arrayBuffer()), type: res.headers.get("content-type") ?? "" };
}

async function* chunks(body: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let off = 0; off < body.length; off += size) yield body.subarray(off, off + size);
}

async function parse(body: Buffer, type: string, size: number): Promise<{ name: string; filename: string | null; data: string }[]> {
  const out: { name: string; filename: string | null; data: string }[] = [];
  for await (const part of multipartParts(chunks(body, size), multipartBoundary(type))) {
    const bufs: Buffer[] = [];
    for await (const b of part.body) bufs.push(b);
    out.push({ name: part.headers.name, filename: part.headers.filename, data: Buffer.concat(bufs).toString("latin1") });
  }
  return out;
}

const isInvalid = (err: unknown): boolean => err instanceof PaddockError && err.code === "invalid_argument";

void describe("multipart reader for /files uploads", () => {
  void it("reads every part whatever the chunking, binary data and awkward file names included", async () => {
    const form = new FormData();
    const binary = Buffer.from(Array.from({ length: 700 }, (_, i) => i % 256));
    form.append("file", new Blob(["first\r\n--not-a-boundary\r\n"]), "/home/user/a b.txt");
    form.append("other", "ignored field");
    form.append("file", new Blob([binary]), 'dir/quo"te\nnew.bin');
    form.append("file", new Blob([]), "empty");
    const { body, type } = await encode(form);
    const expected = [
      { name: "file", filename: "/home/user/a b.txt", data: "first\r\n--not-a-boundary\r\n" },
      { name: "other", filename: null, data: "ignored field" },
      { name: "file", filename: 'dir/quo"te\nnew.bin', data: binary.toString("latin1") },
      { name: "file", filename: "empty", data: "" },
    ];
    for (const size of [1, 2, 3, 7, 16, 41, 64, 100, 1000, body.length]) {
      assert.deepEqual(await parse(body, type, size), expected, `chunk size ${size}`);
    }
  });

  void it("refuses broken bodies: no boundary parameter, no delimiter, truncated, no disposition", async () => {
    assert.throws(() => multipartBoundary("multipart/form-data"), isInvalid);
    const type = "multipart/form-data; boundary=XyZ";
    await assert.rejects(parse(Buffer.from("no delimiter here at all"), type, 5), isInvalid);
    await assert.rejects(parse(Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nnever closed'), type, 4), isInvalid);
    await assert.rejects(parse(Buffer.from("--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--\r\n"), type, 4), isInvalid);
    await assert.rejects(parse(Buffer.from(`--XyZ\r\n${"X-Long: y\r\n".repeat(3000)}\r\n`), type, 4096), isInvalid);
  });
});

void describe("signed URLs, paths and entries", () => {
  void it("signatures are E2B's, bound to path, operation, user and expiration", () => {
    const q = { path: "a.txt", username: "user", expiration: null };
    const sig = envdSignature(q, "read", "tok");
    assert.match(sig, /^v1_[A-Za-z0-9+/]{43}$/);
    const parsed = signedQuery({ path: "a.txt", username: "user", signature: sig });
    assert.ok(parsed);
    assert.equal(signatureVerifier(parsed, "read")("tok"), true);
    assert.equal(signatureVerifier(parsed, "write")("tok"), false);
    assert.equal(signatureVerifier(parsed, "read")("other"), false);
    assert.equal(signatureVerifier({ ...parsed, path: "b.txt" }, "read")("tok"), false);
    const exp = { ...q, expiration: 1000 };
    const expSig = envdSignature(exp, "read", "tok");
    assert.equal(signatureVerifier({ ...exp, signature: expSig }, "read", 999)("tok"), true);
    assert.equal(signatureVerifier({ ...exp, signature: expSig }, "read", 1001)("tok"), false);
    assert.equal(signedQuery({}), null);
    assert.throws(() => signedQuery({ signature: "v2_x" }), (e: unknown) => e instanceof PaddockError && e.code === "unauthorized");
    assert.throws(() => signedQuery({ signature: sig, signature_expiration: "soon" }), (e: unknown) => e instanceof PaddockError && e.code === "unauthorized");
  });

  void it("paths resolve as envd resolves them; only the sandbox user is served", () => {
    assert.equal(resolveEnvdPath(""), E2B_HOME);
    assert.equal(resolveEnvdPath("a/../b.txt"), "/home/user/b.txt");
    assert.equal(resolveEnvdPath("~/x"), "/home/user/x");
    assert.equal(resolveEnvdPath("/../../etc/passwd"), "/etc/passwd");
    assert.throws(() => resolveEnvdPath("~root/x"), isInvalid);
    assert.throws(() => resolveEnvdPath("a\0b"), isInvalid);
    assert.throws(() => resolveEnvdPath("/" + "x".repeat(4096)), isInvalid);
    assert.equal(envdUser(undefined), "user");
    assert.equal(envdUser(undefined, { authorization: `Basic ${Buffer.from("user:").toString("base64")}` }), "user");
    assert.throws(() => envdUser("root"), (e: unknown) => e instanceof PaddockError && e.code === "forbidden");
    assert.throws(() => envdUser(undefined, { authorization: `Basic ${Buffer.from("root:").toString("base64")}` }), (e: unknown) => e instanceof PaddockError && e.code === "forbidden");
  });

  void it("permissions read like Go's FileMode.String(); timestamps like protobuf JSON", () => {
    assert.equal(goModeString("file", 0o644), "-rw-r--r--");
    assert.equal(goModeString("dir", 0o755), "drwxr-xr-x");
    assert.equal(goModeString("symlink", 0o777), "Lrwxrwxrwx");
    assert.equal(goModeString("file", 0o4755), "urwxr-xr-x");
    assert.equal(goModeString("dir", 0o1777), "dtrwxrwxrwx");
    assert.equal(timestampJson({ seconds: 0, nanos: 0 }), "1970-01-01T00:00:00Z");
    assert.equal(timestampJson({ seconds: 1, nanos: 5 }), "1970-01-01T00:00:01.000000005Z");
  });
});
