import { PaddockError, type ErrorCode } from "../core/index.ts";

/**
 * Exit codes (documented in docs/cli.md): 0 success; 1 the operation failed; 2 bad input (usage, an
 * invalid file or argument); 3 not found; 4 conflict (wrong state); 69 the server is unreachable or
 * unavailable. `paddock exec` exits with the command's own status instead.
 */
export function exitCodeOf(code: ErrorCode): number {
  switch (code) {
    case "invalid_argument":
      return 2;
    case "not_found":
      return 3;
    case "conflict":
      return 4;
    case "unavailable":
      return 69;
    case "unauthorized":
    case "forbidden":
      return 77;
    case "internal":
      return 1;
  }
}

/** Print an error on stderr and exit with its code. */
export function die(err: unknown): never {
  if (err instanceof PaddockError) {
    // Messages carry their own detail (an invalid file's message lists every located issue).
    process.stderr.write(`paddock: ${err.message}\n`);
    process.exit(exitCodeOf(err.code));
  }
  process.stderr.write(`paddock: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

export function formatIssue(i: { file: string; line: number; column: number; path: string; message: string }): string {
  const where = i.line > 0 ? `${i.file}:${i.line}:${i.column}` : i.file;
  return i.path === "" ? `${where}: ${i.message}` : `${where} ${i.path}: ${i.message}`;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/** A plain text table: columns padded to the widest cell. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ");
  process.stdout.write(line(headers) + "\n");
  for (const r of rows) process.stdout.write(line(r) + "\n");
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`;
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/** Parse `30s`, `5m`, `1h30m` or plain milliseconds for CLI flags. */
export function parseDurationFlag(s: string): number {
  if (/^\d+$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = "";
  for (const m of s.matchAll(re)) {
    const n = Number(m[1]);
    const unit = m[2];
    total += unit === "ms" ? n : unit === "s" ? n * 1000 : unit === "m" ? n * 60_000 : n * 3_600_000;
    consumed += m[0];
  }
  if (consumed !== s || s === "") throw new PaddockError("invalid_argument", `bad duration ${JSON.stringify(s)}: use forms like 30s, 5m, 1h30m`);
  return Math.round(total);
}
