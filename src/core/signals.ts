import { constants as osConstants } from "node:os";
import { invalid, quoted } from "./errors.ts";

/** A signal number for `name` ("SIGINT"), or undefined when the host knows no such signal. */
export function signalNumber(name: string): number | undefined {
  return Object.hasOwn(osConstants.signals, name) ? osConstants.signals[name as NodeJS.Signals] : undefined;
}

/**
 * Signals for one running command (`ExecOptions.signals`): the caller `send`s signal names while
 * the command runs; the provider delivers each to the command's process group and the command's
 * exit is reported as usual (unlike aborting `ExecOptions.signal`, which kills it and rejects).
 *
 * Signals sent before the command has started (while it waits for an approval, or for the
 * sandbox to answer) are kept and delivered, in order, as soon as it starts; signals sent after it
 * ended are dropped. One provider listens at a time.
 *
 * @example
 * const signals = new ExecSignals();
 * const run = provider.exec(id, { argv: ["sh", "-c", "trap 'exit 3' INT; sleep 60"], signals });
 * signals.send("SIGINT");
 * (await run).exitCode; // 3
 */
export class ExecSignals {
  #queue: NodeJS.Signals[] = [];
  #listener: ((name: NodeJS.Signals, signo: number) => void) | null = null;

  /**
   * Send `name` (e.g. "SIGINT", "SIGTERM") to the command's process group.
   * @throws PaddockError `invalid_argument` for a name the host does not know; nothing is sent.
   */
  send(name: string): void {
    const signo = signalNumber(name);
    if (signo === undefined || signo === 0) throw invalid(`unknown signal ${quoted(name, 32)}: use a name such as SIGINT, SIGTERM or SIGKILL`);
    if (this.#listener) this.#listener(name as NodeJS.Signals, signo);
    else this.#queue.push(name as NodeJS.Signals);
  }

  /**
   * For providers, once the command runs: `deliver` gets every queued signal, then each one sent
   * (its name and this host's number for it), until the returned function is called (when the
   * command has ended).
   */
  listen(deliver: (name: NodeJS.Signals, signo: number) => void): () => void {
    this.#listener = deliver;
    for (const name of this.#queue.splice(0)) deliver(name, signalNumber(name) ?? 0);
    return () => {
      if (this.#listener === deliver) this.#listener = null;
    };
  }
}

/**
 * Output flow control for one running command (`ExecOptions.output`): while the caller has
 * `pause`d it, the provider stops reading the command's output, so its pipes fill and the command
 * blocks in write(2) instead of the caller buffering without bound; `resume` lets it go on.
 *
 * @example
 * const output = new OutputGate();
 * provider.exec(id, { argv: ["yes"], output, onStdout: (c) => (send(c) ? undefined : output.pause()) });
 */
export class OutputGate {
  #paused = false;
  #listener: ((paused: boolean) => void) | null = null;

  get paused(): boolean {
    return this.#paused;
  }

  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#listener?.(true);
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#listener?.(false);
  }

  /** For providers, once the command runs: called with the current state, then on each change. */
  listen(onChange: (paused: boolean) => void): () => void {
    this.#listener = onChange;
    if (this.#paused) onChange(true);
    return () => {
      if (this.#listener === onChange) this.#listener = null;
    };
  }
}
