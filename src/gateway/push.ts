/**
 * `git push` over smart HTTP, seen by the gateway: a POST to `…/git-receive-pack` whose body starts
 * with the ref updates as pkt-lines (`<old> <new> refs/heads/main\0caps`, …, `0000`), then the
 * pack. A session whose principal may not deploy gets its pushes to protected branches refused
 * here, whatever inside the sandbox ran git (an allowed `npm run release`, a script, an alias): the
 * submission check only sees the command line it was given.
 */
import { gunzipSync } from "node:zlib";

export function isReceivePack(method: string, path: string): boolean {
  return method === "POST" && /\/git-receive-pack(\?|$)/.test(path);
}

/** The refs a receive-pack request updates, or null when the body cannot be read as one (fail closed). */
export function pushedRefs(body: Buffer, contentEncoding: string | undefined): string[] | null {
  return readCommands(body, contentEncoding)?.refs ?? null;
}

function readCommands(body: Buffer, contentEncoding: string | undefined): { refs: string[]; caps: string[] } | null {
  let data = body;
  try {
    if (contentEncoding && /gzip/i.test(contentEncoding)) data = gunzipSync(body);
    else if (contentEncoding && !/^identity$/i.test(contentEncoding)) return null;
  } catch {
    return null;
  }
  const refs: string[] = [];
  let caps: string[] = [];
  for (let at = 0; at + 4 <= data.length; ) {
    const len = parseInt(data.subarray(at, at + 4).toString("latin1"), 16);
    if (Number.isNaN(len)) return null;
    if (len === 0) return { refs, caps }; // flush: the commands are over, the pack follows
    if (len < 4 || at + len > data.length) return null;
    const [first, capText] = data.subarray(at + 4, at + len).toString("utf8").split("\0");
    const line = first?.replace(/\n$/, "") ?? "";
    if (refs.length === 0 && capText !== undefined) caps = capText.trim().split(/\s+/);
    const m = /^[0-9a-f]{40,64} [0-9a-f]{40,64} (\S+)$/.exec(line);
    // A shallow line may come first; anything else is not a ref update.
    if (m?.[1]) refs.push(m[1]);
    else if (!line.startsWith("shallow ")) return null;
    at += len;
  }
  return null;
}

/** Whether `ref` (refs/heads/…) is one of the protected branch patterns (`*` matches anything). */
export function isProtectedRef(ref: string, branches: readonly string[]): boolean {
  if (!ref.startsWith("refs/heads/")) return false;
  const branch = ref.slice("refs/heads/".length);
  return branches.some((p) => new RegExp(`^${p.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`).test(branch));
}

/** Why a push must be refused, or null. Unreadable bodies are refused (fail closed). */
export function pushProblem(body: Buffer, contentEncoding: string | undefined, branches: readonly string[]): string | null {
  const refs = pushedRefs(body, contentEncoding);
  if (refs === null) return "a git push this gateway cannot read is refused: the session may not push to protected branches";
  const hit = refs.find((r) => isProtectedRef(r, branches));
  return hit ? `git push to ${hit} is a deploy (guardrails.commands.protectedBranches) and this session's principal does not have the deploy permission` : null;
}

const pkt = (payload: Buffer | string): Buffer => {
  const b = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "utf8");
  return Buffer.concat([Buffer.from((b.length + 4).toString(16).padStart(4, "0"), "latin1"), b]);
};

/**
 * A receive-pack answer that rejects every ref with `reason`, in the form the client asked for
 * (report-status, side-band), so git prints `! [remote rejected] HEAD -> main (reason)` and
 * `remote: …` instead of a bare HTTP 403. Null when the request cannot be read (answer 403 then).
 */
export function rejectionReport(body: Buffer, contentEncoding: string | undefined, reason: string): Buffer | null {
  const cmds = readCommands(body, contentEncoding);
  if (!cmds || cmds.refs.length === 0) return null;
  const oneLine = reason.replace(/[\r\n]+/g, " ");
  const report = Buffer.concat([pkt("unpack ok\n"), ...cmds.refs.map((r) => pkt(`ng ${r} ${oneLine}\n`)), Buffer.from("0000")]);
  const sideband = cmds.caps.includes("side-band-64k") || cmds.caps.includes("side-band");
  if (!sideband) return report;
  const max = cmds.caps.includes("side-band-64k") ? 65515 : 995;
  const parts: Buffer[] = [pkt(Buffer.concat([Buffer.of(2), Buffer.from(`paddock: ${oneLine}\n`)]))];
  for (let i = 0; i < report.length; i += max) parts.push(pkt(Buffer.concat([Buffer.of(1), report.subarray(i, i + max)])));
  return Buffer.concat([...parts, Buffer.from("0000")]);
}
