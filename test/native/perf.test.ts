// Latency measurements, printed and never asserted (timings vary by machine): launchSandbox()
// to ready, teardown, exec round trip of `true`, and bubblewrap for comparison.
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { AgentClient } from "../../src/providers/local/agent-client.ts";
import { launchSandbox } from "../../src/providers/local/launcher.ts";
import type { Prepared } from "./helpers.ts";
import { buildNative, prepareSandbox, rootOnly, teardown, waitGone } from "./helpers.ts";

const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)] ?? NaN;
const report = (name: string, xs: number[]): void =>
  console.log(`perf ${name}: p50 ${pct(xs, 0.5).toFixed(2)} ms, p90 ${pct(xs, 0.9).toFixed(2)} ms (n=${xs.length})`);

void describe("perf (printed, not asserted)", rootOnly, () => {
  let prep: Prepared;
  let bin = "";
  before(async () => {
    bin = buildNative();
    prep = await prepareSandbox({ mode: "session" });
  });
  after(() => teardown(prep.record));

  void it("launch to ready, and teardown", async () => {
    const ready: number[] = [];
    const down: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      const sb = await launchSandbox(bin, prep.opts, `${prep.record.dir}/launcher.log`);
      ready.push(performance.now() - t0);
      const t1 = performance.now();
      process.kill(sb.supervisorPid, "SIGTERM");
      await waitGone(sb.supervisorPid);
      down.push(performance.now() - t1);
    }
    report("launchSandbox() → ready", ready);
    report("SIGTERM → supervisor gone", down);
  });

  void it("exec round trip of `true`", async () => {
    const sb = await launchSandbox(bin, prep.opts, `${prep.record.dir}/launcher.log`);
    try {
      const client = new AgentClient(prep.opts.listen);
      const xs: number[] = [];
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        await client.exec({ argv: ["true"] });
        xs.push(performance.now() - t0);
      }
      report("exec `true` round trip", xs);
    } finally {
      process.kill(sb.supervisorPid, "SIGTERM");
      await waitGone(sb.supervisorPid);
    }
  });

  void it("bubblewrap and plain spawn for comparison", () => {
    const time = (cmd: string, args: string[]): number[] =>
      Array.from({ length: 50 }, () => {
        const t0 = performance.now();
        spawnSync(cmd, args, { stdio: "ignore" });
        return performance.now() - t0;
      });
    // `bwrap --unshare-all true` alone has an empty root with no `true` in it; bind / read-only.
    report("bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true", time("bwrap", ["--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]));
    report("spawnSync true (no sandbox)", time("true", []));
  });
});
