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
// The waits read what K3s and kubectl print, in the formats kept in test/fixtures/k3s and
// test/fixtures/kubectl (see their README.md for where each comes from).
import { z } from "zod";
import { FmcError } from "../errors.js";
import { cmd, quote, script, slow, uploadScript, type Command } from "../hosts/command.js";
import { k3sBinDir } from "../hosts/os.js";
import type { ExecResult } from "../hosts/transport.js";
import { AGENT_JOIN_S, AGENT_UNIT, k3sBinaryCommand, pinnedSha256, SERVER_READY_S, SERVER_UNIT } from "../k3s/k3s-cli.js";
import type { RenderContext } from "../render/types.js";
import type { K3sBundle } from "../local/bundle.js";
import { etcdAccess, healthCommand, parseHealth, quorumCheck, type EtcdAccess, type EtcdClusterView } from "../k3s/etcd.js";
import { k3sCli, kubectl } from "../k3s/k3s-cli.js";
import { drainCommand, quorumStep } from "./node-removal.js";
import type { RunbookStep } from "./runbook.js";

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
// What K3s and kubectl answer

/** The version `k3s --version` prints on its first line: "k3s version v1.33.5+k3s1 (<commit>)" (k3s-io/k3s pkg/cli/cmds/root.go NewApp). */
export function parseK3sVersionOutput(stdout: string): string {
  const first = stdout.split("\n")[0]!.trim();
  const m = /^k3s version (v\d+\.\d+\.\d+\+k3s\d+)(?: |$)/.exec(first);
  if (!m) throw new FmcError("K3S_VERSION", `not what k3s --version prints: ${JSON.stringify(first.slice(0, 120))}`);
  return m[1]!;
}

/** What fmc reads of a Node object (`kubectl get node NAME -o json`, core/v1 Node). */
export interface NodeState {
  readonly name: string;
  /** status.nodeInfo.kubeletVersion: the version the node's kubelet runs ("v1.33.5+k3s1"). */
  readonly kubeletVersion: string;
  /** The Ready condition is "True". */
  readonly ready: boolean;
  /** The Ready condition as people read it: status, reason, message. */
  readonly readyText: string;
  /** spec.unschedulable (cordoned); left out of the JSON when false. */
  readonly unschedulable: boolean;
}

/** The fields fmc reads; everything else of the object is left alone (core/v1 Node: k8s.io/api core/v1 types.go). */
const NodeJson = z.object({
  kind: z.literal("Node"),
  metadata: z.object({ name: z.string() }),
  spec: z.object({ unschedulable: z.boolean().optional() }).optional(),
  status: z
    .object({
      conditions: z.array(z.object({ type: z.string(), status: z.string(), reason: z.string().optional(), message: z.string().optional() })).optional(),
      nodeInfo: z.object({ kubeletVersion: z.string() }).optional(),
    })
    .optional(),
});

export function parseNode(text: string): NodeState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new FmcError("KUBECTL_RESPONSE", `not a Node object as JSON: ${text.trim().slice(0, 200)}`);
  }
  const r = NodeJson.safeParse(raw);
  if (!r.success) throw new FmcError("KUBECTL_RESPONSE", `not a Node object: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const o = r.data;
  const ready = o.status?.conditions?.find((c) => c.type === "Ready");
  const readyText = ready ? [`Ready=${ready.status}`, ready.reason, ready.message].filter(Boolean).join(": ") : "no Ready condition yet";
  return {
    name: o.metadata.name,
    kubeletVersion: o.status?.nodeInfo?.kubeletVersion ?? "",
    ready: ready?.status === "True",
    readyText,
    unschedulable: o.spec?.unschedulable === true,
  };
}

/** Why `node` is not Ready (with kubelet `version`, when given), or undefined when it is. */
export function nodeNotReady(node: NodeState, version?: string): string | undefined {
  const why: string[] = [];
  if (!node.ready) why.push(`${node.name} is not Ready (${node.readyText})`);
  if (version && node.kubeletVersion !== version) why.push(`${node.name}'s kubelet runs ${node.kubeletVersion || "an unknown version"}, not ${version}`);
  return why.length ? why.join("; ") : undefined;
}

// ---------------------------------------------------------------------------------------------
// A probe: several read-only commands in one exec, each answer framed so none can spoil another

const PROBE = "fmc-probe";

/** Runs each part and prints one line per part: `fmc-probe <name> <exit code> <base64 of what it printed>`. */
export function probeCommand(parts: ReadonlyArray<readonly [name: string, command: Command]>, display: string): Command {
  const lines = parts.map(([name, c]) => {
    if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new FmcError("PROBE", `a probe part's name is a word: ${JSON.stringify(name)}`);
    return `out=$( { ${c.shell}; } 2>&1 ); printf '${PROBE} %s %s %s\\n' ${name} "$?" "$(printf %s "$out" | base64 -w0)"`;
  });
  return script(lines.join("\n"), display);
}

/** The output of probeCommand: each part's exit code and output. */
export function parseProbeParts(stdout: string): Map<string, ExecResult> {
  const out = new Map<string, ExecResult>();
  for (const line of stdout.split("\n")) {
    if (!line.trim()) continue;
    const m = /^fmc-probe ([a-z][a-z0-9-]*) (\d+) ([A-Za-z0-9+/=]*)$/.exec(line);
    if (!m) throw new FmcError("PROBE", `unexpected probe line ${JSON.stringify(line.slice(0, 200))}`);
    const text = Buffer.from(m[3]!, "base64").toString("utf8");
    out.set(m[1]!, { code: Number(m[2]), stdout: text, stderr: "" });
  }
  return out;
}

const short = (r: ExecResult) => (r.stdout.trim().split("\n").slice(-2).join(" / ") || `exit ${r.code}`).slice(0, 300);

/**
 * A server's probe: the binary's version, the API's /readyz (through K3s's kubectl and the admin
 * kubeconfig), its etcd member's /health and its Node object.
 */
function serverProbe(name: string, access: EtcdAccess = etcdAccess()): Command {
  return probeCommand(
    [
      ["version", k3sCli("--version")],
      ["readyz", kubectl("get", "--raw=/readyz")],
      ["etcd", healthCommand(access)],
      ["node", kubectl("get", "node", name, "-o", "json")],
    ],
    `k3s --version; k3s kubectl get --raw=/readyz; etcd /health; k3s kubectl get node ${name} -o json`,
  );
}

/** Why a server's probe is not healthy (running `version`, when given), or undefined when it is. */
export function serverProbeVerdict(name: string, stdout: string, version?: string): string | undefined {
  const parts = parseProbeParts(stdout);
  const part = (key: string): ExecResult => parts.get(key) ?? { code: 255, stdout: `no ${key} answer`, stderr: "" };
  const why: string[] = [];
  if (version) {
    const v = part("version");
    let got: string | undefined;
    try {
      got = v.code === 0 ? parseK3sVersionOutput(v.stdout) : undefined;
    } catch {
      got = undefined;
    }
    if (got !== version) why.push(`k3s --version: ${got ?? short(v)}${got ? `, not ${version}` : ""}`);
  }
  const readyz = part("readyz");
  if (readyz.code !== 0 || readyz.stdout.trim() !== "ok") why.push(`API /readyz: ${short(readyz)}`);
  const health = parseHealth("https://127.0.0.1:2379", part("etcd"));
  if (!health.healthy) why.push(`etcd member: ${health.reason ?? "not healthy"}`);
  const node = part("node");
  if (node.code !== 0) why.push(`node ${name}: ${short(node)}`);
  else {
    try {
      const n = nodeNotReady(parseNode(node.stdout), version);
      if (n) why.push(n);
    } catch (e) {
      why.push((e as Error).message);
    }
  }
  return why.length ? why.join("; ") : undefined;
}

/** How long the waits wait, and how often they look; tests make them tiny. */
export interface WaitOptions {
  /** Seconds a server may take to answer again (default SERVER_READY_S). */
  readonly serverS?: number;
  /** Seconds a node may take to be Ready again (default AGENT_JOIN_S). */
  readonly nodeS?: number;
  /** Seconds between two looks (default 5). */
  readonly everyS?: number;
}

/** Waits until server `name` answers healthy (running `version`, when given). */
export function serverWaitStep(name: string, version: string | undefined, w: WaitOptions = {}, access: EtcdAccess = etcdAccess()): RunbookStep {
  return {
    title: `wait until ${name} answers: API /readyz ok, its etcd member healthy, its node Ready${version ? ` with ${version}` : ""}`,
    on: name,
    command: serverProbe(name, access),
    verify: (r) => serverProbeVerdict(name, r.stdout, version),
    until: { seconds: w.serverS ?? SERVER_READY_S, everyS: w.everyS ?? 5 },
  };
}

/** Waits, asking on server `via`, until node `name` is Ready (with kubelet `version`, when given). */
export function nodeReadyStep(via: string, name: string, version: string | undefined, w: WaitOptions = {}): RunbookStep {
  return {
    title: `wait until node ${name} is Ready${version ? ` with kubelet ${version}` : ""}`,
    on: via,
    command: kubectl("get", "node", name, "-o", "json"),
    verify: (r) => {
      try {
        return nodeNotReady(parseNode(r.stdout), version);
      } catch (e) {
        return (e as Error).message;
      }
    },
    until: { seconds: w.nodeS ?? AGENT_JOIN_S, everyS: w.everyS ?? 5 },
  };
}

/** systemctl ACTION UNIT; a start or restart waits for K3s's readiness notification (Type=notify). */
export const unitCommand = (action: "start" | "stop" | "restart", unit: string): Command => slow(cmd("systemctl", action, unit), SERVER_READY_S);

// ---------------------------------------------------------------------------------------------
// The runbook

/**
 * The binary of `version` put where the node keeps K3s: /opt/bin on Flatcar (its /usr is
 * read-only), /usr/local/bin elsewhere, as apply chose (k3sBinDir; the node's /etc/os-release
 * decides, as apply's facts do). Bundle: uploaded and checked on the node; else downloaded and
 * checked against the release's checksums.
 */
export function upgradeBinaryCommand(ctx: RenderContext, version: string, bundle: K3sBundle | undefined): Command {
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
export function upgradeRunbook(ctx: RenderContext, from: string, to: string, cluster: EtcdClusterView | undefined, batch: number, o: UpgradeRunbookOptions = {}): UpgradeRunbook {
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
