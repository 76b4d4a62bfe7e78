import { randomBytes } from "node:crypto";
import { RedactStream, replacementsFor } from "../src/gateway/redact.ts";
const secrets = ["sk_live_51HxREALstripeSECRETvalue0001","ghp_REALgithubTOKENvalue00000000000002","https://f00dREALsentryKEY0003@o1.ingest.sentry.io/42","f00dREALsentryKEY0003","REALdbPASSWORD0004","qk_REALqueryKEYvalue0005"];
const reps = replacementsFor(secrets.map((secret, i) => ({ secret, placeholder: `paddock-ph-${String(i).padStart(32, "0")}` })));
const N = 64 << 20;
const fill = (u: string) => { const b = Buffer.from(u); const o = Buffer.alloc(N); for (let i = 0; i < N; i += b.length) b.copy(o, i); return o; };
const k = process.argv[2];
const body = k === "url" ? fill("name=Sample+customer&email=someone%40example.com&url=https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc&x=%E2%9C%93&") : k === "html" ? fill("<p class=\"x\">Tom &amp; Jerry &lt;3 &#8212; caf&eacute; <a href=\"/a?b=1&amp;c=2\">link</a></p>\n") : k === "a" ? Buffer.alloc(N, 97) : k === "json" ? fill('{"id":"evt_1NqXb2","object":"event","created":1700000000,"data":{"name":"Sample customer","email":"someone@example.com","url":"https://example.com/a?b=c&d=e"}},\n') : randomBytes(N);
for (let r = 0; r < 4; r++) {
  const s = new RedactStream(reps); let out = 0; s.on("data", (c: Buffer) => (out += c.length));
  const t = process.hrtime.bigint();
  for (let i = 0; i < N; i += 65536) s.write(body.subarray(i, i + 65536));
  s.end();
  console.log(k, out === N, (64 / (Number(process.hrtime.bigint() - t) / 1e9)).toFixed(0));
}
