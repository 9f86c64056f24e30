// fmc reset: the K3s layer torn down on every node of the spec, agents first and the first
// server last, after naming what is destroyed; the record that the cluster was bootstrapped
// goes last, so the next fmc apply starts a new cluster from the first server.
import { defineCommand } from "citty";
import { openSession } from "../engine/session.js";
import { resetRunbook, resetWarning } from "../runbooks/reset.js";
import { carryOut } from "./runbook-cli.js";
import { sessionArgs, sessionOptions } from "./session-args.js";

const { phase: _phase, ...connectArgs } = sessionArgs;

export const reset = defineCommand({
  meta: { name: "reset", description: "Tear down the K3s cluster: every node's K3s, etcd data, pods, certificates and binary (agents first, the first server last); names what it destroys and asks first (--yes to skip); other layers stay" },
  args: {
    ...connectArgs,
    plan: { type: "boolean", description: "show what would be destroyed and the order, change nothing", default: false },
    yes: { type: "boolean", alias: "y", description: "do not ask (the cluster's data is gone afterwards)", default: false },
  },
  async run({ args: a }) {
    const s = await openSession({ ...sessionOptions(a), hosts: (pc) => [...pc.render.topo.agents, ...pc.render.topo.servers] });
    try {
      const steps = resetRunbook(s.render, (h) => s.transports.has(h), async () => (s.pc.k3s?.forgetBootstrap() ? "the bootstrap record is gone" : "there was no bootstrap record"));
      process.stdout.write(`${resetWarning(s.render)}\n`);
      await carryOut({ heading: "In this order:", steps, transports: s.transports, plan: a.plan, yes: a.yes, question: `Destroy the K3s cluster ${s.render.spec.name}?`, stateDir: s.stateDir, what: "reset" });
    } finally {
      s.close();
    }
  },
});
