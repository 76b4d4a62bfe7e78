/**
 * The vault's key: `PADDOCK_VAULT_KEY` (base64 of 32 bytes) when set, else `${home}/vault.key`
 * (32 raw bytes, mode 0600, created atomically at first start). Every check fails closed with a
 * message that says how to fix it and never contains key material.
 */
import { createHash, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { link, mkdir, open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { unavailable } from "../core/errors.ts";
import type { Store } from "../core/store.ts";

const KEY_BYTES = 32;

export interface LoadedKey {
  key: KeyObject;
  keyId: string;
  source: "env" | "file";
}

/**
 * Load the key (creating the key file when there is none). Rejects `unavailable` when the key is
 * malformed, readable by others, or missing while the store already holds secrets sealed by a lost key.
 */
export async function loadKey(opts: { home: string; store: Store; env?: NodeJS.ProcessEnv }): Promise<LoadedKey> {
  const fromEnv = (opts.env ?? process.env).PADDOCK_VAULT_KEY;
  let raw: Buffer;
  let source: "env" | "file" = "env";
  if (fromEnv !== undefined && fromEnv.trim() !== "") raw = decodeEnvKey(fromEnv.trim());
  else {
    source = "file";
    const path = join(opts.home, "vault.key");
    raw = (await readKeyFile(path)) ?? (await createKeyFile(opts.home, path, opts.store));
  }
  const key = createSecretKey(raw);
  const keyId = createHash("sha256").update("paddock-vault-key-id\0").update(raw).digest("hex").slice(0, 16);
  raw.fill(0);
  return { key, keyId, source };
}

function decodeEnvKey(text: string): Buffer {
  const raw = Buffer.from(text, "base64");
  // Buffer.from skips characters that are not base64; re-encoding catches a mangled variable.
  if (raw.toString("base64").replace(/=+$/, "") !== text.replace(/=+$/, "") || raw.length !== KEY_BYTES) {
    throw unavailable(`PADDOCK_VAULT_KEY must be the base64 of exactly ${KEY_BYTES} random bytes (make one with: openssl rand -base64 32)`);
  }
  return raw;
}

/** The key file's 32 bytes, or null when it does not exist. Refuses anything but a private regular file. */
async function readKeyFile(path: string): Promise<Buffer | null> {
  let fh;
  try {
    // O_NOFOLLOW: a symlink planted at vault.key must not redirect us to another file.
    fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP") throw unavailable(`the vault key ${path} is a symbolic link; replace it with the key file itself (mode 0600)`);
    throw unavailable(`cannot read the vault key ${path} (${code ?? "error"}); check its permissions`, err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw unavailable(`the vault key ${path} is not a regular file`);
    // Fail closed: a key others can read protects nothing; better to stop than to run exposed.
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
      throw unavailable(`the vault key ${path} has mode ${mode}: group or others can access it. Run \`chmod 600 ${path}\` (and rotate the key if others may have read it)`);
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) throw unavailable(`the vault key ${path} is owned by uid ${st.uid}, not by this process (uid ${uid}); chown it to the user running Paddock`);
    if (st.size !== KEY_BYTES) throw unavailable(`the vault key ${path} must be exactly ${KEY_BYTES} bytes, found ${st.size}; restore the original key file`);
    const buf = Buffer.alloc(KEY_BYTES);
    const { bytesRead } = await fh.read(buf, 0, KEY_BYTES, 0);
    if (bytesRead !== KEY_BYTES) throw unavailable(`the vault key ${path} could not be read whole; restore the original key file`);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Create the key file atomically (temp file, then link: no reader ever sees half a key, no race overwrites one). */
async function createKeyFile(home: string, path: string, store: Store): Promise<Buffer> {
  const existing = await store.listSecrets();
  if (existing.length > 0) {
    // A fresh key would make every stored secret unreadable: the old key is lost, not absent by design.
    throw unavailable(
      `the vault key ${path} is missing but the store holds ${existing.length} secret(s) sealed with key ${existing[0]?.keyId ?? "?"}; ` +
        "restore vault.key (or set PADDOCK_VAULT_KEY), or delete those secrets from the store to start over",
    );
  }
  await mkdir(home, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const key = randomBytes(KEY_BYTES);
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(key);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw unavailable(`cannot create the vault key ${path}: ${(err as Error).message}`, err);
    key.fill(0);
    const theirs = await readKeyFile(path); // another process created it first: use theirs
    if (theirs === null) throw unavailable(`the vault key ${path} appeared and vanished while starting; start again`);
    return theirs;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  return key;
}
