/**
 * The messages between the control plane and its gateway process (node's IPC channel, with
 * "advanced" serialisation so Buffers travel as bytes). Calls carry an id and get exactly one
 * reply with that id; everything else is one-way.
 */
import type { LocalRequest, LocalResponse } from "./local.ts";
import type { RemoteProxyOptions } from "./remote-listener.ts";
import type { EgressRecord, GatewayEndpoints, GatewayRegistration, GatewaySessionSpec, RemoteProxyEndpoint, SecretScope } from "./types.ts";

/** What of UpstreamOptions can cross a process boundary: data, no functions. */
export interface PortableUpstreamOptions {
  extraCaPem?: string[];
  /** Static DNS answers that replace resolution for these names (tests' local upstreams). */
  hosts?: Record<string, string[]>;
  trustedAddresses?: string[];
}

export interface GatewayInit {
  address: string;
  ports: Omit<GatewayEndpoints, "address">;
  upstream: PortableUpstreamOptions;
  /** Per-session limits (see CreateGatewayOptions); absent: the defaults. */
  limits?: Record<string, number>;
  /** The remote proxy listener and the installation gateway CA it serves from (the key stays on this host); absent: off. */
  remoteProxy?: RemoteProxyOptions;
}

export type ParentCall =
  | { op: "register"; spec: GatewaySessionSpec; restore?: GatewayRegistration & { caKeyPem?: string } }
  | { op: "unregister"; sessionId: string };

export type ChildCall =
  | { op: "resolve"; name: string; scope: SecretScope }
  | { op: "local"; sessionId: string; req: Omit<LocalRequest, "signal"> };

export type Reply = { t: "reply"; id: number; ok: true; value: unknown } | { t: "reply"; id: number; ok: false; code: string; message: string };

/** Parent → child. */
export type ToChild =
  | { t: "init"; init: GatewayInit }
  | ({ t: "call"; id: number } & ParentCall)
  | Reply
  /** Secret values changed: forget cached ones. */
  | { t: "invalidate" }
  | { t: "close" };

/** Child → parent. */
export type ToParent =
  | { t: "ready"; endpoints: GatewayEndpoints; remoteProxy: RemoteProxyEndpoint | null }
  | { t: "failed"; message: string }
  | ({ t: "call"; id: number } & ChildCall)
  | Reply
  /** The caller of a `local` call went away. */
  | { t: "abort"; id: number }
  | { t: "record"; record: EgressRecord }
  /** Records made in one turn of the gateway's event loop, in order (a database session makes one per statement). */
  | { t: "records"; records: EgressRecord[] }
  | { t: "touch"; name: string; scope: SecretScope }
  | { t: "log"; line: string }
  | { t: "closed" };

export type { LocalResponse };
