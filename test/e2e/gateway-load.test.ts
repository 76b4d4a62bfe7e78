import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import type { PaddockClient } from "../../src/client/index.ts";
import { testServer } from "../helpers/server.ts";
import { startUpstream, UPSTREAM_NAMES, type Upstream } from "../helpers/upstream.ts";
import { until } from "../helpers/wait.ts";
import { percentile } from "../network/helpers.ts";

/**
 * One hostile sandbox at its limits leaves the others and the API unaffected (issue 9). Session A
 * holds well over a thousand TCP connections to port 443 that never send a ClientHello, plus
 * sixteen concurrent 30 MiB uploads, for as long as the test runs. Meanwhile session B's requests
 * must keep succeeding, each within 3 s, and the API's /v1/health must keep answering (p99 under
 * 500 ms on this 2-core machine; the measured figures are printed). Upstreams are local fakes.
 */
const UPSTREAM_IP = "127.0.57.1";
const HALF_OPEN = 1500;
const UPLOADS = 16;
const UPLOAD_MIB = 30;
const B_REQUESTS = 20;

const attacker = `
import os, resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for _ in range(${HALF_OPEN}):
    try:
        held.append(socket.create_connection(("api.stripe.com", 443), timeout=3))
    except OSError:
        pass
open("/workspace/held", "w").write(str(len(held)))
# Reopen whatever the gateway closes: the pressure stays on for the whole test.
while True:
    for i, s in enumerate(held):
        try:
            if s.recv(1, socket.MSG_DONTWAIT) == b"":
                raise OSError
        except BlockingIOError:
            continue
        except OSError:
            try:
                held[i] = socket.create_connection(("api.stripe.com", 443), timeout=3)
            except OSError:
                pass
    time.sleep(0.05)
`;

void describe("one sandbox floods the gateway; another session and the API are unaffected (local fake upstreams)", () => {
  let client: PaddockClient;
  let cleanup: () => Promise<void>;
  let up: Upstream;
  let a: string;
  let b: string;

  before(async () => {
    up = await startUpstream(UPSTREAM_IP, { gitToken: "unused" });
    ({ client, cleanup } = await testServer({
      gateway: { upstream: { extraCaPem: [up.caPem], hosts: Object.fromEntries(UPSTREAM_NAMES.map((n) => [n, [UPSTREAM_IP]])), trustedAddresses: [UPSTREAM_IP] } },
    }));
    await client.environments.apply(
      "paddock.yml",
      "name: load\ncompute:\n  cpu: 1\n  memory: 1GiB\n  disk: 1GiB\n  pids: 512\nguardrails:\n  network:\n    allow: [api.stripe.com]\n    deny: ['*']\n",
    );
    [a, b] = await Promise.all([client.sessions.start("load").then((s) => s.id), client.sessions.start("load").then((s) => s.id)]);
  });
  after(async () => {
    await cleanup?.();
    await up?.close();
  });

  void it(`B's requests and /v1/health keep working while A holds ${HALF_OPEN} half-open TLS connections and ${UPLOADS} × ${UPLOAD_MIB} MiB uploads`, async () => {
    if (!a || !b) throw new Error("sessions did not start");
    await client.files.write(a, "/workspace/attack.py", Buffer.from(attacker));
    const made = await client.sessions.run(a, { argv: ["sh", "-c", `head -c ${UPLOAD_MIB * 1024 * 1024} /dev/zero > /workspace/big && echo made`], timeoutMs: 60_000 });
    assert.equal(made.stdout, "made\n", made.stderr);
    // The uploads first (rate-limited, so they stay in flight for the whole test), then the
    // half-open flood, which fills what is left of A's connection cap and keeps knocking.
    const uploads = client.sessions.run(a, {
      argv: ["sh", "-c", `for i in $(seq ${UPLOADS}); do curl -s -o /dev/null -w '%{http_code}\\n' -m 170 --limit-rate 4M --data-binary @/workspace/big https://api.stripe.com/sink & done; wait`],
      timeoutMs: 180_000,
    });
    const flood = await client.sessions.run(a, { argv: ["sh", "-c", "(nohup python3 /workspace/attack.py >/dev/null 2>&1 &) && echo started"] });
    assert.equal(flood.stdout, "started\n", flood.stderr);
    // Readiness: the attacker says how many connections it opened.
    const held = await until(async () => Number((await client.files.read(a, "/workspace/held").catch(() => Buffer.from(""))).toString()) || null, 60_000, "the attacker to open its connections");
    const health: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const t0 = performance.now();
        await client.health();
        health.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const times: number[] = [];
    try {
      for (let i = 0; i < B_REQUESTS; i++) {
        const r = await client.sessions.run(b, { argv: ["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", `https://api.stripe.com/v1/ping/${i}`], timeoutMs: 20_000 });
        const [code, secs] = r.stdout.split(" ");
        assert.equal(code, "200", `B's request ${i} failed while A floods the gateway: ${r.stdout} ${r.stderr}`);
        times.push(Number(secs) * 1000);
      }
    } finally {
      polling = false;
      await poller;
    }
    const upload = await uploads;
    console.log(
      `A held ${held} connections; B: ${B_REQUESTS} requests, p50 ${percentile(times, 50).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms; ` +
        `/v1/health: ${health.length} calls, p50 ${percentile(health, 50).toFixed(1)} ms, p99 ${percentile(health, 99).toFixed(1)} ms; A's uploads: ${upload.stdout.trim().split("\n").join(",")}`,
    );
    assert.ok(held >= 100, `the attacker held only ${held} connections: the test did not create the pressure it claims`);
    // A's uploads were streamed through (200) or refused by its own memory budget (503): never
    // starved by its own flood before they began, and never the gateway's memory.
    const codes = upload.stdout.trim().split("\n");
    assert.equal(codes.length, UPLOADS);
    assert.ok(codes.every((c) => c === "200" || c === "503"), `A's uploads: ${codes.join(",")}`);
    assert.ok(Math.max(...times) < 3000, `B's slowest request took ${Math.max(...times).toFixed(0)} ms (bound 3000 ms)`);
    assert.ok(percentile(health, 99) < 500, `/v1/health p99 ${percentile(health, 99).toFixed(0)} ms (bound 500 ms)`);
  });
});
