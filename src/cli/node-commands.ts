// fmc node remove NAME --plan: the exact order of a node's removal, decided on etcd as the
// servers report it (a server only when etcd keeps quorum through it; otherwise the
// refusal with the arithmetic, exit 1), with the load balancers' and DNS's changes as
// diffs. Carrying it out (drain, member removal, node deletion) is not built yet: it needs
// K3s's kubectl, which the lab cannot run, so this version plans and stops there.
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession } from "../engine/session.js";
import { etcdAccess, readCluster, type EtcdClusterView } from "../ops/etcd.js";
import { nodeRemovalPlan, removalPlanText } from "../ops/node-removal.js";
import { sessionArgs, sessionOptions } from "./session-args.js";

/** The positional is the node: the spec is named with -f here. */
const { phase: _phase, spec: _spec, ...connectArgs } = sessionArgs;

const remove = defineCommand({
  meta: { name: "remove", description: "Remove a K3s node: with --plan, the order (drain, stop K3s, etcd member removal, node deletion, load balancer and DNS changes), refused with the quorum arithmetic when etcd would lose quorum" },
  args: {
    ...connectArgs,
    name: { type: "positional", description: "the node (a spec host with a K3s role)", required: true },
    plan: { type: "boolean", description: "show the order and the checks, change nothing", default: false },
  },
  async run({ args: a }) {
    if (!a.plan) throw new FmcError("NOT_AVAILABLE", "fmc node remove carries nothing out yet: only --plan is available in this version", `fmc node remove ${a.name} --plan shows what it would do, and whether etcd allows it`);
    const s = await openSession({ ...sessionOptions(a), hosts: (pc) => pc.render.topo.servers });
    try {
      const host = s.render.spec.hosts.find((h) => h.name === a.name);
      if (!host) throw new FmcError("USAGE", `${a.name}: no such host in the spec`, `hosts: ${s.render.spec.hosts.map((h) => h.name).join(", ")}`);
      // another server answers for etcd and runs the drain
      let cluster: EtcdClusterView | undefined;
      let via: string | undefined;
      const errors: string[] = [...s.unreachable].map(([h, why]) => `${h}: ${why}`);
      for (const server of s.render.topo.servers.filter((x) => x.name !== a.name)) {
        const t = s.transports.get(server.name);
        if (!t) continue;
        try {
          cluster = await readCluster(t, etcdAccess());
          via = server.name;
          break;
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
      if (!via) throw new FmcError("ETCD_UNREACHABLE", `no other K3s server answered for etcd:\n${errors.join("\n")}`, "fmc etcd status");
      const plan = nodeRemovalPlan(s.render, a.name, host.roles.includes("k3s-server") ? cluster : undefined, via);
      process.stdout.write(removalPlanText(a.name, plan));
      process.exitCode = plan.ok ? 0 : 1;
    } finally {
      s.close();
    }
  },
});

export const node = defineCommand({
  meta: { name: "node", description: "K3s nodes: fmc node remove NAME --plan" },
  subCommands: { remove },
});
