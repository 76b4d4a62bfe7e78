/**
 * Harness for the Postgres gateway's tests: a real PostgreSQL (test/helpers/postgres.ts), the
 * gateway on 127.0.0.1 port 0 with a test lookup, and everything it said collected (records, log
 * lines) so tests can search them for the real password.
 *
 * Sessions: "s1" connects from 127.0.0.1 as user "sess1", "s2" from 127.0.0.2 as "sess2"; each has
 * its own placeholder password. `write` decides whether s1 may write.
 */
import net from "node:net";
import { randomBytes } from "node:crypto";
import { createSessionCa, type SessionCa } from "../../src/gateway/ca.ts";
import { createPostgresGateway, type PostgresGatewayOptions, type PostgresLimits, type PostgresTarget } from "../../src/gateway/postgres/index.ts";
import type { EgressRecord } from "../../src/gateway/types.ts";
import type { TestPostgres } from "../helpers/postgres.ts";

/** A socket whose connect() binds the local address: how a test speaks from another session's address. */
class BoundSocket extends net.Socket {
  constructor(private readonly bindTo: string) {
    super();
  }
  override connect(...args: unknown[]): this {
    const [port, host] = args as [number, string];
    return super.connect({ port, host, localAddress: this.bindTo });
  }
}

export interface TestSession {
  id: string;
  address: string;
  user: string;
  placeholder: string;
  write: boolean;
}

export interface Harness {
  port: number;
  records: EgressRecord[];
  logs: string[];
  sessions: { s1: TestSession; s2: TestSession };
  ca: SessionCa;
  /** The URL a sandbox of `session` would see (the placeholder, the gateway's address). */
  url(session: TestSession, extra?: string): string;
  /** node-postgres config for `session`: its URL, and a socket bound to the session's source address. */
  client(session: TestSession, extra?: string): { connectionString: string; stream: () => net.Socket };
  gateway: ReturnType<typeof createPostgresGateway>;
  close(): Promise<void>;
}

export async function startHarness(pg: TestPostgres, opts: { write?: boolean; limits?: Partial<PostgresLimits>; upstreamUrl?: string; tls?: boolean; upstreamCaPem?: string[] } = {}): Promise<Harness> {
  const s1: TestSession = { id: "s1", address: "127.0.0.1", user: "sess1", placeholder: `paddock-ph-${randomBytes(12).toString("hex")}`, write: opts.write ?? true };
  const s2: TestSession = { id: "s2", address: "127.0.0.2", user: "sess2", placeholder: `paddock-ph-${randomBytes(12).toString("hex")}`, write: true };
  const records: EgressRecord[] = [];
  const logs: string[] = [];
  const ca = await createSessionCa("s1", null);
  const upstreamUrl = opts.upstreamUrl ?? pg.url;
  const sessions = [s1, s2];
  const target = (s: TestSession): PostgresTarget => ({
    sessionId: s.id,
    secretName: "DATABASE_URL",
    password: s.placeholder,
    write: s.write,
    tls: async () => (opts.tls === false ? null : ca.ipLeaf("127.0.0.1")),
    upstreamUrl: async () => upstreamUrl,
  });
  const options: PostgresGatewayOptions = {
    lookup: (remote, user) => {
      const s = sessions.find((x) => x.address === remote && x.user === user);
      return s ? target(s) : null;
    },
    sessionOf: (remote) => sessions.find((x) => x.address === remote)?.id ?? null,
    onRecord: (r) => records.push(r),
    log: (line) => logs.push(line),
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.upstreamCaPem ? { upstreamCaPem: opts.upstreamCaPem } : {}),
    tlsFor: async () => (opts.tls === false ? null : ca.ipLeaf("127.0.0.1")),
  };
  const gateway = createPostgresGateway(options);
  const server = net.createServer((s) => gateway.handle(s));
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    records,
    logs,
    sessions: { s1, s2 },
    ca,
    gateway,
    url: (s, extra = "sslmode=disable") => `postgres://${s.user}:${s.placeholder}@${s.address}:${port}/${pg.database}?${extra}`,
    client: (s, extra = "sslmode=disable") => ({
      connectionString: `postgres://${s.user}:${s.placeholder}@127.0.0.1:${port}/${pg.database}?${extra}`,
      stream: () => new BoundSocket(s.address),
    }),
    async close() {
      await gateway.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
