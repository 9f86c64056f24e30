// fmc backup postgres / fmc restore postgres FILE / fmc backup etcd: pg_dump in its custom format, streamed
// over SSH from the database host into a directory here (or onto the storage host), a
// .sha256 beside each file (sha256sum -c reads it), and the newest database.backup.keep
// kept per database. A restore first checks the file against its .sha256 and refuses a
// mismatch, asks before it replaces anything (--yes), then streams the file into
// pg_restore --clean --if-exists --single-transaction: all of it or nothing. An etcd
// backup is a K3s snapshot saved on a server and streamed here the same way.
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { Digest, sha256File } from "../ops/digest.js";
import { finished } from "node:stream/promises";
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession, type Session } from "../engine/session.js";
import { gatherFacts, emptyRequest, mergeRequests } from "../hosts/facts.js";
import { quote, script, slow, type Command } from "../hosts/command.js";
import { K3S_SNAPSHOT_DIR } from "../ops/etcd.js";
import type { Transport } from "../hosts/transport.js";
import type { PostgresLayout } from "../hosts/os.js";
import { databaseFacts, postgresOnHost } from "../phases/database.js";
import { POSTGRES_PORT, POSTGRES_SOCKET_DIR } from "../render/database.js";
import { bold, confirm, dim, specFileOf } from "./ui.js";
import { sessionArgs, sessionOptions, type SessionArgs } from "./session-args.js";
import { restoreEtcd } from "./restore-etcd-commands.js";

// ---- names, checksums, retention (pure)

const STAMP = /^(\d{8}T\d{6}Z)$/;
const DUMP = /^([a-z][a-z0-9_]{0,62})-(\d{8}T\d{6}Z)\.dump$/;

/** 2026-11-25T17:45:10.123Z -> 20261125T174510Z */
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

function backupName(db: string, at: Date): string {
  return `${db}-${stamp(at)}.dump`;
}

export function parseBackupName(name: string): { db: string; stamp: string } | undefined {
  const m = DUMP.exec(name);
  return m && STAMP.test(m[2]!) ? { db: m[1]!, stamp: m[2]! } : undefined;
}

/** The dumps of `db` beyond the newest `keep` (oldest last in the list it is taken from): these go, with their .sha256. */
export function expired(names: readonly string[], db: string, keep: number): string[] {
  if (!Number.isInteger(keep) || keep < 1) throw new FmcError("USAGE", `keep ${keep}: at least 1 backup is kept`);
  const mine = names.map((n) => ({ n, p: parseBackupName(n) })).filter((x) => x.p?.db === db);
  // stamps sort as text: newest first
  mine.sort((a, b) => (a.p!.stamp < b.p!.stamp ? 1 : a.p!.stamp > b.p!.stamp ? -1 : 0));
  return mine.slice(keep).map((x) => x.n);
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

// ---- where backups are kept

export interface BackupStore {
  /** For messages: a directory here, or host:path. */
  readonly where: string;
  list(): Promise<string[]>;
  /** A stream to write `name` through; `commit` puts it in place only after it was all written, and returns the SHA-256 of what landed. */
  create(name: string): Promise<{ stream: Writable; commit(): Promise<string>; abort(): Promise<void> }>;
  writeText(name: string, text: string): Promise<void>;
  readText(name: string): Promise<string | undefined>;
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
          await finished(stream).catch(() => undefined);
          rmSync(tmp, { force: true });
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
      // a failure shows at commit; until then it must not go unheard
      done.catch(() => undefined);
      return {
        stream: input,
        async commit() {
          const r = await done;
          if (r.code !== 0) throw new FmcError("BACKUP_STORE", `${t.host}: writing ${dir}/${name} failed (exit ${r.code}): ${r.stderr.trim()}`);
          return (await run(`mv -f ${tmp} ${path(name)} && sha256sum ${path(name)} | cut -c1-64`, `keep ${name}`)).trim();
        },
        async abort() {
          input.destroy();
          await done.catch(() => undefined);
          await run(`rm -f ${tmp}`, `remove ${name}.partial`).catch(() => undefined);
        },
      };
    },
    writeText: async (name, text) => void (await run(`umask 077 && cat > ${path(name)}`, `write ${name}`, text)),
    async readText(name) {
      const out = await run(`if [ -f ${path(name)} ]; then cat ${path(name)}; else echo @absent; fi`, `read ${name}`);
      return out === "@absent\n" ? undefined : out;
    },
    async open(name) {
      const out = new PassThrough();
      stream(script(`cat ${path(name)}`, `read ${dir}/${name}`), `backup: read ${name}`, { stdout: out, timeoutMs }).then(
        (r) => (r.code === 0 ? undefined : out.destroy(new FmcError("BACKUP_STORE", `${t.host}: reading ${dir}/${name} failed: ${r.stderr.trim()}`))),
        (e: Error) => out.destroy(e),
      );
      return out;
    },
    sha256: async (name) => (await run(`sha256sum ${path(name)} | cut -c1-64`, `checksum ${name}`)).trim(),
    remove: async (name) => void (await run(`rm -f ${path(name)}`, `remove ${name}`)),
  };
}

// ---- backup and restore over a transport

const CONN = `-h ${POSTGRES_SOCKET_DIR} -p ${POSTGRES_PORT}`;

function dumpCommand(l: PostgresLayout, db: string) {
  return script(`set -euo pipefail\ncd /\nrunuser -u postgres -- ${l.binDir}/pg_dump --format=custom ${CONN} --dbname=${quote(db)}`, `pg_dump --format=custom ${db} (to stdout)`);
}

function restoreCommand(l: PostgresLayout, db: string) {
  return script(`set -euo pipefail\ncd /\nrunuser -u postgres -- ${l.binDir}/pg_restore --clean --if-exists --single-transaction --exit-on-error ${CONN} --dbname=${quote(db)}`, `pg_restore --clean --if-exists --single-transaction --dbname=${db} (from stdin)`);
}

export interface BackupResult {
  readonly name: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly ms: number;
  readonly removed: readonly string[];
}

export type Progress = (bytes: number, done: boolean) => void;

/**
 * What `command` prints on the host, into the store as `name`, then its .sha256 beside it:
 * the file lands only when all of it was written and what landed hashes as what was sent.
 * A failure leaves nothing behind.
 */
async function streamIntoStore(o: { transport: Transport; command: Command; what: string; store: BackupStore; name: string; timeoutMs: number; progress?: Progress; hint?: string }): Promise<{ sha256: string; bytes: number }> {
  const { transport: t } = o;
  if (!t.stream) throw new FmcError("BACKUP_STREAM", `${t.host}: this connection cannot stream a backup`);
  const digest = new Digest((n) => o.progress?.(n, false));
  const target = await o.store.create(o.name);
  digest.pipe(target.stream);
  let r: { code: number; stderr: string };
  try {
    r = await t.stream(o.command, `backup: ${o.what}`, { stdout: digest, timeoutMs: o.timeoutMs });
  } catch (e) {
    await target.abort();
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

/** Dumps one database into the store: file, then its .sha256, then retention. A failed dump leaves nothing behind. */
export async function backupDatabase(o: { transport: Transport; layout: PostgresLayout; db: string; store: BackupStore; keep: number; now?: Date; timeoutMs: number; progress?: Progress }): Promise<BackupResult> {
  const name = backupName(o.db, o.now ?? new Date());
  const started = performance.now();
  const r = await streamIntoStore({ transport: o.transport, command: dumpCommand(o.layout, o.db), what: `pg_dump ${o.db}`, store: o.store, name, timeoutMs: o.timeoutMs, progress: o.progress, hint: "is PostgreSQL running? fmc plan --phase database shows why not" });
  const removed = expired(await o.store.list(), o.db, o.keep);
  for (const old of removed) {
    await o.store.remove(old);
    await o.store.remove(`${old}.sha256`);
  }
  return { name, sha256: r.sha256, bytes: r.bytes, ms: performance.now() - started, removed };
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

/** Streams a checked backup into pg_restore. `confirm` is asked before anything reaches the host. */
export async function restoreDatabase(o: { transport: Transport; layout: PostgresLayout; db: string; store: BackupStore; name: string; timeoutMs: number; confirm: (question: string) => Promise<boolean>; progress?: Progress }): Promise<{ bytes: number; ms: number }> {
  const { transport: t } = o;
  if (!t.stream) throw new FmcError("BACKUP_STREAM", `${t.host}: this connection cannot stream a restore`);
  const sha = await verifiedChecksum(o.store, o.name);
  const ok = await o.confirm(`Replace the contents of database ${o.db} on ${t.host} with ${o.store.where}/${o.name} (sha256 ${sha.slice(0, 12)}…)? Objects in the file are dropped and recreated; other objects stay. [y/N] `);
  if (!ok) throw new FmcError("ABORTED", "nothing was restored");
  const started = performance.now();
  const digest = new Digest((n) => o.progress?.(n, false));
  const input = await o.store.open(o.name);
  input.pipe(digest);
  const r = await t.stream(restoreCommand(o.layout, o.db), `restore: pg_restore ${o.db}`, { stdin: digest, timeoutMs: o.timeoutMs });
  o.progress?.(digest.bytes, true);
  if (r.code !== 0) throw new FmcError("RESTORE_FAILED", `${t.host}: pg_restore into ${o.db} failed (exit ${r.code}); nothing was changed (one transaction): ${r.stderr.trim()}`);
  // what was sent is what was checked: a file changed while it was read is reported
  if (digest.hex() !== sha) throw new FmcError("RESTORE_FAILED", `${o.name} changed while it was restored (SHA-256 differs from its checksum); restore it again`);
  return { bytes: digest.bytes, ms: performance.now() - started };
}

// ---- the commands

const { phase: _phase, concurrency: _concurrency, timeout: _timeout, ...connectArgs } = sessionArgs;
/** restore's positional is the backup file: the spec is named with -f there. */
const { spec: _spec, ...restoreConnectArgs } = connectArgs;
const timeoutArg = { type: "string", description: "seconds a dump or restore may take before it is stopped", default: "3600" } as const;

function timeoutMs(v: string | undefined): number {
  const s = Number(v ?? 3600);
  if (!Number.isFinite(s) || s <= 0 || s > 7 * 86_400) throw new FmcError("USAGE", `--timeout ${v}: seconds, more than 0 and at most 604800 please`);
  return Math.round(s * 1000);
}

/** Bytes in the largest binary unit that keeps a whole number in front: 14.2 KiB, 3.0 MiB. */
const size = (b: number) => (b < 1024 ? `${b} B` : b < 1048576 ? `${(b / 1024).toFixed(1)} KiB` : b < 1073741824 ? `${(b / 1048576).toFixed(1)} MiB` : `${(b / 1073741824).toFixed(2)} GiB`);

function progressFor(label: string): Progress {
  let last = 0;
  const t0 = performance.now();
  return (bytes, done) => {
    const now = performance.now();
    if (!done && now - last < 1000) return;
    last = now;
    const rate = bytes / Math.max((now - t0) / 1000, 0.001);
    process.stderr.write(`${process.stderr.isTTY && !done ? "\r" : ""}${label}: ${size(bytes)} (${size(rate)}/s)${done || !process.stderr.isTTY ? "\n" : ""}`);
  };
}

/** The session's database host, its PostgreSQL layout (read from facts), and the spec's backup settings. */
async function databaseHost(a: SessionArgs): Promise<{ s: Session; t: Transport; layout: PostgresLayout }> {
  const s = await openSession({ ...sessionOptions({ ...a, timeout: "120" }), phases: ["database"] });
  try {
    const db = s.render.spec.database;
    if (!db) throw new FmcError("NO_DATABASE", "this spec has no database section", "fmc docs shows the database section");
    const t = s.transports.get(db.host);
    if (!t) throw new FmcError("UNREACHABLE", `${db.host}: ${s.unreachable.get(db.host) ?? "not in the inventory"}`);
    const host = s.render.topo.host(db.host);
    const facts = await gatherFacts(t, mergeRequests(emptyRequest(), databaseFacts(s.pc)));
    const pg = postgresOnHost(s.pc, host, facts);
    if (!pg.installed) throw new FmcError("NO_POSTGRES", `${db.host} has no PostgreSQL ${pg.layout.version} installed`, "fmc apply --phase database first");
    const unit = facts.units.get(pg.layout.unit);
    if (unit?.active !== "active") throw new FmcError("POSTGRES_DOWN", `${db.host}: ${pg.layout.unit} is ${unit?.active ?? "unknown"}`, "fmc plan --phase database says why; fmc apply --phase database starts it");
    return { s, t, layout: pg.layout };
  } catch (e) {
    s.close();
    throw e;
  }
}

/** Where the spec (or -o) keeps backups. */
async function storeFor(s: Session, specFile: string | undefined, output: string | undefined, ms: number): Promise<{ store: BackupStore; close(): void }> {
  const b = s.render.spec.database!.backup;
  const base = specFile ? dirname(resolve(specFile)) : process.cwd();
  if (output !== undefined || b.to === "local") {
    const dir = output !== undefined ? resolve(output) : isAbsolute(b.dir) ? b.dir : resolve(base, b.dir);
    return { store: localStore(dir), close: () => undefined };
  }
  const storage = s.render.spec.storage?.host;
  if (!storage) throw new FmcError("NO_STORAGE", "database.backup.to is storage but the spec has no storage section", "set database.backup.to: local, or add storage");
  const t = await s.reconnect.open(storage);
  return { store: remoteStore(t, b.storagePath, ms), close: () => t.close() };
}

const backupPostgres = defineCommand({
  meta: { name: "postgres", description: "Dump every spec database (pg_dump, custom format) from the database host into database.backup (or -o DIR), a .sha256 beside each, keeping the newest database.backup.keep" },
  args: {
    ...connectArgs,
    output: { type: "string", alias: "o", description: "directory on this machine (overrides database.backup)" },
    database: { type: "string", description: "only this database" },
    timeout: timeoutArg,
  },
  async run({ args }) {
    const ms = timeoutMs(args.timeout);
    const { s, t, layout } = await databaseHost(args);
    let store: { store: BackupStore; close(): void } | undefined;
    try {
      const db = s.render.spec.database!;
      const names = args.database ? [args.database] : db.databases;
      for (const n of names) if (!db.databases.includes(n)) throw new FmcError("USAGE", `--database ${n}: not in database.databases (${db.databases.join(", ")})`);
      store = await storeFor(s, specFileOf(args), args.output, ms);
      for (const n of names) {
        const r = await backupDatabase({ transport: t, layout, db: n, store: store.store, keep: db.backup.keep, timeoutMs: ms, progress: progressFor(`${db.host} ${n}`) });
        process.stdout.write(`${store.store.where}/${r.name}\n`);
        process.stderr.write(dim(`  ${size(r.bytes)} in ${(r.ms / 1000).toFixed(1)} s, sha256 ${r.sha256}${r.removed.length ? `; removed (keeping ${db.backup.keep}): ${r.removed.join(", ")}` : ""}\n`));
      }
    } finally {
      store?.close();
      s.close();
    }
  },
});

const restorePostgres = defineCommand({
  meta: { name: "postgres", description: "Restore a backup made by fmc backup postgres into its database (pg_restore --clean --if-exists, one transaction); refuses a file whose .sha256 does not match and asks first (--yes to skip)" },
  args: {
    dump: { type: "positional", required: true, valueHint: "FILE", description: "the .dump file: a path here, or (database.backup.to: storage) its name on the storage host" },
    ...restoreConnectArgs,
    database: { type: "string", description: "restore into this database (default: the one in the file's name)" },
    yes: { type: "boolean", alias: "y", description: "do not ask before replacing the database's contents", default: false },
    timeout: timeoutArg,
  },
  async run({ args }) {
    const ms = timeoutMs(args.timeout);
    const name = basename(args.dump);
    const db = args.database ?? parseBackupName(name)?.db;
    if (!db) throw new FmcError("USAGE", `${args.dump}: not a name fmc backup writes (<database>-<time>.dump)`, "name the database with --database");
    // checked before any connection: a damaged file never gets further
    const local = existsSync(args.dump) && statSync(args.dump).isFile();
    if (local) await verifiedChecksum(localStore(dirname(resolve(args.dump))), name);
    const { s, t, layout } = await databaseHost(args);
    let store: { store: BackupStore; close(): void } | undefined;
    try {
      if (!s.render.spec.database!.databases.includes(db)) throw new FmcError("USAGE", `${db}: not in database.databases (${s.render.spec.database!.databases.join(", ")})`);
      if (!local && s.render.spec.database!.backup.to === "local") throw new FmcError("USAGE", `${args.dump}: no such file`);
      store = local ? { store: localStore(dirname(resolve(args.dump))), close: () => undefined } : await storeFor(s, specFileOf(args), undefined, ms);
      const r = await restoreDatabase({ transport: t, layout, db, store: store.store, name, timeoutMs: ms, confirm: args.yes ? async () => true : (q) => confirm(q, "restore replaces data"), progress: progressFor(`${t.host} ${db}`) });
      process.stderr.write(`${bold(db)} on ${t.host} restored from ${name}: ${size(r.bytes)} in ${(r.ms / 1000).toFixed(1)} s\n`);
    } finally {
      store?.close();
      s.close();
    }
  },
});

// ---- etcd

/**
 * `k3s etcd-snapshot save --name N` on a server, then the path of what it wrote: K3s names
 * a snapshot <name>-<node name>-<unix time> (plus .zip when compressed) in its snapshot
 * directory (docs.k3s.io/cli/etcd-snapshot).
 */
function snapshotSaveCommand(name: string) {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new FmcError("USAGE", `snapshot name ${JSON.stringify(name)}: lower-case letters, digits and - only`);
  return slow(
    script(
      `set -euo pipefail\nk3s etcd-snapshot save --name ${quote(name)} >&2\nls -1t ${K3S_SNAPSHOT_DIR}/${name}-* 2>/dev/null | head -n 1`,
      `k3s etcd-snapshot save --name ${name} (prints the file it wrote)`,
    ),
    600,
  );
}

const backupEtcd = defineCommand({
  meta: { name: "etcd", description: "Save an etcd snapshot on a K3s server (k3s etcd-snapshot save) and copy it here with a .sha256 beside it (default ./backups/etcd, or -o DIR)" },
  args: {
    ...connectArgs,
    output: { type: "string", alias: "o", description: "directory on this machine (default: backups/etcd next to the spec)" },
    timeout: { type: "string", description: "seconds the snapshot and its copy may take", default: "600" },
  },
  async run({ args: a }) {
    const timeoutS = Number(a.timeout);
    if (!Number.isFinite(timeoutS) || timeoutS <= 0 || timeoutS > 86_400) throw new FmcError("USAGE", `--timeout ${a.timeout}: seconds, more than 0 and at most 86400 please`);
    const spec = specFileOf(a);
    const dir = a.output !== undefined ? resolve(a.output) : join(spec ? dirname(resolve(spec)) : process.cwd(), "backups", "etcd");
    const s = await openSession({ ...sessionOptions({ ...a, timeout: String(timeoutS) }), hosts: (pc) => pc.render.topo.servers });
    try {
      const name = `fmc-${stamp(new Date()).toLowerCase()}`;
      const failures: string[] = [...s.unreachable].map(([h, why]) => `${h}: ${why}`);
      for (const server of s.render.topo.servers) {
        const t = s.transports.get(server.name);
        if (!t) continue;
        const saved = await t.exec(snapshotSaveCommand(name), "etcd snapshot");
        const path = saved.stdout.trim();
        if (saved.code !== 0 || !path.startsWith(`${K3S_SNAPSHOT_DIR}/${name}-`)) {
          failures.push(`${server.name}: k3s etcd-snapshot save failed (exit ${saved.code}): ${saved.stderr.trim().split("\n").slice(-3).join(" / ")}`);
          continue;
        }
        const file = path.slice(K3S_SNAPSHOT_DIR.length + 1);
        const started = performance.now();
        const r = await streamIntoStore({ transport: t, command: script(`cat ${quote(path)}`, `read ${path}`), what: `copy of ${path}`, store: localStore(dir), name: file, timeoutMs: timeoutS * 1000 });
        process.stdout.write(`${join(dir, file)}\n`);
        process.stderr.write(dim(`  etcd snapshot from ${server.name}: ${(r.bytes / 1048576).toFixed(1)} MiB in ${((performance.now() - started) / 1000).toFixed(1)} s, sha256 ${r.sha256}; it stays in ${K3S_SNAPSHOT_DIR} on ${server.name} too\n`));
        return;
      }
      throw new FmcError("BACKUP_FAILED", `no K3s server saved an etcd snapshot:\n${failures.join("\n")}`, "fmc etcd status shows whether etcd is healthy");
    } finally {
      s.close();
    }
  },
});

export const backup = defineCommand({
  meta: { name: "backup", description: "Backups: fmc backup postgres, fmc backup etcd" },
  subCommands: { postgres: backupPostgres, etcd: backupEtcd },
});

export const restore = defineCommand({
  meta: { name: "restore", description: "Restores: fmc restore postgres FILE (a database), fmc restore etcd SNAPSHOT (the K3s cluster, HA flow)" },
  subCommands: { postgres: restorePostgres, etcd: restoreEtcd },
});
