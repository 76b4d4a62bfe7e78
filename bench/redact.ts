/**
 * Response redaction throughput (issue 9): a 64 MiB body through RedactStream in 64 KiB chunks,
 * with the five secrets of test/gateway/helpers.ts registered (six values: the Sentry DSN and its
 * key), for several kinds of body. Single process, no network: the cost redaction adds per byte,
 * in MiB per second of this process's CPU time (best of 3), which other load on the machine
 * disturbs less than wall time. Usage: node --import tsx bench/redact.ts [--mib N] [--module PATH]
 * (`--module` measures another redact.ts with the same exports, e.g. an older version).
 */
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
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

function run(body: Buffer): number {
  const s = new RedactStream(reps);
  let out = 0;
  s.on("data", (c: Buffer) => (out += c.length));
  const t0 = process.cpuUsage();
  for (let i = 0; i < body.length; i += CHUNK) s.write(body.subarray(i, i + CHUNK));
  s.end();
  const used = process.cpuUsage(t0);
  const secs = (used.user + used.system) / 1e6;
  if (out !== body.length) throw new Error(`output length ${out} != ${body.length}: a false rewrite`);
  return body.length / 2 ** 20 / secs;
}

const results: Record<string, number> = {};
for (const [name, body] of Object.entries(bodies)) {
  run(body.subarray(0, 4 << 20)); // warm up
  const best = Math.max(run(body), run(body), run(body));
  results[name] = Math.round(best);
  process.stdout.write(`${name.padEnd(40)} ${results[name]} MiB/s\n`);
}
