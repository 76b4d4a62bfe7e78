/**
 * Paddock's `FileInfo` as envd's `filesystem.EntryInfo` in the proto3 JSON mapping (enums by name,
 * int64 as a string, Timestamp as RFC 3339), with envd's conventions: a symlink reports the type
 * and permission bits of what it points at plus `symlinkTarget`, a dangling one has no type, and
 * `permissions` is Go's `FileMode.String()` of the entry itself (e.g. `drwxr-xr-x`, `Lrwxrwxrwx`).
 */
import type { FileEntry, FileEvent, FileInfo } from "../../core/index.ts";

export type EntryInfoJson = Record<string, unknown>;

const FILE_TYPES: Record<FileEntry["type"], string> = {
  file: "FILE_TYPE_FILE",
  dir: "FILE_TYPE_DIRECTORY",
  symlink: "FILE_TYPE_SYMLINK",
  other: "FILE_TYPE_UNSPECIFIED",
};

export const EVENT_TYPES: Record<FileEvent["type"], string> = {
  create: "EVENT_TYPE_CREATE",
  write: "EVENT_TYPE_WRITE",
  remove: "EVENT_TYPE_REMOVE",
  rename: "EVENT_TYPE_RENAME",
  chmod: "EVENT_TYPE_CHMOD",
};

/** Go's `os.FileMode.String()` for the bits Linux has: type letters (or `-`), then rwx. */
export function goModeString(type: FileEntry["type"], mode: number): string {
  let letters = "";
  if (type === "dir") letters += "d";
  if (type === "symlink") letters += "L";
  if (type === "other") letters += "?";
  if (mode & 0o4000) letters += "u";
  if (mode & 0o2000) letters += "g";
  if (mode & 0o1000) letters += "t";
  const rwx = "rwxrwxrwx";
  let perm = "";
  for (let i = 0; i < 9; i++) perm += mode & (1 << (8 - i)) ? rwx[i] : "-";
  return (letters || "-") + perm;
}

/** `seconds` + `nanos` as a protobuf JSON Timestamp (RFC 3339, UTC, nanosecond digits when non-zero). */
export function timestampJson(t: { seconds: number; nanos: number }): string {
  const base = new Date(t.seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "");
  return t.nanos > 0 ? `${base}.${String(t.nanos).padStart(9, "0")}Z` : `${base}Z`;
}

export function entryInfoJson(info: FileInfo): EntryInfoJson {
  const link = info.symlink;
  // envd follows a link for its type and permission bits (and has no type when it dangles).
  const type = link ? (link.type === null ? "FILE_TYPE_UNSPECIFIED" : FILE_TYPES[link.type]) : FILE_TYPES[info.type];
  const mode = (link ? link.mode : info.mode) & 0o777;
  const entry: EntryInfoJson = {
    name: info.name,
    type,
    path: info.path,
    size: String(info.size),
    mode,
    permissions: goModeString(info.type, info.mode),
    owner: info.owner,
    group: info.group,
    modifiedTime: timestampJson(info.mtime),
  };
  if (link) entry.symlinkTarget = link.target;
  return entry;
}
