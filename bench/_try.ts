import { Redactor, replacementsFor } from "../src/gateway/redact.ts";
const secret = "sk_live/51Hx+RE&AL<str>\"ipe'SEC=0001";
const ph = "paddock-ph-0123456789abcdef0123456789abcdef";
const r = new Redactor(replacementsFor([{ secret, placeholder: ph }]));
const b64 = (s: string) => Buffer.from(s).toString("base64");
const cases: Record<string, string> = {
  raw: `x ${secret} y`,
  lowerPct: `x ${encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())} y`,
  allPct: `x ${[...Buffer.from(secret)].map((b) => "%" + b.toString(16).padStart(2, "0")).join("")} y`,
  json: `{"k":${JSON.stringify(secret).replace(/\//g, "\\/")}}`,
  jsonU: `"${[...secret].map((c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0")).join("")}"`,
  htmlDec: `<p>${[...secret].map((c) => "&#0" + c.charCodeAt(0) + ";").join("")}</p>`,
  htmlHex: `<p>${[...secret].map((c) => "&#X" + c.charCodeAt(0).toString(16).toUpperCase() + ";").join("")}</p>`,
  htmlNamed: `<p>${secret.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;")}</p>`,
  mixed: `sk_live%2f51Hx\\u002bRE&amp;AL&#60;str&#x3E;\\"ipe\\x27SEC%3d0001`,
  hexLower: Buffer.from(secret).toString("hex"),
  hexMixed: Buffer.from(secret).toString("hex").replace(/[a-f]/g, (c, i) => (i % 2 ? c.toUpperCase() : c)),
  b64a0: b64(secret),
  b64a1: b64("u:" + secret + "!!"),
  b64a2: b64("uu:" + secret),
  mime: b64("header stuff " + secret + " trailing").replace(/.{8}/g, "$&\r\n"),
  url: Buffer.from("xx" + secret).toString("base64url"),
};
for (const [k, v] of Object.entries(cases)) {
  const out = r.text(v);
  console.log(k.padEnd(10), out === v ? "UNCHANGED" : "changed  ", JSON.stringify(out).slice(0, 160));
}
