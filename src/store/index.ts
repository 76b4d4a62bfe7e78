/**
 * The store box's public entry. Callers hold a `Store` (src/core/store.ts) and get one from a
 * URL-like string in configuration; which implementation backs it is decided here only.
 */
import { invalid, PaddockError } from "../core/errors.ts";
import type { Store } from "../core/store.ts";
import { openSqliteStore } from "./sqlite.ts";

export { openSqliteStore };

/**
 * Open the store a configuration string names:
 * - `sqlite:///abs/path.db` (three slashes: empty host, absolute path; `%20` etc. are decoded),
 * - a plain path such as `/var/lib/paddock/paddock.db`, `./paddock.db` or `:memory:`.
 *
 * Rejects `invalid_argument` for PostgreSQL URLs (not supported yet), other schemes, and sqlite
 * URLs with a host; rejects as openSqliteStore does when the file cannot be opened.
 *
 * @returns the opened store; call `close()` when done.
 * @example
 * const store = await openStore("sqlite:///var/lib/paddock/paddock.db");
 */
export async function openStore(url: string): Promise<Store> {
  return openSqliteStore(sqlitePathOf(url));
}

/** A URL scheme; two letters at least, so a Windows drive (`C:\x.db`) reads as a plain path. */
const SCHEME = /^([a-z][a-z0-9+.-]+):/i;

/** The file path a store string names, or a PaddockError("invalid_argument") saying how to fix it. */
function sqlitePathOf(url: string): string {
  if (url.trim() === "") throw invalid("the store location is empty; give a sqlite path such as /var/lib/paddock/paddock.db");
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return url;
  switch (scheme) {
    case "sqlite":
      return pathOfSqliteUrl(url);
    case "postgres":
    case "postgresql":
      throw new PaddockError("invalid_argument", "PostgreSQL stores are not supported yet; use a sqlite path");
    default:
      throw invalid(`store URL scheme ${JSON.stringify(scheme)} is not supported; use sqlite:///abs/path.db or a plain file path`);
  }
}

function pathOfSqliteUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(`${JSON.stringify(url)} is not a valid URL; write sqlite:///abs/path.db (three slashes) or a plain file path`);
  }
  if (parsed.host !== "" || !parsed.pathname.startsWith("/") || parsed.pathname === "/") {
    throw invalid(`${JSON.stringify(url)} must name an absolute file as sqlite:///abs/path.db (three slashes, no host)`);
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    throw invalid(`${JSON.stringify(url)} has a query or fragment; sqlite store URLs take none: sqlite:///abs/path.db`);
  }
  try {
    return decodeURIComponent(parsed.pathname);
  } catch {
    throw invalid(`${JSON.stringify(url)} has a malformed %-escape in its path`);
  }
}
