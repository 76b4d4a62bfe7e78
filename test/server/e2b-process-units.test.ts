/**
 * The pure parts of the E2B process service: the PTY-name marker taken out of output split at
 * every byte, the proto3 JSON request parsing (and its refusals), and envd's end event.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConnectError } from "../../src/server/e2b/connect.ts";
import { decodeBytes, endEventOf, parseInput, parseSelector, parseSignal, parseStartRequest } from "../../src/server/e2b/process-messages.ts";
import { PtyMarkerFilter, ptyCommand, resizeArgv, shellQuote } from "../../src/server/e2b/process-pty.ts";

const invalid = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: unknown) => e instanceof ConnectError && e.code === "invalid_argument" && re.test(e.message));

void describe("E2B process service: PTY marker", () => {
  void it("the marker is removed and the tty learned wherever the output is split", () => {
    const { marker, argv } = ptyCommand({ cmd: "/bin/bash", args: ["-i", "-l"], envs: {} }, { cols: 80, rows: 24 });
    assert.equal(argv[0], "script");
    assert.match(argv[2]!, /stty rows 24 cols 80 .* exec '\/bin\/bash' '-i' '-l'$/);
    const output = Buffer.concat([Buffer.from("pre"), Buffer.from(`\x1b]777;${marker}/dev/pts/7\x07`), Buffer.from("$ prompt")]);
    for (let cut = 0; cut <= output.length; cut++) {
      const f = new PtyMarkerFilter(marker);
      const seen = Buffer.concat([f.push(output.subarray(0, cut)), f.push(output.subarray(cut)), f.flush()]).toString();
      assert.equal(seen, "pre$ prompt", `split at ${cut}`);
      assert.equal(f.tty, "/dev/pts/7");
    }
  });

  void it("another marker, or a name that is not a PTY, is not taken; too much output first gives up", () => {
    const f = new PtyMarkerFilter("paddock-tty-aaaa;");
    assert.equal(f.push(Buffer.from("\x1b]777;paddock-tty-bbbb;/dev/pts/1\x07")).length, 0); // held: maybe ours is coming
    const g = new PtyMarkerFilter("paddock-tty-aaaa;");
    assert.equal(g.push(Buffer.from("\x1b]777;paddock-tty-aaaa;/etc/passwd\x07ok")).toString(), "ok");
    assert.equal(g.tty, null);
    const h = new PtyMarkerFilter("m;");
    const big = Buffer.alloc(70 * 1024, 0x61);
    assert.equal(h.push(big).length, big.length);
    assert.equal(h.settled, true);
    assert.throws(() => resizeArgv("/etc/passwd", { cols: 1, rows: 1 }));
    assert.deepEqual(resizeArgv("/dev/pts/3", { cols: 100, rows: 30 }), ["stty", "-F", "/dev/pts/3", "rows", "30", "cols", "100"]);
    assert.equal(shellQuote("it's"), `'it'\\''s'`);
  });
});

void describe("E2B process service: messages", () => {
  void it("parses what the SDK sends, proto names too", () => {
    assert.deepEqual(parseStartRequest({ process: { cmd: "/bin/bash", args: ["-l", "-c", "ls"], envs: { A: "1" }, cwd: "/tmp" }, stdin: false, tag: "t" }), {
      process: { cmd: "/bin/bash", args: ["-l", "-c", "ls"], envs: { A: "1" }, cwd: "/tmp" }, stdin: false, tag: "t",
    });
    assert.deepEqual(parseStartRequest({ process: { cmd: "sh" }, pty: { size: { cols: "80", rows: 24 } } }).pty, { cols: 80, rows: 24 });
    assert.deepEqual(parseSelector({ process: { pid: "12" } }, "x"), { pid: 12 });
    assert.deepEqual(parseSelector({ process: { tag: "bg" } }, "x"), { tag: "bg" });
    assert.deepEqual(parseInput({ input: { stdin: "aGk=" } }), { stdin: Buffer.from("hi") });
    assert.deepEqual(parseInput({ input: { pty: "aGk" } }), { pty: Buffer.from("hi") });
    assert.equal(parseSignal({ signal: "SIGNAL_SIGKILL" }), "SIGKILL");
    assert.equal(parseSignal({ signal: 15 }), "SIGTERM");
    assert.deepEqual(decodeBytes("-_8", "x"), Buffer.from([0xfb, 0xff]));
  });

  void it("refuses the wrong types, saying which field", () => {
    invalid(() => parseStartRequest([]), /StartRequest must be a JSON object/);
    invalid(() => parseStartRequest({ process: { cmd: "" } }), /process\.cmd is required/);
    invalid(() => parseStartRequest({ process: { cmd: "a", args: "b" } }), /process\.args must be an array/);
    invalid(() => parseStartRequest({ process: { cmd: "a", args: [1] } }), /process\.args\[0\] must be a string/);
    invalid(() => parseStartRequest({ process: { cmd: "a", envs: { "A=B": "x" } } }), /not a variable name/);
    invalid(() => parseStartRequest({ process: { cmd: "a\0" } }), /NUL/);
    invalid(() => parseStartRequest({ process: { cmd: "a" }, stdin: "yes" }), /stdin must be true or false/);
    invalid(() => parseStartRequest({ process: { cmd: "a" }, pty: { size: { cols: 0, rows: 5 } } }), /pty\.size/);
    invalid(() => parseStartRequest({ process: { cmd: "a", args: ["x".repeat(1 << 20)] } }), /at most/);
    invalid(() => parseSelector({ process: { pid: -1 } }, "x"), /process\.pid must be an unsigned/);
    invalid(() => parseSelector({ process: {} }, "the ConnectRequest"), /by pid or tag/);
    invalid(() => parseInput({ input: { stdin: "not base64!" } }), /base64/);
    invalid(() => parseInput({ input: {} }), /stdin or pty/);
    invalid(() => parseSignal({ signal: "SIGNAL_UNSPECIFIED" }), /SIGNAL_SIGTERM/);
  });

  void it("end events as envd reports them", () => {
    assert.deepEqual(endEventOf({ exitCode: 0, signal: null, timedOut: false }), { exitCode: 0, exited: true, status: "exit status 0" });
    assert.deepEqual(endEventOf({ exitCode: 126, signal: null, timedOut: false }), { exitCode: 126, exited: true, status: "exit status 126", error: "exit status 126" });
    assert.deepEqual(endEventOf({ exitCode: 143, signal: "SIGTERM", timedOut: false }), { exitCode: -1, exited: false, status: "signal: terminated", error: "signal: terminated" });
    assert.deepEqual(endEventOf({ exitCode: 124, signal: null, timedOut: true }), { exitCode: -1, exited: false, status: "signal: killed", error: "signal: killed" });
  });
});
