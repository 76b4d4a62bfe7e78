/**
 * Reading a file given by a user, bounded by the bytes actually read. `stat().size` cannot bound
 * it: it is 0 for /dev/zero, pipes and FIFOs, and a file can grow after it was measured.
 */
import { createReadStream } from "node:fs";

/**
 * Reads at most `maxBytes` bytes of `path` (a regular file, a device, a pipe or FIFO; a FIFO's
 * open waits for a writer, as `cat` does). Stops after `maxBytes + 1` bytes.
 *
 * @returns the bytes, or null when there are more than `maxBytes`.
 * @throws the file system's error (ENOENT, EACCES, EISDIR, …) as it comes.
 */
export async function readAtMost(path: string, maxBytes: number): Promise<Buffer | null> {
  // `end` is inclusive: one byte past the limit is enough to know the file is too large.
  const stream = createReadStream(path, { end: maxBytes, highWaterMark: 64 * 1024 });
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) return null;
      chunks.push(chunk);
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks, total);
}
