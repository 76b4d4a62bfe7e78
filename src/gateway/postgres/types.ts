/**
 * The Postgres credential gateway's contract with whoever wires it in (the gateway process): who a
 * connection is (lookup), where records go, the limits. See index.ts for the factory and
 * docs/database.md, "How the gateway speaks Postgres", for the whole flow.
 */
import type { EgressRecord } from "../types.ts";

export interface PostgresTarget {
  sessionId: string;
  /** The secret this connection uses, e.g. "DATABASE_URL" (for records). */
  secretName: string;
  /** The placeholder password the client must prove with SCRAM-SHA-256 (never the real one). */
  password: string;
  /** False: the connection must not be able to write (default_transaction_read_only + statement checks). */
  write: boolean;
  /**
   * The TLS certificate offered to the client, or null when TLS is not offered. Not called by the
   * gateway: a client's SSLRequest comes before its user name, so TLS is chosen by address with
   * `PostgresGatewayOptions.tlsFor`. Kept for the wiring that builds both from one session.
   */
  tls(): Promise<{ certPem: string; keyPem: string } | null>;
  /** The real connection URL from the vault; null when no value is set (refused with an error naming the secret). */
  upstreamUrl(): Promise<string | null>;
}

export interface PostgresLimits {
  /** Client connections one session may hold open at once (cancel requests included while they last). */
  maxConnectionsPerSession: number;
  /** From accepting a connection to its first ReadyForQuery (TLS, startup, SCRAM, upstream login). */
  startupTimeoutMs: number;
  /** Largest message a client may send after startup (a Query, a Bind with its values, a CopyData chunk). */
  maxMessageBytes: number;
  /** A relayed connection with no bytes either way for this long is closed (0: never). */
  idleTimeoutMs: number;
  /** Connecting to, and logging in at, the upstream. */
  upstreamTimeoutMs: number;
}

export const DEFAULT_POSTGRES_LIMITS: PostgresLimits = {
  maxConnectionsPerSession: 64,
  startupTimeoutMs: 15_000,
  maxMessageBytes: 32 * 1024 * 1024,
  idleTimeoutMs: 60 * 60 * 1000,
  upstreamTimeoutMs: 15_000,
};

export interface PostgresGatewayOptions {
  /** The client's source address and the user name it sent at startup → target, or null (refused exactly like a wrong password). */
  lookup(remoteAddress: string, user: string): PostgresTarget | null;
  /** The session a source address belongs to, or null (such connections are closed at once). */
  sessionOf(remoteAddress: string): string | null;
  /** One record per statement and per connection (CONNECT), allowed or refused. */
  onRecord(r: EgressRecord): void;
  log?(line: string): void;
  limits?: Partial<PostgresLimits>;
  /** Extra CA certificates trusted for upstream TLS; the OS bundle otherwise. */
  upstreamCaPem?: string[];
  /**
   * The certificate to offer a client of this address that asks for TLS (`serverName`: its SNI,
   * absent for an IP host), or null to answer SSLRequest with 'N'. Absent: TLS is never offered.
   */
  tlsFor?(remoteAddress: string, serverName: string | null): Promise<{ certPem: string; keyPem: string } | null>;
}
