import { CommandRunner } from "../src/core/runner.ts";
import { runCommand } from "../src/core/run.ts";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
const ballast: Buffer[] = [];
for (let i = 0; i < 180; i++) ballast.push(Buffer.alloc(1 << 20, i));
const objs: object[] = []; for (let i = 0; i < 300000; i++) objs.push({ i, s: "x" + i });
console.log("rss MiB", (process.memoryUsage().rss / 2 ** 20).toFixed(0));
const r = new CommandRunner();
await r.run(["true"]);
async function measure(name: string, f: () => Promise<unknown>, n = 200) {
  const h = monitorEventLoopDelay({ resolution: 1 }); h.enable();
  const e0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f();
  const wall = performance.now() - t0;
  const e = performance.eventLoopUtilization(e0);
  h.disable();
  console.log(name, "wall/cmd", (wall / n).toFixed(2), "ms; loop active/cmd", (e.active / n).toFixed(3), "ms");
}
await measure("spawn ", () => runCommand(["true"]));
await measure("runner", () => r.run(["true"]));
await measure("spawn  btrfs --version", () => runCommand(["btrfs", "--version"]));
await measure("runner btrfs --version", () => r.run(["btrfs", "--version"]));
await r.close();
console.log(ballast.length + objs.length > 0);
