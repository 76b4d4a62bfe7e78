/**
 * Response redaction throughput (issue 9): a 64 MiB body through RedactStream in 64 KiB chunks,
 * with the five secrets of test/gateway/helpers.ts registered (six values: the Sentry DSN and its
 * key), for several kinds of body. Single process, no network: the cost redaction adds per byte,
 * in CPU milliseconds per MiB (p50/p99 over 4 MiB windows, printed as JSON) beside a PassThrough
 * stream as the same-run baseline; CPU time is disturbed less than wall time by other load. Usage: node --import tsx bench/redact.ts [--mib N] [--module PATH]
 * (`--module` measures another redact.ts with the same exports, e.g. an older version).
 */
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { PassThrough, type Transform } from "node:stream";
import { machine, summarize } from "./stats.ts";
import type { RedactStream as Stream, replacementsFor as For } from "../src/gateway/redact.ts";

const modulePath = process.argv.includes("--module") ? resolve(process.argv[process.argv.indexOf("--module") + 1]!) : "../src/gateway/redact.ts";
const { RedactStream, replacementsFor } = (await import(modulePath)) as { RedactStream: typeof Stream; replacementsFor: typeof For };

const mib = Number(process.argv[process.argv.indexOf("--mib") + 1]) || 64;
const SIZE = mib << 20;
const CHUNK = 64 << 10;
const secrets = [
  "sk_live_51HxREALstripeSECRETvalue0001",
  "ghp_REALgithubTOKENvalue00000000000002",
  "https://f00dREALsentryKEY0003@o1.ingest.sentry.io/42",
  "f00dREALsentryKEY0003",
  "REALdbPASSWORD0004",
  "qk_REALqueryKEYvalue0005",
];
const reps = replacementsFor(secrets.map((secret, i) => ({ secret, placeholder: `paddock-ph-${String(i).padStart(32, "0")}` })));

function fill(unit: string | Buffer): Buffer {
  const u = Buffer.isBuffer(unit) ? unit : Buffer.from(unit);
  const out = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += u.length) u.copy(out, i);
  return out;
}

const bodies: Record<string, Buffer> = {
  "random bytes": randomBytes(SIZE),
  "'a' repeated (bench/egress.ts /big)": Buffer.alloc(SIZE, 97),
  "JSON text": fill('{"id":"evt_1NqXb2","object":"event","created":1700000000,"data":{"name":"Sample customer","email":"someone@example.com","url":"https://example.com/a?b=c&d=e"}},\n'),
  "base64 MIME (76 col)": fill(Buffer.from(randomBytes(57 * 1000).toString("base64").replace(/.{76}/g, "$&\r\n"))),
  "HTML with entities": fill("<p class=\"x\">Tom &amp; Jerry &lt;3 &#8212; caf&eacute; <a href=\"/a?b=1&amp;c=2\">link</a></p>\n"),
  "URL-encoded form": fill("name=Sample+customer&email=someone%40example.com&url=https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc&x=%E2%9C%93&"),
};

/**
 * CPU milliseconds per MiB, one sample per 4 MiB window of the body, through `make()`'s stream.
 * The baseline is a PassThrough: what a stream stage costs before anything is looked at.
 */
function run(body: Buffer, make: () => Transform): number[] {
  const s = make();
  let out = 0;
  s.on("data", (c: Buffer) => (out += c.length));
  const samples: number[] = [];
  const WINDOW = 4 << 20;
  for (let w = 0; w < body.length; w += WINDOW) {
    const t0 = process.cpuUsage();
    for (let i = w; i < Math.min(body.length, w + WINDOW); i += CHUNK) s.write(body.subarray(i, i + CHUNK));
    const used = process.cpuUsage(t0);
    samples.push((used.user + used.system) / 1000 / (Math.min(WINDOW, body.length - w) / 2 ** 20));
  }
  s.end();
  if (out !== body.length) throw new Error(`output length ${out} != ${body.length}: a false rewrite`);
  return samples;
}

const results: { body: string; redact: ReturnType<typeof summarize> & { mibPerCpuSecond: number }; baseline: ReturnType<typeof summarize> }[] = [];
for (const [name, body] of Object.entries(bodies)) {
  run(body.subarray(0, 4 << 20), () => new RedactStream(reps)); // warm up
  const redact = summarize(`${name}: RedactStream`, [...run(body, () => new RedactStream(reps)), ...run(body, () => new RedactStream(reps))]);
  const baseline = summarize(`${name}: PassThrough (baseline)`, [...run(body, () => new PassThrough()), ...run(body, () => new PassThrough())]);
  results.push({ body: name, redact: { ...redact, mibPerCpuSecond: Math.round(1000 / redact.p50Ms) }, baseline });
  process.stderr.write(`${name.padEnd(40)} ${Math.round(1000 / redact.p50Ms)} MiB/s of CPU (p50 ${redact.p50Ms} ms/MiB, p99 ${redact.p99Ms}; baseline ${baseline.p50Ms})\n`);
}
process.stdout.write(JSON.stringify({ benchmark: "redact", machine: machine(), mib, secrets: secrets.length, unit: "CPU ms per MiB (p50/p99 over 4 MiB windows)", results }, null, 2) + "\n");
