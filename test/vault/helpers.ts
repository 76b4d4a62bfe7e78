/** Shared setup for the vault tests: a fresh home and file-backed store per case. */
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Store } from "../../src/core/store.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import { openVault, type Vault } from "../../src/gateway/vault.ts";
import { tempDir } from "../helpers/tmp.ts";

export interface Fixture {
  home: string;
  dbPath: string;
  store: Store;
  vault: Vault;
  logs: string[];
  /** Open another vault over the same home and store (a restart). */
  reopen(env?: NodeJS.ProcessEnv): Promise<Vault>;
  /** Run SQL on a second connection, as an attacker with the database file (not the key) could. */
  raw<T>(fn: (db: Database.Database) => T): T;
  cleanup(): Promise<void>;
}

export async function fixture(env: NodeJS.ProcessEnv = {}): Promise<Fixture> {
  const dir = await tempDir("paddock-vault-");
  const home = join(dir.path, "home");
  const dbPath = join(dir.path, "paddock.db");
  const store = await openSqliteStore(dbPath);
  const logs: string[] = [];
  const log = (line: string) => logs.push(line);
  const vault = await openVault({ home, store, env, log });
  return {
    home,
    dbPath,
    store,
    vault,
    logs,
    reopen: (e = env) => openVault({ home, store, env: e, log }),
    raw: (fn) => {
      const db = new Database(dbPath);
      try {
        return fn(db);
      } finally {
        db.close();
      }
    },
    cleanup: async () => {
      await vault.idle();
      await store.close();
      await dir.remove();
    },
  };
}

/** A value that cannot appear in a file by chance. */
export function distinctiveValue(tag = "sk_live"): string {
  return `${tag}_${crypto.randomUUID().replaceAll("-", "")}`;
}
