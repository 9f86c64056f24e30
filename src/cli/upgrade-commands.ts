// fmc upgrade --to VERSION --plan: the order of a K3s upgrade, from the spec's k3s.version
// (what fmc installs) to VERSION, checked for version skew and, on etcd's live view, for
// quorum through every server's restart. Carrying it out is not built yet (it needs K3s
// itself, which the lab cannot run): this version plans and stops there.
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession } from "../engine/session.js";
import { etcdAccess, readCluster, type EtcdClusterView } from "../ops/etcd.js";
import { upgradePlan, upgradePlanText } from "../ops/upgrade.js";
import { sessionArgs, sessionOptions } from "./session-args.js";

const { phase: _phase, ...connectArgs } = sessionArgs;

export const upgrade = defineCommand({
  meta: { name: "upgrade", description: "Upgrade K3s: with --plan, the checks (no minor-version skips, no downgrade, etcd quorum through each server's restart) and the order: servers one at a time, then agents in drained batches" },
  args: {
    ...connectArgs,
    to: { type: "string", description: "the K3s version to upgrade to, e.g. v1.33.5+k3s1", required: true },
    batch: { type: "string", description: "agents upgraded at once", default: "1" },
    plan: { type: "boolean", description: "show the checks and the order, change nothing", default: false },
  },
  async run({ args: a }) {
    if (!a.plan) throw new FmcError("NOT_AVAILABLE", "fmc upgrade carries nothing out yet: only --plan is available in this version", `fmc upgrade --to ${a.to} --plan shows the order and the checks`);
    const s = await openSession({ ...sessionOptions(a), hosts: (pc) => pc.render.topo.servers });
    try {
      let cluster: EtcdClusterView | undefined;
      const errors: string[] = [...s.unreachable].map(([h, why]) => `${h}: ${why}`);
      for (const server of s.render.topo.servers) {
        const t = s.transports.get(server.name);
        if (!t) continue;
        try {
          cluster = await readCluster(t, etcdAccess());
          break;
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
      if (!cluster) throw new FmcError("ETCD_UNREACHABLE", `no K3s server answered for etcd: an upgrade restarts every server, so etcd's health is read first:\n${errors.join("\n")}`, "fmc etcd status");
      const plan = upgradePlan(s.render, s.render.spec.k3s.version, a.to, cluster, Number(a.batch));
      process.stdout.write(upgradePlanText(plan));
      process.exitCode = plan.ok ? 0 : 1;
    } finally {
      s.close();
    }
  },
});
