/**
 * Wait for a real condition, not a time: `check` is polled (with backoff up to 20 ms) until it
 * returns something other than null/false. Past `timeoutMs` it fails with what it was waiting
 * for, so a slow machine gives a message that says what did not happen, not a bare time-out.
 */
export async function until<T>(check: () => Promise<T | null | false | undefined>, timeoutMs: number, waitingFor: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
    try {
      const v = await check();
      if (v !== null && v !== false && v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${waitingFor}${last ? ` (last error: ${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, wait));
  }
}
