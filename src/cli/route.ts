/** `paddock route explain ENV [--interactive] [--json]`: where a session would run now, and why (docs/routing.md). */
import type { Command } from "commander";
import type { PaddockClient, RouteExplanation } from "../client/index.ts";
import { printJson } from "./output.ts";

export function registerRouteCommands(program: Command, client: () => PaddockClient): void {
  const route = program.command("route").description("see how sessions are routed to providers");
  route
    .command("explain <environment>")
    .description("show where a session of the environment would start now, and every factor for every candidate provider (starts nothing)")
    .option("--interactive", "as an interactive start (prefers warm pools); default batch")
    .option("--json", "print JSON")
    .action(async (environment: string, o: { interactive?: boolean; json?: boolean }) => {
      const e = await client().explainRoute(environment, { latency: o.interactive ? "interactive" : "batch" });
      if (o.json) return printJson(e);
      process.stdout.write(renderExplanation(e));
    });
}

/** The explanation as text: the decision, then each candidate with its factors. */
export function renderExplanation(e: RouteExplanation): string {
  const { request: r, decision: d } = e;
  const lines = [
    `environment ${r.environment}: ${r.compute.cpu} vCPU, ${Math.round((r.compute.memoryBytes / 1024 ** 3) * 100) / 100} GiB, ${r.latency}${r.selfHostedOnly ? ", compliance.selfHostedOnly" : ""}`,
    `strategy ${d.strategy}: ${d.chosen ? `chosen ${d.chosen}` : "no provider"} (${d.reason})`,
    d.order.length > 1 ? `failover order: ${d.order.join(" → ")}` : "",
    "",
  ].filter((l, i) => l !== "" || i === 3);
  for (const c of d.candidates) {
    lines.push(`${c.provider}: ${c.reason}${c.eligible ? ` (score ${c.score}, estimate $${c.estimateUsd.toFixed(4)})` : ""}`);
    for (const f of c.factors) lines.push(`  ${f.name.padEnd(14)} ${f.value.padEnd(22)} ${f.excludes ? "excludes" : f.points === 0 ? "0" : f.points > 0 ? `+${f.points}` : String(f.points)}  ${f.note}`);
  }
  return lines.join("\n") + "\n";
}
