/**
 * The egress gateway: public entry. `createGateway` starts the five listeners (explicit proxy,
 * transparent HTTP, transparent TLS, DNS, and Postgres: database-listener.ts) on one address and
 * returns a Gateway that serves the sessions registered with it. See docs/gateway.md,
 * docs/database.md and types.ts for the contract.
 *
 * @example
 * const gw = await createGateway({ address: "10.200.0.1", secrets: vault, onRecord: audit });
 * const { placeholders, caCertPem, caKeyPem } = await gw.register(spec);
 */
import type http from "node:http";
import type net from "node:net";
import { asPaddockError } from "../core/errors.ts";
import { startDns, type DnsServer } from "./dns.ts";
import type { Deps } from "./forward.ts";
import { createListeners } from "./listeners.ts";
import type { RemoteHooks } from "./remote-proxy.ts";
import { createRemoteListener, remoteAuthFor, type RemoteListener, type RemoteProxyOptions } from "./remote-listener.ts";
import { createDatabaseListener } from "./database-listener.ts";
import { logLine } from "./records.ts";
import { SessionTable } from "./sessions.ts";
import { UpstreamAgents, type UpstreamOptions } from "./upstream.ts";
import type { LocalApi } from "./local.ts";
import { resolveLimits } from "./limits.ts";
import type { EgressRecord, Gateway, GatewayEndpoints, GatewayLimits, SecretSource } from "./types.ts";

export { decideHost } from "./policy.ts";
export { defaultBinding, isDatabaseUrl, isSecretBound, splitUrlSecret, DATABASE_PORT, SANDBOX_CA_PATH } from "./placeholders.ts";
export type { UpstreamOptions } from "./upstream.ts";
export { DEFAULT_LIMITS } from "./limits.ts";
export { gatewayCa, GATEWAY_CA_VALIDITY_MS, type RemoteProxyOptions } from "./remote-listener.ts";
export { passwordHash, DEFAULT_REMOTE_AUTH_LIMITS, type RemoteAuthLimits } from "./remote-auth.ts";
export { LOCAL_API_HOST, type LocalApi, type LocalRequest, type LocalResponse } from "./local.ts";
export * from "./types.ts";
export { startGatewayProcess, type GatewayProcess, type GatewayProcessOptions } from "./process.ts";
export type { PortableUpstreamOptions } from "./process-protocol.ts";

export interface CreateGatewayOptions {
  /** Listen address (the sandboxes' next hop; tests use 127.0.0.1). */
  address: string;
  /** 0 or absent: pick a free port. */
  ports?: Partial<Omit<GatewayEndpoints, "address">>;
  /** The HTTPS proxy for remote sandboxes (remote-listener.ts); absent: off. */
  remoteProxy?: RemoteProxyOptions;
  /** Secret values, read at request time. */
  secrets: SecretSource;
  /** One record per request, allowed or denied. Must not throw (a throw is caught and logged). */
  onRecord: (r: EgressRecord) => void;
  upstream?: UpstreamOptions;
  /** Receives one line per request and lifecycle events; never a secret value. */
  log?: (line: string) => void;
  /** Serves http://paddock.internal to registered sessions; absent: 404 there. */
  localApi?: LocalApi;
  /** Per-session limits; absent keys keep DEFAULT_LIMITS (limits.ts). Tests shorten the timeouts. */
  limits?: Partial<GatewayLimits>;
}

function listen(server: net.Server, address: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, address, () => {
      server.off("error", reject);
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : port);
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => resolve());
  });
}

/** Start a gateway. Rejects (listeners closed again) when a port cannot be bound. */
export async function createGateway(opts: CreateGatewayOptions): Promise<Gateway> {
  const log = opts.log ?? (() => undefined);
  const limits = resolveLimits(opts.limits);
  // Database URLs name the gateway by the address sandboxes reach it on (docs/database.md).
  const sessions = new SessionTable(opts.secrets, limits, opts.address);
  const agents = new UpstreamAgents();
  const deps: Deps = {
    sessions,
    limits,
    upstream: opts.upstream ?? {},
    agents,
    ...(opts.localApi ? { localApi: opts.localApi } : {}),
    record: (r) => {
      try {
        opts.onRecord(r);
      } catch (err) {
        log(`gateway: onRecord threw (${asPaddockError(err).code})`);
      }
      log(logLine(r));
    },
  };
  const remoteAuth = opts.remoteProxy ? remoteAuthFor(opts.remoteProxy, sessions) : null;
  let remote: RemoteListener | null = null;
  const hooks: RemoteHooks | undefined = remoteAuth ? { auth: remoteAuth, sourceOf: (s) => remote?.sourceOf(s) ?? "" } : undefined;
  const l = createListeners(deps, hooks);
  const databases = createDatabaseListener({
    sessions, secrets: opts.secrets, address: opts.address, log,
    // Every statement is a record (the egress log, the audit); only logins and refusals are also a
    // log line: a busy connection runs thousands of statements a second.
    record: (r) => {
      try {
        opts.onRecord(r);
      } catch (err) {
        log(`gateway: onRecord threw (${asPaddockError(err).code})`);
      }
      if (r.decision === "denied" || r.method === "CONNECT") log(logLine(r));
    },
    ...(opts.upstream?.extraCaPem ? { upstreamCaPem: opts.upstream.extraCaPem } : {}),
  });
  const started: net.Server[] = [];
  let dns: DnsServer | null = null;
  try {
    const proxyPort = await listen(l.proxy, opts.address, opts.ports?.proxyPort ?? 0);
    started.push(l.proxy);
    const httpPort = await listen(l.http, opts.address, opts.ports?.httpPort ?? 0);
    started.push(l.http);
    const httpsPort = await listen(l.https, opts.address, opts.ports?.httpsPort ?? 0);
    started.push(l.https);
    const postgresPort = await listen(databases.server, opts.address, opts.ports?.postgresPort ?? 0);
    started.push(databases.server);
    dns = await startDns(sessions, opts.address, opts.ports?.dnsPort ?? 0);
    if (opts.remoteProxy && remoteAuth && l.remote) remote = await createRemoteListener(opts.remoteProxy, remoteAuth, limits, l.remote);
    const remoteListener = remote;
    const endpoints: GatewayEndpoints = { address: opts.address, proxyPort, httpPort, httpsPort, dnsPort: dns.port, postgresPort };
    log(`gateway: listening on ${opts.address} proxy=${proxyPort} http=${httpPort} https=${httpsPort} dns=${dns.port} postgres=${postgresPort}`);
    if (remoteListener) log(`gateway: remote proxy (TLS) on ${remoteListener.endpoint.host}:${remoteListener.endpoint.port} as ${remoteListener.endpoint.publicHost}`);
    const dnsServer = dns;
    let closed = false;
    return {
      endpoints,
      remoteProxy: remoteListener?.endpoint ?? null,
      async register(spec, restore) {
        const reg = await sessions.register(spec, restore);
        log(`gateway: registered session ${spec.id} ${spec.remote ? "(remote, by proxy credential)" : `from ${spec.sourceIp}`} with ${spec.secrets.length} secret(s)`);
        return reg;
      },
      async unregister(id) {
        const ok = sessions.unregister(id);
        agents.drop(id);
        databases.closeSession(id);
        if (ok) log(`gateway: unregistered session ${id}`);
        return ok;
      },
      async close() {
        if (closed) return;
        closed = true;
        for (const s of sessions.all()) sessions.unregister(s.spec.id);
        agents.close();
        await Promise.all([...started.map(closeServer), dnsServer.close(), databases.close(), remoteListener?.close(), l.remote ? closeServer(l.remote) : undefined]);
        log("gateway: closed");
      },
    };
  } catch (err) {
    await Promise.all([...started.map(closeServer), databases.close()]);
    if (dns) await dns.close();
    await remote?.close();
    throw asPaddockError(err);
  }
}
