import type { EgressAttachment, Store } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import type { Gateway, GatewayRegistration, GatewaySessionSpec, NetworkPolicy, SecretBinding } from "../gateway/index.ts";
import { defaultBinding } from "../gateway/index.ts";
import type { Vault } from "../gateway/vault.ts";

/**
 * Connects sandboxes to the egress gateway: registers a session's policy and secret bindings,
 * hands the sandbox its placeholders, proxy settings and CA, and keeps the registration (sealed
 * with the vault key: it holds the session CA's private key) so a restarted control plane can
 * serve running sessions again with the same placeholders and CA.
 */
export const CA_PATH = "/etc/paddock/ca.pem";
const BUNDLE_PATH = "/etc/ssl/certs/ca-certificates.crt";

export class Egress {
  /**
   * One CA per environment version (DESIGN allows a CA per session or per environment): its key
   * stays on the host either way, and reusing it takes CA creation off every session start after
   * the first. Kept in memory only; sessions recovered after a restart bring their own.
   */
  private readonly cas = new Map<string, { caCertPem: string; caKeyPem: string }>();

  constructor(private readonly deps: { gateway: Gateway; vault: Vault; store: Store }) {}

  /**
   * The `egress` hook of a session's sandbox spec. `protectedBranches`: where this session may
   * not push (its principal lacks deploy); [] for none.
   */
  forSession(id: string, environment: string, version: number, spec: EnvironmentSpec, fileName: string, protectedBranches: string[] = []): (ip: string) => Promise<EgressAttachment> {
    return async (sourceIp) => {
      const caKey = `${environment}@${version}`;
      const ca = this.cas.get(caKey);
      const reg = await this.deps.gateway.register(
        await this.sessionSpec(id, sourceIp, environment, spec, fileName, protectedBranches),
        ca ? { placeholders: {}, ...ca } : undefined,
      );
      if (!ca) this.cas.set(caKey, { caCertPem: reg.caCertPem, caKeyPem: reg.caKeyPem });
      await this.deps.vault.seal(sealKey(id), JSON.stringify(reg));
      return this.attachment(reg, reg.placeholders);
    };
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

  /** After a restart: serve a running session again with its stored placeholders and CA. */
  async restore(id: string, sourceIp: string, environment: string, spec: EnvironmentSpec, fileName: string, protectedBranches: string[] = []): Promise<void> {
    const sealed = await this.deps.vault.unseal(sealKey(id));
    const restore = sealed ? (JSON.parse(sealed) as GatewayRegistration & { caKeyPem: string }) : undefined;
    await this.deps.gateway.register(await this.sessionSpec(id, sourceIp, environment, spec, fileName, protectedBranches), restore);
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
    };
  }

  async detach(id: string): Promise<void> {
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
      const known = defaultBinding(s.name) ?? defaultBinding(s.name, (await this.deps.vault.resolve(s.name, { environment })) ?? undefined);
      const cleartext = s.cleartext === true ? { cleartext: true } : {};
      if (s.hosts) out.push({ name: s.name, hosts: s.hosts, in: s.in, kind: known?.kind ?? "http", ...cleartext });
      else if (known) out.push({ ...known, in: s.in, ...cleartext });
      else out.push({ name: s.name, hosts: [], in: s.in, kind: "http", ...cleartext });
    }
    return out;
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

const sealKey = (id: string) => `gateway-registration:${id}`;

/** A network policy with where each rule was written, for records and messages. */
function policyOf(p: { allow: string[]; deny: string[] }, path: string, spec: EnvironmentSpec, fileName: string): NetworkPolicy {
  const where = (list: "allow" | "deny", i: number) => {
    const loc = spec.locations[`${path}.${list}[${i}]`];
    return loc ? `${fileName}:${loc.line}` : "default";
  };
  return { allow: p.allow, deny: p.deny, allowSources: p.allow.map((_, i) => where("allow", i)), denySources: p.deny.map((_, i) => where("deny", i)) };
}
