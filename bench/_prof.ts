import { randomBytes } from "node:crypto";
import { Redactor } from "../src/gateway/redact.ts";
const secrets = ["sk_live_51HxREALstripeSECRETvalue0001","ghp_REALgithubTOKENvalue00000000000002","https://f00dREALsentryKEY0003@o1.ingest.sentry.io/42","f00dREALsentryKEY0003","REALdbPASSWORD0004","qk_REALqueryKEYvalue0005"];
const r = new Redactor(secrets.map((s, i) => ({ from: Buffer.from(s), to: Buffer.from(`paddock-ph-${String(i).padStart(32, "0")}`) })));
const kind = process.argv[2];
const N = 64 << 20;
const fill = (u: string) => { const b = Buffer.from(u); const o = Buffer.alloc(N); for (let i = 0; i < N; i += b.length) b.copy(o, i); return o; };
const body = kind === "url" ? fill("name=Sample+customer&email=someone%40example.com&url=https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc&x=%E2%9C%93&") : kind === "html" ? fill("<p class=\"x\">Tom &amp; Jerry &lt;3 &#8212; caf&eacute; <a href=\"/a?b=1&amp;c=2\">link</a></p>\n") : kind === "a" ? Buffer.alloc(N, 97) : randomBytes(N);
const m = (r as any).matcher;
console.log("stride", m.stride, "grams", m.grams.size, "keep", r.keep);
for (let rep = 0; rep < 3; rep++) {
  const t = process.hrtime.bigint();
  let found = 0;
  for (let i = 0; i < N; i += 65536) found += m.find(body.subarray(i, i + 65536 + 1000), false).length;
  console.log(kind, found, (64 / (Number(process.hrtime.bigint() - t) / 1e9)).toFixed(0), "MiB/s");
}
for (const part of ["sample", "intro"]) {
  const t = process.hrtime.bigint();
  const out: unknown[] = [];
  for (let i = 0; i < N; i += 65536) {
    const b = body.subarray(i, i + 65536 + 1000);
    if (part === "sample") m.sample(b, out, false);
    else m.escapes(b, false, out);
  }
  console.log(part, (64 / (Number(process.hrtime.bigint() - t) / 1e9)).toFixed(0), "MiB/s");
}
