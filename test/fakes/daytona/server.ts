/**
 * A local fake of the Daytona API subset that `@daytona/sdk` 0.216 calls for Paddock's daytona
 * provider, driven by the real SDK. It follows:
 * - the Daytona API reference, https://www.daytona.io/docs/en/tools/api/ (sandbox create / get /
 *   list / delete / start / stop, toolbox proxy URL, signed port preview URL);
 * - the toolbox (daemon) API, https://www.daytona.io/docs/en/tools/api/#daytona-toolbox (process
 *   sessions: create, execute, command state and logs, delete; `process/execute`; files: bulk
 *   upload and download as multipart/form-data, list, info, permissions);
 * - https://www.daytona.io/docs/en/sandboxes/ (states, default 1 vCPU / 1 GiB / 3 GiB, an
 *   organization's per-sandbox maximum of 4 vCPU / 8 GiB / 10 GiB, resources only when creating
 *   from an image), https://www.daytona.io/docs/en/network-limits/ (`networkAllowList`: at most
 *   5 IPv4 CIDRs; `networkBlockAll`) and https://www.daytona.io/docs/en/preview/ (ports 3000–9999).
 *
 * What it rejects as Daytona does: a missing or wrong API key (401), a sandbox name in use (409),
 * resources with a snapshot, resources beyond the limits, a malformed or too long allow list,
 * preview ports outside 3000–9999 (400), unknown sandboxes, sessions, commands and files (404),
 * toolbox calls on a sandbox that is not started.
 *
 * Where it is not Daytona: each "sandbox" is a real Paddock sandbox of the `local` provider the
 * test passes in (so commands and files are real), running as user `daytona`. An image build runs
 * the Dockerfile's `RUN` lines as root in a local build sandbox and commits a layer, cached by the
 * Dockerfile's content as Daytona caches the snapshot it builds; only `FROM` and `RUN` are
 * understood (anything else fails the build with a reason saying so), and `FROM` pulls nothing
 * (every image is this machine's host base, whose system files belong to the host: a RUN cannot
 * replace, say, /etc/ssl/certs/ca-certificates.crt). File reads do not follow a final symlink (the
 * local provider's rule; Daytona's daemon follows it). The network settings are validated and recorded, not
 * enforced: the local sandbox's network (when the test gives the local provider one) goes only to
 * a gateway address nothing listens on, i.e. everything is blocked. A signed preview URL is a
 * loopback listener of its own that forwards to the sandbox's port until it expires (Daytona's are
 * `https://<port>-<token>.<proxy domain>`). Logs are served without `follow` (no WebSocket).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from "node:net";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { FileEntry, Provider, SandboxSpec } from "../../../src/core/index.ts";
import { PaddockError } from "../../../src/core/index.ts";

export interface FakeDaytonaOptions {
  /** Runs the sandboxes (a local provider the test made and cleans up). */
  local: Provider;
  /** Give each local sandbox a network (needed for previews): the local provider has a network manager. */
  network?: boolean;
  apiKey?: string;
  /** The organization's per-sandbox maximum; Daytona's default 4 vCPU / 8 GiB / 10 GiB. */
  limits?: { cpu: number; memoryGiB: number; diskGiB: number };
}

export interface FakeDaytonaRequest {
  method: string;
  path: string;
  status: number;
  json: unknown;
}

export interface FakeDaytona {
  /** What the SDK takes as `apiUrl`. */
  apiUrl: string;
  apiKey: string;
  /** Every request, in order (bodies of JSON requests parsed). */
  requests: FakeDaytonaRequest[];
  /** Live sandboxes by Daytona id (the DTO the API answers with). */
  sandboxes(): Record<string, unknown>[];
  /** How many image builds ran (a Dockerfile already built is reused, as Daytona reuses its snapshot). */
  imageBuilds(): number;
  /** The size in bytes of each response body the session command logs calls answered, in order (what a client polling them downloads). */
  logResponseSizes(): number[];
  close(): Promise<void>;
}

type State = "creating" | "pending_build" | "building_snapshot" | "starting" | "started" | "stopping" | "stopped" | "destroying" | "destroyed" | "error" | "build_failed";

interface Command {
  id: string;
  command: string;
  exitCode?: number;
  stdout: string;
  stderr: string;
  output: string;
  abort: AbortController;
  done: Promise<void>;
}

interface FakeSandbox {
  id: string;
  name: string;
  state: State;
  errorReason?: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  cpu: number;
  memory: number;
  disk: number;
  public: boolean;
  networkBlockAll: boolean;
  networkAllowList?: string;
  autoStopInterval: number;
  snapshot?: string;
  dockerfile?: string;
  createdAt: string;
  updatedAt: string;
  /** The local sandbox running it now, and the layers it starts from (image, then what a stop kept). */
  localId: string;
  layers: string[];
  sessions: Map<string, Map<string, Command>>;
  previews: TcpServer[];
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly code?: string) {
    super(message);
  }
}

const GiB = 2 ** 30;
const USER = "daytona";
const HOME = "/home/daytona";
const DEFAULTS = { cpu: 1, memory: 1, disk: 3 };
const STATUS_TEXT: Record<number, string> = { 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error" };

export async function startFakeDaytona(opts: FakeDaytonaOptions): Promise<FakeDaytona> {
  const apiKey = opts.apiKey ?? `dtn_${randomBytes(16).toString("hex")}`;
  const limits = opts.limits ?? { cpu: 4, memoryGiB: 8, diskGiB: 10 };
  const local = opts.local;
  const sandboxes = new Map<string, FakeSandbox>();
  const builds = new Map<string, Promise<string>>();
  const requests: FakeDaytonaRequest[] = [];
  let seq = 0;
  let imageBuilds = 0;
  const logResponseSizes: number[] = [];
  let base = "";

  const find = (idOrName: string): FakeSandbox => {
    const s = sandboxes.get(idOrName) ?? [...sandboxes.values()].find((x) => x.name === idOrName);
    if (!s) throw new HttpError(404, `Sandbox with ID or name ${idOrName} not found`);
    return s;
  };
  const started = (s: FakeSandbox) => {
    if (s.state !== "started") throw new HttpError(400, `Sandbox ${s.id} is not started (state: ${s.state})`);
    return s;
  };
  const setState = (s: FakeSandbox, state: State, reason?: string) => {
    s.state = state;
    s.updatedAt = new Date().toISOString();
    if (reason !== undefined) s.errorReason = reason;
  };
  const dto = (s: FakeSandbox) => ({
    id: s.id, organizationId: "fake-org", name: s.name, ...(s.snapshot ? { snapshot: s.snapshot } : {}), user: USER,
    env: s.env, labels: s.labels, public: s.public, networkBlockAll: s.networkBlockAll,
    ...(s.networkAllowList !== undefined ? { networkAllowList: s.networkAllowList } : {}),
    target: "us", cpu: s.cpu, gpu: 0, memory: s.memory, disk: s.disk, state: s.state, desiredState: s.state === "stopped" ? "stopped" : "started",
    ...(s.errorReason ? { errorReason: s.errorReason } : {}), autoStopInterval: s.autoStopInterval, autoArchiveInterval: 10080, autoDeleteInterval: -1,
    ...(s.dockerfile ? { buildInfo: { dockerfileContent: s.dockerfile, snapshotRef: `fake-${hash(s.dockerfile)}`, createdAt: s.createdAt, updatedAt: s.createdAt } } : {}),
    createdAt: s.createdAt, updatedAt: s.updatedAt, sandboxClass: "container", toolboxProxyUrl: `${base}/toolbox`,
  });

  /** An image build: the Dockerfile's RUN lines as root in a build sandbox, committed as a layer (cached by content). */
  const build = (dockerfile: string): Promise<string> => {
    const layer = `dtimg-${hash(dockerfile)}`;
    let b = builds.get(layer);
    if (!b) {
      b = buildNow(dockerfile, layer);
      builds.set(layer, b);
      b.catch(() => builds.delete(layer));
    }
    return b;
  };
  const buildNow = async (dockerfile: string, layer: string): Promise<string> => {
    const runs: string[] = [];
    const lines = dockerfile.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
    if (!/^FROM\s+\S+/i.test(lines[0] ?? "")) throw new Error("Dockerfile must start with FROM");
    for (const line of lines.slice(1)) {
      const m = /^RUN\s+(.+)$/i.exec(line);
      if (!m) throw new Error(`the fake builds FROM and RUN only, not ${JSON.stringify(line.split(/\s/)[0])}`);
      runs.push(m[1]!);
    }
    imageBuilds++;
    const id = `dtb-${process.pid}-${++seq}`;
    await local.create(localSpec(id, { mode: "build", hostname: "build", compute: compute(DEFAULTS) }));
    try {
      for (const run of runs) {
        let out = "";
        const r = await local.exec(id, { argv: ["/bin/sh", "-c", run], cwd: "/", onStdout: (c) => (out += c.toString()), onStderr: (c) => (out += c.toString()) });
        if (r.exitCode !== 0) throw new Error(`RUN ${run.slice(0, 80)} exited with ${r.exitCode}: ${out.slice(-500)}`);
      }
    } catch (err) {
      await local.stop(id);
      throw err;
    }
    await local.stop(id, { commitAs: layer });
    return layer;
  };

  const localSpec = (id: string, over: Partial<SandboxSpec>): SandboxSpec => ({
    id, mode: "session", base: "host", layers: [], compute: compute(DEFAULTS), hostname: id, env: {},
    ...(opts.network ? { egress: () => Promise.resolve({ env: {}, files: [] }) } : {}),
    ...over,
  });
  const compute = (r: { cpu: number; memory: number; disk: number }) => ({ cpu: r.cpu, memoryBytes: r.memory * GiB, pids: 1024, diskBytes: r.disk * GiB });

  const boot = async (s: FakeSandbox) => {
    try {
      if (s.dockerfile && s.layers.length === 0) {
        setState(s, "building_snapshot");
        try {
          s.layers = [await build(s.dockerfile)];
        } catch (err) {
          setState(s, "build_failed", err instanceof Error ? err.message : String(err));
          return;
        }
      }
      setState(s, "starting");
      s.localId = `dt-${process.pid}-${++seq}`;
      await local.create(localSpec(s.localId, {
        layers: s.layers, compute: compute(s), hostname: s.name.slice(0, 63), env: s.env,
        sessionUser: { name: USER, home: HOME },
      }));
      if (s.state === "starting") setState(s, "started");
      else await local.stop(s.localId); // deleted while it started
    } catch (err) {
      setState(s, "error", err instanceof Error ? err.message : String(err));
    }
  };

  const endCommands = async (s: FakeSandbox) => {
    for (const cmds of s.sessions.values()) for (const c of cmds.values()) c.abort.abort();
    await Promise.all([...s.sessions.values()].flatMap((cmds) => [...cmds.values()].map((c) => c.done)));
    s.sessions.clear();
  };

  const api = async (method: string, path: string, q: URLSearchParams, body: unknown): Promise<[number, unknown]> => {
    if (method === "POST" && path === "/sandbox") return [200, dto(await createSandbox(body as Record<string, unknown>))];
    if (method === "GET" && path === "/sandbox") {
      const limit = Number(q.get("limit") ?? 100);
      return [200, { items: [...sandboxes.values()].slice(0, limit).map(dto), nextCursor: null }];
    }
    let m = /^\/sandbox\/([^/]+)$/.exec(path);
    if (m && method === "GET") return [200, dto(find(decodeURIComponent(m[1]!)))];
    if (m && method === "DELETE") {
      const s = find(decodeURIComponent(m[1]!));
      setState(s, "destroying");
      await endCommands(s);
      for (const p of s.previews) p.close();
      await local.stop(s.localId);
      for (const l of s.layers.slice(1)) await local.removeSnapshot(l).catch(() => false);
      sandboxes.delete(s.id);
      setState(s, "destroyed");
      return [200, dto(s)];
    }
    m = /^\/sandbox\/([^/]+)\/(start|stop|toolbox-proxy-url)$/.exec(path);
    if (m) {
      const s = find(decodeURIComponent(m[1]!));
      if (m[2] === "toolbox-proxy-url" && method === "GET") return [200, { url: `${base}/toolbox` }];
      if (m[2] === "stop" && method === "POST") {
        if (s.state !== "started") throw new HttpError(400, `Sandbox ${s.id} is not started (state: ${s.state})`);
        setState(s, "stopping");
        await endCommands(s);
        // A stopped Daytona sandbox keeps its filesystem: the local sandbox's writes become a layer.
        const kept = `dtstop-${s.id.slice(0, 8)}-${++seq}`;
        await local.stop(s.localId, { commitAs: kept });
        s.layers.push(kept);
        setState(s, "stopped");
        return [200, dto(s)];
      }
      if (m[2] === "start" && method === "POST") {
        if (s.state === "started") return [200, dto(s)];
        if (s.state !== "stopped") throw new HttpError(400, `Sandbox ${s.id} cannot be started (state: ${s.state})`);
        setState(s, "starting");
        void boot(s);
        return [200, dto(s)];
      }
    }
    m = /^\/sandbox\/([^/]+)\/ports\/([^/]+)\/(signed-preview-url|preview-url)$/.exec(path);
    if (m && method === "GET") {
      const s = started(find(decodeURIComponent(m[1]!)));
      const port = Number(m[2]);
      if (!Number.isInteger(port) || port < 3000 || port > 9999) throw new HttpError(400, `Port ${m[2]} is not allowed: preview ports are 3000-9999`);
      const expires = Number(q.get("expiresInSeconds") ?? 60);
      if (!Number.isInteger(expires) || expires < 1 || expires > 86_400) throw new HttpError(400, "expiresInSeconds must be between 1 and 86400");
      if (m[3] === "preview-url") throw new HttpError(400, "the fake serves signed preview URLs only");
      const token = randomBytes(12).toString("hex");
      const url = await previewListener(s, port, Date.now() + expires * 1000);
      return [200, { sandboxId: s.id, port, token, url }];
    }
    throw new HttpError(404, `Cannot ${method} ${path}`);
  };

  const createSandbox = async (b: Record<string, unknown>): Promise<FakeSandbox> => {
    const name = typeof b["name"] === "string" && b["name"] ? b["name"] : undefined;
    if (name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) throw new HttpError(400, `Invalid sandbox name ${name}`);
    if (name && [...sandboxes.values()].some((x) => x.name === name)) throw new HttpError(409, `Sandbox with name ${name} already exists`);
    const buildInfo = b["buildInfo"] as { dockerfileContent?: unknown } | undefined;
    const snapshot = typeof b["snapshot"] === "string" ? b["snapshot"] : undefined;
    if (buildInfo && snapshot) throw new HttpError(400, "Cannot specify both a snapshot and build info");
    const resources = { cpu: b["cpu"], memory: b["memory"], disk: b["disk"] };
    const asked = Object.values(resources).some((v) => v !== undefined && v !== null);
    if (asked && !buildInfo) throw new HttpError(400, "Cannot specify Sandbox resources when using a snapshot");
    if (snapshot) throw new HttpError(404, `Snapshot ${snapshot} not found`);
    const r = { ...DEFAULTS };
    for (const [k, max] of [["cpu", limits.cpu], ["memory", limits.memoryGiB], ["disk", limits.diskGiB]] as const) {
      const v = resources[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new HttpError(400, `${k} must be a positive integer`);
      if (v > max) throw new HttpError(400, `${k === "cpu" ? "CPU" : k === "memory" ? "Memory" : "Disk"} request ${v} exceeds maximum allowed per sandbox (${max})`);
      r[k] = v;
    }
    const dockerfile = buildInfo ? buildInfo.dockerfileContent : undefined;
    if (buildInfo && (typeof dockerfile !== "string" || !/^\s*FROM\s+\S+/i.test(dockerfile))) throw new HttpError(400, "buildInfo.dockerfileContent must be a Dockerfile starting with FROM");
    const allow = b["networkAllowList"];
    if (allow !== undefined && allow !== null) {
      if (typeof allow !== "string") throw new HttpError(400, "networkAllowList must be a string");
      const cidrs = allow.split(",").map((x) => x.trim()).filter(Boolean);
      if (cidrs.length > 5) throw new HttpError(400, "Network allow list cannot contain more than 5 CIDR blocks");
      for (const c of cidrs) if (!isIpv4Cidr(c)) throw new HttpError(400, `Invalid CIDR in network allow list: ${c}`);
    }
    for (const field of ["env", "labels"] as const) {
      const v = b[field];
      if (v !== undefined && (typeof v !== "object" || v === null || Object.values(v).some((x) => typeof x !== "string"))) throw new HttpError(400, `${field} must map names to strings`);
    }
    const auto = b["autoStopInterval"];
    if (auto !== undefined && (typeof auto !== "number" || !Number.isInteger(auto) || auto < 0)) throw new HttpError(400, "autoStopInterval must be a non-negative integer");
    if (Array.isArray(b["secrets"]) && b["secrets"].length > 0) throw new HttpError(404, "Secret not found: the fake organization has no secrets");
    const now = new Date().toISOString();
    const s: FakeSandbox = {
      id: randomUUID(), name: name ?? randomUUID(), state: dockerfile ? "pending_build" : "creating",
      env: (b["env"] ?? {}) as Record<string, string>, labels: (b["labels"] ?? {}) as Record<string, string>,
      cpu: r.cpu, memory: r.memory, disk: r.disk, public: b["public"] === true,
      networkBlockAll: b["networkBlockAll"] === true, ...(typeof allow === "string" ? { networkAllowList: allow } : {}),
      autoStopInterval: typeof auto === "number" ? auto : 15, ...(typeof dockerfile === "string" ? { dockerfile } : {}),
      createdAt: now, updatedAt: now, localId: "", layers: [], sessions: new Map(), previews: [],
    };
    sandboxes.set(s.id, s);
    void boot(s);
    return s;
  };

  const previewListener = async (s: FakeSandbox, port: number, expiresAt: number): Promise<string> => {
    if (!opts.network) throw new HttpError(500, "the fake's sandboxes have no network, so no preview");
    const target = new URL(await local.portUrl!(s.localId, port));
    const server = createTcpServer((client: Socket) => {
      if (Date.now() > expiresAt || s.state !== "started") return void client.destroy();
      const upstream = connect(Number(target.port), target.hostname);
      client.pipe(upstream).pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("error", end);
      upstream.on("error", end);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    s.previews.push(server);
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  };

  const toolbox = async (s: FakeSandbox, method: string, path: string, q: URLSearchParams, body: Buffer, contentType: string): Promise<[number, unknown, Record<string, string>?]> => {
    started(s);
    const json = () => parseJson(body) as Record<string, unknown>;
    if (method === "POST" && path === "/process/session") {
      const id = json()["sessionId"];
      if (typeof id !== "string" || !id) throw new HttpError(400, "sessionId is required");
      if (s.sessions.has(id)) throw new HttpError(409, `session ${id} already exists`);
      s.sessions.set(id, new Map());
      return [201, null];
    }
    if (method === "GET" && path === "/process/session") {
      return [200, [...s.sessions.entries()].map(([sessionId, cmds]) => ({ sessionId, commands: [...cmds.values()].map(commandDto) }))];
    }
    let m = /^\/process\/session\/([^/]+)$/.exec(path);
    if (m) {
      const id = decodeURIComponent(m[1]!);
      const cmds = s.sessions.get(id);
      if (!cmds) throw new HttpError(404, `session ${id} not found`);
      if (method === "GET") return [200, { sessionId: id, commands: [...cmds.values()].map(commandDto) }];
      if (method === "DELETE") {
        for (const c of cmds.values()) c.abort.abort();
        await Promise.all([...cmds.values()].map((c) => c.done));
        s.sessions.delete(id);
        return [204, null];
      }
    }
    m = /^\/process\/session\/([^/]+)\/exec$/.exec(path);
    if (m && method === "POST") {
      const cmds = s.sessions.get(decodeURIComponent(m[1]!));
      if (!cmds) throw new HttpError(404, `session ${m[1]} not found`);
      const req = json();
      if (typeof req["command"] !== "string" || !req["command"]) throw new HttpError(400, "command is required");
      const c = run(s, req["command"]);
      cmds.set(c.id, c);
      if (req["runAsync"] === true || req["async"] === true) return [202, { cmdId: c.id }];
      await c.done;
      return [200, { cmdId: c.id, ...(c.exitCode !== undefined ? { exitCode: c.exitCode } : {}), output: c.output, stdout: c.stdout, stderr: c.stderr }];
    }
    m = /^\/process\/session\/([^/]+)\/command\/([^/]+)(\/logs)?$/.exec(path);
    if (m && method === "GET") {
      const c = s.sessions.get(decodeURIComponent(m[1]!))?.get(decodeURIComponent(m[2]!));
      if (!c) throw new HttpError(404, `command ${m[2]} not found in session ${m[1]}`);
      if (!m[3]) return [200, commandDto(c)];
      if (q.get("follow") === "true") throw new HttpError(400, "the fake serves logs without follow only");
      return [200, { output: c.output, stdout: c.stdout, stderr: c.stderr }];
    }
    if (method === "POST" && path === "/process/execute") {
      const req = json();
      if (typeof req["command"] !== "string" || !req["command"]) throw new HttpError(400, "command is required");
      const c = run(s, req["command"], typeof req["cwd"] === "string" ? req["cwd"] : undefined, (req["envs"] ?? {}) as Record<string, string>);
      await c.done;
      return [200, { exitCode: c.exitCode ?? -1, result: c.output }];
    }
    if (method === "POST" && path === "/files/bulk-upload") {
      const form = await new Request("http://fake/", { method: "POST", headers: { "content-type": contentType }, body }).formData().catch(() => {
        throw new HttpError(400, "the request body is not multipart/form-data");
      });
      for (let i = 0; form.has(`files[${i}].path`); i++) {
        const dest = form.get(`files[${i}].path`);
        const file = form.get(`files[${i}].file`);
        if (typeof dest !== "string" || !file || typeof file === "string") throw new HttpError(400, `files[${i}] needs a path and a file`);
        const path = inside(dest);
        await local.makeDir!(s.localId, parentOf(path)).catch(mapLocal);
        await local.writeFile(s.localId, path, new Uint8Array(await file.arrayBuffer())).catch(mapLocal);
      }
      return [200, null];
    }
    if (method === "POST" && path === "/files/bulk-download") {
      const paths = json()["paths"];
      if (!Array.isArray(paths) || paths.some((p) => typeof p !== "string")) throw new HttpError(400, "paths must be a list of strings");
      const boundary = `fake-${randomBytes(12).toString("hex")}`;
      const parts: Buffer[] = [];
      for (const p of paths as string[]) {
        let part: { name: string; type: string; data: Buffer };
        try {
          part = { name: "file", type: "application/octet-stream", data: await local.readFile(s.localId, inside(p)) };
        } catch (err) {
          const e = toHttp(err);
          part = { name: "error", type: "application/json", data: Buffer.from(JSON.stringify({ message: e.message, statusCode: e.status, code: e.code ?? "FILE_ERROR" })) };
        }
        parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"; filename="${p.replace(/"/g, "%22")}"\r\nContent-Type: ${part.type}\r\nContent-Length: ${part.data.length}\r\n\r\n`), part.data, Buffer.from("\r\n"));
      }
      parts.push(Buffer.from(`--${boundary}--\r\n`));
      return [200, Buffer.concat(parts), { "content-type": `multipart/form-data; boundary=${boundary}` }];
    }
    if (method === "GET" && path === "/files") {
      const dir = inside(q.get("path") ?? "");
      const entries = await local.listDir(s.localId, dir).catch(mapLocal);
      return [200, entries.map((e) => fileInfo(e, `${dir.replace(/\/$/, "")}/${e.name}`))];
    }
    if (method === "GET" && path === "/files/info") {
      const p = inside(q.get("path") ?? "");
      const info = await local.statFile!(s.localId, p).catch(mapLocal);
      return [200, fileInfo({ name: info.name, type: info.type, size: info.size, mode: info.mode, mtime: new Date(info.mtime.seconds * 1000).toISOString() }, p)];
    }
    if (method === "POST" && path === "/files/permissions") {
      const p = inside(q.get("path") ?? "");
      const mode = q.get("mode");
      if (mode !== null && !/^[0-7]{3,4}$/.test(mode)) throw new HttpError(400, `invalid mode ${mode}`);
      if (q.get("owner") || q.get("group")) throw new HttpError(400, "the fake changes modes only");
      if (mode !== null) {
        let err = "";
        // The daemon does os.Chmod; the fake asks the sandbox (as its user) to do the same.
        const r = await local.exec(s.localId, { argv: ["chmod", mode, p], cwd: "/", onStderr: (c) => (err += c.toString()) });
        if (r.exitCode !== 0) throw new HttpError(/No such file/.test(err) ? 404 : 403, `chmod ${p}: ${err.trim()}`, /No such file/.test(err) ? "FILE_NOT_FOUND" : "FILE_ACCESS_DENIED");
      }
      return [200, null];
    }
    throw new HttpError(404, `Cannot ${method} ${path}`);
  };

  /** One command in a session: `sh -c` in the sandbox as its user, output kept for the logs calls. */
  const run = (s: FakeSandbox, command: string, cwd = HOME, env: Record<string, string> = {}): Command => {
    const abort = new AbortController();
    const c: Command = { id: randomUUID(), command, stdout: "", stderr: "", output: "", abort, done: Promise.resolve() };
    c.done = local
      .exec(s.localId, {
        argv: ["/bin/sh", "-c", command], cwd, env, signal: abort.signal,
        onStdout: (b) => {
          c.stdout += b.toString();
          c.output += b.toString();
        },
        onStderr: (b) => {
          c.stderr += b.toString();
          c.output += b.toString();
        },
      })
      .then((r) => void (c.exitCode = r.exitCode), () => undefined);
    return c;
  };

  const server: Server = createServer((req, res) => void handle(req, res));
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://fake");
    const method = req.method ?? "GET";
    const body = await readBody(req);
    const contentType = String(req.headers["content-type"] ?? "");
    const json = contentType.includes("application/json") ? parseJsonOrNull(body) : null;
    const answer = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      requests.push({ method, path: url.pathname, status, json });
      if (Buffer.isBuffer(payload)) {
        res.writeHead(status, { "content-length": payload.length, ...headers });
        res.end(payload);
      } else if (payload === null || status === 204) {
        res.writeHead(status).end();
      } else {
        const text = JSON.stringify(payload);
        if (/\/command\/[^/]+\/logs$/.test(url.pathname)) logResponseSizes.push(Buffer.byteLength(text));
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
        res.end(text);
      }
    };
    try {
      if (req.headers.authorization !== `Bearer ${apiKey}`) throw new HttpError(401, "Invalid credentials");
      let m = /^\/api(\/.*)$/.exec(url.pathname);
      if (m) {
        const [status, payload] = await api(method, m[1]!, url.searchParams, json);
        return answer(status, payload);
      }
      m = /^\/toolbox\/([^/]+)(\/.*)$/.exec(url.pathname);
      if (m) {
        const [status, payload, headers] = await toolbox(find(decodeURIComponent(m[1]!)), method, m[2]!, url.searchParams, body, contentType);
        return answer(status, payload, headers);
      }
      throw new HttpError(404, `Cannot ${method} ${url.pathname}`);
    } catch (err) {
      const e = toHttp(err);
      answer(e.status, { statusCode: e.status, message: e.message, error: STATUS_TEXT[e.status] ?? "Error", ...(e.code ? { code: e.code } : {}) });
    }
  };
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    apiUrl: `${base}/api`,
    apiKey,
    requests,
    sandboxes: () => [...sandboxes.values()].map(dto),
    imageBuilds: () => imageBuilds,
    logResponseSizes: () => [...logResponseSizes],
    async close() {
      for (const s of sandboxes.values()) {
        await endCommands(s);
        for (const p of s.previews) p.close();
        if (s.localId) await local.stop(s.localId).catch(() => false);
        for (const l of s.layers.slice(1)) await local.removeSnapshot(l).catch(() => false);
      }
      sandboxes.clear();
      for (const b of builds.values()) await b.then((l) => local.removeSnapshot(l), () => false).catch(() => false);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function commandDto(c: Command) {
  return { id: c.id, command: c.command, ...(c.exitCode !== undefined ? { exitCode: c.exitCode } : {}) };
}

/** What the daemon's file info looks like: Go's `FileMode.String()` and the permission bits in octal. */
function fileInfo(e: FileEntry, path: string) {
  const kind = e.type === "dir" ? "d" : e.type === "symlink" ? "L" : e.type === "file" ? "-" : "?";
  const rwx = [6, 3, 0].map((shift) => ["r", "w", "x"].map((ch, i) => ((e.mode >> shift) & (4 >> i) ? ch : "-")).join("")).join("");
  return {
    name: e.name, path, isDir: e.type === "dir", size: e.size, mode: `${kind}${rwx}`, permissions: `0${(e.mode & 0o777).toString(8).padStart(3, "0")}`,
    modTime: e.mtime, modifiedAt: e.mtime, owner: USER, group: USER,
  };
}

/** Paths as the daemon takes them: absolute, or relative to the user's home. */
function inside(p: string): string {
  if (!p) throw new HttpError(400, "path is required");
  return p.startsWith("/") ? p : `${HOME}/${p}`;
}

function parentOf(p: string): string {
  const i = p.replace(/\/+$/, "").lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

function mapLocal(err: unknown): never {
  throw toHttp(err);
}

function toHttp(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof PaddockError) {
    if (err.code === "not_found") return new HttpError(404, err.message, "FILE_NOT_FOUND");
    if (err.code === "forbidden") return new HttpError(403, err.message, "FILE_ACCESS_DENIED");
    if (err.code === "invalid_argument" || err.code === "conflict") return new HttpError(400, err.message);
  }
  return new HttpError(500, err instanceof Error ? err.message : String(err));
}

function isIpv4Cidr(c: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(c);
  return !!m && m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
}

function hash(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 16);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function parseJsonOrNull(body: Buffer): unknown {
  try {
    return body.length ? JSON.parse(body.toString()) : null;
  } catch {
    return null;
  }
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString() || "{}");
  } catch {
    throw new HttpError(400, "the request body is not JSON");
  }
}
