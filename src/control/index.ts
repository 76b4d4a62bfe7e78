/**
 * The control plane: one object that owns the store, the layer store, the providers, and the
 * environment and session services. `openControlPlane` opens everything and reconciles what a
 * previous incarnation left running; `close` leaves running sandboxes alone (they outlive us).
 */
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Provider, ProviderDriver, Store } from "../core/index.ts";
import { SingleFlight } from "../core/index.ts";
import type { ClosableLayerStore, LayerStoreKind } from "../layers/index.ts";
import { openLayerStore } from "../layers/index.ts";
import { openStore } from "../store/index.ts";
import {
  createLocalProvider,
  destroyCgroups,
  detectCgroupLayout,
  listCgroupIds,
  cgroupDirs,
  installationScope,
  openNetworkManager,
  RUNSC_STATE,
  SHARED_FILES,
  type NetworkManager,
} from "../providers/local/index.ts";
import { splitUrlSecret, startGatewayProcess, type GatewayEndpoints, type GatewayProcess, type LocalApi, type PortableUpstreamOptions, type RemoteAuthLimits } from "../gateway/index.ts";
import { Egress, loadGatewayCa } from "./egress.ts";
import { RecordWriter } from "./records.ts";
import { Environments } from "./environments.ts";
import { openVault, type Vault } from "../gateway/vault.ts";
import { Sessions } from "./sessions.ts";
import { liveSandboxes, runDoctor, type DoctorReport } from "./doctor.ts";
import { AuditLog, Identities, createCommandChecker, type CommandChecker } from "../guard/index.ts";
import { Access } from "./access.ts";
import { Approvals } from "./approvals.ts";
import { CommandGate } from "./commands.ts";
import { localApi } from "./local-api.ts";
import { Pools } from "./pools.ts";
import { Collector } from "./gc.ts";
import { Snapshots } from "./snapshots.ts";
import { Runs } from "./runs.ts";
import { Webhooks } from "./webhooks.ts";
import { Previews } from "./previews.ts";
import { ProviderRegistry } from "./provider-registry.ts";
import { DEFAULT_DRIVERS } from "./drivers.ts";

export type { BuildEvent } from "./builder.ts";
export { Environments, invalidFile } from "./environments.ts";
export { Sessions } from "./sessions.ts";
export { Access, forbidden } from "./access.ts";
export { Approvals } from "./approvals.ts";
export { CommandGate, DENIED_EXIT } from "./commands.ts";
export type { DoctorReport } from "./doctor.ts";
export { Snapshots, MAX_FORK_COUNT, type ForkResult } from "./snapshots.ts";
export { Pools, MAX_POOL_SIZE } from "./pools.ts";
export type { PoolInfo } from "../core/index.ts";
export { Collector, type CollectResult } from "./gc.ts";
export { Runs, AGENT_ROLE, type StartRunRequest } from "./runs.ts";
export { Webhooks, MAX_WEBHOOK_BODY_BYTES } from "./webhooks.ts";
export { ProviderRegistry, type ProviderInfo, type ProviderHealthInfo, type AddProviderRequest } from "./provider-registry.ts";
export { PROVIDERS_FILE } from "./providers-file.ts";
export type { RouteDecision, RouteRequest, LatencyClass } from "./routing/index.ts";
export { Previews, PREVIEW_ID, DEFAULT_PREVIEW_DOMAIN, DEFAULT_PREVIEW_TTL_MS, MAX_PREVIEW_TTL_MS, tokenHash as previewTokenHash, type PreviewTarget } from "./previews.ts";

export interface ControlPlaneOptions {
  /** Data directory ($PADDOCK_HOME). */
  home: string;
  /** Store location; default sqlite at `${home}/paddock.db`. */
  storeUrl?: string;
  layerStore?: LayerStoreKind;
  log?: (line: string) => void;
  /** A local mirror of agent packages (scripts/agent-packages.ts) that template builds install agents from; default `$PADDOCK_AGENT_PACKAGES`, else the npm registry. */
  agentPackages?: string;
  /** Base URLs of hosted agents' APIs by agent name, e.g. { devin: "https://api.devin.ai" } (tests point them at local fakes). */
  hostedAgents?: Record<string, string>;
  /** Base domain of preview hosts (`<port>-<id>.<domain>`); default `preview.localhost` (browsers resolve *.localhost to loopback). */
  previewDomain?: string;
  /** The UI's public origin (where previews send logged-in users to authorise); default `http://127.0.0.1:<port>`. */
  publicUrl?: string;
  /** Provider drivers by kind for providers.yml instances; default the ones this build ships (drivers.ts). Tests add fakes. */
  providerDrivers?: readonly ProviderDriver[];
  gateway?: {
    /** Ports on the installation's gateway address; defaults below. */
    ports?: Partial<Omit<GatewayEndpoints, "address">>;
    /** Upstream TLS trust and DNS overrides (tests point the gateway at local upstreams). */
    upstream?: PortableUpstreamOptions;
    /**
     * The HTTPS proxy remote sandboxes reach the gateway by (`paddock up --gateway-remote-listen
     * ADDR:PORT --gateway-public-host HOST`; docs/gateway.md, "Remote sandboxes"); absent: off.
     */
    remoteProxy?: { host: string; port: number; publicHost: string; authLimits?: Partial<RemoteAuthLimits> };
  };
}

/** Fixed so a restarted control plane serves the sandboxes' DNAT rules again on the same ports. */
export const DEFAULT_GATEWAY_PORTS = { proxyPort: 3128, httpPort: 15080, httpsPort: 15443, dnsPort: 15053, postgresPort: 15432 };

export interface ControlPlane {
  readonly home: string;
  readonly store: Store;
  readonly layers: ClosableLayerStore;
  readonly providers: Map<string, Provider>;
  /** The configured provider instances (providers.yml), their credentials and the router. */
  readonly providerRegistry: ProviderRegistry;
  readonly environments: Environments;
  readonly vault: Vault;
  readonly gateway: GatewayProcess;
  readonly network: NetworkManager;
  readonly sessions: Sessions;
  readonly snapshots: Snapshots;
  readonly pools: Pools;
  /** Garbage collection of layers (and of fork snapshots nothing uses). */
  readonly gc: Collector;
  readonly identities: Identities;
  readonly access: Access;
  readonly audit: AuditLog;
  readonly approvals: Approvals;
  readonly commands: CommandGate;
  /** Agent runs (docs/agents.md). */
  readonly runs: Runs;
  /** Webhook receivers that start runs (docs/triggers.md). */
  readonly webhooks: Webhooks;
  /** Preview URLs of sessions' ports (docs/previews.md). */
  readonly previews: Previews;
  /** Set when this start created the admin principal: where its token was written. */
  readonly adminTokenFile: string | null;
  /**
   * Every secret value, and the credentials inside URL-shaped ones (a DSN's key, a database URL's
   * password): what audit records and log lines must never show (see `secretScrubber`).
   */
  secretValues(): Promise<string[]>;
  doctor(): Promise<DoctorReport>;
  /** Running sandboxes are left alone; tests ask for the layer image and host network objects to go too. */
  close(opts?: { unmountLayers?: boolean; removeHostNetwork?: boolean }): Promise<void>;
}

export async function openControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.log ?? (() => undefined);
  await mkdir(opts.home, { recursive: true, mode: 0o700 });
  // A bad providers.yml stops the start here, located, before anything is opened or started.
  await ProviderRegistry.check(opts.home);
  const store = await openStore(opts.storeUrl ?? join(opts.home, "paddock.db"));
  const vault = await openVault({ home: opts.home, store, log });
  const layers = await openLayerStore({ home: opts.home, ...(opts.layerStore ? { kind: opts.layerStore } : {}) });
  const ports = { ...DEFAULT_GATEWAY_PORTS, ...opts.gateway?.ports };
  const agentPackages = opts.agentPackages ?? process.env["PADDOCK_AGENT_PACKAGES"] ?? undefined;
  const network = await openNetworkManager({ scope: installationScope(opts.home), ports });
  // Secret values to keep out of audit records: each whole value, and the credentials inside a
  // URL-shaped one (a DSN's key, a database URL's password), which are secrets on their own.
  // Provider credentials (sealed apart from secrets) are kept out of audit records too.
  let registry: ProviderRegistry | null = null;
  const readSecretValues = async (): Promise<string[]> =>
    [...(registry?.credentialValues() ?? []), ...(await vault.allValues())].flatMap((sv) => {
      const v = typeof sv === "string" ? { reveal: () => sv } : sv;
      const text = v.reveal();
      const url = splitUrlSecret(text);
      return url ? [text, url.user, ...(url.password ? [url.password] : [])] : [text];
    });
  // Every audit record is scrubbed with these, so decrypting every secret for each one would put
  // the whole vault on every API call's path. Kept until the vault says a secret changed, and at
  // most 2 s (as the gateway does) for a change made by another replica.
  let cachedValues: { values: Promise<string[]>; at: number } | null = null;
  vault.onChange(() => (cachedValues = null));
  const secretValues = (): Promise<string[]> => {
    if (!cachedValues || Date.now() - cachedValues.at > 2000) {
      const values = readSecretValues();
      const entry = { values, at: Date.now() };
      cachedValues = entry;
      // A failed read is not kept: the next caller tries again (and the audit append fails closed).
      values.catch(() => {
        if (cachedValues === entry) cachedValues = null;
      });
    }
    return cachedValues.values;
  };
  const audit = new AuditLog(store, vault.deriveKey("audit-chain"), join(opts.home, "audit.head"), secretValues);
  const identities = new Identities(store);
  const adminTokenFile = await identities.bootstrap(opts.home);
  const access = new Access(store);
  const records = new RecordWriter(store, log, audit);
  let serveLocal: LocalApi | null = null;
  // The remote proxy's certificate comes from the installation gateway CA, kept sealed in the vault.
  const remoteConfig = opts.gateway?.remoteProxy;
  const remoteProxy = remoteConfig ? { ...remoteConfig, ca: await loadGatewayCa(vault, remoteConfig.publicHost) } : undefined;
  // Its own process: a hostile sandbox that saturates the gateway cannot stall this one (the API).
  const gateway = await startGatewayProcess({
    init: { address: network.gatewayIp, ports, upstream: opts.gateway?.upstream ?? {}, ...(remoteProxy ? { remoteProxy } : {}) },
    secrets: vault,
    onRecord: (r) => records.push(r),
    // The gateway starts before the sessions and the command gate it hands these requests to.
    localApi: (sessionId, req) => (serveLocal ? serveLocal(sessionId, req) : Promise.resolve({ status: 503, body: { error: "starting" } })),
    log,
  });
  vault.onChange(() => gateway.secretsChanged());
  // Decided at each registration from the newest rbac: (docs/database.md, "Read-only by role").
  const databaseWrite = async (sessionId: string): Promise<boolean> => {
    const s = await store.getSession(sessionId);
    if (!s) return false;
    const actor = await store.getPrincipalByName(s.agent ?? s.startedBy);
    return actor !== null && (await access.permissions(actor, s.environment, s)).has("write");
  };
  const egress = new Egress({ gateway, vault, store, databaseWrite, ...(remoteProxy ? { gatewayCaPem: remoteProxy.ca.certPem } : {}) });
  const local = await createLocalProvider({ home: opts.home, layers, log, network });
  const providerRegistry = await ProviderRegistry.open({ home: opts.home, vault, store, local, drivers: opts.providerDrivers ?? DEFAULT_DRIVERS, log });
  registry = providerRegistry;
  const providers = providerRegistry.providers;
  const gc = new Collector({ store, layers, providers, egress, audit, log });
  // Set below; the environments' hook runs only after a build, long after this function returned.
  let pools: Pools | null = null;
  const environments = new Environments({
    store, provider: local, layers, egress, steps: new SingleFlight<void>(), layerLock: gc.lock,
    ...(agentPackages ? { agentPackages } : {}),
    onBuilt: (name) => {
      pools?.versionChanged(name);
      gc.schedule();
    },
  });
  pools = new Pools({ store, providers, environments, egress, audit, log });
  // Set below; a stop's hook runs only after this function returned.
  let previews: Previews | null = null;
  const sessions = new Sessions({
    store, providers, environments, egress, audit, access, log, pools, onEnded: () => gc.schedule(),
    router: providerRegistry.router, scrub: (t) => providerRegistry.scrub(t),
    beforeStop: (s) => previews?.beforeStop(s) ?? Promise.resolve(),
  });
  const snapshots = new Snapshots({ store, sessions, egress, gc, audit, log });
  previews = new Previews({
    store, sessions, snapshots, gc, audit, access, log, gatewayIp: network.gatewayIp, cookieKey: vault.deriveKey("preview-cookie"),
    ...(opts.previewDomain ? { domain: opts.previewDomain } : {}), ...(opts.publicUrl ? { publicUrl: opts.publicUrl } : {}),
  });
  const approvals = new Approvals({ store, access, audit });
  const checker: CommandChecker = await createCommandChecker();
  const commands = new CommandGate({ store, sessions, access, approvals, audit, checker });
  serveLocal = localApi({ store, sessions, commands });
  const runs = new Runs({
    store, sessions, snapshots, access, audit, identities, secretValues, log,
    hostedKey: (name, environment, agent) => vault.resolve(name, { environment, agent }),
    ...(opts.hostedAgents ? { hostedBaseUrls: opts.hostedAgents } : {}),
  });
  const webhooks = new Webhooks({ store, vault, audit, startRun: (r, a) => runs.start(r, a), specOf: (e) => access.rbacSpec(e) });
  const staleRuns = await runs.reconcile();
  if (staleRuns) log(`marked ${staleRuns} interrupted agent run(s) as failed`);
  const abandoned = await approvals.expireAbandoned();
  if (abandoned) log(`expired ${abandoned} approval(s) left pending by the previous run`);
  const interrupted = await environments.reconcile();
  if (interrupted) log(`marked ${interrupted} interrupted build(s) as failed`);
  const { recovered, lost } = await sessions.reconcile();
  if (recovered.length || lost.length) log(`reconciled sessions: ${recovered.length} running, ${lost.length} lost`);
  const members = await pools.reconcile();
  if (members.recovered.length || members.dropped.length) log(`reconciled pool members: ${members.recovered.length} ready, ${members.dropped.length} dropped`);
  await collectOrphans(opts.home, store, layers, network, log);
  await gc.collect().catch((err: unknown) => log(`garbage collection at start failed: ${err instanceof Error ? err.message : String(err)}`));
  pools.schedule();
  return {
    home: opts.home,
    store,
    layers,
    providers,
    providerRegistry,
    environments,
    sessions,
    snapshots,
    pools,
    gc,
    vault,
    gateway,
    network,
    identities,
    access,
    audit,
    approvals,
    commands,
    runs,
    webhooks,
    previews,
    adminTokenFile,
    secretValues,
    doctor: () => runDoctor({ home: opts.home, store, layers, network }),
    async close(o = {}) {
      await runs.close();
      previews?.close();
      await pools?.close();
      await gc.close();
      sessions.close();
      await environments.close();
      await providerRegistry.close();
      for (const p of providers.values()) await p.close();
      await gateway.close();
      await records.flush();
      checker.close();
      await audit.flush();
      await network.close({ removeHostObjects: o.removeHostNetwork ?? false });
      await vault.idle();
      await store.close();
      await layers.close({ unmount: o.unmountLayers ?? false });
    },
  };
}

/**
 * Free what no live session or pool member owns: cgroups, writable layers, network namespaces and
 * run directories left by sandboxes whose sessions ended while the control plane was down (or by
 * builds it was killed during). Committed layers (templates, snapshots) are garbage collection's
 * (gc.ts); the layer store's own spare subvolumes are not in `list()` and never touched here.
 */
async function collectOrphans(home: string, store: Store, layers: ClosableLayerStore, network: NetworkManager, log: (line: string) => void): Promise<void> {
  const live = await liveSandboxes(store);
  const scope = installationScope(home);
  const layout = await detectCgroupLayout(scope);
  for (const id of await listCgroupIds(layout)) {
    if (live.has(id)) continue;
    log(`removing orphaned cgroup ${id}`);
    await destroyCgroups(cgroupDirs(layout, id));
  }
  for (const key of (await layers.list()).active) {
    const owner = key.startsWith("sbx-") ? key.slice(4) : null;
    if (owner && live.has(owner)) continue;
    log(`removing orphaned writable layer ${key}`);
    await layers.remove(key);
  }
  for (const id of await network.list()) {
    if (live.has(id)) continue;
    log(`removing orphaned network of ${id}`);
    await network.release(id);
  }
  const runDir = join("/run/paddock", scope);
  for (const id of await readdir(runDir).catch(() => [] as string[])) {
    // The shared files (resolver, hosts, CA) stay: running sandboxes bind them. So does runsc's
    // state: without it the gVisor sandboxes recovered above could not be listed or signalled.
    if (!live.has(id) && id !== SHARED_FILES && id !== RUNSC_STATE) await rm(join(runDir, id), { recursive: true, force: true });
  }
}
