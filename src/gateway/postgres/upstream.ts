/**
 * The gateway's side towards the real database: parse the vault's connection URL, open TCP, do
 * the TLS the URL's sslmode asks for, start up as the real user and authenticate. Authentication
 * uses node-postgres' own SCRAM client (pg/lib/crypto/sasl.js) and pg-protocol's serializer and
 * parser, so nothing here re-implements the client protocol.
 *
 * Password methods: SCRAM-SHA-256 (and -PLUS over TLS) always; md5 and cleartext only over TLS
 * whose certificate was verified (verify-ca / verify-full), because otherwise anyone on the path
 * could read the password (cleartext) or take a hash to crack offline (md5). Errors never quote
 * the URL: they name the secret and the host only.
 */
import { createRequire } from "node:module";
import net from "node:net";
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { createHash } from "node:crypto";
import { serialize } from "pg-protocol";
import { Parser } from "pg-protocol/dist/parser.js";
import type { BackendMessage } from "pg-protocol/dist/messages.js";
import { FrameSplitter, readErrorFields, type Frame } from "./messages.ts";

interface SaslSession {
  mechanism: string;
  response: string;
}
interface PgSasl {
  startSession(mechanisms: string[], stream?: unknown): SaslSession;
  continueSession(session: SaslSession, password: string, serverData: string, stream?: unknown): Promise<void>;
  finalizeSession(session: SaslSession, serverData: string): void;
}
const sasl = createRequire(import.meta.url)("pg/lib/crypto/sasl.js") as PgSasl;

export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

export interface UpstreamTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  sslmode: SslMode;
  /** PEM from the URL's sslrootcert, if any. */
  rootCertPem?: string;
}

/** Parse a postgres:// URL; throws an Error whose message never contains the URL or password. */
export function parseUpstreamUrl(url: string, secretName: string): UpstreamTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`secret ${secretName} is not a valid postgres:// URL`);
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") throw new Error(`secret ${secretName} must be a postgres:// URL`);
  const sslmode = (u.searchParams.get("sslmode") ?? "prefer") as SslMode;
  if (!["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].includes(sslmode)) {
    throw new Error(`secret ${secretName}: sslmode must be one of disable, prefer, require, verify-ca, verify-full`);
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!host) throw new Error(`secret ${secretName} has no host`);
  const user = decodeURIComponent(u.username);
  if (!user) throw new Error(`secret ${secretName} has no user name`);
  const rootcert = u.searchParams.get("sslrootcert");
  let rootCertPem: string | undefined;
  if (rootcert && rootcert !== "system") {
    try {
      rootCertPem = readFileSync(rootcert, "utf8");
    } catch {
      throw new Error(`secret ${secretName}: its sslrootcert file cannot be read`);
    }
  }
  return {
    host,
    port: u.port ? Number(u.port) : 5432,
    user,
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.replace(/^\//, "")) || user,
    sslmode,
    ...(rootCertPem ? { rootCertPem } : {}),
  };
}

export interface UpstreamConnection {
  socket: net.Socket;
  /** Frames that arrived after authentication, up to and including ReadyForQuery (ParameterStatus, BackendKeyData, notices). */
  startupFrames: Frame[];
  /** The upstream's BackendKeyData, for cancels. */
  backendPid: number;
  backendKey: number;
  /** Frame splitter holding anything received past ReadyForQuery. */
  splitter: FrameSplitter;
}

/** An upstream refusal or failure: `sqlstate`/`fields` when the server sent an ErrorResponse. */
export class UpstreamError extends Error {
  constructor(message: string, readonly fields?: Map<string, string>) {
    super(message);
  }
}

const connectTcp = (host: string, port: number, timeoutMs: number): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new UpstreamError(`could not reach the database at ${host}:${port} in ${timeoutMs} ms`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(timer);
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new UpstreamError(`could not reach the database at ${host}:${port} (${err.code ?? err.message})`));
    });
  });

const readOneByte = (s: net.Socket): Promise<number> =>
  new Promise((resolve, reject) => {
    const onData = (d: Buffer): void => {
      cleanup();
      // A server must answer SSLRequest with exactly one byte; more is a man in the middle
      // trying to inject plaintext (CVE-2021-23222), so it is refused.
      if (d.length !== 1) return reject(new UpstreamError("the database sent unexpected bytes after SSLRequest"));
      resolve(d[0]!);
    };
    const onEnd = (): void => {
      cleanup();
      reject(new UpstreamError("the database closed the connection during SSL negotiation"));
    };
    const cleanup = (): void => {
      s.off("data", onData);
      s.off("error", onEnd);
      s.off("close", onEnd);
      s.pause();
    };
    s.on("data", onData);
    s.once("error", onEnd);
    s.once("close", onEnd);
  });

/**
 * Open a transport to the upstream per its sslmode: plain TCP or TLS after SSLRequest. Verified
 * TLS (`verified`) means the chain was checked against sslrootcert / `extraCaPem` / the OS bundle.
 */
export async function openTransport(t: UpstreamTarget, extraCaPem: string[], timeoutMs: number): Promise<{ socket: net.Socket; tls: boolean; verified: boolean }> {
  const raw = await connectTcp(t.host, t.port, timeoutMs);
  if (t.sslmode === "disable" || t.sslmode === "allow") return { socket: raw, tls: false, verified: false };
  try {
    raw.write(serialize.requestSsl());
    const answer = await readOneByte(raw);
    if (answer !== 0x53) {
      if (t.sslmode === "prefer") return { socket: raw, tls: false, verified: false };
      throw new UpstreamError(`the database at ${t.host}:${t.port} does not offer TLS, and the URL's sslmode=${t.sslmode} requires it`);
    }
    const verify = t.sslmode === "verify-ca" || t.sslmode === "verify-full" || (t.sslmode === "require" && !!t.rootCertPem);
    const ca = t.rootCertPem ? [t.rootCertPem, ...extraCaPem] : extraCaPem.length ? [...tls.rootCertificates, ...extraCaPem] : undefined;
    const secure = tls.connect({
      socket: raw,
      ...(net.isIP(t.host) ? {} : { servername: t.host }),
      rejectUnauthorized: verify,
      ...(ca ? { ca } : {}),
      // verify-ca checks the chain only; verify-full also checks the name (node's default check).
      ...(t.sslmode === "verify-full" ? {} : { checkServerIdentity: () => undefined }),
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new UpstreamError(`TLS handshake with the database at ${t.host}:${t.port} timed out`)), timeoutMs);
      secure.once("secureConnect", () => {
        clearTimeout(timer);
        resolve();
      });
      secure.once("error", (err: Error) => {
        clearTimeout(timer);
        reject(new UpstreamError(`TLS with the database at ${t.host}:${t.port} failed: ${err.message}`));
      });
    });
    secure.removeAllListeners("error");
    return { socket: secure, tls: true, verified: verify };
  } catch (err) {
    raw.destroy();
    throw err;
  }
}

/** Decode one whole backend frame with pg-protocol's parser. */
function decode(frame: Frame): BackendMessage {
  let out: BackendMessage | undefined;
  new Parser().parse(frame.raw, (m) => (out = m));
  if (!out) throw new UpstreamError("the database sent a malformed message");
  return out;
}

/**
 * Connect and authenticate as the real user. Resolves once the upstream's ReadyForQuery has
 * arrived; the socket is then paused with its listeners removed, ready to be relayed.
 */
export async function connectUpstream(opts: {
  target: UpstreamTarget;
  params: Record<string, string>;
  extraCaPem: string[];
  timeoutMs: number;
  maxMessageBytes: number;
}): Promise<UpstreamConnection> {
  const { target: t } = opts;
  const transport = await openTransport(t, opts.extraCaPem, opts.timeoutMs);
  const socket = transport.socket;
  const splitter = new FrameSplitter(true, opts.maxMessageBytes);
  const startupFrames: Frame[] = [];
  let backendPid = 0;
  let backendKey = 0;
  let session: SaslSession | null = null;
  let authenticated = false;

  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new UpstreamError(`the database at ${t.host}:${t.port} did not finish startup in ${opts.timeoutMs} ms`)), opts.timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.removeAllListeners("data");
      socket.destroy();
      reject(err);
    };
    const handle = async (frame: Frame): Promise<boolean> => {
      if (authenticated) {
        if (frame.type === 0x45) throw new UpstreamError("the database refused the session", readErrorFields(frame.body));
        if (frame.type === 0x4b) {
          backendPid = frame.body.readInt32BE(0);
          backendKey = frame.body.readInt32BE(4);
          return false;
        }
        startupFrames.push(frame);
        return frame.type === 0x5a;
      }
      const msg = decode(frame);
      const name: string = msg.name;
      switch (name) {
        case "authenticationOk":
          authenticated = true;
          return false;
        case "authenticationSASL": {
          const mechanisms = (msg as unknown as { mechanisms: string[] }).mechanisms;
          session = sasl.startSession(mechanisms, transport.tls ? socket : undefined);
          socket.write(serialize.sendSASLInitialResponseMessage(session.mechanism, session.response));
          return false;
        }
        case "authenticationSASLContinue":
          if (!session) throw new UpstreamError("the database sent SASLContinue out of order");
          await sasl.continueSession(session, t.password, (msg as unknown as { data: string }).data, transport.tls ? socket : undefined);
          socket.write(serialize.sendSCRAMClientFinalMessage(session.response));
          return false;
        case "authenticationSASLFinal":
          if (!session) throw new UpstreamError("the database sent SASLFinal out of order");
          sasl.finalizeSession(session, (msg as unknown as { data: string }).data);
          return false;
        case "authenticationCleartextPassword":
          if (!transport.verified) throw new UpstreamError(`the database at ${t.host}:${t.port} asked for a cleartext password without verified TLS; use SCRAM-SHA-256 or sslmode=verify-full`);
          socket.write(serialize.password(t.password));
          return false;
        case "authenticationMD5Password": {
          if (!transport.verified) throw new UpstreamError(`the database at ${t.host}:${t.port} asked for an md5 password without verified TLS; use SCRAM-SHA-256 or sslmode=verify-full`);
          const salt = (msg as unknown as { salt: Buffer }).salt;
          const inner = createHash("md5").update(t.password + t.user).digest("hex");
          socket.write(serialize.password(`md5${createHash("md5").update(Buffer.concat([Buffer.from(inner), salt])).digest("hex")}`));
          return false;
        }
        case "error":
          throw new UpstreamError("the database refused the connection", readErrorFields(frame.body));
        default:
          if (frame.type === 0x4e || frame.type === 0x76) return false; // notice, NegotiateProtocolVersion
          throw new UpstreamError(`the database sent an unexpected ${msg.name} during authentication`);
      }
    };
    let chain = Promise.resolve(false);
    socket.on("data", (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = splitter.push(chunk);
      } catch (err) {
        return fail(new UpstreamError(`the database sent a malformed message (${(err as Error).message})`));
      }
      for (const frame of frames) {
        chain = chain.then(async (finished) => {
          if (finished) {
            startupFrames.push(frame); // cannot happen before we write: kept for completeness
            return true;
          }
          const ready = await handle(frame);
          if (ready) {
            clearTimeout(timer);
            socket.pause();
            socket.removeAllListeners("data");
            socket.removeAllListeners("error");
            socket.removeAllListeners("close");
            resolve();
          }
          return ready;
        });
        chain.catch((err: unknown) => fail(err instanceof Error ? err : new Error(String(err))));
      }
    });
    socket.once("error", (err: Error) => fail(new UpstreamError(`connection to the database at ${t.host}:${t.port} failed: ${err.message}`)));
    socket.once("close", () => fail(new UpstreamError(`the database at ${t.host}:${t.port} closed the connection during startup`)));
  });
  socket.write(serialize.startup({ ...opts.params, user: t.user, database: t.database }));
  await done;
  return { socket, startupFrames, backendPid, backendKey, splitter };
}

/** Send a CancelRequest for (pid, key) to the upstream over a fresh connection (TLS when the URL asks). */
export async function sendUpstreamCancel(t: UpstreamTarget, extraCaPem: string[], packet: Buffer, timeoutMs: number): Promise<void> {
  const { socket } = await openTransport(t, extraCaPem, timeoutMs);
  await new Promise<void>((resolve) => {
    socket.on("error", () => resolve());
    socket.write(packet, () => socket.end(resolve));
  });
  socket.destroy();
}
