// fmc etcd status: K3s's embedded etcd as its servers see it. One server that answers is
// asked for the member list, then for the health and status of every member (curl with
// K3s's own etcd client certificate: src/ops/etcd.ts); every member, its health, the
// leader, the database size and version. Exit 1 when a member is unhealthy or no server
// answers. In the lab, the k3s-server hosts run a real etcd laid out as K3s's.
import { dirname, join, resolve } from "node:path";
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession } from "../engine/session.js";
import { quote, script, slow } from "../hosts/command.js";
import { etcdAccess, K3S_SNAPSHOT_DIR, quorumOf, readCluster, type EtcdClusterView } from "../ops/etcd.js";
import { bold, dim, red, specFileOf } from "./ui.js";
import { sessionArgs, sessionOptions } from "./session-args.js";
import { localStore, stamp, streamIntoStore } from "./backup-commands.js";

const { phase: _phase, ...args } = sessionArgs;

const size = (b: number) => (b < 1048576 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 1048576).toFixed(1)} MiB`);

/** The view as a table; pure, so tests read what a user reads. */
export function statusText(v: EtcdClusterView, askedVia: string): string {
  const voters = v.members.filter((m) => !m.isLearner);
  const healthy = voters.filter((m) => m.healthy).length;
  const rows = v.members.map((m) => {
    const state = m.healthy ? "healthy" : `unhealthy${m.reason ? ` (${m.reason})` : ""}`;
    return `  ${m.name.padEnd(22)} ${(m.peerURLs[0] ?? "").padEnd(26)} ${state.padEnd(11)} ${m.isLeader ? "leader " : m.isLearner ? "learner" : "       "} ${m.status ? `${size(m.status.dbSize).padStart(10)}  etcd ${m.status.version}` : ""}`.trimEnd();
  });
  const quorum = quorumOf(voters.length);
  return [
    ...rows,
    `${voters.length} voting member${voters.length === 1 ? "" : "s"}, quorum ${quorum}, ${healthy} healthy: ${healthy >= quorum ? `${healthy - quorum} may fail` : "NO QUORUM"}; leader ${v.members.find((m) => m.isLeader)?.name ?? "none"} (asked ${askedVia})`,
    "",
  ].join("\n");
}

const status = defineCommand({
  meta: { name: "status", description: "Every etcd member of the K3s cluster: health, leader, database size, version (exit 1 when one is unhealthy)" },
  args: { ...args, json: { type: "boolean", description: "machine-readable on stdout", default: false } },
  async run({ args: a }) {
    const s = await openSession({ ...sessionOptions(a), hosts: (pc) => pc.render.topo.servers });
    try {
      const access = etcdAccess();
      const errors: string[] = [...s.unreachable].map(([h, why]) => `${h}: ${why}`);
      for (const server of s.render.topo.servers) {
        const t = s.transports.get(server.name);
        if (!t) continue;
        let view: EtcdClusterView;
        try {
          view = await readCluster(t, access);
        } catch (e) {
          errors.push((e as Error).message);
          continue;
        }
        if (a.json) process.stdout.write(`${JSON.stringify({ askedVia: server.name, leader: view.leader ?? null, members: view.members }, null, 2)}\n`);
        else process.stdout.write(statusText(view, server.name).replace(/unhealthy[^ ]*( \([^)]*\))?/g, (m) => red(m)).replace(/^( {2}\S+)/gm, (m) => bold(m)));
        process.exitCode = view.members.every((m) => m.healthy) ? 0 : 1;
        return;
      }
      throw new FmcError("ETCD_UNREACHABLE", `no K3s server answered for etcd:\n${errors.join("\n")}`, "is K3s running on the servers? (fmc lab up starts an etcd stand-in on k3s-server hosts)");
    } finally {
      s.close();
    }
  },
});

/**
 * `k3s etcd-snapshot save --name N` on a server, then the path of what it wrote: K3s names
 * a snapshot <name>-<node name>-<unix time> (plus .zip when compressed) in its snapshot
 * directory (docs.k3s.io/cli/etcd-snapshot).
 */
export function snapshotSaveCommand(name: string) {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new FmcError("USAGE", `snapshot name ${JSON.stringify(name)}: lower-case letters, digits and - only`);
  return slow(
    script(
      `set -euo pipefail\nk3s etcd-snapshot save --name ${quote(name)} >&2\nls -1t ${K3S_SNAPSHOT_DIR}/${name}-* 2>/dev/null | head -n 1`,
      `k3s etcd-snapshot save --name ${name} (prints the file it wrote)`,
    ),
    600,
  );
}

const { phase: _p2, concurrency: _c2, timeout: _t2, ...connectArgs } = sessionArgs;

export const backupEtcd = defineCommand({
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

export const etcd = defineCommand({
  meta: { name: "etcd", description: `K3s's embedded etcd: ${dim("fmc etcd status")}` },
  subCommands: { status },
});
