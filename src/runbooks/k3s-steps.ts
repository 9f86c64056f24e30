// The runbook steps K3s's day-2 operations share: etcd read again right before a change that
// needs quorum, a node drained, a K3s unit stopped, started or restarted, and the waits until
// a server answers (its API, its etcd member, its node) or a node is Ready, with the probe and
// the Node object they read. fmc upgrade, fmc certs rotate and fmc node remove/replace build
// their runbooks from these; no runbook imports another. The waits read what K3s and kubectl
// print, in the formats kept in test/fixtures/k3s and test/fixtures/kubectl (see their
// README.md for where each comes from).
import { z } from "zod";
import { FmcError } from "../errors.js";
import { cmd, script, slow, type Command } from "../hosts/command.js";
import type { ExecResult, Transport } from "../hosts/transport.js";
import { etcdAccess, healthCommand, parseHealth, quorumCheck, readCluster, type EtcdAccess, type EtcdChange } from "../k3s/etcd.js";
import { AGENT_JOIN_S, k3sCli, kubectl, parseK3sVersionOutput, SERVER_READY_S } from "../k3s/k3s-cli.js";
import type { RunbookStep } from "./runbook.js";

/** A step that reads etcd again through `via` and fails unless `change` keeps quorum: the plan's check, made on the cluster as it is right then. */
export function quorumStep(via: string, change: EtcdChange, what: string, access: EtcdAccess = etcdAccess()): RunbookStep {
  return {
    title: `read etcd again: ${what} only if etcd keeps quorum`,
    on: via,
    act: async (t?: Transport) => {
      if (!t) throw new FmcError("UNREACHABLE", `${via} is not connected`);
      const now = await readCluster(t, access);
      const v = quorumCheck(now.members, now.healthy, change);
      if (!v.ok) throw new FmcError("QUORUM", `refused: ${v.text}`);
      return v.text;
    },
  };
}

/** How long a drain may take before it fails the step (kubectl drain --timeout). */
const DRAIN_TIMEOUT_S = 300;

/** `kubectl drain` as fmc runs it (on a server): daemonsets stay, emptyDir data goes, bounded, and allowed its time. */
export const drainCommand = (node: string): Command => slow(kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", `--timeout=${DRAIN_TIMEOUT_S}s`), DRAIN_TIMEOUT_S + 30);

// ---------------------------------------------------------------------------------------------
// What kubectl answers about a node

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
