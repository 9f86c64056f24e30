// SHA-256 of files and streams, for everything fmc checks by checksum: backups and their
// .sha256 files, K3s bundles and their release checksum files.
import { createHash } from "node:crypto";
import { closeSync, createReadStream, openSync, readSync } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";

/** A stream's SHA-256 and length as it passes, with a callback per chunk (a throw there fails the stream). */
export class Digest extends Transform {
  private readonly h = createHash("sha256");
  bytes = 0;
  constructor(private readonly onChunk?: (bytes: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    this.h.update(chunk);
    this.bytes += chunk.length;
    try {
      this.onChunk?.(this.bytes);
    } catch (e) {
      done(e as Error);
      return;
    }
    done(null, chunk);
  }
  hex(): string {
    return this.h.digest("hex");
  }
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** The same, synchronously and in 4 MiB reads (an images tarball is 150-250 MB). */
export function sha256FileSync(path: string): string {
  const h = createHash("sha256");
  const buf = Buffer.alloc(4 << 20);
  const fd = openSync(path, "r");
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}
