/**
 * startFakeCluster: the HTTPS server (its own CA, a bearer token; 401 without it), the routes,
 * and the controllers behind them. See index.ts for what the fake serves and what it does not.
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../../../src/core/index.ts";
import { tempDir } from "../../helpers/tmp.ts";
import type { FakeCluster, FakeClusterOptions, KubeObject } from "./api.ts";
import { ApiServer } from "./apiserver.ts";
import { AgentSandboxController } from "./agent-sandbox.ts";
import { ExecService, checkExec } from "./exec.ts";
import { PodLifecycle } from "./pods.ts";
import { servedResources } from "./resources.ts";
import { discovery, resolveTarget, sendJson, serveResource, serveWatch, splitApiPath } from "./routes.ts";
import { ApiError, notFoundPath, unauthorized } from "./status.ts";
import { ObjectStore } from "./store.ts";
import { runDeploymentController } from "./workloads.ts";

/** Bodies above this are refused (413), as the apiserver's 3 MiB request limit does. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;

/** A CA and a server certificate for 127.0.0.1 and localhost, made with openssl. */
async function makeCertificates(dir: string): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const f = (n: string) => join(dir, n);
  await runCommand(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=Paddock fake Kubernetes CA"]);
  await writeFile(f("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
  await runCommand(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("srv.key"), "-out", f("srv.csr"), "-subj", "/CN=kube-apiserver"]);
  await runCommand(["openssl", "x509", "-req", "-in", f("srv.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("srv.pem"), "-days", "2", "-extfile", f("ext.cnf")]);
  return { caPem: await readFile(f("ca.pem"), "utf8"), certPem: await readFile(f("srv.pem"), "utf8"), keyPem: await readFile(f("srv.key"), "utf8") };
}

function kubeconfigYaml(url: string, caPem: string, token: string): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: paddock-fake",
    "  cluster:",
    `    server: ${url}`,
    `    certificate-authority-data: ${Buffer.from(caPem).toString("base64")}`,
    "users:",
    "- name: paddock-fake-user",
    "  user:",
    `    token: ${token}`,
    "contexts:",
    "- name: paddock-fake",
    "  context:",
    "    cluster: paddock-fake",
    "    user: paddock-fake-user",
    "    namespace: default",
    "current-context: paddock-fake",
    "",
  ].join("\n");
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new ApiError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728"));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export async function startFakeCluster(opts: FakeClusterOptions = {}): Promise<FakeCluster> {
  const dir = await tempDir("paddock-fake-k8s-");
  const certs = await makeCertificates(dir.path);
  const token = randomBytes(24).toString("hex");
  const store = new ObjectStore(200);
  const api = new ApiServer(store, servedResources(opts));
  const pods = new PodLifecycle(api, { kubelet: opts.kubelet ?? null, runtimeHandlers: opts.runtimeHandlers });
  runDeploymentController(api);
  const sandboxes = opts.agentSandbox ? new AgentSandboxController(api) : null;
  const execs = new ExecService(opts.kubelet ?? null);
  for (const ns of ["default", "kube-system", "kube-public", "kube-node-lease"]) api.create(api.def("", "namespaces")!, undefined, { metadata: { name: ns } });

  const requests: FakeCluster["requests"] = [];
  const watches = new Set<() => void>();
  const expected = Buffer.from(`Bearer ${token}`);
  const authorized = (req: IncomingMessage) => {
    const got = Buffer.from(String(req.headers.authorization ?? ""));
    return got.length === expected.length && timingSafeEqual(got, expected);
  };
  let serverAddress = "";

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "https://fake");
    const method = req.method ?? "GET";
    try {
      if (!authorized(req)) throw unauthorized();
      const body = await readBody(req);
      const found = discovery(api, url.pathname, serverAddress);
      if (found !== null && method === "GET") return sendJson(res, 200, found);
      if (["/healthz", "/readyz", "/livez"].includes(url.pathname)) {
        res.writeHead(200, { "content-type": "text/plain" }).end("ok");
        return;
      }
      const split = splitApiPath(url.pathname);
      if (!split) throw notFoundPath();
      const target = resolveTarget(api, split.group, split.version, split.rest);
      const watching = url.searchParams.get("watch");
      if (method === "GET" && target.name === null && (watching === "true" || watching === "1")) {
        return serveWatch(api, target, url.searchParams, req, res, (finish) => {
          watches.add(finish);
          res.on("close", () => watches.delete(finish));
        });
      }
      if (target.subresource === "log" && target.def.kind === "Pod") {
        const pod = api.get(target.def, target.namespace, target.name!);
        if ((pod.status as { phase?: string }).phase !== "Running") throw new ApiError(400, "BadRequest", `container "${(pod.spec as { containers: { name: string }[] }).containers[0]!.name}" in pod "${pod.metadata.name}" is waiting to start: ContainerCreating`);
        res.writeHead(200, { "content-type": "text/plain" }).end("");
        return;
      }
      if (target.subresource === "exec") throw new ApiError(400, "BadRequest", "Upgrade request required");
      const answer = serveResource(api, target, method, url.searchParams, body, String(req.headers["content-type"] ?? "application/json"));
      sendJson(res, answer.status, answer.body);
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : new ApiError(500, "InternalError", `Internal error occurred: ${(err as Error).message}`);
      if (!res.headersSent) sendJson(res, apiErr.code, apiErr.toStatus());
      else res.end();
    } finally {
      requests.push({ method, path: req.url ?? "/", status: res.statusCode });
    }
  };

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = new URL(req.url ?? "/", "https://fake");
    const refuse = (err: ApiError) => {
      const text = JSON.stringify(err.toStatus());
      socket.end(`HTTP/1.1 ${err.code} ${err.reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
      requests.push({ method: req.method ?? "GET", path: req.url ?? "/", status: err.code });
    };
    try {
      if (!authorized(req)) throw unauthorized();
      const split = splitApiPath(url.pathname);
      if (!split) throw notFoundPath();
      const target = resolveTarget(api, split.group, split.version, split.rest);
      if (target.def.kind !== "Pod" || target.subresource !== "exec" || !target.namespace || !target.name) throw notFoundPath();
      const exec = checkExec(api, target.namespace, target.name, url.searchParams);
      requests.push({ method: req.method ?? "GET", path: req.url ?? "/", status: 101 });
      execs.upgrade(req, socket, head, exec);
    } catch (err) {
      refuse(err instanceof ApiError ? err : new ApiError(500, "InternalError", String(err)));
    }
  };

  const server: Server = createServer({ key: certs.keyPem, cert: certs.certPem }, (req, res) => void handle(req, res));
  server.on("upgrade", upgrade);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  serverAddress = `127.0.0.1:${port}`;
  const url = `https://${serverAddress}`;

  return {
    kubeconfig: kubeconfigYaml(url, certs.caPem, token),
    url,
    requests,
    objects(kind: string, namespace?: string): Record<string, unknown>[] {
      const def = api.defOfKind(kind);
      if (!def) throw new Error(`the fake cluster serves no kind ${kind} (with these options)`);
      return store.list(def, namespace ?? null) as KubeObject[];
    },
    async close() {
      sandboxes?.close();
      for (const finish of watches) finish();
      execs.close();
      store.closeWatches();
      await pods.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await dir.remove();
    },
  };
}
