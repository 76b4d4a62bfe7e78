/**
 * Who is calling on the remote proxy listener (remote-listener.ts): a remote sandbox has no link of
 * its own to the gateway, so its session is whoever presents the session's proxy credential in
 * `Proxy-Authorization: Basic`. Two things keep the listener from becoming an oracle or a lever:
 *
 * - Every refusal looks the same (407, no hint of which part was wrong), and the password is
 *   compared in constant time against its SHA-256, also for an unknown user (a dummy hash).
 * - Failed attempts are bounded per source address and user name: past `failuresPerWindow` in a
 *   window, that user's credential from that source is no longer checked at all (407 at once)
 *   unless that user already authenticated from that source. Guessing a password is then capped at
 *   a known rate, while sessions that share a NAT address with the guesser keep working, also
 *   new ones and all of them after a gateway restart: a guesser can throttle only the names it
 *   guesses, and a session's user name is 64 random bits it is never shown.
 *
 * And unauthenticated connections (before their first request names a session, so not yet counted
 * against any session's limits) are capped per source and in total; at a cap the oldest pending
 * one is closed, never the new one, so a client that opens and holds connections cannot lock out
 * another session that only needs a moment to authenticate. (One that keeps opening new ones from
 * the same address, a cap's worth within the other's handshake and first request, still can: no
 * rule before authentication tells the two apart. Tested in remote-attacks.test.ts.)
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type net from "node:net";
import type { Session, SessionTable } from "./sessions.ts";

/** Limits of the remote listener that apply before a connection belongs to a session. */
export interface RemoteAuthLimits {
  /** Failed authentications of one user name from one source address per window before its credentials stop being checked. */
  failuresPerWindow: number;
  windowMs: number;
  /** Connections from one source address not yet authenticated, at once. */
  pendingPerSource: number;
  /** Connections not yet authenticated, all sources together. */
  pendingTotal: number;
}

export const DEFAULT_REMOTE_AUTH_LIMITS: Readonly<RemoteAuthLimits> = Object.freeze({
  failuresPerWindow: 20,
  windowMs: 10_000,
  pendingPerSource: 64,
  pendingTotal: 1024,
});

const DUMMY_HASH = createHash("sha256").update("paddock: no such proxy user").digest();

/** `Basic base64(user:password)` → its parts, or null for anything else. */
export function parseBasic(header: string | undefined): { user: string; password: string } | null {
  const m = /^Basic[ \t]+([A-Za-z0-9+/=]{1,1024})[ \t]*$/i.exec(header ?? "");
  if (!m) return null;
  const text = Buffer.from(m[1] ?? "", "base64").toString("utf8");
  const colon = text.indexOf(":");
  if (colon <= 0) return null;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** The SHA-256 of a proxy password, as `RemoteCredential.passwordSha256` holds it. */
export function passwordHash(password: string): string {
  return createHash("sha256").update(password, "utf8").digest("hex");
}

interface Window {
  start: number;
  failures: number;
  /** This user authenticated from this source: still checked while throttled (kept from window to window). */
  known: boolean;
}

export type AuthResult = { ok: true; session: Session } | { ok: false; throttled: boolean };

export class RemoteAuth {
  private readonly windows = new Map<string, Window>();
  private readonly pending = new Map<net.Socket, string>();
  private readonly pendingBySource = new Map<string, Set<net.Socket>>();

  constructor(
    private readonly sessions: SessionTable,
    readonly limits: RemoteAuthLimits = DEFAULT_REMOTE_AUTH_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Check a request's `Proxy-Authorization` from `source`. */
  authenticate(header: string | undefined, source: string): AuthResult {
    const creds = parseBasic(header);
    // Per source *and* user: counted per source alone, a guesser behind a shared NAT address (other
    // tenants' sandboxes on the same provider) would lock out every session there that had not yet
    // authenticated from it, and all of them once a gateway restart forgot which had.
    // (A name longer than any registered one shares its source's window: the table stays small.)
    const w = this.window(`${source} ${creds && creds.user.length <= 64 ? creds.user : ""}`);
    const throttled = w.failures >= this.limits.failuresPerWindow;
    // Throttled: no check at all for users not seen to succeed from here (no oracle, no cost).
    if (throttled && !(creds && w.known)) return this.fail(w, true);
    if (!creds) return this.fail(w, throttled);
    const session = this.sessions.byRemoteUserName(creds.user);
    const want = session?.spec.remote ? Buffer.from(session.spec.remote.passwordSha256, "hex") : DUMMY_HASH;
    const got = createHash("sha256").update(creds.password, "utf8").digest();
    // Both sides are 32 bytes, so the comparison takes the same time for every wrong credential.
    const match = want.length === got.length && timingSafeEqual(want, got);
    if (!match || !session) return this.fail(w, throttled);
    w.known = true; // its own window: registered user names are at most 64 characters (sessions.ts)
    return { ok: true, session };
  }

  private fail(w: Window, throttled: boolean): AuthResult {
    w.failures++;
    return { ok: false, throttled };
  }

  /** The window of one source address and user name. */
  private window(key: string): Window {
    const t = this.now();
    let w = this.windows.get(key);
    if (!w || t - w.start >= this.limits.windowMs) {
      w = { start: t, failures: 0, known: w?.known ?? false };
      this.windows.delete(key);
      this.windows.set(key, w);
      // Bounded: sources that have not been seen for a while are forgotten first.
      if (this.windows.size > 65_536) this.windows.delete(this.windows.keys().next().value as string);
    }
    return w;
  }

  /**
   * A new connection from `source`, not yet authenticated. At a cap the oldest pending connection
   * (of that source, or of all) is destroyed to make room; the new one is always admitted.
   */
  admit(socket: net.Socket, source: string): void {
    const theirs = this.pendingBySource.get(source);
    if (theirs && theirs.size >= this.limits.pendingPerSource) this.evict(theirs.values().next().value);
    if (this.pending.size >= this.limits.pendingTotal) this.evict(this.pending.keys().next().value);
    let mine = this.pendingBySource.get(source);
    if (!mine) this.pendingBySource.set(source, (mine = new Set()));
    this.pending.set(socket, source);
    mine.add(socket);
    socket.once("close", () => this.settle(socket));
  }

  private evict(socket: net.Socket | undefined): void {
    if (!socket) return;
    // Forgotten at once: its close event comes later, and more connections may arrive before it.
    this.settle(socket);
    socket.destroy();
  }

  /** The connection authenticated (it now counts against its session) or closed. */
  settle(socket: net.Socket): void {
    const source = this.pending.get(socket);
    if (source === undefined) return;
    this.pending.delete(socket);
    const mine = this.pendingBySource.get(source);
    mine?.delete(socket);
    if (mine?.size === 0) this.pendingBySource.delete(source);
  }

  get pendingCount(): number {
    return this.pending.size;
  }
}
