/**
 * The sessions a gateway serves, keyed by id and by source address (or, for remote sandboxes, by
 * proxy user). A session holds its policy,
 * its secret bindings, its placeholders and its CA; it never holds a secret value (values are read
 * from the SecretSource per request, so a rotated value takes effect on the next request).
 */
import { Redactor, type Replacement } from "./redact.ts";
import type { Socket } from "node:net";
import { inspect } from "node:util";
import { PaddockError, conflict, invalid } from "../core/errors.ts";
import { canonicalIp } from "./addresses.ts";
import { createSessionCa, type SessionCa } from "./ca.ts";
import { DEFAULT_LIMITS, SessionUsage } from "./limits.ts";
import { makeDatabasePlaceholder, makePlaceholder, parsePlaceholder, type Placeholder } from "./placeholders.ts";
import { permittedDnsNames } from "./policy.ts";
import type { GatewayLimits, GatewayRegistration, GatewaySessionSpec, SecretBinding, SecretSource } from "./types.ts";

export interface Session {
  readonly spec: GatewaySessionSpec;
  readonly placeholders: ReadonlyMap<string, Placeholder>;
  readonly ca: SessionCa;
  /** Client connections of this session: destroyed on unregister. */
  readonly sockets: Set<Socket>;
  /** What the session holds of the gateway (connections, buffered bytes), against GatewayLimits. */
  readonly usage: SessionUsage;
  /** The compiled response redactor for the session's current secret values (see redactorFor). */
  redactor?: { key: string; value: Redactor };
}

/**
 * The session's redactor for `reps`, compiled once and reused while the values stay the same:
 * compiling costs tens of microseconds per secret, which every request would otherwise pay.
 */
export function redactorFor(session: Session, reps: Replacement[]): Redactor {
  const key = reps.map((r) => `${r.from.toString("base64")}:${r.to.toString("base64")}`).join(",");
  if (session.redactor?.key !== key) session.redactor = { key, value: new Redactor(reps) };
  return session.redactor.value;
}

/**
 * A secret as one request sees it: binding, placeholder, and the value read for this request. It
 * redacts itself when logged, inspected or serialised (STYLE.md point 7).
 */
export class SecretMaterial {
  constructor(
    readonly binding: SecretBinding,
    readonly placeholder: Placeholder,
    readonly value: string | null,
  ) {}

  redacted(): { name: string; hosts: string[]; placeholder: string; value: "[redacted]" | null } {
    return { name: this.binding.name, hosts: this.binding.hosts, placeholder: this.placeholder.text, value: this.value === null ? null : "[redacted]" };
  }

  toJSON(): unknown {
    return this.redacted();
  }

  [inspect.custom](): unknown {
    return this.redacted();
  }

  toString(): string {
    return `SecretMaterial(${this.binding.name})`;
  }
}

export class SessionTable {
  private readonly byId = new Map<string, Session>();
  private readonly bySource = new Map<string, Session>();
  /** Remote sessions by proxy user name. */
  private readonly byRemoteUser = new Map<string, Session>();
  /**
   * Loaded CAs by certificate: sessions that share a CA (one per environment version) share the
   * parsed key and its leaf cache, so registering the next session costs no key import. Bounded.
   */
  private readonly loadedCas = new Map<string, Promise<SessionCa>>();

  /**
   * `databaseHost`: the gateway's address as sandboxes reach it, the host of every database
   * placeholder URL (docs/database.md). Absent: database secrets get a URL-shaped placeholder
   * like any other URL secret (the HTTP gateway alone, as in tests without a Postgres listener).
   */
  constructor(
    private readonly secrets: SecretSource,
    private readonly limits: GatewayLimits = DEFAULT_LIMITS,
    private readonly databaseHost?: string,
  ) {}

  private loadCa(id: string, permitted: string[] | null, keep: { certPem: string; keyPem: string }): Promise<SessionCa> {
    let ca = this.loadedCas.get(keep.certPem);
    if (!ca) {
      ca = createSessionCa(id, permitted, keep, { leafCacheSize: this.limits.leafCacheSize });
      ca.catch(() => this.loadedCas.delete(keep.certPem));
      this.loadedCas.set(keep.certPem, ca);
      if (this.loadedCas.size > 64) this.loadedCas.delete(this.loadedCas.keys().next().value as string);
    }
    return ca;
  }

  /** Register (or re-register) a session; see Gateway.register. Rejects with a PaddockError. */
  async register(spec: GatewaySessionSpec, restore?: GatewayRegistration & { caKeyPem?: string }): Promise<GatewayRegistration & { caKeyPem: string }> {
    const who = this.identity(spec);
    const placeholders = new Map<string, Placeholder>();
    for (const binding of spec.secrets) {
      const restored = restore?.placeholders[binding.name];
      if (restored) {
        placeholders.set(binding.name, parsePlaceholder(restored));
        continue;
      }
      // The value is read only to learn its shape (URL with userinfo or not; a database URL's
      // database name); it is not kept.
      const value = await this.secrets.resolve(binding.name, spec.scope);
      placeholders.set(binding.name, binding.kind === "database" && this.databaseHost !== undefined ? makeDatabasePlaceholder(value, this.databaseHost) : makePlaceholder(value));
    }
    if (restore && !restore.caKeyPem) throw invalid("restoring a registration needs caKeyPem as well as caCertPem");
    let permitted: string[] | null;
    try {
      permitted = permittedDnsNames(spec.policy);
    } catch (err) {
      throw new PaddockError("invalid_argument", "the session's network policy does not parse; entries must be strings like api.example.com, *.example.com or host:port", undefined, { cause: err });
    }
    let ca: SessionCa;
    try {
      const keep = restore?.caKeyPem ? { certPem: restore.caCertPem, keyPem: restore.caKeyPem } : undefined;
      ca = keep ? await this.loadCa(spec.id, permitted, keep) : await createSessionCa(spec.id, permitted, undefined, { leafCacheSize: this.limits.leafCacheSize });
    } catch (err) {
      // Never echo key material: say what failed, keep the cause for debugging off the wire.
      throw new PaddockError("invalid_argument", "the stored session CA could not be loaded; register without restore to make a new one", undefined, { cause: err });
    }
    const old = this.byId.get(spec.id);
    if (old) this.drop(old);
    // A re-registered session keeps its open connections, and so what they hold.
    const session: Session = { spec: { ...spec, ...who.spec }, placeholders, ca, sockets: old?.sockets ?? new Set(), usage: old?.usage ?? new SessionUsage(this.limits) };
    this.byId.set(spec.id, session);
    if (who.source !== undefined) this.bySource.set(who.source, session);
    if (spec.remote) this.byRemoteUser.set(spec.remote.user, session);
    return { placeholders: Object.fromEntries([...placeholders].map(([k, v]) => [k, v.text])), caCertPem: ca.certPem, caKeyPem: ca.keyPem };
  }

  unregister(id: string): boolean {
    const session = this.byId.get(id);
    if (!session) return false;
    this.drop(session);
    for (const s of session.sockets) s.destroy();
    session.sockets.clear();
    session.usage.bursts.close();
    return true;
  }

  /**
   * How the gateway will know the session's connections: its source address (local sandboxes) or
   * its proxy credential (remote ones), never both. Throws when neither is valid or another session
   * holds it.
   */
  private identity(spec: GatewaySessionSpec): { source?: string; spec: Partial<GatewaySessionSpec> } {
    if ((spec.sourceIp === undefined) === (spec.remote === undefined)) throw invalid(`session ${spec.id} must have exactly one of sourceIp and remote`);
    if (spec.remote) {
      const { user, passwordSha256 } = spec.remote;
      if (!/^[A-Za-z0-9_-]{8,64}$/.test(user) || !/^[0-9a-f]{64}$/.test(passwordSha256)) throw invalid(`session ${spec.id}: a remote credential is a user of 8-64 [A-Za-z0-9_-] and a hex SHA-256`);
      const holder = this.byRemoteUser.get(user);
      if (holder && holder.spec.id !== spec.id) throw conflict(`that proxy user is already registered to session ${holder.spec.id}; unregister it first`);
      return { spec: {} };
    }
    const source = canonicalIp(spec.sourceIp ?? "");
    if (!source) throw invalid(`sourceIp ${JSON.stringify(spec.sourceIp)} is not an IP address`);
    const holder = this.bySource.get(source.address);
    if (holder && holder.spec.id !== spec.id) throw conflict(`source address ${source.address} is already registered to session ${holder.spec.id}; unregister it first`);
    return { source: source.address, spec: { sourceIp: source.address } };
  }

  /** The remote session whose proxy user this is (the password is checked by the caller: remote-auth.ts). */
  byRemoteUserName(user: string): Session | null {
    return this.byRemoteUser.get(user) ?? null;
  }

  /** The session registered for a connection's source address (`::ffff:` already stripped). */
  bySourceAddress(address: string): Session | null {
    return this.bySource.get(address) ?? null;
  }

  isLive(session: Session): boolean {
    return this.byId.get(session.spec.id) === session;
  }

  all(): Session[] {
    return [...this.byId.values()];
  }

  /** Read every secret of the session for one request. A failing source fails the request. */
  async material(session: Session): Promise<SecretMaterial[]> {
    const out: SecretMaterial[] = [];
    for (const binding of session.spec.secrets) {
      const placeholder = session.placeholders.get(binding.name);
      if (!placeholder) continue;
      const value = await this.secrets.resolve(binding.name, session.spec.scope);
      out.push(new SecretMaterial(binding, placeholder, value));
    }
    return out;
  }

  touch(session: Session, name: string): void {
    this.secrets.touch(name, session.spec.scope);
  }

  private drop(session: Session): void {
    this.byId.delete(session.spec.id);
    if (session.spec.sourceIp !== undefined && this.bySource.get(session.spec.sourceIp) === session) this.bySource.delete(session.spec.sourceIp);
    if (session.spec.remote && this.byRemoteUser.get(session.spec.remote.user) === session) this.byRemoteUser.delete(session.spec.remote.user);
  }
}
