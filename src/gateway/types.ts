/**
 * The egress gateway's contract with the rest of Paddock. Every byte that leaves a sandbox goes
 * through the gateway: HTTP and HTTPS (explicitly via HTTP(S)_PROXY, or transparently because the
 * sandbox's network namespace DNATs TCP 80/443 to it) and DNS (answered by the gateway itself; no
 * query leaves the machine). The gateway knows which session a connection belongs to by its source
 * address, which is unique per sandbox (see providers/local/network.ts).
 *
 * Secrets never enter a sandbox: it sees a placeholder per secret, and the gateway swaps the
 * placeholder for the real value only in requests from that session to the secret's bound hosts,
 * in the locations the binding allows. Values come from the vault at request time, so a new value
 * takes effect on the next request.
 */
import type { EgressRecordInput } from "../core/store.ts";

/** `guardrails.network` of the environment (normalised by config: lower-case, no trailing dot). */
export interface NetworkPolicy {
  /** Entries: exact host, `*.example.com` (subdomains), `*` (everything), any of those with `:port`. */
  allow: string[];
  deny: string[];
  /** Where each entry was written, e.g. "runtime.yml:27" for messages and records. Same order as the lists. */
  allowSources?: string[];
  denySources?: string[];
}

export type SecretLocation = "header" | "query" | "body";

/** Where a secret may be sent: hosts (exact or `*.x`) and the request parts a placeholder is swapped in. */
export interface SecretBinding {
  name: string;
  /** Exact hosts or `*.example.com`; never `*`. */
  hosts: string[];
  in: SecretLocation[];
  /** `http`: swapped by the HTTP(S) proxy. `database`: reserved for the database gateway (no HTTP swap). */
  kind: "http" | "database";
  /**
   * Also swap into plain `http://` requests to these hosts: the secret then crosses the network
   * unencrypted. Absent or false (the default): swapped only into requests that leave over TLS to a
   * verified upstream; a plain-HTTP request carrying the placeholder where it would be swapped is
   * refused (403, rule `gateway.cleartext-secret`).
   */
  cleartext?: boolean;
}

/** Where to find a secret's value: the most specific scope that has one wins (agent > team > environment > global). */
export interface SecretScope {
  environment: string;
  team?: string;
  agent?: string;
}

/** Read access to secret values, for the gateway only. `null` when no value is set for any matching scope. */
export interface SecretSource {
  resolve(name: string, scope: SecretScope): Promise<string | null>;
  /** Record that a secret was used (name only; never the value). */
  touch(name: string, scope: SecretScope): void;
}

/** One request through the gateway, allowed or denied (the type lives in core: the store keeps it too). */
export type EgressRecord = EgressRecordInput;

/**
 * Per-session resource limits, so that one sandbox cannot exhaust the gateway and with it every
 * other session's egress. Durations in milliseconds. Defaults: `DEFAULT_LIMITS` in limits.ts;
 * what happens at each limit: docs/gateway.md, "Limits".
 */
export interface GatewayLimits {
  /** Client connections one session may hold open at once, all listeners together (a CONNECT tunnel counts once). Beyond it, new ones are closed at once. */
  maxConnectionsPerSession: number;
  /** From accepting a TLS connection (or answering CONNECT) to a finished TLS handshake. */
  tlsHandshakeTimeoutMs: number;
  /** To a request's complete headers: from the connection's start (after TLS), or on a kept-alive connection from when its next request began to arrive. */
  headersTimeoutMs: number;
  /** From a request's complete headers to its complete body. */
  requestTimeoutMs: number;
  /** A plain HTTP or transparent TLS connection with no request in flight and nothing received for this long is closed. */
  keepAliveTimeoutMs: number;
  /** The same for a connection inside a CONNECT tunnel (the tunnel is closed). */
  tunnelIdleTimeoutMs: number;
  /** Largest request body the gateway buffers (only bodies a secret may be swapped into, git pushes it checks, paddock.internal calls). */
  maxBufferedBodyBytes: number;
  /** Request body bytes one session may have buffered at once, all its requests together. */
  maxBufferedBodyBytesPerSession: number;
  /** Leaf certificates (one per server name) kept per session CA; the least recently used is dropped. */
  leafCacheSize: number;
}

export interface GatewaySessionSpec {
  /** Session (or build) id. */
  id: string;
  /**
   * The sandbox's address on its link to the host: how the gateway knows who is calling. Exactly
   * one of `sourceIp` (local sandboxes) and `remote` (sandboxes of remote providers) is set.
   */
  sourceIp?: string;
  /** A remote sandbox's proxy credential: who is calling is whoever presents it (docs/gateway.md, "Remote sandboxes"). */
  remote?: RemoteCredential;
  policy: NetworkPolicy;
  /** Secrets the session may use, with their bindings. Empty for template builds. */
  secrets: SecretBinding[];
  scope: SecretScope;
  /**
   * Branch patterns this session may not push to over git smart HTTP (`main`, `release/*`): set
   * when the session's principal lacks the deploy permission. Absent or []: pushes are not judged.
   */
  protectedBranches?: string[];
  /**
   * Whoever acts in the session (the agent with its intersection, else the human) has `write` on
   * the environment: its database connections may write. Absent or false: every database
   * connection of the session is read-only (fail closed; docs/database.md, "Read-only by role").
   */
  databaseWrite?: boolean;
}

/**
 * A remote session's credential for the TLS proxy listener, as the gateway keeps it: the user name
 * and the SHA-256 of the password (hex). The password is 256 random bits, so a fast hash is enough;
 * the gateway never holds the password itself, and neither does anything persisted.
 */
export interface RemoteCredential {
  /** `[A-Za-z0-9_-]{8,64}`, unique among registered sessions. */
  user: string;
  /** Lower-case hex SHA-256 of the password. */
  passwordSha256: string;
}

/** The TLS proxy listener for remote sandboxes (off unless configured). */
export interface RemoteProxyEndpoint {
  /** Address the listener is bound to. */
  host: string;
  port: number;
  /** The name or address remote sandboxes reach it by: in their proxy URL and the listener's certificate. */
  publicHost: string;
}

export interface GatewayRegistration {
  /** Secret name → placeholder the sandbox sees in its environment. */
  placeholders: Record<string, string>;
  /** PEM of the CA the sandbox must trust (its key never leaves the host). */
  caCertPem: string;
}

export interface GatewayEndpoints {
  /** Host-side address the gateway listens on (the sandboxes' next hop). */
  address: string;
  /** Explicit proxy (HTTP absolute-form and CONNECT): HTTP_PROXY / HTTPS_PROXY point here. */
  proxyPort: number;
  /** Transparent plain HTTP (sandbox TCP 80 is DNATed here). */
  httpPort: number;
  /** Transparent TLS (sandbox TCP 443 is DNATed here). */
  httpsPort: number;
  /** DNS over UDP and TCP (sandbox port 53 is DNATed here). */
  dnsPort: number;
  /** The Postgres credential gateway (sandbox TCP 5432 is DNATed here; docs/database.md). */
  postgresPort: number;
}

export interface Gateway {
  readonly endpoints: GatewayEndpoints;
  /**
   * The HTTPS proxy with per-session credentials for remote sandboxes (docs/gateway.md, "Remote
   * sandboxes"); null when the installation has not turned it on. Kept apart from `endpoints`,
   * which are all on the sandboxes' local link.
   */
  readonly remoteProxy: RemoteProxyEndpoint | null;
  /**
   * Start serving a session. Re-registering an id (after a control-plane restart) with the same
   * spec returns the same placeholders and CA when `restore` carries the earlier registration.
   */
  register(spec: GatewaySessionSpec, restore?: GatewayRegistration & { caKeyPem?: string }): Promise<GatewayRegistration & { caKeyPem: string }>;
  /** Stop serving a session; its open connections are closed. Unknown id resolves false. */
  unregister(id: string): Promise<boolean>;
  close(): Promise<void>;
}
