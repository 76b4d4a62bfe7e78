/**
 * Identity and audit through the real CLI: the admin token the first start wrote, `user add`
 * printing a token once, `login` saving it 0600, `whoami`, refusals exiting 77, `audit` filters, and
 * `audit verify` catching a record edited straight in the database file.
 */
import assert from "node:assert/strict";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { cli, testServer } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";

void describe("paddock user, login, whoami, audit (CLI)", () => {
  let url: string;
  let home: string;
  let cleanup: () => Promise<void>;
  let config: { path: string; remove: () => Promise<void> };
  let aliceToken = "";

  before(async () => {
    const t = await testServer();
    url = t.server.url;
    home = t.home;
    cleanup = t.cleanup;
    config = await tempDir();
  });
  after(async () => {
    await cleanup();
    await config.remove();
  });

  void it("the first start wrote the admin token 0600, which the CLI on this machine uses by default", async () => {
    assert.equal((await stat(join(home, "admin.token"))).mode & 0o777, 0o600);
    const r = await cli(url, ["whoami", "--json"], { token: "", env: { PADDOCK_HOME: home, XDG_CONFIG_HOME: config.path } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { principal: { name: string }; admin: boolean }).principal.name, "admin");
  });

  void it("without a token every command but health is refused with exit 77", async () => {
    const r = await cli(url, ["session", "list"], { token: "", env: { PADDOCK_HOME: join(home, "nowhere"), XDG_CONFIG_HOME: config.path } });
    assert.equal(r.code, 77);
    assert.match(r.stderr, /a valid API token is required/);
  });

  void it("user add prints the token once on stdout; login saves it 0600; whoami shows the role", async () => {
    const add = await cli(url, ["user", "add", "alice", "--team", "eng", "--role", "engineering"]);
    assert.equal(add.code, 0, add.stderr);
    aliceToken = add.stdout.trim();
    assert.match(aliceToken, /^pdk_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
    assert.match(add.stderr, /created human alice \(role engineering\)/);
    const env = { XDG_CONFIG_HOME: config.path, PADDOCK_HOME: join(home, "nowhere") };
    const login = await cli(url, ["login"], { token: "", input: aliceToken + "\n", env });
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stderr, /logged in to .* as alice \(human, role engineering, team eng\)/);
    assert.equal((await stat(join(config.path, "paddock", "credentials.json"))).mode & 0o777, 0o600);
    const who = await cli(url, ["whoami"], { token: "", env });
    assert.equal(who.code, 0, who.stderr);
    assert.match(who.stdout, /^alice \(human, role engineering, team eng\)/);
    const denied = await cli(url, ["user", "add", "mallory", "--role", "admin"], { token: "", env });
    assert.equal(denied.code, 77);
    assert.match(denied.stderr, /needs the admin role; alice has role "engineering"/);
    const wrong = await cli(url, ["login"], { token: "", input: "pdk_nope\n", env: { ...env, XDG_CONFIG_HOME: join(config.path, "other") } });
    assert.equal(wrong.code, 77);
  });

  void it("audit lists who did what, filters by actor and time, and verify passes on an untouched log", async () => {
    const r = await cli(url, ["audit", "--actor", "alice", "--since", "1h", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const records = JSON.parse(r.stdout) as { actor: string; action: string; decision: string }[];
    assert.ok(records.some((x) => x.action === "login" && x.actor === "alice"));
    assert.ok(records.some((x) => x.action === "api.createPrincipal" && x.decision === "denied"));
    assert.ok(records.every((x) => x.actor === "alice"));
    const table = await cli(url, ["audit", "--actor", "alice"]);
    assert.match(table.stdout, /^SEQ\s+TIME\s+ACTOR\s+ACTION/);
    const v = await cli(url, ["audit", "verify"]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /audit log intact: \d+ records/);
  });

  void it("approvals: a waiting command is listed, approved by another person with the CLI, and then runs", async () => {
    const file = join(config.path, "runtime.yml");
    await writeFile(file, "name: asky\nguardrails:\n  commands:\n    ask: [tar]\nrbac:\n  engineering: [read, write]\n");
    assert.equal((await cli(url, ["env", "apply", file])).code, 0);
    const id = (await cli(url, ["session", "start", "asky"])).stdout.trim();
    const running = cli(url, ["exec", id, "--", "tar", "--version"]);
    let approval = "";
    for (let i = 0; i < 300 && !approval; i++) {
      const list = JSON.parse((await cli(url, ["approvals", "--json"], { token: aliceToken })).stdout) as { id: string; argv: string[] }[];
      approval = list.find((a) => a.argv.join(" ") === "tar --version")?.id ?? "";
    }
    assert.ok(approval, "the waiting command was listed");
    const table = await cli(url, ["approvals"], { token: aliceToken });
    assert.match(table.stdout, new RegExp(`${approval}\\s+${id}\\s+admin\\s+tar --version`));
    const ok = await cli(url, ["approve", approval, "--reason", "fine"], { token: aliceToken });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, new RegExp(`${approval} approved: tar --version`));
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /tar \(GNU tar\)/);
    const again = await cli(url, ["deny", approval], { token: aliceToken });
    assert.equal(again.code, 4, "answering twice is a conflict");
    await cli(url, ["session", "rm", id]);
  });

  void it("admin-token recovers a lost admin token on the server's machine, audited", async () => {
    const before = (await readFile(join(home, "admin.token"), "utf8")).trim();
    await rm(join(home, "admin.token"));
    const r = await cli(url, ["admin-token", "--home", home], { token: "" });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /a new admin token is in .*admin\.token \(mode 0600\)/);
    const after = (await readFile(join(home, "admin.token"), "utf8")).trim();
    assert.notEqual(after, before);
    assert.equal((await stat(join(home, "admin.token"))).mode & 0o777, 0o600);
    const who = await cli(url, ["whoami", "--json"], { token: after });
    assert.equal((JSON.parse(who.stdout) as { principal: { name: string } }).principal.name, "admin");
    const records = JSON.parse((await cli(url, ["audit", "--actor", "local-root", "--json"])).stdout) as { action: string }[];
    assert.deepEqual(records.map((x) => x.action), ["admin-token"]);
    assert.equal((await cli(url, ["audit", "verify"])).code, 0, "written into the same chain");
    const missing = await cli(url, ["admin-token", "--home", join(home, "nowhere")], { token: "" });
    assert.equal(missing.code, 3);
  });

  void it("audit verify exits 1 and names the record when the database is edited behind Paddock's back", async () => {
    const db = new Database(join(home, "paddock.db"));
    try {
      db.exec("DROP TRIGGER audit_records_no_update");
      const seq = db.prepare("SELECT seq FROM audit_records WHERE action = 'api.createPrincipal' AND decision = 'denied'").pluck().get() as number;
      db.prepare("UPDATE audit_records SET decision = 'allowed' WHERE seq = ?").run(seq);
      const v = await cli(url, ["audit", "verify"]);
      assert.equal(v.code, 1);
      assert.match(v.stdout, new RegExp(`audit log TAMPERED: 1 problem\\(s\\)[^]*record ${seq}: content changed`));
    } finally {
      db.close();
    }
  });

  void it("user tokens lists ids without secrets; user revoke stops exactly that token", async () => {
    const second = (await cli(url, ["user", "token", "alice", "--label", "ci"])).stdout.trim();
    const list = await cli(url, ["user", "tokens", "alice", "--json"]);
    const tokens = JSON.parse(list.stdout) as { id: string; label: string; revokedAt: string | null }[];
    assert.equal(tokens.length, 2);
    assert.ok(!list.stdout.includes(aliceToken.slice(21)) && !list.stdout.includes(second.slice(21)), "no secret part is listed");
    const ci = tokens.find((t) => t.label === "ci");
    assert.ok(ci && second.startsWith(`pdk_${ci.id}_`));
    const revoke = await cli(url, ["user", "revoke", "alice", ci.id]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.equal((await cli(url, ["whoami"], { token: second })).code, 77, "the revoked token is refused");
    assert.equal((await cli(url, ["whoami"], { token: aliceToken })).code, 0, "her other token still works");
    assert.equal((await cli(url, ["user", "revoke", "alice", ci.id])).code, 4, "revoking twice is a conflict");
    assert.equal((await cli(url, ["user", "revoke", "admin", ci.id])).code, 3, "a token of someone else is not found");
  });
});
