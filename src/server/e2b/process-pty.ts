/**
 * PTYs for E2B processes. Paddock's exec has no PTY (commands get pipes), so a PTY process runs
 * inside `script` (util-linux), which makes one in the sandbox, as the web UI's terminal does
 * (web/components/terminal.tsx): the shell line sets the size, reports the PTY's name once in a
 * private OSC sequence, then execs the requested program on it. The name is taken out of the
 * output here (the SDK sees only the program's terminal bytes) and a resize is
 * `stty -F /dev/pts/N rows R cols C`, an exec of its own through the command gate. The kernel
 * then sends SIGWINCH to the terminal's foreground process group, as for a real resize.
 */
import { randomBytes } from "node:crypto";
import type { ProcessConfig, PtySize } from "./process-messages.ts";

/** How much output is searched for the PTY's name before giving up on it (no resizes then). */
const MARKER_SEARCH_BYTES = 64 * 1024;
const TTY_RE = /^\/dev\/pts\/\d{1,6}$/;

/** A word quoted for the shell: exactly itself, whatever it holds. */
export const shellQuote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;

/** What runs for a PTY process, and the marker its output starts with. */
export function ptyCommand(config: ProcessConfig, size: PtySize): { argv: string[]; marker: string } {
  // A fresh marker per process, so a program's own output cannot pose as the PTY's name.
  const marker = `paddock-tty-${randomBytes(8).toString("hex")};`;
  const program = [config.cmd, ...config.args].map(shellQuote).join(" ");
  const code = `stty rows ${size.rows} cols ${size.cols} 2>/dev/null; printf '\\033]777;${marker}%s\\007' "$(tty)"; exec ${program}`;
  return { argv: ["script", "-qfec", code, "/dev/null"], marker };
}

/** The resize command for a PTY `tty` (checked to be a /dev/pts path). */
export function resizeArgv(tty: string, size: PtySize): string[] {
  if (!TTY_RE.test(tty)) throw new Error(`not a PTY: ${tty}`);
  return ["stty", "-F", tty, "rows", String(size.rows), "cols", String(size.cols)];
}

/**
 * Takes the PTY-name marker out of the start of a PTY's output. `push` returns the bytes to
 * forward (possibly none while it waits for the end of the marker); `tty` is the name once seen.
 */
export class PtyMarkerFilter {
  #pending: Buffer | null = Buffer.alloc(0);
  #tty: string | null = null;
  readonly #start: Buffer;

  constructor(marker: string) {
    this.#start = Buffer.from(`\x1b]777;${marker}`);
  }

  get tty(): string | null {
    return this.#tty;
  }

  /** True once the marker was found or given up on. */
  get settled(): boolean {
    return this.#pending === null;
  }

  push(chunk: Buffer): Buffer {
    if (this.#pending === null) return chunk;
    const buf = Buffer.concat([this.#pending, chunk]);
    const at = buf.indexOf(this.#start);
    const end = at < 0 ? -1 : buf.indexOf(0x07, at + this.#start.length);
    if (end >= 0) {
      const name = buf.subarray(at + this.#start.length, end).toString("utf8").trim();
      this.#tty = TTY_RE.test(name) ? name : null;
      this.#pending = null;
      return Buffer.concat([buf.subarray(0, at), buf.subarray(end + 1)]);
    }
    if (buf.length > MARKER_SEARCH_BYTES) {
      this.#pending = null; // too much came first: forward it all, no resizes for this PTY
      return buf;
    }
    this.#pending = buf;
    return Buffer.alloc(0);
  }

  /** Give up waiting (output ended, or too much came first): everything held back. */
  flush(): Buffer {
    const rest = this.#pending ?? Buffer.alloc(0);
    this.#pending = null;
    return rest;
  }
}
