// fmc etcd status: K3s's embedded etcd as its servers see it. One server that answers is
// asked for the member list, then for the health and status of every member (curl with
// K3s's own etcd client certificate: src/k3s/etcd.ts); every member, its health, the
// leader, the database size and version. Exit 1 when a member is unhealthy or no server
// answers. In the lab, the k3s-server hosts run a real etcd laid out as K3s's.
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession } from "../engine/session.js";
import { etcdAccess, quorumOf, readCluster, type EtcdClusterView } from "../k3s/etcd.js";
import { bold, red } from "./ui.js";
import { sessionArgs, sessionOptions } from "./session-args.js";

const { phase: _phase, ...args } = sessionArgs;

const size = (b: number) => (b < 1048576 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 1048576).toFixed(1)} MiB`);

/** The view as a table; pure, so tests read what a user reads. */
function statusText(v: EtcdClusterView, askedVia: string): string {
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

export const etcd = defineCommand({
  meta: { name: "etcd", description: "K3s's embedded etcd: fmc etcd status" },
  subCommands: { status },
});
