/**
 * The gateway process: `createGateway` run apart from the control plane, so a hostile sandbox that
 * saturates the gateway (connections, uploads, slow handshakes) costs this process's event loop
 * and memory, never the API's. Secrets are asked of the control plane over the IPC channel and
 * cached here until it says they changed; records, secret use and log lines go back to it; requests
 * to paddock.internal are handed to it. Started by `startGatewayProcess` (process.ts) only.
 */
import { createGateway } from "./index.ts";
import type { GatewayInit, ParentCall, ChildCall, Reply, ToChild, ToParent } from "./process-protocol.ts";
import type { EgressRecord, Gateway, SecretScope, SecretSource } from "./types.ts";
import type { LocalApi } from "./local.ts";
import type { UpstreamOptions } from "./upstream.ts";

/** How long a cached secret value is trusted without word from the control plane (another replica may change it). */
const SECRET_TTL_MS = 2_000;

const send = (m: ToParent): void => {
  if (process.connected) process.send?.(m);
};

let nextId = 1;
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

/** Ask the control plane; `id` names the call (an abort refers to it). */
function call(c: ChildCall): { id: number; reply: Promise<unknown> } {
  const id = nextId++;
  const reply = new Promise<unknown>((resolve, reject) => pending.set(id, { resolve, reject }));
  send({ ...c, t: "call", id });
  return { id, reply };
}

const cache = new Map<string, { value: string | null; at: number }>();
const secrets: SecretSource = {
  async resolve(name: string, scope: SecretScope) {
    const key = JSON.stringify([name, scope.environment, scope.team ?? null, scope.agent ?? null]);
    const hit = cache.get(key);
    if (hit && Date.now() - hit.at < SECRET_TTL_MS) return hit.value;
    const value = (await call({ op: "resolve", name, scope }).reply) as string | null;
    cache.set(key, { value, at: Date.now() });
    return value;
  },
  touch(name: string, scope: SecretScope) {
    send({ t: "touch", name, scope });
  },
};

/**
 * Records go to the control plane in one message per turn of the event loop: a busy database
 * session makes one per statement, thousands a second, and a message each would cost more than
 * relaying the statement. Not later than that: callers read the egress log right after a request.
 */
let recordBatch: EgressRecord[] = [];
function flushRecords(): void {
  const records = recordBatch;
  recordBatch = [];
  if (records.length === 1) send({ t: "record", record: records[0]! });
  else if (records.length > 1) send({ t: "records", records });
}
function sendRecord(record: EgressRecord): void {
  recordBatch.push(record);
  if (recordBatch.length === 1) setImmediate(flushRecords);
}

const localApi: LocalApi = async (sessionId, req) => {
  const { signal, ...rest } = req;
  const { id, reply } = call({ op: "local", sessionId, req: rest });
  const onAbort = (): void => send({ t: "abort", id });
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return (await reply) as Awaited<ReturnType<LocalApi>>;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
};

function upstreamOf(init: GatewayInit): UpstreamOptions {
  const hosts = init.upstream.hosts;
  return {
    ...(init.upstream.extraCaPem ? { extraCaPem: init.upstream.extraCaPem } : {}),
    ...(init.upstream.trustedAddresses ? { trustedAddresses: init.upstream.trustedAddresses } : {}),
    ...(hosts ? { resolve: async (host: string) => hosts[host] ?? [] } : {}),
  };
}

let gateway: Gateway | null = null;

async function serve(m: ParentCall): Promise<unknown> {
  if (!gateway) throw new Error("the gateway is not started yet");
  switch (m.op) {
    case "register":
      return gateway.register(m.spec, m.restore);
    case "unregister":
      return gateway.unregister(m.sessionId);
  }
}

function answer(id: number, work: Promise<unknown>): void {
  work.then(
    (value) => send({ t: "reply", id, ok: true, value }),
    (err: unknown) => {
      const e = err as { code?: string; message?: string };
      send({ t: "reply", id, ok: false, code: typeof e.code === "string" ? e.code : "internal", message: e.message ?? String(err) });
    },
  );
}

function settle(m: Reply): void {
  const p = pending.get(m.id);
  if (!p) return;
  pending.delete(m.id);
  if (m.ok) p.resolve(m.value);
  else p.reject(Object.assign(new Error(m.message), { code: m.code }));
}

process.on("message", (m: ToChild) => {
  switch (m.t) {
    case "init":
      createGateway({
        address: m.init.address,
        ports: m.init.ports,
        secrets,
        onRecord: sendRecord,
        upstream: upstreamOf(m.init),
        log: (line) => send({ t: "log", line }),
        localApi,
        ...(m.init.limits ? { limits: m.init.limits } : {}),
        ...(m.init.remoteProxy ? { remoteProxy: m.init.remoteProxy } : {}),
      }).then(
        (gw) => {
          gateway = gw;
          send({ t: "ready", endpoints: gw.endpoints, remoteProxy: gw.remoteProxy });
        },
        (err: unknown) => send({ t: "failed", message: err instanceof Error ? err.message : String(err) }),
      );
      return;
    case "call":
      answer(m.id, serve(m));
      return;
    case "reply":
      settle(m);
      return;
    case "invalidate":
      cache.clear();
      return;
    case "close":
      void (gateway?.close() ?? Promise.resolve()).finally(() => {
        flushRecords();
        send({ t: "closed" });
        process.disconnect();
      });
      return;
  }
});

// The control plane is gone (crashed or killed): nothing may be served without it. Sandboxes fail
// closed until a new control plane starts a new gateway.
process.on("disconnect", () => process.exit(0));
