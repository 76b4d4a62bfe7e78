/** `paddock preview SESSION PORT` and `paddock previews list|show|revoke` (docs/previews.md). */
import type { Command } from "commander";
import type { PaddockClient } from "../client/index.ts";
import { PaddockError } from "../core/index.ts";
import { printJson, printTable } from "./output.ts";

export function registerPreviewCommands(program: Command, client: () => PaddockClient): void {
  program
    .command("preview <session> <port>")
    .description("serve a port of a running session at a URL of its own (prints the URL with its token, shown once)")
    .option("--ttl <duration>", "how long the URL works, e.g. 2h, 7d (default 24h, at most 30d)")
    .option("--public", "anyone with the URL may visit it (no token or login needed)")
    .option("--command <command>", "what starts the app, run in the background when a visit wakes the stopped session (e.g. \"npm start\")")
    .option("--json", "print the preview, its token and URL as JSON")
    .action(async (session: string, port: string, o: { ttl?: string; public?: boolean; command?: string; json?: boolean }) => {
      if (!/^\d{1,5}$/.test(port)) throw new PaddockError("invalid_argument", `port must be a number from 1 to 65535, got ${JSON.stringify(port)}`);
      const r = await client().previews.create(session, Number(port), {
        ...(o.ttl !== undefined ? { ttl: o.ttl } : {}), ...(o.public ? { public: true } : {}), ...(o.command !== undefined ? { command: o.command } : {}),
      });
      if (o.json) printJson(r);
      else process.stdout.write(r.url + "\n");
    });

  const previews = program.command("previews").description("list, show and revoke preview URLs");
  previews
    .command("list")
    .description("list live previews (--all: also revoked and expired ones)")
    .option("--session <id>", "only previews of this session")
    .option("--env <name>", "only previews of this environment")
    .option("--all", "include revoked and expired previews")
    .option("--json", "print JSON")
    .action(async (o: { session?: string; env?: string; all?: boolean; json?: boolean }) => {
      const list = await client().previews.list({ ...(o.session ? { session: o.session } : {}), ...(o.env ? { environment: o.env } : {}), ...(o.all ? { all: true } : {}) });
      if (o.json) return printJson(list);
      printTable(
        ["ID", "SESSION", "PORT", "PUBLIC", "EXPIRES", "STATE", "URL"],
        list.map((p) => [p.id, p.sessionId, String(p.port), p.public ? "yes" : "no", p.expiresAt, p.revokedAt ? "revoked" : Date.parse(p.expiresAt) <= Date.now() ? "expired" : "live", p.url]),
      );
    });
  previews
    .command("show <id>")
    .description("show one preview")
    .option("--json", "print JSON")
    .action(async (id: string, o: { json?: boolean }) => {
      const p = await client().previews.get(id);
      if (o.json) return printJson(p);
      for (const [k, v] of Object.entries(p)) process.stdout.write(`${(k + ":").padEnd(12)}${v === null ? "-" : String(v)}\n`);
    });
  previews
    .command("revoke <id>")
    .description("revoke a preview: the next request through it is refused")
    .action(async (id: string) => {
      await client().previews.revoke(id);
    });
}
