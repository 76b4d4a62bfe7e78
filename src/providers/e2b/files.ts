/**
 * envd's file entries (`EntryInfo`, as the e2b SDK returns them) as Paddock's `FileEntry` and
 * `FileInfo`. envd describes a symlink by what it points at (type and permission bits) plus
 * `symlinkTarget`, and gives the entry's own mode only as Go's `FileMode.String()`
 * (`permissions`, e.g. `Lrwxrwxrwx`); the link's own bits are read back from that string.
 * Times come as a JS Date: sub-millisecond digits are lost.
 */
import type { EntryInfo } from "e2b";
import type { FileEntry, FileInfo } from "../../core/index.ts";

const typeOf = (t: string | undefined): FileEntry["type"] => (t === "file" ? "file" : t === "dir" ? "dir" : t === "symlink" ? "symlink" : "other");

/** Go's `FileMode.String()` (`drwxr-xr-x`, `-rwsr-xr-x`, `Lrwxrwxrwx`, `dtrwxrwxrwx`) → permission bits with setuid, setgid, sticky. */
export function modeOfGoString(text: string, fallback: number): number {
  const m = /^([A-Za-z-]*?)([r-][w-][x-][r-][w-][x-][r-][w-][x-])$/.exec(text);
  if (!m?.[2]) return fallback & 0o7777;
  let mode = 0;
  for (let i = 0; i < 9; i++) if (m[2][i] !== "-") mode |= 1 << (8 - i);
  const letters = m[1] ?? "";
  if (letters.includes("u")) mode |= 0o4000;
  if (letters.includes("g")) mode |= 0o2000;
  if (letters.includes("t")) mode |= 0o1000;
  return mode;
}

const isLink = (e: EntryInfo) => e.symlinkTarget !== undefined && e.symlinkTarget !== "";

export function fileInfoOf(e: EntryInfo): FileInfo {
  const ms = e.modifiedTime?.getTime() ?? 0;
  const info: FileInfo = {
    path: e.path,
    name: e.name,
    type: isLink(e) ? "symlink" : typeOf(e.type),
    size: e.size,
    mode: modeOfGoString(e.permissions, e.mode),
    mtime: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 },
    owner: e.owner,
    group: e.group,
  };
  if (isLink(e)) info.symlink = { target: e.symlinkTarget ?? "", type: e.type === undefined ? null : typeOf(e.type), mode: e.mode & 0o7777 };
  return info;
}

export function fileEntryOf(e: EntryInfo): FileEntry {
  const info = fileInfoOf(e);
  return { name: info.name, type: info.type, size: info.size, mode: info.mode, mtime: new Date(info.mtime.seconds * 1000 + info.mtime.nanos / 1e6).toISOString() };
}

/** Parents before children, each directory's entries by name (byte order). */
export function treeOrder(a: FileInfo, b: FileInfo): number {
  const x = a.path.split("/");
  const y = b.path.split("/");
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return Buffer.compare(Buffer.from(x[i] ?? ""), Buffer.from(y[i] ?? ""));
  }
  return x.length - y.length;
}
