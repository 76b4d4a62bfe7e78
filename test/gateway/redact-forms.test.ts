// Response redaction of every covered form (issue 9, docs/gateway.md "Redaction"): each defect the
// attack review found as an example, then properties: any covered encoding of a random secret,
// in random surroundings, split at random chunk boundaries, never arrives; and data holding no
// secret passes through byte for byte.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RedactStream, redactText, replaceAll, replacementsFor, type Replacement } from "../../src/gateway/redact.ts";
import { around, base64Of, chunked, decodeEscapes, escape, escapesFor, hexOf, secretOf, withBreaks, type Escape } from "./encodings.ts";

const PH = "paddock-ph-0123456789abcdef0123456789abcdef";
// Through the API the gateway had before this change too (replacementsFor, redactText, replaceAll,
// RedactStream), so each example fails on the old code by its assertion, not by an import.
const redactor = (secret: string, placeholder = PH): { reps: Replacement[]; text: (s: string) => string; buffer: (b: Buffer) => Buffer } => {
  const reps = replacementsFor([{ secret, placeholder }]);
  return { reps, text: (s) => redactText(s, reps), buffer: (b) => replaceAll(b, reps) };
};

async function streamed(r: { reps: Replacement[] }, chunks: Buffer[]): Promise<Buffer> {
  const s = new RedactStream(r.reps);
  const out: Buffer[] = [];
  s.on("data", (c: Buffer) => out.push(c));
  const done = new Promise((resolve, reject) => (s.on("end", resolve), s.on("error", reject)));
  for (const c of chunks) s.write(c);
  s.end();
  await done;
  return Buffer.concat(out);
}

const lowerPercent = (s: string): string => encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
const has = (hay: Buffer | string, needle: string): boolean => Buffer.from(hay as string).includes(Buffer.from(needle));

void describe("redaction: the forms the attack review found reaching the sandbox", () => {
  const secret = "sk_live_51Hx/REAL+str=ipe&SECRET<v>'a\"lue%0001";
  const r = redactor(secret);
  const cases: [string, string][] = [
    ["percent-encoding, lower-case hex (.NET)", `cb?t=${lowerPercent(secret)}&x=1`],
    ["percent-encoding of some characters (Python quote)", `/p/${encodeURIComponent(secret).replace(/%2F/g, "/")}`],
    ["percent-encoding of every byte", [...Buffer.from(secret)].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("")],
    ["JSON with \\/ (PHP)", JSON.stringify({ k: secret }).replace(/\//g, "\\/")],
    ["JSON \\u00XX for every character, both cases", [...secret].map((c, i) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`[i % 2 ? "toUpperCase" : "toLowerCase"]().replace("\\U", "\\u")).join("")],
    ["HTML decimal references with leading zeros", [...secret].map((c) => `&#0${c.charCodeAt(0)};`).join("")],
    ["HTML hex references, &#x and &#X", [...secret].map((c, i) => `&#${i % 2 ? "X" : "x"}${c.charCodeAt(0).toString(16)};`).join("")],
    ["HTML named references (html.escape)", secret.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;")],
    ["a mixture of all three", "sk_live%5f51Hx\\/REAL&#43;str&#x3d;ipe&amp;SECRET\\u003cv&gt;\\x27a&quot;lue%250001"],
    ["hex, lower case", Buffer.from(secret).toString("hex")],
    ["hex, upper case", Buffer.from(secret).toString("hex").toUpperCase()],
    ["hex, mixed case", Buffer.from(secret).toString("hex").replace(/[a-f]/g, (c, i: number) => (i % 3 ? c : c.toUpperCase()))],
    ["base64 in MIME lines (76, CRLF)", base64Of(Buffer.from(`attachment ${secret} end`), false, true, 76, true)],
    ["base64 in PEM lines (64, LF)", base64Of(Buffer.from(`x${secret}`.repeat(3)), false, true, 64, false)],
    ["base64url without padding, every alignment", ["", "a", "ab"].map((p) => base64Of(Buffer.from(p + secret), true, false, 0, false)).join(".")],
  ];
  for (const [name, text] of cases) {
    void it(name, () => {
      const out = r.text(text);
      assert.notEqual(out, text, "nothing was replaced");
      const bytes = Buffer.from(out, "latin1");
      assert.ok(!has(bytes, secret), out);
      for (const plus of [false, true]) assert.ok(!decodeEscapes(bytes, plus).includes(Buffer.from(secret)), out);
      assert.ok(!out.toLowerCase().replace(/\r?\n/g, "").includes(Buffer.from(secret).toString("hex")), out);
      for (const blob of out.replace(/\r?\n/g, "").split(/[^A-Za-z0-9+/=_-]/)) assert.ok(!Buffer.from(blob, "base64").includes(Buffer.from(secret)), out);
    });
  }

  void it("replaces a match by the placeholder in the same form", () => {
    const url = "https://user:p4ss/word@db.example/x";
    const u = redactor(url, "https://paddock-ph-00:paddock-ph-11@db.example/x");
    assert.equal(u.text(`next=${lowerPercent(url)}`), `next=${encodeURIComponent("https://paddock-ph-00:paddock-ph-11@db.example/x")}`);
    assert.equal(r.text(`"${JSON.stringify(secret).slice(1, -1).replace(/\//g, "\\/")}"`), `"${PH}"`);
    assert.equal(r.text(Buffer.from(secret).toString("hex").toUpperCase()), Buffer.from(PH).toString("hex").toUpperCase());
    assert.equal(r.text(Buffer.from(`u:${secret}`).toString("base64")), Buffer.from(`u:${PH}`).toString("base64"));
    assert.equal(r.text(`Basic ${Buffer.from(`u:${secret}`).toString("base64url")};`), `Basic ${Buffer.from(`u:${PH}`).toString("base64url")};`);
    const mime = base64Of(Buffer.from(`a ${secret} b`), false, true, 76, true);
    assert.equal(Buffer.from(r.text(mime).replace(/\r\n/g, ""), "base64").toString(), `a ${PH} b`);
  });

  void it("streamed text is released as it comes: only a possible start of a match is held back", async () => {
    const s = new RedactStream(r.reps);
    const out: Buffer[] = [];
    s.on("data", (c: Buffer) => out.push(c));
    const event = 'data: {"type":"content_block_delta","delta":{"text":"Hello, world"}}\n\n';
    s.write(Buffer.from(event));
    assert.equal(Buffer.concat(out).toString(), event);
    s.write(Buffer.from(`data: {"text":"${secret.slice(0, 20)}`));
    s.end(Buffer.from(`${secret.slice(20)}"}\n\n`));
    await new Promise((resolve) => s.on("end", resolve));
    assert.equal(Buffer.concat(out).toString(), `${event}data: {"text":"${PH}"}\n\n`);
  });

  void it("a numeric reference or escape cut off by the end of the body still counts", async () => {
    for (const tail of ["&#49", "&#x31", "%31"]) {
      const body = Buffer.from(`x ${secret.slice(0, -1)}${tail}`);
      assert.ok(!has(await streamed(r, [body]), secret.slice(0, -1)), tail);
    }
  });
});

/** Any per-character mixture of the escape family for `secret`. */
const mixture = (secret: string): fc.Arbitrary<string> =>
  fc.tuple(...[...secret].map((ch) => fc.tuple(fc.constantFrom(...escapesFor(ch)), fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }), fc.integer({ min: 0, max: 3 })).map(([how, upper, zeros]) => escape(ch, how as Escape, upper, zeros)))).map((parts) => parts.join(""));

/** A secret in any covered form: an escape mixture, hex, or base64 (both with line breaks). */
const anyForm = (secret: string): fc.Arbitrary<string> =>
  fc.oneof(
    mixture(secret),
    fc.tuple(fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 3 }), fc.boolean()).map(([u, breaks, crlf]) => hexOf(Buffer.from(secret), u, breaks, crlf)),
    fc.tuple(fc.uint8Array({ maxLength: 4 }), fc.boolean(), fc.integer({ min: 0, max: 80 }), fc.boolean()).map(([pre, url, width, crlf]) => base64Of(Buffer.concat([pre, Buffer.from(secret)]), url, !url, width < 8 ? 0 : width, crlf)),
  );

/** `out` holds `secret` in none of the forms, decoded as a client would (one layer). */
function assertNoForm(out: Buffer, secret: string): void {
  const bytes = Buffer.from(secret);
  const flat = out.toString("latin1");
  assert.ok(!out.includes(bytes) && !decodeEscapes(out, false).includes(bytes) && !decodeEscapes(out, true).includes(bytes), flat);
  const joined = flat.replace(/\r?\n/g, "");
  assert.ok(!joined.toLowerCase().includes(bytes.toString("hex")), flat);
  assert.ok(!joined.split(/[^A-Za-z0-9+/=_-]/).some((b) => Buffer.from(b, "base64").includes(bytes)), flat);
}

const cuts = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 });
/** Text without escapes before the secret: long enough (> 8 KiB) for the scan to take its indexOf path. */
const filler = fc.constantFrom(0, 0, 10_000).map((n) => "lorem ipsum, dolor sit amet. ".repeat(Math.ceil(n / 29)));
const oneByteChunks = fc.boolean();

void describe("redaction properties (fast-check)", () => {
  void it("no per-character mixture of percent, JSON and HTML escapes gets through, however chunked", async () => {
    await fc.assert(
      fc.asyncProperty(
        secretOf(4, 40).chain((secret) => fc.tuple(fc.constant(secret), mixture(secret), around, around, cuts, oneByteChunks, filler)),
        async ([secret, encoded, before, after, cut, bytewise, fill]) => {
          const r = redactor(secret);
          const input = Buffer.from(fill + before + encoded + after);
          const chunks = bytewise && fill === "" ? [...input].map((b) => Buffer.from([b])) : chunked(input, cut);
          const out = await streamed(r, chunks);
          assert.ok(!out.includes(Buffer.from(secret)), "raw");
          for (const plus of [false, true]) assert.ok(!decodeEscapes(out, plus).includes(Buffer.from(secret)), `decoded: ${out.toString()}`);
          assert.ok(decodeEscapes(out, false).includes(Buffer.from(PH)), "the placeholder, decodable");
          assert.deepEqual(out, r.buffer(input), "chunking changes nothing");
        },
      ),
      { numRuns: 2000 },
    );
  });

  void it("no hex form gets through: any case, line breaks, any chunks", async () => {
    await fc.assert(
      fc.asyncProperty(secretOf(8, 40), fc.array(fc.boolean(), { minLength: 1, maxLength: 9 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), fc.boolean(), around, around, cuts, filler, async (secret, upper, breaks, crlf, before, after, cut, fill) => {
        const r = redactor(secret);
        const input = Buffer.from(fill + before + hexOf(Buffer.from(secret), upper, breaks, crlf) + after);
        const out = await streamed(r, chunked(input, cut));
        assert.ok(!out.toString("latin1").replace(/\r?\n/g, "").toLowerCase().includes(Buffer.from(secret).toString("hex")), out.toString());
        assert.ok(out.toString("latin1").replace(/\r?\n/g, "").toLowerCase().includes(Buffer.from(PH).toString("hex")));
      }),
      { numRuns: 1000 },
    );
  });

  void it("no base64 form gets through: both alphabets, padded or not, any alignment, line breaks", async () => {
    const lineBreaks = fc.oneof(fc.constantFrom(0, 64, 76), fc.integer({ min: 4, max: 80 }));
    await fc.assert(
      fc.asyncProperty(secretOf(16, 48), fc.uint8Array({ maxLength: 7 }), fc.array(fc.uint8Array({ maxLength: 9 }), { minLength: 1, maxLength: 3 }), fc.boolean(), fc.boolean(), lineBreaks, fc.boolean(), cuts, filler, async (secret, pre, posts, url, pad, width, crlf, cut, fill) => {
        const r = redactor(secret);
        const blob = base64Of(Buffer.concat([pre, ...posts.flatMap((post) => [Buffer.from(secret), post])]), url, pad, width, crlf);
        const input = Buffer.from(`${fill}{"data": "${blob}"}`);
        const out = (await streamed(r, chunked(input, cut))).toString("latin1");
        assert.ok(out.startsWith(`${fill}{"data": "`) && out.endsWith('"}'), out);
        const decoded = Buffer.from(out.slice(fill.length + 10, -2).replace(/\r?\n/g, ""), "base64");
        assert.ok(!decoded.includes(Buffer.from(secret)), out);
        assert.ok(decoded.includes(Buffer.from(PH)), out);
        if ((PH.length - Buffer.byteLength(secret)) % 3 === 0 || out.length < 400) assert.ok(decoded.subarray(0, pre.length).equals(Buffer.from(pre)));
      }),
      { numRuns: 1600 },
    );
  });

  void it("short secrets: base64 without line breaks, any alignment", () => {
    fc.assert(
      fc.property(secretOf(7, 15), fc.uint8Array({ maxLength: 5 }), fc.boolean(), (secret, pre, url) => {
        const blob = base64Of(Buffer.concat([pre, Buffer.from(secret), Buffer.from("!")]), url, !url, 0, false);
        const decoded = Buffer.from(redactor(secret).text(` ${blob} `).trim(), "base64");
        assert.ok(!decoded.includes(Buffer.from(secret)) && decoded.includes(Buffer.from(PH)));
      }),
      { numRuns: 300 },
    );
  });

  void it("data that holds no secret passes through byte for byte", async () => {
    const soup = fc.array(fc.constantFrom("%2F", "%2f", "%41", "+", "&amp;", "&#47;", "&#x2F", "\\u0041", "\\/", "\\", "&", "%", "abc", "Zm9vYmFy", "0a1B2c", "\r\n", "==", "sk_live_", "\u00e9"), { maxLength: 300 }).map((a) => Buffer.from(a.join("")));
    await fc.assert(
      fc.asyncProperty(fc.array(secretOf(12, 40), { minLength: 1, maxLength: 5 }), fc.oneof(fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)), soup), cuts, async (secrets, body, cut) => {
        const r = { reps: replacementsFor(secrets.map((secret, i) => ({ secret, placeholder: `paddock-ph-${i}` }))) };
        assert.deepEqual(await streamed(r, chunked(body, cut)), body);
      }),
      { numRuns: 400 },
    );
  });

  void it("several secrets, each in any form, one after the other: none gets through", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(secretOf(16, 32), { minLength: 2, maxLength: 4 }).chain((secrets) => fc.tuple(fc.constant(secrets), fc.array(fc.tuple(fc.constantFrom(...secrets.keys()), around), { minLength: 1, maxLength: 6 }).chain((order) => fc.tuple(...order.map(([i, gap]) => anyForm(secrets[i]!).map((p) => ` ${p} ${gap}`)))), cuts)),
        async ([secrets, pieces, cut]) => {
          const reps = replacementsFor(secrets.map((secret, i) => ({ secret, placeholder: `paddock-ph-${"0123456789abcdef"[i]!.repeat(32)}` })));
          const out = await streamed({ reps }, chunked(Buffer.from(pieces.join("")), cut));
          for (const secret of secrets) assertNoForm(out, secret);
        },
      ),
      { numRuns: 600 },
    );
  });

  void it("large chunks split inside the secret (the seam between what is held back and the next chunk)", async () => {
    await fc.assert(
      fc.asyncProperty(
        secretOf(16, 40).chain((secret) => fc.tuple(fc.constant(secret), anyForm(secret), fc.integer({ min: 3000, max: 9000 }), fc.integer({ min: 3000, max: 9000 }), fc.double({ min: 0, max: 1, noNaN: true }))),
        async ([secret, form, a, b, at]) => {
          const input = Buffer.from(`${"x ".repeat(a / 2)}"${form}"${" y".repeat(b / 2)}`);
          const cut = a + 1 + Math.floor(at * Buffer.byteLength(form));
          const out = await streamed(redactor(secret), [input.subarray(0, cut), input.subarray(cut)]);
          assertNoForm(out, secret);
        },
      ),
      { numRuns: 600 },
    );
  });

  void it("line breaks inside a raw secret of 16 bytes or more are caught too", () => {
    fc.assert(
      fc.property(secretOf(16, 40).filter((s) => !/[\r\n]/.test(s)), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 3 }), fc.boolean(), (secret, breaks, crlf) => {
        const out = redactor(secret).text(Buffer.from(`<${withBreaks(secret, breaks, crlf)}>`).toString("latin1"));
        assert.ok(!Buffer.from(out.replace(/\r?\n/g, ""), "latin1").includes(Buffer.from(secret)), out);
      }),
      { numRuns: 200 },
    );
  });
});
