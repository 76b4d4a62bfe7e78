/**
 * The secret vault: secret values sealed at rest with AES-256-GCM, read back only by the gateway
 * (through `SecretSource`) at request time, so a new value takes effect on the next request.
 *
 * - The key is `PADDOCK_VAULT_KEY` (base64 of 32 bytes) when set, else `${home}/vault.key` (32 raw
 *   bytes, created at first start with mode 0600). A key file others can read is refused.
 * - Every value gets a fresh 12-byte IV; the associated data binds the ciphertext to its name and
 *   scope, so a row moved to another name or scope fails to decrypt instead of leaking there.
 * - Values leave the vault only as `SecretValue` (redacts itself everywhere but `.reveal()`) or
 *   through `resolve` (the gateway's contract). No error, log line or listing carries a value.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { invalid, PaddockError, unavailable } from "../core/errors.ts";
import type { Sealed, Store, StoredSecretScope } from "../core/store.ts";
import type { SecretScope, SecretSource } from "./types.ts";
import { loadKey, type LoadedKey } from "./vault-key.ts";

export const REDACTED = "[redacted]";
const IV_BYTES = 12;
const MAX_VALUE_BYTES = 64 * 1024;
const MAX_SEALED_BYTES = 1024 * 1024;
const NAME_RE = /^[A-Z_][A-Z0-9_]*$/;
const SCOPE_VALUE_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

/** A secret value that redacts itself in strings, JSON and inspection; `.reveal()` is the only way to the text. */
export class SecretValue {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  /** The plaintext. Call it only where the value must leave (the gateway's swap). */
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
  [Symbol.toPrimitive](): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return REDACTED;
  }
}

/** Where a secret applies when it is set: at most one of the three; none means global. */
export interface VaultScope {
  environment?: string;
  team?: string;
  agent?: string;
}

/** A secret as listed: never its value. `scope` is `{}` for global. */
export interface SecretListing {
  name: string;
  scope: VaultScope;
  createdAt: string;
  updatedAt: string;
  lastUsedAt: string | null;
}

export interface Vault extends SecretSource {
  /** A digest naming the key (never the key): rows sealed under another key are refused by name. */
  readonly keyId: string;
  /** Where the key came from. */
  readonly keySource: "env" | "file";
  /** Seal and store a value (replacing any in that scope). Rejects `invalid_argument` for a bad name, scope or value. */
  set(name: string, value: string, scope?: VaultScope): Promise<void>;
  /** Delete the value in exactly that scope; resolves false when there was none. */
  delete(name: string, scope?: VaultScope): Promise<boolean>;
  /** Every secret by name then scope; never values. */
  list(): Promise<SecretListing[]>;
  /** The most specific value for `scope` (agent > team > environment > global) as a self-redacting holder, or null. */
  get(name: string, scope: SecretScope): Promise<SecretValue | null>;
  /** `get` revealed: the gateway's SecretSource contract. Rejects (fails closed) when a stored value does not authenticate. */
  resolve(name: string, scope: SecretScope): Promise<string | null>;
  /** Record that the secret `get` would pick for `scope` was used; written in the background, errors logged (no values). */
  touch(name: string, scope: SecretScope): void;
  /** Seal a small document under `key` (e.g. a session's CA key and placeholders) so a restart can restore it. */
  seal(key: string, plaintext: string): Promise<void>;
  /** The document sealed under `key`, or null. Rejects when it does not authenticate. */
  unseal(key: string): Promise<string | null>;
  /** Resolves once every pending `touch` has been written or logged. */
  idle(): Promise<void>;
  /**
   * Every stored value with its name, for redacting them out of text the control plane keeps
   * (audit records). Cached until a secret is set, deleted or its listing changes.
   */
  allValues(): Promise<SecretValue[]>;
  /** A 32-byte key for another purpose (e.g. "audit-chain"), derived with HKDF-SHA256: the vault key itself never leaves. */
  deriveKey(purpose: string): Buffer;
  /** Call `listener` after every set, and every delete that removed a value (e.g. so a gateway process drops cached values). */
  onChange(listener: () => void): void;
}

export interface VaultOptions {
  /** Data directory ($PADDOCK_HOME): where `vault.key` lives unless PADDOCK_VAULT_KEY is set. */
  home: string;
  store: Store;
  /** Where to read PADDOCK_VAULT_KEY; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Where background failures are reported (never with values); default stderr. */
  log?: (line: string) => void;
}

/**
 * Open the vault: load (or create) the key, then serve values from `store`. Rejects `unavailable`
 * with how to fix it when the key is malformed, readable by others, or missing while the store
 * already holds secrets sealed by a lost key.
 *
 * @example
 * const vault = await openVault({ home: "/var/lib/paddock", store });
 * await vault.set("STRIPE_API_KEY", value, { environment: "monorepo-agent" });
 */
export async function openVault(opts: VaultOptions): Promise<Vault> {
  const { key, keyId, source } = await loadKey(opts);
  return new SqlVault(opts.store, { key, keyId, source }, opts.log ?? ((line) => process.stderr.write(line + "\n")));
}

/** Associated data: what a ciphertext belongs to. JSON keeps the parts unambiguous; the tag separates secrets from sealed blobs. */
const aad = (...parts: string[]): Buffer => Buffer.from(JSON.stringify(["paddock-vault/v1", ...parts]), "utf8");
const secretAad = (name: string, s: StoredSecretScope): Buffer => aad("secret", name, s.kind, s.value);
const sealedAad = (key: string): Buffer => aad("sealed", key);
const describeScope = (s: StoredSecretScope): string => (s.kind === "global" ? "global" : `${s.kind}=${s.value}`);

function checkName(name: string): void {
  if (typeof name !== "string" || name.length > 128 || !NAME_RE.test(name)) {
    throw invalid(`secret name ${JSON.stringify(String(name).slice(0, 128))} is not valid: use upper-case letters, digits and _, starting with a letter or _ (e.g. STRIPE_API_KEY)`);
  }
}

function checkValue(value: string): void {
  if (typeof value !== "string") throw invalid("a secret value must be a string");
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes === 0) throw invalid("a secret value cannot be empty");
  if (bytes > MAX_VALUE_BYTES) throw invalid(`a secret value can be at most ${MAX_VALUE_BYTES} bytes (this one is ${bytes})`);
  if (value.includes("\0")) throw invalid("a secret value cannot contain a NUL byte");
}

/** The stored form of a VaultScope; rejects more than one of environment/team/agent. Empty strings count as absent. */
export function storedScope(scope: VaultScope = {}): StoredSecretScope {
  const kinds = (["environment", "team", "agent"] as const).filter((k) => scope[k] !== undefined && scope[k] !== "");
  if (kinds.length > 1) throw invalid(`a secret has one scope: give at most one of environment, team, agent (got ${kinds.join(" and ")})`);
  const kind = kinds[0];
  if (kind === undefined) return { kind: "global", value: "" };
  const value = scope[kind] ?? "";
  if (!SCOPE_VALUE_RE.test(value)) throw invalid(`${kind} ${JSON.stringify(value.slice(0, 128))} is not a valid scope: letters, digits, ".", "_", "@", "-" (at most 128)`);
  return { kind, value };
}

const publicScope = (s: StoredSecretScope): VaultScope => (s.kind === "global" ? {} : { [s.kind]: s.value });

/** Scopes to look in for a request, most specific first. */
function candidates(scope: SecretScope): StoredSecretScope[] {
  const out: StoredSecretScope[] = [];
  if (scope.agent) out.push({ kind: "agent", value: scope.agent });
  if (scope.team) out.push({ kind: "team", value: scope.team });
  if (scope.environment) out.push({ kind: "environment", value: scope.environment });
  out.push({ kind: "global", value: "" });
  return out;
}

class SqlVault implements Vault {
  readonly keyId: string;
  readonly keySource: "env" | "file";
  readonly #store: Store;
  readonly #key: KeyObject;
  readonly #log: (line: string) => void;
  readonly #pending = new Set<Promise<void>>();

  deriveKey(purpose: string): Buffer {
    return Buffer.from(hkdfSync("sha256", this.#key.export(), Buffer.alloc(0), `paddock/${purpose}`, 32));
  }

  constructor(store: Store, key: LoadedKey, log: (line: string) => void) {
    this.#store = store;
    this.#key = key.key;
    this.#log = log;
    this.keySource = key.source;
    this.keyId = key.keyId;
  }

  #encrypt(plain: Buffer, data: Buffer): Sealed {
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv("aes-256-gcm", this.#key, iv).setAAD(data);
    const ciphertext = Buffer.concat([c.update(plain), c.final()]);
    plain.fill(0);
    return { ciphertext, iv, tag: c.getAuthTag(), keyId: this.keyId };
  }

  /** Decrypt or fail closed; `what` names the record in the error (never its content). */
  #decrypt(s: Sealed, data: Buffer, what: string): string {
    if (s.keyId !== this.keyId) {
      throw unavailable(`${what} was sealed with vault key ${s.keyId}, but this server's key is ${this.keyId}; start Paddock with the original key (vault.key or PADDOCK_VAULT_KEY), or set it again`);
    }
    try {
      const d = createDecipheriv("aes-256-gcm", this.#key, s.iv).setAAD(data).setAuthTag(s.tag);
      return Buffer.concat([d.update(s.ciphertext), d.final()]).toString("utf8");
    } catch {
      throw new PaddockError("internal", `${what} does not authenticate: its stored ciphertext was moved to another name or scope, edited or corrupted, so it is refused; set it again`);
    }
  }

  async set(name: string, value: string, scope?: VaultScope): Promise<void> {
    checkName(name);
    checkValue(value);
    const s = storedScope(scope);
    await this.#store.putSecret({ name, scope: s, ...this.#encrypt(Buffer.from(value, "utf8"), secretAad(name, s)) });
    this.#changed();
  }

  async delete(name: string, scope?: VaultScope): Promise<boolean> {
    checkName(name);
    const deleted = await this.#store.deleteSecret(name, storedScope(scope));
    if (deleted) this.#changed();
    return deleted;
  }

  #changeListeners: (() => void)[] = [];

  onChange(listener: () => void): void {
    this.#changeListeners.push(listener);
  }

  #changed(): void {
    for (const l of this.#changeListeners) l();
  }

  async list(): Promise<SecretListing[]> {
    return (await this.#store.listSecrets()).map((r) => ({ name: r.name, scope: publicScope(r.scope), createdAt: r.createdAt, updatedAt: r.updatedAt, lastUsedAt: r.lastUsedAt }));
  }

  async get(name: string, scope: SecretScope): Promise<SecretValue | null> {
    checkName(name);
    for (const c of candidates(scope)) {
      const row = await this.#store.getSecret(name, c);
      if (row) return new SecretValue(this.#decrypt(row, secretAad(name, c), `secret ${name} (${describeScope(c)})`));
    }
    return null;
  }

  #valuesCache: { signature: string; values: SecretValue[] } | null = null;

  async allValues(): Promise<SecretValue[]> {
    const rows = await this.#store.listSecrets();
    const signature = rows.map((r) => `${r.name}\0${r.scope.kind}\0${r.scope.value}\0${r.updatedAt}`).join("\n");
    if (this.#valuesCache?.signature === signature) return this.#valuesCache.values;
    const values: SecretValue[] = [];
    for (const r of rows) {
      const row = await this.#store.getSecret(r.name, r.scope);
      if (row) values.push(new SecretValue(this.#decrypt(row, secretAad(r.name, r.scope), `secret ${r.name} (${describeScope(r.scope)})`)));
    }
    this.#valuesCache = { signature, values };
    return values;
  }

  async resolve(name: string, scope: SecretScope): Promise<string | null> {
    return (await this.get(name, scope))?.reveal() ?? null;
  }

  touch(name: string, scope: SecretScope): void {
    const at = new Date().toISOString();
    const p = (async () => {
      for (const c of candidates(scope)) if (await this.#store.touchSecret(name, c, at)) return;
    })()
      .catch((err: unknown) => this.#log(`vault: could not record the use of secret ${name}: ${err instanceof Error ? err.message : "unknown error"}`))
      .finally(() => this.#pending.delete(p));
    this.#pending.add(p);
  }

  async seal(key: string, plaintext: string): Promise<void> {
    if (typeof key !== "string" || key === "" || key.length > 256) throw invalid("a sealed document's key must be 1 to 256 characters");
    if (typeof plaintext !== "string" || Buffer.byteLength(plaintext) > MAX_SEALED_BYTES) throw invalid(`a sealed document must be a string of at most ${MAX_SEALED_BYTES} bytes`);
    await this.#store.putSealed(key, this.#encrypt(Buffer.from(plaintext, "utf8"), sealedAad(key)));
  }

  async unseal(key: string): Promise<string | null> {
    const row = await this.#store.getSealed(key);
    return row === null ? null : this.#decrypt(row, sealedAad(key), `sealed document ${JSON.stringify(key)}`);
  }

  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  toJSON(): { keyId: string; keySource: string } {
    return { keyId: this.keyId, keySource: this.keySource };
  }

  [inspect.custom](): string {
    return `Vault { keyId: ${this.keyId}, keySource: ${this.keySource}, key: ${REDACTED} }`;
  }
}
