/**
 * One client connection through the Postgres gateway, from the first byte to close:
 *   startup  untyped packets: SSLRequest ('S' + TLS when the session has a certificate, else 'N'),
 *            GSSENCRequest ('N'), CancelRequest, StartupMessage 3.0
 *   auth     SCRAM-SHA-256 against the session's placeholder (scram.ts)
 *   connect  the real URL from the vault, TLS per its sslmode, login as the real user (upstream.ts)
 *   relay    frames both ways with backpressure; statements judged and recorded (relay.ts)
 * Everything the client sends before login is bounded (packet sizes, a startup deadline), and any
 * error ends this connection only: nothing thrown here leaves `serve`.
 */
import type net from "node:net";
import tls from "node:tls";
import { randomBytes, randomInt } from "node:crypto";
import type { EgressRecord } from "../types.ts";
import {
  CANCEL_REQUEST_CODE, FrameSplitter, FrameTooLarge, GSSENC_REQUEST_CODE, Outbox, SSL_REQUEST_CODE, authOk, authSasl, authSaslContinue,
  authSaslFinal, backendKeyData, cancelRequest, errorResponse, negotiateProtocolVersion, readCString,
  type ErrorFields, type Frame,
} from "./messages.ts";
import { FrontendRelay } from "./frontend.ts";
import { statusOf, type RecordSink } from "./relay.ts";
import type { ScramExchange, ScramServer } from "./scram.ts";
import type { PostgresGatewayOptions, PostgresLimits, PostgresTarget } from "./types.ts";
import { UpstreamError, connectUpstream, parseUpstreamUrl, sendUpstreamCancel, type UpstreamTarget } from "./upstream.ts";
import { loadParser, type Verdict } from "./readonly.ts";

/** Postgres' own bound on a startup packet (MAX_STARTUP_PACKET_LENGTH). */
const MAX_STARTUP_BYTES = 10_000;
/** SASL messages are a few hundred bytes. */
const MAX_AUTH_MESSAGE_BYTES = 16_384;
/** Startup parameters a client may pass on: none of them changes who the session is or whether it writes. */
const FORWARDED_PARAMETERS = ["application_name", "fallback_application_name", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone", "extra_float_digits"];
const EMPTY = Buffer.alloc(0);

export interface CancelEntry {
  sessionId: string;
  key: number;
  upstream: UpstreamTarget;
  realPid: number;
  realKey: number;
}

/** What all connections of one gateway share. */
export interface GatewayShared {
  opts: PostgresGatewayOptions;
  limits: PostgresLimits;
  scram: ScramServer;
  cancels: Map<number, CancelEntry>;
  bySession: Map<string, Set<ClientConnection>>;
  log(line: string): void;
  analyse(text: string, readOnly: boolean): Verdict;
}

type Phase = "startup" | "auth-first" | "auth-final" | "connecting" | "relay" | "closed";

export class ClientConnection {
  private phase: Phase = "startup";
  private client: net.Socket;
  private upstream: net.Socket | null = null;
  private readonly splitter = new FrameSplitter(false, MAX_STARTUP_BYTES);
  private inbox: Frame[] = [];
  private busy = false;
  private timer: NodeJS.Timeout;
  private tlsDone = false;
  private gssDone = false;
  private user = "";
  private database = "";
  private params: Record<string, string> = {};
  private target: PostgresTarget | null = null;
  private exchange: ScramExchange | null = null;
  private cancelPid = 0;
  private frontend: FrontendRelay | null = null;
  private readonly toClient = new Outbox();
  private readonly toUpstream = new Outbox();

  constructor(private shared: GatewayShared, socket: net.Socket, private remote: string, readonly sessionId: string) {
    this.client = socket;
    this.timer = setTimeout(() => this.fatal({ severity: "FATAL", code: "08P01", message: `paddock: startup did not finish within ${shared.limits.startupTimeoutMs} ms` }), shared.limits.startupTimeoutMs);
    this.watch(socket);
  }

  /** Close both sides now (session unregistered, gateway closing, or an error). */
  close(): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    clearTimeout(this.timer);
    this.client.destroy();
    this.upstream?.destroy();
    if (this.cancelPid) this.shared.cancels.delete(this.cancelPid);
    const set = this.shared.bySession.get(this.sessionId);
    set?.delete(this);
    if (set?.size === 0) this.shared.bySession.delete(this.sessionId);
  }

  private watch(s: net.Socket): void {
    s.on("data", (chunk: Buffer) => this.onClientData(chunk));
    s.on("error", (err: Error) => {
      this.shared.log(`postgres: ${this.remote}: client connection error in ${this.phase}: ${err.message}`);
      this.close();
    });
    s.on("close", () => this.close());
  }

  private onClientData(chunk: Buffer): void {
    try {
      const frames = this.splitter.push(chunk);
      if (this.phase === "relay") return this.relayClientFrames(frames);
      this.inbox.push(...frames);
      void this.pump();
    } catch (err) {
      this.violation(err);
    }
  }

  /** Startup and auth frames, one at a time (each may wait on TLS, lookups or the upstream). */
  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.phase !== "closed") {
        if (this.inbox.length === 0) this.inbox.push(...this.splitter.push(EMPTY));
        const frame = this.inbox.shift();
        if (!frame) break;
        await this.onStartupFrame(frame);
        if (this.phase === "relay") {
          const rest = [...this.inbox, ...this.splitter.push(EMPTY)];
          this.inbox = [];
          this.relayClientFrames(rest);
          break;
        }
      }
    } catch (err) {
      this.violation(err);
    } finally {
      this.busy = false;
    }
  }

  private violation(err: unknown): void {
    const message = err instanceof FrameTooLarge ? `paddock: ${err.message}` : `paddock: invalid message (${err instanceof Error ? err.message : String(err)})`;
    this.fatal({ severity: "FATAL", code: err instanceof FrameTooLarge ? "54000" : "08P01", message });
  }

  /** Send an error (when the protocol state allows one) and close. */
  private fatal(e: ErrorFields): void {
    if (this.phase === "closed") return;
    this.shared.log(`postgres: ${this.remote} session ${this.sessionId}: ${e.code} ${e.message}`);
    const s = this.client;
    if (s.writable) s.end(errorResponse(e));
    this.phase = "closed";
    clearTimeout(this.timer);
    this.upstream?.destroy();
    if (this.cancelPid) this.shared.cancels.delete(this.cancelPid);
    // A little grace for the error to be written, then force (a client that never reads).
    setTimeout(() => s.destroy(), 1000).unref();
    const set = this.shared.bySession.get(this.sessionId);
    set?.delete(this);
    if (set?.size === 0) this.shared.bySession.delete(this.sessionId);
  }

  private record(r: Omit<EgressRecord, "sessionId" | "time" | "host" | "port" | "swapped" | "bytesOut" | "bytesIn" | "durationMs">, upstream?: UpstreamTarget): void {
    this.shared.opts.onRecord({
      sessionId: this.sessionId,
      time: new Date().toISOString(),
      host: upstream?.host ?? "",
      port: upstream?.port ?? 0,
      swapped: this.target ? [this.target.secretName] : [],
      bytesOut: 0,
      bytesIn: 0,
      durationMs: 0,
      ...r,
    });
  }

  private async onStartupFrame(f: Frame): Promise<void> {
    switch (this.phase) {
      case "startup":
        return this.onUntyped(f);
      case "auth-first":
        return this.onSaslInitial(f);
      case "auth-final":
        return this.onSaslFinal(f);
      case "connecting":
      case "relay":
      case "closed":
        throw new Error(`unexpected message in phase ${this.phase}`);
    }
  }

  private async onUntyped(f: Frame): Promise<void> {
    const code = f.body.readUInt32BE(0);
    if (code === SSL_REQUEST_CODE && f.raw.length === 8) return this.onSslRequest();
    if (code === GSSENC_REQUEST_CODE && f.raw.length === 8) {
      if (this.gssDone || this.tlsDone) throw new Error("GSSENCRequest repeated or after TLS");
      this.gssDone = true;
      this.client.write("N");
      return;
    }
    if (code === CANCEL_REQUEST_CODE && f.raw.length === 16) return this.onCancel(f.body.readInt32BE(4), f.body.readInt32BE(8));
    if (code >> 16 !== 3) {
      return this.fatal({ severity: "FATAL", code: "0A000", message: `unsupported frontend protocol ${code >> 16}.${code & 0xffff}: the gateway supports 3.0` });
    }
    return this.onStartupMessage(f.body, code & 0xffff);
  }

  private async onSslRequest(): Promise<void> {
    if (this.tlsDone || this.gssDone) throw new Error("SSLRequest repeated or after GSSENCRequest");
    // Bytes already sent behind the SSLRequest would be plaintext the client meant to protect
    // (CVE-2021-23214): refuse rather than read them as if they came over TLS.
    if (this.splitter.buffered > 0) throw new Error("data sent after SSLRequest before the TLS handshake");
    this.tlsDone = true;
    const tlsFor = this.shared.opts.tlsFor;
    const material = tlsFor ? await tlsFor(this.remote, null) : null;
    if (!material || this.phase === "closed") {
      this.client.write("N");
      return;
    }
    const raw = this.client;
    raw.removeAllListeners("data");
    raw.removeAllListeners("error");
    raw.removeAllListeners("close");
    raw.write("S");
    const secure = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: tls.createSecureContext({ cert: material.certPem, key: material.keyPem, minVersion: "TLSv1.2" }),
      SNICallback: (name, cb) => {
        tlsFor!(this.remote, name).then(
          (m) => cb(null, m ? tls.createSecureContext({ cert: m.certPem, key: m.keyPem, minVersion: "TLSv1.2" }) : undefined),
          (err: Error) => cb(err),
        );
      },
    });
    this.client = secure;
    raw.on("error", () => this.close());
    this.watch(secure);
  }

  private async onCancel(pid: number, key: number): Promise<void> {
    const entry = this.shared.cancels.get(pid);
    this.close();
    // Another session's keys, or keys nobody issued: nothing happens (and nothing says why).
    if (!entry || entry.key !== key || entry.sessionId !== this.sessionId) {
      this.shared.log(`postgres: ${this.remote} session ${this.sessionId}: cancel request with unknown keys ignored`);
      return;
    }
    await sendUpstreamCancel(entry.upstream, this.shared.opts.upstreamCaPem ?? [], cancelRequest(entry.realPid, entry.realKey), this.shared.limits.upstreamTimeoutMs).catch((err: Error) =>
      this.shared.log(`postgres: session ${this.sessionId}: cancel could not reach the database: ${err.message}`),
    );
  }

  private onStartupMessage(body: Buffer, minor: number): void {
    const unrecognised: string[] = [];
    let at = 4;
    while (at < body.length && body[at] !== 0) {
      const name = readCString(body, at);
      const value = readCString(body, name.next);
      at = value.next;
      if (name.value.startsWith("_pq_.")) unrecognised.push(name.value);
      else this.params[name.value] = value.value;
    }
    this.user = this.params["user"] ?? "";
    if (!this.user) return this.fatal({ severity: "FATAL", code: "28000", message: "no PostgreSQL user name specified in startup packet" });
    this.database = this.params["database"] || this.user;
    if (this.params["replication"] && this.params["replication"] !== "false") {
      return this.fatal({ severity: "FATAL", code: "28000", message: "paddock: replication connections are not served by the gateway" });
    }
    this.target = this.shared.opts.lookup(this.remote, this.user);
    if (this.target && this.target.sessionId !== this.sessionId) this.target = null;
    this.splitter.typed = true;
    this.splitter.maxBytes = MAX_AUTH_MESSAGE_BYTES;
    this.phase = "auth-first";
    if (minor > 0 || unrecognised.length > 0) this.client.write(negotiateProtocolVersion(unrecognised));
    this.client.write(authSasl());
  }

  private async onSaslInitial(f: Frame): Promise<void> {
    if (f.type !== 0x70) throw new Error("expected a SASLInitialResponse");
    const mechanism = readCString(f.body, 0);
    if (mechanism.value !== "SCRAM-SHA-256") return this.authFailed("client chose a mechanism that was not offered");
    const length = f.body.readInt32BE(mechanism.next);
    const data = length < 0 ? "" : f.body.toString("utf8", mechanism.next + 4, mechanism.next + 4 + length);
    this.exchange = await this.shared.scram.begin(data, this.target?.password ?? null, this.user);
    if (this.phase === "closed") return;
    this.phase = "auth-final";
    this.client.write(authSaslContinue(this.exchange.serverFirst));
  }

  private authFailed(why: string): void {
    this.record({ method: "CONNECT", path: this.database, status: 28000, decision: "denied", rule: "database.auth", reason: why });
    this.fatal({ severity: "FATAL", code: "28P01", message: `password authentication failed for user "${this.user}"` });
  }

  private async onSaslFinal(f: Frame): Promise<void> {
    if (f.type !== 0x70) throw new Error("expected a SASLResponse");
    const serverFinal = this.exchange!.finish(f.body.toString("utf8"));
    if (!serverFinal || !this.target) return this.authFailed("wrong password or unknown user");
    this.phase = "connecting";
    await this.connect(this.target, serverFinal);
  }

  private async connect(target: PostgresTarget, serverFinal: string): Promise<void> {
    const refuse = (code: string, message: string, upstream?: UpstreamTarget): void => {
      this.record({ method: "CONNECT", path: this.database, status: statusOf(code), decision: "denied", rule: "database.upstream", reason: message }, upstream);
      this.fatal({ severity: "FATAL", code, message: `paddock: ${message}` });
    };
    let url: string | null;
    try {
      url = await target.upstreamUrl();
    } catch {
      // The vault's own error is not passed on: it is not the client's business, and stays in the control plane.
      return refuse("08004", `the value of secret ${target.secretName} could not be read`);
    }
    if (!url) return refuse("08004", `secret ${target.secretName} has no value: set it with \`paddock secret set ${target.secretName}\``);
    let upstream: UpstreamTarget;
    try {
      upstream = parseUpstreamUrl(url, target.secretName);
    } catch (err) {
      return refuse("08004", (err as Error).message);
    }
    if (this.database !== upstream.database) {
      return refuse("3D000", `database "${this.database}" is not served here: ${target.secretName} is for database "${upstream.database}"`, upstream);
    }
    const params: Record<string, string> = {};
    for (const name of FORWARDED_PARAMETERS) if (this.params[name] !== undefined) params[name] = this.params[name]!;
    // The session default, so RESET and DISCARD return to it; the parser layer stops SET.
    if (!target.write) params["options"] = "-c default_transaction_read_only=on";
    let conn;
    try {
      conn = await connectUpstream({ target: upstream, params, extraCaPem: this.shared.opts.upstreamCaPem ?? [], timeoutMs: this.shared.limits.upstreamTimeoutMs, maxMessageBytes: 1 << 30 });
    } catch (err) {
      const fields = err instanceof UpstreamError ? err.fields : undefined;
      const detail = fields ? ` (SQLSTATE ${fields.get("C") ?? "?"}: ${fields.get("M") ?? ""})` : "";
      return refuse("08006", `could not log in to the database for ${target.secretName}: ${(err as Error).message}${detail}`, upstream);
    }
    await loadParser();
    if (this.phase === "closed") {
      conn.socket.destroy();
      return;
    }
    this.upstream = conn.socket;
    const readOnlyShown = conn.startupFrames.some((f) => f.type === 0x53 && f.body.toString("latin1") === "default_transaction_read_only\0on\0");
    if (!target.write && !readOnlyShown) return refuse("25006", "the database did not confirm default_transaction_read_only=on for this read-only connection", upstream);

    do this.cancelPid = randomInt(1, 2 ** 31 - 1);
    while (this.shared.cancels.has(this.cancelPid));
    const fakeKey = randomBytes(4).readInt32BE(0);
    this.shared.cancels.set(this.cancelPid, { sessionId: this.sessionId, key: fakeKey, upstream, realPid: conn.backendPid, realKey: conn.backendKey });

    const ready = conn.startupFrames.pop()!;
    this.client.cork();
    this.client.write(authSaslFinal(serverFinal));
    this.client.write(authOk());
    for (const f of conn.startupFrames) this.client.write(f.raw);
    this.client.write(backendKeyData(this.cancelPid, fakeKey));
    this.client.write(ready.raw);
    this.client.uncork();

    this.record({ method: "CONNECT", path: this.database, status: 0, decision: "allowed", rule: "database.allowed", reason: target.write ? "read-write" : "read-only" }, upstream);
    const sink: RecordSink = { base: { sessionId: this.sessionId, host: upstream.host, port: upstream.port, swapped: [target.secretName] }, onRecord: this.shared.opts.onRecord };
    this.frontend = new FrontendRelay(sink, !target.write, target.secretName, this.shared.analyse);
    this.startRelay(conn.socket, conn.splitter);
  }

  private startRelay(up: net.Socket, upSplitter: FrameSplitter): void {
    clearTimeout(this.timer);
    this.phase = "relay";
    this.splitter.maxBytes = this.shared.limits.maxMessageBytes;
    if (this.shared.limits.idleTimeoutMs > 0) {
      this.client.setTimeout(this.shared.limits.idleTimeoutMs, () => this.fatal({ severity: "FATAL", code: "57P05", message: "paddock: connection idle for too long" }));
    }
    const onUpstream = (chunk: Buffer): void => {
      try {
        const frames = upSplitter.push(chunk);
        for (const f of frames) {
          if (f.type === 0x53 && !this.target!.write && this.readOnlyTurnedOff(f.body)) return;
          this.toClient.add(this.frontend!.tracker.onUpstreamFrame(f.type, f.body, f.raw));
        }
        if (!this.toClient.flush(this.client)) {
          up.pause();
          this.client.once("drain", () => up.resume());
        }
      } catch (err) {
        this.shared.log(`postgres: session ${this.sessionId}: upstream stream error: ${(err as Error).message}`);
        this.close();
      }
    };
    up.on("data", onUpstream);
    up.on("error", (err: Error) => {
      this.shared.log(`postgres: session ${this.sessionId}: upstream connection error: ${err.message}`);
      this.close();
    });
    up.on("close", () => {
      if (this.client.writable) this.client.end();
      this.close();
    });
    onUpstream(EMPTY);
    up.resume();
  }

  /** Third read-only layer: the server reports default_transaction_read_only when it changes. */
  private readOnlyTurnedOff(body: Buffer): boolean {
    const name = readCString(body, 0);
    if (name.value !== "default_transaction_read_only" || readCString(body, name.next).value === "on") return false;
    this.record({ method: "QUERY", path: "", status: 25006, decision: "denied", rule: "database.read-only", reason: "default_transaction_read_only was turned off: connection closed" });
    this.fatal({ severity: "FATAL", code: "25006", message: "paddock: this read-only connection turned default_transaction_read_only off; it has been closed" });
    return true;
  }

  private relayClientFrames(frames: Frame[]): void {
    const up = this.upstream;
    if (!up || !this.frontend) return;
    let terminated = false;
    for (const f of frames) if (!terminated) terminated = !this.frontend.onClientFrame(f, this.toUpstream);
    const ok = this.toUpstream.flush(up);
    if (terminated) {
      // Terminate was passed on so the server ends cleanly; then let go of both sides.
      up.end();
      this.upstream = null;
      return this.close();
    }
    if (!ok) {
      this.client.pause();
      up.once("drain", () => this.client.resume());
    }
  }
}
