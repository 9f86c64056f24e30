// Replaying K3s, kubectl and etcd for day-2 runbooks: one RecordingTransport per host, each
// answering by what the command is (its display, the part people read) with the real output
// formats kept in test/fixtures/{k3s,kubectl,etcd} (their README.md says where each comes from),
// and one log of every command in order, host-tagged, for asserting the order across hosts.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "../src/hosts/command.js";
import { RecordingTransport, type ExecResult } from "../src/hosts/transport.js";
import { ROOT } from "./helpers.js";

export const fixture = (dir: "k3s" | "kubectl" | "etcd", name: string): string => readFileSync(join(ROOT, "test/fixtures", dir, name), "utf8");
export const ok = (stdout: string, stderr = ""): ExecResult => ({ code: 0, stdout, stderr });
export const fail = (code: number, stderr: string, stdout = ""): ExecResult => ({ code, stdout, stderr });

/** etcd's real answers (test/fixtures/etcd): the capture with master3 down, and the same with master3 answering as master2 does. */
export const probeOneDown = fixture("etcd", "probe-one-down.txt");
export const probeAllUp = (() => {
  const lines = probeOneDown.trim().split("\n");
  const two = lines.filter((l) => l.includes("10.250.9.2:"));
  return [...lines.filter((l) => !l.includes("10.250.9.3:")), ...two.map((l) => l.replace("10.250.9.2:", "10.250.9.3:"))].join("\n") + "\n";
})();

/**
 * What probeCommand prints for these parts: one `fmc-probe <name> <code> <base64>` line each.
 * Command substitution drops trailing newlines, so the text is kept without them, as the node's
 * shell would (test/unit/upgrade.test.ts runs probeCommand's own script to check this framing).
 */
export function probeAnswer(parts: Record<string, ExecResult>): ExecResult {
  const lines = Object.entries(parts).map(([name, r]) => `fmc-probe ${name} ${r.code} ${Buffer.from(`${r.stdout}${r.stderr}`.replace(/\n+$/, "")).toString("base64")}`);
  return ok(`${lines.join("\n")}\n`);
}

/** One host's answer to one command; undefined: the default (exit 0, nothing printed). */
export type Answerer = (host: string, c: Command, seen: number) => ExecResult | undefined;

/**
 * A transport per host; `answer` is asked first, `seen` counts the commands with the same
 * display on that host so far (a wait's second look, say).
 */
export function replay(hosts: readonly string[], answer: Answerer): { log: string[]; transports: Map<string, RecordingTransport> } {
  const log: string[] = [];
  const counts = new Map<string, number>();
  const transports = new Map(
    hosts.map((h) => [
      h,
      new RecordingTransport(h, [
        (c) => {
          const line = `${h}: ${c.display.split("\n")[0]}`;
          log.push(line);
          const n = counts.get(line) ?? 0;
          counts.set(line, n + 1);
          return answer(h, c, n) ?? ok("");
        },
      ]),
    ]),
  );
  return { log, transports };
}

/** etcd through a server: the real member list and the given probe answer. */
export function etcdAnswer(c: Command, probe: () => string): ExecResult | undefined {
  if (c.shell.endsWith("/v3/cluster/member/list")) return ok(fixture("etcd", "member-list.json"));
  if (c.display.startsWith("etcd health and status")) return ok(probe());
  return undefined;
}

/** A server's probe (k3s --version; /readyz; etcd /health; its Node object), healthy, running `version`. */
export function healthyServer(name: string, version = "v1.33.5+k3s1"): ExecResult {
  const node = JSON.parse(fixture("kubectl", "node-master1.json")) as { metadata: { name: string }; status: { nodeInfo: { kubeletVersion: string; kubeProxyVersion: string } } };
  node.metadata.name = name;
  node.status.nodeInfo.kubeletVersion = version;
  node.status.nodeInfo.kubeProxyVersion = version;
  return probeAnswer({
    version: ok(fixture("k3s", version === "v1.33.4+k3s1" ? "version-v1.33.4.txt" : "version-v1.33.5.txt")),
    readyz: ok(fixture("kubectl", "readyz.txt")),
    etcd: ok(fixture("etcd", "health.json")),
    node: ok(JSON.stringify(node, null, 4)),
  });
}

/** An agent's Node object, Ready with kubelet `version` (node-worker2.json renamed), or its NotReady capture. */
export function agentNode(name: string, state: { ready: boolean; version?: string }): ExecResult {
  const node = JSON.parse(fixture("kubectl", state.ready ? "node-worker2.json" : "node-worker2-notready.json")) as { metadata: { name: string }; status: { nodeInfo: { kubeletVersion: string } } };
  node.metadata.name = name;
  if (state.version) node.status.nodeInfo.kubeletVersion = state.version;
  return ok(`${JSON.stringify(node, null, 4)}\n`);
}
