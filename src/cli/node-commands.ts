// fmc node add|remove|replace: a K3s node joins or leaves the cluster in an order that keeps
// etcd's quorum (read before the plan is shown, and read again right before each change),
// with the load balancers' backends and the internal DNS following. Each prints its whole
// order first (--plan stops there), asks once (--yes), and stops at the first failed step.
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { openSession, selectPhases, type Session } from "../engine/session.js";
import { apply as applyPlan, plan as makePlan } from "../engine/run.js";
import { etcdAccess, isMember, memberLabel, quorumCheck, readClusterVia, replacementSteps, untilVotingMember } from "../k3s/etcd.js";
import { followDiffs, joinPhases, k3sNode, nodeRemovalPlan, refusalText, removalSteps, withoutHost } from "../runbooks/node-removal.js";
import { quorumStep } from "../runbooks/k3s-steps.js";
import type { RunbookStep } from "../runbooks/runbook.js";
import type { Phase, PhaseContext } from "../phases/phase.js";
import type { Host } from "../model/schema.js";
import { carryOut } from "./runbook-cli.js";
import { sessionArgs, sessionOptions, type SessionArgs } from "./session-args.js";

/** The positional is the node: the spec is named with -f here. */
const { phase: _phase, spec: _spec, ...connectArgs } = sessionArgs;
const runArgs = {
  plan: { type: "boolean", description: "show the checks and the exact order, change nothing", default: false },
  yes: { type: "boolean", alias: "y", description: "do not ask for confirmation", default: false },
} as const;

/** Every host a node change touches: the K3s nodes, the load balancers, the DNS host. */
const touched = (pc: PhaseContext): Host[] => {
  const t = pc.render.topo;
  return [...new Set([...t.servers, ...t.agents, ...t.withRole("loadbalancer"), ...(t.dnsHost ? [t.dnsHost] : [])])];
};

/** etcd as a server other than `exclude` reads it, and which server answered. */
const etcdVia = (s: Session, exclude: readonly string[]) => readClusterVia(s.render.topo.servers.map((x) => x.name), s.transports, { exclude, unreachable: s.unreachable });

/** A step that runs the engine's phases (plan from fresh facts, then apply), as fmc apply would, on `pc`'s spec. */
function applyStep(s: Session, pc: PhaseContext, phaseList: readonly Phase[], title: string, detail?: string): RunbookStep {
  const phases = phaseList.map((x) => x.name);
  return {
    title,
    on: "this machine",
    ...(detail ? { detail } : {}),
    act: async () => {
      const p = await makePlan(pc, phaseList, s.transports, { concurrency: s.concurrency });
      if (p.failedHosts.size) throw new FmcError("FACTS", [...p.failedHosts].map(([h, why]) => `${h}: ${why}`).join("\n"));
      const done = await applyPlan(p, s.transports, { concurrency: s.concurrency, reconnect: s.reconnect, onEvent: (e) => e.type === "change" && process.stderr.write(`      [${e.change.host}] ${e.change.phase}: ${e.change.title}\n`) });
      const skipped = p.skippedHosts.length ? `; not connected, left for the next fmc apply: ${p.skippedHosts.join(", ")}` : "";
      return `${done.changes} change(s) applied (phases ${phases.join(", ")})${skipped}`;
    },
  };
}

/** The load balancers and DNS follow the spec without `name`: its diffs as the detail, applied by the engine. */
function followStep(s: Session, name: string): RunbookStep[] {
  const diffs = followDiffs(s.render, name);
  if (!diffs.length) return [];
  const detail = diffs.map((d) => `${d.title}\n${d.detail ?? ""}`).join("\n");
  return [applyStep(s, { ...s.pc, render: withoutHost(s.render, name) }, selectPhases(["loadbalancer", "dns"]), `the load balancers and DNS stop naming ${name} (fmc apply --phase loadbalancer,dns on the spec without it)`, detail)];
}

/** A server's member, healthy and voting, read through `via` until it is or `seconds` pass. */
const memberHealthyStep = (via: string, name: string, seconds = 300): RunbookStep => ({
  title: `wait until ${name}'s etcd member is a healthy voting member`,
  on: via,
  act: (t) => untilVotingMember(t, etcdAccess(), name, seconds, 2),
});

/** The steps that join spec host `name`: the quorum check for a server, the install phases, the wait. */
async function joinSteps(s: Session, name: string, server: boolean, o: { exclude?: readonly string[]; checkLater?: boolean } = {}): Promise<{ steps: RunbookStep[]; refusal?: string }> {
  const steps: RunbookStep[] = [];
  let via: string | undefined;
  if (server) {
    const e = await etcdVia(s, [name, ...(o.exclude ?? [])]);
    via = e.via;
    if (e.cluster.members.some((m) => isMember(m, name))) throw new FmcError("USAGE", `${name} is an etcd member already`, "fmc etcd status");
    // after a dead member's removal (replace), the check is made then, on the cluster as it is
    const v = o.checkLater ? undefined : quorumCheck(e.cluster.members, e.cluster.healthy, { kind: "add", name, learner: true });
    if (v && !v.ok) return { steps, refusal: v.text };
    steps.push(quorumStep(via, { kind: "add", name, learner: true }, `add ${name}`));
  }
  // only this node: a drifted server elsewhere is fmc apply's, with its own plan and restart
  const install = joinPhases(name, server, selectPhases(["k3s-servers", "k3s-agents"]));
  const p = await makePlan(s.pc, install, s.transports, { concurrency: s.concurrency });
  const mine = p.changes.filter((c) => c.host === name);
  const detail = p.changes.map((c) => `${c.host}: ${c.title}`).join("\n");
  if (!s.transports.has(name)) throw new FmcError("UNREACHABLE", `${name} does not answer: ${s.unreachable.get(name) ?? "not in the inventory"}`);
  if (!mine.length) return { steps, refusal: `${name} runs K3s as the spec says already: nothing to add (fmc etcd status)` };
  steps.push(applyStep(s, s.pc, install, `install K3s on ${name} and join it through the VIP (${server ? "a server waits until its API and etcd member answer" : "an agent with an expiring bootstrap token, waited for"})`, detail));
  if (server && via) steps.push(memberHealthyStep(via, name));
  steps.push(applyStep(s, s.pc, selectPhases(["loadbalancer", "dns"]), `the load balancers and DNS name ${name} (fmc apply --phase loadbalancer,dns)`));
  return { steps };
}

async function withSession(a: SessionArgs, fn: (s: Session) => Promise<void>): Promise<void> {
  const s = await openSession({ ...sessionOptions(a), hosts: touched });
  try {
    await fn(s);
  } finally {
    s.close();
  }
}

const nameArg = { type: "positional", description: "the node (a spec host with a K3s role)", required: true } as const;
const reminder = (name: string) => `Now take ${name} out of the spec's hosts: while it is listed, the next fmc apply joins it again.\n`;

const add = defineCommand({
  meta: { name: "add", description: "Join a K3s node the spec lists: a server only when etcd allows a new member (every voting member healthy), installed and waited for; then the load balancers and DNS name it" },
  args: { ...connectArgs, name: nameArg, ...runArgs },
  async run({ args: a }) {
    await withSession(a, async (s) => {
      const { server } = k3sNode(s.render, a.name);
      const { steps, refusal } = await joinSteps(s, a.name, server);
      if (refusal) {
        process.stdout.write(`Adding ${a.name} is refused: ${refusal}\n`);
        process.exitCode = 1;
        return;
      }
      await carryOut({ heading: `Adding ${a.name} (${server ? "server" : "agent"}), in this order:`, steps, transports: s.transports, plan: a.plan, yes: a.yes, question: `Add ${a.name} to the cluster?`, stateDir: s.stateDir, what: "node add" });
    });
  },
});

const remove = defineCommand({
  meta: { name: "remove", description: "Remove a K3s node: drain, stop K3s, remove its etcd member, delete the node, load balancers and DNS follow; a server only when etcd keeps quorum (refused with the arithmetic otherwise)" },
  args: { ...connectArgs, name: nameArg, ...runArgs },
  async run({ args: a }) {
    await withSession(a, async (s) => {
      const { server } = k3sNode(s.render, a.name);
      const { via, cluster } = await etcdVia(s, [a.name]);
      const plan = nodeRemovalPlan(s.render, a.name, server ? cluster : undefined, via, s.transports.has(a.name));
      if (!plan.ok) {
        process.stdout.write(refusalText(a.name, plan.text));
        process.exitCode = 1;
        return;
      }
      const steps = [...plan.steps, ...followStep(s, a.name)];
      const done = await carryOut({ heading: `Removing ${a.name}${plan.quorum ? ` (${plan.quorum})` : ""}, in this order:`, steps, transports: s.transports, plan: a.plan, yes: a.yes, question: `Remove ${a.name} from the cluster? Its pods are evicted${server ? " and its etcd member is removed" : ""}.`, stateDir: s.stateDir, what: "node remove" });
      if (done || a.plan) process.stdout.write(reminder(a.name));
    });
  },
});

const replace = defineCommand({
  meta: { name: "replace", description: "Replace a K3s node by another the spec lists (--with NEW): NEW joins and is waited for, then NAME is drained and removed; for a dead server the other way round (etcd refuses a new member while one is down)" },
  args: { ...connectArgs, name: nameArg, with: { type: "string", description: "the spec host that takes its place", required: true }, ...runArgs },
  async run({ args: a }) {
    await withSession(a, async (s) => {
      const old = k3sNode(s.render, a.name);
      const next = k3sNode(s.render, a.with);
      if (old.server !== next.server) throw new FmcError("USAGE", `${a.name} is ${old.server ? "a server" : "an agent"} and ${a.with} ${next.server ? "a server" : "an agent"}: a replacement has the same role`);
      if (a.name === a.with) throw new FmcError("USAGE", "a node cannot replace itself", "to rebuild a node: fmc node remove NAME, wipe it, fmc node add NAME");
      const { via, cluster } = await etcdVia(s, [a.name, a.with]);
      let oldFirst = false;
      let member: { id: string; label: string } | undefined;
      if (old.server) {
        const verdict = replacementSteps(cluster.members, cluster.healthy, a.name, a.with);
        if (!verdict.ok) {
          process.stdout.write(`Replacing ${a.name} by ${a.with} is refused: ${verdict.text}\n`);
          process.exitCode = 1;
          return;
        }
        oldFirst = verdict.steps[1]?.action === "drain";
        const m = cluster.members.find((x) => isMember(x, a.name));
        if (m) member = { id: m.id, label: memberLabel(m) };
      }
      const removal = removalSteps(a.name, old.server, via, member, s.transports.has(a.name));
      const join = await joinSteps(s, a.with, next.server, { exclude: [a.name], checkLater: oldFirst });
      if (join.refusal) {
        process.stdout.write(`Replacing ${a.name} by ${a.with} is refused: ${join.refusal}\n`);
        process.exitCode = 1;
        return;
      }
      const steps = oldFirst ? [...removal, ...join.steps] : [...join.steps, ...removal];
      const done = await carryOut({ heading: `Replacing ${a.name} by ${a.with}${oldFirst ? ` (${a.name} is down: it goes first, as etcd refuses a new member while one is down)` : ""}, in this order:`, steps: [...steps, ...followStep(s, a.name)], transports: s.transports, plan: a.plan, yes: a.yes, question: `Replace ${a.name} by ${a.with}?`, stateDir: s.stateDir, what: "node replace" });
      if (done || a.plan) process.stdout.write(reminder(a.name));
    });
  },
});

export const node = defineCommand({
  meta: { name: "node", description: "K3s nodes: fmc node add|remove|replace NAME (each with --plan and a confirmation)" },
  subCommands: { add, remove, replace },
});
