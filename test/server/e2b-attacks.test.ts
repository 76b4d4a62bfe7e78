/**
 * Attacks on the E2B front end's access control, through its real routes (raw HTTP, as the SDK
 * or a hostile client sends them) against a real server and real sandboxes:
 * - cross-sandbox: sandbox A's envd access token used on sandbox B (files, process, watch,
 *   signed URLs), by header and by Host;
 * - cross-principal: a reader's token (from connect) used to write or exec; a principal without
 *   access to the environment, who gets the same 404 as for an unknown sandbox (no existence
 *   oracle); tokens after kill, pause and resume; a disabled principal's and a revoked token;
 * - signed URLs forged, replayed for another path, operation, user or sandbox, expired;
 * - paths: `..`, absolute paths outside home, symlinks planted by the sandbox itself (to /etc,
 *   /proc/1/root, /run/paddock), names with tabs and newlines, NUL bytes, very long paths;
 * - audit: every change and every refusal recorded with the right actor.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { envdSignature } from "../../src/server/e2b/fs-signature.ts";
import { testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";
import { envelope, envelopes, type Json } from "../helpers/connect.ts";

const ENV = `name: atk
rbac:
  engineering: [read, write]
  support: [read]
`;

interface Sandbox {
  id: string;
  token: string;
  session: string;
}

void describe("E2B front end attacks: tokens, principals, signed URLs, paths", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let admin: string;
  let cleanup: () => Promise<void>;
  const keys: Record<string, string> = {};
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown): void => void unhandled.push(err);

  before(async () => {
    process.on("unhandledRejection", onUnhandled);
    const t = await testServer({ e2bPort: 0 });
    ({ server, client, cleanup } = t);
    admin = t.token;
    await client.environments.apply("runtime.yml", ENV);
    keys.eng = (await client.principals.create({ name: "atk-eng", role: "engineering" })).token;
    keys.sup = (await client.principals.create({ name: "atk-sup", role: "support" })).token;
    keys.out = (await client.principals.create({ name: "atk-out", role: "marketing" })).token;
    keys.gone = (await client.principals.create({ name: "atk-gone", role: "engineering" })).token;
    keys.eng2 = (await client.principals.create({ name: "atk-eng2", role: "engineering" })).token;
  });
  after(async () => {
    process.off("unhandledRejection", onUnhandled);
    await cleanup?.();
  });

  const api = async (method: string, path: string, key: string, body?: unknown) => {
    const res = await fetch(`${server.e2bUrl}${path}`, {
      method, headers: { "x-api-key": key, ...(body !== undefined ? { "content-type": "application/json" } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json().catch(() => null)) as Json | null };
  };
  const create = async (key = keys.eng ?? ""): Promise<Sandbox> => {
    const r = await api("POST", "/v2/sandboxes", key, { templateID: "atk", timeout: 300 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = String(r.body?.sandboxID);
    return { id, token: String(r.body?.envdAccessToken), session: (await server.cp.store.getE2bSandbox(id))?.sessionId ?? "" };
  };
  const kill = async (s: Sandbox) => api("DELETE", `/sandboxes/${s.id}`, admin);
  const as = (s: { id: string }, token: string, extra: Record<string, string> = {}): Record<string, string> => ({ "e2b-sandbox-id": s.id, "x-access-token": token, ...extra });
  const rpc = async (method: string, msg: unknown, headers: Record<string, string>): Promise<{ status: number; body: Json }> => {
    const res = await fetch(`${server.e2bUrl}/${method}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(msg) });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const fsCall = async (method: string, msg: unknown, headers: Record<string, string>) => rpc(`filesystem.Filesystem/${method}`, msg, headers);
  /** A server-streaming call that is expected to end by itself (refused, or a short command). */
  const streamCall = async (path: string, msg: unknown, headers: Record<string, string>): Promise<{ status: number; messages: Json[]; end: Json | null }> => {
    const res = await fetch(`${server.e2bUrl}/${path}`, { method: "POST", headers: { "content-type": "application/connect+json", ...headers }, body: envelope(0, msg) });
    if (res.headers.get("content-type")?.startsWith("application/json")) return { status: res.status, messages: [], end: { error: await res.json() } };
    const messages: Json[] = [];
    let end: Json | null = null;
    for await (const e of envelopes(res.body as ReadableStream<Uint8Array>)) {
      if (e.end) end = e.msg;
      else messages.push(e.msg);
    }
    return { status: res.status, messages, end };
  };
  const errorCode = (r: { end: Json | null }): unknown => (r.end?.error as Json | undefined)?.code;
  const upload = async (path: string, data: string, headers: Record<string, string>) =>
    fetch(`${server.e2bUrl}/files?${new URLSearchParams({ path })}`, { method: "POST", headers: { "content-type": "application/octet-stream", ...headers }, body: data });
  const download = async (path: string, headers: Record<string, string>) => fetch(`${server.e2bUrl}/files?${new URLSearchParams({ path })}`, { headers });
  /** fetch cannot set Host; the SDK's `<port>-<id>.<domain>` form needs it. */
  const statusByHost = (path: string, host: string, token: string) =>
    new Promise<number>((resolve, reject) => {
      const req = request(`${server.e2bUrl}${path}`, { headers: { host, "x-access-token": token } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
  /** Run a shell line inside the sandbox as its own user (what an agent in it could do). */
  const inside = async (s: Sandbox, line: string) => {
    const r = await client.sessions.run(s.session, { argv: ["bash", "-c", line] });
    assert.equal(r.exitCode, 0, `${line}: ${r.stderr}`);
    return r.stdout;
  };

  void it("sandbox A's access token does nothing on sandbox B: files, process, watch, signed URLs, by header or Host", async () => {
    const a = await create();
    const b = await create();
    await inside(b, "echo secret-of-b > ~/b.txt");
    const onB = as(b, a.token);
    assert.equal((await fsCall("Stat", { path: "~/b.txt" }, onB)).status, 401);
    assert.equal((await fsCall("ListDir", { path: "~" }, onB)).status, 401);
    assert.equal((await fsCall("MakeDir", { path: "~/from-a" }, onB)).status, 401);
    assert.equal((await fsCall("Remove", { path: "~/b.txt" }, onB)).status, 401);
    assert.equal((await fsCall("Move", { source: "~/b.txt", destination: "~/c.txt" }, onB)).status, 401);
    assert.equal((await download("~/b.txt", onB)).status, 401);
    assert.equal((await upload("~/from-a.txt", "x", onB)).status, 401);
    // The Host form (`<port>-<id>.<domain>`) names B just as well, and is refused the same way.
    assert.equal(await statusByHost(`/files?path=${encodeURIComponent("~/b.txt")}`, `49983-${b.id}.e2b.app`, a.token), 401);
    assert.equal(await statusByHost(`/files?path=${encodeURIComponent("~")}`, `49983-${a.id}.e2b.app`, a.token), 400, "the Host form does reach A (a directory is not downloadable)");
    assert.equal(errorCode(await streamCall("filesystem.Filesystem/WatchDir", { path: "~" }, onB)), "unauthenticated");
    assert.equal(errorCode(await streamCall("process.Process/Start", { process: { cmd: "/bin/bash", args: ["-c", "touch ~/pwned"] } }, onB)), "unauthenticated");
    assert.equal((await rpc("process.Process/List", {}, onB)).status, 401);
    assert.equal((await rpc("process.Process/SendSignal", { process: { pid: 1 }, signal: "SIGNAL_SIGKILL" }, onB)).status, 401);
    // A URL signed with A's token, sent to B (header) or naming B's file: no token of B verifies it.
    const sig = (path: string, op: "read" | "write") => envdSignature({ path, username: "user", expiration: null }, op, a.token);
    const signedOnB = await fetch(`${server.e2bUrl}/files?${new URLSearchParams({ path: "~/b.txt", username: "user", signature: sig("~/b.txt", "read") })}`, { headers: { "e2b-sandbox-id": b.id } });
    assert.equal(signedOnB.status, 401);
    const signedUpOnB = await fetch(`${server.e2bUrl}/files?${new URLSearchParams({ path: "~/from-a.txt", username: "user", signature: sig("~/from-a.txt", "write") })}`, {
      method: "POST", headers: { "e2b-sandbox-id": b.id, "content-type": "application/octet-stream" }, body: "x",
    });
    assert.equal(signedUpOnB.status, 401);
    // B is untouched; A's token still works on A.
    assert.equal((await inside(b, "cat ~/b.txt; ls ~")).trim(), "secret-of-b\nb.txt");
    assert.equal((await fsCall("Stat", { path: "~" }, as(a, a.token))).status, 200);
    const denied = await server.cp.store.listAudit({ limit: 5000 });
    assert.ok(denied.some((r) => r.action === "api.e2b.files.upload" && r.decision === "denied" && r.target === b.id), "the refused upload is audited");
    for (const s of [a, b]) assert.equal((await kill(s)).status, 204);
  });

  void it("a reader's token (from connect) reads but cannot write, exec, signal or sign a write URL", async () => {
    const s = await create();
    await inside(s, "echo hello > ~/r.txt");
    const c = await api("POST", `/v2/sandboxes/${s.id}/connect`, keys.sup ?? "", { timeout: 60 });
    assert.equal(c.status, 200, JSON.stringify(c.body));
    const reader = String(c.body?.envdAccessToken);
    const h = as(s, reader);
    assert.equal((await fsCall("Stat", { path: "~/r.txt" }, h)).status, 200);
    assert.equal(await (await download("~/r.txt", h)).text(), "hello\n");
    assert.equal((await upload("~/w.txt", "x", h)).status, 403);
    for (const [m, msg] of [["MakeDir", { path: "~/d" }], ["Remove", { path: "~/r.txt" }], ["Move", { source: "~/r.txt", destination: "~/m.txt" }]] as const) {
      const r = await fsCall(m, msg, h);
      assert.equal(r.status, 403, m);
      assert.equal(r.body.code, "permission_denied", m);
    }
    assert.equal(errorCode(await streamCall("process.Process/Start", { process: { cmd: "/bin/bash", args: ["-c", "touch ~/pwned"] } }, h)), "permission_denied");
    assert.equal((await rpc("process.Process/SendSignal", { process: { pid: 1 }, signal: "SIGNAL_SIGKILL" }, h)).status, 403);
    assert.equal((await rpc("process.Process/SendInput", { process: { pid: 1 }, input: { stdin: "eA==" } }, h)).status, 403);
    const signature = envdSignature({ path: "~/w.txt", username: "user", expiration: null }, "write", reader);
    const signedWrite = await fetch(`${server.e2bUrl}/files?${new URLSearchParams({ path: "~/w.txt", username: "user", signature })}`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: "x" });
    assert.equal(signedWrite.status, 403, "a signed URL carries its signer's rights, no more");
    assert.equal((await inside(s, "ls ~")).trim(), "r.txt", "nothing was written");
    // The reader cannot change the sandbox's life either: not even by connecting with a longer timeout.
    const endAt = (await api("GET", `/sandboxes/${s.id}`, keys.sup ?? "")).body?.endAt;
    assert.equal((await api("POST", `/v2/sandboxes/${s.id}/connect`, keys.sup ?? "", { timeout: 3000 })).status, 403, "extending by connect needs write");
    assert.equal((await api("GET", `/sandboxes/${s.id}`, keys.sup ?? "")).body?.endAt, endAt);
    assert.equal((await api("POST", `/v2/sandboxes/${s.id}/connect`, keys.eng ?? "", { timeout: 3000 })).status, 200, "a writer may");
    for (const [method, path, body] of [["DELETE", `/sandboxes/${s.id}`, undefined], ["POST", `/sandboxes/${s.id}/pause`, {}], ["POST", `/sandboxes/${s.id}/timeout`, { timeout: 10 }]] as const) {
      assert.equal((await api(method, path, keys.sup ?? "", body)).status, 403, `${method} ${path}`);
    }
    const audit = await server.cp.store.listAudit({ limit: 5000 });
    for (const op of ["files.upload", "files.make_dir", "files.remove", "files.move", "process.start", "killSandbox", "pauseSandbox", "setSandboxTimeout", "connectSandbox"]) {
      assert.ok(audit.some((r) => r.action === `api.e2b.${op}` && r.actor === "atk-sup" && r.decision === "denied"), `refused ${op} audited as the reader`);
    }
    assert.equal((await kill(s)).status, 204);
  });

  void it("a principal without access gets the same 404 as for an unknown sandbox: no existence oracle", async () => {
    const s = await create();
    const unknown = "zzzzzzzzzzzzzzzzzzzz";
    const calls = (id: string) =>
      [
        ["GET", `/sandboxes/${id}`, undefined],
        ["DELETE", `/sandboxes/${id}`, undefined],
        ["POST", `/sandboxes/${id}/pause`, {}],
        ["POST", `/sandboxes/${id}/timeout`, { timeout: 10 }],
        ["POST", `/sandboxes/${id}/connect`, { timeout: 10 }],
        ["POST", `/v2/sandboxes/${id}/connect`, { timeout: 10 }],
        ["POST", `/sandboxes/${id}/resume`, { timeout: 10 }],
      ] as const;
    const unknownCalls = calls(unknown);
    for (const [i, [method, path, body]] of calls(s.id).entries()) {
      const real = await api(method, path, keys.out ?? "", body);
      const none = await api(method, unknownCalls[i]?.[1] ?? "", keys.out ?? "", body);
      assert.equal(real.status, 404, `${method} ${path}: ${JSON.stringify(real.body)}`);
      assert.equal(none.status, 404);
      assert.equal(String(real.body?.message).replace(s.id, "ID"), String(none.body?.message).replace(unknown, "ID"), "the same words for both");
    }
    const listed = await api("GET", "/v2/sandboxes", keys.out ?? "");
    assert.deepEqual(listed.body, [], "nothing listed");
    // The envd side: a Paddock token of the outsider as the access token.
    const envd = await fsCall("Stat", { path: "~" }, as(s, keys.out ?? ""));
    const envdNone = await fsCall("Stat", { path: "~" }, as({ id: unknown }, keys.out ?? ""));
    assert.equal(envd.status, 404, JSON.stringify(envd.body));
    assert.equal(envdNone.status, 404);
    // Paused, it is still the same 404 for the outsider (its state is not told before access is).
    assert.equal((await api("POST", `/sandboxes/${s.id}/pause`, keys.eng ?? "", {})).status, 204);
    assert.equal((await fsCall("Stat", { path: "~" }, as(s, keys.out ?? ""))).status, 404);
    assert.equal((await api("POST", `/sandboxes/${s.id}/connect`, keys.out ?? "", {})).status, 404);
    assert.equal((await api("POST", `/sandboxes/${s.id}/connect`, keys.eng ?? "", {})).status, 201);
    // Running again, and the attempts are in the audit log as the outsider's, denied.
    assert.equal((await api("GET", `/sandboxes/${s.id}`, keys.eng ?? "")).body?.state, "running");
    const audit = await server.cp.store.listAudit({ limit: 5000 });
    for (const op of ["getSandbox", "killSandbox", "pauseSandbox", "setSandboxTimeout", "connectSandbox"]) {
      assert.ok(audit.some((r) => r.action === `api.e2b.${op}` && r.actor === "atk-out" && r.decision === "denied" && r.target === s.id), `denied ${op} audited`);
    }
    assert.equal((await kill(s)).status, 204);
  });

  void it("tokens: gone after kill; refused while paused; the sandbox's tokens work again after resume; disabled and revoked keys stop", async () => {
    const s = await create();
    const h = as(s, s.token);
    // An envd access token is not an API key (its reach is one sandbox's envd, not the control API).
    assert.equal((await api("GET", `/sandboxes/${s.id}`, s.token)).status, 401);
    assert.equal((await api("POST", "/v2/sandboxes", s.token, { templateID: "atk" })).status, 401);
    assert.equal((await upload("~/keep.txt", "kept", h)).status, 200);
    assert.equal((await api("POST", `/sandboxes/${s.id}/pause`, keys.eng ?? "", {})).status, 204);
    const paused = await fsCall("Stat", { path: "~/keep.txt" }, h);
    assert.equal(paused.body.code, "failed_precondition");
    assert.match(String(paused.body.message), /paused/);
    assert.equal((await download("~/keep.txt", h)).status, 409);
    assert.equal(errorCode(await streamCall("process.Process/Start", { process: { cmd: "/bin/true" } }, h)), "failed_precondition");
    // Resume: the same sandbox (id), a new session; its tokens are the sandbox's and still work (docs/e2b.md).
    assert.equal((await api("POST", `/sandboxes/${s.id}/connect`, keys.eng ?? "", { timeout: 60 })).status, 201);
    assert.equal(await (await download("~/keep.txt", h)).text(), "kept");
    // Kill: every token of the sandbox stops, signed URLs too.
    const signature = envdSignature({ path: "~/keep.txt", username: "user", expiration: null }, "read", s.token);
    assert.equal((await kill(s)).status, 204);
    assert.equal((await fsCall("Stat", { path: "~" }, h)).status, 401);
    assert.equal((await download("~/keep.txt", h)).status, 401);
    assert.equal((await fetch(`${server.e2bUrl}/files?${new URLSearchParams({ path: "~/keep.txt", username: "user", signature })}`)).status, 401);
    assert.equal((await api("GET", `/sandboxes/${s.id}`, keys.eng ?? "")).status, 404);

    // A disabled principal: the API key, its envd tokens and its Paddock token as access token.
    const g = await create(keys.gone ?? "");
    await client.principals.disable("atk-gone");
    assert.equal((await api("GET", `/sandboxes/${g.id}`, keys.gone ?? "")).status, 401);
    assert.equal((await api("POST", "/v2/sandboxes", keys.gone ?? "", { templateID: "atk" })).status, 401);
    assert.equal((await fsCall("Stat", { path: "~" }, as(g, g.token))).status, 401);
    assert.equal((await fsCall("Stat", { path: "~" }, as(g, keys.gone ?? ""))).status, 401);
    // A watch opened before the principal was disabled ends at its next keepalive.
    const w = await create(keys.eng2 ?? "");
    const ac = new AbortController();
    const res = await fetch(`${server.e2bUrl}/filesystem.Filesystem/WatchDir`, {
      method: "POST", headers: { "content-type": "application/connect+json", "keepalive-ping-interval": "1", ...as(w, w.token) }, body: envelope(0, { path: "~" }), signal: ac.signal,
    });
    let ended: Json | null = null;
    const watching = (async () => {
      for await (const e of envelopes(res.body as ReadableStream<Uint8Array>)) if (e.end) ended = e.msg;
    })().catch(() => undefined);
    // So does a process's Start stream (the process itself goes on, as envd's do).
    const started = await fetch(`${server.e2bUrl}/process.Process/Start`, {
      method: "POST", headers: { "content-type": "application/connect+json", "keepalive-ping-interval": "1", ...as(w, w.token) },
      body: envelope(0, { process: { cmd: "/bin/bash", args: ["-l", "-c", "sleep 60"] } }), signal: ac.signal,
    });
    assert.equal(started.status, 200);
    let processEnded: Json | null = null;
    const following = (async () => {
      for await (const e of envelopes(started.body as ReadableStream<Uint8Array>)) if (e.end) processEnded = e.msg;
    })().catch(() => undefined);
    await client.principals.disable("atk-eng2");
    await until(async () => ended, 30_000, "the disabled principal's watch to end");
    assert.equal(((ended as Json | null)?.error as Json | undefined)?.code, "unauthenticated");
    await until(async () => processEnded, 30_000, "the disabled principal's process stream to end");
    assert.equal(((processEnded as Json | null)?.error as Json | undefined)?.code, "unauthenticated");
    ac.abort();
    await watching;
    await following;
    assert.equal((await kill(w)).status, 204);
    // A revoked token.
    const issued = await client.principals.issueToken("atk-eng", "to revoke");
    assert.equal((await api("GET", `/sandboxes/${g.id}`, issued.token)).status, 200);
    const id = (await client.principals.tokens("atk-eng")).find((t) => t.label === "to revoke")?.id ?? "";
    await client.principals.revokeToken("atk-eng", id);
    assert.equal((await api("GET", `/sandboxes/${g.id}`, issued.token)).status, 401);
    assert.equal((await fsCall("Stat", { path: "~" }, as(g, issued.token))).status, 401);
    assert.equal((await kill(g)).status, 204);
  });

  void it("signed URLs: forged, replayed for another path, operation, user or sandbox, expired, re-dated: all 401", async () => {
    const s = await create();
    const other = await create();
    await inside(s, "echo signed > ~/s.txt; echo private > ~/p.txt");
    const now = Math.floor(Date.now() / 1000);
    const url = (path: string, op: "read" | "write", expiration: number | null, token = s.token, over: Record<string, string> = {}) => {
      const signature = envdSignature({ path, username: "user", expiration }, op, token);
      return `${server.e2bUrl}/files?${new URLSearchParams({ path, username: "user", signature, ...(expiration === null ? {} : { signature_expiration: String(expiration) }), ...over })}`;
    };
    const status = async (u: string, init?: RequestInit) => (await fetch(u, init)).status;
    assert.equal(await (await fetch(url("~/s.txt", "read", now + 60))).text(), "signed\n");
    assert.equal(await status(url("~/s.txt", "read", null, s.token, { path: "~/p.txt" })), 401, "another path");
    assert.equal(await status(url("~/s.txt", "read", null, s.token, { path: "/home/user/s.txt" })), 401, "the same file spelled otherwise is another path");
    assert.equal(await status(url("~/s.txt", "write", null)), 401, "a write signature does not read");
    assert.equal(await status(url("~/s.txt", "read", null), { method: "POST", body: "x", headers: { "content-type": "application/octet-stream" } }), 401, "a read signature does not write");
    assert.equal(await status(url("~/s.txt", "read", null, s.token, { username: "root" })), 401, "another user");
    assert.equal(await status(url("~/s.txt", "read", now - 1)), 401, "expired");
    assert.equal(await status(url("~/s.txt", "read", now - 1, s.token, { signature_expiration: String(now + 3600) })), 401, "re-dated");
    assert.equal(await status(url("~/s.txt", "read", now + 60, s.token, { signature_expiration: "" })), 401, "expiration dropped");
    assert.equal(await status(`${server.e2bUrl}/files?${new URLSearchParams({ path: "~/s.txt", signature: `v1_${"A".repeat(43)}` })}`), 401, "forged");
    assert.equal(await status(url("~/s.txt", "read", null, other.token), { headers: { "e2b-sandbox-id": s.id } }), 401, "signed by another sandbox's token");
    assert.equal(await status(url("~/s.txt", "read", null, keys.eng ?? "")), 401, "signed with a Paddock API key: not an envd token");
    // A valid signature beside a wrong access token is refused, as envd does.
    assert.equal(await status(url("~/s.txt", "read", null), { headers: { "x-access-token": other.token, "e2b-sandbox-id": s.id } }), 401);
    // Without expiration, a signature lives as long as its token: a later connect adds a token
    // and does not revoke the first (documented: tokens end with the sandbox or the principal).
    assert.equal((await api("POST", `/sandboxes/${s.id}/connect`, keys.eng ?? "", {})).status, 200);
    assert.equal(await status(url("~/s.txt", "read", null)), 200);
    const audit = await server.cp.store.listAudit({ limit: 5000 });
    assert.ok(audit.some((r) => r.action === "api.e2b.files.download" && r.actor === "anonymous" && r.decision === "denied" && (r.detail as Json | null)?.reason === "signed URL"));
    assert.ok(audit.some((r) => r.action === "api.e2b.files.download" && r.actor === "atk-eng" && r.decision === "allowed" && r.target === s.id));
    for (const x of [s, other]) assert.equal((await kill(x)).status, 204);
  });

  void it("paths: .., absolute paths outside home, NUL, very long, names with tabs and newlines", async () => {
    const s = await create();
    const h = as(s, s.token);
    // `..` folds to the sandbox's own root; writes there are the kernel's to refuse, as the user.
    for (const path of ["../../etc/evil", "/etc/evil", "~/../../usr/bin/evil", "/proc/sys/kernel/evil"]) {
      const r = await upload(path, "x", h);
      assert.ok(r.status === 403 || r.status === 404, `${path}: ${r.status}`);
      assert.match(String(((await r.json()) as Json).message), /permission denied|not found|no such/i);
    }
    assert.equal((await fsCall("MakeDir", { path: "/etc/evil" }, h)).status, 403);
    assert.equal((await fsCall("Remove", { path: "/etc/passwd" }, h)).status, 403);
    assert.equal((await fsCall("Move", { source: "/etc/passwd", destination: "~/passwd" }, h)).status, 403);
    assert.equal((await inside(s, "test -f /etc/passwd && test ! -e /etc/evil && echo ok")).trim(), "ok");
    // NUL bytes and over-long paths are refused before anything reaches the sandbox.
    for (const path of ["~/a\u0000b", `~/${"x".repeat(5000)}`]) {
      assert.equal((await fsCall("Stat", { path }, h)).body.code, "invalid_argument");
      assert.equal((await upload(path, "x", h)).status, 400);
    }
    const longComponent = await fsCall("MakeDir", { path: `~/${"y".repeat(300)}` }, h);
    assert.equal(longComponent.status, 400, JSON.stringify(longComponent.body));
    // Names the agent's old line format could confuse: each one comes back as exactly one entry.
    const names = ["tab\there", "nl\nfake\tf\t644\t0\t0\tinjected", "cr\r\n", " lead", "back\\slash", "quote\"x", "uni-ü-😀"];
    assert.equal((await fsCall("MakeDir", { path: "~/names" }, h)).status, 200);
    for (const name of names) assert.equal((await upload(`~/names/${name}`, name, h)).status, 200, JSON.stringify(name));
    const listed = await fsCall("ListDir", { path: "~/names" }, h);
    assert.deepEqual((listed.body.entries as Json[]).map((e) => e.name).sort(), [...names].sort());
    for (const name of names) assert.equal(await (await download(`~/names/${name}`, h)).text(), name);
    // As the sandbox sees them (each name once, NUL-separated).
    assert.equal((await inside(s, "find ~/names -mindepth 1 -print0 | tr -cd '\\0' | wc -c")).trim(), String(names.length));
    assert.equal((await kill(s)).status, 204);
  });

  void it("symlinks planted by the sandbox: read, write, rename, remove and watch through them stay inside the sandbox, as its user", async () => {
    const s = await create();
    const h = as(s, s.token);
    await inside(s, [
      "ln -s /etc ~/etc-link", "ln -s /proc/1/root ~/root-link", "ln -s /run/paddock ~/run-link", "ln -s / ~/slash",
      "echo mine > ~/target.txt", "ln -s ~/target.txt ~/to-target", "ln -s /etc/passwd ~/to-passwd",
      "mkdir -p ~/tree/sub ~/keep && echo keep > ~/keep/k.txt && ln -s ~/keep ~/tree/sub/keep-link",
    ].join(" && "));
    const before = await inside(s, "sha256sum /etc/passwd /etc/group");
    // Writing through a directory link into the sandbox's system directories: refused by the kernel as `user`.
    for (const path of ["~/etc-link/evil", "~/slash/etc/evil", "~/root-link/etc/evil", "~/run-link/evil", "~/slash/proc/1/root/etc/evil"]) {
      const r = await upload(path, "x", h);
      // 400: a dangling link in the way of a directory to create (ELOOP).
      assert.ok([400, 403, 404].includes(r.status), `${path}: ${r.status}`);
      const text = await r.text();
      assert.match(text, /permission denied|not found|no such|symbolic links|not a directory/i, `${path}: ${text}`);
    }
    // Reading through /proc/1/root (the sandbox's init, root's) is refused; /run/paddock holds nothing of the host.
    assert.ok([403, 404].includes((await download("~/root-link/etc/hostname", h)).status));
    const run = await fsCall("ListDir", { path: "~/run-link" }, h);
    assert.ok([200, 400, 403, 404].includes(run.status), JSON.stringify(run.body));
    // A final link is never written through: the upload replaces the link or is refused; the target keeps its bytes.
    const overLink = await upload("~/to-target", "replaced", h);
    assert.ok([200, 400, 403].includes(overLink.status), String(overLink.status));
    assert.equal((await inside(s, "cat ~/target.txt")).trim(), "mine");
    const overPasswd = await upload("~/to-passwd", "root::0:0::/root:/bin/sh", h);
    assert.ok([200, 400, 403].includes(overPasswd.status), String(overPasswd.status));
    // Move and Remove act on the link itself.
    assert.equal((await fsCall("Move", { source: "~/etc-link", destination: "~/moved-link" }, h)).status, 200);
    assert.equal((await fsCall("Remove", { path: "~/moved-link" }, h)).status, 200);
    assert.equal((await fsCall("Remove", { path: "~/tree" }, h)).status, 200, "a tree with a link to a directory inside");
    assert.equal((await inside(s, "cat ~/keep/k.txt")).trim(), "keep", "remove never descends through a link");
    assert.equal((await fsCall("Move", { source: "~/target.txt", destination: "~/slash/etc/target.txt" }, h)).status, 403);
    assert.equal((await fsCall("Remove", { path: "~/slash/etc/passwd" }, h)).status, 403);
    assert.equal(await inside(s, "sha256sum /etc/passwd /etc/group"), before, "the sandbox's system files are untouched");
    // ListDir does not enter linked directories; the link shows as one entry.
    const tree = await fsCall("ListDir", { path: "~", depth: 4 }, h);
    const paths = (tree.body.entries as Json[]).map((e) => String(e.path));
    assert.ok(paths.includes("/home/user/slash"));
    assert.ok(!paths.some((p) => p.startsWith("/home/user/slash/") || p.startsWith("/home/user/root-link/")), paths.join(","));
    // Watching through a link watches the sandbox's own directory, as its user: events are the sandbox's.
    await inside(s, "mkdir -p ~/w && ln -s ~/w ~/w-link");
    const ac = new AbortController();
    const res = await fetch(`${server.e2bUrl}/filesystem.Filesystem/WatchDir`, { method: "POST", headers: { "content-type": "application/connect+json", ...h }, body: envelope(0, { path: "~/w-link" }), signal: ac.signal });
    const events: Json[] = [];
    const reading = (async () => {
      for await (const e of envelopes(res.body as ReadableStream<Uint8Array>)) {
        events.push(e.msg);
        if (e.end) return;
      }
    })().catch(() => undefined);
    await until(async () => events.some((e) => e.start !== undefined), 30_000, "the watch to start");
    await inside(s, "echo x > ~/w/seen.txt");
    await until(async () => events.some((e) => (e.filesystem as Json | undefined)?.name === "seen.txt"), 30_000, "the event through the link");
    ac.abort();
    await reading;
    assert.equal((await kill(s)).status, 204);
  });

  void it("audit: each change through the front end names its actor; refusals too", async () => {
    const s = await create();
    const h = as(s, s.token);
    assert.equal((await api("POST", `/sandboxes/${s.id}/timeout`, keys.eng ?? "", { timeout: 120 })).status, 204);
    assert.equal((await upload("~/a.txt", "a", h)).status, 200);
    assert.equal((await fsCall("MakeDir", { path: "~/d" }, h)).status, 200);
    assert.equal((await fsCall("Move", { source: "~/a.txt", destination: "~/d/a.txt" }, h)).status, 200);
    assert.equal((await fsCall("Remove", { path: "~/d" }, h)).status, 200);
    const run = await streamCall("process.Process/Start", { process: { cmd: "/bin/bash", args: ["-c", "true"] } }, h);
    assert.equal(run.end?.error, undefined, JSON.stringify(run.end));
    assert.equal((await api("POST", `/sandboxes/${s.id}/pause`, keys.eng ?? "", {})).status, 204);
    assert.equal((await api("POST", `/sandboxes/${s.id}/connect`, keys.eng ?? "", {})).status, 201);
    assert.equal((await api("DELETE", `/sandboxes/${s.id}`, keys.eng ?? "")).status, 204);
    assert.equal((await api("GET", "/v2/sandboxes", "not-a-token")).status, 401);
    const audit = await server.cp.store.listAudit({ limit: 5000 });
    const mine = (action: string) => audit.filter((r) => r.action === `api.e2b.${action}` && r.decision === "allowed" && r.actor === "atk-eng");
    for (const op of ["createSandbox", "setSandboxTimeout", "files.upload", "files.make_dir", "files.move", "files.remove", "process.start", "pauseSandbox", "connectSandbox", "killSandbox"]) {
      assert.ok(mine(op).length > 0, `${op} audited as atk-eng`);
    }
    assert.ok(audit.some((r) => r.action === "api.e2b.listSandboxes" && r.actor === "anonymous" && r.decision === "denied"));
    // The command itself went through the command gate, audited as the same principal.
    assert.ok(audit.some((r) => r.actor === "atk-eng" && r.action !== "api.e2b.process.start" && /exec|command/.test(r.action) && r.sessionId !== null), "the command is audited by the gate");
    assert.deepEqual(unhandled, [], "no unhandled rejections");
  });
});
