/**
 * A test provider driver for routing tests (not a fake of any service: a Provider whose
 * behaviour the test sets). Its `create` fails with a message that quotes its credential when
 * `failCreate` is set, so tests can check that failover records the skip and that the
 * credential never shows; with `failWithProxyUrl` the message quotes a proxy URL with a password
 * in it instead (`PROXY_PASSWORD`), as a remote provider's error about its egress might.
 * Capabilities come from its settings.
 */
import type { Provider, ProviderCapabilities, ProviderDriver, ProviderKind } from "../../src/core/index.ts";
import { PaddockError, invalid, notFound } from "../../src/core/index.ts";

/** The password in the proxy URL a `failWithProxyUrl` create quotes. */
export const PROXY_PASSWORD = "pdk-proxy-pass-0123456789abcdef";

export interface TestSettings {
  failCreate: boolean;
  failWithProxyUrl: boolean;
  healthy: boolean;
  selfHosted: boolean;
  warmPool: boolean;
}

export function capabilities(kind: ProviderKind, over: Partial<ProviderCapabilities> = {}): ProviderCapabilities {
  return {
    kind, selfHosted: kind === "local" || kind === "k8s" || kind === "ec2", layers: kind === "local", network: kind === "local" ? "netns" : "proxy",
    snapshot: false, execGuard: false, services: false, fileOps: false, ports: false, warmPool: false, isolation: ["namespaces"], ...over,
  };
}

/** A provider that only answers what routing asks of it; `create` succeeds or fails as told. */
export function testProvider(name: string, caps: ProviderCapabilities, o: { failCreate?: string | null; healthy?: boolean; onCreate?: () => void } = {}): Provider {
  const live = new Set<string>();
  const gone = (id: string) => notFound("sandbox", id);
  return {
    name, capabilities: caps,
    health: async () => ({ ok: o.healthy ?? true, detail: o.healthy === false ? "test: unhealthy" : "test: ok", latencyMs: 1 }),
    create: async (spec) => {
      o.onCreate?.();
      if (o.failCreate) throw new PaddockError("unavailable", o.failCreate);
      live.add(spec.id);
      return { id: spec.id, providerState: {} };
    },
    recover: async () => "gone",
    exec: async (id) => { throw gone(id); },
    writeFile: async (id) => { throw gone(id); },
    readFile: async (id) => { throw gone(id); },
    listDir: async (id) => { throw gone(id); },
    stop: async (id) => live.delete(id),
    killProcesses: async (id) => { throw gone(id); },
    guardDenials: async () => [],
    snapshot: async (id) => { throw gone(id); },
    removeSnapshot: async () => false,
    setEnv: async () => ({}),
    services: async () => [],
    waitForServices: async () => [],
    list: async () => [...live],
    close: async () => undefined,
  };
}

/** A driver of `kind` building test providers; settings: failCreate, failWithProxyUrl, healthy, selfHosted, warmPool (booleans). */
export function testDriver(kind: ProviderKind, calls: { creates: number } = { creates: 0 }): ProviderDriver<TestSettings> {
  return {
    kind,
    credentials: ["apiKey"],
    parseSettings(raw: unknown): TestSettings {
      const r = (raw ?? {}) as Record<string, unknown>;
      for (const [k, v] of Object.entries(r)) {
        if (!["failCreate", "failWithProxyUrl", "healthy", "selfHosted", "warmPool"].includes(k)) throw invalid(`settings.${k}: unknown setting`);
        if (typeof v !== "boolean") throw invalid(`settings.${k}: true or false`);
      }
      return { failCreate: r["failCreate"] === true, failWithProxyUrl: r["failWithProxyUrl"] === true, healthy: r["healthy"] !== false, selfHosted: r["selfHosted"] === true, warmPool: r["warmPool"] === true };
    },
    async create(instance, _deps) {
      const s = instance.settings;
      const apiKey = instance.credentials["apiKey"] ?? "";
      return testProvider(instance.name, capabilities(kind, { selfHosted: s.selfHosted, warmPool: s.warmPool }), {
        failCreate: s.failWithProxyUrl
          ? `sandbox could not reach its proxy HTTPS_PROXY=https://pdk-sess1:${PROXY_PASSWORD}@gw.example.net:8443 (timed out)`
          : s.failCreate ? `upstream refused the sandbox (key ${apiKey} over quota)` : null,
        healthy: s.healthy,
        onCreate: () => (calls.creates += 1),
      });
    },
  };
}
