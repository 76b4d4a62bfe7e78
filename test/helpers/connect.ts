/** Connect protocol framing for tests that speak to the E2B front end's envd services directly. */

export type Json = Record<string, unknown>;

/** One enveloped message: a flags byte (0x02: end of stream), a 4-byte big-endian length, the JSON. */
export function envelope(flags: number, json: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(json));
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Enveloped messages of a streaming response, read as they come. */
export async function* envelopes(body: ReadableStream<Uint8Array>): AsyncGenerator<{ end: boolean; msg: Json }> {
  let buf = Buffer.alloc(0);
  const reader = body.getReader();
  for (;;) {
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const len = buf.readUInt32BE(1);
      const end = (buf.readUInt8(0) & 0x02) !== 0;
      const msg = JSON.parse(buf.subarray(5, 5 + len).toString("utf8")) as Json;
      buf = buf.subarray(5 + len);
      yield { end, msg };
    }
    const { done, value } = await reader.read();
    if (done) return;
    buf = Buffer.concat([buf, Buffer.from(value)]);
  }
}
