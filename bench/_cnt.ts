import { Redactor, replacementsFor } from "../src/gateway/redact.ts";
const secrets = ["sk_live_51HxREALstripeSECRETvalue0001","ghp_REALgithubTOKENvalue00000000000002","https://f00dREALsentryKEY0003@o1.ingest.sentry.io/42","f00dREALsentryKEY0003","REALdbPASSWORD0004","qk_REALqueryKEYvalue0005"];
const reps = replacementsFor(secrets.map((secret, i) => ({ secret, placeholder: `paddock-ph-${String(i).padStart(32, "0")}` })));
for (let r = 0; r < 5; r++) {
  const t = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) { const x = new Redactor(reps); x.text("application/json; charset=utf-8"); x.nameLeaks("content-type"); }
  console.log("per response µs", Number(process.hrtime.bigint() - t) / 1e6);
}
const one = replacementsFor([{ secret: "sk_live_benchmarkSecretValue000000", placeholder: "paddock-ph-00000000000000000000000000000000" }]);
for (let r = 0; r < 3; r++) {
  const t = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) { const x = new Redactor(one); x.text("application/json; charset=utf-8"); x.nameLeaks("content-type"); }
  console.log("1 secret per response µs", Number(process.hrtime.bigint() - t) / 1e6);
}
