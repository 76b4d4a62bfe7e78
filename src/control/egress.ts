import { randomBytes } from "node:crypto";
import type { EgressAttachment, RemoteEgressAttachment, Store } from "../core/index.ts";
import { PaddockError } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import type { Gateway, GatewayRegistration, GatewaySessionSpec, NetworkPolicy, RemoteCredential, SecretBinding } from "../gateway/index.ts";
import { GATEWAY_CA_VALIDITY_MS, SANDBOX_CA_PATH, defaultBinding, gatewayCa, isDatabaseUrl, passwordHash } from "../gateway/index.ts";
import type { Vault } from "../gateway/vault.ts";

/**
 * Connects sandboxes to the egress gateway: registers a session's policy and secret bindings,
 * hands the sandbox its placeholders, proxy settings and CA, and keeps the registration (sealed
 * with the vault key: it holds the session CA's private key) so a restarted control plane can
 * serve running sessions again with the same placeholders and CA.
 */
export const CA_PATH = SANDBOX_CA_PATH;
const BUNDLE_PATH = "/etc/ssl/certs/ca-certificates.crt";

export class Egress {
  /**
   * One CA per environment version (DESIGN allows a CA per session or per environment): its key
   * stays on the host either way, and reusing it takes CA creation off every session start after
   * the first. Kept in memory only; sessions recovered after a restart bring their own.
   */
  private readonly cas = new Map<string, { caCertPem: string; caKeyPem: string }>();
  /** Pool members' CAs until they are claimed, so a claim needs no vault read. */
  private readonly memberCas = new Map<string, { caCertPem: string; caKeyPem: string }>();

  /**
   * `databaseWrite`: whether whoever acts in a session (its agent with the intersection, else its
   * human) has `write` on the environment, asked each time the session is registered; absent or
   * false makes its database connections read-only (docs/database.md, "Read-only by role").
   */
  constructor(
    private readonly deps: {
      gateway: Gateway;
      vault: Vault;
      store: Store;
      databaseWrite?: (sessionId: string) => Promise<boolean>;
      /** The installation gateway CA's certificate (`loadGatewayCa`), when the remote proxy is on. */
      gatewayCaPem?: string;
    },
  ) {}

  /**
   * The `remoteEgress` hook of a remote provider's session (`capabilities.network` "proxy"):
   * the same registration as `forSession` (policy, secrets, protected branches, snapshot
   * placeholders), known to the gateway by a fresh proxy credential instead of a source address.
   * The credential (64-bit user, 256-bit password) is in the returned proxy URL only; the gateway
   * and the sealed registration keep the password's SHA-256. Remote sessions get no pool members
   * (pools are local-only for now).
   */
  forRemoteSession(
    id: string,
    environment: string,
    version: number,
    spec: EnvironmentSpec,
    fileName: string,
    protectedBranches: string[] = [],
    restore?: SnapshotRegistration,
  ): () => Promise<RemoteEgressAttachment> {
    return async () => {
      const endpoint = this.deps.gateway.remoteProxy;
      if (!endpoint || !this.deps.gatewayCaPem) {
        throw new PaddockError("unavailable", "remote sandboxes need the gateway's remote proxy: start Paddock with --gateway-remote-listen ADDR:PORT and --gateway-public-host HOST (docs/gateway.md, \"Remote sandboxes\")");
      }
      const user = `pdk${randomBytes(8).toString("hex")}`;
      const password = randomBytes(32).toString("base64url");
      const remote: RemoteCredential = { user, passwordSha256: passwordHash(password) };
      const ca = restore ? { caCertPem: restore.caCertPem, caKeyPem: restore.caKeyPem } : await this.versionCa(environment, version);
      const { sourceIp: _none, ...base } = await this.sessionSpec(id, "", environment, spec, fileName, protectedBranches);
      const reg = await this.deps.gateway.register({ ...base, remote }, ca ? { placeholders: restore?.placeholders ?? {}, ...ca } : undefined);
      if (!ca) this.cas.set(`${environment}@${version}`, { caCertPem: reg.caCertPem, caKeyPem: reg.caKeyPem });
      await this.deps.vault.seal(sealKey(id), JSON.stringify({ ...reg, remote } satisfies SealedRegistration));
      const host = endpoint.publicHost.includes(":") ? `[${endpoint.publicHost}]` : endpoint.publicHost;
      const proxyUrl = `https://${user}:${password}@${host}:${endpoint.port}`;
      return this.remoteAttachment(reg, proxyUrl, { host: endpoint.publicHost, port: endpoint.port });
    };
  }

  /**
   * After a restart: serve a running remote session again with its stored placeholders, CA and
   * credential hash. Resolves false when nothing is stored (the sandbox then has no way out: its
   * credential opens nothing, fail closed), so one such session does not stop the others' recovery.
   */
  async restoreRemote(id: string, environment: string, spec: EnvironmentSpec, fileName: string, protectedBranches: string[] = []): Promise<boolean> {
    const sealed = await this.deps.vault.unseal(sealKey(id));
    const stored = sealed ? (JSON.parse(sealed) as SealedRegistration) : null;
    if (!stored?.remote) return false;
    const { sourceIp: _none, ...base } = await this.sessionSpec(id, "", environment, spec, fileName, protectedBranches);
    await this.deps.gateway.register({ ...base, remote: stored.remote }, stored);
    return true;
  }

  /**
   * The `egress` hook of a session's sandbox spec. `protectedBranches`: where this session may
   * not push (its principal lacks deploy); [] for none. `restore`: a snapshot's placeholders and
   * CA (`snapshotRegistration`) for a session started from it: each secret the session's own spec
   * binds keeps the placeholder the snapshot's files may hold; the spec decides which (the gateway
   * maps only the names it binds), so a secret no longer bound gets no mapping at all.
   */
  forSession(
    id: string,
    environment: string,
    version: number,
    spec: EnvironmentSpec,
    fileName: string,
    protectedBranches: string[] = [],
    restore?: SnapshotRegistration,
  ): (ip: string) => Promise<EgressAttachment> {
    return async (sourceIp) => {
      const ca = restore ? { caCertPem: restore.caCertPem, caKeyPem: restore.caKeyPem } : await this.versionCa(environment, version);
      const reg = await this.deps.gateway.register(
        await this.sessionSpec(id, sourceIp, environment, spec, fileName, protectedBranches),
        ca ? { placeholders: restore?.placeholders ?? {}, ...ca } : undefined,
      );
      if (!ca) this.cas.set(`${environment}@${version}`, { caCertPem: reg.caCertPem, caKeyPem: reg.caKeyPem });
      await this.deps.vault.seal(sealKey(id), JSON.stringify(reg));
      return this.attachment(reg, reg.placeholders);
    };
  }

  /**
   * The `egress` hook of a pool member's sandbox: its version's policy and CA, and no secret at all
   * (it has no principal yet). `claim` binds the secrets later, with the same CA.
   */
  forPoolMember(id: string, environment: string, version: number, spec: EnvironmentSpec, fileName: string): (ip: string) => Promise<EgressAttachment> {
    return async (sourceIp) => {
      const ca = await this.versionCa(environment, version);
      const reg = await this.deps.gateway.register(
        { ...(await this.sessionSpec(id, sourceIp, environment, spec, fileName, [])), secrets: [] },
        ca ? { placeholders: {}, ...ca } : undefined,
      );
      if (!ca) this.cas.set(`${environment}@${version}`, { caCertPem: reg.caCertPem, caKeyPem: reg.caKeyPem });
      this.memberCas.set(id, { caCertPem: reg.caCertPem, caKeyPem: reg.caKeyPem });
      await this.deps.vault.seal(sealKey(id), JSON.stringify(reg));
      return this.attachment(reg, {});
    };
  }

  /**
   * A claimed pool member becomes a session: registered again under the same id and CA, now with
   * its secret bindings (fresh placeholders) and its principal's protected branches. Resolves the
   * placeholders, which the caller hands to the sandbox (`Provider.setEnv`) before any command runs.
   */
  async claim(id: string, sourceIp: string, environment: string, spec: EnvironmentSpec, fileName: string, protectedBranches: string[]): Promise<Record<string, string>> {
    let ca = this.memberCas.get(id);
    if (!ca) {
      const sealed = await this.deps.vault.unseal(sealKey(id));
      if (!sealed) throw new PaddockError("unavailable", `pool member ${id} has no stored gateway registration`);
      const reg = JSON.parse(sealed) as GatewayRegistration & { caKeyPem: string };
      ca = { caCertPem: reg.caCertPem, caKeyPem: reg.caKeyPem };
    }
    const reg = await this.deps.gateway.register(await this.sessionSpec(id, sourceIp, environment, spec, fileName, protectedBranches), { placeholders: {}, ...ca });
    this.memberCas.delete(id);
    await this.deps.vault.seal(sealKey(id), JSON.stringify(reg));
    return reg.placeholders;
  }

  /** The placeholders and CA a running session was registered with (null when it has no egress). */
  async registrationOf(id: string): Promise<(GatewayRegistration & { caKeyPem: string }) | null> {
    const sealed = await this.deps.vault.unseal(sealKey(id));
    return sealed ? (JSON.parse(sealed) as GatewayRegistration & { caKeyPem: string }) : null;
  }

  /** Keep a snapshot's placeholders and CA, sealed with the vault key, beside (never in) its record. */
  async sealSnapshot(snapshotId: string, reg: SnapshotRegistration): Promise<void> {
    await this.deps.vault.seal(snapshotKey(snapshotId), JSON.stringify(reg));
  }

  async snapshotRegistration(snapshotId: string): Promise<SnapshotRegistration | null> {
    const sealed = await this.deps.vault.unseal(snapshotKey(snapshotId));
    return sealed ? (JSON.parse(sealed) as SnapshotRegistration) : null;
  }

  async dropSnapshot(snapshotId: string): Promise<void> {
    await this.deps.store.deleteSealed(snapshotKey(snapshotId));
  }

  /** The CA every session of one environment version shares (see `cas`), if made already. */
  private async versionCa(environment: string, version: number): Promise<{ caCertPem: string; caKeyPem: string } | undefined> {
    return this.cas.get(`${environment}@${version}`);
  }

  /** The `egress` hook of a build step's sandbox: the build policy, and never a secret. */
  forBuild(id: string, environment: string, spec: EnvironmentSpec, fileName: string): (ip: string) => Promise<EgressAttachment> {
    return async (sourceIp) => {
      const reg = await this.deps.gateway.register({
        id,
        sourceIp,
        policy: policyOf(spec.build.network, "build.network", spec, fileName),
        secrets: [],
        scope: { environment },
      });
      return this.attachment(reg, {});
    };
  }

  /**
   * After a restart: serve a running session again with its stored placeholders and CA. A pool
   * member (`member: true`) is served with its policy and no secrets, as it was registered.
   */
  async restore(id: string, sourceIp: string, environment: string, spec: EnvironmentSpec, fileName: string, protectedBranches: string[] = [], opts: { member?: boolean } = {}): Promise<void> {
    const sealed = await this.deps.vault.unseal(sealKey(id));
    const restore = sealed ? (JSON.parse(sealed) as GatewayRegistration & { caKeyPem: string }) : undefined;
    const sessionSpec = await this.sessionSpec(id, sourceIp, environment, spec, fileName, protectedBranches);
    await this.deps.gateway.register(opts.member ? { ...sessionSpec, secrets: [] } : sessionSpec, restore);
    if (opts.member && restore) this.memberCas.set(id, { caCertPem: restore.caCertPem, caKeyPem: restore.caKeyPem });
  }

  /** What the gateway is told about a session, at start and again after a restart. */
  private async sessionSpec(id: string, sourceIp: string, environment: string, spec: EnvironmentSpec, fileName: string, protectedBranches: string[]): Promise<GatewaySessionSpec> {
    return {
      id,
      sourceIp,
      policy: policyOf(spec.guardrails.network, "guardrails.network", spec, fileName),
      secrets: await this.bindings(spec, environment),
      scope: { environment },
      protectedBranches,
      databaseWrite: (await this.deps.databaseWrite?.(id)) ?? false,
    };
  }

  async detach(id: string): Promise<void> {
    this.memberCas.delete(id);
    await this.deps.gateway.unregister(id);
    await this.deps.store.deleteSealed(sealKey(id));
  }

  /**
   * Each secret with the hosts it may go to: the file's `hosts:`, else the well-known default. A
   * default that depends on the value (SENTRY_DSN → its DSN's host) reads the value once here; with
   * no value set yet, the secret gets a placeholder that is swapped nowhere.
   */
  private async bindings(spec: EnvironmentSpec, environment: string): Promise<SecretBinding[]> {
    const out: SecretBinding[] = [];
    for (const s of spec.secrets) {
      // `kind:` in the file wins over the name: a `kind: postgres` secret goes to the database
      // gateway whatever its name, and `kind: http` makes a *_DATABASE_URL an HTTP secret.
      if (s.kind === "postgres" || (s.kind === undefined && isDatabaseUrl(s.name))) {
        out.push({ name: s.name, hosts: [], in: s.in, kind: "database" });
        continue;
      }
      const byName = defaultBinding(s.name) ?? defaultBinding(s.name, (await this.deps.vault.resolve(s.name, { environment })) ?? undefined);
      const known = byName?.kind === "database" ? null : byName;
      const cleartext = s.cleartext === true ? { cleartext: true } : {};
      if (s.hosts) out.push({ name: s.name, hosts: s.hosts, in: s.in, kind: known?.kind ?? "http", ...cleartext });
      else if (known) out.push({ ...known, in: s.in, ...cleartext });
      else out.push({ name: s.name, hosts: [], in: s.in, kind: "http", ...cleartext });
    }
    return out;
  }

  private remoteAttachment(reg: GatewayRegistration, proxyUrl: string, allow: { host: string; port: number }): RemoteEgressAttachment {
    return remoteAttachmentOf(reg, this.deps.gatewayCaPem ?? "", proxyUrl, allow);
  }

  private attachment(reg: GatewayRegistration, placeholders: Record<string, string>): EgressAttachment {
    const { address, proxyPort } = this.deps.gateway.endpoints;
    const proxy = `http://${address}:${proxyPort}`;
    return {
      env: {
        ...placeholders,
        HTTP_PROXY: proxy,
        HTTPS_PROXY: proxy,
        http_proxy: proxy,
        https_proxy: proxy,
        NO_PROXY: "localhost,127.0.0.1,::1",
        no_proxy: "localhost,127.0.0.1,::1",
        // Every TLS connection out of the sandbox ends at the gateway, so its CA is the only one
        // the sandbox needs; each runtime's own variable points at it.
        SSL_CERT_FILE: BUNDLE_PATH,
        NODE_EXTRA_CA_CERTS: CA_PATH,
        REQUESTS_CA_BUNDLE: BUNDLE_PATH,
        GIT_SSL_CAINFO: BUNDLE_PATH,
        CURL_CA_BUNDLE: BUNDLE_PATH,
        PADDOCK_GATEWAY: address,
      },
      files: [
        { path: CA_PATH, content: reg.caCertPem },
        { path: BUNDLE_PATH, content: reg.caCertPem },
      ],
    };
  }
}

/** A remote sandbox's way out: the proxy URL with its credential, and both CAs it must trust. */
function remoteAttachmentOf(reg: GatewayRegistration, gatewayCaPem: string, proxyUrl: string, allow: { host: string; port: number }): RemoteEgressAttachment {
  // One bundle: the gateway CA verifies the proxy itself, the session CA every site behind it.
  const bundle = `${gatewayCaPem.trimEnd()}\n${reg.caCertPem}`;
  return {
    env: {
      ...reg.placeholders,
      HTTPS_PROXY: proxyUrl,
      HTTP_PROXY: proxyUrl,
      ALL_PROXY: proxyUrl,
      https_proxy: proxyUrl,
      http_proxy: proxyUrl,
      all_proxy: proxyUrl,
      NO_PROXY: "localhost,127.0.0.1,::1",
      no_proxy: "localhost,127.0.0.1,::1",
      SSL_CERT_FILE: BUNDLE_PATH,
      NODE_EXTRA_CA_CERTS: CA_PATH,
      REQUESTS_CA_BUNDLE: BUNDLE_PATH,
      GIT_SSL_CAINFO: BUNDLE_PATH,
      CURL_CA_BUNDLE: BUNDLE_PATH,
      // git verifies an HTTPS proxy with a variable of its own.
      GIT_PROXY_SSL_CAINFO: BUNDLE_PATH,
      PADDOCK_GATEWAY: allow.host,
    },
    files: [
      { path: CA_PATH, content: bundle },
      { path: BUNDLE_PATH, content: bundle },
    ],
    proxyUrl,
    allow: [allow],
  };
}

/**
 * The installation's gateway CA (its certificate signs the remote proxy listener's), sealed with
 * the vault key under `gateway-ca` like every other key the gateway uses. Made on first use, and
 * made again when `publicHost` changed (its name constraint names it) or less than 30 days of its
 * year are left (sandboxes keep trusting the CA they started with for their whole life).
 */
export async function loadGatewayCa(vault: Vault, publicHost: string): Promise<{ certPem: string; keyPem: string }> {
  const sealed = await vault.unseal(GATEWAY_CA_KEY);
  const kept = sealed ? (JSON.parse(sealed) as { certPem: string; keyPem: string; publicHost: string; notAfter: number }) : null;
  if (kept && kept.publicHost === publicHost && kept.notAfter - Date.now() > 30 * 86_400_000) return { certPem: kept.certPem, keyPem: kept.keyPem };
  const ca = await gatewayCa(publicHost);
  const made = { certPem: ca.certPem, keyPem: ca.keyPem, publicHost, notAfter: Date.now() + GATEWAY_CA_VALIDITY_MS - 60_000 };
  await vault.seal(GATEWAY_CA_KEY, JSON.stringify(made));
  return { certPem: made.certPem, keyPem: made.keyPem };
}

const GATEWAY_CA_KEY = "gateway-ca";

/** What is sealed per session: the registration, and for a remote session its credential (hash only). */
type SealedRegistration = GatewayRegistration & { caKeyPem: string; remote?: RemoteCredential };

const sealKey = (id: string) => `gateway-registration:${id}`;
const snapshotKey = (id: string) => `snapshot-placeholders:${id}`;

/**
 * What a snapshot keeps of its source session's gateway registration (sealed under
 * `snapshot-placeholders:<id>`): the placeholders its files may hold, and the CA its files may
 * trust. Never a secret value: placeholders are random, and the CA key signs leaf certificates only.
 */
export interface SnapshotRegistration {
  sourceSession: string;
  environment: string;
  version: number;
  /** Secret name → the source session's placeholder. */
  placeholders: Record<string, string>;
  caCertPem: string;
  caKeyPem: string;
}

/** A network policy with where each rule was written, for records and messages. */
function policyOf(p: { allow: string[]; deny: string[] }, path: string, spec: EnvironmentSpec, fileName: string): NetworkPolicy {
  const where = (list: "allow" | "deny", i: number) => {
    const loc = spec.locations[`${path}.${list}[${i}]`];
    return loc ? `${fileName}:${loc.line}` : "default";
  };
  return { allow: p.allow, deny: p.deny, allowSources: p.allow.map((_, i) => where("allow", i)), denySources: p.deny.map((_, i) => where("deny", i)) };
}
