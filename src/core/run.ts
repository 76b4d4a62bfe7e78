import { spawn } from "node:child_process";
import { internal } from "./errors.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run a host program to completion and capture its output. Rejects (PaddockError internal) on a
 * non-zero exit unless `allowFailure` is set, with the program's stderr in the message so the
 * operator sees why. Never used with secret values in argv.
 */
export function runCommand(
  argv: readonly string[],
  opts: { allowFailure?: boolean; input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(internal("runCommand: empty argv"));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"], cwd: opts.cwd, env: opts.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => reject(internal(`cannot run ${file}: ${e.message}`, e)));
    child.on("close", (code, signal) => {
      const result = {
        code: code ?? 128,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      };
      if (result.code !== 0 && !opts.allowFailure) {
        const why = result.stderr.trim() || result.stdout.trim() || (signal ? `killed by ${signal}` : `exit ${result.code}`);
        reject(internal(`${argv.join(" ")} failed: ${why}`));
      } else resolve(result);
    });
    if (child.stdin) {
      // A program may exit without reading its input; that is its answer, not our error.
      child.stdin.on("error", () => undefined);
      child.stdin.end(opts.input);
    }
  });
}
