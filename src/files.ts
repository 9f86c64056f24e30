// Reading what fmc did not write itself, or wrote but must not trust: the spec and key
// files, the state files and the render manifest (a shared repository can carry a link
// there), and a secret piped on stdin. One reader with one set of guards, so no caller
// hangs on a FIFO, reads /dev/zero without end or allocates for a sparse file of gigabytes.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { FmcError } from "./errors.js";

/**
 * Reads a small regular file as UTF-8, refusing anything else with a coded error: a
 * directory, a device (/dev/zero would grow without end), a FIFO (opened without
 * blocking, refused by its type before any read), a symlink loop, an unreadable file, more
 * than `max` bytes (checked before reading, and again while reading), invalid UTF-8.
 * Error codes: FILE_NOT_FOUND, FILE_NOT_REGULAR, FILE_TOO_LARGE, FILE_ENCODING,
 * FILE_SYMLINK_LOOP, FILE_UNREADABLE, FILE_IO.
 */
export function readSmallTextFile(path: string, what: string, max: number): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw fileError(e as NodeJS.ErrnoException, path, what);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new FmcError("FILE_NOT_REGULAR", `${what} ${path} is a directory`, "name a file");
    if (!st.isFile()) throw new FmcError("FILE_NOT_REGULAR", `${what} ${path} is not a regular file (a device, FIFO or socket)`, "name a regular file");
    if (st.size > max) throw new FmcError("FILE_TOO_LARGE", `${what} ${path} is ${st.size} bytes; the limit is ${max}`, "is this the right file?");
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (let got = -1; got !== 0 && n <= max; n += got) got = readSync(fd, buf, n, buf.length - n, null);
    if (n > max) throw new FmcError("FILE_TOO_LARGE", `${what} ${path} is larger than ${max} bytes`, "is this the right file?");
    return decodeUtf8(buf.subarray(0, n), path, what);
  } catch (e) {
    if (e instanceof FmcError) throw e;
    throw fileError(e as NodeJS.ErrnoException, path, what);
  } finally {
    closeSync(fd);
  }
}

function decodeUtf8(bytes: Buffer, path: string, what: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    // find the first bad byte for the message: decode growing prefixes is O(n^2); scan instead
    const at = firstInvalidUtf8(bytes);
    const before = bytes.subarray(0, at);
    const line = before.filter((b) => b === 0x0a).length + 1;
    throw new FmcError("FILE_ENCODING", `${what} ${path}: byte 0x${bytes[at]!.toString(16).padStart(2, "0")} at line ${line} is not valid UTF-8`, "save the file as UTF-8");
  }
}

/** Offset of the first byte that does not start or continue a valid UTF-8 sequence. */
function firstInvalidUtf8(b: Buffer): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    const len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len === 0 || i + len > b.length) return i;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(i, i + len));
    } catch {
      return i;
    }
    i += len;
  }
  return 0;
}

function fileError(e: NodeJS.ErrnoException, path: string, what: string): FmcError {
  switch (e.code) {
    case "ENOENT":
      return new FmcError("FILE_NOT_FOUND", `${what} ${path} does not exist`);
    case "ELOOP":
      return new FmcError("FILE_SYMLINK_LOOP", `${what} ${path} is a symlink loop`, "point the link at a real file");
    case "EACCES":
    case "EPERM":
      return new FmcError("FILE_UNREADABLE", `${what} ${path} is not readable by this user`, "check its permissions (ls -l)");
    case "EISDIR":
      return new FmcError("FILE_NOT_REGULAR", `${what} ${path} is a directory`, "name a file");
    case "ENOTDIR":
      return new FmcError("FILE_NOT_FOUND", `${what} ${path} does not exist (a parent is not a directory)`);
    case "ENAMETOOLONG":
      return new FmcError("FILE_NOT_FOUND", `${what} path is too long`);
    default:
      return new FmcError("FILE_IO", `${what} ${path}: ${e.message}`);
  }
}

/**
 * Reads stdin to its end as UTF-8, at most `max` bytes: a pipe, a file or a device
 * (< /dev/zero) that gives more stops the read there with FILE_TOO_LARGE, never grows
 * without bound.
 */
export async function readStdin(what: string, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    n += (c as Buffer).length;
    if (n > max) {
      process.stdin.destroy();
      throw new FmcError("FILE_TOO_LARGE", `${what} on stdin is larger than ${max} bytes`, "pipe in the value alone, e.g. from a file: < token.txt");
    }
  }
  return decodeUtf8(Buffer.concat(chunks), "on stdin", what);
}
