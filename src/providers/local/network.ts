/**
 * Sandbox networking for the local provider (docs/sandbox.md, "Network"): every sandbox gets its
 * own network namespace whose only link is a veth to the host, and whose only reachable peer is
 * the egress gateway's address (invariant 3, fail closed).
 *
 * Per installation (`scope`): a /16 in 10.200–249.x.x, a dummy interface `pdk<scope[0:6]>` (a
 * bridge without ports where the kernel has no dummy driver) holding the gateway address
 * `10.X.0.1/32`, the route `unreachable 10.X.0.0/16` (host traffic to an address no sandbox holds
 * fails at once instead of following the default route off the machine; it also claims the range
 * atomically against a second installation), and the host nftables table `inet paddock_<scope>`. Per sandbox: a netns bound at
 * `/run/netns/paddock-<scope>-<slot>`, a veth `pk<scope[0:4]><slot>` ↔ `eth0`, the address
 * `10.X.<slot>` /32, and a ruleset inside the netns that DNATs 80/443/53 to the gateway and drops
 * everything else. Namespaces are made by real root, so they are owned by the initial user
 * namespace and no sandbox process ever holds CAP_NET_ADMIN over them.
 *
 * Everything is named from scope + slot, and the slot's owner is written into the host veth's
 * `ifalias` (`paddock:<sandbox id>`), so a restarted control plane finds what a dead session left.
 *
 * @example
 * const net = await openNetworkManager({ scope, ports: { proxyPort: 3128, httpPort: 3080, httpsPort: 3443, dnsPort: 3053 } });
 * // the gateway listens on net.gatewayIp, then per session:
 * const n = await net.acquire("s1"); // launch with { netns: n.netnsPath }; register n.sandboxIp with the gateway
 * await net.release("s1");
 */
import { spawn } from "node:child_process";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import type { GatewayEndpoints } from "../../gateway/types.ts";
import { PaddockError, invalid, unavailable } from "../../core/errors.ts";

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
  acquire(sandboxId: string): Promise<SandboxNetwork>;
  /** Idempotent; an unknown id is fine. */
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

export interface NetworkOptions {
  /** Installation scope: 12 lower-case hex digits (`installationScope(home)`). */
  scope: string;
  ports: Omit<GatewayEndpoints, "address">;
  /** Namespaces kept ready so `acquire` is O(1). Default 2; 0 builds each one on demand. */
  poolSize?: number;
  /** Force the second octet of the installation's /16 (10.X.0.0/16) instead of choosing a free one. */
  octet?: number;
}

const PATH_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };
const NETNS_DIR = "/run/netns";
const POOL_ALIAS = "paddock-pool";
const ID_ALIAS = "paddock:";
/** Host index 0 is the network, 1 the gateway, 65535 the old broadcast: never a sandbox. */
const FIRST_SLOT = 2;
const LAST_SLOT = 0xfffe;

/** Names of one installation's objects, all derived from the scope. */
export function networkNames(scope: string): { dummy: string; table: string; vethPrefix: string; netnsPrefix: string } {
  if (!/^[0-9a-f]{12}$/.test(scope)) throw invalid(`bad installation scope ${JSON.stringify(scope)}: want 12 hex digits`);
  return { dummy: `pdk${scope.slice(0, 6)}`, table: `paddock_${scope}`, vethPrefix: `pk${scope.slice(0, 4)}`, netnsPrefix: `paddock-${scope}-` };
}

/** `/etc/resolv.conf` for a sandbox: the gateway answers DNS (port 53 is DNATed to it anyway). */
export function resolvConf(gatewayIp: string): string {
  return `nameserver ${gatewayIp}\noptions timeout:2 attempts:2\n`;
}

/** `/etc/hosts` for a sandbox: loopback names only, so nothing resolves to the host. */
export function hostsFile(hostname: string): string {
  return `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`;
}

export async function openNetworkManager(opts: NetworkOptions): Promise<NetworkManager> {
  const names = networkNames(opts.scope);
  for (const [k, v] of Object.entries(opts.ports))
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw invalid(`gateway port ${k}=${String(v)} is not a TCP/UDP port`);
  const octet = await ensureDummy(opts.scope, names.dummy, opts.octet);
  const mgr = new LocalNetworkManager(opts, names, octet);
  try {
    await run("nft", ["-f", "-"], hostRuleset(names, mgr.gatewayIp, opts.ports));
    await mgr.adopt();
  } catch (err) {
    // Never removeHostObjects here: on a restart that would cut off the running sessions.
    await mgr.close().catch(() => undefined);
    throw err;
  }
  mgr.refill();
  return mgr;
}

interface Slot {
  index: number;
  /** Owner, once acquired. */
  id?: string;
}

class LocalNetworkManager implements NetworkManager {
  readonly gatewayIp: string;
  readonly subnet: string;
  private readonly used = new Set<number>();
  private readonly byId = new Map<string, Slot>();
  private readonly pool: Slot[] = [];
  /** Slots being built right now (not leaks, not yet in the pool). */
  private readonly building = new Set<number>();
  private filling: Promise<void> | undefined;
  private readonly pending = new Set<Promise<void>>();
  private cursor: number;
  private closed = false;

  constructor(
    private readonly opts: NetworkOptions,
    private readonly names: ReturnType<typeof networkNames>,
    private readonly octet: number,
  ) {
    this.gatewayIp = `10.${octet}.0.1`;
    this.subnet = `10.${octet}.0.0/16`;
    this.cursor = FIRST_SLOT + (parseInt(createHash("sha256").update(String(process.pid) + String(Date.now())).digest("hex").slice(0, 4), 16) % (LAST_SLOT - FIRST_SLOT));
  }

  /** After a restart: keep what sessions own, drop the old pool, and never reuse a taken slot. */
  async adopt(): Promise<void> {
    const stalePool: number[] = [];
    for (const v of await this.hostVeths()) {
      this.used.add(v.index);
      if (v.alias.startsWith(ID_ALIAS)) this.byId.set(v.alias.slice(ID_ALIAS.length), { index: v.index, id: v.alias.slice(ID_ALIAS.length) });
      else if (v.alias === POOL_ALIAS) stalePool.push(v.index);
    }
    for (const index of await this.netnsSlots()) this.used.add(index);
    await Promise.all(stalePool.map((i) => this.destroy(i)));
  }

  async acquire(sandboxId: string): Promise<SandboxNetwork> {
    if (this.closed) throw unavailable("network manager is closed");
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/.test(sandboxId)) throw invalid(`bad sandbox id ${JSON.stringify(sandboxId)}`);
    if (this.byId.has(sandboxId)) throw new PaddockError("conflict", `sandbox ${sandboxId} already has a network`);
    const slot = this.pool.shift() ?? { index: await this.build(this.allocate()) };
    slot.id = sandboxId;
    this.byId.set(sandboxId, slot);
    try {
      // The owner lives in the kernel object itself: a restarted control plane reads it back.
      await writeFile(`/sys/class/net/${this.veth(slot.index)}/ifalias`, ID_ALIAS + sandboxId);
    } catch (err) {
      this.byId.delete(sandboxId);
      await this.destroy(slot.index);
      throw unavailable(`cannot label the network of sandbox ${sandboxId}: ${(err as Error).message}`, err);
    }
    // After returning: spawning the refill's first tool costs ~1 ms of this event loop.
    setImmediate(() => this.refill());
    return this.describe(slot.index);
  }

  async release(sandboxId: string): Promise<void> {
    const indices = new Set<number>();
    const known = this.byId.get(sandboxId);
    if (known) indices.add(known.index);
    this.byId.delete(sandboxId);
    if (!known) for (const v of await this.hostVeths()) if (v.alias === ID_ALIAS + sandboxId) indices.add(v.index);
    await Promise.all([...indices].map((i) => this.destroy(i, { background: true })));
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
      } else if (!(v.alias === POOL_ALIAS && mine.has(v.index)) && !this.isBuilding(v.index)) {
        out.push(`unowned sandbox network: veth ${v.name}${v.alias ? ` (${v.alias})` : ""}, ${netns}`);
      }
    }
    for (const index of await this.netnsSlots())
      if (!withVeth.has(index) && !this.isBuilding(index)) out.push(`network namespace without a veth: ${NETNS_DIR}/${this.netnsName(index)}`);
    return out;
  }

  async close(o: { removeHostObjects?: boolean } = {}): Promise<void> {
    this.closed = true;
    await this.filling;
    await this.settled();
    const pooled = this.pool.splice(0);
    await Promise.all(pooled.map((s) => this.destroy(s.index)));
    if (!o.removeHostObjects) return;
    const indices = new Set([...(await this.hostVeths()).map((v) => v.index), ...(await this.netnsSlots())]);
    await Promise.all([...indices].map((i) => this.destroy(i)));
    this.byId.clear();
    await run("nft", ["-f", "-"], `add table inet ${this.names.table}\ndelete table inet ${this.names.table}\n`);
    await run("ip", ["-force", "-batch", "-"], `route del unreachable ${this.subnet}\nlink del ${this.names.dummy}\n`).catch(() => undefined);
  }

  /** Keep `poolSize` namespaces ready, building one at a time in the background. */
  refill(): void {
    if (this.filling || this.closed) return;
    const want = this.opts.poolSize ?? 2;
    if (this.pool.length >= want) return;
    this.filling = (async () => {
      try {
        while (!this.closed && this.pool.length < want) {
          const index = await this.build(this.allocate());
          if (this.closed) await this.destroy(index);
          else this.pool.push({ index });
        }
      } catch {
        // acquire builds inline when the pool is empty and reports the error there
      } finally {
        this.filling = undefined;
      }
    })();
  }

  private isBuilding(index: number): boolean {
    return this.building.has(index);
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
   * One sandbox network in two processes: `ip -batch` on the host (netns, veth with its peer made
   * directly inside the netns as eth0, host route and neighbour), then one `nsenter` running a
   * shell that disables IPv6, configures eth0 and loads the ruleset.
   */
  private async build(index: number): Promise<number> {
    this.building.add(index);
    const veth = this.veth(index);
    const netns = this.netnsName(index);
    const ip = this.ip(index);
    const gw = this.gatewayIp;
    const [hostMac, sbxMac] = [`02:70:6b:00:${hex2(index >> 8)}:${hex2(index & 0xff)}`, `02:70:6b:01:${hex2(index >> 8)}:${hex2(index & 0xff)}`];
    try {
      await run(
        "ip",
        ["-batch", "-"],
        [
          `netns add ${netns}`,
          `link add ${veth} address ${hostMac} type veth peer name eth0 address ${sbxMac} netns ${netns}`,
          `link set ${veth} alias ${POOL_ALIAS} addrgenmode none up`,
          `neigh replace ${ip} lladdr ${sbxMac} dev ${veth} nud permanent`,
          `route add ${ip}/32 dev ${veth} scope link src ${gw}`,
          "",
        ].join("\n"),
      );
      await writeFile(`/proc/sys/net/ipv6/conf/${veth}/disable_ipv6`, "1");
      const script = [
        "set -e",
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
        sandboxRuleset(gw, this.opts.ports),
        "PADDOCK_NFT",
        "",
      ].join("\n");
      await run("nsenter", [`--net=${NETNS_DIR}/${netns}`, "sh"], script);
      return index;
    } catch (err) {
      await this.destroy(index);
      throw unavailable(`cannot build sandbox network ${netns}: ${(err as Error).message}`, err);
    } finally {
      this.building.delete(index);
    }
  }

  /**
   * Remove a slot's netns and veth (deleting one end deletes both); missing pieces are fine.
   * Unmounting the netns takes ~1 ms, deleting the veth ~25 ms (the kernel waits out an RCU grace
   * period), so `background` returns after the unmount and finishes the veth off the caller's path:
   * once its netns is gone the sandbox is cut off anyway. `list`, `leaks` and `close` wait for it,
   * and the veth keeps its `paddock:<id>` label until gone, so a crash meanwhile is reconciled.
   */
  private async destroy(index: number, o: { background?: boolean } = {}): Promise<void> {
    const veth = this.veth(index);
    if (!o.background) {
      await run("ip", ["-force", "-batch", "-"], `netns del ${this.netnsName(index)}\nlink del ${veth}\n`).catch(() => undefined);
      this.used.delete(index);
      return;
    }
    await run("ip", ["netns", "del", this.netnsName(index)]).catch(() => undefined);
    const done: Promise<void> = run("ip", ["link", "del", veth])
      .catch(() => undefined)
      .then(() => {
        this.used.delete(index);
        this.pending.delete(done);
      });
    this.pending.add(done);
  }

  /** Wait for background veth deletions. */
  private async settled(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
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
 * Host table: from our veths, input accepts only the gateway's four ports (and replies), after a
 * strict reverse-path check (no spoofed source can pose as another session); nothing is forwarded
 * to or from them. Other tables' rules still apply: a drop anywhere wins.
 */
function hostRuleset(names: ReturnType<typeof networkNames>, gw: string, p: NetworkOptions["ports"]): string {
  const veths = `"${names.vethPrefix}*"`;
  const tcp = [...new Set([p.proxyPort, p.httpPort, p.httpsPort, p.dnsPort])].join(", ");
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

/**
 * Inside the sandbox's netns (family inet: IPv4 and IPv6): 80/443/53 to any address go to the
 * gateway; loopback, replies and the gateway's four ports pass; everything else is refused at
 * once instead of hanging: TCP `connect` gets EHOSTUNREACH (an ICMP admin-prohibited delivered
 * locally), other `sendto`s get EPERM (dropped in output). Input takes only the gateway's address
 * (the host side, e.g. a preview proxy) and replies.
 */
function sandboxRuleset(gw: string, p: NetworkOptions["ports"]): string {
  const tcp = [...new Set([p.proxyPort, p.httpPort, p.httpsPort, p.dnsPort])].join(", ");
  return `table inet paddock {
  chain nat_output {
    type nat hook output priority -100; policy accept;
    oifname "lo" return
    meta nfproto ipv4 tcp dport 80 dnat ip to ${gw}:${p.httpPort}
    meta nfproto ipv4 tcp dport 443 dnat ip to ${gw}:${p.httpsPort}
    meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to ${gw}:${p.dnsPort}
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
