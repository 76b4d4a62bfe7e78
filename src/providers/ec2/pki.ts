/**
 * The mutual-TLS PKI between a control plane and its remote nodes (docs/providers.md, "EC2").
 *
 * One CA per EC2 provider instance (the `nodeCa` credential, kept in the vault as
 * `provider/<instance>/nodeCa`: its certificate and key as one PEM bundle, made by
 * `paddock node-ca`). It signs two kinds of leaf, both short-lived:
 * - a node certificate per host (serverAuth only), named `<host name>.node.paddock.internal`: a
 *   random name minted for that host at launch, so the control plane pins each connection to the
 *   one host it launched (a certificate of another host, even from the same CA, is refused);
 * - the control plane's client certificate (clientAuth only), reissued in memory as it nears
 *   expiry.
 * A node accepts only client certificates this CA signed with clientAuth, at the TLS layer: a node
 * certificate cannot be used to talk to another node.
 */
import "reflect-metadata";
import { webcrypto, randomBytes, createPrivateKey, X509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { invalid } from "../../core/errors.ts";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
const CA_VALIDITY_MS = 3 * 365 * DAY_MS;
/** A host whose certificate nears this age is not given new sessions (it is replaced when idle). */
export const NODE_CERT_VALIDITY_MS = 7 * DAY_MS;
export const CLIENT_CERT_VALIDITY_MS = DAY_MS;
/** Clock skew between the control plane and a fresh host. */
const BACKDATE_MS = 5 * 60_000;
/** The DNS suffix of node names (never resolved: names only pin certificates). */
export const NODE_NAME_SUFFIX = ".node.paddock.internal";

const crypto = webcrypto;
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export interface PemPair {
  certPem: string;
  keyPem: string;
}

/** A node CA: its certificate, and a signer that keeps the key in this object. */
export interface NodeCa {
  readonly certPem: string;
  /** The bundle to store in the vault (certificate then key); a secret. */
  bundle(): string;
  /** A node's server certificate for `nodeName` (see `newNodeName`). */
  issueNode(nodeName: string, opts?: Validity): Promise<PemPair>;
  /** A control-plane client certificate. */
  issueClient(opts?: Validity): Promise<PemPair>;
}

/** Override the validity window (tests make expired certificates with it). */
export interface Validity {
  notBefore?: Date;
  notAfter?: Date;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString("hex");
}

function pemToDer(pem: string): ArrayBuffer {
  const buf = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function keyToPem(der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n");
  return `-----BEGIN PRIVATE KEY-----\n${b64}${b64.endsWith("\n") ? "" : "\n"}-----END PRIVATE KEY-----\n`;
}

/** A random host name for one launch, e.g. `n-3f2a….node.paddock.internal`. */
export function newNodeName(): string {
  return `n-${randomBytes(10).toString("hex")}${NODE_NAME_SUFFIX}`;
}

export async function createNodeCa(label = "Paddock node CA"): Promise<NodeCa> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: `CN=${label.replace(/[,+="<>#;\\]/g, "_")}`,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + CA_VALIDITY_MS),
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return caFrom(cert, keys.privateKey, keyToPem(await crypto.subtle.exportKey("pkcs8", keys.privateKey)));
}

/** Load a CA bundle (certificate + key PEM, as `bundle()` wrote it). Rejects `invalid_argument` naming what is wrong, never quoting the key. */
export async function loadNodeCa(bundle: string): Promise<NodeCa> {
  const certPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(bundle)?.[0];
  const keyPem = /-----BEGIN (?:EC |)PRIVATE KEY-----[\s\S]+?-----END (?:EC |)PRIVATE KEY-----/.exec(bundle)?.[0];
  if (!certPem || !keyPem) throw invalid("the nodeCa credential must hold the node CA's certificate and private key as PEM (make one with `paddock node-ca`)");
  let cert: x509.X509Certificate;
  let key: CryptoKey;
  let pkcs8: string;
  try {
    cert = new x509.X509Certificate(certPem);
    pkcs8 = createPrivateKey(keyPem).export({ format: "pem", type: "pkcs8" }).toString();
    key = await crypto.subtle.importKey("pkcs8", pemToDer(pkcs8), ALG, true, ["sign"]);
  } catch {
    throw invalid("the nodeCa credential is not a usable P-256 certificate and key (make one with `paddock node-ca`)");
  }
  if (!new X509Certificate(certPem).checkPrivateKey(createPrivateKey(pkcs8))) throw invalid("the nodeCa credential's key does not belong to its certificate");
  if (cert.notAfter.getTime() < Date.now()) throw invalid(`the node CA expired on ${cert.notAfter.toISOString()}: make a new one with \`paddock node-ca\``);
  return caFrom(cert, key, pkcs8);
}

function caFrom(cert: x509.X509Certificate, key: CryptoKey, keyPem: string): NodeCa {
  const certPem = cert.toString("pem") + "\n";
  const issue = async (subject: string, usage: x509.ExtendedKeyUsage, san: string | null, lifetimeMs: number, v: Validity = {}): Promise<PemPair> => {
    const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const now = Date.now();
    const leaf = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial(),
        subject,
        issuer: cert.subject,
        notBefore: v.notBefore ?? new Date(now - BACKDATE_MS),
        notAfter: v.notAfter ?? new Date(Math.min(now + lifetimeMs, cert.notAfter.getTime())),
        signingKey: key,
        publicKey: keys.publicKey,
        signingAlgorithm: ALG,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          // One purpose each: OpenSSL then refuses a node certificate offered as a client's, and the reverse.
          new x509.ExtendedKeyUsageExtension([usage], true),
          ...(san ? [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: san }], false)] : []),
          await x509.AuthorityKeyIdentifierExtension.create(cert, false, crypto),
        ],
      },
      crypto,
    );
    return { certPem: leaf.toString("pem") + "\n", keyPem: keyToPem(await crypto.subtle.exportKey("pkcs8", keys.privateKey)) };
  };
  return {
    certPem,
    bundle: () => certPem + keyPem,
    issueNode: (nodeName, v) => {
      if (!/^[a-z0-9-]{1,63}\.node\.paddock\.internal$/.test(nodeName)) throw invalid(`bad node name ${JSON.stringify(nodeName)}`);
      return issue(`CN=${nodeName}`, x509.ExtendedKeyUsage.serverAuth, nodeName, NODE_CERT_VALIDITY_MS, v);
    },
    issueClient: (v) => issue("CN=paddock-control-plane", x509.ExtendedKeyUsage.clientAuth, null, CLIENT_CERT_VALIDITY_MS, v),
  };
}

/** When a certificate (PEM) stops being valid. */
export function certExpiry(certPem: string): Date {
  return new Date(new X509Certificate(certPem).validTo);
}
