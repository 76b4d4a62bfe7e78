/**
 * The database side of the gateway, wired to its session table: a TCP listener whose connections
 * go to the Postgres engine (postgres/), which asks here who a connection is. A sandbox's
 * database URL carries two tokens: the user token names the (session, secret) pair, the password
 * token is what SCRAM checks. Both are looked up only among the secrets of the session that owns
 * the connection's source address, so a URL copied from another sandbox identifies nobody: it is
 * refused exactly like a wrong password (invariant 3: a session's URL is reachable from that
 * sandbox and from nothing else).
 */
import net from "node:net";
import { sourceAddress } from "./addresses.ts";
import { createPostgresGateway, type PostgresTarget } from "./postgres/index.ts";
import type { SessionTable, Session } from "./sessions.ts";
import type { EgressRecord, SecretSource } from "./types.ts";

export interface DatabaseListenerOptions {
  sessions: SessionTable;
  secrets: SecretSource;
  /** The gateway's address: the host of every database URL, and the name its TLS leaf carries. */
  address: string;
  record: (r: EgressRecord) => void;
  log: (line: string) => void;
  /** Extra CAs trusted for upstream TLS (tests' own CA). */
  upstreamCaPem?: string[];
}

export interface DatabaseListener {
  readonly server: net.Server;
  /** Close every database connection of a session (it was unregistered). */
  closeSession(sessionId: string): void;
  close(): Promise<void>;
}

/** The Postgres target a startup's user names, among the secrets of the session at `remoteAddress`. */
export function databaseTarget(sessions: SessionTable, secrets: SecretSource, address: string, remoteAddress: string, user: string): PostgresTarget | null {
  const session = sessions.bySourceAddress(sourceAddress(remoteAddress));
  if (!session) return null;
  for (const binding of session.spec.secrets) {
    if (binding.kind !== "database") continue;
    const tokens = session.placeholders.get(binding.name)?.tokens ?? [];
    if (tokens.find((t) => t.role === "user")?.token !== user) continue;
    const password = tokens.find((t) => t.role === "password")?.token;
    // A placeholder without a password token (restored from an old registration) cannot be proved: refuse.
    if (!password) return null;
    return targetOf(sessions, secrets, address, session, binding.name, password);
  }
  return null;
}

function targetOf(sessions: SessionTable, secrets: SecretSource, address: string, session: Session, secretName: string, password: string): PostgresTarget {
  const scope = session.spec.scope;
  return {
    sessionId: session.spec.id,
    secretName,
    password,
    // Fail closed: only a registration that says so may write (GatewaySessionSpec.databaseWrite).
    write: session.spec.databaseWrite === true,
    tls: () => session.ca.ipLeaf(address),
    upstreamUrl: async () => {
      // A session unregistered while this connection was starting gets no value.
      if (!sessions.isLive(session)) return null;
      const value = await secrets.resolve(secretName, scope);
      if (value !== null) secrets.touch(secretName, scope);
      return value;
    },
  };
}

/** The engine behind a TCP server (not yet listening: the caller binds it with the other listeners). */
export function createDatabaseListener(opts: DatabaseListenerOptions): DatabaseListener {
  const engine = createPostgresGateway({
    lookup: (remoteAddress, user) => databaseTarget(opts.sessions, opts.secrets, opts.address, remoteAddress, user),
    sessionOf: (remoteAddress) => opts.sessions.bySourceAddress(sourceAddress(remoteAddress))?.spec.id ?? null,
    // Marked, so the control plane audits them as database statements (control/records.ts).
    onRecord: (r) => opts.record({ ...r, protocol: "postgres" }),
    log: opts.log,
    // TLS is offered to registered sessions only, with a leaf for the gateway's address (the host
    // of their URL) from their own CA, which their sandbox trusts.
    tlsFor: async (remoteAddress) => {
      const session = opts.sessions.bySourceAddress(sourceAddress(remoteAddress));
      return session ? session.ca.ipLeaf(opts.address) : null;
    },
    ...(opts.upstreamCaPem?.length ? { upstreamCaPem: opts.upstreamCaPem } : {}),
  });
  const server = net.createServer({ noDelay: true }, (socket) => engine.handle(socket));
  // A failing accept (EMFILE under a flood) must not take the gateway down with it.
  server.on("error", (err) => opts.log(`gateway: postgres listener error: ${err.message}`));
  return {
    server,
    closeSession: (sessionId) => engine.closeSession(sessionId),
    close: () => engine.close(),
  };
}
