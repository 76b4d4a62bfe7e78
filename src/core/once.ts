/**
 * Work that is created once and shared (a base layer, the scaffold, a build step's layer): callers
 * that ask for the same key while it is being made wait for that one run and get its result,
 * instead of racing to make it twice. The key is forgotten once the run settles, so a failure is
 * not cached: the next caller tries again.
 *
 * @example
 * const flights = new SingleFlight<string>();
 * const id = await flights.run("scaffold-host", () => buildScaffold());
 */
export class SingleFlight<T> {
  private readonly inFlight = new Map<string, Promise<T>>();

  run(key: string, make: () => Promise<T>): Promise<T> {
    const running = this.inFlight.get(key);
    if (running) return running;
    const started = make().finally(() => {
      if (this.inFlight.get(key) === started) this.inFlight.delete(key);
    });
    this.inFlight.set(key, started);
    return started;
  }
}
