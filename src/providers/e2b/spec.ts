/**
 * What an e2b sandbox spec asks that E2B cannot give (refused with `unsupported`, never ignored),
 * and E2B's network settings for a sandbox whose only way out is Paddock's gateway.
 */
import { ALL_TRAFFIC } from "e2b";
import { isIP } from "node:net";
import type { Provider, RemoteEgressAttachment, SandboxSpec } from "../../core/index.ts";
import { invalid, unsupported } from "../../core/index.ts";

/** Each thing an e2b provider cannot do, refused by name before anything is created at E2B. */
export function refuseUnsupported(provider: Pick<Provider, "name">, spec: SandboxSpec, user: string): void {
  if (spec.mode === "build") throw unsupported(provider, "run build sandboxes (mode build)", "an e2b template comes from SandboxSpec.recipe (steps run at create) or a prebuilt template in settings.templates");
  if (!spec.recipe && spec.layers.length > 0) throw unsupported(provider, "start from this machine's layer store", "give SandboxSpec.recipe");
  if (spec.guard && spec.guard.deny.length > 0) throw unsupported(provider, "enforce guardrails.commands.deny inside the sandbox (exec guard)", "route environments with a deny list to a provider with execGuard");
  if (spec.services && spec.services.length > 0) throw unsupported(provider, "supervise services inside the sandbox");
  if (spec.mounts && spec.mounts.length > 0) throw unsupported(provider, "bind host directories into the sandbox");
  if (spec.isolation === "gvisor") throw unsupported(provider, "run isolation tier gvisor", "E2B runs each sandbox in a Firecracker microVM of its own");
  if (spec.egress && !spec.remoteEgress) throw unsupported(provider, "link a sandbox to the gateway (network netns)", "give SandboxSpec.remoteEgress: the gateway as an HTTPS proxy");
  if (spec.sessionUser && spec.sessionUser.name !== user) throw unsupported(provider, `run sessions as ${JSON.stringify(spec.sessionUser.name)}`, `its templates' user is ${user}`);
}

/**
 * E2B's network settings for a sandbox whose only way out is Paddock's gateway (or nothing):
 * all traffic denied, the gateway's hosts allowed. E2B matches an IPv4 address or CIDR on every
 * port, but a host name only in TLS's SNI on port 443 and HTTP's Host on port 80; a named gateway
 * on another port could never be reached, so it is refused here rather than left broken. (With a
 * name in allowOut, E2B also lets the sandbox reach its DNS resolver, 8.8.8.8: a gateway given as
 * an IP address keeps DNS closed too.) IPv6 is refused: E2B's rules and sandboxes are IPv4.
 */
export function egressSettings(provider: string, attachment: RemoteEgressAttachment | null): { network: { allowOut: string[]; denyOut: string[] } } | { allowInternetAccess: false } {
  if (!attachment || attachment.allow.length === 0) return { allowInternetAccess: false };
  const allowOut = new Set<string>();
  for (const { host, port } of attachment.allow) {
    const h = host.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
    const kind = isIP(h);
    if (kind === 6) throw invalid(`provider ${JSON.stringify(provider)} (e2b): the gateway's address ${host} is IPv6; E2B's egress rules allow IPv4 addresses and host names only`);
    if (kind === 0 && port !== 443 && port !== 80) {
      throw invalid(`provider ${JSON.stringify(provider)} (e2b): the gateway ${host}:${port} cannot be allowed by name: E2B filters host names only for TLS on port 443 and HTTP on port 80; give its proxy listener an IPv4 address or port 443`);
    }
    allowOut.add(h);
  }
  return { network: { allowOut: [...allowOut], denyOut: [ALL_TRAFFIC] } };
}

/**
 * The E2B snapshot name of a snapshot layer id: `pd-` + the id. The prefix keeps every name a valid
 * one at E2B and at Paddock's own front end (which keeps `snap-…` for its ids).
 */
export function snapshotName(layerId: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,59}$/.test(layerId)) throw invalid(`bad snapshot id ${JSON.stringify(layerId.slice(0, 80))}: 1 to 60 lowercase letters, digits, ".", "_" and "-"`);
  return `pd-${layerId}`;
}
