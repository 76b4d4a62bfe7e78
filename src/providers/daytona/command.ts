import { constants } from "node:os";
import { invalid } from "../../core/errors.ts";

/**
 * How one `Provider.exec` becomes one Daytona session command. Daytona runs a session command as a
 * shell command line and reports one exit code and the text of stdout and stderr; it has no
 * per-command argv, working directory, environment or stdin. So the command line is a small
 * `sh -c` script that sets those itself and runs the program as a child: the script's own status
 * is then the child's (`128+N` when the child was killed by signal N, 127 when the program is not
 * found), whatever the daemon does with signals.
 */
export interface CommandLine {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  /** A file in the sandbox holding stdin (removed once opened); absent: /dev/null. */
  stdinPath?: string;
}

/** `'…'` for sh: the only character that needs care inside single quotes is the quote itself. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function commandLine(c: CommandLine): string {
  if (c.argv.length === 0) throw invalid("exec needs a program (argv is empty)");
  for (const part of [...c.argv, c.cwd, ...Object.values(c.env)]) {
    if (part.includes("\0")) throw invalid("exec arguments, cwd and environment values cannot contain NUL bytes");
  }
  const lines: string[] = [];
  for (const [name, value] of Object.entries(c.env)) {
    if (!ENV_NAME.test(name)) throw invalid(`bad environment variable name ${JSON.stringify(name)}`);
    lines.push(`export ${name}=${shellQuote(value)}`);
  }
  // A missing working directory is "could not be run", as the local provider's agent reports it.
  lines.push(`cd ${shellQuote(c.cwd)} || exit 126`);
  lines.push(c.stdinPath ? `exec 0<${shellQuote(c.stdinPath)} && rm -f ${shellQuote(c.stdinPath)} || exit 126` : "exec 0</dev/null");
  // Quoted words are never taken as assignments, so argv[0] is always the program.
  lines.push(c.argv.map(shellQuote).join(" "));
  return `sh -c ${shellQuote(lines.join("\n"))}`;
}

const signalNames = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/**
 * The signal behind a shell status: `128+N` is how sh reports a child killed by signal N. A program
 * that exits 130 of its own accord looks the same; the daemon reports nothing more to tell them apart.
 */
export function signalOf(exitCode: number): string | null {
  if (exitCode <= 128 || exitCode > 128 + 64) return null;
  return signalNames.get(exitCode - 128) ?? null;
}
