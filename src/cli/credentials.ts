/**
 * Where the CLI finds its server and token, first match wins:
 * 1. --url / --token flags (a token flag is visible in `ps`; prefer the others),
 * 2. $PADDOCK_URL / $PADDOCK_TOKEN,
 * 3. the credentials file `paddock login` writes ($XDG_CONFIG_HOME or ~/.config)/paddock/credentials.json (0600),
 * 4. on the server's own machine: the admin token the first `paddock up` wrote to $PADDOCK_HOME/admin.token.
 */
import { readFileSync } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

export interface Credentials {
  url?: string;
  token?: string;
}

export function credentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "paddock", "credentials.json");
}

export function paddockHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.PADDOCK_HOME ?? join(homedir(), ".paddock");
}

export function resolveCredentials(flags: Credentials, env: NodeJS.ProcessEnv = process.env): Credentials {
  const saved = readJson(credentialsPath(env));
  const url = flags.url ?? env.PADDOCK_URL ?? saved.url;
  // A saved token belongs to the server it was saved for: never send it to another one.
  const savedToken = saved.token && (url === undefined || url === saved.url) ? saved.token : undefined;
  const token = flags.token ?? env.PADDOCK_TOKEN ?? savedToken ?? readAdminToken(env);
  return { ...(url ? { url } : {}), ...(token ? { token } : {}) };
}

export async function saveCredentials(c: Required<Credentials>, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const path = credentialsPath(env);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(JSON.stringify({ url: c.url, token: c.token }, null, 2) + "\n");
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  return path;
}

export async function forgetCredentials(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const path = credentialsPath(env);
  const existed = readJson(path).token !== undefined;
  await rm(path, { force: true });
  return existed;
}

function readAdminToken(env: NodeJS.ProcessEnv): string | undefined {
  try {
    return readFileSync(join(paddockHome(env), "admin.token"), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

function readJson(path: string): Credentials {
  try {
    const v = JSON.parse(readFileSync(path, "utf8")) as Credentials;
    return { ...(typeof v.url === "string" ? { url: v.url } : {}), ...(typeof v.token === "string" ? { token: v.token } : {}) };
  } catch {
    return {};
  }
}
