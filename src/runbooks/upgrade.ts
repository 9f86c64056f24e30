// A K3s upgrade: version-skew checks first (Kubernetes supports moving one minor version at a
// time, and servers before agents: kubernetes.io/releases/version-skew-policy; "upgrade server
// nodes first one at a time, then any agent nodes", docs.k3s.io/upgrades/manual), then a
// runbook: each server in turn, only when etcd keeps quorum while it restarts (read again right
// before it), gets the new binary, restarts and is waited for until its API, its etcd member and
// its node answer with the new version; then the agents in batches: a batch is cordoned and
// drained first, then each of its agents gets the binary, restarts, is waited for until its node
// is Ready with the new kubelet, and is uncordoned. A run stops at the first failure with the
// cluster still serving (at most one server, or one batch of agents, out at any time).
//
// K3s's manual upgrade is a binary replacement and a restart of the unit (docs.k3s.io/upgrades/
// manual, "Manually Upgrade K3s Using the Binary"); fmc's units never change with the version.
// The quorum re-reads, drains, restarts and waits are the steps the runbooks share
// (src/runbooks/k3s-steps.ts).
import { FmcError } from "../errors.js";
import { script, slow, uploadScript, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import { k3sBinDir } from "../hosts/os.js";
import { quorumCheck, type EtcdAccess, type EtcdClusterView } from "../k3s/etcd.js";
import { AGENT_UNIT, k3sBinaryCommand, kubectl, parseK3sVersion, pinnedSha256, SERVER_UNIT, type K3sVersion } from "../k3s/k3s-cli.js";
import type { K3sBundle } from "../local/bundle.js";
import type { ClusterContext } from "../state/context.js";
import { drainCommand, nodeReadyStep, quorumStep, serverWaitStep, unitCommand, type WaitOptions } from "./k3s-steps.js";
import type { RunbookStep } from "./runbook.js";

const order = (v: K3sVersion) => [v.major, v.minor, v.patch, v.build];
/** Negative when a is older than b, 0 when equal, positive when newer. */
function compareK3sVersions(a: K3sVersion, b: K3sVersion): number {
  const x = order(a);
  const y = order(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

/** Refuses a downgrade, a skipped minor version and a major change; undefined when it may go ahead. */
export function skewRefusal(from: K3sVersion, to: K3sVersion): string | undefined {
  if (compareK3sVersions(to, from) === 0) return `the cluster runs ${from.text} already`;
  if (compareK3sVersions(to, from) < 0) return `${to.text} is older than ${from.text}: fmc does not downgrade K3s (etcd's and Kubernetes' stored data move forward only; restore a snapshot instead)`;
  if (to.major !== from.major) return `${from.text} -> ${to.text} changes the major version`;
  if (to.minor > from.minor + 1) return `${from.text} -> ${to.text} skips ${to.minor - from.minor - 1} minor version(s): Kubernetes upgrades one minor version at a time (v${from.major}.${from.minor + 1}.x first)`;
  return undefined;
}

/**
 * Where an upgrade starts from: the oldest version the nodes' binaries report (`fallback`, the
 * spec's pinned version, when none was read). Refused when a node runs a version newer than `to`
 * already (that node would be downgraded).
 */
export function upgradeFrom(versions: ReadonlyMap<string, string>, to: string, fallback: string): { readonly ok: true; readonly from: string; readonly running: readonly string[] } | { readonly ok: false; readonly text: string } {
  const target = parseK3sVersion(to);
  const known = [...versions].map(([node, text]) => ({ node, v: parseK3sVersion(text) }));
  const newer = known.filter((k) => compareK3sVersions(k.v, target) > 0);
  if (newer.length) return { ok: false, text: `${newer.map((k) => `${k.node} runs ${k.v.text}`).join(", ")}, newer than ${target.text}: fmc does not downgrade K3s` };
  const oldest = known.reduce<(typeof known)[number] | undefined>((m, k) => (!m || compareK3sVersions(k.v, m.v) < 0 ? k : m), undefined);
  const running = [...new Set(known.map((k) => k.v.text))].sort((a, b) => compareK3sVersions(parseK3sVersion(a), parseK3sVersion(b)));
  return { ok: true, from: oldest?.v.text ?? parseK3sVersion(fallback).text, running };
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
 * The plan from `from` (the oldest version the nodes run, or the spec's version) to `to`. With
 * etcd's view, each server's restart is checked as a stop: refused when quorum would be lost.
 */
export function upgradePlan(ctx: ClusterContext, fromText: string, toText: string, cluster: EtcdClusterView | undefined, batch: number): UpgradePlan {
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
      actions: [`install K3s ${to.text}`, "restart k3s", "wait: API /readyz answers, its etcd member is healthy, the node is Ready with the new version"],
    });
  });
  ctx.topo.agents.forEach((a, i) => {
    steps.push({
      node: a.name,
      role: "agent",
      wave: Math.floor(i / batch) + 1,
      actions: [`cordon and drain ${a.name}`, `install K3s ${to.text}`, "restart k3s-agent", "wait: the node is Ready with the new version", `uncordon ${a.name}`],
    });
  });
  return { ok: true, from: from.text, to: to.text, steps };
}

// ---------------------------------------------------------------------------------------------
// The runbook

/**
 * The binary of `version` put where the node keeps K3s: /opt/bin on Flatcar (its /usr is
 * read-only), /usr/local/bin elsewhere, as apply chose (k3sBinDir; the node's /etc/os-release
 * decides, as apply's facts do). Bundle: uploaded and checked on the node; else downloaded and
 * checked against the release's checksums.
 */
export function upgradeBinaryCommand(ctx: ClusterContext, version: string, bundle: K3sBundle | undefined): Command {
  const flatcar = k3sBinaryCommand(ctx, version, k3sBinDir("flatcar"), bundle);
  const other = k3sBinaryCommand(ctx, version, k3sBinDir("debian-like"), bundle);
  const body = `if grep -qs '^ID=flatcar' /etc/os-release; then exec bash -c ${quote(flatcar.command.shell)}; else exec bash -c ${quote(other.command.shell)}; fi`;
  const display = `install K3s ${version} in ${k3sBinDir("flatcar")} (Flatcar) or ${k3sBinDir("debian-like")}: ${flatcar.how}`;
  return slow(bundle ? uploadScript(body, display, bundle.binary.path) : script(body, display), 900);
}

export interface UpgradeRunbookOptions {
  /** A checked bundle of the target version; without one the nodes download it. */
  readonly bundle?: K3sBundle;
  /** The server that drains, waits for and uncordons the agents (default: the first server). */
  readonly via?: string;
  readonly wait?: WaitOptions;
  readonly access?: EtcdAccess;
}

export type UpgradeRunbook =
  | { readonly ok: true; readonly from: string; readonly to: string; readonly heading: string; readonly steps: readonly RunbookStep[] }
  | { readonly ok: false; readonly text: string };

/**
 * The upgrade from `from` to `to` as runbook steps, in upgradePlan's order and with its refusals.
 * Per server: quorum read again, install, restart, wait. Per batch of agents: every agent of the
 * batch drained first, then per agent install, restart, wait, uncordon.
 */
export function upgradeRunbook(ctx: ClusterContext, from: string, to: string, cluster: EtcdClusterView | undefined, batch: number, o: UpgradeRunbookOptions = {}): UpgradeRunbook {
  const plan = upgradePlan(ctx, from, to, cluster, batch);
  if (!plan.ok) return plan;
  const via = o.via ?? ctx.topo.servers[0]?.name;
  const install = upgradeBinaryCommand(ctx, plan.to, o.bundle);
  const how = o.bundle ? "from the bundle, checked on the node" : `downloaded by the node, checked against ${pinnedSha256(ctx, plan.to) ? "the spec's k3s.sha256" : "the release's checksums"}`;
  const steps: RunbookStep[] = [];
  for (const s of plan.steps.filter((x) => x.role === "server")) {
    steps.push(
      quorumStep(s.node, { kind: "stop", member: s.node }, `restart ${s.node}`, o.access),
      { title: `install K3s ${plan.to} on ${s.node} (${how})`, on: s.node, command: install },
      { title: `restart K3s on ${s.node}`, on: s.node, command: unitCommand("restart", SERVER_UNIT) },
      serverWaitStep(s.node, plan.to, o.wait, o.access),
    );
  }
  const agents = plan.steps.filter((x) => x.role === "agent");
  if (agents.length && !via) throw new FmcError("NO_SERVERS", "the spec has agents but no K3s server to drain them through");
  for (const wave of [...new Set(agents.map((a) => a.wave))]) {
    const inBatch = agents.filter((a) => a.wave === wave);
    for (const a of inBatch) {
      steps.push({ title: `cordon and drain ${a.node} (batch ${wave})`, on: via!, command: drainCommand(a.node) });
    }
    for (const a of inBatch) {
      steps.push(
        { title: `install K3s ${plan.to} on ${a.node} (${how})`, on: a.node, command: install },
        { title: `restart the K3s agent on ${a.node}`, on: a.node, command: unitCommand("restart", AGENT_UNIT) },
        nodeReadyStep(via!, a.node, plan.to, o.wait),
        { title: `uncordon ${a.node}`, on: via!, command: kubectl("uncordon", a.node) },
      );
    }
  }
  const nAgents = agents.length;
  const heading =
    `Upgrade K3s ${plan.from} -> ${plan.to}: ${ctx.topo.servers.length} server(s) one at a time, each healthy again before the next` +
    (nAgents ? `, then ${nAgents} agent(s) in batches of ${batch}, drained first` : "") +
    "; it stops at the first failure";
  return { ok: true, from: plan.from, to: plan.to, heading, steps };
}

/** What the spec should say once the upgrade is done: fmc never edits it. */
export const specVersionNote = (to: string): string =>
  `K3s ${to} runs on every node. Set k3s.version: ${to} in the spec: fmc never edits it, and until it says ${to}, fmc apply leaves K3s on these nodes as it is and notes the difference.\n`;
