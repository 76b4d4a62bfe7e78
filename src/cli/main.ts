/**
 * The `paddock` command. Everything but `up` talks to the server over the HTTP API (through the
 * SDK), so what the CLI can do, an API client can do too.
 */
import { Command, CommanderError } from "commander";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { PaddockClient } from "../client/index.ts";
import { PaddockError } from "../core/index.ts";
import { die, printJson } from "./output.ts";
import { registerEnvCommands } from "./env.ts";
import { registerSessionCommands } from "./session.ts";
import { registerSecretCommands } from "./secret.ts";
import { registerLogsCommands } from "./logs.ts";
import { registerAccessCommands } from "./access.ts";
import { registerSnapshotCommands } from "./snapshot.ts";
import { registerRunCommands } from "./run.ts";
import { registerPreviewCommands } from "./preview.ts";
import { registerProviderCommands } from "./provider.ts";
import { registerRouteCommands } from "./route.ts";
import { resolveCredentials } from "./credentials.ts";
import { registerNodeCommands } from "./node.ts";

const program = new Command();
let clientInstance: PaddockClient | undefined;
/** The SDK client with the URL and token resolved as src/cli/credentials.ts describes; `override` for login. */
const client = (override?: { token?: string }) => {
  const flags = program.opts<{ url?: string; token?: string }>();
  if (override) return new PaddockClient(resolveCredentials({ ...flags, ...override }));
  return (clientInstance ??= new PaddockClient(resolveCredentials(flags)));
};

program
  .name("paddock")
  .description("Run coding agents in isolated sandboxes without handing them real credentials.")
  .version("0.1.0")
  .option("--url <url>", "server URL (default $PADDOCK_URL, the saved login, or http://127.0.0.1:7070)")
  .option("--token <token>", "API token (default $PADDOCK_TOKEN, the saved login, or $PADDOCK_HOME/admin.token); visible in ps, prefer those")
  .showHelpAfterError()
  .exitOverride();

program
  .command("up")
  .description("start the Paddock server in the foreground (SQLite store and local provider under $PADDOCK_HOME)")
  .option("--port <port>", "port to listen on", "7070")
  .option("--host <host>", "address to listen on", "127.0.0.1")
  .option("--home <dir>", "data directory (default $PADDOCK_HOME or ~/.paddock)")
  .option("--preview-domain <domain>", "base domain of preview URLs, <port>-<id>.<domain> (default preview.localhost: browsers resolve *.localhost to this machine)")
  .option("--public-url <url>", "the UI's address as browsers reach it (default http://127.0.0.1:<port>)")
  .option("--agent-packages <dir>", "install agent CLIs into templates from this local mirror (scripts/agent-packages.ts) instead of the npm registry (default $PADDOCK_AGENT_PACKAGES)")
  .option("--e2b-port <port>", "port of the E2B-compatible API (docs/e2b.md): default the API's port + 1 (7071), a free one with --port 0; off: none")
  .option("--gateway-remote-listen <addr:port>", "serve remote providers' sandboxes: the egress gateway's HTTPS proxy with per-session credentials listens here (docs/gateway.md, \"Remote sandboxes\"); off by default")
  .option("--gateway-public-host <host>", "the name or address remote sandboxes reach --gateway-remote-listen by (in their proxy URL and the proxy's certificate)")
  .action(async (o: { port: string; host: string; home?: string; agentPackages?: string; previewDomain?: string; publicUrl?: string; e2bPort?: string; gatewayRemoteListen?: string; gatewayPublicHost?: string }) => {
    // The server is imported lazily: every other command only needs the SDK.
    const { startServer, describeThrown } = await import("../server/index.ts");
    const home = resolve(o.home ?? process.env.PADDOCK_HOME ?? join(homedir(), ".paddock"));
    const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
    // An unforeseen crash: log its cause and stack, then exit non-zero rather than go on in an
    // unknown state; a supervisor restarts the server (docs/operations.md) and sessions survive it.
    let logCrash = async (kind: string, err: unknown): Promise<void> => void log(`fatal: ${kind}: ${describeThrown(err).replace(/pdk_[a-z0-9]{16}_[A-Za-z0-9_-]{43}/g, "pdk_[redacted token]")}`);
    const crash = (kind: string) => (err: unknown) => {
      const exit = () => process.exit(70);
      setTimeout(exit, 2000).unref(); // the log write must not hold the exit up
      logCrash(kind, err).then(exit, exit);
    };
    process.on("uncaughtException", crash("uncaught exception"));
    process.on("unhandledRejection", crash("unhandled rejection"));
    const e2bPort = e2bPortOf(o.e2bPort, Number(o.port));
    const remoteProxy = remoteProxyOf(o.gatewayRemoteListen, o.gatewayPublicHost);
    const server = await startServer({ home, host: o.host, port: Number(o.port), log, ...(e2bPort !== null ? { e2bPort } : {}), ...(remoteProxy ? { gateway: { remoteProxy } } : {}), ...(o.agentPackages ? { agentPackages: resolve(o.agentPackages) } : {}), ...(o.previewDomain ? { previewDomain: o.previewDomain } : {}), ...(o.publicUrl ? { publicUrl: o.publicUrl } : {}) });
    logCrash = (kind, err) => server.logCrash(kind, err);
    log(`paddock listening on ${server.url} (data in ${home}, layers: ${server.cp.layers.kind})`);
    if (server.e2bUrl) log(`E2B-compatible API on ${server.e2bUrl}: set E2B_API_URL=${server.e2bUrl} E2B_SANDBOX_URL=${server.e2bUrl} and E2B_API_KEY=<a Paddock token> (docs/e2b.md)`);
    if (server.cp.adminTokenFile) log(`created the admin principal; its token is in ${server.cp.adminTokenFile} (mode 0600), which paddock on this machine uses by default`);
    const shutdown = (sig: string) => {
      log(`${sig}: shutting down (running sessions keep running and are found again at the next start)`);
      server.close().then(
        () => process.exit(0),
        (err: unknown) => die(err),
      );
    };
    process.once("SIGINT", () => shutdown("SIGINT"));
    process.once("SIGTERM", () => shutdown("SIGTERM"));
  });

/** The E2B front end's port: `off` → none; absent → the API's port + 1 (a free one when the API's is 0). */
/** `--gateway-remote-listen ADDR:PORT` with `--gateway-public-host HOST`, or null when off. */
function remoteProxyOf(listen: string | undefined, publicHost: string | undefined): { host: string; port: number; publicHost: string } | null {
  if (listen === undefined && publicHost === undefined) return null;
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(listen ?? "");
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new PaddockError("invalid_argument", `--gateway-remote-listen ${JSON.stringify(listen ?? "")}: an address and port, e.g. 0.0.0.0:3129 or [::]:3129`);
  if (!publicHost) throw new PaddockError("invalid_argument", "--gateway-remote-listen needs --gateway-public-host: the name or address remote sandboxes reach it by");
  return { host: m[1] ?? "", port, publicHost };
}

function e2bPortOf(flag: string | undefined, apiPort: number): number | null {
  if (flag === "off") return null;
  const port = flag === undefined ? (apiPort === 0 ? 0 : apiPort + 1) : Number(flag);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new PaddockError("invalid_argument", `--e2b-port ${JSON.stringify(flag)}: a port number (0 for a free one) or off`);
  return port;
}

program
  .command("admin-token")
  .description("on the server's machine: issue a new token for admin and write it to $PADDOCK_HOME/admin.token (0600), e.g. after losing it")
  .option("--home <dir>", "data directory (default $PADDOCK_HOME or ~/.paddock)")
  .action(async (o: { home?: string }) => {
    // Local recovery, not an API call: whoever can write the data directory already controls
    // the installation. The store is opened directly (SQLite allows it beside a running server).
    const home = resolve(o.home ?? process.env.PADDOCK_HOME ?? join(homedir(), ".paddock"));
    const { openStore } = await import("../store/index.ts");
    const { openVault } = await import("../gateway/vault.ts");
    const { AuditLog, Identities } = await import("../guard/index.ts");
    const { existsSync } = await import("node:fs");
    if (!existsSync(join(home, "paddock.db"))) throw new PaddockError("not_found", `no Paddock data in ${home} (start it once with paddock up, or pass --home)`);
    const store = await openStore(join(home, "paddock.db"));
    try {
      const vault = await openVault({ home, store });
      const path = await new Identities(store).recoverAdmin(home);
      await new AuditLog(store, vault.deriveKey("audit-chain"), join(home, "audit.head")).append({
        actor: "local-root", actorKind: "system", action: "admin-token", target: "admin", decision: "allowed", detail: { uid: process.getuid?.() ?? null },
      });
      process.stderr.write(`a new admin token is in ${path} (mode 0600); the old ones still work until revoked (paddock user tokens admin)\n`);
    } finally {
      await store.close();
    }
  });

registerEnvCommands(program, client);
registerSessionCommands(program, client);
registerSecretCommands(program, client);
registerLogsCommands(program, client);
registerAccessCommands(program, client);
registerSnapshotCommands(program, client);
registerRunCommands(program, client);
registerPreviewCommands(program, client);
registerProviderCommands(program, client);
registerRouteCommands(program, client);
registerNodeCommands(program);

program
  .command("doctor")
  .description("check the host's readiness and look for leaked kernel objects (exit 1 when anything is wrong)")
  .option("--json", "print JSON")
  .action(async (o: { json?: boolean }) => {
    const r = await client().doctor();
    if (o.json) printJson(r);
    else {
      for (const c of r.checks) process.stdout.write(`${c.ok ? "ok  " : "FAIL"}  ${c.name}: ${c.detail}\n`);
      process.stdout.write(r.leaks.length ? `leaks:\n${r.leaks.map((l) => `  ${l}`).join("\n")}\n` : "no leaked objects\n");
    }
    if (!r.ok || r.leaks.length) process.exitCode = 1;
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version are "errors" to commander; usage mistakes exit 2 like other bad input.
    process.exit(err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help" ? 0 : 2);
  }
  die(err);
}
