// A K3s upgrade as a pure plan: version-skew checks first (Kubernetes supports moving one
// minor version at a time, and servers before agents: kubernetes.io/releases/version-skew-policy,
// docs.k3s.io/upgrades/manual), then the servers one at a time, each only when etcd keeps
// quorum while it restarts and each healthy again before the next; then the agents in
// batches, each cordoned, drained, upgraded and uncordoned. A run stops at the first failure
// with the cluster still serving.
import { FmcError } from "../errors.js";
import type { RenderContext } from "../render/types.js";
import { quorumCheck, type EtcdClusterView } from "./etcd.js";

export interface K3sVersion {
  readonly text: string;
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** The K3s build of that Kubernetes version: v1.33.4+k3s1 -> 1. */
  readonly build: number;
}

/** v1.33.4+k3s1 (K3s's release tags; the install script's INSTALL_K3S_VERSION). */
export function parseK3sVersion(text: string): K3sVersion {
  const m = /^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$/.exec(text);
  if (!m) throw new FmcError("USAGE", `${JSON.stringify(text)} is not a K3s version`, "K3s versions read like v1.33.5+k3s1 (github.com/k3s-io/k3s/releases)");
  return { text, major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), build: Number(m[4]) };
}

const order = (v: K3sVersion) => [v.major, v.minor, v.patch, v.build];
function compare(a: K3sVersion, b: K3sVersion): number {
  const x = order(a);
  const y = order(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

/** Refuses a downgrade, a skipped minor version and a major change; undefined when it may go ahead. */
export function skewRefusal(from: K3sVersion, to: K3sVersion): string | undefined {
  if (compare(to, from) === 0) return `the cluster runs ${from.text} already`;
  if (compare(to, from) < 0) return `${to.text} is older than ${from.text}: fmc does not downgrade K3s (etcd's and Kubernetes' stored data move forward only; restore a snapshot instead)`;
  if (to.major !== from.major) return `${from.text} -> ${to.text} changes the major version`;
  if (to.minor > from.minor + 1) return `${from.text} -> ${to.text} skips ${to.minor - from.minor - 1} minor version(s): Kubernetes upgrades one minor version at a time (v${from.major}.${from.minor + 1}.x first)`;
  return undefined;
}

export interface UpgradeStep {
  readonly node: string;
  readonly role: "server" | "agent";
  /** Servers: 1, 2, 3 in turn; agents: their batch. */
  readonly wave: number;
  readonly actions: readonly string[];
}

export type UpgradePlan = { readonly ok: true; readonly from: string; readonly to: string; readonly steps: readonly UpgradeStep[] } | { readonly ok: false; readonly text: string };

/**
 * The plan from `from` (what the servers run, or the spec's version) to `to`. With etcd's
 * view, each server's restart is checked as a stop: refused when quorum would be lost.
 */
export function upgradePlan(ctx: RenderContext, fromText: string, toText: string, cluster: EtcdClusterView | undefined, batch: number): UpgradePlan {
  const from = parseK3sVersion(fromText);
  const to = parseK3sVersion(toText);
  if (!Number.isInteger(batch) || batch < 1) throw new FmcError("USAGE", `--batch ${batch}: a whole number of agents, at least 1`);
  const skew = skewRefusal(from, to);
  if (skew) return { ok: false, text: skew };
  const steps: UpgradeStep[] = [];
  ctx.topo.servers.forEach((s, i) => {
    if (cluster) {
      const v = quorumCheck(cluster.members, cluster.healthy, { kind: "stop", member: s.name });
      if (!v.ok) throw new FmcError("QUORUM", `upgrading ${s.name} restarts it: ${v.text}`, "fmc etcd status; bring the unhealthy member back first");
    }
    steps.push({
      node: s.name,
      role: "server",
      wave: i + 1,
      actions: [
        `install K3s ${to.text} (binary checked against the release's sha256sum-amd64.txt)`,
        "restart k3s",
        "wait: API /readyz answers, the node is Ready, its etcd member is healthy",
      ],
    });
  });
  const agents = ctx.topo.agents;
  agents.forEach((a, i) => {
    steps.push({
      node: a.name,
      role: "agent",
      wave: Math.floor(i / batch) + 1,
      actions: [`cordon and drain ${a.name}`, `install K3s ${to.text}`, "restart k3s-agent", "wait: the node is Ready with the new version", `uncordon ${a.name}`],
    });
  });
  return { ok: true, from: from.text, to: to.text, steps };
}

export function upgradePlanText(plan: UpgradePlan): string {
  if (!plan.ok) return `Upgrade refused: ${plan.text}\n`;
  const out = [`Upgrade K3s ${plan.from} -> ${plan.to}: servers one at a time, then agents in batches; it stops at the first failure`];
  let n = 0;
  for (const role of ["server", "agent"] as const) {
    const waves = [...new Set(plan.steps.filter((s) => s.role === role).map((s) => s.wave))];
    for (const w of waves) {
      const nodes = plan.steps.filter((s) => s.role === role && s.wave === w);
      out.push(`  ${++n}. ${role === "server" ? "server" : `agents (batch ${w})`} ${nodes.map((s) => s.node).join(", ")}: ${nodes[0]!.actions.join("; ")}`);
    }
  }
  return `${out.join("\n")}\n`;
}
