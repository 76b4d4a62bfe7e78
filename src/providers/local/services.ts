/**
 * Services of a local sandbox: the spec file the launcher hands to the in-sandbox supervisor
 * (`native/supervise.c`), and reading back what the supervisor reports. The supervisor writes its
 * status and the services' logs under /run/paddock/services inside the sandbox (its own tmpfs, so
 * logs cost the sandbox's memory and nothing is left on the host); they are read through the
 * agent's `get`, which resolves paths inside the sandbox as its command user, so no host code ever
 * follows a path the sandbox controls. See "Services" in docs/sandbox.md.
 */
import { chmod, writeFile } from "node:fs/promises";
import type { ServiceSpec, ServiceState, ServiceStatus } from "../../core/index.ts";
import { PaddockError, invalid } from "../../core/index.ts";
import type { AgentClient } from "./agent-client.ts";
import { isAlive, waitForExit } from "./procs.ts";

export const SERVICES_DIR = "/run/paddock/services";
/** What `ServiceStatus.logTail` holds at most. */
export const LOG_TAIL_BYTES = 64 * 1024;
/** Default `readyTimeoutMs`: how long a start may take before the supervisor counts it as failed. */
export const DEFAULT_READY_TIMEOUT_MS = 60_000;
const MAX_SERVICES = 32;
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const USER_RE = /^[A-Za-z0-9._-]{1,32}$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Variables the supervisor sets from the service user's /etc/passwd entry. */
const PER_USER = new Set(["HOME", "USER", "LOGNAME"]);

const escape = (s: string): string => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t");

/** Control characters the file format cannot carry even escaped (tab and newline can be). */
// eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
const BAD_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/;

function checkPath(what: string, p: string): void {
  if (!p.startsWith("/") || p === "/" || p.length > 1024 || BAD_CONTROL.test(p) || p.includes("\n") || p.split("/").some((s) => s === "." || s === ".."))
    throw invalid(`${what} ${JSON.stringify(p)}: use an absolute path inside the sandbox, without "." or ".." parts`);
}

/**
 * The launcher's `--services` file for these services (in start order), each starting with
 * `env` (the sandbox's environment, as commands get it) under its own `env`. Throws
 * `invalid_argument` for anything the launcher would refuse (it checks again and fails closed).
 */
export function servicesFileText(services: ServiceSpec[], env: Record<string, string>): string {
  if (services.length === 0 || services.length > MAX_SERVICES) throw invalid(`a sandbox has 1 to ${MAX_SERVICES} services, not ${services.length}`);
  const seen = new Set<string>();
  const lines = ["paddock-services 1"];
  for (const s of services) {
    const field = (key: string, value: string): void => {
      if (BAD_CONTROL.test(value)) throw invalid(`service ${s.name}: ${key} contains a control character`);
      lines.push(`${key}\t${escape(value)}`);
    };
    if (!NAME_RE.test(s.name)) throw invalid(`bad service name ${JSON.stringify(s.name)}: use lowercase letters, digits and dashes`);
    if (seen.has(s.name)) throw invalid(`service ${s.name} is listed twice`);
    for (const d of s.dependsOn) {
      // The order is the start order: what a service needs must come before it.
      if (!seen.has(d)) throw invalid(`service ${s.name} depends on ${JSON.stringify(d)}, which is not one of the services listed before it`);
    }
    if (s.command.trim() === "") throw invalid(`service ${s.name}: empty command`);
    if (!USER_RE.test(s.user)) throw invalid(`service ${s.name}: bad user ${JSON.stringify(s.user)}`);
    if (s.user === "root" || s.user === "0") throw invalid(`service ${s.name}: services run as an unprivileged user, not root`);
    lines.push(`service\t${s.name}`);
    field("command", s.command);
    field("user", s.user);
    if (s.cwd !== undefined) {
      if (s.cwd !== "/") checkPath(`service ${s.name}: cwd`, s.cwd);
      field("cwd", s.cwd);
    }
    const all = { ...Object.fromEntries(Object.entries(env).filter(([k]) => !PER_USER.has(k))), ...s.env };
    if (Object.keys(all).length > 256) throw invalid(`service ${s.name}: more than 256 environment variables`);
    for (const [k, v] of Object.entries(all)) {
      if (!ENV_NAME_RE.test(k)) throw invalid(`service ${s.name}: bad environment variable name ${JSON.stringify(k)}`);
      field("env", `${k}=${v}`);
    }
    if ("port" in s.ready) {
      if (!Number.isInteger(s.ready.port) || s.ready.port < 1 || s.ready.port > 65535) throw invalid(`service ${s.name}: ready port must be 1 to 65535`);
      field("ready-port", String(s.ready.port));
    } else {
      if (s.ready.command.trim() === "") throw invalid(`service ${s.name}: empty ready command`);
      field("ready-command", s.ready.command);
    }
    const timeout = s.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > 86_400_000) throw invalid(`service ${s.name}: readyTimeoutMs must be 1 ms to 1 day`);
    field("ready-timeout-ms", String(timeout));
    if (s.dataDirs.length > 16) throw invalid(`service ${s.name}: more than 16 data directories`);
    for (const d of s.dataDirs) {
      checkPath(`service ${s.name}: data directory`, d);
      field("data-dir", d);
    }
    if (!Number.isInteger(s.restartLimit) || s.restartLimit < 0 || s.restartLimit > 1000) throw invalid(`service ${s.name}: restartLimit must be 0 to 1000`);
    field("restart-limit", String(s.restartLimit));
    for (const d of s.dependsOn) field("depends-on", d);
    lines.push("end");
    seen.add(s.name);
  }
  return lines.join("\n") + "\n";
}

/** Write the spec file (0600: it holds the sandbox's environment, placeholders included). */
export async function writeServicesFile(path: string, services: ServiceSpec[], env: Record<string, string>): Promise<string> {
  await writeFile(path, servicesFileText(services, env), { mode: 0o600 });
  await chmod(path, 0o600); // the mode above applies only when the file is new
  return path;
}

/** How long the supervisor may take to stop one service: its SIGTERM grace (30 s) plus its SIGKILL wait. */
const STOP_MS_PER_SERVICE = 32_000;

/**
 * An orderly end of a sandbox with services: SIGTERM to its pid 1 makes the supervisor stop them
 * in reverse order (SIGTERM, SIGKILL after 30 s), after which the sandbox ends. Resolves true once
 * the launcher (`supervisorPid`) has exited, false when it is still there after the bound (the
 * caller then kills the sandbox as usual). Used before a build layer is committed, so what the
 * services wrote (a database's files) is as after a clean shutdown.
 */
export async function stopServicesCleanly(state: { initPid: number; initStartTime: string; supervisorPid: number }, count: number): Promise<boolean> {
  if (!(await isAlive(state.initPid, state.initStartTime))) return true;
  try {
    process.kill(state.initPid, "SIGTERM");
  } catch {
    return true; // it exited meanwhile
  }
  return waitForExit(state.supervisorPid, count * STOP_MS_PER_SERVICE + 5_000);
}

const STATES = new Set<ServiceState>(["starting", "ready", "restarting", "failed", "stopped"]);

/** What the supervisor reports, without log tails; before its first report every service is starting. */
export async function readServiceStates(agent: AgentClient, names: string[], since: string): Promise<Omit<ServiceStatus, "logTail">[]> {
  let text = "";
  try {
    text = (await agent.get(`${SERVICES_DIR}/status`)).toString("utf8");
  } catch (err) {
    // Not written yet: the supervisor is a moment behind the agent's "ready".
    if (!(err instanceof PaddockError && err.code === "not_found")) throw err;
  }
  const reported = new Map<string, Omit<ServiceStatus, "logTail">>();
  for (const line of text.split("\n").slice(1)) {
    const [name = "", state = "", restarts = "", pid = "", sinceMs = "", ...message] = line.split("\t");
    if (!names.includes(name) || !STATES.has(state as ServiceState)) continue;
    const ms = Number(sinceMs);
    reported.set(name, {
      name,
      state: state as ServiceState,
      restarts: Number(restarts) || 0,
      pid: Number(pid) > 0 ? Number(pid) : null,
      since: Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : since,
      message: message.join("\t") || null,
    });
  }
  return names.map((name) => reported.get(name) ?? { name, state: "starting", restarts: 0, pid: null, since, message: null });
}

/** The last `LOG_TAIL_BYTES` of a service's output (its rotated log first when the current one is short). */
export async function readLogTail(agent: AgentClient, name: string): Promise<string> {
  const read = (path: string) =>
    agent.get(path).catch((err: unknown) => {
      if (err instanceof PaddockError && err.code === "not_found") return Buffer.alloc(0);
      throw err;
    });
  let bytes = await read(`${SERVICES_DIR}/${name}.log`);
  if (bytes.length < LOG_TAIL_BYTES) bytes = Buffer.concat([await read(`${SERVICES_DIR}/${name}.log.1`), bytes]);
  if (bytes.length <= LOG_TAIL_BYTES) return bytes.toString("utf8");
  const tail = bytes.subarray(bytes.length - LOG_TAIL_BYTES);
  // Start at a line boundary rather than in the middle of a line (or of a UTF-8 sequence).
  const nl = tail.indexOf(0x0a);
  return tail.subarray(nl >= 0 && nl < tail.length - 1 ? nl + 1 : 0).toString("utf8");
}

export async function readServices(agent: AgentClient, names: string[], since: string): Promise<ServiceStatus[]> {
  const states = await readServiceStates(agent, names, since);
  return Promise.all(states.map(async (s) => ({ ...s, logTail: await readLogTail(agent, s.name) })));
}

/** The last `n` lines of a log, for messages. */
export function lastLines(log: string, n = 20): string[] {
  return log.replace(/\n$/, "").split("\n").slice(-n).filter((l, i, a) => l !== "" || i < a.length - 1);
}

/**
 * Resolve once every service is ready; reject `unavailable` as soon as one has failed, or when
 * `timeoutMs` passes first, naming the service with its message and the end of its log (also in
 * `details`: `{ service, state, lastLines }`). The supervisor's status is polled (each poll is
 * one `get` through the agent, about a millisecond), backing off from 5 to 50 ms.
 */
export async function waitForServices(agent: AgentClient, names: string[], since: string, timeoutMs: number): Promise<ServiceStatus[]> {
  if (names.length === 0) return [];
  const deadline = Date.now() + timeoutMs;
  for (let wait = 5; ; wait = Math.min(wait * 2, 50)) {
    const states = await readServiceStates(agent, names, since);
    const failed = states.find((s) => s.state === "failed" || s.state === "stopped");
    if (failed) {
      // The root cause first: a service that failed on its own, not one whose dependency failed.
      const cause = states.find((s) => s.state === "failed" && !(s.message ?? "").startsWith("not started:")) ?? failed;
      throw await notReady(agent, cause, `service ${cause.name} ${cause.state === "stopped" ? "was stopped" : "failed"}: ${cause.message ?? "no reason given"}`);
    }
    if (states.every((s) => s.state === "ready")) return readServices(agent, names, since);
    if (Date.now() >= deadline) {
      const slow = states.find((s) => s.state !== "ready") ?? states[0]!;
      const why = slow.message ? ` (${slow.message})` : "";
      throw await notReady(agent, slow, `service ${slow.name} is not ready after ${timeoutMs} ms: it is ${slow.state}${why}`);
    }
    await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(1, deadline - Date.now()))));
  }
}

async function notReady(agent: AgentClient, s: Omit<ServiceStatus, "logTail">, message: string): Promise<PaddockError> {
  const log = await readLogTail(agent, s.name).catch(() => "");
  const lines = lastLines(log);
  const text = lines.length ? `${message}\nlast lines of its log (${SERVICES_DIR}/${s.name}.log):\n${lines.map((l) => `  ${l}`).join("\n")}` : message;
  return new PaddockError("unavailable", text, { service: s.name, state: s.state, lastLines: lines });
}
