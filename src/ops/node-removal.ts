// What removing one K3s node takes, in order, as a pure plan: read etcd first (a server
// is removed only when etcd keeps quorum through it; otherwise the refusal carries the
// arithmetic), drain, stop K3s on it, remove its etcd member, delete the Kubernetes node,
// and what follows in the files fmc renders: the load balancers' HAProxy backends and the
// internal DNS records lose it once the host leaves the spec.
import { createTwoFilesPatch } from "diff";
import { FmcError } from "../errors.js";
import { haproxyConfig } from "../render/haproxy.js";
import { dnsRecords } from "../render/dns.js";
import type { RenderContext } from "../render/types.js";
import { Topology } from "../spec/topology.js";
import type { Host } from "../spec/schema.js";
import { isMember, memberLabel, quorumCheck, type EtcdClusterView } from "./etcd.js";

export interface RemovalStep {
  readonly title: string;
  /** Where it runs, and the command (as shown to people). */
  readonly on: string;
  readonly command?: string;
  /** A unified diff of a rendered file, for the steps that follow the spec. */
  readonly diff?: string;
}

export type RemovalPlan = { readonly ok: true; readonly quorum?: string; readonly steps: readonly RemovalStep[] } | { readonly ok: false; readonly text: string };

/** The render context of the spec without `name`: what apply renders once the host is gone from it. */
export function withoutHost(ctx: RenderContext, name: string): RenderContext {
  const spec = { ...ctx.spec, hosts: ctx.spec.hosts.filter((h) => h.name !== name) };
  return { ...ctx, spec, topo: new Topology(spec, ctx.topo.sshKeys) };
}

const patch = (path: string, before: string, after: string) => createTwoFilesPatch(path, path, before, after, "now", `without the node`, { context: 1 });

/**
 * The plan for removing K3s node `name`: for a server, `cluster` is etcd as the servers see
 * it (fmc etcd status) and decides; `via` is the server that drains and removes it.
 */
export function nodeRemovalPlan(ctx: RenderContext, name: string, cluster: EtcdClusterView | undefined, via: string): RemovalPlan {
  const host = ctx.spec.hosts.find((h) => h.name === name);
  if (!host) throw new FmcError("USAGE", `${name}: no such host in the spec`, `hosts: ${ctx.spec.hosts.map((h) => h.name).join(", ")}`);
  const isServer = host.roles.includes("k3s-server");
  if (!isServer && !host.roles.includes("k3s-agent")) throw new FmcError("USAGE", `${name} is not a K3s node (roles: ${host.roles.join(", ")})`);
  if (isServer && via === name) throw new FmcError("USAGE", `${name} cannot drain and remove itself`, "another server must answer");
  const steps: RemovalStep[] = [];
  let quorum: string | undefined;
  let member: { id: string; label: string } | undefined;
  if (isServer) {
    if (!cluster) throw new FmcError("ETCD_UNREACHABLE", `${name} is a server: its removal needs etcd's member list and health first, and no server answered`);
    const m = cluster.members.find((x) => isMember(x, name));
    const verdict = quorumCheck(cluster.members, cluster.healthy, { kind: "remove", member: name });
    if (!verdict.ok) return { ok: false, text: verdict.text };
    quorum = verdict.text;
    if (m) member = { id: m.id, label: memberLabel(m) };
  }
  steps.push({ title: `drain ${name}: cordon it and evict its pods`, on: via, command: `k3s kubectl drain ${name} --ignore-daemonsets --delete-emptydir-data --timeout=300s` });
  steps.push({ title: `stop K3s on ${name}`, on: name, command: `systemctl disable --now ${isServer ? "k3s" : "k3s-agent"}` });
  if (isServer) {
    steps.push(
      member
        ? { title: `remove etcd member ${member.label} (ID ${member.id})`, on: via, command: `etcd: POST /v3/cluster/member/remove {"ID":"${member.id}"}` }
        : { title: `no etcd member of ${name} is listed: nothing to remove from etcd`, on: via },
    );
  }
  steps.push({ title: `delete node ${name} from Kubernetes`, on: via, command: `k3s kubectl delete node ${name}` });
  // what follows from the spec without it
  const after = withoutHost(ctx, name);
  const lbs: Host[] = ctx.topo.withRole("loadbalancer");
  for (const lb of lbs) {
    const before = haproxyConfig(ctx, lb);
    const next = haproxyConfig(after, lb);
    if (before !== next) steps.push({ title: `${lb.name}: HAProxy stops sending traffic to ${name} (${host.address})`, on: lb.name, diff: patch("/etc/haproxy/haproxy.cfg", before, next) });
  }
  const recs = (c: RenderContext) => dnsRecords(c).map((r) => `${r.name} ${r.type} ${r.value}`).join("\n") + "\n";
  const dnsBefore = recs(ctx);
  const dnsAfter = recs(after);
  if (dnsBefore !== dnsAfter) steps.push({ title: `internal DNS: ${name}'s records go`, on: ctx.topo.dnsHost?.name ?? "the DNS host", diff: patch(`zone ${ctx.spec.domain}`, dnsBefore, dnsAfter) });
  steps.push({ title: `remove ${name} from the spec's hosts, then fmc apply: the load balancers and DNS follow it`, on: "this machine" });
  return { ok: true, ...(quorum ? { quorum } : {}), steps };
}

/** The plan as people read it. */
export function removalPlanText(name: string, plan: RemovalPlan): string {
  if (!plan.ok) return `Removing ${name} is refused: ${plan.text}\n`;
  const out = [`Removing ${name}${plan.quorum ? ` (${plan.quorum})` : ""}, in this order:`];
  plan.steps.forEach((s, i) => {
    out.push(`  ${i + 1}. ${s.title}${s.command ? `\n       on ${s.on}: ${s.command}` : ""}`);
    if (s.diff) out.push(...s.diff.trimEnd().split("\n").slice(2).map((l) => `       ${l}`));
  });
  return `${out.join("\n")}\n`;
}
