/**
 * `paddock node`: this machine's local runtime (layer store + local provider) served to a control
 * plane elsewhere over HTTPS with mutual TLS (routes in src/providers/ec2/protocol.ts).
 *
 * Only clients presenting a certificate signed by the installation's node CA for client
 * authentication get past the TLS handshake (`requestCert` + `rejectUnauthorized`); the handler
 * checks `socket.authorized` again before anything else, so a change of TLS options can never
 * quietly open the API.
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import { WebSocketServer } from "ws";
import { openLayerStore, type ClosableLayerStore, type LayerStoreKind } from "../layers/index.ts";
import { createLocalProvider, installationScope, openNetworkManager, type NetworkManager } from "../providers/local/index.ts";
import type { Provider, RemoteEgressAttachment, SandboxSpec } from "../core/provider.ts";
import { PaddockError, invalid, notFound } from "../core/index.ts";
import { NODE_API, statusOf, toWire, type WireEgress, type WireSandboxSpec } from "../providers/ec2/index.ts";
import { NodeTemplates } from "./recipe.ts";
import { serveExec } from "./exec.ts";
import { SandboxRecords } from "./records.ts";

export interface NodeOptions {
  /** The node's data directory: its layer store, run directory and cgroups are scoped by it. */
  home: string;
  host: string;
  port: number;
  caPem: string;
  certPem: string;
  keyPem: string;
  log?: (line: string) => void;
  layerStore?: LayerStoreKind;
  /** Size of a new layer image (sparse); default the layer store's. */
  layerImageBytes?: number;
}

export interface RemoteNode {
  /** The address and port it listens on (the port is chosen when `port` was 0). */
  readonly host: string;
  readonly port: number;
  /** Stops serving. Sandboxes keep running (a restarted node recovers them); with `stopSandboxes` they are stopped first. */
  close(opts?: { stopSandboxes?: boolean; unmountLayers?: boolean }): Promise<void>;
}

const MAX_JSON_BYTES = 16 * 2 ** 20;
const MAX_FILE_BYTES = 256 * 2 ** 20;

export async function startNode(opts: NodeOptions): Promise<RemoteNode> {
  const log = opts.log ?? (() => undefined);
  const layers = await openLayerStore({ home: opts.home, ...(opts.layerStore ? { kind: opts.layerStore } : {}), ...(opts.layerImageBytes ? { imageBytes: opts.layerImageBytes } : {}) });
  // Proxy mode: a sandbox's only way out is the gateway's TLS proxy listener its create names
  // (docs/ec2.md, "Egress"); without one it has loopback only. Scoped by the node's home, so a
  // control plane on the same machine keeps its own namespaces, veths, table and /16.
  // A host runs a few sessions (`sessionsPerHost`): a small pool of ready namespaces covers a burst.
  const network = await openNetworkManager({ scope: installationScope(opts.home), mode: "proxy", poolSize: 4 });
  if ((await readFile("/proc/sys/net/ipv4/ip_forward", "utf8").catch(() => "0")).trim() !== "1")
    log("node: net.ipv4.ip_forward is 0: sandboxes can reach a gateway on this machine only (set it to 1 for a gateway elsewhere)");
  const local = await createLocalProvider({ home: opts.home, layers, log, network });
  const templates = new NodeTemplates(local, layers, log);
  const records = new SandboxRecords(join(opts.home, "sandboxes"));
  await records.recoverAll(local, log);
  const server = createServer({
    ca: opts.caPem, cert: opts.certPem, key: opts.keyPem,
    requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3",
  });
  // A refused handshake is the node's first line of defence: say why (never more than the reason).
  server.on("tlsClientError", (err: Error & { code?: string }) => log(`node: refused a TLS client: ${err.code ?? ""} ${err.message.split("\n")[0] ?? ""}`));
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 2 ** 20 });
  server.on("request", (req, res) => {
    if (!(req.socket as TLSSocket).authorized) return send(res, 401, { error: { code: "unauthorized", message: "a client certificate from the node CA is required" } });
    handle(req, res, local, templates, records, log).catch((err: unknown) => {
      if (!(err instanceof PaddockError)) log(`node: ${req.method} ${req.url}: ${err instanceof Error ? err.stack : String(err)}`);
      const wire = toWire(err);
      if (!res.headersSent) send(res, statusOf(wire.code), { error: wire });
      else res.destroy();
    });
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const m = /^\/v1\/sandboxes\/([^/?]+)\/exec$/.exec(req.url ?? "");
    if (!(req.socket as TLSSocket).authorized || !m?.[1]) return socket.destroy();
    // A throw here would be an uncaught exception: the node process would die with all its answers.
    let id: string;
    try {
      id = decodeId(m[1]);
    } catch {
      return socket.destroy();
    }
    wss.handleUpgrade(req, socket, head, (ws) => serveExec(ws, local, id));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  log(`paddock node listening on https://${opts.host}:${port}`);
  return {
    host: opts.host,
    port,
    close: (o) => closeNode(server, wss, local, layers, network, o),
  };
}

async function closeNode(server: Server, wss: WebSocketServer, local: Provider, layers: ClosableLayerStore, network: NetworkManager, o: { stopSandboxes?: boolean; unmountLayers?: boolean } = {}): Promise<void> {
  for (const c of wss.clients) c.terminate();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  if (o.stopSandboxes) for (const id of await local.list()) await local.stop(id).catch(() => undefined);
  await local.close();
  // Running sandboxes keep their networks (a restarted node adopts them).
  await network.close();
  await layers.close(o.unmountLayers ? { unmount: true } : {});
}

async function handle(req: IncomingMessage, res: ServerResponse, local: Provider, templates: NodeTemplates, records: SandboxRecords, log: (line: string) => void): Promise<void> {
  const url = new URL(req.url ?? "/", "https://node");
  const path = url.pathname.startsWith(NODE_API) ? url.pathname.slice(NODE_API.length) : "";
  const method = req.method ?? "GET";
  if (path === "/health" && method === "GET") return send(res, 200, { ok: true, sandboxes: (await local.list()).length });
  if (path === "/sandboxes" && method === "GET") return send(res, 200, { ids: await local.list() });
  if (path === "/sandboxes" && method === "POST") {
    const { spec } = (await readJson(req)) as { spec: WireSandboxSpec };
    // A client that went away (its create aborted, the connection cut) will never learn of this
    // sandbox: it is stopped, not left running unseen (an EC2 host that lists it is never idle).
    let clientGone = false;
    res.once("close", () => (clientGone = !res.writableFinished));
    const handle = await local.create(await toLocalSpec(spec, templates));
    if (clientGone) {
      await local.stop(handle.id).catch(() => false);
      log(`node: the client went away while sandbox ${handle.id} was being created: stopped it`);
      return;
    }
    await records.put(handle.id, handle.providerState);
    return send(res, 200, { ...handle, providerState: forControlPlane(handle.providerState) });
  }
  const m = /^\/sandboxes\/([^/]+)(\/.*)$/.exec(path);
  if (!m?.[1] || !m[2]) throw notFound("route", `${method} ${url.pathname}`);
  const id = decodeId(m[1]);
  const q = (name: string): string => {
    const v = url.searchParams.get(name);
    if (v === null) throw invalid(`query parameter ${name} is required`);
    return v;
  };
  switch (`${method} ${m[2]}`) {
    case "POST /stop": {
      const stopped = await local.stop(id);
      await records.remove(id);
      return send(res, 200, { stopped });
    }
    case "POST /recover": {
      const { providerState: given } = (await readJson(req)) as { providerState: Record<string, unknown> };
      // The node's own record is complete (the control plane's copy lacks the proxy credential).
      const providerState = (await records.get(id)) ?? given;
      const state = await local.recover(id, providerState);
      if (state === "running") await records.put(id, providerState);
      else await records.remove(id);
      return send(res, 200, { state });
    }
    case "GET /file":
      return send(res, 200, await local.readFile(id, q("path")));
    case "PUT /file": {
      const mode = url.searchParams.get("mode");
      await local.writeFile(id, q("path"), await readBody(req, MAX_FILE_BYTES), mode === null ? {} : { mode: Number(mode) });
      return send(res, 200, {});
    }
    case "GET /dir":
      return send(res, 200, { entries: await local.listDir(id, q("path")) });
    case "POST /kill": {
      const { signal } = (await readJson(req)) as { signal: NodeJS.Signals };
      return send(res, 200, { count: await local.killProcesses(id, signal) });
    }
    case "GET /guard-denials":
      return send(res, 200, { denials: await local.guardDenials(id) });
    case "POST /env": {
      const { env } = (await readJson(req)) as { env: Record<string, string> };
      const providerState = await local.setEnv(id, env);
      await records.put(id, providerState);
      return send(res, 200, { providerState: forControlPlane(providerState) });
    }
    case "GET /services":
      return send(res, 200, { services: await local.services(id) });
    case "POST /services/wait": {
      const { timeoutMs } = (await readJson(req)) as { timeoutMs: number };
      return send(res, 200, { services: await local.waitForServices(id, timeoutMs) });
    }
    case "GET /memory":
      return send(res, 200, { bytes: local.memoryUsage ? await local.memoryUsage(id) : null });
    default:
      throw notFound("route", `${method} ${url.pathname}`);
  }
}

/** The control plane's spec for this node's local provider: the template's layers from this node's own store. */
async function toLocalSpec(spec: WireSandboxSpec, templates: NodeTemplates): Promise<SandboxSpec> {
  if (typeof spec !== "object" || spec === null || typeof spec.recipe !== "object" || !Array.isArray(spec.recipe?.steps)) throw invalid("create: spec.recipe is required");
  if (spec.recipe.base !== spec.base) throw invalid(`create: spec.base ${JSON.stringify(spec.base)} differs from the recipe's ${JSON.stringify(spec.recipe.base)}`);
  if (!spec.recipe.steps.every((s) => typeof s === "string")) throw invalid("create: recipe steps must be strings");
  const layers = await templates.ensure(spec.recipe, spec.compute);
  const egress = spec.egress === undefined ? undefined : wireEgress(spec.egress);
  // Only the fields a node honours: no host mounts, no snapshot, no egress callbacks can arrive here.
  return {
    id: spec.id, mode: spec.mode, base: spec.base, layers, compute: spec.compute, hostname: spec.hostname, env: spec.env,
    ...(spec.guard ? { guard: spec.guard } : {}),
    ...(spec.services ? { services: spec.services } : {}),
    ...(spec.sessionUser ? { sessionUser: spec.sessionUser } : {}),
    ...(egress ? { remoteEgress: () => Promise.resolve(egress) } : {}),
  };
}

/** The create's egress attachment, checked field by field: the local provider writes its files into the sandbox and pins its `allow` list. */
function wireEgress(e: WireEgress): RemoteEgressAttachment {
  const str = (v: unknown): v is string => typeof v === "string";
  if (typeof e !== "object" || e === null) throw invalid("create: spec.egress must be an object");
  if (typeof e.env !== "object" || e.env === null || !Object.entries(e.env).every(([k, v]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && str(v))) throw invalid("create: spec.egress.env must map variable names to strings");
  if (!Array.isArray(e.files) || !e.files.every((f) => str(f?.path) && f.path.startsWith("/") && !f.path.split("/").includes("..") && str(f.content))) throw invalid("create: spec.egress.files must be absolute paths with string content");
  if (!Array.isArray(e.allow) || !e.allow.length || !e.allow.every((a) => str(a?.host) && /^[A-Za-z0-9.:-]{1,253}$/.test(a.host) && Number.isInteger(a.port) && a.port >= 1 && a.port <= 65535))
    throw invalid("create: spec.egress.allow must list at least one host and TCP port");
  return { env: { ...e.env }, files: e.files.map((f) => ({ path: f.path, content: f.content })), allow: e.allow.map((a) => ({ host: a.host, port: a.port })), proxyUrl: e.env["HTTPS_PROXY"] ?? "" };
}

/**
 * The sandbox state the control plane stores: the node's record without the variables that carry
 * a URL credential (the session's proxy URL: the gateway and the control plane keep only its
 * hash). The node keeps them in its own record, which `recover` prefers.
 */
function forControlPlane(state: Record<string, unknown>): Record<string, unknown> {
  const env = state["env"];
  if (typeof env !== "object" || env === null) return state;
  const kept = Object.fromEntries(Object.entries(env as Record<string, unknown>).filter(([, v]) => !(typeof v === "string" && /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:[^/@\s]*@/i.test(v))));
  return { ...state, env: kept };
}

/** A sandbox id from its URL segment; a malformed escape is the client's error, not the node's. */
function decodeId(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw invalid("the sandbox id in the URL is not valid percent-encoding");
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  res.writeHead(status, { "content-type": Buffer.isBuffer(body) ? "application/octet-stream" : "application/json", "content-length": buf.length });
  res.end(buf);
}

async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > max) throw new PaddockError("invalid_argument", `request body over ${max} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const buf = await readBody(req, MAX_JSON_BYTES);
  try {
    return JSON.parse(buf.toString()) as unknown;
  } catch {
    throw invalid("the request body is not JSON");
  }
}
