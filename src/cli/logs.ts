/**
 * `paddock logs --egress SESSION`: every request that left a session through the egress gateway,
 * allowed or denied, with the rule that decided and the names (never values) of swapped secrets.
 */
import { Option, type Command } from "commander";
import type { EgressRecord, PaddockClient } from "../client/index.ts";
import { PaddockError } from "../core/index.ts";
import { printJson, printTable } from "./output.ts";

const HEADERS = ["TIME", "METHOD", "HOST", "PATH", "STATUS", "DECISION", "RULE", "SWAPPED"];
/** Column widths while following (rows arrive one by one, so they cannot be measured first). */
const FOLLOW_WIDTHS = [24, 7, 28, 32, 6, 8, 40];
const PAGE = 1000;

export function registerLogsCommands(program: Command, client: () => PaddockClient): void {
  program
    .command("logs")
    .description("show a session's egress log: what left the sandbox, what was refused and why")
    .requiredOption("--egress <session>", "the session whose requests to show")
    .option("--json", "print JSON (one object per line with --follow)")
    .option("-f, --follow", "keep printing new records until the session ends (Ctrl-C to stop)")
    .option("--limit <n>", "show the newest n records first (at most 1000)", "100")
    .addOption(new Option("--interval-ms <ms>", "poll interval while following").default("1000").hideHelp())
    .action(async (o: { egress: string; json?: boolean; follow?: boolean; limit: string; intervalMs: string }) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new PaddockError("invalid_argument", `--limit must be a positive whole number, got ${JSON.stringify(o.limit)}`);
      const records = await client().sessions.egress(o.egress, { limit });
      if (!o.follow) {
        if (o.json) return printJson(records);
        return printTable(HEADERS, records.map(egressRow));
      }
      await follow(client(), o.egress, records, { json: o.json ?? false, intervalMs: Math.max(10, Number(o.intervalMs) || 1000) });
    });
}

/** One record as table cells. */
export function egressRow(r: EgressRecord): string[] {
  const defaultPort = r.port === 443 || r.port === 80;
  return [
    r.time,
    r.method,
    defaultPort ? r.host : `${r.host}:${r.port}`,
    // A database statement's text (the path of the database gateway's records) may span lines: one row each.
    r.path.replace(/\s+/g, " "),
    String(r.status),
    r.decision,
    r.reason ? `${r.rule}: ${r.reason}` : r.rule,
    r.swapped.length ? r.swapped.join(",") : "-",
  ];
}

function followLine(cells: string[]): string {
  return cells.map((c, i) => (i < FOLLOW_WIDTHS.length ? c.padEnd(FOLLOW_WIDTHS[i] ?? 0) : c)).join("  ") + "\n";
}

/** Print `first`, then poll for newer records until the session has ended and nothing new came. */
async function follow(client: PaddockClient, id: string, first: EgressRecord[], o: { json: boolean; intervalMs: number }): Promise<void> {
  const print = (r: EgressRecord) => process.stdout.write(o.json ? JSON.stringify(r) + "\n" : followLine(egressRow(r)));
  if (!o.json) process.stdout.write(followLine(HEADERS));
  first.forEach(print);
  let after = first.at(-1)?.id ?? 0;
  let stop = false;
  let endedPolls = 0;
  process.once("SIGINT", () => (stop = true));
  while (!stop) {
    const session = await client.sessions.get(id);
    if (session.state !== "starting" && session.state !== "running") endedPolls++;
    let page: EgressRecord[];
    do {
      page = await client.sessions.egress(id, { after, limit: PAGE });
      page.forEach(print);
      after = page.at(-1)?.id ?? after;
    } while (page.length === PAGE);
    // The gateway may write a session's last records in a batch just after it ends: one more
    // round after seeing it ended, then stop.
    if (endedPolls >= 2) return;
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
}
