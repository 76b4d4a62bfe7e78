/**
 * The installation's provider instances (docs/routing.md): `local` always, plus what
 * `$PADDOCK_HOME/providers.yml` configures, each built by its kind's `ProviderDriver` with its
 * credentials from the vault. `providers` is the live map the sessions, pools and router read;
 * `add`/`remove` (the API's `paddock provider add/remove`) change the file and the map together.
 *
 * Credentials are sealed in the vault under `provider/<instance>/<credential>` (sealed documents,
 * not secrets: no environment can bind them, so the gateway never swaps one into a sandbox's
 * request), never written to providers.yml, never returned or logged.
 */
import { randomBytes } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isMap, parseDocument, type Document } from "yaml";
import type { Provider, ProviderDriver, ProviderHealth, ProviderKind, Store } from "../core/index.ts";
import { PaddockError, conflict, invalid, notFound } from "../core/index.ts";
import type { Vault } from "../gateway/vault.ts";
import { CircuitBreakers, Router, defaultStrategy, loadStrategy, scrubUrlCredentials, type BreakerState, type ProviderRouting, type RoutingStrategy } from "./routing/index.ts";
import { PROVIDERS_FILE, PROVIDER_KINDS, formatProvidersIssue, parseProvidersFile, providersFileError, type ProviderInstanceConfig, type ProvidersConfig } from "./providers-file.ts";

export interface ProviderRegistryOptions {
  home: string;
  vault: Pick<Vault, "seal" | "unseal">;
  store: Pick<Store, "deleteSealed" | "listSessions" | "listPoolMembers">;
  /** The local provider (always present, named "local"). */
  local: Provider;
  /** Drivers by kind; an instance of a kind without one is refused, located. */
  drivers: readonly ProviderDriver[];
  log: (line: string) => void;
}

/** An instance as listed: never a credential value. */
export interface ProviderInfo {
  name: string;
  kind: ProviderKind;
  /** "ready", or why it could not be built at start (then sessions skip it). */
  status: string;
  selfHosted: boolean | null;
  settings: Record<string, unknown>;
  routing: ProviderRouting;
  /** The credentials its kind takes, whether each is in the vault, and (`optional: true`) those it may go without. */
  credentials: { name: string; set: boolean; optional?: true }[];
}

export interface ProviderHealthInfo extends ProviderHealth {
  name: string;
  breaker: BreakerState;
  failures: number;
  lastError: string | null;
}

/** What `provider add` takes (the API body). */
export interface AddProviderRequest {
  name: string;
  kind: ProviderKind;
  settings?: Record<string, unknown>;
  /** As in providers.yml (`maxMemory` as "16GiB" or bytes). */
  routing?: Record<string, unknown>;
  /** Credential name → value; every one the kind needs (its optional ones may be left out). Sealed in the vault, never echoed. */
  credentials?: Record<string, string>;
}

export const credentialKey = (instance: string, credential: string): string => `provider/${instance}/${credential}`;

export class ProviderRegistry {
  readonly providers = new Map<string, Provider>();
  readonly router: Router;
  private readonly configs = new Map<string, ProviderInstanceConfig>();
  private readonly failed = new Map<string, string>();
  private readonly drivers: Map<ProviderKind, ProviderDriver>;
  private readonly file: string;
  /** Each built instance's credential values, only to scrub them out of text (`scrub`). */
  private readonly secrets = new Map<string, string[]>();
  /** add/remove one at a time: each reads, edits and writes the file. */
  private edits: Promise<unknown> = Promise.resolve();

  private constructor(private readonly opts: ProviderRegistryOptions, strategy: RoutingStrategy, breakers: CircuitBreakers) {
    this.file = join(opts.home, PROVIDERS_FILE);
    this.drivers = new Map(opts.drivers.map((d) => [d.kind, d]));
    this.providers.set("local", opts.local);
    this.router = new Router({
      providers: this.providers, strategy, breakers, routingOf: (n) => this.configs.get(n)?.routing ?? {}, missingReason: (n) => this.failed.get(n) ?? null,
    });
  }

  /**
   * Read providers.yml (absent: only `local`) and build every instance. A bad file rejects with
   * every located issue (`providers.yml:LINE:COL path: message`): Paddock does not start on a
   * configuration it cannot read. An instance whose driver fails to build it (a missing
   * credential, say) is logged and listed as failed; sessions skip it.
   */
  static async open(opts: ProviderRegistryOptions): Promise<ProviderRegistry> {
    const config = await readConfig(join(opts.home, PROVIDERS_FILE));
    const strategy = config.strategy ? await loadStrategy(config.strategy.module, opts.home, config.strategy.where) : defaultStrategy;
    const breakers = new CircuitBreakers({
      ...(config.breaker.failures !== undefined ? { threshold: config.breaker.failures } : {}),
      ...(config.breaker.coolDownMs !== undefined ? { coolDownMs: config.breaker.coolDownMs } : {}),
    });
    const registry = new ProviderRegistry(opts, strategy, breakers);
    for (const inst of config.instances) {
      const where = `${PROVIDERS_FILE} providers.${inst.name}`;
      registry.configs.set(inst.name, inst);
      if (inst.kind === "local") continue;
      if (!registry.drivers.has(inst.kind)) throw invalid(`${where}.kind: no driver for kind ${JSON.stringify(inst.kind)} in this build (available: ${registry.kinds().join(", ")})`);
      try {
        registry.providers.set(inst.name, await registry.build(inst));
      } catch (err) {
        // Shown to environment readers (route explain) and logged: a driver's error may quote its credential.
        const why = registry.scrub(err instanceof Error ? err.message : String(err));
        registry.failed.set(inst.name, why);
        opts.log(`provider ${inst.name} (${inst.kind}) is not available: ${why}`);
      }
    }
    return registry;
  }

  /** Check providers.yml without building anything (before the rest of the control plane starts): rejects with every located issue. */
  static async check(home: string): Promise<void> {
    await readConfig(join(home, PROVIDERS_FILE));
  }

  /** Every provider credential value (for the audit log's scrubber). */
  credentialValues(): string[] {
    return [...this.secrets.values()].flat();
  }

  /** `text` with every provider credential value, and any URL's userinfo (a proxy credential), replaced by [redacted]. */
  scrub(text: string): string {
    let out = scrubUrlCredentials(text);
    for (const v of this.credentialValues()) if (v.length >= 4) out = out.split(v).join("[redacted]");
    return out;
  }

  /** Kinds this build can configure. */
  kinds(): ProviderKind[] {
    return ["local", ...PROVIDER_KINDS.filter((k) => k !== "local" && this.drivers.has(k))];
  }

  /** Why a configured instance is not in `providers`, or null. */
  unavailable(name: string): string | null {
    return this.failed.get(name) ?? null;
  }

  async list(): Promise<ProviderInfo[]> {
    const names = ["local", ...[...this.configs.keys()].filter((n) => n !== "local").sort()];
    const out: ProviderInfo[] = [];
    for (const name of names) {
      const cfg = this.configs.get(name);
      const kind = cfg?.kind ?? "local";
      const p = this.providers.get(name);
      const driver = this.drivers.get(kind);
      const credentials: ProviderInfo["credentials"] = [];
      for (const c of driver?.credentials ?? []) {
        const set = (await this.opts.vault.unseal(credentialKey(name, c)).catch(() => null)) !== null;
        credentials.push({ name: c, set, ...(isOptional(driver, c) ? { optional: true as const } : {}) });
      }
      out.push({
        name, kind, status: p ? "ready" : `failed: ${this.failed.get(name) ?? "not built"}`, selfHosted: p?.capabilities.selfHosted ?? null,
        settings: cfg?.settings ?? {}, routing: cfg?.routing ?? {}, credentials,
      });
    }
    return out;
  }

  /** Fresh health checks of every instance, with breaker states; instances that failed to build are listed as failing. */
  async health(): Promise<ProviderHealthInfo[]> {
    const names = [...this.providers.keys()];
    for (const n of names) this.router.forgetHealth(n);
    const live = await Promise.all(
      names.map(async (name): Promise<ProviderHealthInfo> => {
        const h = await this.router.health(name);
        const b = this.router.breakers.describe(name);
        return { name, ok: h.ok, detail: h.detail, latencyMs: h.latencyMs, breaker: b.state, failures: b.failures, lastError: b.lastError };
      }),
    );
    const failed = [...this.failed].map(([name, why]): ProviderHealthInfo => ({ name, ok: false, detail: `not available: ${why}`, latencyMs: 0, breaker: "closed", failures: 0, lastError: null }));
    return [...live, ...failed].sort((a, b) => (a.name === "local" ? -1 : b.name === "local" ? 1 : a.name.localeCompare(b.name)));
  }

  /** Configure a new instance: validated, built, then written to providers.yml and usable at once. */
  add(req: AddProviderRequest): Promise<ProviderInfo> {
    return this.serially(() => this.addNow(req));
  }

  private async addNow(req: AddProviderRequest): Promise<ProviderInfo> {
    if (req.name === "local" || req.kind === "local") throw invalid('"local" is always configured; set its routing in providers.yml under providers.local');
    const driver = this.drivers.get(req.kind);
    if (!driver) throw invalid(`no driver for kind ${JSON.stringify(req.kind)} in this build (available: ${this.kinds().join(", ")})`);
    const { doc } = await readDocument(this.file);
    if (isMap(doc.contents) && doc.hasIn(["providers", req.name])) throw conflict(`provider ${JSON.stringify(req.name)} is already configured; remove it first (paddock provider remove ${req.name})`);
    // An empty value is no value: an optional credential left empty is not stored.
    const creds = Object.fromEntries(Object.entries(req.credentials ?? {}).filter(([, v]) => v !== ""));
    const unknown = Object.keys(creds).filter((c) => !driver.credentials.includes(c));
    if (unknown.length) throw invalid(`kind ${req.kind} takes credential${driver.credentials.length === 1 ? "" : "s"} ${driver.credentials.join(", ") || "none"}, not ${unknown.join(", ")}`);
    const missing = driver.credentials.filter((c) => creds[c] === undefined && !isOptional(driver, c));
    if (missing.length) throw invalid(`kind ${req.kind} needs credential${missing.length === 1 ? "" : "s"} ${missing.join(", ")}: --credential ${missing[0]}=@FILE (or =- for stdin)`);
    const entry: Record<string, unknown> = { kind: req.kind };
    if (req.settings && Object.keys(req.settings).length) entry["settings"] = req.settings;
    if (req.routing && Object.keys(req.routing).length) entry["routing"] = req.routing;
    if (!isMap(doc.contents)) doc.contents = doc.createNode({}) as typeof doc.contents;
    doc.setIn(["providers", req.name], doc.createNode(entry));
    // A fresh file's `providers: {}` is a flow mapping; entries read better as blocks.
    const providersNode = doc.getIn(["providers"], true);
    if (isMap(providersNode)) providersNode.flow = false;
    const text = doc.toString();
    const parsed = parseProvidersFile(text);
    if (!parsed.ok) throw invalid(parsed.issues.map((i) => `${i.path || "providers.yml"}: ${i.message}`).join("\n"));
    const inst = parsed.config.instances.find((i) => i.name === req.name);
    if (!inst) throw new PaddockError("internal", `provider ${req.name} vanished from the edited providers.yml`);
    for (const [c, value] of Object.entries(creds)) await this.opts.vault.seal(credentialKey(req.name, c), value);
    let provider: Provider;
    try {
      provider = await this.build(inst);
    } catch (err) {
      for (const c of Object.keys(creds)) await this.opts.store.deleteSealed(credentialKey(req.name, c)).catch(() => false);
      this.secrets.delete(req.name);
      throw err instanceof Error ? new PaddockError(err instanceof PaddockError ? err.code : "invalid_argument", `provider ${req.name} (${req.kind}) could not be built: ${scrubWith(Object.values(creds), err.message)}`) : err;
    }
    try {
      await writeAtomically(this.file, text);
    } catch (err) {
      await provider.close().catch(() => undefined);
      throw err;
    }
    this.configs.set(inst.name, inst);
    this.failed.delete(inst.name);
    this.router.forget(inst.name);
    this.providers.set(inst.name, provider);
    const info = (await this.list()).find((i) => i.name === inst.name);
    if (!info) throw new PaddockError("internal", `provider ${inst.name} is not listed after it was added`);
    return info;
  }

  /** Remove an instance: refused while a session or pool member runs on it; its credentials leave the vault. */
  remove(name: string): Promise<void> {
    return this.serially(() => this.removeNow(name));
  }

  private async removeNow(name: string): Promise<void> {
    if (name === "local") throw invalid('"local" is always configured and cannot be removed');
    if (!this.configs.has(name)) throw notFound("provider", name);
    const live = (await this.opts.store.listSessions({ states: ["starting", "running"] })).filter((s) => s.provider === name);
    const members = (await this.opts.store.listPoolMembers()).filter((m) => m.provider === name);
    if (live.length || members.length) {
      throw conflict(`provider ${name} still runs ${live.length} session(s) and ${members.length} pool member(s) (${[...live.map((s) => s.id), ...members.map((m) => m.id)].slice(0, 5).join(", ")}); stop them first`);
    }
    const { doc } = await readDocument(this.file);
    doc.deleteIn(["providers", name]);
    await writeAtomically(this.file, doc.toString());
    const kind = this.configs.get(name)?.kind;
    for (const c of (kind ? this.drivers.get(kind)?.credentials : undefined) ?? []) await this.opts.store.deleteSealed(credentialKey(name, c));
    const p = this.providers.get(name);
    this.providers.delete(name);
    this.configs.delete(name);
    this.failed.delete(name);
    this.secrets.delete(name);
    this.router.forget(name);
    await p?.close().catch((err: unknown) => this.opts.log(`closing provider ${name}: ${err instanceof Error ? err.message : String(err)}`));
  }

  /** Wait for an edit in progress (the control plane closes the providers themselves). */
  async close(): Promise<void> {
    await this.edits.catch(() => undefined);
  }

  private async build(inst: ProviderInstanceConfig): Promise<Provider> {
    const driver = this.drivers.get(inst.kind);
    if (!driver) throw invalid(`no driver for kind ${JSON.stringify(inst.kind)} in this build`);
    const settings = driver.parseSettings(inst.settings);
    const credentials: Record<string, string> = {};
    for (const c of driver.credentials) {
      const value = await this.opts.vault.unseal(credentialKey(inst.name, c));
      if (value === null && isOptional(driver, c)) continue;
      if (value === null) throw new PaddockError("unavailable", `credential ${c} of provider ${inst.name} is not in the vault: paddock provider remove ${inst.name}, then add it again with --credential ${c}=@FILE`);
      credentials[c] = value;
    }
    this.secrets.set(inst.name, Object.values(credentials));
    const provider = await driver.create({ name: inst.name, settings, credentials }, { home: this.opts.home, log: (line) => this.opts.log(this.scrub(line)) });
    if (provider.name !== inst.name) throw new PaddockError("internal", `driver ${inst.kind} built a provider named ${JSON.stringify(provider.name)} for instance ${JSON.stringify(inst.name)}`);
    return provider;
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.edits.then(fn, fn);
    this.edits = next.catch(() => undefined);
    return next;
  }
}

/** The file's validated content; absent file: nothing configured. */
async function readConfig(file: string): Promise<ProvidersConfig> {
  const text = await readText(file);
  if (text === null) return { instances: [], strategy: null, breaker: {} };
  const parsed = parseProvidersFile(text);
  if (!parsed.ok) throw providersFileError(parsed.issues);
  return parsed.config;
}

/**
 * The file as an editable document, refusing to edit one that does not validate (so an edit
 * never writes over a hand-made mistake: nothing in it is lost; fix the file first).
 */
async function readDocument(file: string): Promise<{ doc: Document }> {
  const text = await readText(file);
  if (text === null || text.trim() === "") return { doc: parseDocument("# Provider instances (docs/routing.md). Credentials live in the vault, never here.\nproviders: {}\n") };
  const parsed = parseProvidersFile(text);
  if (!parsed.ok) {
    throw new PaddockError("invalid_argument", `${file} has problems, so it was not changed; fix them first:\n${parsed.issues.map((i) => formatProvidersIssue(i)).join("\n")}`, { issues: parsed.issues });
  }
  return { doc: parsed.doc };
}

async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/** Write through a temporary file and a rename: a crash leaves the old file or the new one, never half of one. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, file);
}

function isOptional(driver: ProviderDriver | undefined, credential: string): boolean {
  return driver?.optionalCredentials?.includes(credential) ?? false;
}

function scrubWith(values: string[], text: string): string {
  let out = scrubUrlCredentials(text);
  for (const v of values) if (v.length >= 4) out = out.split(v).join("[redacted]");
  return out;
}
