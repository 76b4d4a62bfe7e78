/**
 * The `paddock` program with only the secret and logs commands, parsed and failing the way
 * src/cli/main.ts does (exit codes from src/cli/output.ts). Spawned by cli.test.ts until the
 * integration registers these commands in main.ts.
 */
import { Command, CommanderError } from "commander";
import { PaddockClient } from "../../src/client/index.ts";
import { registerLogsCommands } from "../../src/cli/logs.ts";
import { die } from "../../src/cli/output.ts";
import { registerSecretCommands } from "../../src/cli/secret.ts";

const program = new Command().name("paddock").option("--url <url>").exitOverride();
const client = () => new PaddockClient({ url: program.opts<{ url?: string }>().url ?? process.env.PADDOCK_URL });
registerSecretCommands(program, client);
registerLogsCommands(program, client);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.code === "commander.helpDisplayed" ? 0 : 2);
  die(err);
}
