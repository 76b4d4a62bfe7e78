/** Small helpers that make messages say how to fix things: nearest-word suggestions, value names. */

/** Optimal string alignment distance: Levenshtein plus adjacent swaps, so "memroy" is 1 from "memory". */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) rows.push([i, ...Array<number>(b.length).fill(0)]);
  const row0 = rows[0] as number[];
  for (let j = 0; j <= b.length; j++) row0[j] = j;
  for (let i = 1; i <= a.length; i++) {
    const row = rows[i] as number[];
    const prev = rows[i - 1] as number[];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, (rows[i - 2] as number[])[j - 2] as number + 1);
      }
      row[j] = best;
    }
  }
  return (rows[a.length] as number[])[b.length] as number;
}

/**
 * The candidate nearest to `word`, or undefined when none is close enough to be a likely typo.
 * Close means at most 3 edits and at most 40% of the longer word, so "x" never suggests "in".
 * Case is ignored: "Name" suggests "name".
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const limit = Math.min(3, Math.max(1, Math.floor(0.4 * Math.max(word.length, c.length))));
    // The distance is at least the difference in length: skip the O(n·m) table for a long word.
    if (Math.abs(word.length - c.length) > limit) continue;
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d <= limit && d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Quotes a word list for messages: `"read", "write", "deploy"`. */
export function quoteList(words: readonly string[]): string {
  return words.map((w) => JSON.stringify(w)).join(", ");
}

const MAX_SHOWN = 40;

/**
 * Quotes a value from the file for a message, cut to its first 40 characters: a message must stay
 * short whatever the file holds (a 1 MiB value would otherwise come back in every issue).
 *
 * @example quote("rm -rf") // `"rm -rf"`; quote("a".repeat(100)) // `"aaaa…"` (40 a's and an ellipsis)
 */
export function quote(s: string): string {
  return JSON.stringify(s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN)}…` : s);
}

/** Names a YAML value for "got …" messages, e.g. `a string "npm install"`, `a list`, `nothing`. */
export function describeValue(v: unknown): string {
  if (v === undefined || v === null) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (v instanceof Uint8Array) return "binary data"; // a !!binary value
  switch (typeof v) {
    case "string":
      return v === "" ? "an empty string" : `a string ${quote(v)}`;
    case "number":
      return Number.isFinite(v) ? `the number ${v}` : `the number ${String(v)}`;
    case "boolean":
      return `${String(v)} (a boolean)`;
    case "object":
      return "a mapping";
    case "bigint":
    case "symbol":
    case "function":
    case "undefined":
      break;
  }
  return typeof v;
}
