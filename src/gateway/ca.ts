/**
 * One certificate authority per session. The sandbox trusts its session's CA certificate; the key
 * stays on the host (the control plane persists it so a restart can restore the same CA). The CA
 * carries name constraints built from the policy's allowed hosts (unless the policy allows `*`), so
 * a client that honours them refuses a certificate for any other name even if the key leaked.
 */
import "reflect-metadata";
import { webcrypto, randomBytes, createPrivateKey } from "node:crypto";
import { createSecureContext, type SecureContext } from "node:tls";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } from "@peculiar/asn1-x509";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
const CA_VALIDITY_MS = 7 * DAY_MS;
const LEAF_VALIDITY_MS = 2 * DAY_MS;
/** Allow for clock skew between host and sandbox. */
const BACKDATE_MS = 5 * 60_000;

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const crypto = webcrypto;

export interface SessionCa {
  certPem: string;
  keyPem: string;
  /** A TLS context for `name`, minted on first use and cached until close to expiry (at most `leafCacheSize` names, least recently used dropped). */
  contextFor(name: string): Promise<SecureContext>;
  /**
   * A leaf for an IP address (the database gateway's TLS: the sandbox's database URL names the
   * gateway by address), as PEM: its certificate followed by this CA's, and its key. Minted once
   * per address and cached until close to expiry.
   */
  ipLeaf(address: string): Promise<{ certPem: string; keyPem: string }>;
}

/** Leaves kept per CA unless told otherwise (GatewayLimits.leafCacheSize). */
export const DEFAULT_LEAF_CACHE_SIZE = 256;

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // positive
  return b.toString("hex");
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith("\n") ? "" : "\n"}-----END ${label}-----\n`;
}

function pemToDer(pem: string): ArrayBuffer {
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const buf = Buffer.from(b64, "base64");
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function nameConstraints(permitted: string[]): x509.Extension {
  // An empty permitted list would allow every name (the field would be absent), so permit only the
  // reserved name `invalid` instead: fail closed.
  const names = permitted.length > 0 ? permitted : ["invalid"];
  const subtrees = new GeneralSubtrees(names.map((n) => new GeneralSubtree({ base: new GeneralName({ dNSName: n }) })));
  const value = AsnConvert.serialize(new NameConstraints({ permittedSubtrees: subtrees }));
  return new x509.Extension(id_ce_nameConstraints, true, value);
}

async function newCa(id: string, permitted: string[] | null, validityMs = CA_VALIDITY_MS, commonName = `Paddock sandbox CA ${id}`): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
  ];
  if (permitted !== null) extensions.push(nameConstraints(permitted));
  const cn = commonName.replace(/[,+="<>#;\\]/g, "_");
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    { serialNumber: serial(), name: `CN=${cn}`, notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + validityMs), keys, signingAlgorithm: ALG, extensions },
    crypto,
  );
  return { cert, keys };
}

async function importKey(keyPem: string): Promise<CryptoKey> {
  // Normalise whatever PEM flavour was stored (SEC1 or PKCS#8) into PKCS#8 for WebCrypto.
  const pkcs8 = createPrivateKey(keyPem).export({ format: "pem", type: "pkcs8" }).toString();
  return crypto.subtle.importKey("pkcs8", pemToDer(pkcs8), ALG, true, ["sign"]);
}

/**
 * Create a session CA, or restore one from PEM. `permitted` is the list of DNS names for the name
 * constraints (null: unconstrained, the policy allows `*`). Rejects when a restored CA is unusable.
 * `validityMs`/`commonName` of a new CA default to a session CA's (7 days); the installation's
 * gateway CA (remote-listener.ts) lives a year.
 */
export async function createSessionCa(
  id: string,
  permitted: string[] | null,
  restore?: { certPem: string; keyPem: string },
  opts: { leafCacheSize?: number; validityMs?: number; commonName?: string } = {},
): Promise<SessionCa> {
  const maxLeaves = opts.leafCacheSize ?? DEFAULT_LEAF_CACHE_SIZE;
  let caCert: x509.X509Certificate;
  let caKey: CryptoKey;
  let keyPem: string;
  if (restore) {
    caCert = new x509.X509Certificate(restore.certPem);
    caKey = await importKey(restore.keyPem);
    keyPem = restore.keyPem;
  } else {
    const made = await newCa(id, permitted, opts.validityMs, opts.commonName);
    caCert = made.cert;
    caKey = made.keys.privateKey;
    keyPem = toPem(await crypto.subtle.exportKey("pkcs8", caKey), "PRIVATE KEY");
  }
  const certPem = caCert.toString("pem") + "\n";
  const cache = new Map<string, { ctx: Promise<SecureContext>; expires: number }>();

  async function mint(name: string): Promise<SecureContext> {
    const leaf = await mintPem({ subject: `CN=${name}`, san: { type: "dns", value: name } });
    return createSecureContext({ key: leaf.keyPem, cert: leaf.certPem, minVersion: "TLSv1.2" });
  }

  async function mintPem(who: { subject: string; san: { type: "dns" | "ip"; value: string } }): Promise<{ certPem: string; keyPem: string }> {
    const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const now = Date.now();
    const notAfter = Math.min(now + LEAF_VALIDITY_MS, caCert.notAfter.getTime());
    const leaf = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial(),
        subject: who.subject,
        issuer: caCert.subject,
        notBefore: new Date(now - BACKDATE_MS),
        notAfter: new Date(notAfter),
        signingKey: caKey,
        publicKey: keys.publicKey,
        signingAlgorithm: ALG,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
          new x509.SubjectAlternativeNameExtension([who.san], false),
          await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto),
        ],
      },
      crypto,
    );
    const leafKey = toPem(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
    return { keyPem: leafKey, certPem: leaf.toString("pem") + "\n" + certPem };
  }

  const ipLeaves = new Map<string, { leaf: Promise<{ certPem: string; keyPem: string }>; expires: number }>();

  return {
    certPem,
    keyPem,
    contextFor(name: string): Promise<SecureContext> {
      const hit = cache.get(name);
      // A Map iterates in insertion order: re-inserting on use keeps the least recently used first.
      cache.delete(name);
      if (hit && hit.expires > Date.now() + DAY_MS / 2) {
        cache.set(name, hit);
        return hit.ctx;
      }
      const entry = { ctx: mint(name), expires: Date.now() + LEAF_VALIDITY_MS };
      cache.set(name, entry);
      entry.ctx.catch(() => {
        if (cache.get(name) === entry) cache.delete(name);
      });
      // Bounded: a sandbox may send any number of server names (a policy with `*.example.com`).
      for (const oldest of cache.keys()) {
        if (cache.size <= maxLeaves) break;
        cache.delete(oldest);
      }
      return entry.ctx;
    },
    ipLeaf(address: string): Promise<{ certPem: string; keyPem: string }> {
      const hit = ipLeaves.get(address);
      if (hit && hit.expires > Date.now() + DAY_MS / 2) return hit.leaf;
      // The subject is not a host name on purpose: a client checking the CA's DNS name constraints
      // against a name-like CN would refuse the leaf; the address is in the SAN, where it is checked.
      const entry = { leaf: mintPem({ subject: "CN=Paddock database gateway", san: { type: "ip", value: address } }), expires: Date.now() + LEAF_VALIDITY_MS };
      ipLeaves.set(address, entry);
      entry.leaf.catch(() => {
        if (ipLeaves.get(address) === entry) ipLeaves.delete(address);
      });
      // One gateway address per installation: a bound of a few is plenty.
      if (ipLeaves.size > 4) ipLeaves.delete(ipLeaves.keys().next().value as string);
      return entry.leaf;
    },
  };
}
