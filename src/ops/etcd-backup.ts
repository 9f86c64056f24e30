// fmc backup etcd: a K3s snapshot saved on a server (k3s etcd-snapshot save) and streamed
// here into a directory, a .sha256 beside it, the same way PostgreSQL backups are.
import { join } from "node:path";
import { FmcError } from "../errors.js";
import { quote, script, slow } from "../hosts/command.js";
import type { Transport } from "../hosts/transport.js";
import { localStore, stamp, streamIntoStore } from "./backup-store.js";
import { K3S_SNAPSHOT_DIR } from "./etcd.js";

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
    const path = saved.stdout.trim();
    if (saved.code !== 0 || !path.startsWith(`${K3S_SNAPSHOT_DIR}/${name}-`)) {
      failures.push(`${server}: k3s etcd-snapshot save failed (exit ${saved.code}): ${saved.stderr.trim().split("\n").slice(-3).join(" / ")}`);
      continue;
    }
    const file = path.slice(K3S_SNAPSHOT_DIR.length + 1);
    const started = performance.now();
    const r = await streamIntoStore({ transport: t, command: script(`cat ${quote(path)}`, `read ${path}`), what: `copy of ${path}`, store: localStore(o.dir), name: file, timeoutMs: o.timeoutMs });
    return { server, path: join(o.dir, file), sha256: r.sha256, bytes: r.bytes, ms: performance.now() - started };
  }
  throw new FmcError("BACKUP_FAILED", `no K3s server saved an etcd snapshot:\n${failures.join("\n")}`, "fmc etcd status shows whether etcd is healthy");
}
