/**
 * The apps the browser tests run inside sessions, written with python3's standard library only
 * (the sandbox has no npm packages for them), and the calls that start them and wait for them.
 */
import assert from "node:assert/strict";
import type { PaddockClient } from "../../src/client/index.ts";
import { until } from "../helpers/wait.ts";

/** The page `python3 -m http.server` serves from /workspace in the preview tests. */
export const INDEX_HTML = (heading: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${heading}</title></head>
<body><main><h1>${heading}</h1><p>Served by python3 -m http.server inside a Paddock session.</p></main></body></html>
`;

/**
 * An HTTP server on `port` that serves a page at `/` and a WebSocket echo at `/ws`: the page
 * opens a WebSocket back to its own origin (whatever host the browser reached it by), sends
 * `ping from <host>`, and shows what comes back (`echo: ping from <host>`) in `#out`.
 */
export const WS_ECHO_PY = `import asyncio, base64, hashlib, struct, sys

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WebSocket echo</title></head>
<body><main><h1>WebSocket echo</h1><p id="out">connecting</p>
<script>
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = () => ws.send("ping from " + location.host);
ws.onmessage = (e) => { document.getElementById("out").textContent = e.data; };
ws.onerror = () => { document.getElementById("out").textContent = "websocket error"; };
</script></main></body></html>"""
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def frame(opcode, payload):
    n = len(payload)
    head = bytes([0x80 | opcode, n]) if n < 126 else bytes([0x80 | opcode, 126]) + struct.pack(">H", n)
    return head + payload

async def websocket(reader, writer, key):
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + b"\\r\\n\\r\\n")
    while True:
        b0, b1 = await reader.readexactly(2)
        opcode, n = b0 & 15, b1 & 127
        if n == 126:
            n = struct.unpack(">H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4) if b1 & 128 else b"\\0\\0\\0\\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(n)))
        if opcode == 8:
            writer.write(frame(8, b""))
            return
        if opcode == 9:
            writer.write(frame(10, data))
        elif opcode == 1:
            writer.write(frame(1, b"echo: " + data))
        await writer.drain()

async def handle(reader, writer):
    try:
        head = (await reader.readuntil(b"\\r\\n\\r\\n")).decode("latin-1").split("\\r\\n")
        path = head[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
            await websocket(reader, writer, headers["sec-websocket-key"])
        else:
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/html; charset=utf-8\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n" % len(PAGE) + PAGE)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", int(sys.argv[1]))
    async with server:
        await server.serve_forever()

asyncio.run(main())
`;

/** Start `command` in the background in a session (it outlives the exec), then wait until `port` answers HTTP there. */
export async function startApp(client: PaddockClient, session: string, command: string, port: number): Promise<void> {
  const r = await client.sessions.run(session, { argv: ["sh", "-c", `cd /workspace && nohup ${command} >/tmp/app-${port}.log 2>&1 </dev/null &`] });
  assert.equal(r.exitCode, 0, r.stderr);
  const probe = `import urllib.request; urllib.request.urlopen("http://127.0.0.1:${port}/", timeout=2)`;
  await until(async () => (await client.sessions.run(session, { argv: ["python3", "-c", probe] })).exitCode === 0, 20_000, `${command} to answer on port ${port} in ${session}`);
}
