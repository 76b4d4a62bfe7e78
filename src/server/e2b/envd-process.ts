/**
 * envd's process service (Connect-RPC `process.Process`, JSON codec) as E2B's SDK calls it:
 * `commands.run/start/connect/list/kill/sendStdin/closeStdin` and `pty.create/sendInput/resize/
 * kill` (docs/e2b.md, "Commands and PTY"). Every process is a command of the sandbox's Paddock
 * session, run through the command gate (guardrails, approvals, audit) and the session's exec
 * path, so the kernel exec guard and the egress gateway hold as for a native exec.
 *
 * Every call is authenticated, authorised and audited first (`envdCaller`): Start, SendInput,
 * SendSignal, CloseStdin and Update change what runs and need `write` on the environment, as the
 * native exec does; List and Connect only look and need `read`.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { FastifyInstance } from "fastify";
import type { Requirement } from "../../guard/index.ts";
import type { Principal } from "../../core/index.ts";
import { addConnectParsers, ConnectError, connectErrorOf, serverStreamRoute, unaryRoute } from "./connect.ts";
import type { E2bContext } from "./context.ts";
import { parseInput, parseSelector, parseSignal, parseStartRequest, parseUpdate } from "./process-messages.ts";
import { E2B_USER, ProcessTable } from "./process-table.ts";

const WRITE: Requirement = { kind: "environment", permission: "write" };
const READ: Requirement = { kind: "environment", permission: "read" };
const SERVICE = "/process.Process";

/** envd's keepalive interval without the SDK's `Keepalive-Ping-Interval` header. */
const DEFAULT_KEEPALIVE_S = 90;

export function registerProcessService(scope: FastifyInstance, ctx: E2bContext): void {
  addConnectParsers(scope);
  const table = new ProcessTable(ctx.cp);
  scope.addHook("onClose", async () => table.close());
  const owner = async (headers: IncomingHttpHeaders, method: string, requirement: Requirement) => {
    const caller = await ctx.sandboxes.envdCaller(headers, `e2b.process.${method}`, requirement);
    return { sessionId: caller.sessionId, principal: caller.principal };
  };
  // A Start or Connect stream ends (the process does not) once its principal is disabled.
  const enabled = (principal: Principal) => async (): Promise<boolean> => {
    const now = await ctx.cp.store.getPrincipal(principal.id);
    return now !== null && now.disabledAt === null;
  };

  serverStreamRoute(scope, ctx.errors, `${SERVICE}/Start`, async (message, stream, call) => {
    const who = await owner(call.request.headers, "start", WRITE);
    const request = parseStartRequest(message);
    checkUser(call.request.headers);
    const { process, run } = await table.start(who, request, timeoutOf(call.request.headers));
    // Attached before it runs, so the start event comes first and no output is missed. The
    // process outlives this stream (a background command): only its own end or a kill ends it.
    const attached = process.attach(stream, keepaliveOf(call.request.headers), enabled(who.principal));
    void run();
    await attached;
  });

  serverStreamRoute(scope, ctx.errors, `${SERVICE}/Connect`, async (message, stream, call) => {
    const who = await owner(call.request.headers, "connect", READ);
    // From now on, as envd: output the process wrote before this call is not replayed.
    await table.find(who.sessionId, parseSelector(message, "the ConnectRequest")).attach(stream, keepaliveOf(call.request.headers), enabled(who.principal));
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/List`, async (_message, call) => {
    const who = await owner(call.request.headers, "list", READ);
    return {
      processes: table.list(who.sessionId).map((p) => ({
        config: { cmd: p.config.cmd, args: p.config.args, envs: p.config.envs, ...(p.config.cwd ? { cwd: p.config.cwd } : {}) },
        pid: p.pid,
        ...(p.tag !== undefined ? { tag: p.tag } : {}),
      })),
    };
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/SendInput`, async (message, call) => {
    const who = await owner(call.request.headers, "sendInput", WRITE);
    const process = table.find(who.sessionId, parseSelector(message, "the SendInputRequest"));
    await process.write(parseInput(message), call.signal);
    return {};
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/SendSignal`, async (message, call) => {
    const who = await owner(call.request.headers, "sendSignal", WRITE);
    const process = table.find(who.sessionId, parseSelector(message, "the SendSignalRequest"));
    process.signal(parseSignal(message));
    return {};
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/CloseStdin`, async (message, call) => {
    const who = await owner(call.request.headers, "closeStdin", WRITE);
    await table.find(who.sessionId, parseSelector(message, "the CloseStdinRequest")).closeStdin();
    return {};
  });

  unaryRoute(scope, ctx.errors, `${SERVICE}/Update`, async (message, call) => {
    const who = await owner(call.request.headers, "update", WRITE);
    const process = table.find(who.sessionId, parseSelector(message, "the UpdateRequest"));
    const size = parseUpdate(message);
    if (size) await process.resize(size);
    return {};
  });

  // A client stream needs request streaming (HTTP/2), which this HTTP/1.1 front end and the
  // SDK's fetch transport do not do; the SDK sends input with SendInput.
  scope.post(`${SERVICE}/StreamInput`, async (_request, reply) => {
    const body = connectErrorOf(new ConnectError("unimplemented", "StreamInput (client streaming) is not supported here: send input with SendInput"), ctx.errors, "StreamInput");
    return reply.code(501).type("application/json").send(JSON.stringify(body));
  });
}

/**
 * The SDK names the user as HTTP Basic (`user:`). Paddock runs E2B commands as the sandbox's
 * one unprivileged account, `user` (the session user); there is no root to become (the sandbox
 * runs with no_new_privs), so asking for another account is refused rather than quietly ignored.
 */
function checkUser(headers: IncomingHttpHeaders): void {
  const auth = headers.authorization;
  if (typeof auth !== "string" || auth === "") return;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(auth.trim());
  if (!m?.[1]) throw new ConnectError("unauthenticated", "the Authorization header names the user as HTTP Basic, e.g. Basic dXNlcjo= (user:)");
  const decoded = Buffer.from(m[1], "base64").toString("utf8");
  const user = decoded.includes(":") ? decoded.slice(0, decoded.indexOf(":")) : decoded;
  if (user === "" || user === E2B_USER) return;
  const why = user === "root"
    ? "Paddock sandboxes have no root: commands run as the unprivileged user 'user' (install system packages in the environment's install: steps instead)"
    : `commands run as the sandbox's user 'user', not ${JSON.stringify(user.slice(0, 64))}`;
  throw new ConnectError("permission_denied", why);
}

/** The process's deadline: envd kills a Start's process when its Connect-Timeout-Ms runs out (0: none). */
function timeoutOf(headers: IncomingHttpHeaders): number {
  const raw = headers["connect-timeout-ms"];
  if (raw === undefined || raw === "") return 0;
  if (typeof raw !== "string" || !/^\d{1,10}$/.test(raw)) throw new ConnectError("invalid_argument", "Connect-Timeout-Ms must be a whole number of milliseconds");
  return Number(raw);
}

/** Seconds between keepalive events on a quiet stream (the SDK asks for 50), within 1 s to 1 h. */
function keepaliveOf(headers: IncomingHttpHeaders): number {
  const raw = Number(headers["keepalive-ping-interval"]);
  const seconds = Number.isInteger(raw) && raw > 0 ? Math.min(raw, 3600) : DEFAULT_KEEPALIVE_S;
  return seconds * 1000;
}
