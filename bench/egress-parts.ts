/**
 * The two servers of bench/egress.ts, each run as its own process so that client, gateway and
 * upstream do not share one event loop (as they would not in production): `upstream` serves
 * HTTPS :443 and HTTP :80 on 127.0.56.1; `gateway` runs a Paddock gateway on 127.0.0.1 with one
 * session registered for 127.0.0.1. Each prints one JSON line when ready, then runs until killed.
 */
import http from "node:http";
import https from "node:https";
import { readFile } from "node:fs/promises";
import { createGateway } from "../src/gateway/index.ts";

const [role, certDir] = process.argv.slice(2);
export const UP = "127.0.56.1";
export const NAME = "api.stripe.com";
const SECRET = "sk_live_benchmarkSecretValue000000";
const BIG = Buffer.alloc(1 << 20, 97);

if (role === "upstream" && certDir) {
  const cert = await readFile(`${certDir}/srv.pem`, "utf8");
  const key = await readFile(`${certDir}/srv.key`, "utf8");
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/big") return void res.end(BIG);
      if (req.url !== "/bulk") return void res.end("ok");
      // 64 MiB, written as the response drains: a bulk download, not a buffered one.
      let left = 64;
      const more = (): void => {
        while (left > 0) {
          left--;
          if (!res.write(BIG)) return void res.once("drain", more);
        }
        res.end();
      };
      more();
    });
  };
  const s1 = https.createServer({ cert, key, keepAlive: true }, handler);
  const s2 = http.createServer({ keepAlive: true }, handler);
  await Promise.all([new Promise<void>((r) => s1.listen(443, UP, r)), new Promise<void>((r) => s2.listen(80, UP, r))]);
  process.stdout.write(JSON.stringify({ ready: true }) + "\n");
} else if (role === "gateway" && certDir) {
  const ca = await readFile(`${certDir}/ca.pem`, "utf8");
  const gw = await createGateway({
    address: "127.0.0.1",
    secrets: { resolve: async () => SECRET, touch: () => undefined },
    onRecord: () => undefined,
    upstream: { extraCaPem: [ca], resolve: async () => [UP], trustedAddresses: [UP] },
  });
  const reg = await gw.register({
    id: "bench",
    sourceIp: "127.0.0.1",
    policy: { allow: [NAME], deny: ["*"] },
    secrets: [{ name: "STRIPE_API_KEY", hosts: [NAME], in: ["header"], kind: "http", cleartext: true }], // the HTTP figures swap over plain HTTP too
    scope: { environment: "bench" },
  });
  // SIGINT ends the process normally, so a --cpu-prof profile gets written.
  process.once("SIGINT", () => void gw.close().then(() => process.exit(0)));
  process.stdout.write(JSON.stringify({ endpoints: gw.endpoints, placeholder: reg.placeholders.STRIPE_API_KEY, caCertPem: reg.caCertPem }) + "\n");
}
