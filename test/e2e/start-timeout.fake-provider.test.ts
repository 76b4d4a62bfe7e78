/**
 * The per-instance create limit (providers.yml `createTimeoutSeconds`, docs/routing.md) end to
 * end with a real server and real local sandboxes, against test provider drivers (not fakes of a
 * service): one whose create never ends unless its signal is aborted, and one that ignores the
 * abort and makes its sandbox late. A timed-out create is aborted, counted by the breaker, recorded
 * as a skip and failed over like a failed create; a sandbox made late is stopped, never left running,
 * and its egress hook refuses (it cannot replace the next attempt's gateway registration).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PaddockClient } from "../../src/client/index.ts";
import { DEFAULT_REMOTE_CREATE_TIMEOUT_MS, createTimeoutMs } from "../../src/control/session-routing.ts";
import { parseProvidersFile } from "../../src/control/providers-file.ts";
import type { ProviderDriver, ProviderKind } from "../../src/core/index.ts";
import type { RunningServer } from "../../src/server/index.ts";
import { cli, testServer } from "../helpers/server.ts";
import { until } from "../helpers/wait.ts";
import { capabilities, testProvider } from "../control/routing-fixtures.ts";

/** What a slow driver's providers did: creates begun, signals seen aborted, sandboxes live. */
interface SlowState {
  creates: number;
  aborted: number;
  live: Set<string>;
  stopped: string[];
  /** What the late create's call of its egress hook (`remoteEgress`) gave, after the abort. */
  lateEgress: string;
  /** Lets the late creates (which ignore the abort) finish. */
  release: () => void;
}

/** `hang`: create ends only when its signal aborts (rejecting with the reason). `late`: create ignores the abort and makes the sandbox once released. */
function slowDriver(kind: ProviderKind, mode: "hang" | "late", state: SlowState): ProviderDriver<Record<string, never>> {
  let released!: () => void;
  const gate = new Promise<void>((resolve) => (released = resolve));
  state.release = () => released();
  return {
    kind,
    credentials: [],
    parseSettings: () => ({}),
    async create(instance) {
      const base = testProvider(instance.name, capabilities(kind));
      return {
        ...base,
        create: async (spec, signal) => {
          state.creates += 1;
          if (mode === "hang") {
            return new Promise((_, reject) => {
              const onAbort = () => {
                state.aborted += 1;
                reject(signal?.reason);
              };
              if (signal?.aborted) onAbort();
              else signal?.addEventListener("abort", onAbort, { once: true });
            });
          }
          signal?.addEventListener("abort", () => (state.aborted += 1), { once: true });
          await gate;
          state.lateEgress = spec.remoteEgress ? await spec.remoteEgress().then(() => "attached", (e: unknown) => (e instanceof Error ? e.message : String(e))) : "no hook";
          state.live.add(spec.id);
          return { id: spec.id, providerState: {} };
        },
        stop: async (id) => {
          state.stopped.push(id);
          return state.live.delete(id);
        },
        list: async () => [...state.live],
      };
    },
  };
}

const fresh = (): SlowState => ({ creates: 0, aborted: 0, live: new Set(), stopped: [], lateEgress: "", release: () => undefined });

void describe("session start time limit against fake (test-driver) providers", () => {
  let server: RunningServer;
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  const hung = fresh();
  const late = fresh();

  before(async () => {
    ({ server, client, cleanup } = await testServer({ providerDrivers: [slowDriver("e2b", "hang", hung), slowDriver("ec2", "late", late)] }));
    await client.providers.add({ name: "hung", kind: "e2b", routing: { createTimeoutSeconds: 0.5 }, credentials: {} });
    await client.providers.add({ name: "late", kind: "ec2", routing: { createTimeoutSeconds: 0.5 }, credentials: {} });
    await client.environments.apply("hung.yml", "name: hung-env\nproviders: [hung, local]\ncompute:\n  cpu: 1\n  memory: 256MiB\n");
    await client.environments.apply("late.yml", "name: late-env\nproviders: [late, local]\ncompute:\n  cpu: 1\n  memory: 256MiB\n");
    await client.environments.apply("only.yml", "name: only-hung\nproviders: [hung]\n");
  });
  after(async () => {
    late.release();
    await cleanup();
  });

  void it("a create that never ends is aborted at the limit, counted by the breaker, and the start fails over with the skip recorded", async () => {
    const s = await client.sessions.start("hung-env");
    assert.equal(s.provider, "local");
    assert.equal(hung.creates, 1);
    assert.equal(hung.aborted, 1, "the provider's signal was aborted");
    const r = await client.sessions.exec(s.id, { argv: ["true"] });
    assert.equal(r.exitCode, 0, "the session works on local");
    const shown = await client.sessions.get(s.id);
    assert.deepEqual(shown.route?.skips.map((k) => [k.provider, k.reason]), [["hung", "create timed out after 0.5 s"]]);
    const failover = (await client.audit.list({ session: s.id })).find((a) => a.action === "session.failover");
    assert.equal(failover?.target, "hung", "the skip is audited");
    const health = (await client.providers.health()).find((h) => h.name === "hung");
    assert.equal(health?.failures, 1, "the breaker counted it");
    assert.match(health?.lastError ?? "", /timed out after 0\.5 s/);
    const cliShow = await cli(server.url, ["session", "show", s.id]);
    assert.equal(cliShow.code, 0, cliShow.stderr);
    assert.match(cliShow.stdout, /skipped: +hung at .*create timed out after 0\.5 s/);
    await client.sessions.stop(s.id);
  });

  void it("a provider that ignores the abort and makes the sandbox late has it stopped: nothing is left running", async () => {
    const s = await client.sessions.start("late-env");
    assert.equal(s.provider, "local");
    assert.equal(late.creates, 1);
    assert.equal(late.aborted, 1);
    assert.deepEqual((await client.sessions.get(s.id)).route?.skips.map((k) => k.reason), ["create timed out after 0.5 s"]);
    const stopsBefore = late.stopped.length; // failover's cleanup stops it once, before it exists
    late.release();
    await until(async () => late.stopped.length > stopsBefore && late.live.size === 0, 30_000, "the late sandbox to be stopped");
    assert.deepEqual(late.stopped.slice(stopsBefore), [s.id]);
    assert.equal(late.live.size, 0, "no sandbox left on the provider");
    assert.equal(late.lateEgress, "create on late timed out after 0.5 s", "the abandoned create cannot register the session with the gateway over the next attempt");
    await client.sessions.stop(s.id);
  });

  void it("when the only provider times out, the start fails with the limit in its reason", async () => {
    await assert.rejects(client.sessions.start("only-hung"), /create on hung timed out after 0\.5 s/);
    const failed = (await client.sessions.list({ all: true, environment: "only-hung" }))[0];
    assert.ok(failed, "the failed session is listed");
    assert.match((await client.sessions.get(failed.id)).endReason ?? "", /^failed to start: create on hung timed out after 0\.5 s/);
  });
});

void describe("create time limit settings", () => {
  void it("providers.yml: per instance, a file-wide default, 0 for none; bad values are located", () => {
    const ok = parseProvidersFile("routing:\n  createTimeoutSeconds: 120\nproviders:\n  a:\n    kind: e2b\n  b:\n    kind: k8s\n    routing: { createTimeoutSeconds: 0 }\n  local:\n    kind: local\n");
    assert.ok(ok.ok, JSON.stringify(ok));
    assert.deepEqual(ok.config.instances.map((i) => [i.name, i.routing.createTimeoutMs]), [["a", 120_000], ["b", 0], ["local", 120_000]]);
    const bad = parseProvidersFile("routing:\n  createTimeoutSeconds: -1\nproviders:\n  a:\n    kind: e2b\n    routing: { createTimeoutSeconds: soon }\n");
    assert.equal(bad.ok, false);
    const issues = bad.ok ? [] : bad.issues.map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`);
    assert.deepEqual(issues, [
      "2:25 routing.createTimeoutSeconds: cannot be negative: use 0 for no limit",
      "6:38 providers.a.routing.createTimeoutSeconds: a number of seconds, e.g. 600 (0: no limit)",
    ]);
    const long = parseProvidersFile("providers:\n  a:\n    kind: e2b\n    routing: { createTimeoutSeconds: 100000 }\n");
    assert.match(long.ok ? "" : long.issues[0]?.message ?? "", /more than a day/);
  });

  void it("defaults: 10 minutes for remote kinds, none for local, the instance's setting over both", () => {
    assert.equal(DEFAULT_REMOTE_CREATE_TIMEOUT_MS, 600_000);
    for (const kind of ["k8s", "e2b", "daytona", "ec2"] as const) assert.equal(createTimeoutMs(testProvider("x", capabilities(kind)), {}), 600_000, kind);
    assert.equal(createTimeoutMs(testProvider("local", capabilities("local")), {}), 0);
    assert.equal(createTimeoutMs(testProvider("x", capabilities("k8s")), { createTimeoutMs: 5000 }), 5000);
    assert.equal(createTimeoutMs(testProvider("local", capabilities("local")), { createTimeoutMs: 5000 }), 5000);
  });
});
