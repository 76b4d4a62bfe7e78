/**
 * Sandbox networking for the local provider (docs/sandbox.md, "Network"): every sandbox gets its
 * own network namespace whose only link is a veth to the host, and whose only reachable peer is
 * the egress gateway's address (invariant 3, fail closed).
 *
 * Per installation (`scope`): a /16 in 10.200–249.x.x, a dummy interface `pdk<scope>` (a
 * bridge without ports where the kernel has no dummy driver) holding the gateway address
 * `10.X.0.1/32`, the route `unreachable 10.X.0.0/16` (host traffic to an address no sandbox holds
 * fails at once instead of following the default route off the machine; it also claims the range
 * atomically against a second installation), and the host nftables table `inet paddock_<scope>`. Per sandbox: a netns bound at
 * `/run/netns/paddock-<scope>-<slot>`, a veth `pk<scope[0:9]><slot>` ↔ `eth0`, the address
 * `10.X.<slot>` /32, and a ruleset inside the netns that DNATs 80/443/53 (and 5432 on the
 * gateway's address, to the database gateway) to the gateway and drops everything else. Namespaces are made by real root, so they are owned by the initial user
 * namespace and no sandbox process ever holds CAP_NET_ADMIN over them.
 *
 * Everything is named from scope + slot, and the slot's owner is written into the host veth's
 * `ifalias` (`paddock:<sandbox id>`), so a restarted control plane finds what a dead session left.
 *
 * Mode "proxy" (a remote node, `paddock node`: no gateway on this machine): the same namespaces,
 * veths and addresses, but nothing is DNATed and nothing on this host is reachable. Each sandbox's
 * only way out is TCP to the addresses and ports `acquire` is given (the gateway's TLS proxy
 * listener, resolved and pinned by the caller): a set in the netns's own ruleset, and the same
 * pairs keyed by the sandbox's address in the host table (input, for a gateway on this machine;
 * forward with masquerade, for one elsewhere, which needs `net.ipv4.ip_forward=1`). No DNS, no
 * IPv6, no other port or host.
 *
 * @example
 * const net = await openNetworkManager({ scope, ports: { proxyPort: 3128, httpPort: 3080, httpsPort: 3443, dnsPort: 3053 } });
 * // the gateway listens on net.gatewayIp, then per session:
 * const n = await net.acquire("s1"); // launch with { netns: n.netnsPath }; register n.sandboxIp with the gateway
 * await net.release("s1");
 */
import { spawn } from "node:child_process";
import { access, readFile, readdir, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { isIPv4 } from "node:net";
import type { GatewayEndpoints } from "../../gateway/types.ts";
import { PaddockError, invalid, unavailable } from "../../core/errors.ts";
import { CommandRunner } from "../../core/runner.ts";

export interface SandboxNetwork {
  /** Bind-mounted netns file to pass to the launcher's --netns. */
  netnsPath: string;
  /** The sandbox's address (unique per sandbox): the gateway identifies sessions by it. */
  sandboxIp: string;
  /** The installation's gateway address (next hop for every sandbox). */
  gatewayIp: string;
  /** Host side veth name. */
  hostIface: string;
}

export interface NetworkManager {
  /** The address the gateway must listen on; exists (on a dummy interface) once `open` resolved. */
  readonly gatewayIp: string;
  /** The installation's /16, e.g. `10.213.0.0/16`. */
  readonly subnet: string;
  readonly mode: NetworkMode;
  /** `allow`: mode "proxy" only (and required there): the IPv4 address and TCP port pairs the sandbox may connect to, nothing else. */
  acquire(sandboxId: string, allow?: AllowedDestination[]): Promise<SandboxNetwork>;
  /**
   * Optional hint: the sandbox that acquired a network has started (or failed to). Background work
   * (refilling the pool, deleting released networks) waits until every sandbox that acquired one
   * has said so, instead of a fixed quiet time after the last `acquire`.
   */
  started(sandboxId: string): void;
  /**
   * Idempotent; an unknown id is fine. Returns at once: the network is deleted in the background
   * with others, when no sandbox is starting (its processes must already be gone). Until then its
   * veth keeps the `paddock:<id>` label, so a crash meanwhile is reconciled like a live one.
   */
  release(sandboxId: string): Promise<void>;
  /** Ids that have network objects on this machine (for reconciliation / doctor). */
  list(): Promise<string[]>;
  /** Leaked objects, described for `paddock doctor`, given the live ids. */
  leaks(live: Set<string>): Promise<string[]>;
  /**
   * Drop the pool of ready namespaces. With `removeHostObjects` also every sandbox network of this
   * installation, the dummy interface and the host table (tests); without, running sessions keep
   * their networks and the gateway address (the server).
   */
  close(opts?: { removeHostObjects?: boolean }): Promise<void>;
}

/** "gateway": the egress gateway runs on this machine (80/443/53 DNATed to it); "proxy": sandboxes reach only the destinations given to `acquire`. */
export type NetworkMode = "gateway" | "proxy";

/** One destination a "proxy" sandbox may open TCP connections to (an address, never a name: no DNS). */
export interface AllowedDestination {
  ip: string;
  port: number;
}

export interface NetworkOptions {
  /** Installation scope: 12 lower-case hex digits (`installationScope(home)`). */
  scope: string;
  /** Default "gateway". */
  mode?: NetworkMode;
  /** The gateway's ports (mode "gateway" only, and required there); without `postgresPort` a sandbox's TCP 5432 is dropped like any other port. */
  ports?: GatewayPorts;
  /**
   * Namespaces kept ready so `acquire` is O(1) (about 250 KiB of kernel memory each). Default 12,
   * refilled in batches of 4 once 4 are missing: a burst of 8 starts never builds one on its path.
   * 0 builds each one on demand.
   */
  poolSize?: number;
  /** Force the second octet of the installation's /16 (10.X.0.0/16) instead of choosing a free one. */
  octet?: number;
  /**
   * Background work starts only this long after the last `acquire` (ms, default 40), so it does not
   * compete with the sessions starting on the same cores. Once a caller has used `started`, the
   * wait ends as soon as every acquired sandbox has started.
   */
  quietMs?: number;
}

type GatewayPorts = Omit<GatewayEndpoints, "address" | "postgresPort"> & { postgresPort?: number };

const PATH_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };
const NETNS_DIR = "/run/netns";
const POOL_ALIAS = "paddock-pool";
const ID_ALIAS = "paddock:";
/** Host index 0 is the network, 1 the gateway, 65535 the old broadcast: never a sandbox. */
const FIRST_SLOT = 2;
const LAST_SLOT = 0xfffe;
const DEFAULT_POOL = 12;
const DEFAULT_QUIET_MS = 40;
/** Namespaces built by one refill step: one `ip -batch` and one shell for all of them. */
const REFILL_CHUNK = 4;
/** A sandbox that never reports `started` stops holding background work back after this long. */
const START_HINT_LIMIT_MS = 2_000;
/** After `netns del` the kernel removes the veth pair with the namespace; past this, `link del` it. */
const VETH_GRACE_MS = 2_000;
/** Pause after a failed refill (acquire still builds on demand and reports the error). */
const REFILL_BACKOFF_MS = 1_000;

/**
 * Names of one installation's objects, all derived from the scope, each within the kernel's 15
 * characters. The veth prefix is as long as a 4-digit index allows: the host table matches veths
 * by prefix, so two installations sharing one would drop each other's gateway traffic (a leaked
 * table with a 4-digit prefix did exactly that to 1 test run in ~100). `openNetworkManager` also
 * refuses a prefix another installation's table holds.
 */
export function networkNames(scope: string): { dummy: string; table: string; vethPrefix: string; netnsPrefix: string } {
  if (!/^[0-9a-f]{12}$/.test(scope)) throw invalid(`bad installation scope ${JSON.stringify(scope)}: want 12 hex digits`);
  return { dummy: `pdk${scope}`, table: `paddock_${scope}`, vethPrefix: `pk${scope.slice(0, 9)}`, netnsPrefix: `paddock-${scope}-` };
}

/** Another installation's host table whose veth prefix is ours: its input chain would drop our sandboxes' traffic. */
async function refuseSharedPrefix(scope: string): Promise<void> {
  const mine = networkNames(scope).vethPrefix;
  const tables = await run("nft", ["list", "tables", "inet"]).catch(() => "");
  for (const m of tables.matchAll(/^table inet paddock_([0-9a-f]{12})$/gm)) {
    const other = m[1] ?? "";
    if (other !== scope && networkNames(other).vethPrefix === mine)
      throw unavailable(
        `another Paddock installation's network rules (nft table inet paddock_${other}) match this installation's interfaces ${mine}*; ` +
          `if that installation is gone, remove them with: nft delete table inet paddock_${other}`,
      );
  }
}

/** `/etc/resolv.conf` for a sandbox: the gateway answers DNS (port 53 is DNATed to it anyway). */
export function resolvConf(gatewayIp: string): string {
  return `nameserver ${gatewayIp}\noptions timeout:2 attempts:2\n`;
}

/** `/etc/resolv.conf` for a "proxy" sandbox: no name server (nothing answers DNS); names come from /etc/hosts only. */
export const NO_DNS_RESOLV_CONF = "# No DNS: this sandbox reaches only Paddock's gateway, named in /etc/hosts.\noptions timeout:1 attempts:1\n";

/** `/etc/hosts` for a sandbox: loopback names only, so nothing resolves to the host; plus `pinned` (name → address) for a "proxy" sandbox's gateway. */
export function hostsFile(hostname: string, pinned: { name: string; ip: string }[] = []): string {
  return `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n${pinned.map((p) => `${p.ip}\t${p.name}\n`).join("")}`;
}

export async function openNetworkManager(opts: NetworkOptions): Promise<NetworkManager> {
  const names = networkNames(opts.scope);
  const mode = opts.mode ?? "gateway";
  if (mode === "gateway" && !opts.ports) throw invalid("a gateway-mode network needs the gateway's ports");
  for (const [k, v] of Object.entries(opts.ports ?? {}))
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw invalid(`gateway port ${k}=${String(v)} is not a TCP/UDP port`);
  await refuseSharedPrefix(opts.scope);
  const octet = await ensureDummy(opts.scope, names.dummy, opts.octet);
  const mgr = new LocalNetworkManager(opts, names, octet);
  try {
    await run("nft", ["-f", "-"], mode === "proxy" ? proxyHostRuleset(names, mgr.subnet) : hostRuleset(names, mgr.gatewayIp, opts.ports!));
    await mgr.adopt();
  } catch (err) {
    // Never removeHostObjects here: on a restart that would cut off the running sessions.
    await mgr.close().catch(() => undefined);
    throw err;
  }
  mgr.kick();
  return mgr;
}

interface Slot {
  index: number;
  /** Owner, once acquired. */
  id?: string;
}

/**
 * Where the time goes (2 cores, kernel 6.18): building one namespace costs ~17 ms of CPU in four
 * processes (`ip`, `nsenter sh`, `ip`, `nft`), ~10 ms when several are built by one `ip -batch`
 * and one shell; `ip link del` of a veth waits out an RCU grace period under the rtnl lock (~25
 * ms each, serialised even in one batch), while `netns del` alone lets the kernel remove the
 * namespace and its veth pair in one batched teardown (~3 ms per namespace in a batch of 20). So:
 * a pool that covers a burst, refilled in batches, and released networks deleted in batches by
 * `netns del`; both only when no sandbox is starting, so they do not compete with starts for the
 * cores. Released namespaces are never reused, see `release`.
 */
class LocalNetworkManager implements NetworkManager {
  readonly gatewayIp: string;
  readonly subnet: string;
  readonly mode: NetworkMode;
  /** Mode "proxy": per slot, the host table's `allowed` elements (`sandboxIp . ip . port`) it holds. */
  private readonly hostAllowed = new Map<number, string[]>();
  /** Slots whose objects may exist (never handed out again until they are gone). */
  private readonly used = new Set<number>();
  private readonly byId = new Map<string, Slot>();
  private readonly pool: Slot[] = [];
  /** Slots being built right now (not leaks, not yet in the pool). */
  private readonly building = new Set<number>();
  /** Released, netns not yet deleted. */
  private readonly releasing = new Set<number>();
  /** `netns del` done at the given time; the kernel removes the veth pair once the namespace is freed. */
  private readonly dying = new Map<number, number>();
  /** Sandboxes that acquired a network and have not said `started` yet, with the time they did. */
  private readonly starting = new Map<string, number>();
  private lastAcquire = -Infinity;
  private hinted = false;
  private refillPausedUntil = 0;
  private nextDyingCheck = 0;
  /** While `settled` runs, background steps wait (they would race it for the same slots). */
  private flushing = 0;
  private worker: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private cursor: number;
  private closed = false;
  private readonly want: number;
  private readonly quietMs: number;
  /**
   * Runs every script of the manager after `open` (concurrently), so the control plane never forks
   * for them: a `spawn()` blocks its event loop while Node forks it (~3 ms in a server of ~210 MiB
   * RSS on a quiet machine, 5–20 ms on a busy one), and whichever request is in flight pays.
   */
  private readonly shell = new CommandRunner({ env: PATH_ENV });

  constructor(
    private readonly opts: NetworkOptions,
    private readonly names: ReturnType<typeof networkNames>,
    private readonly octet: number,
  ) {
    this.mode = opts.mode ?? "gateway";
    this.gatewayIp = `10.${octet}.0.1`;
    this.subnet = `10.${octet}.0.0/16`;
    this.want = Math.max(0, opts.poolSize ?? DEFAULT_POOL);
    this.quietMs = Math.max(0, opts.quietMs ?? DEFAULT_QUIET_MS);
    this.cursor = FIRST_SLOT + (parseInt(createHash("sha256").update(String(process.pid) + String(Date.now())).digest("hex").slice(0, 4), 16) % (LAST_SLOT - FIRST_SLOT));
  }

  /**
   * After a restart: keep what sessions own; drop the old pool and what a crash left half-made (a
   * veth without a label, a namespace without a veth: neither ever belonged to a session); never
   * reuse a taken slot.
   */
  async adopt(): Promise<void> {
    const stale: number[] = [];
    const veths = await this.hostVeths();
    for (const v of veths) {
      this.used.add(v.index);
      if (v.alias.startsWith(ID_ALIAS)) this.byId.set(v.alias.slice(ID_ALIAS.length), { index: v.index, id: v.alias.slice(ID_ALIAS.length) });
      else if (v.alias === POOL_ALIAS || v.alias === "") stale.push(v.index);
    }
    const withVeth = new Set(veths.map((v) => v.index));
    for (const index of await this.netnsSlots()) {
      this.used.add(index);
      if (!withVeth.has(index)) stale.push(index);
    }
    await this.removeNow(stale);
    // The host table was just made again, empty: give each running sandbox back the
    // destinations its own netns allows (read from there: the kernel object is the record).
    if (this.mode === "proxy")
      for (const slot of this.byId.values()) {
        const listed = await run("nsenter", [`--net=${NETNS_DIR}/${this.netnsName(slot.index)}`, "nft", "list", "set", "inet", "paddock", "allow"]).catch(() => "");
        const allow = [...listed.matchAll(/(\d+\.\d+\.\d+\.\d+) \. (\d+)/g)].map((m) => ({ ip: m[1] ?? "", port: Number(m[2]) }));
        if (allow.length) await this.shell.script(this.allowScript(slot.index, allow, false));
      }
  }

  async acquire(sandboxId: string, allow?: AllowedDestination[]): Promise<SandboxNetwork> {
    if (this.closed) throw unavailable("network manager is closed");
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/.test(sandboxId)) throw invalid(`bad sandbox id ${JSON.stringify(sandboxId)}`);
    if (this.mode === "gateway" && allow) throw invalid("a gateway-mode network takes no allowed destinations: its sandboxes reach the local gateway");
    if (this.mode === "proxy") {
      if (!allow?.length) throw invalid(`sandbox ${sandboxId}: a proxy-mode network needs at least one allowed destination`);
      for (const a of allow) {
        if (!isIPv4(a.ip) || !Number.isInteger(a.port) || a.port < 1 || a.port > 65535) throw invalid(`sandbox ${sandboxId}: allowed destination ${JSON.stringify(a)} is not an IPv4 address and TCP port`);
        const why = unreachableDestination(a.ip, this.subnet);
        if (why) throw invalid(`sandbox ${sandboxId}: allowed destination ${a.ip}:${a.port} is ${why}: a sandbox is never let through to it`);
      }
    }
    if (this.byId.has(sandboxId)) throw new PaddockError("conflict", `sandbox ${sandboxId} already has a network`);
    this.lastAcquire = performance.now();
    this.starting.set(sandboxId, this.lastAcquire);
    const slot: Slot = { index: 0, id: sandboxId };
    this.byId.set(sandboxId, slot);
    try {
      const ready = this.pool.shift();
      slot.index = ready ? ready.index : await this.buildOne();
      // The owner lives in the kernel object itself: a restarted control plane reads it back.
      await writeFile(`/sys/class/net/${this.veth(slot.index)}/ifalias`, ID_ALIAS + sandboxId).catch(async (err: unknown) => {
        await this.removeNow([slot.index]);
        throw unavailable(`cannot label the network of sandbox ${sandboxId}: ${(err as Error).message}`, err);
      });
      if (allow)
        await this.shell.script(this.allowScript(slot.index, allow, true)).catch(async (err: unknown) => {
          await this.dropHostAllowed(slot.index);
          await this.removeNow([slot.index]);
          throw unavailable(`cannot open the allowed destinations of sandbox ${sandboxId}: ${(err as Error).message}`, err);
        });
    } catch (err) {
      this.byId.delete(sandboxId);
      this.starting.delete(sandboxId);
      this.kick();
      throw err;
    }
    this.kick();
    return this.describe(slot.index);
  }

  started(sandboxId: string): void {
    this.hinted = true;
    if (this.starting.delete(sandboxId)) this.kick();
  }

  /**
   * Released namespaces are deleted, never handed to another sandbox. Reuse would skip ~10 ms of
   * building and ~3 ms of deleting, but (1) the address would go to the next session at once,
   * while the gateway keys sessions by source address and the control plane unregisters a session
   * only after the provider stopped it: a start in between is refused ("already registered"); and
   * (2) the namespace keeps kernel state of the session that ran in it, which the next one could
   * read: its TCP sockets in TIME_WAIT and FIN_WAIT, listed in /proc/net/tcp with the original
   * (pre-DNAT) destination addresses, and its conntrack entries. Wiping them takes `ss -K`,
   * `conntrack -F` and a new address, as many processes as building a fresh namespace.
   */
  async release(sandboxId: string): Promise<void> {
    const indices = new Set<number>();
    const known = this.byId.get(sandboxId);
    if (known) indices.add(known.index);
    this.byId.delete(sandboxId);
    this.starting.delete(sandboxId);
    if (!known) for (const v of await this.hostVeths()) if (v.alias === ID_ALIAS + sandboxId) indices.add(v.index);
    // Closed at once on the host, not when the namespace is deleted in the background.
    for (const i of indices) await this.dropHostAllowed(i);
    for (const i of indices) if (!this.dying.has(i)) this.releasing.add(i);
    this.kick();
  }

  /**
   * Mode "proxy": a script that lets slot `index` reach `allow` (TCP only): in its netns's `allow`
   * set (`inNetns`: the netns keeps them across a restart) and the host table's `allowed` set.
   */
  private allowScript(index: number, allow: AllowedDestination[], inNetns: boolean): string {
    const sandboxIp = this.ip(index);
    const host = allow.map((a) => `${sandboxIp} . ${a.ip} . ${a.port}`);
    this.hostAllowed.set(index, [...new Set([...(this.hostAllowed.get(index) ?? []), ...host])]);
    const lines = ["set -e"];
    if (inNetns) lines.push(`nsenter --net=${NETNS_DIR}/${this.netnsName(index)} nft add element inet paddock allow '{ ${allow.map((a) => `${a.ip} . ${a.port}`).join(", ")} }'`);
    lines.push(`nft add element inet ${this.names.table} allowed '{ ${host.join(", ")} }'`);
    return lines.join("\n") + "\n";
  }

  /** Mode "proxy": remove slot `index`'s elements from the host table (best effort: gone is fine). */
  private async dropHostAllowed(index: number): Promise<void> {
    const elements = this.hostAllowed.get(index);
    this.hostAllowed.delete(index);
    if (!elements?.length) return;
    await this.shell.script(`nft delete element inet ${this.names.table} allowed '{ ${elements.join(", ")} }'\n`).catch(() => undefined);
  }

  async list(): Promise<string[]> {
    await this.settled();
    const ids = new Set<string>();
    for (const v of await this.hostVeths()) if (v.alias.startsWith(ID_ALIAS)) ids.add(v.alias.slice(ID_ALIAS.length));
    return [...ids].sort();
  }

  async leaks(live: Set<string>): Promise<string[]> {
    await this.settled();
    const out: string[] = [];
    const mine = new Set(this.pool.map((s) => s.index));
    const veths = await this.hostVeths();
    const withVeth = new Set(veths.map((v) => v.index));
    for (const v of veths) {
      const netns = `${NETNS_DIR}/${this.netnsName(v.index)}`;
      if (v.alias.startsWith(ID_ALIAS)) {
        const id = v.alias.slice(ID_ALIAS.length);
        if (!live.has(id)) out.push(`network of sandbox ${id} (no live session): veth ${v.name}, ${netns}, ${this.ip(v.index)}`);
      } else if (!(v.alias === POOL_ALIAS && mine.has(v.index)) && !this.building.has(v.index)) {
        out.push(`unowned sandbox network: veth ${v.name}${v.alias ? ` (${v.alias})` : ""}, ${netns}`);
      }
    }
    for (const index of await this.netnsSlots())
      if (!withVeth.has(index) && !this.building.has(index)) out.push(`network namespace without a veth: ${NETNS_DIR}/${this.netnsName(index)}`);
    return out;
  }

  async close(o: { removeHostObjects?: boolean } = {}): Promise<void> {
    this.closed = true;
    await this.settled();
    await this.removeNow(this.pool.splice(0).map((s) => s.index));
    if (o.removeHostObjects) {
      const indices = new Set([...(await this.hostVeths()).map((v) => v.index), ...(await this.netnsSlots())]);
      await this.removeNow([...indices]);
    }
    await this.shell.close();
    if (!o.removeHostObjects) return;
    this.byId.clear();
    await run("nft", ["-f", "-"], `add table inet ${this.names.table}\ndelete table inet ${this.names.table}\n`);
    await run("ip", ["-force", "-batch", "-"], `route del unreachable ${this.subnet}\nlink del ${this.names.dummy}\n`).catch(() => undefined);
  }

  /**
   * Run background work (delete released networks, check dying veths, refill the pool) one step
   * at a time, each only once no sandbox is starting; between steps the condition is checked again.
   */
  kick(): void {
    if (this.worker || this.closed || this.flushing) return;
    const next = this.nextWork();
    if (!next) return;
    const wait = Math.max(next.at, this.quietUntil()) - performance.now();
    if (wait > 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.kick();
      }, Math.ceil(wait));
      this.timer.unref();
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.worker = next
      .run()
      .catch(() => undefined)
      .finally(() => {
        this.worker = undefined;
        this.kick();
      });
  }

  /** When background work may begin: `quietMs` after the last acquire, or once every start reported. */
  private quietUntil(): number {
    const now = performance.now();
    for (const [id, t] of this.starting) if (now - t > START_HINT_LIMIT_MS) this.starting.delete(id);
    if (this.hinted) {
      let until = 0;
      for (const t of this.starting.values()) until = Math.max(until, t + START_HINT_LIMIT_MS);
      return this.starting.size ? until : 0;
    }
    return this.lastAcquire + this.quietMs;
  }

  /** The next piece of background work and the earliest time it is due, or null when there is none. */
  private nextWork(): { at: number; run: () => Promise<void> } | null {
    const now = performance.now();
    if (this.releasing.size) return { at: now, run: () => this.reap() };
    // Refill in batches: once a chunk's worth is missing (or the pool is empty), not after every acquire.
    const deficit = this.want - this.pool.length;
    const refill = deficit > 0 && (deficit >= Math.min(REFILL_CHUNK, this.want) || this.pool.length === 0);
    if (refill && now >= this.refillPausedUntil) return { at: now, run: () => this.refill(Math.min(deficit, REFILL_CHUNK)) };
    if (this.dying.size) return { at: Math.max(this.nextDyingCheck, Math.min(...this.dying.values()) + 50), run: () => this.checkDying(false) };
    if (refill) return { at: this.refillPausedUntil, run: () => this.refill(Math.min(deficit, REFILL_CHUNK)) };
    return null;
  }

  /** Build `n` namespaces in one batch and add them to the pool. */
  private async refill(n: number): Promise<void> {
    const indices = Array.from({ length: n }, () => this.allocate());
    try {
      await this.build(indices);
    } catch {
      this.refillPausedUntil = performance.now() + REFILL_BACKOFF_MS;
      return;
    }
    if (this.closed) await this.removeNow(indices);
    else this.pool.push(...indices.map((index) => ({ index })));
  }

  /** One namespace for an `acquire` that found the pool empty. */
  private async buildOne(): Promise<number> {
    const [index] = await this.build([this.allocate()]);
    return index ?? 0;
  }

  /** `netns del` of every released slot in one batch; the kernel then removes their veth pairs. */
  private async reap(): Promise<void> {
    const batch = [...this.releasing];
    this.releasing.clear();
    await this.shell.script(ipBatch(batch.map((i) => `netns del ${this.netnsName(i)}`))).catch(() => undefined);
    const now = performance.now();
    for (const i of batch) this.dying.set(i, now);
  }

  /**
   * Free the slots whose veth is gone. A namespace that something still holds (a socket in
   * FIN_WAIT) outlives its unmount; past the grace time, or when `force`, its veth is deleted
   * explicitly, which cuts it off and frees the address.
   */
  private async checkDying(force: boolean): Promise<void> {
    const now = performance.now();
    this.nextDyingCheck = now + 100;
    const stale: number[] = [];
    for (const [i, t] of this.dying) {
      if (!(await exists(`/sys/class/net/${this.veth(i)}`))) {
        this.dying.delete(i);
        this.used.delete(i);
      } else if (force || now - t >= VETH_GRACE_MS) stale.push(i);
    }
    if (!stale.length) return;
    await this.shell.script(ipBatch(stale.map((i) => `link del ${this.veth(i)}`))).catch(() => undefined);
    for (const i of stale) {
      this.dying.delete(i);
      this.used.delete(i);
    }
  }

  /** Finish background work now: released networks deleted, their veths gone (list, leaks, close). */
  private async settled(): Promise<void> {
    this.flushing++;
    try {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      while (this.worker) await this.worker;
      if (this.releasing.size) await this.reap();
      // The kernel's namespace teardown is asynchronous: wait for it briefly, then delete what is left.
      for (let wait = 1; this.dying.size && wait <= 256; wait *= 2) {
        await this.checkDying(false);
        if (this.dying.size) await new Promise((r) => setTimeout(r, wait));
      }
      await this.checkDying(true);
    } finally {
      this.flushing--;
    }
    this.kick();
  }

  /** Remove slots at once (netns and veth, missing pieces are fine) and free them. */
  private async removeNow(indices: number[]): Promise<void> {
    if (!indices.length) return;
    for (const i of indices) {
      this.releasing.delete(i);
      this.dying.delete(i);
    }
    await this.shell.script(ipBatch(indices.map((i) => `netns del ${this.netnsName(i)}`))).catch(() => undefined);
    const now = performance.now();
    for (const i of indices) this.dying.set(i, now);
    for (let wait = 1; wait <= 256; wait *= 2) {
      await this.checkDying(false);
      if (!indices.some((i) => this.dying.has(i))) return;
      await new Promise((r) => setTimeout(r, wait));
    }
    const left = indices.filter((i) => this.dying.has(i));
    await this.shell.script(ipBatch(left.map((i) => `link del ${this.veth(i)}`))).catch(() => undefined);
    for (const i of left) {
      this.dying.delete(i);
      this.used.delete(i);
    }
  }

  /** Next free slot, round-robin, so an address is reused as late as possible (the gateway keys sessions by it). */
  private allocate(): number {
    for (let n = 0; n <= LAST_SLOT - FIRST_SLOT; n++) {
      const i = this.cursor;
      this.cursor = i >= LAST_SLOT ? FIRST_SLOT : i + 1;
      if (!this.used.has(i)) {
        this.used.add(i);
        return i;
      }
    }
    throw unavailable(`no free sandbox address left in ${this.subnet}`);
  }

  private veth(index: number): string {
    return `${this.names.vethPrefix}${hex4(index)}`;
  }

  private netnsName(index: number): string {
    return `${this.names.netnsPrefix}${hex4(index)}`;
  }

  private ip(index: number): string {
    return `10.${this.octet}.${index >> 8}.${index & 0xff}`;
  }

  private describe(index: number): SandboxNetwork {
    return { netnsPath: `${NETNS_DIR}/${this.netnsName(index)}`, sandboxIp: this.ip(index), gatewayIp: this.gatewayIp, hostIface: this.veth(index) };
  }

  /**
   * Sandbox networks in one process, however many: a shell that runs one `ip -batch` on the host
   * (per slot: netns, veth with its peer made directly inside the netns as eth0, host route and
   * neighbour), then per slot an `nsenter` into the netns that disables IPv6, configures eth0
   * (`ip -batch`) and loads the ruleset (`nft -f`). All or nothing: on failure every slot of the
   * batch is removed.
   */
  private async build(indices: number[]): Promise<number[]> {
    for (const i of indices) this.building.add(i);
    const gw = this.gatewayIp;
    const host: string[] = [];
    const script: string[] = ["set -e"];
    for (const index of indices) {
      const veth = this.veth(index);
      const netns = this.netnsName(index);
      const ip = this.ip(index);
      const [hostMac, sbxMac] = [`02:70:6b:00:${hex2(index >> 8)}:${hex2(index & 0xff)}`, `02:70:6b:01:${hex2(index >> 8)}:${hex2(index & 0xff)}`];
      host.push(
        `netns add ${netns}`,
        `link add ${veth} address ${hostMac} type veth peer name eth0 address ${sbxMac} netns ${netns}`,
        `link set ${veth} alias ${POOL_ALIAS} addrgenmode none up`,
        `neigh replace ${ip} lladdr ${sbxMac} dev ${veth} nud permanent`,
        `route add ${ip}/32 dev ${veth} scope link src ${gw}`,
      );
      script.push(
        `echo 1 > /proc/sys/net/ipv6/conf/${veth}/disable_ipv6`,
        `nsenter --net=${NETNS_DIR}/${netns} sh -e <<'PADDOCK_NETNS'`,
        // eth0 is still down, so it never had an IPv6 address; lo keeps ::1 for local dev servers.
        "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
        "echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6",
        "ip -batch - <<'PADDOCK_IP'",
        "link set lo up",
        `addr add ${ip}/32 dev eth0`,
        "link set eth0 up",
        `neigh replace ${gw} lladdr ${hostMac} dev eth0 nud permanent`,
        `route add ${gw}/32 dev eth0 scope link src ${ip}`,
        `route add default via ${gw} dev eth0 src ${ip}`,
        "PADDOCK_IP",
        "nft -f - <<'PADDOCK_NFT'",
        this.mode === "proxy" ? proxySandboxRuleset() : sandboxRuleset(gw, this.opts.ports!),
        "PADDOCK_NFT",
        "PADDOCK_NETNS",
      );
    }
    script.splice(1, 0, "ip -batch - <<'PADDOCK_HOST'", ...host, "PADDOCK_HOST");
    try {
      // Scripts run concurrently: an acquire that found the pool empty does not queue behind a refill.
      await this.shell.script(script.join("\n") + "\n");
      return indices;
    } catch (err) {
      await this.removeNow(indices);
      const names = indices.map((i) => this.netnsName(i)).join(", ");
      throw unavailable(`cannot build sandbox network ${names}: ${(err as Error).message}`, err);
    } finally {
      for (const i of indices) this.building.delete(i);
    }
  }

  private async hostVeths(): Promise<{ name: string; index: number; alias: string }[]> {
    const pattern = new RegExp(`^${this.names.vethPrefix}([0-9a-f]{4})$`);
    const out: { name: string; index: number; alias: string }[] = [];
    for (const name of await readdir("/sys/class/net").catch(() => [])) {
      const m = pattern.exec(name);
      if (!m) continue;
      const alias = (await readFile(`/sys/class/net/${name}/ifalias`, "utf8").catch(() => "")).trim();
      out.push({ name, index: parseInt(m[1] ?? "0", 16), alias });
    }
    return out;
  }

  private async netnsSlots(): Promise<number[]> {
    const pattern = new RegExp(`^${this.names.netnsPrefix}([0-9a-f]{4})$`);
    const out: number[] = [];
    for (const name of await readdir(NETNS_DIR).catch(() => [])) {
      const m = pattern.exec(name);
      if (m) out.push(parseInt(m[1] ?? "0", 16));
    }
    return out;
  }
}

/**
 * Host table: from our veths, input accepts only the gateway's ports (and replies), after a
 * strict reverse-path check (no spoofed source can pose as another session); nothing is forwarded
 * to or from them. Other tables' rules still apply: a drop anywhere wins.
 */
function hostRuleset(names: ReturnType<typeof networkNames>, gw: string, p: GatewayPorts): string {
  const veths = `"${names.vethPrefix}*"`;
  const tcp = gatewayTcpPorts(p);
  return `add table inet ${names.table}
delete table inet ${names.table}
table inet ${names.table} {
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname ${veths} jump from_sandbox
  }
  chain from_sandbox {
    fib saddr . iif oif missing drop
    ct state established,related accept
    ip daddr ${gw} tcp dport { ${tcp} } accept
    ip daddr ${gw} udp dport ${p.dnsPort} accept
    drop
  }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname ${veths} drop
    oifname ${veths} drop
  }
}
`;
}

/** The gateway's TCP ports, as an nft set body. */
function gatewayTcpPorts(p: GatewayPorts): string {
  return [...new Set([p.proxyPort, p.httpPort, p.httpsPort, p.dnsPort, ...(p.postgresPort !== undefined ? [p.postgresPort] : [])])].join(", ");
}

/**
 * Inside the sandbox's netns (family inet: IPv4 and IPv6): 80/443/53 to any address, and 5432 to
 * the gateway's address (the database gateway), go to the gateway; loopback, replies and the gateway's ports pass;
 * everything else is refused at once instead of hanging: TCP `connect` gets EHOSTUNREACH (an ICMP
 * admin-prohibited delivered locally), other `sendto`s get EPERM (dropped in output). Input takes only the gateway's address
 * (the host side, e.g. a preview proxy) and replies.
 */
function sandboxRuleset(gw: string, p: GatewayPorts): string {
  const tcp = gatewayTcpPorts(p);
  // Only to the gateway's own address (the host of every database URL a sandbox is given): 5432
  // to anywhere else stays refused at once, as it was before there was a database gateway.
  const postgres = p.postgresPort !== undefined ? `\n    ip daddr ${gw} tcp dport 5432 dnat ip to ${gw}:${p.postgresPort}` : "";
  return `table inet paddock {
  chain nat_output {
    type nat hook output priority -100; policy accept;
    oifname "lo" return
    meta nfproto ipv4 tcp dport 80 dnat ip to ${gw}:${p.httpPort}
    meta nfproto ipv4 tcp dport 443 dnat ip to ${gw}:${p.httpsPort}
    meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to ${gw}:${p.dnsPort}${postgres}
  }
  chain output {
    type filter hook output priority filter; policy drop;
    oifname "lo" accept
    ct state established,related accept
    ip daddr ${gw} tcp dport { ${tcp} } accept
    ip daddr ${gw} udp dport ${p.dnsPort} accept
    meta l4proto tcp reject with icmpx admin-prohibited
  }
  chain input {
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    ct state established,related accept
    ip saddr ${gw} accept
  }
}`;
}

/**
 * Why a "proxy" sandbox may never be allowed to reach `ip` (null: it may), whatever its create
 * names: a gateway's address is a routable unicast one beyond this node's sandboxes. Link-local
 * holds the cloud's instance metadata service (the node's own role credentials); the installation's
 * /16 holds this node's side of every link and the other sandboxes; the rest is not one host.
 */
export function unreachableDestination(ip: string, subnet: string): string | null {
  const [a = 0, b = 0] = ip.split(".").map(Number);
  const [sa = -1, sb = -1] = subnet.split(/[./]/).map(Number);
  if (a === 127) return "a loopback address (the sandbox's own)";
  if (a === 0) return "not a host address";
  if (a >= 224) return "a multicast, broadcast or reserved address";
  if (a === 169 && b === 254) return "link-local (where the instance metadata service answers)";
  if (a === sa && b === sb) return `in this node's sandbox network ${subnet} (its own side of the link, or another sandbox)`;
  return null;
}

/**
 * Mode "proxy", host table: from our veths, input and forward accept only each sandbox's own
 * allowed pairs (`sandbox address . destination . port`, filled by `acquire`) after the strict
 * reverse-path check, and replies; nothing else from or to them, so no service of this host (the
 * node's own API, the metadata service) is reachable. Forwarded connections leave with this
 * host's address (masquerade): a sandbox address means nothing beyond this machine.
 */
function proxyHostRuleset(names: ReturnType<typeof networkNames>, subnet: string): string {
  const veths = `"${names.vethPrefix}*"`;
  return `add table inet ${names.table}
delete table inet ${names.table}
table inet ${names.table} {
  set allowed {
    type ipv4_addr . ipv4_addr . inet_service
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname ${veths} jump from_sandbox
  }
  chain from_sandbox {
    fib saddr . iif oif missing drop
    ct state established,related accept
    meta l4proto tcp ip saddr . ip daddr . tcp dport @allowed accept
    drop
  }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname ${veths} jump from_sandbox
    oifname ${veths} ct state established,related accept
    oifname ${veths} drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${subnet} oifname != ${veths} masquerade
  }
}
`;
}

/**
 * Mode "proxy", inside the sandbox's netns: TCP to the pairs in the set `allow` (added by
 * `acquire`), loopback and replies; nothing is DNATed. Everything else is refused at once: TCP
 * `connect` gets EHOSTUNREACH, other `sendto`s (DNS included) EPERM. Input takes replies only.
 */
function proxySandboxRuleset(): string {
  return `table inet paddock {
  set allow {
    type ipv4_addr . inet_service
  }
  chain output {
    type filter hook output priority filter; policy drop;
    oifname "lo" accept
    ct state established,related accept
    meta l4proto tcp ip daddr . tcp dport @allow accept
    meta l4proto tcp reject with icmpx admin-prohibited
  }
  chain input {
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    ct state established,related accept
  }
}`;
}

/**
 * Create (or find) the installation's dummy interface and claim its /16. An existing dummy pins
 * the subnet (sessions that outlived a restart keep their addresses); otherwise the first free
 * /16 from the scope's hash on, skipping any that overlaps an address or route on this machine.
 */
async function ensureDummy(scope: string, dummy: string, forced: number | undefined): Promise<number> {
  const existing = (await run("ip", ["-j", "-4", "addr", "show", "dev", dummy]).catch(() => "[]")).trim();
  const addrs = JSON.parse(existing || "[]") as { addr_info?: { local?: string }[] }[];
  const local = addrs[0]?.addr_info?.find((a) => /^10\.\d+\.0\.1$/.test(a.local ?? ""))?.local;
  if (local) {
    const octet = Number(local.split(".")[1]);
    await run("ip", ["-force", "-batch", "-"], `link set ${dummy} up\nroute replace unreachable 10.${octet}.0.0/16\n`);
    return octet;
  }
  if (addrs.length) await run("ip", ["link", "del", dummy]); // half-made by a crash
  const taken = await takenPrefixes();
  const start = forced ?? 200 + (parseInt(scope.slice(0, 4), 16) % 50);
  const candidates = forced !== undefined ? [forced] : Array.from({ length: 50 }, (_, i) => 200 + ((start - 200 + i) % 50));
  const clashes: string[] = [];
  for (const octet of candidates) {
    const clash = taken.find((t) => overlaps(t.prefix, `10.${octet}.0.0/16`));
    if (clash) {
      clashes.push(`10.${octet}.0.0/16 overlaps ${clash.what}`);
      continue;
    }
    try {
      // A kernel without the dummy driver (this machine's) gets a bridge with no ports instead:
      // it holds an address just as well and can never carry a packet anywhere.
      await run("ip", ["link", "add", dummy, "type", "dummy"]).catch(() => run("ip", ["link", "add", dummy, "type", "bridge"]));
      await writeFile(`/proc/sys/net/ipv6/conf/${dummy}/disable_ipv6`, "1").catch(() => undefined);
      await run(
        "ip",
        ["-batch", "-"],
        // `route add` fails if another installation claimed the same /16 meanwhile: an atomic claim.
        [`link set ${dummy} addrgenmode none up`, `addr add 10.${octet}.0.1/32 dev ${dummy}`, `route add unreachable 10.${octet}.0.0/16`, ""].join("\n"),
      );
      return octet;
    } catch (err) {
      await run("ip", ["link", "del", dummy]).catch(() => undefined);
      if (!/File exists/.test((err as Error).message)) throw unavailable(`cannot create the gateway interface ${dummy}: ${(err as Error).message}`, err);
      clashes.push(`10.${octet}.0.0/16: ${(err as Error).message}`);
    }
  }
  throw unavailable(
    `no free address range for sandbox networks: ${clashes.slice(0, 5).join("; ")}${clashes.length > 5 ? ` (and ${clashes.length - 5} more)` : ""}. ` +
      "Free one of 10.200.0.0/16–10.249.0.0/16 or pass another range.",
  );
}

interface Taken {
  prefix: string;
  what: string;
}

/** IPv4 addresses and routes (every table) on this machine, except default routes. */
async function takenPrefixes(): Promise<Taken[]> {
  const out: Taken[] = [];
  const addrs = JSON.parse((await run("ip", ["-j", "-4", "addr"])) || "[]") as { ifname: string; addr_info?: { local: string; prefixlen: number }[] }[];
  for (const a of addrs) for (const i of a.addr_info ?? []) out.push({ prefix: `${i.local}/${i.prefixlen}`, what: `address ${i.local}/${i.prefixlen} on ${a.ifname}` });
  const routes = JSON.parse((await run("ip", ["-j", "-4", "route", "show", "table", "all"])) || "[]") as { dst: string; dev?: string; table?: string }[];
  for (const r of routes) {
    if (r.dst === "default" || r.dst === "0.0.0.0/0") continue;
    const prefix = r.dst.includes("/") ? r.dst : `${r.dst}/32`;
    out.push({ prefix, what: `route ${r.dst}${r.dev ? ` dev ${r.dev}` : ""}${r.table ? ` table ${r.table}` : ""}` });
  }
  return out;
}

function overlaps(a: string, b: string): boolean {
  const parse = (p: string): [number, number] => {
    const [addr = "", len = "32"] = p.split("/");
    const n = addr.split(".").reduce((acc, o) => acc * 256 + Number(o), 0) >>> 0;
    return [n, Number(len)];
  };
  const [na, la] = parse(a);
  const [nb, lb] = parse(b);
  const len = Math.min(la, lb);
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  return (na & mask) >>> 0 === (nb & mask) >>> 0;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, "0");
const hex4 = (n: number): string => n.toString(16).padStart(4, "0");

/** A script running `ip -batch` on `lines`, going on past failing lines (a missing netns, a veth already gone). */
function ipBatch(lines: string[]): string {
  return `ip -force -batch - <<'PADDOCK_IP'\n${lines.join("\n")}\nPADDOCK_IP\n`;
}

const exists = (path: string): Promise<boolean> => access(path).then(
  () => true,
  () => false,
);

/** Run a tool with `input` on stdin; resolves stdout, rejects with its stderr. */
function run(cmd: string, args: string[], input = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: PATH_ENV, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.once("error", (e) => reject(unavailable(`cannot run ${cmd} (install iproute2, nftables and util-linux): ${e.message}`, e)));
    child.once("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(" ")}: ${err.trim() || `exit ${String(code)}`}`))));
    child.stdin.on("error", () => undefined);
    child.stdin.end(input);
  });
}
