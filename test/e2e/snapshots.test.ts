/**
 * Snapshots end to end, with real sandboxes, the real gateway and local fake upstreams: create,
 * list, show and remove through the CLI; start sessions from one; RBAC and audit of each step; a
 * snapshot in use cannot be removed; sessions from a snapshot are independent; and the placeholder
 * design of docs/snapshots.md attacked: a placeholder a snapshot's files hold works in sessions
 * started from it and nowhere else, and no secret value is stored with a snapshot.
 */
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PaddockClient } from "../../src/client/index.ts";
import { runCommand } from "../../src/core/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { startUpstream, UPSTREAM_NAMES, type Upstream } from "../helpers/upstream.ts";
import { until } from "../helpers/wait.ts";

const UPSTREAM_IP = "127.0.55.1";
const STRIPE = "sk_live_51SnapshotSecretValue0123456789abc";
const OTHER_STRIPE = "sk_live_51OtherEnvironmentSecret987654321";

const ENV = `name: snappy
secrets: [STRIPE_API_KEY]
guardrails:
  network:
    allow: [api.stripe.com, github.com]
    deny: ["*"]
install:
  - echo from-template > /workspace/template.txt
rbac:
  engineering: [read, write]
  support: [read]
`;

const OTHER = `name: other
secrets: [STRIPE_API_KEY]
guardrails:
  network:
    allow: [api.stripe.com]
    deny: ["*"]
rbac:
  engineering: [read, write]
`;

void describe("snapshots: CLI, RBAC, audit, independence and placeholders", () => {
  let server: RunningServer;
  let admin: PaddockClient;
  let home: string;
  let url: string;
  let cleanup: () => Promise<void>;
  let up: Upstream;
  const tokens: Record<string, string> = {};
  let eng: PaddockClient;
  let source: string;
  const lastTo = (host: string) => [...up.received].reverse().find((r) => r.host.split(":")[0] === host);
  const sh = (c: PaddockClient, id: string, script: string) => c.sessions.run(id, { argv: ["sh", "-c", script], timeoutMs: 30_000 });

  before(async () => {
    up = await startUpstream(UPSTREAM_IP, { gitToken: "unused-token-0123456789" });
    const t = await testServer({
      gateway: { upstream: { extraCaPem: [up.caPem], hosts: Object.fromEntries(UPSTREAM_NAMES.map((n) => [n, [UPSTREAM_IP]])), trustedAddresses: [UPSTREAM_IP] } },
    });
    ({ server, client: admin, home, cleanup } = t);
    url = server.url;
    await admin.secrets.set("STRIPE_API_KEY", STRIPE, { environment: "snappy" });
    await admin.secrets.set("STRIPE_API_KEY", OTHER_STRIPE, { environment: "other" });
    await admin.environments.apply("runtime.yml", ENV);
    await admin.environments.apply("runtime.yml", OTHER);
    tokens.eng = (await admin.principals.create({ name: "eng", role: "engineering" })).token;
    tokens.sup = (await admin.principals.create({ name: "sup", role: "support" })).token;
    tokens.nobody = (await admin.principals.create({ name: "nobody", role: "marketing" })).token;
    eng = new PaddockClient({ url, token: tokens.eng });
    source = (await eng.sessions.start("snappy")).id;
  });
  after(async () => {
    await cleanup?.();
    await up?.close();
  });

  void it("snapshot create/list/show/rm through the CLI; start --from; a snapshot in use cannot be removed", async () => {
    await eng.files.write(source, "/workspace/state.txt", Buffer.from("v1"));
    const created = await cli(url, ["snapshot", "create", source, "--name", "base-1"], { token: tokens.eng });
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^snap-[0-9a-f]{16}\n$/);
    const id = created.stdout.trim();
    await eng.files.write(source, "/workspace/state.txt", Buffer.from("v2"));

    const show = await cli(url, ["snapshot", "show", "base-1", "--json"], { token: tokens.eng });
    assert.equal(show.code, 0, show.stderr);
    const snap = JSON.parse(show.stdout) as { id: string; environment: string; version: number; sourceSession: string; frozenMs: number; users: string[] };
    assert.equal(snap.id, id);
    assert.equal(snap.environment, "snappy");
    assert.equal(snap.sourceSession, source);
    assert.ok(snap.frozenMs >= 0 && snap.frozenMs < 1000, `frozen for ${snap.frozenMs} ms`);
    assert.deepEqual(snap.users, []);

    const started = await cli(url, ["session", "start", "--from", "base-1", "--json"], { token: tokens.eng });
    assert.equal(started.code, 0, started.stderr);
    const from = JSON.parse(started.stdout) as { id: string; state: string; snapshot: string; version: number; environment: string };
    assert.equal(from.state, "running");
    assert.equal(from.snapshot, id);
    assert.equal(from.environment, "snappy");
    assert.equal((await eng.files.read(from.id, "/workspace/state.txt")).toString(), "v1", "the file as it was at the snapshot");
    assert.equal((await eng.files.read(from.id, "/workspace/template.txt")).toString(), "from-template\n", "on top of the template's layers");
    assert.equal((await eng.files.read(source, "/workspace/state.txt")).toString(), "v2", "the source went on");

    const listed = await cli(url, ["snapshot", "list", "--json"], { token: tokens.sup });
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as { id: string }[]).map((s) => s.id), [id]);
    const table = await cli(url, ["snapshot", "list"], { token: tokens.eng });
    assert.match(table.stdout, new RegExp(`^${id}\\s+base-1\\s+snappy@v1\\s+${source}`, "m"));
    assert.deepEqual(await new PaddockClient({ url, token: tokens.nobody }).snapshots.list(), [], "listings show only readable environments");

    const inUse = await cli(url, ["snapshot", "rm", "base-1"], { token: tokens.eng });
    assert.equal(inUse.code, 4, "conflict");
    assert.match(inUse.stderr, new RegExp(`in use by session ${from.id}`));
    assert.deepEqual((await eng.snapshots.get(id)).users, [`session ${from.id}`]);

    const wrongEnv = await cli(url, ["session", "start", "other", "--from", "base-1"], { token: tokens.eng });
    assert.equal(wrongEnv.code, 2);
    assert.match(wrongEnv.stderr, /is of environment "snappy", not "other"/);

    await eng.sessions.stop(from.id);
    const rm = await cli(url, ["snapshot", "rm", id], { token: tokens.eng });
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await cli(url, ["snapshot", "show", id], { token: tokens.eng })).code, 3);
    assert.ok(!(await server.cp.layers.list()).committed.includes(id), "the snapshot's layer is gone");
    assert.equal(await server.cp.store.getSealed(`snapshot-placeholders:${id}`), null, "and its sealed placeholders");

    const audit = await admin.audit.list({ limit: 5000 });
    assert.ok(audit.some((r) => r.action === "snapshot.create" && r.target === id && r.actor === "eng" && r.sessionId === source));
    assert.ok(audit.some((r) => r.action === "snapshot.remove" && r.target === id && r.actor === "eng"));
    assert.ok(audit.some((r) => r.action === "api.createSnapshot" && r.actor === "eng" && r.decision === "allowed" && r.detail.name === "base-1"));
    assert.ok(audit.some((r) => r.action === "api.startSession" && r.actor === "eng" && r.detail.from === "base-1"));
  });

  void it("read is not write: support may list and show, not create, remove or start from a snapshot (403, audited)", async () => {
    const snap = await eng.snapshots.create(source, { name: "rbac-1" });
    const sup = new PaddockClient({ url, token: tokens.sup });
    assert.equal((await sup.snapshots.get("rbac-1")).id, snap.id);
    for (const args of [["snapshot", "create", source], ["snapshot", "rm", "rbac-1"], ["session", "start", "--from", "rbac-1"], ["session", "fork", source]]) {
      const r = await cli(url, args, { token: tokens.sup });
      assert.equal(r.code, 77, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /write on environment "snappy" is needed; sup \(role "support"\) has read there/);
    }
    const nobody = await cli(url, ["snapshot", "show", "rbac-1"], { token: tokens.nobody });
    assert.equal(nobody.code, 77);
    const denied = (await admin.audit.list({ actor: "sup", limit: 5000 })).filter((r) => r.decision === "denied");
    for (const op of ["createSnapshot", "deleteSnapshot", "startSession", "forkSession"]) {
      assert.ok(denied.some((r) => r.action === `api.${op}` && r.environment === "snappy"), `${op} denied and audited`);
    }
    assert.equal((await admin.snapshots.get(snap.id)).id, snap.id, "still there");
    await admin.snapshots.remove(snap.id);
  });

  void it("sessions from a snapshot are independent of it, of the source and of each other", async () => {
    await eng.files.write(source, "/workspace/shared.txt", Buffer.from("original"));
    const snap = await eng.snapshots.create(source);
    const a = (await eng.sessions.start(null, { from: snap.id })).id;
    const b = (await eng.sessions.start("snappy", { from: snap.id })).id;
    await sh(eng, a, "echo from-a > /workspace/shared.txt; echo only-a > /workspace/a.txt; rm -f /workspace/template.txt");
    await sh(eng, source, "echo from-source > /workspace/shared.txt");
    assert.equal((await eng.files.read(b, "/workspace/shared.txt")).toString(), "original");
    assert.equal((await sh(eng, b, "test -e /workspace/a.txt; echo $?; cat /workspace/template.txt")).stdout, "1\nfrom-template\n");
    assert.equal((await eng.files.read(a, "/workspace/shared.txt")).toString(), "from-a\n");
    const c = (await eng.sessions.start(null, { from: snap.id })).id;
    assert.equal((await eng.files.read(c, "/workspace/shared.txt")).toString(), "original", "the snapshot itself never changes");
    for (const id of [a, b, c]) await eng.sessions.remove(id);
    await eng.snapshots.remove(snap.id);
  });

  void it("a placeholder the snapshot's files hold is swapped in sessions started from it, at its bound host only", async () => {
    // A tool wrote the session's placeholder into files: an .env and a git remote URL.
    await sh(eng, source, 'printf "STRIPE_KEY_FROM_FILE=%s\\n" "$STRIPE_API_KEY" > /workspace/.env && git init -q /workspace/repo && git -C /workspace/repo remote add origin "https://x:$STRIPE_API_KEY@github.com/org/repo.git"');
    const placeholder = (await sh(eng, source, "printf %s $STRIPE_API_KEY")).stdout;
    assert.match(placeholder, /^paddock-ph-[0-9a-f]{32}$/);
    const fork = await eng.sessions.fork(source, { count: 2 });
    assert.equal(fork.sessions.length, 2, JSON.stringify(fork.failures));
    const [f1, f2] = fork.sessions.map((s) => s.id) as [string, string];
    const r = await sh(eng, f1, '. /workspace/.env && curl -sS https://api.stripe.com/v1/from-file -H "Authorization: Bearer $STRIPE_KEY_FROM_FILE"');
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(lastTo("api.stripe.com")?.url, "/v1/from-file");
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${STRIPE}`, "swapped for the real value at the bound host");
    assert.ok(!r.stdout.includes(STRIPE), "and redacted on the way back");
    assert.equal((await sh(eng, f2, "printf %s $STRIPE_API_KEY")).stdout, placeholder, "the fork's own variable is the same placeholder");
    assert.match((await sh(eng, f2, "git -C /workspace/repo remote get-url origin")).stdout, new RegExp(placeholder));
    // Not swapped towards a host the secret is not bound to.
    await sh(eng, f1, '. /workspace/.env && curl -sS https://github.com/x -H "Authorization: Bearer $STRIPE_KEY_FROM_FILE"');
    assert.equal(lastTo("github.com")?.headers.authorization, `Bearer ${placeholder}`);

    // The same text pasted into a session of another environment that binds a secret of the same name: not swapped.
    const o = (await eng.sessions.start("other")).id;
    const own = (await sh(eng, o, "printf %s $STRIPE_API_KEY")).stdout;
    assert.notEqual(own, placeholder);
    await sh(eng, o, `curl -sS https://api.stripe.com/v1/pasted -H "Authorization: Bearer ${placeholder}"`);
    assert.equal(lastTo("api.stripe.com")?.url, "/v1/pasted");
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${placeholder}`, "another environment's session never swaps it");
    // Nor in a fresh session of the same environment (it has placeholders of its own).
    const fresh = (await eng.sessions.start("snappy")).id;
    await sh(eng, fresh, `curl -sS https://api.stripe.com/v1/fresh -H "Authorization: Bearer ${placeholder}"`);
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${placeholder}`);
    // And the source session's own placeholder still works in the source.
    await sh(eng, source, 'curl -sS https://api.stripe.com/v1/source -H "Authorization: Bearer $STRIPE_API_KEY"');
    assert.equal(lastTo("api.stripe.com")?.headers.authorization, `Bearer ${STRIPE}`);

    // No secret value in anything stored for the snapshot: its row, its sealed document, the
    // database files, the layers.
    const snap = fork.snapshot;
    const row = JSON.stringify(await server.cp.store.getSnapshot(snap.id));
    assert.ok(!row.includes(STRIPE) && !row.includes(placeholder));
    const sealed = await server.cp.vault.unseal(`snapshot-placeholders:${snap.id}`);
    assert.ok(sealed, "the placeholders are sealed with the snapshot");
    assert.ok(sealed.includes(placeholder) && !sealed.includes(STRIPE), "placeholders only, never the value");
    const raw = await server.cp.store.getSealed(`snapshot-placeholders:${snap.id}`);
    assert.ok(raw && !Buffer.from(raw.ciphertext).includes(placeholder), "sealed, not stored in the clear");
    for (const f of await readdir(home)) {
      if (!f.startsWith("paddock.db")) continue;
      const bytes = await readFile(join(home, f));
      assert.ok(!bytes.includes(STRIPE) && !bytes.includes(OTHER_STRIPE), `${f} holds a secret value`);
    }
    const grep = await runCommand(["grep", "-rl", "-e", STRIPE, "-e", OTHER_STRIPE, join(home, "layers")], { allowFailure: true });
    assert.equal(grep.code, 1, `found in: ${grep.stdout}`);
    for (const id of [f1, f2, o, fresh]) await eng.sessions.remove(id);
    // The fork's snapshot goes by itself once its sessions are gone.
    await until(async () => (await server.cp.store.getSnapshot(snap.id)) === null, 10_000, "the fork snapshot to be collected");
    await until(async () => !(await server.cp.layers.list()).committed.includes(snap.layerId), 10_000, "its layer to go");
  });
});
