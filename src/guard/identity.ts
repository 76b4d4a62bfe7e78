/**
 * Principals and their tokens: who is calling. The first start creates an `admin` principal and
 * writes its token to `${home}/admin.token` (0600), which the CLI on that machine uses by default.
 */
import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Principal, PrincipalKind, Store } from "../core/index.ts";
import { conflict, invalid, notFound, PaddockError, quoted } from "../core/index.ts";
import { mintToken, parseToken, secretMatches } from "./tokens.ts";

export const ADMIN_ROLE = "admin";
const NAME_RE = /^[a-z][a-z0-9._-]{0,62}$/;
const ROLE_RE = /^[a-z][a-z0-9_-]*$/;

export interface NewPrincipal {
  name: string;
  kind: PrincipalKind;
  role: string;
  team?: string | null;
}

export class Identities {
  constructor(private readonly store: Store) {}

  /**
   * On an installation without principals, create `admin` and write its token to
   * `${home}/admin.token`. Resolves the file path when it created one, null otherwise.
   */
  async bootstrap(home: string): Promise<string | null> {
    if ((await this.store.listPrincipals()).length > 0) return null;
    const { token } = await this.add({ name: "admin", kind: "human", role: ADMIN_ROLE, team: null });
    const path = join(home, "admin.token");
    await writePrivate(path, token + "\n");
    return path;
  }

  /**
   * Local recovery when the admin token is lost: a new token for `admin` (re-enabled if it was
   * disabled), written to `${home}/admin.token`. Only someone who can read and write the data
   * directory can call this (the CLI's `paddock admin-token`), which is already full control.
   */
  async recoverAdmin(home: string): Promise<string> {
    let admin = await this.store.getPrincipalByName("admin");
    if (!admin) return (await this.bootstrap(home)) ?? join(home, "admin.token");
    if (admin.disabledAt !== null) admin = await this.store.updatePrincipal(admin.id, { disabledAt: null });
    const path = join(home, "admin.token");
    await writePrivate(path, (await this.issueToken(admin, "recovered with paddock admin-token")) + "\n");
    return path;
  }

  /** Create a principal and its first token; the token is in the result only. */
  async add(p: NewPrincipal, label = "created with the principal"): Promise<{ principal: Principal; token: string }> {
    if (!NAME_RE.test(p.name)) throw invalid(`${quoted(p.name)} is not a valid name: use lowercase letters, digits, ".", "_" and "-", starting with a letter (e.g. "alice")`);
    if (!ROLE_RE.test(p.role)) throw invalid(`${quoted(p.role)} is not a role name: use lowercase letters, digits, "_" and "-", starting with a letter (e.g. "engineering")`);
    if (p.team !== undefined && p.team !== null && !NAME_RE.test(p.team)) throw invalid(`${quoted(p.team)} is not a valid team name (e.g. "eng")`);
    if (p.kind === "agent" && p.role === ADMIN_ROLE) throw invalid("an agent cannot have the admin role: give it a role from the environments' rbac:");
    if (await this.store.getPrincipalByName(p.name)) throw conflict(`a principal named ${JSON.stringify(p.name)} already exists; pick another name`);
    const principal: Principal = {
      id: `usr_${randomBytes(8).toString("hex")}`, name: p.name, kind: p.kind, team: p.team ?? null, role: p.role,
      createdAt: new Date().toISOString(), disabledAt: null,
    };
    await this.store.createPrincipal(principal);
    const token = await this.issueToken(principal, label);
    return { principal, token };
  }

  async issueToken(principal: Principal, label: string): Promise<string> {
    const t = mintToken();
    await this.store.addToken({ id: t.id, principalId: principal.id, digest: t.digest, label, createdAt: new Date().toISOString(), lastUsedAt: null, revokedAt: null });
    return t.token;
  }

  /**
   * The principal a bearer token belongs to. Rejects `unauthorized` for anything else, with the
   * same message whether the token is malformed, unknown, revoked or wrong, so a caller learns
   * nothing about which tokens exist.
   */
  async authenticate(token: string | undefined): Promise<Principal> {
    const denied = new PaddockError("unauthorized", "a valid API token is required: send `Authorization: Bearer <token>` (paddock login, or $PADDOCK_TOKEN)");
    if (!token) throw denied;
    const parts = parseToken(token);
    if (!parts) throw denied;
    const row = await this.store.getToken(parts.id);
    if (!row || row.revokedAt !== null || !secretMatches(parts.secret, row.digest)) throw denied;
    const principal = await this.store.getPrincipal(row.principalId);
    if (!principal || principal.disabledAt !== null) throw denied;
    // lastUsedAt is for people deciding which tokens to revoke: minute precision is enough, and
    // skipping the write keeps a database write off every request.
    const now = Date.now();
    if (row.lastUsedAt === null || now - Date.parse(row.lastUsedAt) > 60_000) await this.store.touchToken(row.id, new Date(now).toISOString());
    return principal;
  }

  async byName(name: string): Promise<Principal> {
    const p = await this.store.getPrincipalByName(name);
    if (!p) throw notFound("principal", name);
    return p;
  }

  list(): Promise<Principal[]> {
    return this.store.listPrincipals();
  }

  /** Disable a principal: its tokens stop working at once; its audit history stays. */
  async disable(name: string): Promise<Principal> {
    const p = await this.byName(name);
    return this.store.updatePrincipal(p.id, { disabledAt: new Date().toISOString() });
  }
}

/** Write `text` to `path` with mode 0600 from the first byte (no window where others can read it). */
async function writePrivate(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await unlink(tmp).catch(() => undefined);
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
