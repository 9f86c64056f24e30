// fmc backup etcd: a K3s snapshot saved on a server (k3s etcd-snapshot save) and streamed
// here into a directory, a .sha256 beside it, the same way PostgreSQL backups are.
import { join } from "node:path";
import { FmcError } from "../errors.js";
import { script, slow, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { Transport } from "../hosts/transport.js";
import { localStore, stamp, streamIntoStore } from "../local/backup-store.js";
import { K3S_SNAPSHOT_DIR } from "../k3s/etcd.js";
import { k3sCli } from "../k3s/k3s-cli.js";

/**
 * `k3s etcd-snapshot save --name N` on a server, with the k3s fmc installed there
 * (src/k3s/k3s-cli.ts: /opt/bin on Flatcar, /usr/local/bin elsewhere; an SSH command's PATH
 * may have neither).
 */
function snapshotSaveCommand(name: string): Command {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new FmcError("USAGE", `snapshot name ${JSON.stringify(name)}: lower-case letters, digits and - only`);
  return slow(k3sCli("etcd-snapshot", "save", "--name", name), 600);
}

/** The newest file K3s wrote for snapshot `name`, by its name alone (K3s keeps them in one directory). */
const snapshotFileCommand = (name: string): Command => script(`cd ${quote(K3S_SNAPSHOT_DIR)} && ls -1t -- ${name}-* 2>/dev/null | head -n 1`, `the file k3s wrote for snapshot ${name}`);

/** One label of a node name (a DNS subdomain's): letters, digits, inner hyphens. */
const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?";

/**
 * The snapshot file a server names, if it is a plain file name as K3s writes them:
 * <name>-<node name>-<unix seconds>[.zip] (docs.k3s.io/cli/etcd-snapshot). The name
 * becomes a path on this machine, so nothing else is taken: no directory, no "..".
 */
function snapshotFileName(name: string, printed: string, server: string): string {
  const file = printed.replace(/\n$/, "");
  const plain = new RegExp(`^${name}-${LABEL}(?:\\.${LABEL})*-\\d{9,11}(?:\\.zip)?$`);
  if (file.length > 255 || !plain.test(file)) {
    throw new FmcError("ETCD_SNAPSHOT_NAME", `${server}: the snapshot it saved is named ${JSON.stringify(file)}: not a plain snapshot file name (${name}-<node name>-<unix time>[.zip]); nothing was copied`, `the snapshot stays in ${K3S_SNAPSHOT_DIR} on ${server}; look there, and at what else writes into that directory`);
  }
  return file;
}

export interface EtcdBackup {
  readonly server: string;
  /** Where it landed here. */
  readonly path: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly ms: number;
}

/** A snapshot from the first server that saves one, into `dir` with its .sha256; the snapshot stays on the server too. */
export async function backupEtcdSnapshot(o: { servers: readonly string[]; transports: ReadonlyMap<string, Transport>; unreachable: ReadonlyMap<string, string>; dir: string; timeoutMs: number; now?: Date }): Promise<EtcdBackup> {
  const name = `fmc-${stamp(o.now ?? new Date()).toLowerCase()}`;
  const failures: string[] = [...o.unreachable].map(([h, why]) => `${h}: ${why}`);
  for (const server of o.servers) {
    const t = o.transports.get(server);
    if (!t) continue;
    const saved = await t.exec(snapshotSaveCommand(name), "etcd snapshot");
    if (saved.code !== 0) {
      failures.push(`${server}: k3s etcd-snapshot save failed (exit ${saved.code}): ${saved.stderr.trim().split("\n").slice(-3).join(" / ")}`);
      continue;
    }
    const listed = await t.exec(snapshotFileCommand(name), "etcd snapshot file");
    if (listed.code !== 0) {
      failures.push(`${server}: listing ${K3S_SNAPSHOT_DIR} failed (exit ${listed.code}): ${listed.stderr.trim()}`);
      continue;
    }
    const file = snapshotFileName(name, listed.stdout, server);
    const path = `${K3S_SNAPSHOT_DIR}/${file}`;
    const started = performance.now();
    const r = await streamIntoStore({ transport: t, command: script(`cat ${quote(path)}`, `read ${path}`), what: `copy of ${path}`, store: localStore(o.dir), name: file, timeoutMs: o.timeoutMs });
    return { server, path: join(o.dir, file), sha256: r.sha256, bytes: r.bytes, ms: performance.now() - started };
  }
  throw new FmcError("BACKUP_FAILED", `no K3s server saved an etcd snapshot:\n${failures.join("\n")}`, "fmc etcd status shows whether etcd is healthy");
}
