/**
 * The `ec2` provider: sessions run on EC2 hosts that run Paddock's local runtime as remote nodes
 * (`paddock node`). A create reuses a running host of this installation with room, or launches
 * one from the launch template (user data: the node's certificates and command, user-data.ts),
 * waits until it runs and its node answers over mutual TLS, then delegates to that node
 * (remote-node.ts). A host left without sandboxes is terminated after `idleGraceMs`.
 *
 * Hosts are found again after a control-plane restart by their tags (paddock:installation,
 * paddock:provider, paddock:node-name), so nothing but EC2 itself holds the host table.
 */
import { createHash } from "node:crypto";
import { EC2Client, DescribeInstancesCommand, DescribeLaunchTemplatesCommand, RunInstancesCommand, TerminateInstancesCommand, type Instance } from "@aws-sdk/client-ec2";
import type { ExecOptions, ExecResult, FileEntry, GuardDenial, Provider, ProviderCapabilities, ProviderDeps, ProviderHealth, SandboxHandle, SandboxSpec, ServiceStatus, StopOptions } from "../../core/provider.ts";
import { PaddockError, notFound, unavailable } from "../../core/errors.ts";
import { unsupported } from "../../core/capabilities.ts";
import { RemoteNodeProvider, refuseUnsupported, remoteNodeCapabilities } from "./remote-node.ts";
import { NODE_CERT_VALIDITY_MS, certExpiry, newNodeName, type NodeCa, type PemPair } from "./pki.ts";
import { nodeUserData } from "./user-data.ts";
import type { Ec2Settings } from "./settings.ts";

export interface Ec2ProviderOptions {
  name: string;
  settings: Ec2Settings;
  credentials: { accessKeyId: string; secretAccessKey: string };
  ca: NodeCa;
  deps: ProviderDeps;
}

interface Host {
  instanceId: string;
  nodeName: string;
  address: string;
  node: RemoteNodeProvider;
  /** When the node's certificate expires (ms); hosts close to it take no new sandboxes. */
  certExpires: number;
  /** Creates placed on it and not finished yet. */
  reserved: number;
  idleTimer?: NodeJS.Timeout;
}

const TAG_INSTALLATION = "paddock:installation";
const TAG_PROVIDER = "paddock:provider";
const TAG_NODE = "paddock:node-name";
const TAG_CERT_EXPIRES = "paddock:cert-expires";
/** A host whose certificate expires within this gets no new sandboxes. */
const CERT_MARGIN_MS = 24 * 3_600_000;

export class Ec2Provider implements Provider {
  readonly name: string;
  readonly capabilities: ProviderCapabilities = remoteNodeCapabilities("ec2");
  private readonly ec2: EC2Client;
  private readonly hosts = new Map<string, Host>();
  private readonly bySandbox = new Map<string, string>();
  private readonly installation: string;
  /** Host choice and launches one at a time, so two creates never launch two hosts for one slot. */
  private placing: Promise<unknown> = Promise.resolve();
  private client: { pair: PemPair; expires: number } | null = null;
  private closed = false;

  constructor(private readonly o: Ec2ProviderOptions) {
    this.name = o.name;
    this.installation = createHash("sha256").update(o.deps.home).digest("hex").slice(0, 12);
    this.ec2 = new EC2Client({
      region: o.settings.region,
      credentials: o.credentials,
      maxAttempts: 3,
      ...(o.settings.endpoint ? { endpoint: o.settings.endpoint } : {}),
    });
  }

  async health(): Promise<ProviderHealth> {
    const started = Date.now();
    try {
      await this.api("DescribeLaunchTemplates", () => this.ec2.send(new DescribeLaunchTemplatesCommand(this.templateFilter())));
      return { ok: true, detail: `${this.hosts.size} hosts known`, latencyMs: Date.now() - started };
    } catch (err) {
      return { ok: false, detail: err instanceof Error ? err.message : String(err), latencyMs: Date.now() - started };
    }
  }

  async create(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    if (this.bySandbox.has(spec.id)) throw new PaddockError("conflict", `sandbox ${spec.id} already exists`);
    refuseUnsupported(this, spec);
    const host = await this.place(signal);
    try {
      const handle = await host.node.create(spec, signal);
      this.bySandbox.set(spec.id, host.instanceId);
      return { ...handle, providerState: { instanceId: host.instanceId, nodeName: host.nodeName, address: host.address, node: handle.providerState } };
    } finally {
      host.reserved--;
      this.scheduleIdle(host);
    }
  }

  async recover(id: string, state: Record<string, unknown>): Promise<"running" | "gone"> {
    const instanceId = typeof state["instanceId"] === "string" ? state["instanceId"] : null;
    if (!instanceId) return "gone";
    await this.refresh();
    const host = this.hosts.get(instanceId);
    if (!host) return "gone";
    const r = await host.node.recover(id, (state["node"] ?? {}) as Record<string, unknown>);
    if (r === "running") this.bySandbox.set(id, instanceId);
    else this.scheduleIdle(host);
    return r;
  }

  async stop(id: string, opts?: StopOptions): Promise<boolean> {
    if (opts?.commitAs !== undefined) throw unsupported(this, "commit a sandbox as a layer of this machine's layer store");
    const host = this.hostOf(id);
    if (!host) return false;
    const stopped = await host.node.stop(id);
    this.bySandbox.delete(id);
    this.scheduleIdle(host);
    return stopped;
  }

  async list(): Promise<string[]> {
    await this.refresh();
    const ids: string[] = [];
    for (const host of this.hosts.values()) {
      const onHost = await host.node.list().catch(() => [] as string[]);
      for (const id of onHost) this.bySandbox.set(id, host.instanceId);
      ids.push(...onHost);
    }
    return ids;
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    return this.on(id).exec(id, opts);
  }
  async writeFile(id: string, path: string, data: Uint8Array, opts?: { mode?: number }): Promise<void> {
    return this.on(id).writeFile(id, path, data, opts);
  }
  async readFile(id: string, path: string): Promise<Buffer> {
    return this.on(id).readFile(id, path);
  }
  async listDir(id: string, path: string): Promise<FileEntry[]> {
    return this.on(id).listDir(id, path);
  }
  async killProcesses(id: string, signal?: NodeJS.Signals): Promise<number> {
    return this.on(id).killProcesses(id, signal);
  }
  async guardDenials(id: string): Promise<GuardDenial[]> {
    return this.hostOf(id)?.node.guardDenials(id) ?? [];
  }
  async setEnv(id: string, env: Record<string, string>): Promise<Record<string, unknown>> {
    const host = this.hostOf(id);
    if (!host) throw notFound("sandbox", id);
    return { instanceId: host.instanceId, nodeName: host.nodeName, address: host.address, node: await host.node.setEnv(id, env) };
  }
  async services(id: string): Promise<ServiceStatus[]> {
    return this.on(id).services(id);
  }
  async waitForServices(id: string, timeoutMs: number): Promise<ServiceStatus[]> {
    return this.on(id).waitForServices(id, timeoutMs);
  }
  async memoryUsage(id: string): Promise<number | null> {
    return this.on(id).memoryUsage(id);
  }
  snapshot(): Promise<{ frozenMs: number }> {
    return Promise.reject(unsupported(this, "snapshot a sandbox"));
  }
  removeSnapshot(): Promise<boolean> {
    return Promise.reject(unsupported(this, "remove a snapshot"));
  }

  /** Leaves hosts and their sandboxes running (a restarted control plane finds them by tag). */
  async close(): Promise<void> {
    this.closed = true;
    for (const h of this.hosts.values()) clearTimeout(h.idleTimer);
    this.ec2.destroy();
  }

  /** The hosts this provider knows now (tests and `paddock doctor`). */
  knownHosts(): { instanceId: string; address: string; sandboxes: number }[] {
    return [...this.hosts.values()].map((h) => ({ instanceId: h.instanceId, address: h.address, sandboxes: this.sandboxesOn(h) }));
  }

  private on(id: string): RemoteNodeProvider {
    const host = this.hostOf(id);
    if (!host) throw notFound("sandbox", id);
    return host.node;
  }

  private hostOf(id: string): Host | undefined {
    const instanceId = this.bySandbox.get(id);
    return instanceId === undefined ? undefined : this.hosts.get(instanceId);
  }

  private sandboxesOn(host: Host): number {
    let n = 0;
    for (const i of this.bySandbox.values()) if (i === host.instanceId) n++;
    return n;
  }

  /** A host with room for one more sandbox (reserved for the caller), launching one if needed. */
  private place(signal?: AbortSignal): Promise<Host> {
    const next = this.placing.then(async () => {
      signal?.throwIfAborted();
      await this.refresh();
      for (const host of this.hosts.values()) {
        if (host.certExpires - Date.now() < CERT_MARGIN_MS) continue;
        const onNode = await host.node.list().catch(() => null);
        if (onNode === null) continue;
        for (const id of onNode) this.bySandbox.set(id, host.instanceId);
        if (onNode.length + host.reserved < this.o.settings.sessionsPerHost) {
          host.reserved++;
          clearTimeout(host.idleTimer);
          return host;
        }
      }
      if (this.hosts.size >= this.o.settings.maxHosts)
        throw unavailable(`provider ${this.name}: all ${this.hosts.size} hosts are full (maxHosts ${this.o.settings.maxHosts}, sessionsPerHost ${this.o.settings.sessionsPerHost})`);
      const host = await this.launch(signal);
      host.reserved++;
      return host;
    });
    this.placing = next.catch(() => undefined);
    return next;
  }

  private async launch(signal?: AbortSignal): Promise<Host> {
    const s = this.o.settings;
    const nodeName = newNodeName();
    const nodeCert = await this.o.ca.issueNode(nodeName);
    const userData = nodeUserData({ caPem: this.o.ca.certPem, node: nodeCert, port: s.nodePort, command: s.nodeCommand });
    const run = await this.api("RunInstances", () =>
      this.ec2.send(new RunInstancesCommand({
        MinCount: 1, MaxCount: 1,
        LaunchTemplate: { ...this.templateRef(), Version: s.launchTemplateVersion },
        UserData: Buffer.from(userData).toString("base64"),
        TagSpecifications: [{ ResourceType: "instance", Tags: [
          { Key: "Name", Value: `paddock-node ${this.name}` },
          { Key: TAG_INSTALLATION, Value: this.installation },
          { Key: TAG_PROVIDER, Value: this.name },
          { Key: TAG_NODE, Value: nodeName },
          { Key: TAG_CERT_EXPIRES, Value: certExpiry(nodeCert.certPem).toISOString() },
        ] }],
      })),
    );
    const instanceId = run.Instances?.[0]?.InstanceId;
    if (!instanceId) throw unavailable(`provider ${this.name}: RunInstances answered without an instance`);
    this.o.deps.log(`ec2 ${this.name}: launched ${instanceId} (${nodeName})`);
    try {
      const deadline = Date.now() + s.bootTimeoutMs;
      const address = await this.poll(deadline, signal, `instance ${instanceId} to run`, async () => {
        const i = (await this.describe([instanceId]))[0];
        if (i && i.State?.Name !== "pending" && i.State?.Name !== "running") throw unavailable(`provider ${this.name}: instance ${instanceId} is ${i.State?.Name ?? "unknown"} instead of running`);
        return i?.State?.Name === "running" ? this.addressOf(i) : null;
      });
      const host = this.hostFor(instanceId, nodeName, address, certExpiry(nodeCert.certPem).getTime());
      await this.poll(deadline, signal, `node ${nodeName} on ${instanceId} to answer over mTLS`, async () => ((await host.node.health()).ok ? true : null));
      this.hosts.set(instanceId, host);
      return host;
    } catch (err) {
      // A host that never became a node is not kept (it would cost money and hold nobody).
      await this.terminate(instanceId).catch(() => undefined);
      throw err;
    }
  }

  private async poll<T>(deadline: number, signal: AbortSignal | undefined, what: string, check: () => Promise<T | null>): Promise<T> {
    for (let wait = 200; ; wait = Math.min(wait * 2, 2000)) {
      signal?.throwIfAborted();
      const v = await check();
      if (v !== null) return v;
      if (Date.now() > deadline) throw unavailable(`provider ${this.name}: gave up waiting for ${what} after ${this.o.settings.bootTimeoutMs} ms`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** Learn this installation's hosts from EC2 (tags), forget terminated ones. */
  private async refresh(): Promise<void> {
    const seen = new Set<string>();
    for (const i of await this.describe()) {
      const id = i.InstanceId;
      const tags = new Map((i.Tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]));
      const nodeName = tags.get(TAG_NODE);
      if (!id || !nodeName || i.State?.Name !== "running") continue;
      seen.add(id);
      if (this.hosts.has(id)) continue;
      const expires = Date.parse(tags.get(TAG_CERT_EXPIRES) ?? "") || Date.now() + NODE_CERT_VALIDITY_MS;
      const host = this.hostFor(id, nodeName, this.addressOf(i), expires);
      this.hosts.set(id, host);
      this.scheduleIdle(host);
    }
    for (const [id, host] of this.hosts)
      if (!seen.has(id) && host.reserved === 0) {
        clearTimeout(host.idleTimer);
        this.hosts.delete(id);
        for (const [sid, iid] of this.bySandbox) if (iid === id) this.bySandbox.delete(sid);
      }
  }

  private hostFor(instanceId: string, nodeName: string, address: string, certExpires: number): Host {
    const url = `https://${address.includes(":") ? `[${address}]` : address}:${this.o.settings.nodePort}`;
    const node = new RemoteNodeProvider({ url, nodeName, caPem: this.o.ca.certPem, clientCert: () => this.clientCert(), name: this.name, capabilities: this.capabilities });
    return { instanceId, nodeName, address, node, certExpires, reserved: 0 };
  }

  /** Terminate a host once it has had no sandboxes for `idleGraceMs` (checked again on the node first). */
  private scheduleIdle(host: Host): void {
    clearTimeout(host.idleTimer);
    if (this.closed || host.reserved > 0 || this.sandboxesOn(host) > 0) return;
    host.idleTimer = setTimeout(() => {
      void (async () => {
        if (host.reserved > 0 || this.sandboxesOn(host) > 0) return;
        const onNode = await host.node.list().catch(() => null);
        // An unreachable node is not proof it is empty: leave it to the next check.
        if (onNode === null || onNode.length > 0 || host.reserved > 0) return;
        await this.terminate(host.instanceId);
        this.hosts.delete(host.instanceId);
        this.o.deps.log(`ec2 ${this.name}: terminated idle host ${host.instanceId}`);
      })().catch((err: unknown) => this.o.deps.log(`ec2 ${this.name}: idle host ${host.instanceId}: ${err instanceof Error ? err.message : String(err)}`));
    }, this.o.settings.idleGraceMs);
    host.idleTimer.unref();
  }

  private async terminate(instanceId: string): Promise<void> {
    await this.api("TerminateInstances", () => this.ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] })));
  }

  private async describe(ids?: string[]): Promise<Instance[]> {
    const out = await this.api("DescribeInstances", () =>
      this.ec2.send(new DescribeInstancesCommand({
        ...(ids ? { InstanceIds: ids } : {}),
        Filters: [
          { Name: `tag:${TAG_INSTALLATION}`, Values: [this.installation] },
          { Name: `tag:${TAG_PROVIDER}`, Values: [this.name] },
          ...(ids ? [] : [{ Name: "instance-state-name", Values: ["pending", "running"] }]),
        ],
      })),
    );
    return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
  }

  private addressOf(i: Instance): string {
    const a = this.o.settings.address === "public" ? i.PublicIpAddress : i.PrivateIpAddress;
    if (!a) throw unavailable(`provider ${this.name}: instance ${i.InstanceId ?? "?"} has no ${this.o.settings.address} address`);
    return a;
  }

  private templateRef(): { LaunchTemplateId: string } | { LaunchTemplateName: string } {
    const s = this.o.settings;
    return s.launchTemplateId !== undefined ? { LaunchTemplateId: s.launchTemplateId } : { LaunchTemplateName: s.launchTemplateName ?? "" };
  }

  private templateFilter(): { LaunchTemplateIds: string[] } | { LaunchTemplateNames: string[] } {
    const s = this.o.settings;
    return s.launchTemplateId !== undefined ? { LaunchTemplateIds: [s.launchTemplateId] } : { LaunchTemplateNames: [s.launchTemplateName ?? ""] };
  }

  private async clientCert(): Promise<PemPair> {
    if (!this.client || this.client.expires - Date.now() < 3_600_000) {
      const pair = await this.o.ca.issueClient();
      this.client = { pair, expires: certExpiry(pair.certPem).getTime() };
    }
    return this.client.pair;
  }

  /** An EC2 call whose failure becomes a PaddockError naming the action and EC2's error code (never the credentials). */
  private async api<T>(action: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof PaddockError) throw err;
      const code = (err as { name?: string }).name ?? "Error";
      const message = err instanceof Error ? err.message : String(err);
      const config = /^Invalid|NotFound|MissingParameter/.test(code);
      throw new PaddockError(config ? "invalid_argument" : "unavailable", `provider ${this.name}: EC2 ${action} failed: ${code}: ${message}`, { action, ec2Code: code });
    }
  }
}
