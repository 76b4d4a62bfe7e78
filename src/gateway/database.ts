/**
 * The seam for database credential gateways. A sandbox gets a database URL whose host is the
 * gateway and whose password is a placeholder; the gateway speaks the database's own protocol to
 * the client, proves the placeholder, then logs in upstream with the real credentials from the
 * vault and relays. Postgres is the first (postgres/); MySQL and Redis would be the next, each as
 * a folder that implements this interface (docs/database.md, "Adding a protocol").
 *
 * What every protocol gets from the wiring is the same small context: who a connection is (by its
 * source address and the user name it sent), where records go, and limits. What it must uphold is
 * the same too: the real secret never reaches the client, an unknown user is refused exactly like
 * a wrong password, a connection without `write` cannot write, and one bad connection never takes
 * the listener down.
 */
import type net from "node:net";
import type { EgressRecord } from "./types.ts";

/** Who a connection is, as the wiring resolves it; `null` is refused like a wrong password. */
export interface DatabaseLookup<Target> {
  lookup(remoteAddress: string, user: string): Target | null;
  /** The session a source address belongs to, or null. */
  sessionOf(remoteAddress: string): string | null;
}

/** What a protocol implementation is given. */
export interface DatabaseContext<Target, Limits> extends DatabaseLookup<Target> {
  /** One record per statement (or command) and per connection, allowed or refused; never a value or a secret. */
  onRecord(r: EgressRecord): void;
  log?(line: string): void;
  limits?: Partial<Limits>;
}

/** One database protocol the gateway can serve on a port of its own. */
export interface DatabaseProtocol {
  /** e.g. "postgres". */
  readonly name: string;
  /** The port sandboxes' URLs name (5432 for Postgres). */
  readonly defaultPort: number;
  /** Serve one accepted client connection; never throws (errors end that connection only). */
  handle(socket: net.Socket): void;
  /** Close every connection of a session (unregistered or stopped). */
  closeSession(sessionId: string): void;
  close(): Promise<void>;
}
