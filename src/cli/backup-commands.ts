// fmc backup postgres / fmc restore postgres FILE / fmc backup etcd: the arguments, the
// question before a restore, progress and results. What they do lives in src/runbooks/
// (postgres-backup.ts, etcd-backup.ts) and src/local/backup-store.ts.
import { existsSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession, type Session } from "../engine/session.js";
import type { Transport } from "../hosts/transport.js";
import type { PostgresLayout } from "../hosts/os.js";
import { localStore, verifiedChecksum, type BackupStore, type Progress } from "../local/backup-store.js";
import { backupDatabase, backupStoreFor, parseBackupName, postgresTarget, restoreDatabase } from "../runbooks/postgres-backup.js";
import { backupEtcdSnapshot } from "../runbooks/etcd-backup.js";
import { K3S_SNAPSHOT_DIR } from "../k3s/etcd.js";
import { bold, confirm, dim, lockReport, specFileOf } from "./ui.js";
import type { HostsLock } from "../engine/hosts-lock.js";
import { sessionArgs, sessionOptions, type SessionArgs } from "./session-args.js";
import { restoreEtcd } from "./restore-etcd-commands.js";

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

/** The session's database host and its PostgreSQL layout (read from facts). */
async function databaseHost(a: SessionArgs): Promise<{ s: Session; t: Transport; layout: PostgresLayout }> {
  const s = await openSession({ ...sessionOptions({ ...a, timeout: "120" }), phases: ["database"] });
  try {
    return { s, ...(await postgresTarget(s.pc, s.transports, s.unreachable)) };
  } catch (e) {
    s.close();
    throw e;
  }
}

/** Where the spec (or -o) keeps backups. */
const storeFor = (s: Session, specFile: string | undefined, output: string | undefined, ms: number): Promise<{ store: BackupStore; close(): void }> =>
  backupStoreFor({ spec: s.render.spec, specFile, output, timeoutMs: ms, openStorage: (host) => s.reconnect.open(host) });

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
    let lock: HostsLock | undefined;
    try {
      // a restore replaces a database: no apply (its database phase may restart PostgreSQL) meanwhile
      lock = await s.lockHosts("restore postgres", lockReport);
      if (!s.render.spec.database!.databases.includes(db)) throw new FmcError("USAGE", `${db}: not in database.databases (${s.render.spec.database!.databases.join(", ")})`);
      if (!local && s.render.spec.database!.backup.to === "local") throw new FmcError("USAGE", `${args.dump}: no such file`);
      store = local ? { store: localStore(dirname(resolve(args.dump))), close: () => undefined } : await storeFor(s, specFileOf(args), undefined, ms);
      const r = await restoreDatabase({ transport: t, layout, db, store: store.store, name, timeoutMs: ms, confirm: args.yes ? async () => true : (q) => confirm(q, "restore replaces data"), progress: progressFor(`${t.host} ${db}`) });
      process.stderr.write(`${bold(db)} on ${t.host} restored from ${name}: ${size(r.bytes)} in ${(r.ms / 1000).toFixed(1)} s\n`);
    } finally {
      store?.close();
      await lock?.release();
      s.close();
    }
  },
});

// ---- etcd

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
      const r = await backupEtcdSnapshot({ servers: s.render.topo.servers.map((h) => h.name), transports: s.transports, unreachable: s.unreachable, dir, timeoutMs: timeoutS * 1000 });
      process.stdout.write(`${r.path}\n`);
      process.stderr.write(dim(`  etcd snapshot from ${r.server}: ${(r.bytes / 1048576).toFixed(1)} MiB in ${(r.ms / 1000).toFixed(1)} s, sha256 ${r.sha256}; it stays in ${K3S_SNAPSHOT_DIR} on ${r.server} too\n`));
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
