/**
 * The vault's part of the SQLite store (secrets, egress records, sealed blobs), kept apart from
 * sqlite.ts so each file stays small. `SqliteStore` extends this class and supplies `run` and
 * `write`: its guarded runners (closed-store check, error translation, IMMEDIATE transactions).
 */
import type {
  EgressRecordInput,
  Sealed,
  SecretInfo,
  SecretInput,
  StoredEgressRecord,
  StoredSecret,
  StoredSecretScope,
  Store,
} from "../core/store.ts";
import { invalid } from "../core/errors.ts";
import { nowIso, timestampMs } from "./sqlite-rows.ts";
import type { Statements } from "./sqlite-statements.ts";
import { egressFromRow, egressToRow, secretFromRow, secretInfoFromRow, secretKey, secretToRow } from "./sqlite-vault-rows.ts";

type VaultRecords = Pick<
  Store,
  | "putSecret"
  | "getSecret"
  | "listSecrets"
  | "deleteSecret"
  | "touchSecret"
  | "addEgressRecords"
  | "listEgressRecords"
  | "putSealed"
  | "getSealed"
  | "deleteSealed"
>;

/** A limit or cursor must be a non-negative integer; anything else is a caller's mistake. */
function count(value: number | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(`${what} must be a non-negative integer, got ${String(value)}`);
  return value;
}

export abstract class SqliteVaultRecords implements VaultRecords {
  /** Run `fn` against the open database, translating failures; `duplicate` names a conflict. */
  protected abstract run<T>(fn: (q: Statements) => T, duplicate?: string): T;
  /** Like run, inside one IMMEDIATE transaction. */
  protected abstract write<T>(fn: (q: Statements) => T, duplicate?: string): T;

  async putSecret(row: SecretInput): Promise<SecretInfo> {
    return this.run((q) => {
      const stored = q.putSecret.get(secretToRow(row, nowIso()));
      if (stored === undefined) throw invalid(`secret ${JSON.stringify(row.name)} was not stored`);
      return secretInfoFromRow(stored);
    });
  }

  async getSecret(name: string, scope: StoredSecretScope): Promise<StoredSecret | null> {
    return this.run((q) => {
      const row = q.getSecret.get(secretKey(name, scope));
      return row === undefined ? null : secretFromRow(row);
    });
  }

  async listSecrets(): Promise<SecretInfo[]> {
    return this.run((q) => q.listSecrets.all().map(secretInfoFromRow));
  }

  async deleteSecret(name: string, scope: StoredSecretScope): Promise<boolean> {
    return this.run((q) => q.deleteSecret.run(secretKey(name, scope)).changes > 0);
  }

  async touchSecret(name: string, scope: StoredSecretScope, at: string): Promise<boolean> {
    // Normalised so that the text comparison in SQL orders timestamps correctly.
    const iso = new Date(timestampMs(at, "the time a secret was used")).toISOString();
    return this.run((q) => q.touchSecret.run({ ...secretKey(name, scope), at: iso }).changes > 0);
  }

  async addEgressRecords(records: EgressRecordInput[]): Promise<void> {
    if (records.length === 0) return;
    const rows = records.map(egressToRow);
    this.write((q) => {
      for (const r of rows) q.addEgress.run(r);
    });
  }

  async listEgressRecords(query: { sessionId: string; limit?: number; afterId?: number }): Promise<StoredEgressRecord[]> {
    const limit = count(query.limit, "limit") ?? -1;
    const after = count(query.afterId, "afterId");
    return this.run((q) => {
      const rows =
        after === undefined ? q.egressTail.all({ session: query.sessionId, limit }) : q.egressAfter.all({ session: query.sessionId, after, limit });
      return rows.map(egressFromRow);
    });
  }

  async putSealed(key: string, sealed: Sealed): Promise<void> {
    this.run((q) =>
      q.putSealed.run({
        key,
        ciphertext: Buffer.from(sealed.ciphertext),
        iv: Buffer.from(sealed.iv),
        tag: Buffer.from(sealed.tag),
        key_id: sealed.keyId,
        updated_at: nowIso(),
      }),
    );
  }

  async getSealed(key: string): Promise<(Sealed & { updatedAt: string }) | null> {
    return this.run((q) => {
      const r = q.getSealed.get(key);
      return r === undefined ? null : { ciphertext: Buffer.from(r.ciphertext), iv: Buffer.from(r.iv), tag: Buffer.from(r.tag), keyId: r.key_id, updatedAt: r.updated_at };
    });
  }

  async deleteSealed(key: string): Promise<boolean> {
    return this.run((q) => q.deleteSealed.run(key).changes > 0);
  }
}
