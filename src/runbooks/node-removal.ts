// What removing one K3s node takes, in order, as a runbook: read etcd first (a server is
// removed only when etcd keeps quorum through it; otherwise the refusal carries the
// arithmetic) and again right before its member goes, drain it, stop and disable K3s on it,
// remove its etcd member, delete the Kubernetes node, set its old etcd data aside so a later
// add joins afresh; then what follows in the files fmc renders: the load balancers' HAProxy
// backends and the internal DNS records lose it (applied by the CLI, which owns the engine).
import { createTwoFilesPatch } from "diff";
import { FmcError } from "../errors.js";
import { script, type Command } from "../hosts/command.js";
import type { ExecResult } from "../hosts/transport.js";
import { haproxyConfig } from "../render/haproxy.js";
import { dnsRecords } from "../render/dns.js";
import type { ClusterContext } from "../state/context.js";
import { Topology } from "../model/topology.js";
import type { Host } from "../model/schema.js";
import { etcdAccess, isMember, K3S_DB_DIR, memberLabel, memberRemoveCommand, quorumCheck, type EtcdClusterView } from "../k3s/etcd.js";
import { kubectl } from "../k3s/k3s-cli.js";
import { drainCommand, quorumStep } from "./k3s-steps.js";
import type { RunbookStep } from "./runbook.js";
import type { Phase } from "../phases/phase.js";

export type RemovalPlan = { readonly ok: true; readonly quorum?: string; readonly steps: readonly RunbookStep[]; readonly follow: readonly RunbookStep[] } | { readonly ok: false; readonly text: string };

/** The render context of the spec without `name`: what apply renders once the host is gone from it. */
export function withoutHost(ctx: ClusterContext, name: string): ClusterContext {
  const spec = { ...ctx.spec, hosts: ctx.spec.hosts.filter((h) => h.name !== name) };
  return { ...ctx, spec, topo: new Topology(spec, ctx.topo.sshKeys) };
}

const patch = (path: string, before: string, after: string) => createTwoFilesPatch(path, path, before, after, "now", `without the node`, { context: 1 }).split("\n").slice(2).join("\n");

/** The spec host `name`, refused unless it is a K3s node. */
export function k3sNode(ctx: ClusterContext, name: string): { host: Host; server: boolean } {
  const host = ctx.spec.hosts.find((h) => h.name === name);
  if (!host) throw new FmcError("USAGE", `${name}: no such host in the spec`, `hosts: ${ctx.spec.hosts.map((h) => h.name).join(", ")}`);
  const server = host.roles.includes("k3s-server");
  if (!server && !host.roles.includes("k3s-agent")) throw new FmcError("USAGE", `${name} is not a K3s node (roles: ${host.roles.join(", ")})`);
  return { host, server };
}

/** etcd's gateway answers an error as {"error": …, "code": n} with curl's exit 0. */
function gatewayError(r: ExecResult): string | undefined {
  try {
    const j = JSON.parse(r.stdout) as { error?: string; message?: string };
    return j.error ? `etcd refused: ${j.message ?? j.error}` : undefined;
  } catch {
    return `etcd's answer is not JSON: ${r.stdout.slice(0, 200)}`;
  }
}

const setAside = (host: string, dir: string, tag: string): Command =>
  script(`set -eu\nif [ -d ${dir} ]; then mv ${dir} ${dir}.${tag}-$(date +%Y%m%d%H%M%S); fi`, `move ${dir} aside on ${host} (${dir}.${tag}-<time>)`);

/**
 * The drain, stop, member removal and deletion of `name`, run through `via` (another server).
 * `reachable`: whether `name` answers (a dead node cannot be stopped: that step reminds instead).
 */
export function removalSteps(name: string, server: boolean, via: string, member: { id: string; label: string } | undefined, reachable: boolean): RunbookStep[] {
  const steps: RunbookStep[] = [];
  if (server) steps.push(quorumStep(via, { kind: "remove", member: member?.id ?? name }, `remove ${name}`));
  steps.push({ title: `drain ${name}: cordon it and evict its pods`, on: via, command: drainCommand(name) });
  const unit = server ? "k3s" : "k3s-agent";
  steps.push(
    reachable
      ? { title: `stop and disable K3s on ${name}, so it cannot rejoin`, on: name, command: script(`systemctl disable --now ${unit}`, `systemctl disable --now ${unit}`) }
      : { title: `${name} does not answer: it must stay off (or be wiped) before it comes back, or it rejoins`, on: via, act: async () => `${name} was unreachable: K3s on it was not stopped` },
  );
  if (server) {
    steps.push(
      member
        ? { title: `remove etcd member ${member.label} (ID ${member.id})`, on: via, command: memberRemoveCommand(etcdAccess(), member.id), verify: gatewayError }
        : { title: `no etcd member of ${name} is listed: nothing to remove from etcd`, on: via, act: async () => undefined },
    );
  }
  steps.push({ title: `delete node ${name} from Kubernetes`, on: via, command: kubectl("delete", "node", name) });
  if (server && reachable) steps.push({ title: `set ${name}'s etcd data aside, so a later add joins afresh`, on: name, command: setAside(name, K3S_DB_DIR, "removed") });
  return steps;
}

/** What follows from the spec without `name`: the load balancers' and DNS's diffs, as plan text. */
export function followDiffs(ctx: ClusterContext, name: string): RunbookStep[] {
  const host = ctx.spec.hosts.find((h) => h.name === name)!;
  const after = withoutHost(ctx, name);
  const out: RunbookStep[] = [];
  for (const lb of ctx.topo.withRole("loadbalancer")) {
    const before = haproxyConfig(ctx, lb);
    const next = haproxyConfig(after, lb);
    if (before !== next) out.push({ title: `${lb.name}: HAProxy stops sending traffic to ${name} (${host.address})`, on: lb.name, detail: patch("/etc/haproxy/haproxy.cfg", before, next) });
  }
  const recs = (c: ClusterContext) => dnsRecords(c).map((r) => `${r.name} ${r.type} ${r.value}`).join("\n") + "\n";
  const dnsBefore = recs(ctx);
  const dnsAfter = recs(after);
  if (dnsBefore !== dnsAfter) out.push({ title: `internal DNS: ${name}'s records go`, on: ctx.topo.dnsHost?.name ?? "the DNS host", detail: patch(`zone ${ctx.spec.domain}`, dnsBefore, dnsAfter) });
  return out;
}

/**
 * The plan for removing K3s node `name`: for a server, `cluster` is etcd as the servers see
 * it (fmc etcd status) and decides; `via` is the server that drains and removes it.
 */
export function nodeRemovalPlan(ctx: ClusterContext, name: string, cluster: EtcdClusterView | undefined, via: string, reachable = true): RemovalPlan {
  const { server } = k3sNode(ctx, name);
  if (via === name) throw new FmcError("USAGE", `${name} cannot drain and remove itself`, "another server must answer");
  let quorum: string | undefined;
  let member: { id: string; label: string } | undefined;
  if (server) {
    if (!cluster) throw new FmcError("ETCD_UNREACHABLE", `${name} is a server: its removal needs etcd's member list and health first, and no server answered`);
    const m = cluster.members.find((x) => isMember(x, name));
    const verdict = quorumCheck(cluster.members, cluster.healthy, { kind: "remove", member: m?.id ?? name });
    if (!verdict.ok) return { ok: false, text: verdict.text };
    quorum = verdict.text;
    if (m) member = { id: m.id, label: memberLabel(m) };
  }
  return { ok: true, ...(quorum ? { quorum } : {}), steps: removalSteps(name, server, via, member, reachable), follow: followDiffs(ctx, name) };
}

/** The refusal as people read it. */
export const refusalText = (name: string, text: string) => `Removing ${name} is refused: ${text}\n`;

/** The change the k3s-servers phase makes on a server for agents joining in this run: their bootstrap token. */
const isJoinToken = (c: { readonly title: string }) => c.title.startsWith("create a bootstrap token for ");

/**
 * The K3s install phases as `fmc node add NAME` (and replace) applies them: only NAME is planned
 * and changed. A drifted server elsewhere is left to fmc apply, whose plan shows its restart;
 * the one change on another node is, when NAME is an agent, the bootstrap token it joins with
 * (made on the first server that answers). Plans and the engine's re-plans both go through it.
 */
export function joinPhases(name: string, server: boolean, phases: readonly Phase[]): Phase[] {
  return phases.map((p) => ({
    ...p,
    plan: (pc, host, facts) => p.plan(pc, host, facts).filter((c) => c.host === name || (!server && isJoinToken(c))),
  }));
}
