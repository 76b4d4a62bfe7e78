const mod = await import(process.argv[2]!);
const secrets = ["sk_live_51HxREALstripeSECRETvalue0001","ghp_REALgithubTOKENvalue00000000000002","https://f00dREALsentryKEY0003@o1.ingest.sentry.io/42","f00dREALsentryKEY0003","REALdbPASSWORD0004","qk_REALqueryKEYvalue0005"];
for (let r = 0; r < 5; r++) {
  const t = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) { const reps = mod.replacementsFor(secrets.map((secret: string, i: number) => ({ secret, placeholder: `paddock-ph-${String(i).padStart(32, "0")}` }))); for (let h = 0; h < 8; h++) mod.redactText("application/json; charset=utf-8", reps); }
  console.log("old per response (8 headers) µs", Number(process.hrtime.bigint() - t) / 1e6);
}
