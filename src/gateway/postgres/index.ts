/**
 * The Postgres credential gateway: a sandbox's database URL names the gateway and a placeholder
 * password; the gateway proves the placeholder with SCRAM-SHA-256, logs in to the real database
 * with the vault's URL (TLS per its sslmode), and relays, recording every statement and keeping
 * connections without `write` read-only. See docs/database.md, "How the gateway speaks Postgres".
 *
 * @example
 * const pg = createPostgresGateway({ lookup, sessionOf, onRecord });
 * net.createServer((s) => pg.handle(s)).listen(5432, address);
 */
import type net from "node:net";
import type { DatabaseProtocol } from "../database.ts";
import { ClientConnection, type GatewayShared } from "./connection.ts";
import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, errorResponse } from "./messages.ts";
import { analyse, loadParser, type Verdict } from "./readonly.ts";
import { createScramServer } from "./scram.ts";
import { DEFAULT_POSTGRES_LIMITS, type PostgresGatewayOptions } from "./types.ts";

export { DEFAULT_POSTGRES_LIMITS, type PostgresGatewayOptions, type PostgresLimits, type PostgresTarget } from "./types.ts";
export { analyse as analyseStatements, loadParser, type Verdict } from "./readonly.ts";

/** Verdicts kept per gateway, by statement text (pgbench-style workloads repeat a few statements). */
const VERDICT_CACHE_SIZE = 2000;
const MAX_CACHED_TEXT = 16_384;

export type PostgresGateway = DatabaseProtocol;

export function createPostgresGateway(opts: PostgresGatewayOptions): PostgresGateway {
  const limits = { ...DEFAULT_POSTGRES_LIMITS, ...opts.limits };
  const log = opts.log ?? (() => undefined);
  const cache = new Map<string, Verdict>();
  void loadParser().catch((err: Error) => log(`postgres: statement parser failed to load: ${err.message}`));
  const shared: GatewayShared = {
    opts,
    limits,
    scram: createScramServer(),
    cancels: new Map(),
    bySession: new Map(),
    log,
    analyse(text, readOnly) {
      // A read-write connection parses only to split statements for records: one statement
      // (no ';' before its end) needs no parse, which keeps the parser off the hot path.
      if (!readOnly) {
        const semicolon = text.indexOf(";");
        if (semicolon < 0 || /^;\s*$/.test(text.slice(semicolon))) {
          const single = text.trim().replace(/;$/, "").trim();
          return { statements: [{ text: single, kind: "", copy: /^copy\b/i.test(single) }], refusal: null };
        }
      }
      const key = `${readOnly ? 1 : 0}${text}`;
      const hit = cache.get(key);
      if (hit) return hit;
      const v = analyse(text, readOnly);
      if (text.length <= MAX_CACHED_TEXT) {
        cache.set(key, v);
        if (cache.size > VERDICT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
      }
      return v;
    },
  };
  let closed = false;

  /**
   * A connection past the session's cap: answered in the protocol's order, so the client shows
   * the reason. libpq opens with SSLRequest (or GSSENCRequest), and an ErrorResponse in place of
   * the one-byte answer reads as "server sent an error response during SSL exchange": those are
   * declined ('N') first, then the next packet gets 53300. A CancelRequest goes through (`cancel`).
   */
  const refuseAtCap = (socket: net.Socket, sessionId: string, count: number, cancel: () => void): void => {
    let buffered = Buffer.alloc(0);
    let negotiations = 0;
    const deadline = setTimeout(() => socket.destroy(), limits.startupTimeoutMs);
    deadline.unref();
    const refuse = (): void => {
      clearTimeout(deadline);
      socket.removeListener("data", onData);
      log(`postgres: session ${sessionId}: connection refused, ${count} already open (limit ${limits.maxConnectionsPerSession})`);
      opts.onRecord({
        sessionId, time: new Date().toISOString(), method: "CONNECT", host: "", port: 0, path: "", status: 53300, bytesOut: 0, bytesIn: 0,
        durationMs: 0, swapped: [], decision: "denied", rule: "database.limits", reason: `more than ${limits.maxConnectionsPerSession} connections at once`,
      });
      socket.end(errorResponse({ severity: "FATAL", code: "53300", message: `paddock: too many database connections for this session (limit ${limits.maxConnectionsPerSession})` }));
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 8) {
        const length = buffered.readInt32BE(0);
        const code = buffered.readInt32BE(4);
        if (length === 8 && (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) && negotiations < 2) {
          negotiations++;
          buffered = buffered.subarray(8);
          socket.write("N");
          continue;
        }
        if (length === 16 && code === CANCEL_REQUEST_CODE) {
          clearTimeout(deadline);
          socket.removeListener("data", onData);
          socket.pause();
          socket.unshift(buffered);
          cancel();
          // Explicitly paused, a stream stays paused when the connection adds its 'data' listener.
          socket.resume();
          return;
        }
        return refuse();
      }
    };
    socket.on("data", onData);
  };

  return {
    name: "postgres",
    defaultPort: 5432,
    handle(socket: net.Socket) {
      try {
        socket.setNoDelay(true);
        socket.on("error", () => socket.destroy());
        const remote = (socket.remoteAddress ?? "").replace(/^::ffff:/, "");
        const sessionId = closed ? null : opts.sessionOf(remote);
        if (!sessionId) {
          log(`postgres: connection from ${remote}, which is no session's address: closed`);
          return void socket.destroy();
        }
        const open = shared.bySession.get(sessionId) ?? new Set<ClientConnection>();
        if (open.size >= limits.maxConnectionsPerSession) {
          refuseAtCap(socket, sessionId, open.size, () => {
            // A CancelRequest is not a connection that stays: it must get through even when the
            // session's slots are full (that is when a client most needs to cancel something).
            shared.bySession.set(sessionId, open);
            open.add(new ClientConnection(shared, socket, remote, sessionId));
          });
          return;
        }
        shared.bySession.set(sessionId, open);
        open.add(new ClientConnection(shared, socket, remote, sessionId));
      } catch (err) {
        log(`postgres: connection failed: ${(err as Error).message}`);
        socket.destroy();
      }
    },
    closeSession(sessionId: string) {
      for (const c of [...(shared.bySession.get(sessionId) ?? [])]) c.close();
      shared.bySession.delete(sessionId);
      for (const [pid, entry] of shared.cancels) if (entry.sessionId === sessionId) shared.cancels.delete(pid);
    },
    async close() {
      closed = true;
      for (const set of [...shared.bySession.values()]) for (const c of [...set]) c.close();
      shared.bySession.clear();
      shared.cancels.clear();
    },
  };
}
