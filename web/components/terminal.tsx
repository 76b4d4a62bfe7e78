/**
 * A live terminal in the session: xterm.js over the exec WebSocket (/v1/sessions/:id/exec/stream).
 *
 * The exec protocol has no PTY of its own (one socket is one command: stdin, stdout, stderr,
 * signals). So the shell gets a PTY inside the sandbox: `script` (util-linux) runs `bash -i` (or
 * `sh -i`) on a pseudo-terminal there, and the page sends keystrokes as raw stdin. The inner
 * command reports its tty name in a private OSC sequence; a resize runs `stty -F TTY rows R cols
 * C` in the session (an audited exec of its own). Without `script` (or when a guardrail refuses
 * it), the terminal falls back to a line-oriented `sh -i`: the page echoes and edits the line, and
 * sends it on Enter.
 *
 * Keyboard: Escape leaves the terminal (Ctrl+[ sends Escape to the shell); a skip link jumps past it.
 */
import "@xterm/xterm/css/xterm.css";
import { FitAddon } from "@xterm/addon-fit";
import { Terminal as XTerm } from "@xterm/xterm";
import { useEffect, useRef, useState } from "preact/hooks";
import { errorText } from "./async.tsx";
import { post, seg } from "../api.ts";

/** OSC 777 with this tag carries the PTY's name (`/dev/pts/3`) from the shell's start line. */
const OSC_TAG = "paddock-tty;";
const RESIZE_DEBOUNCE_MS = 600;
/** Stdin messages are bounded (the server refuses messages over 1 MiB). */
const STDIN_CHUNK = 64 * 1024;

type Mode = "pty" | "line";
type Status = { kind: "connecting" } | { kind: "open"; mode: Mode } | { kind: "ended"; text: string };

/** The shell line run inside `script`: the PTY's size, its name for resizes, then the shell. */
function ptyArgv(cols: number, rows: number): string[] {
  const code =
    `stty rows ${rows} cols ${cols} 2>/dev/null; printf '\\033]777;${OSC_TAG}%s\\007' "$(tty)"; ` +
    "if command -v bash >/dev/null 2>&1; then exec bash -i; else exec sh -i; fi";
  return ["script", "-qfec", code, "/dev/null"];
}

export function Terminal({ sessionId, enabled }: { sessionId: string; enabled: boolean }) {
  const host = useRef<HTMLDivElement>(null);
  const after = useRef<HTMLSpanElement>(null);
  const [status, setStatus] = useState<Status>({ kind: "connecting" });
  const [attempt, setAttempt] = useState(0);
  const [reader, setReader] = useState(false);
  const termRef = useRef<XTerm | null>(null);

  useEffect(() => {
    const el = host.current;
    if (!el || !enabled) return;
    const term = new XTerm({ cursorBlink: true, fontSize: 13, scrollback: 5000, screenReaderMode: reader, fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" });
    termRef.current = term;
    const unmirror = mirrorXtermStyles(el);
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(el);
    safeFit(fit);
    // Escape leaves the terminal for the rest of the page; Ctrl+[ still sends ESC to the shell.
    term.attachCustomKeyEventHandler((ev) => {
      if (ev.type === "keydown" && ev.key === "Escape" && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
        after.current?.focus();
        return false;
      }
      return true;
    });
    const shell = new ShellConnection(sessionId, term, setStatus);
    shell.connect("pty");
    const observer = new ResizeObserver(() => safeFit(fit));
    observer.observe(el);
    return () => {
      observer.disconnect();
      shell.close();
      term.dispose();
      unmirror();
      termRef.current = null;
    };
  }, [sessionId, enabled, attempt]);

  useEffect(() => {
    if (termRef.current) termRef.current.options.screenReaderMode = reader;
  }, [reader]);

  const statusText = !enabled
    ? "The terminal needs a running session and write permission on its environment."
    : status.kind === "connecting"
      ? "Connecting…"
      : status.kind === "open"
        ? status.mode === "pty"
          ? "Connected: an interactive shell on a PTY in the sandbox."
          : "Connected: line mode (no PTY in this sandbox): the line is sent on Enter."
        : status.text;
  return (
    <div class="terminal-wrap">
      <a class="skip-link" href="#terminal-end" onClick={(e) => (e.preventDefault(), after.current?.focus())}>
        Skip the terminal
      </a>
      <p class="muted" id="terminal-help">
        {statusText} Escape leaves the terminal; Ctrl+[ sends Escape to the shell.
      </p>
      <div class="terminal-host" ref={host} data-testid="terminal" role="group" aria-label="Terminal: a shell in the session" aria-describedby="terminal-help" onClick={() => termRef.current?.focus()} />
      <div class="row">
        <button type="button" class="button secondary" onClick={() => setAttempt((a) => a + 1)} disabled={!enabled}>
          {status.kind === "ended" ? "Reconnect" : "Restart shell"}
        </button>
        <label class="inline">
          <input type="checkbox" checked={reader} onChange={(e) => setReader(e.currentTarget.checked)} /> Screen reader mode
        </label>
      </div>
      <span id="terminal-end" ref={after} tabIndex={-1} class="sr-only">
        After the terminal
      </span>
    </div>
  );
}

/**
 * The UI's CSP (`style-src 'self'`, no 'unsafe-inline') keeps the browser from applying the
 * `<style>` elements xterm.js writes (its colours, cursor and cell sizes). Their text is copied
 * into a constructed stylesheet (CSSOM, which the CSP does not govern) and kept in step as xterm
 * rewrites it. Each element is taken out of the document once seen (xterm keeps writing to it, and
 * we keep reading it), so the browser reports one CSP violation per element instead of one per
 * rewrite. Only xterm's elements are copied: those inside the terminal, and those added to <head>
 * while it is open; any other <style> stays blocked.
 */
function mirrorXtermStyles(host: HTMLElement): () => void {
  if (typeof CSSStyleSheet === "undefined" || !("adoptedStyleSheets" in document)) return () => undefined;
  const sheet = new CSSStyleSheet();
  const tracked = new Set<HTMLStyleElement>();
  let last = "";
  const sync = () => {
    const text = [...tracked].map((e) => e.textContent ?? "").join("\n");
    if (text === last) return;
    last = text;
    try {
      sheet.replaceSync(text);
    } catch {
      /* a rule the browser cannot parse: keep the last good sheet */
    }
  };
  const onStyle = new MutationObserver(sync);
  const track = (el: HTMLStyleElement) => {
    if (tracked.has(el)) return;
    tracked.add(el);
    onStyle.observe(el, { childList: true, subtree: true, characterData: true });
    el.remove();
  };
  const scan = (records: MutationRecord[]) => {
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n instanceof HTMLStyleElement) track(n);
        else if (n instanceof Element) for (const s of n.querySelectorAll("style")) track(s);
      }
    }
    sync();
  };
  const onTree = new MutationObserver(scan);
  onTree.observe(document.head, { childList: true });
  onTree.observe(host, { childList: true, subtree: true });
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  return () => {
    onTree.disconnect();
    onStyle.disconnect();
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => s !== sheet);
  };
}

function safeFit(fit: FitAddon): void {
  try {
    fit.fit();
  } catch {
    /* not laid out yet (hidden); the next resize fits it */
  }
}

/** One shell over one exec socket; `connect("line")` is the fallback when no PTY can be had. */
class ShellConnection {
  #ws: WebSocket | null = null;
  #tty: string | null = null;
  #mode: Mode = "pty";
  #line = "";
  #started = 0;
  #closed = false;
  #resizeTimer = 0;
  readonly #disposers: { dispose(): void }[] = [];

  constructor(
    private readonly sessionId: string,
    private readonly term: XTerm,
    private readonly report: (s: Status) => void,
  ) {
    this.#disposers.push(
      term.onData((d) => this.#input(d)),
      term.onResize(() => this.#scheduleResize()),
      term.parser.registerOscHandler(777, (data) => {
        if (!data.startsWith(OSC_TAG)) return false;
        this.#tty = data.slice(OSC_TAG.length).trim() || null;
        return true;
      }),
    );
  }

  connect(mode: Mode): void {
    this.#mode = mode;
    this.#tty = null;
    this.#line = "";
    this.term.options.convertEol = mode === "line"; // no PTY: nothing turns \n into \r\n
    this.report({ kind: "connecting" });
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/v1/sessions/${seg(this.sessionId)}/exec/stream`);
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    let opened = false;
    let ended = false;
    ws.onopen = () => {
      opened = true;
      this.#started = Date.now();
      const env = { TERM: mode === "pty" ? "xterm-256color" : "dumb", COLUMNS: String(this.term.cols), LINES: String(this.term.rows) };
      const argv = mode === "pty" ? ptyArgv(this.term.cols, this.term.rows) : ["sh", "-i"];
      ws.send(JSON.stringify({ argv, cwd: "/workspace", env }));
      this.report({ kind: "open", mode });
      this.term.focus();
    };
    ws.onmessage = (m: MessageEvent<ArrayBuffer | string>) => {
      if (typeof m.data !== "string") {
        const bytes = new Uint8Array(m.data);
        if (bytes.length > 1) this.term.write(bytes.subarray(1));
        return;
      }
      let msg: { type?: string; exitCode?: number; signal?: string | null; message?: string; fatal?: boolean };
      try {
        msg = JSON.parse(m.data) as typeof msg;
      } catch {
        return;
      }
      if (msg.type === "error" && msg.fatal === false) {
        this.term.write(`\r\n\x1b[33m[paddock: ${msg.message ?? "refused"}]\x1b[0m\r\n`);
        return;
      }
      ended = true;
      if (msg.type === "exit" && this.#shouldFallBack(msg.exitCode ?? -1)) {
        this.term.write(`\r\n\x1b[2m[no PTY here (script exited ${msg.exitCode}); using line mode with sh -i]\x1b[0m\r\n`);
        ws.onclose = null;
        this.connect("line");
        return;
      }
      const text = msg.type === "exit" ? `The shell exited (${msg.signal ?? `exit ${msg.exitCode}`}).` : `The shell ended: ${msg.message ?? "error"}.`;
      this.term.write(`\r\n\x1b[2m[${text}]\x1b[0m\r\n`);
      this.report({ kind: "ended", text });
    };
    ws.onclose = (e) => {
      if (this.#closed || ended) return;
      const text = opened ? `The connection closed (${e.code}).` : "Could not open the terminal: the session may have ended, or you lack write permission on its environment.";
      this.term.write(`\r\n\x1b[2m[${text}]\x1b[0m\r\n`);
      this.report({ kind: "ended", text });
    };
  }

  /** `script` missing or refused, quickly and before it reported a PTY: try a line shell instead. */
  #shouldFallBack(exitCode: number): boolean {
    return this.#mode === "pty" && this.#tty === null && exitCode !== 0 && Date.now() - this.#started < 5000;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#resizeTimer);
    for (const d of this.#disposers) d.dispose();
    this.#ws?.close();
  }

  #send(data: string | Uint8Array): void {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (typeof data === "string") {
      // Binary messages are stdin; text messages are control messages.
      const bytes = new TextEncoder().encode(data);
      for (let off = 0; off < bytes.length; off += STDIN_CHUNK) ws.send(bytes.subarray(off, off + STDIN_CHUNK));
    } else ws.send(data);
  }

  #control(msg: Record<string, string>): void {
    if (this.#ws?.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify(msg));
  }

  #input(data: string): void {
    if (this.#mode === "pty") return this.#send(data);
    // Line mode: the page is the line discipline.
    for (const ch of data) {
      if (ch === "\r" || ch === "\n") {
        this.term.write("\r\n");
        this.#send(this.#line + "\n");
        this.#line = "";
      } else if (ch === "\x7f" || ch === "\b") {
        if (this.#line) {
          this.#line = [...this.#line].slice(0, -1).join("");
          this.term.write("\b \b");
        }
      } else if (ch === "\x03") {
        this.term.write("^C\r\n");
        this.#line = "";
        this.#control({ type: "signal", signal: "SIGINT" });
      } else if (ch === "\x04") {
        if (!this.#line) this.#control({ type: "stdin-eof" });
      } else if (ch >= " " || ch === "\t") {
        this.#line += ch;
        this.term.write(ch);
      }
    }
  }

  #scheduleResize(): void {
    if (this.#mode !== "pty") return;
    clearTimeout(this.#resizeTimer);
    this.#resizeTimer = window.setTimeout(() => void this.#resize(), RESIZE_DEBOUNCE_MS);
  }

  async #resize(): Promise<void> {
    const tty = this.#tty;
    if (!tty || !/^\/dev\/pts\/\d+$/.test(tty) || this.#closed) return;
    try {
      await post(`/v1/sessions/${seg(this.sessionId)}/exec`, { argv: ["stty", "-F", tty, "rows", String(this.term.rows), "cols", String(this.term.cols)], timeoutMs: 5000 });
    } catch (err) {
      this.term.write(`\r\n\x1b[2m[resize failed: ${errorText(err)}]\x1b[0m\r\n`);
    }
  }
}
