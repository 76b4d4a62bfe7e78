/**
 * The Kubernetes API as the provider uses it: typed clients from `@kubernetes/client-node`, API
 * errors translated into PaddockErrors in one place (STYLE.md point 6), and discovery of the
 * optional API groups (agent-sandbox, CSI snapshots).
 */
import { ApiException, ApisApi, AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, NetworkingV1Api, NodeV1Api, VersionApi } from "@kubernetes/client-node";
import { PaddockError } from "../../core/index.ts";
import type { ErrorCode } from "../../core/index.ts";
import { AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION, SNAPSHOT_GROUP } from "./manifests.ts";

export interface KubeClients {
  config: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  net: NetworkingV1Api;
  node: NodeV1Api;
  custom: CustomObjectsApi;
  apis: ApisApi;
  version: VersionApi;
}

/** From the vault's kubeconfig (YAML) or, with `inCluster`, the pod's service account. */
export function kubeClients(opts: { kubeconfig?: string; inCluster: boolean; instance: string }): KubeClients {
  const config = new KubeConfig();
  if (opts.inCluster) config.loadFromCluster();
  else {
    if (!opts.kubeconfig) throw new PaddockError("invalid_argument", `k8s provider ${JSON.stringify(opts.instance)}: no kubeconfig; store it as vault secret provider/${opts.instance}/kubeconfig, or set settings.inCluster`);
    try {
      config.loadFromString(opts.kubeconfig);
    } catch (e) {
      // The kubeconfig holds credentials: the parser's message may quote it, so it is not passed on.
      throw new PaddockError("invalid_argument", `k8s provider ${JSON.stringify(opts.instance)}: the kubeconfig credential is not valid kubeconfig YAML`, undefined, { cause: e instanceof Error ? new Error(e.name) : undefined });
    }
    if (!config.getCurrentCluster()) throw new PaddockError("invalid_argument", `k8s provider ${JSON.stringify(opts.instance)}: the kubeconfig has no current context with a cluster`);
  }
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    apps: config.makeApiClient(AppsV1Api),
    net: config.makeApiClient(NetworkingV1Api),
    node: config.makeApiClient(NodeV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    apis: config.makeApiClient(ApisApi),
    version: config.makeApiClient(VersionApi),
  };
}

/** A Kubernetes `Status` as an API error carries it. */
export interface KubeStatus {
  code?: number;
  reason?: string;
  message?: string;
  details?: { causes?: { field?: string; message?: string; reason?: string }[] };
}

export function statusOf(e: unknown): KubeStatus | null {
  if (!(e instanceof ApiException)) return null;
  let body: unknown = e.body;
  if (typeof body === "string") {
    const text = body;
    try {
      body = JSON.parse(text);
    } catch {
      body = { message: text.slice(0, 300) };
    }
  }
  return { code: e.code, ...(body && typeof body === "object" ? (body as KubeStatus) : {}) };
}

export const isStatus = (e: unknown, code: number) => statusOf(e)?.code === code;

/** One translation of API errors: what was being done, and the API server's own words (never a credential: Status messages hold none). */
export function kubeError(what: string, e: unknown): PaddockError {
  if (e instanceof PaddockError) return e;
  const s = statusOf(e);
  if (!s) {
    const msg = e instanceof Error ? e.message : String(e);
    return new PaddockError("unavailable", `${what}: the Kubernetes API is unreachable (${msg.slice(0, 200)})`);
  }
  const causes = (s.details?.causes ?? []).map((c) => `${c.field ?? "?"}: ${c.message ?? c.reason ?? ""}`);
  const code: ErrorCode = s.code === 404 ? "not_found"
    : s.code === 409 ? "conflict"
      : s.code === 400 || s.code === 422 ? "invalid_argument"
        : s.code === 401 || s.code === 403 ? "forbidden"
          : "unavailable";
  const detail = causes.length ? causes.join("; ") : (s.message ?? s.reason ?? `HTTP ${s.code}`);
  return new PaddockError(code, `${what}: the Kubernetes API answered ${s.code}${s.reason ? ` ${s.reason}` : ""}: ${detail}`, { status: s.code, reason: s.reason, causes });
}

export interface Discovery {
  agentSandbox: boolean;
  volumeSnapshots: boolean;
}

/** Which optional groups the API server serves (GET /apis). */
export async function discover(c: KubeClients): Promise<Discovery> {
  const groups = await c.apis.getAPIVersions();
  const served = (group: string, version: string) =>
    groups.groups.some((g) => g.name === group && g.versions.some((v) => v.version === version));
  return { agentSandbox: served(AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION), volumeSnapshots: served(SNAPSHOT_GROUP, "v1") };
}

/** Create, or leave alone when it already exists (shared objects: templates, pools, the gateway). */
export async function createIfMissing(what: string, create: () => Promise<unknown>): Promise<void> {
  try {
    await create();
  } catch (e) {
    if (isStatus(e, 409)) return;
    throw kubeError(what, e);
  }
}

/** Delete; false when it was not there. */
export async function deleteIfPresent(what: string, del: () => Promise<unknown>): Promise<boolean> {
  try {
    await del();
    return true;
  } catch (e) {
    if (isStatus(e, 404)) return false;
    throw kubeError(what, e);
  }
}
