// PostgreSQL backups and restores (fmc backup postgres, fmc restore postgres FILE): pg_dump
// in its custom format, streamed over SSH from the database host into a store (a directory
// here or on the storage host, src/local/backup-store.ts), a .sha256 beside each file, and
// the newest database.backup.keep kept per database. A restore first checks the file
// against its .sha256 and refuses a mismatch, asks before it replaces anything, then
// streams the file into pg_restore --clean --if-exists --single-transaction: all of it or
// nothing. The CLI (src/cli/backup-commands.ts) only parses, asks, prints and exits.
import { dirname, isAbsolute, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { FmcError } from "../errors.js";
import { script } from "../hosts/command.js";
import { quote } from "../shell.js";
import { emptyRequest, gatherFacts, mergeRequests } from "../hosts/facts.js";
import type { PostgresLayout } from "../hosts/os.js";
import type { Transport } from "../hosts/transport.js";
import type { Spec } from "../model/schema.js";
import { databaseFacts, postgresOnHost } from "../phases/database.js";
import type { PhaseContext } from "../phases/phase.js";
import { POSTGRES_PORT, POSTGRES_SOCKET_DIR } from "../render/database.js";
import { Digest } from "../local/digest.js";
import { HeldTail, localStore, remoteStore, stamp, streamIntoStore, verifiedChecksum, type BackupStore, type Progress } from "../local/backup-store.js";

// ---- names and retention (pure)

const STAMP = /^(\d{8}T\d{6}Z)$/;
const DUMP = /^([a-z][a-z0-9_]{0,62})-(\d{8}T\d{6}Z)\.dump$/;

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

// ---- the commands on the database host

const CONN = `-h ${POSTGRES_SOCKET_DIR} -p ${POSTGRES_PORT}`;

function dumpCommand(l: PostgresLayout, db: string) {
  return script(`set -euo pipefail\ncd /\nrunuser -u postgres -- ${l.binDir}/pg_dump --format=custom ${CONN} --dbname=${quote(db)}`, `pg_dump --format=custom ${db} (to stdout)`);
}

function restoreCommand(l: PostgresLayout, db: string) {
  return script(`set -euo pipefail\ncd /\nrunuser -u postgres -- ${l.binDir}/pg_restore --clean --if-exists --single-transaction --exit-on-error ${CONN} --dbname=${quote(db)}`, `pg_restore --clean --if-exists --single-transaction --dbname=${db} (from stdin)`);
}

// ---- where: the database host and the store

/** The database host's transport and its PostgreSQL layout (read from facts); refuses a host where PostgreSQL is missing or down. */
export async function postgresTarget(pc: PhaseContext, transports: ReadonlyMap<string, Transport>, unreachable: ReadonlyMap<string, string>): Promise<{ t: Transport; layout: PostgresLayout }> {
  const db = pc.render.spec.database;
  if (!db) throw new FmcError("NO_DATABASE", "this spec has no database section", "fmc docs shows the database section");
  const t = transports.get(db.host);
  if (!t) throw new FmcError("UNREACHABLE", `${db.host}: ${unreachable.get(db.host) ?? "not in the inventory"}`);
  const host = pc.render.topo.host(db.host);
  const facts = await gatherFacts(t, mergeRequests(emptyRequest(), databaseFacts(pc)));
  const pg = postgresOnHost(pc, host, facts);
  if (!pg.installed) throw new FmcError("NO_POSTGRES", `${db.host} has no PostgreSQL ${pg.layout.version} installed`, "fmc apply --phase database first");
  const unit = facts.units.get(pg.layout.unit);
  if (unit?.active !== "active") throw new FmcError("POSTGRES_DOWN", `${db.host}: ${pg.layout.unit} is ${unit?.active ?? "unknown"}`, "fmc plan --phase database says why; fmc apply --phase database starts it");
  return { t, layout: pg.layout };
}

/** Where the spec (or -o) keeps backups: a directory here (relative to the spec), or storagePath on the storage host. */
export async function backupStoreFor(o: { spec: Spec; specFile: string | undefined; output: string | undefined; timeoutMs: number; openStorage: (host: string) => Promise<Transport> }): Promise<{ store: BackupStore; close(): void }> {
  const b = o.spec.database!.backup;
  const base = o.specFile ? dirname(resolve(o.specFile)) : process.cwd();
  if (o.output !== undefined || b.to === "local") {
    const dir = o.output !== undefined ? resolve(o.output) : isAbsolute(b.dir) ? b.dir : resolve(base, b.dir);
    return { store: localStore(dir), close: () => undefined };
  }
  const storage = o.spec.storage?.host;
  if (!storage) throw new FmcError("NO_STORAGE", "database.backup.to is storage but the spec has no storage section", "set database.backup.to: local, or add storage");
  const t = await o.openStorage(storage);
  return { store: remoteStore(t, b.storagePath, o.timeoutMs), close: () => t.close() };
}

// ---- backup and restore

export interface BackupResult {
  readonly name: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly ms: number;
  readonly removed: readonly string[];
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

/**
 * Streams a checked backup into pg_restore. `confirm` is asked, and anything sent, only
 * after the file matched its .sha256. What is sent is checked again as it goes: its last
 * chunk is held back until everything before it hashed as checked, so a file changed since
 * (or a read that fails) never gets to pg_restore whole, and pg_restore stopped before the
 * end of its input changes nothing (one transaction).
 */
export async function restoreDatabase(o: { transport: Transport; layout: PostgresLayout; db: string; store: BackupStore; name: string; timeoutMs: number; confirm: (question: string) => Promise<boolean>; progress?: Progress }): Promise<{ bytes: number; ms: number }> {
  const { transport: t } = o;
  if (!t.stream) throw new FmcError("BACKUP_STREAM", `${t.host}: this connection cannot stream a restore`);
  const sha = await verifiedChecksum(o.store, o.name);
  const ok = await o.confirm(`Replace the contents of database ${o.db} on ${t.host} with ${o.store.where}/${o.name} (sha256 ${sha.slice(0, 12)}…)? Objects in the file are dropped and recreated; other objects stay. [y/N] `);
  if (!ok) throw new FmcError("ABORTED", "nothing was restored");
  const started = performance.now();
  const digest = new Digest((n) => o.progress?.(n, false));
  const tail = new HeldTail(() => {
    const got = digest.hex();
    return got === sha ? undefined : new FmcError("RESTORE_FAILED", `${o.store.where}/${o.name} changed since it was checked (SHA-256 ${got}, its .sha256 says ${sha}): its end was never sent and pg_restore was stopped, so nothing was changed (one transaction)`, "restore it again, or another backup");
  });
  const input = await o.store.open(o.name);
  let sendError: Error | undefined;
  // a read that fails fails the input the host reads from: the transport stops the command
  const sending = pipeline(input, digest, tail).catch((e: Error) => {
    sendError = e;
    throw e;
  });
  const restoring = t.stream(restoreCommand(o.layout, o.db), `restore: pg_restore ${o.db}`, { stdin: tail, timeoutMs: o.timeoutMs });
  let r: { code: number; stderr: string };
  try {
    r = await Promise.race([restoring, sending.then(() => restoring)]);
  } catch (e) {
    if (sendError && e === sendError) {
      // the host's side sees its input fail and stops; it is gone before this returns
      await restoring.catch(() => undefined);
      if (e instanceof FmcError && e.code === "RESTORE_FAILED") throw e;
      throw new FmcError("RESTORE_FAILED", `reading ${o.store.where}/${o.name} failed during the restore (${sendError.message}): pg_restore was stopped before the end of its input, so nothing was changed (one transaction)`, "restore it again once the file can be read");
    }
    throw e;
  } finally {
    // pg_restore ended before it read everything: the file's side is not left waiting
    if (!tail.released) {
      input.destroy();
      tail.destroy();
      sending.catch(() => undefined);
    }
  }
  o.progress?.(digest.bytes, true);
  if (r.code !== 0) throw new FmcError("RESTORE_FAILED", `${t.host}: pg_restore into ${o.db} failed (exit ${r.code}); nothing was changed (one transaction): ${r.stderr.trim()}`);
  if (!tail.released) throw new FmcError("RESTORE_FAILED", `${t.host}: pg_restore into ${o.db} ended before it read all of ${o.name}`, "check the file with pg_restore --list");
  return { bytes: digest.bytes, ms: performance.now() - started };
}
