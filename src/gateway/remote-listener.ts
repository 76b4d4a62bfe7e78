/**
 * The remote proxy listener: how sandboxes of remote providers (k8s, e2b, daytona), which have no
 * link of their own to the gateway, reach it over the network. TLS to the proxy itself (a
 * certificate for `publicHost` minted from the installation's gateway CA, which remote sandboxes
 * trust), then HTTP CONNECT or absolute-form HTTP with `Proxy-Authorization: Basic` carrying the
 * session's proxy credential. The decrypted connection is handed to the `remote` server of
 * listeners.ts, so everything after authentication is the explicit proxy's own path: policy,
 * swapping, TLS termination with the session CA, redaction, limits and records.
 *
 * Before a connection is authenticated it belongs to no session, so it is held to the TLS
 * handshake deadline and the pending-connection caps of remote-auth.ts instead.
 */
import net from "node:net";
import tls from "node:tls";
import type http from "node:http";
import type { Duplex } from "node:stream";
import { sourceAddress } from "./addresses.ts";
import { createSessionCa, type SessionCa } from "./ca.ts";
import { DEFAULT_REMOTE_AUTH_LIMITS, RemoteAuth, type RemoteAuthLimits } from "./remote-auth.ts";
import type { SessionTable } from "./sessions.ts";
import type { GatewayLimits, RemoteProxyEndpoint } from "./types.ts";

export interface RemoteProxyOptions extends RemoteProxyEndpoint {
  /** The installation's gateway CA (PEM); its key never leaves the host (docs/gateway.md). */
  ca: { certPem: string; keyPem: string };
  /** Pre-authentication limits; absent keys keep DEFAULT_REMOTE_AUTH_LIMITS (tests lower them). */
  authLimits?: Partial<RemoteAuthLimits>;
}

/** How often the listener's certificate is looked at again (the CA re-mints it a day before it expires). */
const REFRESH_MS = 6 * 3_600_000;

/** The installation gateway CA: long-lived (remote sandboxes keep trusting it for their whole life). */
export const GATEWAY_CA_VALIDITY_MS = 365 * 86_400_000;

/**
 * Make (or load) the installation's gateway CA for `publicHost`. Name-constrained to that name
 * when it is one (an address needs no constraint: the CA signs only this listener's leaf).
 */
export function gatewayCa(publicHost: string, restore?: { certPem: string; keyPem: string }): Promise<SessionCa> {
  return createSessionCa("gateway", net.isIP(publicHost) ? null : [publicHost], restore, { validityMs: GATEWAY_CA_VALIDITY_MS, commonName: "Paddock gateway CA" });
}

export interface RemoteListener {
  readonly server: net.Server;
  /** Where it listens (the port chosen when 0 was asked for). */
  readonly endpoint: RemoteProxyEndpoint;
  readonly auth: RemoteAuth;
  /** Source address of a decrypted connection (for RemoteHooks). */
  sourceOf(socket: Duplex): string;
  close(): Promise<void>;
}

/** The auth state of the remote listener: created before the listeners, which consult it. */
export function remoteAuthFor(opts: RemoteProxyOptions, sessions: SessionTable): RemoteAuth {
  return new RemoteAuth(sessions, { ...DEFAULT_REMOTE_AUTH_LIMITS, ...opts.authLimits });
}

/**
 * Listen on `opts.host:opts.port` and hand each connection, once its TLS handshake is done, to
 * `target` (the `remote` server of listeners.ts). Rejects when the port cannot be bound.
 */
export async function createRemoteListener(opts: RemoteProxyOptions, auth: RemoteAuth, limits: GatewayLimits, target: http.Server): Promise<RemoteListener> {
  const ca = await gatewayCa(opts.publicHost, opts.ca);
  const contextNow = async (): Promise<tls.SecureContext> =>
    net.isIP(opts.publicHost) ? tls.createSecureContext({ ...toKeyCert(await ca.ipLeaf(opts.publicHost)), minVersion: "TLSv1.2" }) : ca.contextFor(opts.publicHost);
  let current = await contextNow();
  const refresh = setInterval(() => void contextNow().then((c) => (current = c), () => undefined), REFRESH_MS);
  refresh.unref();
  const sources = new WeakMap<Duplex, string>();
  const open = new Set<net.Socket>();

  const server = net.createServer((raw) => {
    raw.on("error", () => raw.destroy());
    const source = sourceAddress(raw.remoteAddress);
    raw.setNoDelay(true);
    // Serves one certificate whatever the SNI: clients that name the proxy by address send none.
    const t = new tls.TLSSocket(raw, { isServer: true, secureContext: current });
    sources.set(t, source);
    open.add(raw);
    auth.admit(t, source);
    const handshake = setTimeout(() => t.destroy(), limits.tlsHandshakeTimeoutMs);
    handshake.unref();
    const gone = (): void => {
      clearTimeout(handshake);
      open.delete(raw);
      t.destroy();
      raw.destroy();
    };
    raw.once("close", gone);
    t.once("close", gone);
    t.on("error", gone);
    t.once("secure", () => {
      clearTimeout(handshake);
      target.emit("connection", t);
    });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port, opts.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    clearInterval(refresh);
    throw err;
  }

  const a = server.address();
  return {
    server,
    endpoint: { host: opts.host, port: typeof a === "object" && a ? a.port : opts.port, publicHost: opts.publicHost },
    auth,
    sourceOf: (socket) => sources.get(socket) ?? "",
    close() {
      clearInterval(refresh);
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function toKeyCert(pem: { certPem: string; keyPem: string }): { key: string; cert: string } {
  return { key: pem.keyPem, cert: pem.certPem };
}
