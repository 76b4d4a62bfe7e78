/**
 * The EC2 user data that boots a host as a Paddock node: the node CA certificate, the host's own
 * certificate and key (minted for this launch, see pki.ts), and the `paddock node` command. The
 * launch template's AMI must have `paddock` installed (and the native launcher built); cloud-init
 * runs this script as root at first boot.
 *
 * The host's key is in the user data, which the instance metadata service serves to anything on
 * the host that can reach 169.254.169.254: the node's sandboxes cannot (their only way out is TCP
 * to the gateway's proxy listener; a gateway on another machine needs net.ipv4.ip_forward=1), and
 * the launch template should require IMDSv2 with a hop limit of 1. The key only identifies this
 * one host, for at most its certificate's lifetime.
 *
 * Two variables let a test's fake EC2 boot several "instances" on one machine:
 * PADDOCK_NODE_HOME (the instance's disk, default /var/lib/paddock-node) and PADDOCK_NODE_ADDRESS
 * (the instance's address to listen on, default every address).
 */
import type { PemPair } from "./pki.ts";

export interface NodeBootstrap {
  caPem: string;
  node: PemPair;
  port: number;
  /** The command that runs Paddock on the image (default `paddock`). */
  command: string;
}

/** Heredoc delimiter: PEM text never contains it. */
const EOF = "PADDOCK_PEM_EOF";

export function nodeUserData(b: NodeBootstrap): string {
  if (!/^[A-Za-z0-9_./-]+$/.test(b.command)) throw new Error(`bad node command ${JSON.stringify(b.command)}`);
  const file = (name: string, pem: string): string => `cat > "$home/tls/${name}" <<'${EOF}'\n${pem.trim()}\n${EOF}\n`;
  return [
    "#!/bin/sh",
    "# Paddock node bootstrap (EC2 user data), written by the control plane's ec2 provider.",
    "set -eu",
    'home="${PADDOCK_NODE_HOME:-/var/lib/paddock-node}"',
    // Only the key files are private: the node itself runs with the usual umask (the session user must be able to enter what it creates).
    "(",
    "umask 077",
    'mkdir -p "$home/tls"',
    file("ca.pem", b.caPem) + file("node.pem", b.node.certPem) + file("node-key.pem", b.node.keyPem).trimEnd(),
    ")",
    "umask 022",
    `exec ${b.command} node --listen "\${PADDOCK_NODE_ADDRESS:-0.0.0.0}:${b.port}" --home "$home" --ca "$home/tls/ca.pem" --cert "$home/tls/node.pem" --key "$home/tls/node-key.pem"`,
    "",
  ].join("\n");
}
