/**
 * How sandbox ids inside map to host ids. Every sandbox process runs with host uids in
 * [HOST_ID_BASE, HOST_ID_BASE + ID_COUNT): root inside is host 100000, the session user (1000) is
 * host 101000. No sandbox process is ever host uid 0, so a file the host owns stays the host's even
 * if a sandbox could see it; host-owned files appear as `nobody` inside and are read-only.
 */
export const HOST_ID_BASE = 100_000;
export const ID_COUNT = 65_536;
export const SESSION_UID = 1000;
export const SESSION_GID = 1000;
export const SESSION_USER = "paddock";
export const SESSION_HOME = "/home/paddock";
export const WORKSPACE = "/workspace";

export const hostUid = (insideUid: number): number => HOST_ID_BASE + insideUid;
export const idMap = { inside: 0, outside: HOST_ID_BASE, count: ID_COUNT };
