import net from "node:net";

export interface RawResponse {
  /** 0 when the server closed the connection without answering. */
  status: number;
  /** Everything the server sent (status line, headers, body). */
  text: string;
  /** The body (after the blank line), not de-chunked. */
  body: string;
}

/**
 * Send bytes a well-behaved HTTP client would refuse to (bad percent-encoding, huge header
 * lines, garbage) and read the answer until the server closes the connection (send
 * `Connection: close`). A 101 answer is cut off after its headers. Rejects after `timeoutMs`.
 */
export function rawRequest(url: string, request: string | Buffer, timeoutMs = 10_000): Promise<RawResponse> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms to ${JSON.stringify(request.slice(0, 120).toString())}`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("latin1");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      const at = text.indexOf("\r\n\r\n");
      resolve({ status, text, body: at < 0 ? "" : text.slice(at + 4) });
    };
    sock.on("data", (b: Buffer) => {
      chunks.push(b);
      const head = Buffer.concat(chunks).toString("latin1");
      if (head.startsWith("HTTP/1.1 101") && head.includes("\r\n\r\n")) sock.destroy();
    });
    // Written in one go: the server may answer (and close) before reading all of a refused request.
    sock.on("connect", () => sock.write(request));
    sock.on("error", () => undefined); // ECONNRESET after the server answered and closed: still an answer
    sock.on("close", finish);
  });
}
