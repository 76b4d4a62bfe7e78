/**
 * Sizes and durations as people write them in an environment file. Both parsers throw an `Error`
 * whose message is fit to show as-is: it quotes the input and lists the accepted forms.
 */
import { quote } from "./words.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

export const SECOND_MS = 1000;
export const MINUTE_MS = 60 * SECOND_MS;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

// Single letters (512M) are powers of 1024, as in Docker, the JVM and GNU tools: in a sandbox
// limit "512M" almost always means 512 MiB. Kubernetes' Ki/Mi/Gi/Ti are accepted as the same thing.
const SIZE_UNITS: ReadonlyMap<string, number> = new Map([
  ["b", 1],
  ["kb", 1e3], ["mb", 1e6], ["gb", 1e9], ["tb", 1e12],
  ["kib", KiB], ["mib", MiB], ["gib", GiB], ["tib", TiB],
  ["ki", KiB], ["mi", MiB], ["gi", GiB], ["ti", TiB],
  ["k", KiB], ["m", MiB], ["g", GiB], ["t", TiB],
]);

const SIZE_FORMS =
  'a number and a unit, e.g. "8GB", "512MiB", "1.5GiB" or "512M" ' +
  "(KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB and K, M, G, T are powers of 1024)";

/**
 * Parses a size such as `8GB`, `512MiB`, `1.5GiB` or `512M` into bytes (rounded to a whole byte).
 * Units are case-insensitive; a space between number and unit is allowed; a bare number is
 * refused because it is ambiguous (bytes? megabytes?).
 *
 * @throws Error naming the input and the accepted forms.
 */
export function parseMemory(s: string): number {
  // Trimmed first: with "\s*" on both sides of the unit, a long run of spaces took quadratic time.
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(s.trim());
  if (m === null) throw new Error(`${quote(s)} is not a size: write ${SIZE_FORMS}`);
  const [, digits = "", unit = ""] = m;
  if (unit === "") throw new Error(`${quote(s)} has no unit: write ${SIZE_FORMS}`);
  const factor = SIZE_UNITS.get(unit.toLowerCase());
  if (factor === undefined) {
    throw new Error(`${quote(s)} has an unknown unit ${quote(unit)}: write ${SIZE_FORMS}`);
  }
  const bytes = Math.round(Number(digits) * factor);
  if (!Number.isSafeInteger(bytes)) throw new Error(`${quote(s)} is too large`);
  return bytes;
}

const DURATION_FORMS =
  'a number and a unit, largest unit first, e.g. "45s", "30m", "2h", "1h30m" or "1d" (units: d, h, m, s)';

// Each component at most once, largest first; decimals allowed ("1.5h"). Lower-case only, so
// "30M" cannot be misread as months.
const DURATION_RE = /^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/;

/**
 * Parses a duration such as `30m`, `1h30m`, `45s`, `2h` or `1d` into milliseconds (rounded).
 * Spaces between components are allowed (`1h 30m`); a bare number is refused (seconds? minutes?).
 * Zero parses to 0: whether zero is allowed is the caller's rule.
 *
 * @throws Error naming the input and the accepted forms.
 */
export function parseDuration(s: string): number {
  // Spaces next to a unit are tolerated ("1h 30m", "30 m"); spaces inside a number are not.
  const compact = s.trim().replace(/(?<=[dhms])\s+(?=\d)|(?<=\d)\s+(?=[dhms])/g, "");
  const m = DURATION_RE.exec(compact);
  if (compact === "" || m === null) {
    const why = /^\d+(?:\.\d+)?$/.test(compact) ? "has no unit" : "is not a duration";
    throw new Error(`${quote(s)} ${why}: write ${DURATION_FORMS}`);
  }
  const [, d, h, min, sec] = m;
  const part = (v: string | undefined, unitMs: number): number => (v === undefined ? 0 : Number(v) * unitMs);
  const ms = part(d, DAY_MS) + part(h, HOUR_MS) + part(min, MINUTE_MS) + part(sec, SECOND_MS);
  const rounded = Math.round(ms);
  if (!Number.isSafeInteger(rounded)) throw new Error(`${quote(s)} is too long`);
  return rounded;
}

/** Formats bytes for messages, in the largest binary unit that divides it (e.g. `16MiB`). */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [["TiB", TiB], ["GiB", GiB], ["MiB", MiB], ["KiB", KiB]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}
