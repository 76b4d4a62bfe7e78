import { randomBytes } from "node:crypto";
import { Matcher } from "../src/gateway/matcher.ts";
const secrets = ["sk_live_51HxREALstripeSECRETvalue0001","ghp_REALgithubTOKENvalue00000000000002","https://f00dREALsentryKEY0003@o1.ingest.sentry.io/42","f00dREALsentryKEY0003","REALdbPASSWORD0004","qk_REALqueryKEYvalue0005"];
const m = new Matcher(secrets.map((s, i) => ({ secret: Buffer.from(s), placeholder: Buffer.from(`paddock-ph-${i}`) }))) as any;
const N = 64 << 20;
const body = randomBytes(N);
const time = (name: string, f: (b: Buffer) => void) => {
  const t = process.cpuUsage();
  for (let i = 0; i < N; i += 65536) f(body.subarray(i, i + 65536));
  const u = process.cpuUsage(t); console.log(name, ((u.user + u.system) / 1000).toFixed(1), "ms");
};
for (let r = 0; r < 3; r++) {
  time("sample", (b) => m.sample(b, [], false));
  time("escapes", (b) => m.find(b, false));
  time("runs", (b) => m.find(b, false));
  time("find", (b) => m.find(b, false));
  time("indexOf3", (b) => { for (const c of [37, 38, 92]) for (let p = b.indexOf(c); p >= 0; p = b.indexOf(c, p + 1)); });
}
