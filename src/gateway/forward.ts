/**
 * One HTTP request from a sandbox, judged and forwarded. The order is the point: parse and check
 * framing, establish the target, decide policy, read the body, swap, vet the address, dial. Every
 * step that fails answers the client itself and dials nothing; any exception fails closed (502,
 * connection closed). Requests are re-framed (body buffered, Content-Length set), never relayed raw.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { hostForUrl } from "./addresses.ts";
import { endToEndHeaders, framingProblem, headerValues, parseAuthority, readBody } from "./framing.ts";
import { decideHost } from "./policy.ts";
import { draft, finish, logLine, type RecordDraft } from "./records.ts";
import { redactText } from "./redact.ts";
import { isReceivePack, pushProblem, rejectionReport } from "./push.ts";
import { LOCAL_API_HOST, serveLocal, type LocalApi } from "./local.ts";
import { relayResponse, UnsupportedEncoding } from "./response.ts";
import type { Session, SessionTable } from "./sessions.ts";
import { responseReplacements, swapRequest } from "./swap.ts";
import { dial, vetAddress, type UpstreamAgents, type UpstreamOptions } from "./upstream.ts";
import type { EgressRecord } from "./types.ts";

/** Largest request body the gateway buffers (it re-frames every request). */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;

export interface Deps {
  sessions: SessionTable;
  upstream: UpstreamOptions;
  agents: UpstreamAgents;
  record: (r: EgressRecord) => void;
  /** The control plane's API for code inside sandboxes (http://paddock.internal). */
  localApi?: LocalApi;
}

/** How the connection reached the gateway, and what is already fixed about its target. */
export interface Conn {
  mode: "proxy" | "http" | "connect" | "https";
  session: Session | null;
  /** For TLS modes: the CONNECT target / SNI every inner request must match. */
  host?: string;
  port?: number;
}

type Target = { host: string; port: number; path: string } | { status: number; reason: string; host: string; port: number; path: string };

/** Work out host, port and path from the request line and the connection, or why not. */
function target(conn: Conn, req: IncomingMessage): Target {
  const url = req.url ?? "";
  const tls = conn.mode === "connect" || conn.mode === "https";
  const hostHeader = parseAuthority(headerValues(req.rawHeaders, "host")[0] ?? "", tls ? 443 : 80);
  const bad = (status: number, reason: string, host = hostHeader?.host ?? "", port = hostHeader?.port ?? 0, path = "/"): Target => ({ status, reason, host, port, path });
  let want: { host: string; port: number };
  let path = url;
  if (conn.mode === "proxy") {
    const m = /^http:\/\/([^/?#]*)([^#]*)/i.exec(url);
    if (!m) return bad(400, "the proxy port takes absolute http:// URLs or CONNECT; use CONNECT for https");
    // `http://api.stripe.com@evil.example/`: userinfo makes the URL's host ambiguous to readers.
    if ((m[1] ?? "").includes("@")) return bad(400, "URLs with userinfo (user@host) are refused");
    const a = parseAuthority(m[1] ?? "", 80);
    if (!a) return bad(400, "the URL's host does not parse");
    want = a;
    path = m[2] || "/";
  } else if (tls) {
    want = { host: conn.host ?? "", port: conn.port ?? 443 };
  } else {
    if (!hostHeader) return bad(400, "the Host header does not parse");
    want = { host: hostHeader.host, port: 80 };
  }
  if (!path.startsWith("/")) return bad(400, "the request target must be a path", want.host, want.port);
  if (!hostHeader || hostHeader.host !== want.host || hostHeader.port !== want.port) {
    return bad(421, `the Host header does not match the connection's target ${hostForUrl(want.host)}:${want.port}`, want.host, want.port, path);
  }
  return { ...want, path };
}


function refuse(deps: Deps, res: ServerResponse, d: RecordDraft, status: number, rule: string, reason: string): void {
  deps.record(finish(d, { status, decision: "denied", rule, reason }));
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `paddock gateway: ${reason}\n`;
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), connection: "close", "x-paddock-rule": rule });
  res.end(body);
}

/** Handle one request end to end. Never rejects: failures are answered and recorded. */
export async function handleRequest(deps: Deps, conn: Conn, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const session = conn.session;
  const t = target(conn, req);
  const method = req.method ?? "GET";
  const d = draft(session?.spec.id ?? "unknown", method, t.host, t.port, t.path);
  try {
    if (!session || !deps.sessions.isLive(session)) return refuse(deps, res, d, 403, "gateway.unknown-source", "this address is not a registered sandbox");
    const problem = framingProblem(req.rawHeaders);
    if (problem) return refuse(deps, res, d, problem.status, "gateway.framing", problem.reason);
    if ("status" in t) return refuse(deps, res, d, t.status, "gateway.target", t.reason);
    if (t.host === LOCAL_API_HOST) {
      // Plain HTTP only: the request never leaves the host (sandbox veth → gateway), and TLS would
      // need a certificate for a name that is not on the internet.
      if (conn.mode === "connect" || conn.mode === "https") return refuse(deps, res, d, 400, "paddock.internal", "use http://paddock.internal (plain HTTP; it never leaves this machine)");
      const status = await serveLocal(deps.localApi, session.spec.id, method, t.path, req, res);
      deps.record(finish(d, { status, decision: "allowed", rule: "paddock.internal" }));
      return;
    }
    const decision = decideHost(session.spec.policy, t.host, t.port);
    if (!decision.allowed) return refuse(deps, res, d, 403, decision.rule, decision.reason ?? "denied");
    const body = await readBody(req, MAX_BODY_BYTES);
    if (body === null) return refuse(deps, res, d, 413, "gateway.body-limit", `request bodies over ${MAX_BODY_BYTES} bytes are refused`);
    const branches = session.spec.protectedBranches ?? [];
    if (branches.length > 0 && isReceivePack(method, t.path)) {
      const encoding = headerValues(req.rawHeaders, "content-encoding").join(",");
      const why = pushProblem(body, encoding, branches);
      if (why) {
        const report = rejectionReport(body, encoding, why);
        if (!report) return refuse(deps, res, d, 403, "rbac: deploy", why);
        // Answered in git's own protocol, so the agent reads the reason where git prints rejections.
        deps.record(finish(d, { status: 403, decision: "denied", rule: "rbac: deploy", reason: why }));
        res.writeHead(200, { "content-type": "application/x-git-receive-pack-result", "content-length": report.length, "cache-control": "no-cache" });
        res.end(report);
        return;
      }
    }
    const material = await deps.sessions.material(session);
    const reps = responseReplacements(material);
    d.path = redactText(d.path, reps);
    const swapped = swapRequest({ headers: endToEndHeaders(req.rawHeaders), path: t.path, body }, t.host, material);
    const vetted = await vetAddress(session.spec.policy, t.host, t.port, deps.upstream.resolve, deps.upstream.trustedAddresses);
    if (!vetted.ok) return refuse(deps, res, d, 403, "gateway.address", vetted.reason);
    if (!deps.sessions.isLive(session)) return refuse(deps, res, d, 403, "gateway.unknown-source", "the session ended");
    const defaultPort = conn.mode === "connect" || conn.mode === "https" ? 443 : 80;
    const headers: [string, string][] = [["Host", `${hostForUrl(t.host)}${t.port === defaultPort ? "" : `:${t.port}`}`], ...swapped.headers];
    // A swapped secret must be findable in the answer: ask for an uncompressed one.
    if (swapped.swapped.length > 0) {
      for (let i = headers.length - 1; i >= 0; i--) if (headers[i]?.[0].toLowerCase() === "accept-encoding") headers.splice(i, 1);
      headers.push(["Accept-Encoding", "identity"]);
    }
    if (swapped.body.length > 0 || !["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"].includes(method)) headers.push(["Content-Length", String(swapped.body.length)]);
    for (const name of swapped.swapped) deps.sessions.touch(session, name);
    const rule = decision.rule;
    const up = dial({ agent: deps.agents.get(session.spec.id, defaultPort === 443), tls: defaultPort === 443, host: t.host, port: t.port, vetted, method, path: swapped.path, headers, options: deps.upstream });
    await new Promise<void>((resolve) => {
      let settled = false;
      const fail = (reason: string): void => {
        if (settled) return;
        settled = true;
        refuse(deps, res, d, 502, rule, reason);
        resolve();
      };
      up.on("timeout", () => up.destroy(new Error("upstream timed out")));
      up.on("error", (err: NodeJS.ErrnoException) => fail(`upstream failed (${err.code ?? "error"}); nothing was retried`));
      res.on("close", () => {
        if (!res.writableFinished) up.destroy();
      });
      up.on("response", (upRes) => {
        try {
          relayResponse(upRes, res, reps, method, (bytesIn, err) => {
            settled = true;
            const status = upRes.statusCode ?? 502;
            deps.record(finish(d, { status, decision: "allowed", rule, swapped: swapped.swapped, bytesIn, bytesOut: swapped.body.length, ...(err ? { reason: "the response stream broke; connection closed" } : {}) }));
            if (err) res.destroy();
            resolve();
          });
        } catch (err) {
          upRes.destroy();
          fail(err instanceof UnsupportedEncoding ? err.message : "the response could not be inspected");
        }
      });
      up.end(swapped.body);
    });
  } catch {
    // Fail closed: an exception in policy or swapping code never lets a request through.
    refuse(deps, res, d, 502, "gateway.internal-error", "the gateway could not complete this request safely");
  }
}

export { logLine };
