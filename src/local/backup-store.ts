// Where backups are kept and how a file gets there: a directory on this machine or on the
// storage host, each file with a .sha256 beside it (sha256sum -c reads it). Shared by
// fmc backup postgres and fmc backup etcd; fmc restore postgres reads from the same stores.
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { PassThrough, Transform, type Readable, type TransformCallback, type Writable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { FmcError } from "../errors.js";
import { script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { Transport } from "../hosts/transport.js";
import { Digest, sha256File } from "./digest.js";

/** 2026-11-25T17:45:10.123Z -> 20261125T174510Z */
export function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/** A sha256sum line: "<hex>  <name>". */
export const checksumLine = (sha: string, name: string) => `${sha}  ${name}\n`;

function parseChecksum(text: string, name: string): string | undefined {
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line.trim());
    if (m && basename(m[2]!) === name) return m[1];
  }
  return undefined;
}

export interface BackupStore {
  /** For messages: a directory here, or host:path. */
  readonly where: string;
  list(): Promise<string[]>;
  /**
   * A stream to write `name` through; it fails (is destroyed with an error) as soon as the
   * store cannot take more. `commit` puts it in place only after it was all written, and
   * returns the SHA-256 of what landed; `abort` removes what was written and says why the
   * store's side failed, when it knows.
   */
  create(name: string): Promise<{ stream: Writable; commit(): Promise<string>; abort(): Promise<string | undefined> }>;
  writeText(name: string, text: string): Promise<void>;
  readText(name: string): Promise<string | undefined>;
  /** The file's bytes; the stream ends only when all of it was read, and fails when reading it fails. */
  open(name: string): Promise<Readable>;
  /** SHA-256 of a stored file, computed where it is kept. */
  sha256(name: string): Promise<string>;
  remove(name: string): Promise<void>;
}

export function localStore(dir: string): BackupStore {
  return {
    where: dir,
    list: async () => (existsSync(dir) ? readdirSync(dir) : []),
    async create(name) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // a database's contents are never meant to be committed with the spec beside them
      if (!existsSync(join(dir, ".gitignore"))) writeFileSync(join(dir, ".gitignore"), "# fmc backups: database contents, never committed\n*\n", { mode: 0o600 });
      const final = join(dir, name);
      const tmp = `${final}.partial`;
      const stream = createWriteStream(tmp, { mode: 0o600 });
      return {
        stream,
        async commit() {
          // the transport is done when the data left it; the file is done when it is closed
          await finished(stream);
          renameSync(tmp, final);
          return sha256File(final);
        },
        async abort() {
          stream.destroy();
          await finished(stream).catch(() => undefined);
          rmSync(tmp, { force: true });
          return undefined;
        },
      };
    },
    async writeText(name, text) {
      writeFileSync(join(dir, name), text, { mode: 0o600 });
    },
    readText: async (name) => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), "utf8") : undefined),
    open: async (name) => createReadStream(join(dir, name)),
    sha256: (name) => sha256File(join(dir, name)),
    async remove(name) {
      rmSync(join(dir, name), { force: true });
    },
  };
}

/** Backups on another host (the storage host), through its transport's streams. */
export function remoteStore(t: Transport, dir: string, timeoutMs: number): BackupStore {
  const run = async (body: string, what: string, stdin?: string) => {
    const r = await t.exec(script(body, what, stdin === undefined ? undefined : { data: stdin }), `backup: ${what}`);
    if (r.code !== 0) throw new FmcError("BACKUP_STORE", `${t.host}: ${what} failed (exit ${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  };
  const path = (name: string) => quote(`${dir}/${name}`);
  const stream = t.stream?.bind(t);
  if (!stream) throw new FmcError("BACKUP_STORE", `${t.host}: this connection cannot stream files`);
  return {
    where: `${t.host}:${dir}`,
    list: async () => (await run(`[ -d ${quote(dir)} ] && ls -1 ${quote(dir)} || true`, `list ${dir}`)).split("\n").filter(Boolean),
    async create(name) {
      const input = new PassThrough();
      const tmp = quote(`${dir}/${name}.partial`);
      const done = stream(script(`set -euo pipefail\nmkdir -p -m 0700 ${quote(dir)}\numask 077\ncat > ${tmp}`, `write ${dir}/${name}`), `backup: write ${name}`, { stdin: input, timeoutMs });
      const failed = (r: { code: number; stderr: string }) => `exit ${r.code}: ${r.stderr.trim()}`;
      // the writer stopped (a full disk, a lost connection): whoever feeds it hears at once
      // (through pipeline(); a failure after everything was written shows at commit)
      input.on("error", () => undefined);
      done.then(
        (r) => r.code !== 0 && input.destroy(new FmcError("BACKUP_STORE", `${t.host}: writing ${dir}/${name} failed (${failed(r)})`)),
        (e: Error) => input.destroy(e),
      );
      return {
        stream: input,
        async commit() {
          const r = await done;
          if (r.code !== 0) throw new FmcError("BACKUP_STORE", `${t.host}: writing ${dir}/${name} failed (exit ${r.code}): ${r.stderr.trim()}`);
          return (await run(`mv -f ${tmp} ${path(name)} && sha256sum ${path(name)} | cut -c1-64`, `keep ${name}`)).trim();
        },
        async abort() {
          input.destroy();
          const r = await done.catch((e: Error) => e);
          await run(`rm -f ${tmp}`, `remove ${name}.partial`).catch(() => undefined);
          return r instanceof Error ? r.message : r.code !== 0 ? `${t.host}: ${failed(r)}` : undefined;
        },
      };
    },
    writeText: async (name, text) => void (await run(`umask 077 && cat > ${path(name)}`, `write ${name}`, text)),
    async readText(name) {
      const out = await run(`if [ -f ${path(name)} ]; then cat ${path(name)}; else echo @absent; fi`, `read ${name}`);
      return out === "@absent\n" ? undefined : out;
    },
    async open(name) {
      // the transport ends what it writes into before the exit code is known: the file's
      // stream ends only after cat said it read all of it, and fails otherwise
      const read = new PassThrough();
      const out = new PassThrough();
      read.pipe(out, { end: false });
      out.on("close", () => read.destroy());
      stream(script(`cat ${path(name)}`, `read ${dir}/${name}`), `backup: read ${name}`, { stdout: read, timeoutMs }).then(
        async (r) => {
          if (r.code !== 0) return void out.destroy(new FmcError("BACKUP_STORE", `${t.host}: reading ${dir}/${name} failed (exit ${r.code}): ${r.stderr.trim()}`));
          await finished(read);
          out.end();
        },
        (e: Error) => out.destroy(e),
      );
      return out;
    },
    sha256: async (name) => (await run(`sha256sum ${path(name)} | cut -c1-64`, `checksum ${name}`)).trim(),
    remove: async (name) => void (await run(`rm -f ${path(name)}`, `remove ${name}`)),
  };
}

export type Progress = (bytes: number, done: boolean) => void;

/**
 * What `command` prints on the host, into the store as `name`, then its .sha256 beside it:
 * the file lands only when all of it was written and what landed hashes as what was sent.
 * A failure leaves nothing behind.
 */
export async function streamIntoStore(o: { transport: Transport; command: Command; what: string; store: BackupStore; name: string; timeoutMs: number; progress?: Progress; hint?: string }): Promise<{ sha256: string; bytes: number }> {
  const { transport: t } = o;
  if (!t.stream) throw new FmcError("BACKUP_STREAM", `${t.host}: this connection cannot stream a backup`);
  const digest = new Digest((n) => o.progress?.(n, false));
  const target = await o.store.create(o.name);
  // both ends fail together: a store that stops taking data stops the command (the
  // transport tears it down when its output fails), a command that fails stops the store
  let writeError: Error | undefined;
  const writing = pipeline(digest, target.stream).catch((e: Error) => {
    writeError = e;
    throw e;
  });
  const reading = t.stream(o.command, `backup: ${o.what}`, { stdout: digest, timeoutMs: o.timeoutMs });
  let r: { code: number; stderr: string };
  try {
    [r] = await Promise.all([reading, writing]);
  } catch (e) {
    // whichever side failed, the other one is torn down before this returns
    digest.destroy();
    await reading.catch(() => undefined);
    const why = await target.abort();
    if (writeError && e === writeError) throw new FmcError("BACKUP_STORE", `${o.store.where}/${o.name}: writing it failed: ${why ?? writeError.message}; ${o.what} was stopped and nothing was kept`, "is the disk it is written to full? database.backup.to and -o choose another place");
    throw e;
  }
  if (r.code !== 0) {
    await target.abort();
    throw new FmcError("BACKUP_FAILED", `${t.host}: ${o.what} failed (exit ${r.code}): ${r.stderr.trim()}`, o.hint);
  }
  const streamed = digest.hex();
  const stored = await target.commit();
  o.progress?.(digest.bytes, true);
  if (stored !== streamed) {
    await o.store.remove(o.name);
    throw new FmcError("BACKUP_FAILED", `${o.store.where}/${o.name} does not hold what ${o.what} sent (SHA-256 ${stored} instead of ${streamed}); it was removed`, "check the disk it was written to");
  }
  await o.store.writeText(`${o.name}.sha256`, checksumLine(streamed, o.name));
  return { sha256: streamed, bytes: digest.bytes };
}

/** The file's SHA-256 if its .sha256 beside it agrees; otherwise a refusal saying what is wrong. */
export async function verifiedChecksum(store: BackupStore, name: string): Promise<string> {
  const text = await store.readText(`${name}.sha256`);
  if (text === undefined) throw new FmcError("BACKUP_CHECKSUM", `${store.where}/${name} has no ${name}.sha256 beside it: refusing to restore a file that cannot be checked`, "restore a file fmc backup wrote, with its .sha256");
  const want = parseChecksum(text, name);
  if (!want) throw new FmcError("BACKUP_CHECKSUM", `${store.where}/${name}.sha256 has no checksum line for ${name}`, "it must read: <sha256>  <file name>");
  const got = await store.sha256(name);
  if (got !== want) throw new FmcError("BACKUP_CHECKSUM", `${store.where}/${name} does not match its checksum (SHA-256 ${got}, ${name}.sha256 says ${want}): refusing to restore it`, "the file is damaged or was changed; restore another backup");
  return want;
}

/**
 * Passes a stream through unchanged but holds back its last chunk until `verify` (asked at
 * the end, when every byte went by) finds nothing wrong: a reader on the other side never
 * sees the end of input that was not what was checked. A refusal fails the stream.
 */
export class HeldTail extends Transform {
  private held: Buffer | undefined;
  /** Whether the last chunk went out, i.e. the whole stream was verified and passed on. */
  released = false;
  constructor(private readonly verify: () => Error | undefined) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    const before = this.held;
    this.held = chunk;
    done(null, before);
  }
  override _flush(done: TransformCallback) {
    const refused = this.verify();
    if (refused) return done(refused);
    this.released = true;
    done(null, this.held);
  }
}
