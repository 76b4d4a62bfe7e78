/**
 * One HTTP request from a sandbox, judged and forwarded. The order is the point: parse and check
 * framing, establish the target, decide policy, read the secrets, read the body if it must be
 * inspected, swap, vet the address, dial. Every step that fails answers the client itself and
 * dials nothing; any exception fails closed (502, connection closed). Requests are re-framed by
 * Node's client (never relayed raw); bodies are streamed unless they must be read (body.ts).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { hostForUrl } from "./addresses.ts";
import { bodyFraming, bufferBody, streamBody, streamFraming, type Buffered, type Refusal } from "./body.ts";
import { endToEndHeaders, framingProblem, headerValues, parseAuthority } from "./framing.ts";
import { decideHost } from "./policy.ts";
import { draft, finish, logLine, type RecordDraft } from "./records.ts";
import type { Redactor } from "./redact.ts";
import { isReceivePack, pushProblem, rejectionReport } from "./push.ts";
import { LOCAL_API_HOST, MAX_LOCAL_BODY_BYTES, serveLocal, type LocalApi } from "./local.ts";
import { relayResponse, UnsupportedEncoding } from "./response.ts";
import { redactorFor, type Session, type SessionTable } from "./sessions.ts";
import { bodySwappable, responseReplacements, swapRequest, type SwapResult } from "./swap.ts";
import { dial, vetAddress, type UpstreamAgents, type UpstreamOptions, type Vetted } from "./upstream.ts";
import type { EgressRecord, GatewayLimits } from "./types.ts";

export interface Deps {
  sessions: SessionTable;
  limits: GatewayLimits;
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


/** A failed exchange still says what left: the secrets swapped into a request that reached the upstream. */
type RecordExtra = { swapped?: string[]; bytesOut?: number };

function refuse(deps: Deps, res: ServerResponse, d: RecordDraft, status: number, rule: string, reason: string, extra: RecordExtra = {}): void {
  deps.record(finish(d, { status, decision: "denied", rule, reason, ...extra }));
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `paddock gateway: ${reason}\n`;
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), connection: "close", "x-paddock-rule": rule });
  res.end(body);
}

/** The request's deadline for its complete body (GatewayLimits.requestTimeoutMs); a timer cleared with the request. */
function requestDeadline(req: IncomingMessage, ms: number): { signal: AbortSignal; clear(): void } {
  const ac = new AbortController();
  if (req.complete) return { signal: ac.signal, clear: () => undefined };
  const timer = setTimeout(() => {
    if (!req.complete) ac.abort();
  }, ms);
  timer.unref();
  const clear = (): void => clearTimeout(timer);
  req.once("end", clear);
  req.once("close", clear);
  return { signal: ac.signal, clear };
}

/** Handle one request end to end. Never rejects: failures are answered and recorded. */
export async function handleRequest(deps: Deps, conn: Conn, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const session = conn.session;
  const t = target(conn, req);
  const method = req.method ?? "GET";
  const d = draft(session?.spec.id ?? "unknown", method, t.host, t.port, t.path);
  const deadline = requestDeadline(req, deps.limits.requestTimeoutMs);
  let held: Buffered | null = null;
  const read = async (max: number, why: string): Promise<Buffered | Refusal> => {
    const got = await bufferBody(req, { max, why, usage: (session as Session).usage, budget: deps.limits.maxBufferedBodyBytesPerSession, signal: deadline.signal, timeoutMs: deps.limits.requestTimeoutMs });
    if (!("status" in got)) held = got;
    return got;
  };
  try {
    if (!session || !deps.sessions.isLive(session)) return refuse(deps, res, d, 403, "gateway.unknown-source", "this address is not a registered sandbox");
    const problem = framingProblem(req.rawHeaders);
    if (problem) return refuse(deps, res, d, problem.status, "gateway.framing", problem.reason);
    if ("status" in t) return refuse(deps, res, d, t.status, "gateway.target", t.reason);
    const tls = conn.mode === "connect" || conn.mode === "https";
    if (t.host === LOCAL_API_HOST) {
      // Plain HTTP only: the request never leaves the host (sandbox veth → gateway), and TLS would
      // need a certificate for a name that is not on the internet.
      if (tls) return refuse(deps, res, d, 400, "paddock.internal", "use http://paddock.internal (plain HTTP; it never leaves this machine)");
      const status = await serveLocal(deps.localApi, session.spec.id, method, t.path, () => read(MAX_LOCAL_BODY_BYTES, "a paddock.internal call"), res);
      deps.record(finish(d, { status, decision: "allowed", rule: "paddock.internal" }));
      return;
    }
    const decision = decideHost(session.spec.policy, t.host, t.port);
    if (!decision.allowed) return refuse(deps, res, d, 403, decision.rule, decision.reason ?? "denied");
    const material = await deps.sessions.material(session);
    const reps = redactorFor(session, responseReplacements(material));
    d.path = reps.text(d.path);
    const branches = session.spec.protectedBranches ?? [];
    const pushCheck = branches.length > 0 && isReceivePack(method, t.path);
    let body: Buffer | null = null;
    if (pushCheck || bodySwappable(material, t.host)) {
      const got = await read(deps.limits.maxBufferedBodyBytes, pushCheck ? "a git push to check" : "a secret may be swapped into it");
      if ("status" in got) return refuse(deps, res, d, got.status, got.rule, got.reason);
      body = got.body;
    }
    if (pushCheck && body && pushRefused(deps, res, d, req, body, branches)) return;
    const swapped = swapRequest({ headers: endToEndHeaders(req.rawHeaders), path: t.path, body }, t.host, material, { tls });
    if (swapped.withheld.length > 0) return refuse(deps, res, d, 403, "gateway.cleartext-secret", cleartextReason(swapped.withheld, t.host));
    const vetted = await vetAddress(session.spec.policy, t.host, t.port, deps.upstream.resolve, deps.upstream.trustedAddresses);
    if (!vetted.ok) return refuse(deps, res, d, 403, "gateway.address", vetted.reason);
    if (!deps.sessions.isLive(session)) return refuse(deps, res, d, 403, "gateway.unknown-source", "the session ended");
    await exchange(deps, { req, res, d, session, tls, host: t.host, port: t.port, method, swapped, vetted, rule: decision.rule, reps, deadline: deadline.signal });
  } catch {
    // Fail closed: an exception in policy or swapping code never lets a request through.
    refuse(deps, res, d, 502, "gateway.internal-error", "the gateway could not complete this request safely");
  } finally {
    deadline.clear();
    (held as Buffered | null)?.release();
  }
}

function cleartextReason(names: string[], host: string): string {
  const which = names.length === 1 ? `the secret ${names[0]} is` : `the secrets ${names.join(", ")} are`;
  return `${which} sent only over TLS: use https://${hostForUrl(host)}/ instead of http://, or set "cleartext: true" on the secret in the environment file to send it unencrypted`;
}

/** A git push that updates a protected branch: answered in git's own protocol (or 403). True when refused. */
function pushRefused(deps: Deps, res: ServerResponse, d: RecordDraft, req: IncomingMessage, body: Buffer, branches: string[]): boolean {
  const encoding = headerValues(req.rawHeaders, "content-encoding").join(",");
  const why = pushProblem(body, encoding, branches);
  if (!why) return false;
  const report = rejectionReport(body, encoding, why);
  if (!report) {
    refuse(deps, res, d, 403, "rbac: deploy", why);
    return true;
  }
  // Answered in git's own protocol, so the agent reads the reason where git prints rejections.
  deps.record(finish(d, { status: 403, decision: "denied", rule: "rbac: deploy", reason: why }));
  res.writeHead(200, { "content-type": "application/x-git-receive-pack-result", "content-length": report.length, "cache-control": "no-cache" });
  res.end(report);
  return true;
}

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  d: RecordDraft;
  session: Session;
  tls: boolean;
  host: string;
  port: number;
  method: string;
  swapped: SwapResult;
  vetted: Extract<Vetted, { ok: true }>;
  rule: string;
  reps: Redactor;
  deadline: AbortSignal;
}

/** Dial, send the request (buffered body, or streamed), relay the answer. Resolves when done. */
function exchange(deps: Deps, x: Exchange): Promise<void> {
  const { req, res, d, swapped } = x;
  const defaultPort = x.tls ? 443 : 80;
  const headers: [string, string][] = [["Host", `${hostForUrl(x.host)}${x.port === defaultPort ? "" : `:${x.port}`}`], ...swapped.headers];
  // A swapped secret must be findable in the answer: ask for an uncompressed one.
  if (swapped.swapped.length > 0) {
    for (let i = headers.length - 1; i >= 0; i--) if (headers[i]?.[0].toLowerCase() === "accept-encoding") headers.splice(i, 1);
    headers.push(["Accept-Encoding", "identity"]);
  }
  const framing = bodyFraming(req.rawHeaders);
  if (swapped.body !== null) {
    if (swapped.body.length > 0 || !["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"].includes(x.method)) headers.push(["Content-Length", String(swapped.body.length)]);
  } else headers.push(...streamFraming(framing, x.method));
  for (const name of swapped.swapped) deps.sessions.touch(x.session, name);
  const up = dial({ agent: deps.agents.get(x.session.spec.id, x.tls), tls: x.tls, host: x.host, port: x.port, vetted: x.vetted, method: x.method, path: swapped.path, headers, options: deps.upstream });
  // Whether the request reached an upstream connection (TCP up, TLS verified): only then did the
  // swapped secrets leave, and only then does the record name them.
  let sent = false;
  up.once("socket", (s) => {
    if (up.reusedSocket) sent = true;
    else s.once(x.tls ? "secureConnect" : "connect", () => void (sent = true));
  });
  let bytesOut = (): number => swapped.body?.length ?? 0;
  const whatWasSent = (): RecordExtra => ({ swapped: sent ? swapped.swapped : [], bytesOut: bytesOut() });
  return new Promise<void>((resolve) => {
    let settled = false;
    let stopStream = (): void => undefined;
    const fail = (status: number, rule: string, reason: string): void => {
      if (settled) return;
      settled = true;
      stopStream();
      up.destroy();
      refuse(deps, res, d, status, rule, sent ? `${reason}; the request had reached the upstream` : reason, whatWasSent());
      resolve();
    };
    up.on("timeout", () => up.destroy(new Error("upstream timed out")));
    up.on("error", (err: NodeJS.ErrnoException) => fail(502, x.rule, `upstream failed (${err.code ?? "error"}); nothing was retried`));
    res.on("close", () => {
      if (!res.writableFinished) up.destroy();
    });
    const onTimeout = (): void => fail(408, "gateway.limits.request-timeout", `the request body did not arrive within ${deps.limits.requestTimeoutMs} ms`);
    if (x.deadline.aborted) return onTimeout();
    x.deadline.addEventListener("abort", onTimeout, { once: true });
    up.on("response", (upRes) => {
      try {
        relayResponse(upRes, res, x.reps, x.method, (bytesIn, err) => {
          x.deadline.removeEventListener("abort", onTimeout);
          if (settled) return resolve(); // already failed and recorded (timeout, upstream error)
          settled = true;
          const status = upRes.statusCode ?? 502;
          deps.record(finish(d, { status, rule: x.rule, decision: "allowed", ...whatWasSent(), bytesIn, ...(err ? { reason: "the response stream broke; connection closed" } : {}) }));
          if (err) res.destroy();
          resolve();
        });
      } catch (err) {
        upRes.destroy();
        fail(502, x.rule, err instanceof UnsupportedEncoding ? err.message : "the response could not be inspected");
      }
    });
    if (swapped.body !== null) up.end(swapped.body);
    else {
      const stream = streamBody(req, up, framing, () => up.destroy(new Error("the client's request body broke off")));
      stopStream = stream.stop;
      bytesOut = stream.bytes;
    }
  });
}

export { logLine };
